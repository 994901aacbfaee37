"""Prices that hold when posted: move optimal prices off the customers' breakpoints.

An exact optimum puts some prices exactly on customers' breakpoints, where a customer is indifferent
between the seller's favourite option and another one and takes the favourite only by the strong
Stackelberg tie rule of [`lmaas_jax.rsr`][]. Posted in the real market (the float64 market that a
float32 solve saw rounded, say), rounding alone can tip such a customer to its alternative, and a
seller who posts those prices loses it. Every pricing solver therefore returns prices moved off the
breakpoints by the smallest margin that makes each intended customer strictly prefer its option.

**The move.** Three kinds of candidate, all prices only ever lowered (clipped to the box):

- uniform: every price pulled toward its model's serving cost by a common fraction eps,
  beta' = o + (1 - eps)(beta - o), eps from a ladder eps_dtype 2^k up to about 1e-2. A tied
  customer takes, of its tied options, the one with the largest seller margin (beta_j - o_j) tau_ij;
  pulling every price toward cost by one fraction raises the value of option j by about
  eps (beta_j - o_j) tau_ij, most for exactly that option, so the tie breaks the intended way;
- targeted: each model's price cut by what its worst unholding customer lacks (divided by the hours
  it rents), repeated 3M + 2 times so that cuts which tip another model's customers are repaired
  in turn, at most 1% of the margin over cost. This wins where a tie is between two options whose
  seller margins nearly agree, which a uniform pull separates only slowly;
- kept: the greatest prices below the solution's at which every intended customer beats each other
  option by twice its required gap (`_assignment.keep_prices` with a gap; the allocation's best
  posting). This wins where long chains of customers pin each other's prices (unit demand, where
  the other two can lose a thousand times more in float32).

**How far.** A customer i with intended option j "holds" at some prices when its value of j exceeds
that of every other option l (opting out included) by at least

    g_il = 16 eps_dtype (|R_ij| + 2 c_i s_j mu_j + beta_j) tau_ij + (same for l) + 1e-9 (1 + G_i),

the value's sensitivity to rounding its data in the solve's dtype (R = m mu, m = v a - c s cancels)
plus float64's default tie tolerance, so its choice survives both rounding and any tie rule. Of the
candidates (the unmoved prices first, then the uniform ladder, the targeted cut, the kept prices), the first
that maximises the profit counted over holding customers only is posted. The reported `profit` is
the exact profit at the posted prices; the tie-breaking supremum (the profit at the unmoved prices)
is in `stats["profit_supremum"]`, its prices in `stats["prices_supremum"]`, and the largest
relative cut (beta - beta') / (beta - o) in `stats["price_shift"]`. Measured: the move costs 1e-5
to 2e-4 of the profit in float32 (default markets, N = 128 to 512; 2.1e-4 where a price had to
move by 2.4e-4 to hold) and about 1e-8 in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..robust._rsr import choose, chosen_margin, rental_options, respond, value_market, with_opt_out
from ..scenarios._market import AnyMarket, ValueMarket
from ._assignment import keep_prices
from ._equilibrium import equilibrium_prices, pin_pattern
from ._solution import PricingSolution

_TOP_SHIFT = 1e-2
_POST_TIE_TOL = 1e-9


def _ladder(dtype) -> jax.Array:
    eps = float(jnp.finfo(dtype).eps)
    k = 0
    values = [0.0]
    while eps * 2.0**k <= _TOP_SHIFT:
        values.append(eps * 2.0**k)
        k += 1
    return jnp.asarray(values, dtype)


def _gaps(market: ValueMarket, opts, prices) -> jax.Array:
    """Each option's share of the required strict gap, (N, K): its rounding sensitivity."""
    eps = jnp.finfo(prices.dtype).eps
    scale = jnp.abs(market.rate) + market.rounding + market.per_option(jnp.abs(prices))
    return 16.0 * eps * scale * opts.duration


def _required(market: ValueMarket, opts, prices, intended):
    """The gap, (N, K + 1), by which each customer's intended option must beat option l (0: none)."""
    n = opts.value.shape[0]
    zero = jnp.zeros((n, 1), opts.value.dtype)
    share = jnp.concatenate([zero, _gaps(market, opts, prices)], axis=1)
    scale = jnp.max(jnp.where(opts.available, opts.gross, 0.0), axis=1)
    own = jnp.take_along_axis(share, intended[:, None], axis=1)
    return own + share + _POST_TIE_TOL * (1.0 + scale)[:, None]


def _shortfall(market: ValueMarket, prices, intended):
    """Per customer, how much value its intended option lacks to hold (<= 0: it holds), and tau."""
    opts = rental_options(market, prices)
    m = opts.value.shape[1]
    value = with_opt_out(opts.value, 0.0)
    margin = with_opt_out(opts.seller_margin, 0.0)
    duration = with_opt_out(opts.duration, 0.0)
    available = with_opt_out(opts.available, True)
    pick = lambda x: jnp.take_along_axis(x, intended[:, None], axis=1)[:, 0]  # noqa: E731
    need = _required(market, opts, prices, intended)
    others = available & (jnp.arange(m + 1, dtype=intended.dtype)[None, :] != intended[:, None])
    lack = jnp.max(jnp.where(others, need - (pick(value)[:, None] - value), -jnp.inf), axis=1)
    lack = jnp.where(pick(available), lack, jnp.inf)
    return lack, pick(margin), pick(duration)


