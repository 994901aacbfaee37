"""The customers' robust selecting and renting (RSR): exact best responses, in closed form.

This is our formulation of the customer's two-stage robust problem (`docs/models/lmaas.md`), not
the LMaaS paper's equations, which are not public.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._checks import check_prices, check_shape, checked, runtime_check
from ..scenarios._market import (
    CHANNEL,
    DEMAND,
    VALUE,
    AnyMarket,
    CustomerLimits,
    Market,
    ModelPrices,
    ValueMarket,
    check_market,
)


def value_market(market: AnyMarket) -> ValueMarket:
    """The value table of `market`: every customer's scenario set reduced to two numbers per model.

    Everything the seller's side of the game reads of a market (scenarios -> robust values ->
    pricing) is this [`lmaas_jax.ValueMarket`][]; a `ValueMarket` is returned as it is. Per
    (customer i, model j):

    - `rate`: R_ij = m_ij mu_j, the worst-case value per rented hour ($/h) up to `hours`, where
      m_ij = min_s max(v_s a_j - c_i s_j, 0) is the worst-case margin per task ($/task);
    - `hours`: Q_ij / mu_j, the rental at which the worst case stops improving (h), where
      Q_ij = V_ij / m_ij, V_ij = min_s max(v_s a_j - c_i s_j, 0) min(D_s, W_s / s_j) the worst-case
      attainable value ($); 0 where m_ij = 0 (model j is no option for customer i);
    - `cancellation`: 2 c_i s_j mu_j, the magnitude of what cancels in `rate`;

    with the models' costs and price boxes and the customers' horizons and budgets (see
    [`lmaas_jax.rsr`][] for why this is exact). Every response and price is the same on both
    markets (`tests/test_value_market.py`); only the per-scenario detail (`RSRResponse.served`) and
    the planners' nominal markets need the scenarios. Costs O(N M S); everything price-dependent
    afterwards costs O(N M). Differentiable in the scenario market's floating fields.
    """
    if isinstance(market, ValueMarket):
        return market
    m, c = market.models, market.customers
    sc, mask = market.scenarios, market.scenario_mask
    demand, channel, value = sc[..., DEMAND], sc[..., CHANNEL], sc[..., VALUE]
    # (N, S, M): per-task margin and the tasks each scenario lets the customer serve.
    margin = jnp.maximum(
        value[:, :, None] * m.accuracy[None, None, :]
        - c.comm_price[:, None, None] * m.payload[None, None, :],
        0.0,
    )
    capacity = jnp.minimum(demand[:, :, None], channel[:, :, None] / m.payload[None, None, :])
    big = jnp.asarray(jnp.inf, margin.dtype)
    valid = mask[:, :, None]
    worst_margin = jnp.min(jnp.where(valid, margin, big), axis=1)
    worst_value = jnp.min(jnp.where(valid, margin * capacity, big), axis=1)
    positive = worst_margin > 0
    tasks = jnp.where(positive, worst_value / jnp.where(positive, worst_margin, 1.0), 0.0)
    mu = m.throughput[None, :]
    return ValueMarket(
        ModelPrices(m.serving_cost, m.training_cost, m.price_lo, m.price_hi),
        CustomerLimits(c.horizon, c.budget),
        worst_margin * mu,
        tasks / mu,
        cancellation=2.0 * c.comm_price[:, None] * (m.payload * m.throughput)[None, :],
    )


class Options(eqx.Module):
    """Each customer's best rental of each option at given prices (internal, shared by solvers).

    Shaped like the [`lmaas_jax.ValueMarket`][] it comes from: `(N, M)` dense, `(N, K)` for option
    lists (option k of customer i is model `market.option_model[i, k]`).

    **Fields:**

    - `duration`: tau_ij, the customer's optimal rental of model j (h).
    - `value`: the robust profit of renting model j for tau_ij ($); may be negative.
    - `seller_margin`: (beta_j - o_j) tau_ij, what the seller earns if the customer rents j ($).
    - `available`: tau_ij > 0; a zero-hour rental is no rental.
    - `gross`: m_ij mu_j tau_ij, the worst-case value before rent ($): the magnitude that rounding
      errors in `value` scale with, and so the scale of the tie tolerance.
    """

    duration: Float[Array, "customers models"]
    value: Float[Array, "customers models"]
    seller_margin: Float[Array, "customers models"]
    available: Bool[Array, "customers models"]
    gross: Float[Array, "customers models"]


def rental_options(market: ValueMarket, prices: Float[Array, " models"]) -> Options:
    """Price-dependent part of RSR: each customer's best duration and value for every model."""
    m, c = market.models, market.customers
    beta = market.per_option(prices)
    # Longest affordable rental, min(H, B / beta), written so gradients stay finite when B = inf
    # or beta = 0 (double `where`).
    affordable = jnp.isfinite(c.budget)[:, None] & (beta > 0)
    budget = jnp.where(jnp.isfinite(c.budget), c.budget, 1.0)[:, None]
    by_budget = budget / jnp.where(affordable, beta, 1.0)
    longest = jnp.where(affordable, jnp.minimum(c.horizon[:, None], by_budget), c.horizon[:, None])
    duration = jnp.minimum(market.hours, longest)
    gross_rate = market.rate  # $/h of worst-case value while tau <= hours
    return Options(
        duration=duration,
        value=(gross_rate - beta) * duration,
        seller_margin=(beta - market.per_option(m.serving_cost)) * duration,
        available=market.hours > 0,
        gross=gross_rate * duration,
    )


