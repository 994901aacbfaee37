"""The relaxed competitive game: customers mix by the relaxed RSR's softmax, sellers' payoffs are
smooth, and an equilibrium solves the sellers' stacked first-order conditions."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._checks import check_prices, in_range
from ..pricing._ascent import useful_top
from ..pricing._equilibrium import relaxed_tangent
from ..robust._relaxed_rsr import checked_temperature, relaxed_respond
from ..robust._rsr import rental_options, value_market
from ..scenarios._market import AnyMarket, ValueMarket, check_market
from ._owners import check_owner

# Ascent steps per seller per round of the relaxed best responses.
INNER = 2
# The relaxed best responses start at this multiple of the temperature (see `_relaxed_compete`).
HOMOTOPY = 8.0
# A model selling at most this fraction of the best-selling model's hours is out of the market: its
# seller's payoff is flat in its price, so the second-order condition does not test it.
OUT_OF_MARKET = 1e-6
# A residual within this many `floor`s (what rounding the prices leaves) counts as converged.
FLOOR_FACTOR = 8.0


def relaxed_profits_by_seller(
    values: ValueMarket, prices, owner: Int[Array, " models"], n_sellers: int, temperature
) -> Float[Array, " sellers"]:
    """Each seller's relaxed profit (internal): its expected margins under the relaxed responses,
    minus its training costs."""
    response = relaxed_respond(values, prices, temperature)
    margin = rental_options(values, prices).seller_margin
    seller = jnp.concatenate([owner, jnp.asarray([n_sellers], owner.dtype)])[values.model_ids()]
    earned = jnp.zeros(n_sellers + 1, prices.dtype).at[seller].add(response.probabilities[:, 1:] * margin)
    fixed = jnp.zeros(n_sellers, prices.dtype).at[owner].add(values.models.training_cost)
    return earned[:n_sellers] - fixed


def own_gradient(values, prices, owner, n_sellers, temperature) -> Float[Array, " models"]:
    """d Pi_{owner[j]} / d beta_j for every model j: the sellers' stacked first-order conditions."""
    jac = jax.jacrev(lambda p: relaxed_profits_by_seller(values, p, owner, n_sellers, temperature))(prices)
    return jac[owner, jnp.arange(prices.shape[0])]


def _residual(market, prices, owner, n_sellers, temperature, at_lo, at_hi):
    """The relaxed equilibrium's conditions: each price's own seller's derivative zero, or the price
    at its box end."""
    mo = market.models
    g = own_gradient(value_market(market), prices, owner, n_sellers, temperature)
    return jnp.where(at_lo, prices - mo.price_lo, jnp.where(at_hi, prices - mo.price_hi, g))


@eqx.filter_custom_jvp
def relaxed_competition_prices(market: AnyMarket, owner, prices, temperature, n_sellers):
    """`prices`, a relaxed equilibrium between the sellers `owner` names, carrying its derivative in
    the market's floating fields and the temperature: the implicit function theorem on the stacked
    first-order conditions (`_residual`), dp = -F_p^-1 F_theta dtheta."""
    return prices


@relaxed_competition_prices.def_jvp
def _relaxed_competition_prices_jvp(primals, tangents):
    market, owner, prices, temperature, n_sellers = primals
    t_market, _, _, t_temperature, _ = tangents

    def residual(m, p, t, at_lo, at_hi):
        return _residual(m, p, owner, n_sellers, t, at_lo, at_hi)

    return relaxed_tangent(residual, market, prices, temperature, t_market, t_temperature)