def held_profit(market: ValueMarket, prices, intended):
    """The profit from customers who strictly prefer their `intended` option (0 = none) at `prices`."""
    lack, margin, _ = _shortfall(market, prices, intended)
    return jnp.sum(jnp.where(lack <= 0, margin, 0.0)) - jnp.sum(market.models.training_cost)


def _targeted(market: ValueMarket, prices, intended, rounds: int):
    """Lower each price by what its worst unheld customer lacks, repeatedly (capped at 1%).

    Lowering beta_j by d raises the value of renting j by at least d tau_ij, so a customer of j
    short by s holds after a cut of s / tau_ij, unless that cut tips a customer of another model to
    j; later rounds fix those in turn. Customers who cannot hold (two options with equal seller
    margins, a price at the bottom of its box) cap the cut at 1% of the margin over cost.
    """
    mo = market.models
    m = market.n_models
    cap = 1e-2 * jnp.maximum(prices - mo.serving_cost, 0.0)

    def round_(_, cut):
        p = jnp.clip(prices - cut, mo.price_lo, mo.price_hi)
        lack, _, tau = _shortfall(market, p, intended)
        want = jnp.where((intended > 0) & (lack > 0) & (tau > 0), lack / jnp.where(tau > 0, tau, 1.0), 0.0)
        step = market.per_model(want, intended, m, "max", jnp.zeros((), want.dtype))
        return jnp.minimum(cut + step, cap)

    cut = jax.lax.fori_loop(0, rounds, round_, jnp.zeros_like(prices))
    return jnp.clip(prices - cut, mo.price_lo, mo.price_hi)


def post(market: ValueMarket, prices, tol):
    """Prices moved off the breakpoints so the intended customers hold (see the module docstring).

    Returns `(posted_prices, stats)`, `stats` with `profit_supremum` (exact profit at `prices`, ties
    to the seller), `prices_supremum` (`prices`) and `price_shift` (the largest relative cut).
    """
    mo = market.models
    opts = rental_options(market, prices)
    intended = choose(opts, tol)
    supremum = jnp.sum(chosen_margin(opts, intended)) - jnp.sum(mo.training_cost)
    ladder = _ladder(prices.dtype)

    def moved(eps):
        return jnp.clip(mo.serving_cost + (1.0 - eps) * (prices - mo.serving_cost), mo.price_lo, mo.price_hi)

    uniform = jax.vmap(moved)(ladder)
    targeted = _targeted(market, prices, intended, 3 * market.n_models + 2)
    # The greatest prices below these at which every intended customer wins by its gap (see
    # `_assignment.keep_prices`: the set of such prices is closed under the componentwise maximum);
    # the gap doubled, so that rounding in the iteration cannot eat it.
    need = 2.0 * _required(market, opts, prices, intended)
    kept, _ = keep_prices(market, intended, start=prices, gap=need, max_rounds=3 * market.n_models + 2)
    options = jnp.concatenate([uniform, targeted[None, :], kept[None, :]])
    held = jax.vmap(lambda p: held_profit(market, p, intended))(options)
    # The first best: unmoved prices if every customer already holds, else the smallest uniform
    # shift, the targeted cut only where it holds more.
    k = jnp.argmax(held)
    posted = options[k]
    eps = jnp.max(
        jnp.where(
            prices > mo.serving_cost,
            (prices - posted) / jnp.where(prices > mo.serving_cost, prices - mo.serving_cost, 1.0),
            0.0,
        )
    )
    return posted, {"profit_supremum": supremum, "prices_supremum": prices, "price_shift": eps}


def posted_solution(
    market: AnyMarket, values: ValueMarket, prices, tol, *, trace=None, stats=None, settings=None
):
    """The [`lmaas_jax.PricingSolution`][] every solver returns: posted prices and their exact profit.

    Differentiable in `market`: the prices carry the equilibrium's implicit derivative
    ([`lmaas_jax.equilibrium_prices`][], with the pins of `prices`), the posting move is a constant,
    and the profit and response are those of the fixed choices at the posted prices. `prices` and
    `values` (the value table the solver searched, `value_market` of the stopped market) are never
    differentiated.
    """
    values, prices = lax.stop_gradient((values, prices))
    pins = pin_pattern(values, prices, tol)
    posted, extra = post(values, prices, tol)
    posted = equilibrium_prices(market, prices, pins) + (posted - prices)
    response = respond(market, value_market(market), posted, tol)
    return PricingSolution(
        prices=posted,
        profit=jnp.sum(response.seller_margin) - jnp.sum(market.models.training_cost),
        response=response,
        trace=trace,
        stats={**(stats or {}), **extra, "pattern_stable": pins.stable},
        pins=pins,
        settings=settings,
        tie_tol=tol,
    )
