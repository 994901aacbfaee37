"""Classic Iterative Model Pricing: exact coordinate ascent over the customers' breakpoints."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from ._market import Market
from ._profit import profit_from_terms
from ._rsr import RobustTerms, _as_prices, _respond, rental_options, robust_terms, tie_tolerance
from ._solution import PricingSolution


def breakpoints(
    market: Market, terms: RobustTerms, prices: Float[Array, " models"], j: int
) -> Float[Array, " customers"]:
    """For model `j` (0-based), the price at which each customer stops preferring it.

    With the other prices fixed, customer i's best alternative is worth
    A_i = max(0, max_{l != j} U_il). Renting model j is worth (R - b) min(L, B / b) at price b,
    R = m_ij mu_j, L = min(hours_ij, H_i): continuous and decreasing in b. It equals A_i at
    b = R - A_i / L while the budget is slack (b <= B / L), else at b = R B / (A_i + B). Customers
    who can never use j get `price_lo`. Results are clipped to the price box.
    """
    mo, cu = market.models, market.customers
    opts = rental_options(market, terms, prices)
    others = jnp.where((jnp.arange(market.n_models) != j)[None, :] & opts.available, opts.value, 0.0)
    alt = jnp.maximum(jnp.max(others, axis=1), 0.0)
    rate = terms.margin[:, j] * mo.throughput[j]
    length = jnp.minimum(terms.hours[:, j], cu.horizon)
    ok = length > 0
    safe_length = jnp.where(ok, length, 1.0)
    slack = rate - alt / safe_length
    budget = cu.budget
    finite = jnp.isfinite(budget)
    safe_budget = jnp.where(finite, budget, 1.0)
    binding = rate * safe_budget / (alt + safe_budget)
    price = jnp.where(finite & (slack * safe_length > safe_budget), binding, slack)
    price = jnp.where(ok, price, mo.price_lo[j])
    return jnp.clip(price, mo.price_lo[j], mo.price_hi[j])


def _best_on_line(market, terms, prices, j, tol):
    """Best exact profit over model j's breakpoints and box ends, other prices fixed."""
    mo = market.models
    candidates = jnp.concatenate(
        [
            breakpoints(market, terms, prices, j),
            jnp.stack([mo.price_lo[j], mo.price_hi[j], prices[j]]),
        ]
    )
    profits = jax.vmap(lambda b: profit_from_terms(market, terms, prices.at[j].set(b), tol))(candidates)
    k = jnp.argmax(profits)
    return candidates[k], profits[k]


@eqx.filter_jit
def _classic_ascent(market, terms, prices, tol, max_sweeps, steepest=False):
    """Coordinate ascent until a sweep improves the profit by no more than a relative 1e-12.

    Cyclic by default (re-price models 1..M in turn). With `steepest`, each sweep searches every
    model's line from the same prices and takes only the single best move: slower, but it does
    not let the first model's move spoil a better one of another model.
    """
    profit0 = profit_from_terms(market, terms, prices, tol)

    def sweep(carry):
        prices, profit, _, count = carry
        start = profit
        if steepest:
            lines = [_best_on_line(market, terms, prices, j, tol) for j in range(market.n_models)]
            values = jnp.stack([p for _, p in lines])
            j = jnp.argmax(values)
            candidate = prices.at[j].set(jnp.stack([b for b, _ in lines])[j])
            better = values[j] > profit
            prices = jnp.where(better, candidate, prices)
            profit = jnp.where(better, values[j], profit)
        else:
            for j in range(market.n_models):
                b, p = _best_on_line(market, terms, prices, j, tol)
                better = p > profit
                prices = jnp.where(better, prices.at[j].set(b), prices)
                profit = jnp.where(better, p, profit)
        improved = profit > start + 1e-12 * jnp.abs(start)
        return prices, profit, improved, count + 1

    def keep_going(carry):
        return carry[2] & (carry[3] < max_sweeps)

    init = (prices, profit0, jnp.asarray(True), jnp.asarray(0, jnp.int32))
    prices, profit, _, sweeps = lax.while_loop(keep_going, sweep, init)
    return prices, profit, sweeps


@eqx.filter_jit
def classic_imp(
    market: Market,
    prices: Float[ArrayLike, " models"] | None = None,
    *,
    max_sweeps: int = 50,
    tie_tol: float | None = None,
) -> PricingSolution:
    """Classic IMP: re-price one model at a time at its best breakpoint, exactly.

    With the other prices fixed, the seller's profit in beta_j is piecewise increasing: each
    customer who rents j pays more as beta_j rises, (beta_j - o_j) min(L, B / beta_j) being
    increasing, until the price passes the customer's breakpoint (where it switches to its best
    alternative; closed form in `breakpoints` below). So the best beta_j is a breakpoint or the
    top of the box, and one coordinate step evaluates the exact profit at those N + 3 prices
    (vmapped) and takes the best. Steps never lower the profit and a sweep over all models is
    repeated until it no longer raises it, so the method stops after finitely many sweeps at a
    coordinate-wise optimum (at most `max_sweeps`). This is our reading of the paper's description of
    IMP (iterate over models, each re-priced against every customer's best response).

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][]; `jax.vmap` over markets works.
    - `prices`: shape `(M,)`, the starting prices; default the bottom of the box.
    - `max_sweeps`: cap on sweeps over all models.
    - `tie_tol`: as in [`lmaas_jax.rsr`][].

    **Returns:**

    A [`lmaas_jax.PricingSolution`][] with `stats["sweeps"]`.
    """
    prices = market.models.price_lo if prices is None else _as_prices(market, prices)
    tol = tie_tolerance(market, tie_tol)
    terms = robust_terms(market)
    prices, profit, sweeps = _classic_ascent(market, terms, prices, tol, max_sweeps)
    return PricingSolution(
        prices=prices,
        profit=profit,
        response=_respond(market, terms, prices, tol),
        trace=None,
        stats={"sweeps": sweeps},
    )
