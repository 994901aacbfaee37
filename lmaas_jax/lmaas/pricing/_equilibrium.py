"""The equilibrium's derivative: which constraint pins each price, and the implicit function theorem.

At an exact solution of the pricing game every price is pinned: either by its box (`price_lo` or
`price_hi`), or by a *binding customer* who is indifferent between that model and another option
(another model, or renting nothing), or, for a model nobody rents, by nothing at all. Raising a
customer-pinned price loses the binding customer; the seller's profit is increasing in the price
up to that point. Where the pattern is locally stable (each binding customer tied between exactly
two options, no other customer tied, the pinned system non-singular), a small change of the market
keeps every customer's choice and every pin, so the equilibrium prices p(theta) solve the square
system

    F_j(p, theta) = V_{i_j, j}(p; theta) - V_{i_j, l_j}(p; theta) = 0    (customer pin: i_j, l_j)
    F_j(p, theta) = p_j - price_lo_j(theta)  or  p_j - price_hi_j(theta)  (box pin)
    dp_j = 0                                                              (unsold model)

with V the customers' exact robust values ([`lmaas_jax.rsr`][], budgets included). Its implicit
derivative dp = -F_p^{-1} F_theta dtheta is the exact derivative of the equilibrium prices, and the
profit's follows from the profit at fixed choices (so d profit / d serving_cost_j is minus the hours
rented of model j, and d profit / d training_cost_j is -1). [`equilibrium_prices`][] attaches this
derivative to a price vector found by any solver (a custom JVP: `jax.jvp`, `jax.grad`,
`jax.jacfwd`/`jacrev` and `jax.vmap` all work; the solver's iterations are never differentiated).

**Where the pattern is not stable** (two customers tied on one model, a customer tied three ways, a
tie nobody's price accounts for, two optimal price vectors), the equilibrium is not differentiable:
the derivative returned is that of the pins chosen here (per model, the tied customer with the
smallest gap, a customer of that model first), one one-sided derivative among several, and
`PinPattern.stable` is False. An unsold model's price is a flat direction of the profit; its
derivative is 0 by convention.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Int

from ..robust._rsr import choose, rental_options, value_market, with_opt_out
from ..scenarios._market import AnyMarket, ValueMarket
from ._profit import relaxed_profit

CUSTOMER, LOW, HIGH, UNSOLD = 0, 1, 2, 3
PIN_KINDS = ("customer", "price_lo", "price_hi", "unsold")


class PinPattern(eqx.Module):
    """What pins each price at a solution (see `lmaas_jax.lmaas.pricing._equilibrium`).

    **Fields:**

    - `kind`: shape `(M,)`, 0 = a binding customer, 1 = `price_lo`, 2 = `price_hi`, 3 = unsold.
    - `customer`: shape `(M,)`, the binding customer (-1 unless `kind == 0`).
    - `other`: shape `(M,)`, the option the binding customer is indifferent to (0 = no rental,
      l = model l, 1-based; -1 unless `kind == 0`).
    - `stable`: whether the pattern is locally stable, so that the derivative is the equilibrium's.
    """

    kind: Int[Array, " models"]
    customer: Int[Array, " models"]
    other: Int[Array, " models"]
    stable: Bool[Array, ""]


def _at_box_ends(prices, models):
    """Which prices sit at `price_lo` and which at `price_hi` (to a few ulps)."""
    eps = jnp.finfo(prices.dtype).eps
    at_lo = prices <= models.price_lo + 8 * eps * jnp.abs(models.price_lo)
    at_hi = prices >= models.price_hi - 8 * eps * jnp.abs(models.price_hi)
    return at_lo, at_hi


def _float_tangents(dynamic, t_market):
    """The tangents of a market's floating leaves (`dynamic`), zeros where none was given."""
    if t_market is None:
        t_market = jax.tree.map(lambda _: None, dynamic)
    return jax.tree.map(
        lambda x, t: None if x is None else (jnp.zeros_like(x) if t is None else t),
        dynamic,
        t_market,
        is_leaf=lambda x: x is None,
    )


def _implicit_tangent(residual, theta, prices, t_theta):
    """dp = -F_p^{-1} F_theta dtheta, the implicit function theorem on `residual(theta, p) = 0`."""
    _, f_theta = jax.jvp(lambda th: residual(th, prices), (theta,), (t_theta,))
    f_p = jax.jacfwd(lambda p: residual(theta, p))(prices)
    return -jnp.linalg.solve(f_p, f_theta)


