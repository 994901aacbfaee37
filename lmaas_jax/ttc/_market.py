"""Test-time compute markets: the bundled accuracy/token curves and the game's payoffs in JAX.

Our implementation of the model of Artola Velasco, Rontogiannis, Tsirtsis and Gomez-Rodriguez,
"Test-Time Compute Games" (arXiv 2601.21839), as fixed by `docs/models/ttc.md`.
"""

from __future__ import annotations

import csv
import importlib.resources
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int

from .._checks import check_shape, fail_where, in_range, is_concrete

BENCHMARKS = ("GSM8K", "AIME", "GPQA")
METHODS = ("majority", "best_of_n", "effort")
ALPHA = {"GSM8K": 0.008, "AIME": 0.05, "GPQA": 0.02}


class TTCMarket(eqx.Module):
    """One market: n providers, each with L compute levels.

    **Fields:** `names` (static), `theta` (n, L) compute levels, `accuracy` (n, L) in [0, 1],
    `tokens` (n, L) billed tokens per query, `token_price` (n,) $ per token, `alpha` the dollar
    value scale of the benchmark, `benchmark`, `method` (static).
    """

    theta: Float[Array, "n L"]
    accuracy: Float[Array, "n L"]
    tokens: Float[Array, "n L"]
    token_price: Float[Array, " n"]
    alpha: Float[Array, ""]
    names: tuple[str, ...] = eqx.field(static=True)
    benchmark: str = eqx.field(static=True)
    method: str = eqx.field(static=True)

    def __check_init__(self):
        shape = self.theta.shape
        for name in ("accuracy", "tokens"):
            check_shape(f"TTCMarket.{name}", getattr(self, name), shape)
        check_shape("TTCMarket.token_price", self.token_price, shape[:1])
        if len(self.names) != shape[0]:
            raise ValueError(
                f"TTCMarket.names must name the {shape[0]} providers; got {len(self.names)} names."
            )
        if not is_concrete(self.accuracy, self.tokens, self.token_price, self.alpha):
            return
        a, t, p = (np.asarray(x, np.float64) for x in (self.accuracy, self.tokens, self.token_price))
        fail_where("TTCMarket.accuracy", ~((a >= 0) & (a <= 1)), a, "must lie in [0, 1]")
        fail_where("TTCMarket.tokens", ~(np.isfinite(t) & (t > 0)), t, "must be finite and > 0")
        fail_where("TTCMarket.token_price", ~(np.isfinite(p) & (p >= 0)), p, "must be finite and >= 0")
        fail_where(
            "TTCMarket.alpha", ~(np.isfinite(self.alpha) & (self.alpha > 0)), self.alpha, "must be > 0"
        )


def _rows():
    text = importlib.resources.files("lmaas_jax.ttc").joinpath("data/ttc_curves.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def load_market(benchmark: str, method: str, *, dtype=None) -> TTCMarket:
    """The bundled market for `benchmark` in GSM8K, AIME, GPQA and `method` in majority,
    best_of_n (nine instruct models, theta = samples 1..64) or effort (three reasoning models), in
    `dtype` (default JAX's default float: float32 unless x64 is on)."""
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}; got {benchmark!r}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    rows = [r for r in _rows() if r["benchmark"] == benchmark and r["method"] == method]
    names = tuple(dict.fromkeys(r["model"] for r in rows))
    per = {n: sorted((float(r["theta"]), r) for r in rows if r["model"] == n) for n in names}

    def table(key, scale=1.0):
        return jnp.asarray([[float(r[key]) * scale for _, r in per[n]] for n in names], dtype)

    return TTCMarket(
        theta=jnp.asarray([[t for t, _ in per[n]] for n in names], dtype),
        accuracy=table("accuracy_pct", 0.01),
        tokens=table("tokens_per_query"),
        token_price=jnp.asarray([float(per[n][0][1]["price_per_1m_tokens"]) / 1e6 for n in names], dtype),
        alpha=jnp.asarray(ALPHA[benchmark], dtype),
        names=names,
        benchmark=benchmark,
        method=method,
    )


def identity(a):
    return a


class GameParams(eqx.Module):
    """User rationality `beta`, provider `markup` m (cost = price / (1 + m)), quality floor `b`,
    and the accuracy-to-quality map `quality_fn` (identity; see [`power_quality`][],
    [`exponential_quality`][])."""

    beta: Float[Array, ""]
    markup: Float[Array, ""] = eqx.field(default_factory=lambda: jnp.asarray(0.25))
    b: Float[Array, ""] = eqx.field(default_factory=lambda: jnp.asarray(0.1))
    quality_fn: Callable = eqx.field(static=True, default=identity)

    def __check_init__(self):
        # Concrete values here; traced ones (a vmap over beta) are checked in `terms`, at run time.
        for name, lo, hi, requirement in _PARAM_RANGES:
            value = getattr(self, name)
            if is_concrete(value):
                in_range(f"GameParams.{name}", value, lo, hi, requirement, finite=True)


_PARAM_RANGES = (
    ("beta", 1e-30, np.inf, "must be finite and > 0"),
    ("markup", 1e-30, np.inf, "must be finite and > 0"),
    ("b", 0.0, 1.0, "must lie in [0, 1]"),
)