class RSRResponse(eqx.Module):
    """The customers' exact robust responses at one price vector.

    **Fields:**

    - `choice`: shape `(N,)`, 0 = no rental, j in 1..M = model j (1-based).
    - `duration`: shape `(N,)`, hours rented (0 for no rental).
    - `worst_profit`: shape `(N,)`, the customer's worst-case profit of its choice ($).
    - `robust_values`: shape `(N, M)`, U_ij = the best worst-case profit with model j (>= 0).
    - `model_durations`: shape `(N, M)`, the duration attaining U_ij (the largest such when
      indifferent).
    - `seller_margin`: shape `(N,)`, (beta_j - o_j) tau for the chosen model, 0 for no rental.
    - `served`: shape `(N, S)`, tasks served in each scenario after the scenario is revealed (0 on
      padding); shape `(N, 0)` for a [`lmaas_jax.ValueMarket`][], which has no scenarios.
    """

    choice: Int[Array, " customers"]
    duration: Float[Array, " customers"]
    worst_profit: Float[Array, " customers"]
    robust_values: Float[Array, "customers models"]
    model_durations: Float[Array, "customers models"]
    seller_margin: Float[Array, " customers"]
    served: Float[Array, "customers scenarios"]


def tie_tolerance(market: AnyMarket, tie_tol: float | None = None) -> float:
    """`tie_tol`, or by default 1e-5 for a float32 market and 1e-9 for a float64 one.

    A tolerance is a static Python number (it selects a compiled program), so it is checked here
    even under `jax.jit`: finite and >= 0 (a negative or NaN one would make every customer opt out).
    """
    if tie_tol is not None:
        if isinstance(tie_tol, jax.core.Tracer):
            raise TypeError("tie_tol must be a Python float (static), not a traced array.")
        if not (isinstance(tie_tol, int | float | np.floating) and math.isfinite(tie_tol) and tie_tol >= 0):
            raise ValueError(f"tie_tol must be a finite float >= 0 or None; got {tie_tol!r}.")
        return tie_tol
    return 1e-9 if jnp.dtype(market.dtype) == jnp.float64 else 1e-5


def with_opt_out(x, fill):
    """An option array `(N, K)` with the opt-out column first, `(N, K + 1)`: column 0 is not renting
    (`fill`: its value 0, its availability True), column k option k."""
    return jnp.concatenate([jnp.full((x.shape[0], 1), fill, x.dtype), x], axis=1)