def pin_pattern(market: ValueMarket, prices, tie_tol) -> PinPattern:
    """The pin of every price at `prices` (a solution; ties decided as in [`lmaas_jax.rsr`][]).

    A customer counts as tied when its chosen option and another one are within 4 times the tie
    tolerance of [`lmaas_jax.rsr`][] (solvers place prices on breakpoints to the last few ulps).
    """
    mo = market.models
    n, m = market.n_customers, market.n_models
    opts = rental_options(market, prices)
    choice = choose(opts, tie_tol)  # options (see ValueMarket); models where reported
    value = with_opt_out(opts.value, 0.0)
    available = with_opt_out(opts.available, True)
    scale = jnp.max(jnp.where(opts.available, opts.gross, 0.0), axis=1)
    window = 4.0 * tie_tol * (1.0 + scale)
    rows = jnp.arange(n)
    own = value[rows, choice]
    options = jnp.arange(value.shape[1], dtype=choice.dtype)
    others = available & (options[None, :] != choice[:, None])
    gap = jnp.where(others, own[:, None] - value, jnp.inf)  # >= -window at a solution
    near = jnp.abs(gap) <= window[:, None]
    n_near = jnp.sum(near, axis=1)
    alt = jnp.argmin(jnp.abs(gap), axis=1).astype(choice.dtype)  # the nearest other option
    tied = n_near >= 1
    closeness = jnp.where(tied, jnp.abs(gap[rows, alt]), jnp.inf)
    chosen, alt_model = market.chosen_model(choice), market.chosen_model(alt)

    # Per model: a tied customer of that model (it would leave if the price rose) first, else a
    # tied customer whose alternative is that model; the smallest gap within each class, then the
    # lowest customer index. Per-model reductions over customers: O(N K), not O(N M).
    inf = jnp.asarray(jnp.inf, closeness.dtype)
    of_key = jnp.where(tied, closeness, inf)
    to_key = jnp.where(tied & (choice > 0), 1e30 + closeness, inf)
    best_key = jnp.minimum(
        market.per_model(of_key, choice, m, "min", inf),
        market.per_model(to_key, jnp.where(choice > 0, alt, 0), m, "min", inf),
    )
    has = jnp.isfinite(best_key)
    j_of, j_to = jnp.maximum(chosen - 1, 0), jnp.maximum(alt_model - 1, 0)
    first_of = jnp.where(tied & (chosen > 0) & (of_key == best_key[j_of]), rows, n)
    first_to = jnp.where(tied & (choice > 0) & (alt_model > 0) & (to_key == best_key[j_to]), rows, n)
    pick_of = market.per_model(first_of, choice, m, "min", n)
    pick_to = market.per_model(first_to, jnp.where(choice > 0, alt, 0), m, "min", n)
    via_choice = pick_of <= pick_to
    best = jnp.minimum(jnp.minimum(pick_of, pick_to), n - 1).astype(choice.dtype)
    other = jnp.where(via_choice, alt_model[best], chosen[best])

    at_lo, at_hi = _at_box_ends(prices, mo)
    sold = market.per_model(jnp.ones(n, bool), choice, m, "max", False)
    kind = jnp.where(at_hi, HIGH, jnp.where(at_lo, LOW, jnp.where(has, CUSTOMER, UNSOLD)))
    pinned = kind == CUSTOMER
    customer = jnp.where(pinned, best, -1).astype(jnp.int32)
    other = jnp.where(pinned, other, -1).astype(jnp.int32)
    # Stable: every tie is one pin, each pinned customer is tied two ways only and pins one model,
    # and every sold interior price is pinned by a customer.
    used = jnp.zeros(n, jnp.int32).at[jnp.where(pinned, best, jnp.asarray(n, best.dtype))].add(1, mode="drop")
    interior_sold = sold & ~at_hi & ~at_lo
    stable = (
        (jnp.sum(tied) == jnp.sum(pinned))
        & jnp.all(used <= 1)
        & jnp.all(jnp.where(tied, n_near == 1, True))
        & jnp.all(jnp.where(interior_sold, pinned, True))
    )
    return PinPattern(kind=kind.astype(jnp.int32), customer=customer, other=other, stable=stable)


def _residual(market: AnyMarket, prices, pins: PinPattern):
    """F(p, theta) of the module docstring, one row per model."""
    mo = market.models
    values = value_market(market)
    value = with_opt_out(rental_options(values, prices).value, 0.0)
    i = jnp.maximum(pins.customer, 0)
    # Models -> the pinning customer's options (1-based; 0 = no rental).
    own = value[i, 1 + values.slot(i, jnp.arange(market.n_models))]
    other = jnp.maximum(pins.other, 0)
    alt = value[i, jnp.where(other > 0, 1 + values.slot(i, jnp.maximum(other - 1, 0)), 0)]
    return jnp.select(
        [pins.kind == CUSTOMER, pins.kind == LOW, pins.kind == HIGH],
        [own - alt, prices - mo.price_lo, prices - mo.price_hi],
        prices - lax.stop_gradient(prices),
    )


@eqx.filter_custom_jvp
def equilibrium_prices(market: AnyMarket, prices, pins: PinPattern):
    """`prices` (a solution of `market` pinned by `pins`), carrying the equilibrium's derivative.

    The value is `prices` itself; its derivative with respect to the market's floating fields is
    the implicit one of the module docstring, whatever solver found the prices. `prices` and
    `pins` are not differentiated.
    """
    return prices


