"""Price competition between sellers: best-response dynamics with exact best responses by IMP."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from ..._checks import check_prices, in_range
from ..pricing._ascent import useful_top
from ..pricing._imp import GradientIMP, imp
from ..robust._rsr import RSRResponse, respond, tie_tolerance, value_market
from ..scenarios._market import AnyMarket, check_market
from ._owners import best_response_market, check_owner, profits_by_seller

# The price ticks of the dynamics, as fractions of each model's useful price range (see `compete`):
# a ladder of undercuts at tick d is at most 1/d moves long, and each tick is 1/32 of the one
# before, so after the first tick a ladder is at most 32 moves. The last tick bounds what a seller
# can leave on the table, so it is near each dtype's resolution of the tie rule (float32: 1e-5).
TICKS = {"float64": (2.0**-6, 2.0**-11, 2.0**-16, 2.0**-21), "float32": (2.0**-6, 2.0**-11, 2.0**-16)}


class Competition(eqx.Module):
    """The outcome of [`lmaas_jax.compete`][]: prices that the sellers' best responses left in place,
    or, where none were found, the best prices of the cycle the dynamics fell into.

    **Fields:**

    - `prices`: shape `(M,)`, $ per rented hour.
    - `profits`: shape `(S,)`, each seller's exact profit at `prices`
      ([`lmaas_jax.seller_profits`][]) ($).
    - `deviation_gain`: shape `(S,)`, each seller's best gain from re-pricing its own models alone,
      the others fixed, by the library's best response (IMP on [`lmaas_jax.best_response_market`][],
      ties in the deviator's favour) ($); `<= tolerance` for every seller when `converged`.
    - `tolerance`: shape `(S,)`, the gain each seller may leave: `rtol * max(profit, 0) + atol` ($).
    - `converged`: whether every seller's `deviation_gain` is within its `tolerance`: the prices are
      an equilibrium to that tolerance, as far as IMP's best responses can tell (each is a
      heuristic best response; `lmaas_jax.reference.milp_best_response` is exact on small markets).
    - `cycle`: 0, or the length (in best responses) of the cycle of prices the dynamics returned to;
      `prices` are then the cycle's state with the smallest largest gain relative to its tolerance.
    - `rounds`: rounds of best responses run (a round: every seller once, in turn).
    - `best_responses`: IMP runs, the dynamics' cost.
    - `owner`: shape `(M,)`, the seller of each model.
    - `response`: the customers' [`lmaas_jax.RSRResponse`][] at `prices`.
    """

    prices: Float[Array, " models"]
    profits: Float[Array, " sellers"]
    deviation_gain: Float[Array, " sellers"]
    tolerance: Float[Array, " sellers"]
    converged: Bool[Array, ""]
    cycle: int
    rounds: int
    best_responses: int
    owner: Int[Array, " models"]
    response: RSRResponse


@eqx.filter_jit
def _best_response(values, prices, owner, seller, solver, key, tol):
    """Seller `seller`'s best response to `prices` (IMP on the market it sees): the full price vector
    with its models re-priced, and the supremum of its profit there (ties in its favour)."""
    sol = imp(best_response_market(values, prices, owner, seller), solver, key=key, tie_tol=tol)
    return jnp.where(owner == seller, sol.prices, prices), sol.stats["profit_supremum"]


@eqx.filter_jit
def _profits(values, prices, owner, n_sellers, tol):
    return profits_by_seller(values, prices, owner, n_sellers, tol)


@eqx.filter_jit
def _outcome(market, values, prices, tol):
    return respond(market, values, prices, tol)


def unresolved_gain(values, span, tick: float, tie_tol: float) -> float:
    """The gain the dynamics cannot resolve at price tick `tick` ($): the tick's effect plus the tie
    rule's, the default `atol` of `compete` is twice it at the last tick.

    Lowering a seller's prices by `tick` times their useful ranges `span` moves its profit by at
    most tick x sum_i max_j span_j min(hours_ij, H_i) (each customer rents one model), so two
    rivals a tick apart may each gain that much; and prices are posted off the customers'
    breakpoints by the tie tolerance, tie_tol x (1 + G_i) per customer (G_i the customer's largest
    worst-case value before rent, as in [`lmaas_jax.rsr`][]), which a rival's undercut can win back.
    Two sellers of one good, who earn nothing at cost, converge only with this much slack; in float64
    it is about 1e-6 of the market's value, in float32 (ticks to 2^-16, tie tolerance 1e-5) about
    1e-4.
    """
    hours = jnp.minimum(values.hours, values.customers.horizon[:, None])
    live = values.hours > 0
    moved = jnp.where(live, values.per_option(span) * hours, 0.0)
    gross = jnp.where(live, values.rate * hours, 0.0)
    ties = tie_tol * jnp.sum(1.0 + jnp.max(gross, axis=1))
    return float(tick * jnp.sum(jnp.max(moved, axis=1)) + ties)


def _check_compete(
    market,
    owner,
    solver=None,
    *,
    key,
    start=None,
    max_rounds=50,
    rtol=1e-4,
    atol=None,
    tie_tol=None,
    n_sellers=None,
):
    check_market(market)
    check_owner(owner, market.n_models, n_sellers)
    if solver is not None and not isinstance(solver, GradientIMP):
        raise TypeError(f"solver must be a lmaas_jax.GradientIMP or None; got {type(solver).__name__}.")
    if start is not None:
        check_prices("start", start, market.n_models)
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int | np.integer) or max_rounds < 1:
        raise ValueError(f"max_rounds must be an int >= 1; got {max_rounds!r}.")
    in_range("rtol", rtol, 0.0, math.inf, finite=True)
    if atol is not None:
        in_range("atol", atol, 0.0, math.inf, finite=True)
    tie_tolerance(market, tie_tol)


def compete(
    market: AnyMarket,
    owner: ArrayLike,
    solver: GradientIMP | None = None,
    *,
    key: PRNGKeyArray,
    start: Float[ArrayLike, " models"] | None = None,
    max_rounds: int = 50,
    rtol: float = 1e-4,
    atol: float | None = None,
    tie_tol: float | None = None,
) -> Competition:
    """A price equilibrium between the sellers that own the models, by best-response dynamics.

    Seller `owner[j]` sets model j's price to maximise its own profit
    ([`lmaas_jax.seller_profits`][]) while the customers choose across every seller's models by
    their robust responses ([`lmaas_jax.rsr`][]). A seller's best response to the others' prices is
    [`lmaas_jax.imp`][] on [`lmaas_jax.best_response_market`][] (ties in the deviator's favour: an
    equilibrium must survive arbitrarily small undercuts), always with the same key per seller, so a
    best response is a function of the others' prices and a revisited state is a true cycle.

    **The dynamics.** From `start`, the sellers answer in turn (Gauss-Seidel: each answers the
    latest prices, which damps the simultaneous overshoots of everyone answering at once, and makes
    one seller's cycle of answers a cycle of states): seller s moves when its best response gains
    more than its tolerance, to the best response's prices lowered by a *tick* (each of its models'
    price minus the tick times the model's useful price range, never below max(price_lo, o_j)).
    Without the tick two sellers contesting a customer would undercut each other by the smallest
    price step, a ladder of millions of moves (Bertrand competition); with it a ladder down a range
    takes at most 1/tick moves. Ticks shrink by 32 from 1/64 of the range (`TICKS`: to 2^-21 in
    float64, 2^-16 in float32). The dynamics stop at the first round in which no seller gains more
    than its tolerance (`converged`), or when a state recurs (`cycle`: no pure equilibrium is reached
    from here; the cycle's least unstable state is returned), or after the last tick.

    `compete` is a Python loop of jitted best responses (one compilation per market shape and
    dtype): call it on one market at a time. [`lmaas_jax.relaxed_compete`][] is the counterpart that
    `jax.jit`, `jax.vmap` and derivatives go through.

    **Equilibria need not exist.** With finitely many customers, price competition between
    differentiated sellers often has no pure equilibrium (Edgeworth cycles: sellers undercut each
    other down to where one gains more by raising its price to its captive customers); `converged`
    then stays False and `deviation_gain` says how far the returned prices are from one. The
    docs' "Competition" page has the formulation, the tie rule and measured rates of convergence.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][] (one market).
    - `owner`: shape `(M,)` integers, the seller of each model (sellers 0..S-1, each owning one);
      all zeros is the single-seller game, where the result is `lj.imp(market, solver,
      key=jax.random.fold_in(key, 0))`.
    - `solver`: the [`lmaas_jax.GradientIMP`][] of every best response; default
      `GradientIMP.for_market(market)`.
    - `key`: seller s's best responses use `jax.random.fold_in(key, s)`.
    - `start`: the first prices; default the single-seller optimum (`lj.imp` with seller 0's key,
      the prices a cartel would set), from which competition undercuts.
    - `max_rounds`: rounds per tick.
    - `rtol`, `atol`: a seller's gain counts when it exceeds `rtol * max(profit, 0) + atol`;
      default `atol` twice `unresolved_gain` at the last tick (what the ticks and the tie rule
      leave unresolved, so that two sellers of one good, who earn nothing at cost, converge).
    - `tie_tol`: as in [`lmaas_jax.rsr`][].

    **Returns:**

    A [`lmaas_jax.Competition`][].
    """
    _check_compete(
        market,
        owner,
        solver,
        key=key,
        start=start,
        max_rounds=max_rounds,
        rtol=rtol,
        atol=atol,
        tie_tol=tie_tol,
    )
    n_sellers = check_owner(owner, market.n_models)
    owner = jnp.asarray(owner, jnp.int32)
    solver = GradientIMP.for_market(market) if solver is None else solver
    tol = tie_tolerance(market, tie_tol)
    values = jax.lax.stop_gradient(value_market(market))
    keys = [jax.random.fold_in(key, s) for s in range(n_sellers)]
    ticks = TICKS["float64" if values.dtype == jnp.float64 else "float32"]
    calls = 0

    def respond_best(prices, s):
        nonlocal calls
        calls += 1
        new, supremum = _best_response(values, prices, owner, jnp.int32(s), solver, keys[s], tol)
        return new, float(supremum)

    def profits(prices):
        return np.asarray(_profits(values, prices, owner, n_sellers, tol), np.float64)

    if start is None:  # one seller owning everything: the cartel's prices
        whole = jnp.zeros_like(owner)
        prices, _ = _best_response(values, values.models.price_hi, whole, jnp.int32(0), solver, keys[0], tol)
        calls += 1
    else:
        prices = jnp.asarray(start, values.dtype)
    mo = values.models
    floor = jnp.maximum(mo.price_lo, mo.serving_cost)
    span = jnp.maximum(useful_top(values) - floor, 0.0)
    atol = 2.0 * unresolved_gain(values, span, ticks[-1], tol) if atol is None else float(atol)

    def tolerance(profit):
        return rtol * np.maximum(profit, 0.0) + atol

    def all_gains(prices):
        now = profits(prices)
        return np.array([respond_best(prices, s)[1] for s in range(n_sellers)]) - now, now

    rounds, cycle, converged, gains = 0, 0, False, None
    states: list = []
    for tick in ticks:
        seen: dict = {}
        for _ in range(max_rounds):
            rounds += 1
            moved, gains = False, np.zeros(n_sellers)
            for s in range(n_sellers):
                now = profits(prices)
                new, supremum = respond_best(prices, s)
                gains[s] = supremum - now[s]
                if gains[s] > tolerance(now[s]):
                    lowered = jnp.where(new > floor, jnp.maximum(new - tick * span, floor), new)
                    lowered = jnp.where(owner == s, lowered, prices)
                    if not bool(jnp.all(lowered == prices)):
                        prices, moved = lowered, True
                        # A state a move returns to, with the same seller next, repeats forever.
                        state = (np.asarray(prices).tobytes(), (s + 1) % n_sellers)
                        if state in seen:
                            cycle = len(states) - seen[state]
                            break
                        seen[state] = len(states)
                        states.append(prices)
            if cycle or not moved:
                break
        if cycle:
            break
        now = profits(prices)
        if not moved and bool(np.all(gains <= tolerance(now))):
            converged = True
            break
        states = []
    if cycle:
        best = None
        for state in states[len(states) - cycle :]:
            g, now = all_gains(state)
            worst = float(np.max(g / np.maximum(tolerance(now), np.finfo(np.float64).tiny)))
            if best is None or worst < best[0]:
                best = (worst, state, g)
        _, prices, gains = best
    elif not converged:
        gains, _ = all_gains(prices)
    now = profits(prices)
    return Competition(
        prices=prices,
        profits=jnp.asarray(now, values.dtype),
        deviation_gain=jnp.asarray(gains, values.dtype),
        tolerance=jnp.asarray(tolerance(now), values.dtype),
        converged=jnp.asarray(converged),
        cycle=cycle,
        rounds=rounds,
        best_responses=calls,
        owner=owner,
        response=_outcome(jax.lax.stop_gradient(market), values, prices, tol),
    )