def choose(options: Options, tie_tol: float) -> Int[Array, " customers"]:
    """Each customer's choice (0 = none, k = option k, 1-based) with the strong-Stackelberg tie rule.

    Options are in model order (dense: option k is model k; option lists are ascending), so the
    lowest option is the lowest model. `ValueMarket.chosen_model` maps options to models.
    """
    value = with_opt_out(options.value, 0.0)
    margin = with_opt_out(options.seller_margin, 0.0)
    available = with_opt_out(options.available, True)
    ninf = jnp.asarray(-jnp.inf, value.dtype)
    best = jnp.max(jnp.where(available, value, ninf), axis=1, keepdims=True)
    scale = jnp.max(jnp.where(options.available, options.gross, 0.0), axis=1, keepdims=True)
    tied = available & (value >= best - tie_tol * (1.0 + scale))
    tied_margin = jnp.where(tied, margin, ninf)
    top = tied & (tied_margin >= jnp.max(tied_margin, axis=1, keepdims=True))
    # Among the seller's favourites, renting beats not renting, then the lowest model index (a min
    # over indices, not an argmax: a variadic reduction, several times slower on a CPU).
    k = top.shape[1] - 1
    first = jnp.min(jnp.where(top[:, 1:], jnp.arange(1, k + 1, dtype=jnp.int32), k + 1), axis=1)
    return jnp.where(first <= k, first, 0).astype(jnp.int32)


def chosen_margin(options: Options, choice: Int[Array, " customers"]) -> Float[Array, " customers"]:
    """What the seller earns from each customer's `choice` (0 = none): (beta_j - o_j) tau_ij, or 0."""
    j = jnp.maximum(choice - 1, 0)
    margin = jnp.take_along_axis(options.seller_margin, j[:, None], axis=1)[:, 0]
    return jnp.where(choice > 0, margin, 0.0)


def _realised(market: Market, j, duration):
    """Per-task margin and tasks served in every scenario, for model `j[i]` rented `duration[i]`."""
    mo, sc = market.models, market.scenarios
    payload = mo.payload[j][:, None]
    margin = sc[..., VALUE] * mo.accuracy[j][:, None] - market.customers.comm_price[:, None] * payload
    served = jnp.minimum(
        (mo.throughput[j] * duration)[:, None],
        jnp.minimum(sc[..., DEMAND], sc[..., CHANNEL] / payload),
    )
    return margin, served


def respond(
    market: AnyMarket, values: ValueMarket, prices: Float[Array, " models"], tie_tol: float
) -> RSRResponse:
    """The customers' exact responses at `prices`, on `values` (`value_market(market)`, computed
    once by a caller that evaluates many prices); `market` only for the tasks served per scenario."""
    values = values
    options = rental_options(values, prices)
    choice = choose(options, tie_tol)  # an option; the model is values.chosen_model(choice)
    rented = choice > 0
    j = jnp.maximum(choice - 1, 0)

    def pick(x):
        return jnp.where(rented, jnp.take_along_axis(x, j[:, None], axis=1)[:, 0], 0.0)

    duration = pick(options.duration)
    if isinstance(market, ValueMarket):  # no scenarios: nothing to serve per scenario
        served = jnp.zeros((market.n_customers, 0), duration.dtype)
    else:
        margin, served = _realised(market, j, duration)
        served = jnp.where(market.scenario_mask & (margin > 0) & rented[:, None], served, 0.0)
    m = market.n_models
    return RSRResponse(
        choice=values.chosen_model(choice),
        duration=duration,
        worst_profit=pick(options.value),
        robust_values=values.to_dense(jnp.maximum(options.value, 0.0), m),
        model_durations=values.to_dense(options.duration, m),
        seller_margin=pick(options.seller_margin),
        served=served,
    )


def as_prices(market: AnyMarket, prices) -> Float[Array, " models"]:
    """`prices` in the market's dtype; NaN, infinite or negative prices are refused when the compiled
    code runs (`equinox.error_if`; public entry points also check concrete prices in Python first)."""
    prices = jnp.asarray(prices)
    check_shape("prices", prices, (market.n_models,))
    prices = prices.astype(market.dtype)
    return runtime_check(prices, ~(jnp.isfinite(prices) & (prices >= 0)), "prices must be finite and >= 0")


def check_evaluation(market, prices, *rest, tie_tol=None, **_):
    check_market(market)
    check_prices("prices", prices, market.n_models)
    tie_tolerance(market, tie_tol)