@equilibrium_prices.def_jvp
def _equilibrium_prices_jvp(primals, tangents):
    market, prices, pins = primals
    t_market = tangents[0]
    prices = lax.stop_gradient(prices)
    dynamic, static = eqx.partition(market, eqx.is_inexact_array)
    if t_market is None:
        return prices, jnp.zeros_like(prices)
    t_dynamic = _float_tangents(dynamic, t_market)

    def residual(d, p):
        return _residual(eqx.combine(d, static), p, pins)

    return prices, _implicit_tangent(residual, dynamic, prices, t_dynamic)


def _relaxed_residual(market: AnyMarket, prices, temperature, at_lo, at_hi):
    """The relaxed equilibrium's conditions: zero price gradient, or the price at its box end."""
    mo = market.models
    values = value_market(market)
    grad = jax.grad(lambda p: relaxed_profit(values, p, temperature))(prices)
    return jnp.where(at_lo, prices - mo.price_lo, jnp.where(at_hi, prices - mo.price_hi, grad))


@eqx.filter_custom_jvp
def relaxed_equilibrium_prices(market: AnyMarket, prices, temperature):
    """`prices`, a stationary point of the relaxed profit at `temperature`, carrying its derivative.

    The relaxed counterpart of [`lmaas_jax.equilibrium_prices`][]: where the relaxed profit
    ([`lmaas_jax.relaxed_seller_profit`][]) is stationary in the prices (or a price sits at its box
    end), the implicit function theorem on its price gradient gives dp = -H^-1 d(grad)/d theta, with
    H the relaxed profit's Hessian in the prices (differentiable in the market and the temperature).
    As the temperature falls it tends to the exact derivative (tested on a closed form). Find the
    stationary point with [`lmaas_jax.relaxed_equilibrium`][].
    """
    return prices


@relaxed_equilibrium_prices.def_jvp
def _relaxed_equilibrium_prices_jvp(primals, tangents):
    market, prices, temperature = primals
    t_market, _, t_temperature = tangents
    return relaxed_tangent(_relaxed_residual, market, prices, temperature, t_market, t_temperature)


def relaxed_tangent(residual_of, market, prices, temperature, t_market, t_temperature):
    """`(prices, dprices)` of a relaxed stationary point: the implicit function theorem on
    `residual_of(market, p, t, at_lo, at_hi) = 0` in the market's floating fields and the temperature,
    the box ends held (shared by one seller's and the sellers' stacked conditions)."""
    prices = lax.stop_gradient(prices)
    temperature = jnp.asarray(temperature, prices.dtype)
    at_lo, at_hi = _at_box_ends(prices, market.models)
    dynamic, static = eqx.partition(market, eqx.is_inexact_array)
    t_dynamic = _float_tangents(dynamic, t_market)
    t_t = jnp.zeros_like(temperature) if t_temperature is None else jnp.asarray(t_temperature, prices.dtype)

    def residual(theta, p):
        d, t = theta
        return residual_of(eqx.combine(d, static), p, t, at_lo, at_hi)

    return prices, _implicit_tangent(residual, (dynamic, temperature), prices, (t_dynamic, t_t))


@eqx.filter_jit
def relaxed_equilibrium(market: AnyMarket, temperature, start, *, iterations: int = 50):
    """A stationary point of the relaxed profit at a fixed `temperature`, from `start` (shape `(M,)`).

    Projected Newton steps on the relaxed profit (a gradient step where the Hessian is not negative
    definite), each the longest of 1, 1/2, ..., 2^-40 of the step that raises the relaxed profit,
    `iterations` of them (so the profit never falls); returns the prices through
    [`lmaas_jax.relaxed_equilibrium_prices`][], so they are differentiable in the market and the
    temperature. A local stationary point: start it from a good price vector (an exact solution's
    prices, for instance).
    """
    fixed = lax.stop_gradient(market)
    t = lax.stop_gradient(jnp.asarray(temperature, fixed.dtype))
    mo = fixed.models
    values = value_market(fixed)
    f = lambda p: relaxed_profit(values, p, t)  # noqa: E731
    width = mo.price_hi - mo.price_lo

    def step(_, p):
        g = jax.grad(f)(p)
        h = jax.hessian(f)(p)
        newton = -jnp.linalg.solve(h, g)
        concave = jnp.all(jnp.linalg.eigvalsh(0.5 * (h + h.T)) < 0) & jnp.all(jnp.isfinite(newton))
        # A gradient direction scaled to the box where the Newton step does not apply.
        direction = jnp.where(concave, newton, width * g / (jnp.max(jnp.abs(g * width)) + 1e-30))
        # Backtracking: the longest of 1, 1/2, ..., 2^-40 that raises the relaxed profit.
        sizes = 0.5 ** jnp.arange(41, dtype=p.dtype)
        trials = jnp.clip(
            p[None, :] + sizes[:, None] * direction[None, :], mo.price_lo[None, :], mo.price_hi[None, :]
        )
        values = jax.vmap(f)(trials)
        better = values > f(p)
        k = jnp.argmax(better)
        return jnp.where(better[k], trials[k], p)

    p = lax.fori_loop(0, iterations, step, lax.stop_gradient(jnp.asarray(start, fixed.dtype)))
    return relaxed_equilibrium_prices(market, p, temperature)