class RelaxedCompetition(eqx.Module):
    """The outcome of [`lmaas_jax.relaxed_compete`][].

    **Fields:**

    - `prices`: shape `(M,)`, the relaxed equilibrium ($/h), differentiable in the market's floating
      fields and the temperature (implicit function theorem on the stacked first-order conditions).
    - `profits`: shape `(S,)`, each seller's relaxed profit at `prices` ($).
    - `residual`: the largest first-order condition left, |d Pi_s / d beta_j| over the models not
      held at a box end, relative to the hours model j sells (plus one hour): 0 at an equilibrium.
    - `floor`: the residual that rounding alone can leave: the largest change of the conditions (in
      the units of `residual`) when every price moves by one unit in its last place. No
      representable prices need do better; in float32 it is about 1e-7 to 1e-5 on default markets
      (the conditions cancel two terms of the size of the hours sold), in float64 about 1e-15.
    - `second_order`: shape `(S,)`, whether seller s's relaxed profit is locally concave in its own
      prices off the box ends (its Hessian block negative definite): a local maximum of its payoff.
    - `converged`: `residual <= max(rtol, FLOOR_FACTOR * floor)` and every `second_order`: rounding
      the prices leaves up to `floor`, and evaluating the conditions in the same precision adds an
      error of the same order (float32 residuals on default markets measured up to about 4 floors;
      `FLOOR_FACTOR` = 8 leaves a factor of two).
    - `temperature`: the temperature ($).
    """

    prices: Float[Array, " models"]
    profits: Float[Array, " sellers"]
    residual: Float[Array, ""]
    floor: Float[Array, ""]
    second_order: Bool[Array, " sellers"]
    converged: Bool[Array, ""]
    temperature: Float[Array, ""]