@checked(check_evaluation)
def rsr(
    market: AnyMarket, prices: Float[ArrayLike, " models"], *, tie_tol: float | None = None
) -> RSRResponse:
    """Every customer's exact robust best response (RSR) to the seller's prices.

    Customer i picks a model j (or none) and a rental duration tau in [0, T_ij],
    T_ij = min(H_i, B_i / beta_j), paying beta_j tau upfront; after scenario xi = (D, W, v) is revealed
    it serves y = min(mu_j tau, D, W / s_j) tasks, worth m_ij(xi) = v a_j - c_i s_j each when positive.
    Its robust value of model j is

        U_ij = max_{tau in [0, T_ij]} min_{xi in Xi_i} [ max(m_ij(xi), 0) min(mu_j tau, D, W / s_j) ]
               - beta_j tau.

    **Exactness (our lemma).** Write m_s = max(m_ij(xi_s), 0) >= 0 and K_s = min(D_s, W_s / s_j).
    Because m_s >= 0 and tau >= 0, m_s min(mu_j tau, K_s) = min(m_s mu_j tau, m_s K_s), and a minimum
    over s of minima is the minimum of the pieces taken separately:

        min_s m_s min(mu_j tau, K_s) = min( m mu_j tau, V ),   m = min_s m_s,   V = min_s m_s K_s.

    The rent beta_j tau is the same in every scenario, so the worst case over the scenario set is the
    concave function g(tau) = min(m mu_j tau, V) - beta_j tau, with a single kink at tau = V / (m mu_j).
    Its slope is m mu_j - beta_j before the kink and -beta_j after it, so for m mu_j > beta_j the
    maximum over [0, T_ij] is at tau_ij = min(V / (m mu_j), T_ij), where g = (m mu_j - beta_j) tau_ij;
    otherwise renting does not pay (tau = 0, U_ij = 0). This is exact for any finite scenario set, in
    O(S) per (customer, model) and vectorised. Note that the kink V / (m mu_j) need not be any
    scenario's own kink min(D_s, W_s / s_j) / mu_j: when values differ across scenarios the low-margin
    scenario and the low-value-capacity scenario can be different ones, so enumerating the scenarios'
    own kinks alone can miss the optimum (`tests/test_rsr.py` has such a market, checked by C&CG).

    **Ties (strong Stackelberg).** Options within `tie_tol` of the best count as tied:
    `value >= best - tie_tol * (1 + G_i)`, G_i = max_j m_ij mu_j tau_ij the customer's largest
    worst-case value before rent, the magnitude that rounding errors in (m mu - beta) tau scale
    with. Among tied options the customer takes the one best for the seller: the largest seller
    margin (beta_j - o_j) tau_ij, then renting over not renting, then the lowest model index.
    Within a model the duration is the largest maximiser of g when beta_j > 0.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or a [`lmaas_jax.ValueMarket`][] (its value table is
      (R_ij, hours_ij) = (m mu_j, V / (m mu_j)) above). Batch with `jax.vmap`.
    - `prices`: shape `(M,)`, $ per rented hour, cast to the market's dtype.
    - `tie_tol`: tie tolerance relative to 1 + G_i; default 1e-5 in float32 and 1e-9 in float64.
      Optimal prices sit on customers' breakpoints, where some customer is indifferent: judge
      float32 prices with float32's tolerance, or one ulp can lose that customer.

    **Returns:**

    An [`lmaas_jax.RSRResponse`][].
    """
    prices = as_prices(market, prices)
    tol = tie_tolerance(market, tie_tol)
    return respond(market, value_market(market), prices, tol)


def worst_case_profit(
    market: Market,
    choice: Int[ArrayLike, " customers"],
    duration: Float[ArrayLike, " customers"],
    prices: Float[ArrayLike, " models"],
) -> Float[Array, "customers scenarios"]:
    """u_i(j, tau; xi) for every customer's given (choice, duration) in every scenario ($).

    Padding scenarios get +inf so a minimum over the scenario axis ignores them.
    """
    prices = as_prices(market, prices)
    choice = jnp.asarray(choice)
    duration = jnp.asarray(duration, market.dtype)
    j = jnp.maximum(choice - 1, 0)
    margin, served = _realised(market, j, duration)
    profit = jnp.maximum(margin, 0.0) * served - (prices[j] * duration)[:, None]
    profit = jnp.where((choice > 0)[:, None], profit, 0.0)
    return jnp.where(market.scenario_mask, profit, jnp.inf)