def power_quality(gamma: float) -> Callable:
    """f(a) = a^gamma."""
    return lambda a: a**gamma


def exponential_quality(k: float) -> Callable:
    """f(a) = (e^{k a} - 1) / (e^k - 1)."""
    return lambda a: jnp.expm1(k * a) / jnp.expm1(k)


class Terms(eqx.Module):
    """Per (provider, level): price p, cost c, quality q, user net value V = q - p."""

    price: Float[Array, "n L"]
    cost: Float[Array, "n L"]
    quality: Float[Array, "n L"]
    value: Float[Array, "n L"]


def terms(market: TTCMarket, params: GameParams) -> Terms:
    """p = pi T, c = p / (1 + m), q = alpha (b + (1 - b) f(a)), V = q - p, for every level.

    Traced parameters (under `jax.vmap` over beta, say) are range-checked here by `equinox.error_if`.
    """
    price = market.token_price[:, None] * market.tokens
    for name, lo, hi, requirement in _PARAM_RANGES:
        value = getattr(params, name)
        if not is_concrete(value):  # attached to the prices, so the check cannot be compiled away
            price = in_range(f"GameParams.{name}", value, lo, hi, requirement, finite=True, on=price)
    quality = market.alpha * (params.b + (1 - params.b) * params.quality_fn(market.accuracy))
    return Terms(price=price, cost=price / (1 + params.markup), quality=quality, value=quality - price)


class Payoffs(eqx.Module):
    """Outcome of one joint profile: shares, utilities (and their logs), welfare and potential."""

    shares: Float[Array, " n"]
    utilities: Float[Array, " n"]
    log_utilities: Float[Array, " n"]
    welfare: Float[Array, ""]
    potential: Float[Array, ""]
    avg_price: Float[Array, ""]


def payoffs(t: Terms, profile: Int[Array, " n"], beta) -> Payoffs:
    """Shares s_i = softmax over (outside option 0, beta V_i), u_i = s_i (p_i - c_i),
    SW = sum s_i (q_i - c_i), Phi = sum log(p_i - c_i) + beta sum V_i - log(1 + sum e^{beta V_j}),
    and the share-weighted average price (among users who buy)."""
    rows = jnp.arange(profile.shape[0])
    p, c, q, v = (x[rows, profile] for x in (t.price, t.cost, t.quality, t.value))
    # Logits relative to the best option (the outside option's value is 0): beta V is 500 at
    # beta = 1e4, where float32's rounding of beta V alone moved shares by 3e-5; beta (V - top)
    # is rounded relative to the gaps that decide the shares.
    top = lax.stop_gradient(jnp.maximum(jnp.max(v), 0))
    gap = beta * (v - top)
    lse = jax.nn.logsumexp(jnp.concatenate([(-beta * top)[None], gap]))
    shares = jnp.exp(gap - lse)
    margin = p - c
    return Payoffs(
        shares=shares,
        utilities=shares * margin,
        # log u_i = beta V_i - lse + log(p_i - c_i): finite where the share underflows (large beta,
        # float32), so better responses can still be compared.
        log_utilities=gap - lse + jnp.log(margin),
        welfare=jnp.sum(shares * (q - c)),
        potential=jnp.sum(jnp.log(margin)) + jnp.sum(gap) + (v.shape[0] - 1) * beta * top - lse,
        avg_price=jnp.sum(shares * p) / jnp.sum(shares),
    )


def potential_gain(
    t: Terms, profile: Int[Array, " n"], reference: Int[Array, " n"], beta
) -> Float[Array, ""]:
    """Phi(profile) - Phi(reference), computed from differences so that float32 keeps its digits.

    Phi itself is a difference of terms of size beta V (tens at beta = 300): its float32 rounding,
    times a Gibbs sharpness of 1e3, moved the smoothed welfare's gradient by 21%. Here
    Phi(x) - Phi(r) = sum_i [log(m_i(x_i) / m_i(r_i)) + beta (V_i(x_i) - V_i(r_i))]
    - log1p(sum_j s_j(r) expm1(beta (V_j(x_j) - V_j(r_j)))), with s(r) the shares at r: every term
    is as small as the change it measures, so the error is relative to the gain, not to Phi.
    """
    rows = jnp.arange(profile.shape[0])
    margin = t.price - t.cost
    dv = t.value[rows, profile] - t.value[rows, reference]
    own = jnp.sum(jnp.log(margin[rows, profile] / margin[rows, reference]))
    shares_ref = payoffs(t, reference, beta).shares
    return own + beta * jnp.sum(dv) - jnp.log1p(jnp.sum(shares_ref * jnp.expm1(beta * dv)))


def profiles_from_index(index: Int[Array, " k"], n: int, levels: int) -> Int[Array, "k n"]:
    """The joint profiles numbered `index` in base `levels` (provider 0 the most significant)."""
    powers = levels ** np.arange(n - 1, -1, -1)
    return ((index[:, None] // jnp.asarray(powers)[None, :]) % levels).astype(jnp.int32)
