"""IMP's first stage: projected gradient ascent of the relaxed seller profit, from many restarts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax

from ..._checks import POSITIVE, check_settings, setting
from ..robust._rsr import rental_options
from ..scenarios._market import ValueMarket
from ._profit import exact_profit, relaxed_profit
from ._solution import PricingTrace


def _frozen(kwargs: Mapping[str, Any] | tuple) -> tuple[tuple[str, Any], ...]:
    """Keyword arguments as a sorted tuple of pairs: hashable, and equal whenever the arguments are."""
    return tuple(sorted(dict(kwargs).items()))


class Ascent(eqx.Module):
    """Settings of the gradient stage: projected ascent of the relaxed seller profit.

    Each of `restarts` starts, drawn uniformly from the box, ascends the relaxed profit (divided by
    N times the market's scale, see `market_scale`) over prices scaled to [0, 1] per model, projected
    back onto the box after each step, while the temperature anneals geometrically from
    `initial_temperature` to `final_temperature` (both relative to the market's scale, so one
    setting serves markets of any size and currency). The exact profit of every restart is
    evaluated every `eval_every` steps and its best exact prices are kept.

    The optimiser is stored as an optax factory and its arguments, as `optimistix.OptaxMinimiser`
    does, so two equal settings compare equal, hash alike and reuse one compilation:
    `Ascent(optimiser=optax.sgd, optimiser_kwargs={"learning_rate": 0.1})`.
    """

    optimiser: Callable[..., optax.GradientTransformation] = eqx.field(static=True, default=optax.adam)
    optimiser_kwargs: tuple[tuple[str, Any], ...] = eqx.field(
        static=True, default=(("learning_rate", 0.05),), converter=_frozen
    )
    steps: int = setting(200, "gradient steps per restart", lo=1)
    restarts: int = setting(32, "independent starts, run together under jax.vmap", lo=1)
    eval_every: int = setting(10, "steps between exact profit evaluations", lo=1)
    initial_temperature: float = setting(0.1, "relative softmax temperature at step 0", lo=POSITIVE)
    final_temperature: float = setting(1e-3, "relative softmax temperature at the end", lo=POSITIVE)

    def __check_init__(self):
        if not callable(self.optimiser):
            raise TypeError(
                f"Ascent.optimiser must be an optax optimiser factory such as optax.adam; got "
                f"{self.optimiser!r}."
            )
        check_settings(self)
        t0, t1 = self.initial_temperature, self.final_temperature
        if t1 > t0:
            raise ValueError(
                f"Ascent.final_temperature = {t1!r} is above initial_temperature = {t0!r}; "
                "the temperature anneals from the initial to the final one."
            )

    def make_optimiser(self) -> optax.GradientTransformation:
        """The optax optimiser these settings describe."""
        return self.optimiser(**dict(self.optimiser_kwargs))


def useful_top(market: ValueMarket) -> jax.Array:
    """Per model, 1% above the highest price anyone pays: min(price_hi, 1.01 max_i m_ij mu_j) >= price_lo.

    Above R_ij = m_ij mu_j customer i's value of model j is negative, so no customer rents j at a
    higher price and the profit no longer depends on beta_j there. The gradient stage searches
    [price_lo, useful_top] (a box of [o, 1000 o] would otherwise put every optimum in its bottom
    percent); the later stages and the solution use the whole box. The 1% beyond the top prices the
    model out of the market altogether, which pays where near-identical models cannibalise each other.
    """
    mo = market.models
    rate = jnp.where(market.hours > 0, market.rate, 0.0)
    # The highest rate per model: over customers (a dense table), or over their options' models.
    ids = jnp.where(market.hours > 0, market.model_ids(), market.n_models)
    top = jnp.zeros(market.n_models, rate.dtype).at[ids.reshape(-1)].max(rate.reshape(-1), mode="drop")
    return jnp.clip(1.01 * top, mo.price_lo, mo.price_hi)


def search_box(market: ValueMarket) -> tuple[jax.Array, jax.Array]:
    """`(lo, width)`: the box [price_lo, useful_top] the gradient stage and the polish's random
    starts draw from, as price = lo + x width for x in [0, 1]."""
    lo = market.models.price_lo
    return lo, useful_top(market) - lo


def market_scale(market: ValueMarket) -> jax.Array:
    """The typical customer's best robust profit at the lowest prices ($): the median over customers
    who can profit at all (1 if none can).

    The median, not the mean: one customer worth far more than the rest would inflate a mean, and
    with it every temperature, leaving the relaxed landscape too smooth for the others at the end.
    """
    opts = rental_options(market, market.models.price_lo)
    best = jnp.max(jnp.where(opts.available, jnp.maximum(opts.value, 0.0), 0.0), axis=1)
    scale = jnp.nanmedian(jnp.where(best > 0, best, jnp.nan))
    return jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)


class Ascended(eqx.Module):
    """What the gradient stage hands on: per restart its best exact prices and their profit."""

    prices: jax.Array  # (restarts, M)
    profit: jax.Array  # (restarts,)
    trace: PricingTrace


def ascend(market: ValueMarket, tol, settings: Ascent, steps: int, key) -> Ascended:
    """Run the gradient stage for `steps` steps (rounded up to a multiple of `eval_every`; the trace
    keeps the first `steps`) from `settings.restarts` starts drawn with `key`. One `lax.scan`, the
    restarts under `jax.vmap`."""
    dtype = market.dtype
    lo, width = search_box(market)
    scale = market_scale(market)
    norm = scale * market.n_customers

    every = min(settings.eval_every, steps)
    blocks = -(-steps // every)
    total = blocks * every
    frac = jnp.arange(total, dtype=dtype) / max(total - 1, 1)
    t0 = jnp.asarray(settings.initial_temperature, dtype)
    t1 = jnp.asarray(settings.final_temperature, dtype)
    temperature = scale * t0 * (t1 / t0) ** frac

    def prices_of(x):
        return lo + x * width

    def relaxed(x, t):
        return relaxed_profit(market, prices_of(x), t)

    def exact(x):
        return exact_profit(market, prices_of(x), tol)

    opt = settings.make_optimiser()
    grad = jax.value_and_grad(lambda x, t: -relaxed(x, t) / norm)

    def step(carry, t):
        x, state = carry
        loss, g = grad(x, t)
        # Optax mixes its int32 step count with float32 parameters, which strict dtype promotion
        # (on in our tests) rejects; the promotion rule applies to optax's internals only.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(g, state, x)
        x = optax.projections.projection_box(optax.apply_updates(x, updates), 0.0, 1.0)
        return (x, state), -loss * norm

    def block(carry, ts):
        x, state, best_x, best = carry
        (x, state), relaxed_trace = lax.scan(step, (x, state), ts)
        value = exact(x)
        better = value > best
        best_x = jnp.where(better, x, best_x)
        best = jnp.where(better, value, best)
        return (x, state, best_x, best), (relaxed_trace, best)

    def run(x0, ts):
        with jax.numpy_dtype_promotion("standard"):
            state = opt.init(x0)
        init = (x0, state, x0, exact(x0))
        (_, _, best_x, best), (relaxed_trace, best_trace) = lax.scan(block, init, ts)
        return best_x, best, relaxed_trace.reshape(-1), best_trace

    x0 = jax.random.uniform(key, (settings.restarts, market.n_models), dtype)
    ts = temperature.reshape(blocks, every)
    best_x, best, relaxed_trace, best_trace = jax.vmap(run, in_axes=(0, None))(x0, ts)
    trace = PricingTrace(
        relaxed_profit=relaxed_trace.T[:steps],
        best_profit=jnp.repeat(jnp.max(best_trace, axis=0), every)[:steps],
        temperature=temperature[:steps],
    )
    return Ascended(jax.vmap(prices_of)(best_x), best, trace)