def _check(market, owner, temperature, *, start=None, rounds=200, newton=20, rtol=None, n_sellers=None):
    check_market(market)
    check_owner(owner, market.n_models, n_sellers)
    checked_temperature(temperature)
    if start is not None:
        check_prices("start", start, market.n_models)
    for name, value in (("rounds", rounds), ("newton", newton)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0; got {value!r}.")
    if rtol is not None:
        in_range("rtol", rtol, 0.0, math.inf, finite=True)


def relaxed_compete(
    market: AnyMarket,
    owner: ArrayLike,
    temperature: Float[ArrayLike, ""],
    *,
    start: Float[ArrayLike, " models"] | None = None,
    rounds: int = 200,
    newton: int = 20,
    rtol: float | None = None,
    n_sellers: int | None = None,
) -> RelaxedCompetition:
    """The relaxed competitive equilibrium: prices at which every seller's relaxed profit is stationary
    in its own prices, the others fixed.

    Customers mix over every seller's options by softmax(value / `temperature`)
    ([`lmaas_jax.relaxed_rsr`][]), so seller s's payoff Pi_s (its expected margins minus its
    training costs) is smooth, and an interior equilibrium solves the stacked first-order
    conditions dPi_{owner[j]} / d beta_j = 0, one per model (a price may instead sit at its box end).
    Solved in two phases: `rounds` rounds of relaxed best responses in turn (each seller `INNER`
    backtracked Newton ascent steps on its own prices, scaled gradient steps where its profit is
    not concave there), the temperature falling from `HOMOTOPY` times `temperature` to it over the
    first half (best responses can cycle at a low temperature, and settle at a high one), which
    move towards an equilibrium from afar; then `newton` Newton steps on
    the stacked conditions (backtracked on their norm, the box ends held), which converge
    quadratically near one. The second-order conditions are checked per seller (on the models that
    sell: a model out of the market has a flat payoff); Newton's result is kept only where they
    hold (Newton also converges to saddles) and its residual is no larger. As the
    temperature falls the relaxed equilibrium tends to the exact one where that exists (tested on
    Bertrand markets); the derivative of `prices` is exact for the relaxed game at any temperature.

    `jax.jit` and `jax.vmap` over markets (and temperatures, starts) work; give `n_sellers` when
    `owner` is traced.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][].
    - `owner`: shape `(M,)` integers, the seller of each model (as in [`lmaas_jax.compete`][]).
    - `temperature`: > 0 ($), the scale of customers' robust profits at which they mix.
    - `start`: the first prices; default the middle of each model's useful range (from its
      serving cost, or `price_lo` if higher, to just above the highest value rate any customer has).
    - `rounds`, `newton`: iterations of the two phases.
    - `rtol`: the `residual` that counts as converged (or a few times the `floor` rounding leaves,
      where that is larger: see [`lmaas_jax.RelaxedCompetition`][]); default 1e-6.
    - `n_sellers`: S; default `max(owner) + 1`.

    **Returns:**

    A [`lmaas_jax.RelaxedCompetition`][].
    """
    _check(
        market, owner, temperature, start=start, rounds=rounds, newton=newton, rtol=rtol, n_sellers=n_sellers
    )
    n_sellers = check_owner(owner, market.n_models, n_sellers)
    if rtol is None:
        rtol = 1e-6
    # The temperature as an array, so that one compilation serves every temperature.
    temperature = jnp.asarray(temperature, market.dtype)
    return _relaxed_compete(
        market, jnp.asarray(owner, jnp.int32), temperature, start, rounds, newton, rtol, n_sellers
    )


@eqx.filter_jit
def _relaxed_compete(market, owner, temperature, start, rounds, newton, rtol, n_sellers):
    fixed = lax.stop_gradient(market)
    values = value_market(fixed)
    dtype = values.dtype
    t = checked_temperature(lax.stop_gradient(jnp.asarray(temperature, dtype)))
    mo = values.models
    lo, hi = mo.price_lo, mo.price_hi
    floor = jnp.clip(mo.serving_cost, lo, hi)
    top = jnp.maximum(useful_top(values), floor)
    width = jnp.maximum(top - floor, jnp.finfo(dtype).eps * (1.0 + top))
    m = owner.shape[0]
    if start is None:
        p0 = 0.5 * (floor + top)
    else:
        p0 = jnp.clip(lax.stop_gradient(jnp.asarray(start, dtype)), lo, hi)

    def profits(p):
        return relaxed_profits_by_seller(values, p, owner, n_sellers, t)

    sizes = 0.5 ** jnp.arange(41, dtype=dtype)

    def held_at_box(p, g):
        """Prices at a box end whose gradient points out of the box: held there."""
        return ((p <= lo) & (g <= 0)) | ((p >= hi) & (g >= 0))

    def ascend(s, p, temp):
        """One backtracked Newton ascent step of seller s on its own prices at temperature `temp`,
        projected: a price at its box end whose gradient points out of the box stays there (a
        Newton step through it, then clipped, need not ascend, and the ascent could stall)."""
        f = lambda q: relaxed_profits_by_seller(values, q, owner, n_sellers, temp)[s]  # noqa: E731
        grad = jax.grad(f)(p)
        held = held_at_box(p, grad)
        mine = (owner == s) & ~held
        g = jnp.where(mine, grad, 0.0)
        h = jax.hessian(f)(p)
        both = mine[:, None] & mine[None, :]
        h = jnp.where(both, h, -jnp.eye(m, dtype=dtype))
        newton_dir = -jnp.linalg.solve(h, g)
        concave = jnp.all(jnp.linalg.eigvalsh(0.5 * (h + h.T)) < 0) & jnp.all(jnp.isfinite(newton_dir))
        direction = jnp.where(concave, newton_dir, width * g / (jnp.max(jnp.abs(g * width)) + 1e-30))
        trials = jnp.clip(p[None, :] + sizes[:, None] * direction[None, :], lo[None, :], hi[None, :])
        gains = jax.vmap(f)(trials) > f(p)
        k = jnp.argmax(gains)
        return jnp.where(gains[k], trials[k], p)

    def best_responses(r, p):
        # Continuation in the temperature: from HOMOTOPY x t down to t over the first half of the
        # rounds, then at t. At a high temperature every payoff is smooth and nearly concave and the
        # best responses settle; followed down, they stay near the equilibrium they track instead
        # of cycling, as they can when started at a low temperature far from it.
        frac = jnp.minimum(2.0 * r / max(rounds, 1), 1.0).astype(dtype)
        temp = t * HOMOTOPY ** (1.0 - frac)
        for s in range(n_sellers):
            p = lax.fori_loop(0, INNER, lambda _, q, s=s: ascend(s, q, temp), p)
        return p

    p = lax.fori_loop(0, rounds, best_responses, p0)

    def conditions(p):
        g = own_gradient(values, p, owner, n_sellers, t)
        return g, held_at_box(p, g)

    def newton_step(_, p):
        g, held = conditions(p)
        jac = jax.jacfwd(lambda q: own_gradient(values, q, owner, n_sellers, t))(p)
        free = ~held
        jac = jnp.where(free[:, None] & free[None, :], jac, jnp.eye(m, dtype=dtype))
        step = -jnp.linalg.solve(jac, jnp.where(free, g, 0.0))
        step = jnp.where(jnp.isfinite(step), step, 0.0)
        trials = jnp.clip(p[None, :] + sizes[:, None] * step[None, :], lo[None, :], hi[None, :])

        def norm(q):
            gq, heldq = conditions(q)
            return jnp.sum(jnp.where(heldq, 0.0, gq) ** 2)

        better = jax.vmap(norm)(trials) < norm(p)
        k = jnp.argmax(better)
        return jnp.where(better[k], trials[k], p)

    def checks(p):
        """(residual, floor, second-order condition per seller) at p."""
        g, held = conditions(p)
        sold = _hours_by_model(values, p, t)
        residual = jnp.max(jnp.where(held, 0.0, jnp.abs(g) / (sold + 1.0)))
        # What one unit in the last place of every price can move the conditions by.
        jac = jax.jacfwd(lambda q: own_gradient(values, q, owner, n_sellers, t))(p)
        rounding = jnp.abs(jac) @ jnp.spacing(jnp.abs(p))
        floor = jnp.max(jnp.where(held, 0.0, rounding / (sold + 1.0)))
        # A model that sells (next to) nothing has a flat payoff in its price: no curvature to test.
        out = held | (sold <= OUT_OF_MARKET * jnp.max(sold))

        def concave(s):
            mine = (owner == s) & ~out
            h = jax.hessian(lambda q: profits(q)[s])(p)
            h = jnp.where(mine[:, None] & mine[None, :], h, -jnp.eye(m, dtype=dtype))
            return jnp.all(jnp.linalg.eigvalsh(0.5 * (h + h.T)) < 0)

        return residual, floor, jnp.stack([concave(s) for s in range(n_sellers)])

    # Newton on the stacked conditions finds any stationary point, saddles included: keep its
    # result only where every seller's payoff is at a local maximum there, else the best responses'.
    polished = lax.fori_loop(0, newton, newton_step, p)
    r1, floor1, second1 = checks(p)
    r2, floor2, second2 = checks(polished)
    ok1, ok2 = jnp.all(second1), jnp.all(second2)
    take = (ok2 & ~ok1) | ((ok2 == ok1) & (r2 <= r1))
    p = jnp.where(take, polished, p)
    residual, floor = jnp.where(take, r2, r1), jnp.where(take, floor2, floor1)
    second = jnp.where(take, second2, second1)
    prices = relaxed_competition_prices(market, owner, p, temperature, n_sellers)
    return RelaxedCompetition(
        prices=prices,
        profits=relaxed_profits_by_seller(
            value_market(market), prices, owner, n_sellers, jnp.asarray(temperature, dtype)
        ),
        residual=residual,
        floor=floor,
        second_order=second,
        converged=(residual <= jnp.maximum(rtol, FLOOR_FACTOR * floor)) & jnp.all(second),
        temperature=jnp.asarray(temperature, dtype),
    )


def _hours_by_model(values, prices, t):
    """The hours each model sells under the relaxed responses, shape `(M,)`."""
    response = relaxed_respond(values, prices, t)
    hours = response.probabilities[:, 1:] * rental_options(values, prices).duration
    ids = values.model_ids()
    return jnp.zeros(values.n_models, hours.dtype).at[ids.reshape(-1)].add(hours.reshape(-1), mode="drop")
