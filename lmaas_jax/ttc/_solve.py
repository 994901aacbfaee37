"""Equilibrium, first best, the smoothed (Gibbs) market and the reverse second-price auction."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import checked, in_range, size
from ._market import (
    GameParams,
    Terms,
    TTCMarket,
    load_market,
    payoffs,
    potential_gain,
    profiles_from_index,
    terms,
)

# One name per concept: a provider's *level* is the index of its compute setting on its grid
# (`market.theta[i, level]` is the compute itself, *theta*); a joint choice of one level per provider
# is a *profile*, held as `levels` (int, one per provider).


class Equilibrium(eqx.Module):
    """A pure Nash equilibrium found by better-response dynamics (see [`equilibrium`][]).

    **Fields:** `levels` each provider's level (index into its compute grid), `rounds` the rounds
    of better responses taken (the last one moved nobody, unless `max_rounds` was reached).
    """

    levels: Int[Array, " n"]
    rounds: Int[Array, ""]


class FirstBest(eqx.Module):
    """The welfare-maximising profile (see [`first_best`][]).

    **Fields:** `welfare` SW* ($ per query), `levels` the maximiser's levels.
    """

    welfare: Float[Array, ""]
    levels: Int[Array, " n"]


class GibbsWelfare(eqx.Module):
    """The smoothed market of [`gibbs_welfare`][].

    **Fields:** `welfare` the expected welfare under the Gibbs distribution, `inefficiency`
    100 (SW* / welfare - 1) (percent).
    """

    welfare: Float[Array, ""]
    inefficiency: Float[Array, ""]


class AuctionBids(eqx.Module):
    """Each provider's truthful bid in the reverse auction (see [`auction_bids`][]).

    **Fields:** `levels` theta*_i's index, argmax of quality - cost; `quality` q_i, `cost` c_i at
    that level ($ per query); `score` q_i - c_i, what the auction ranks.
    """

    levels: Int[Array, " n"]
    quality: Float[Array, " n"]
    cost: Float[Array, " n"]
    score: Float[Array, " n"]


@eqx.filter_jit
def equilibrium(
    market: TTCMarket, params: GameParams, key: PRNGKeyArray, *, max_rounds: int = 1000, rtol: float = 1e-8
) -> Equilibrium:
    """Better-response dynamics of the spec: everyone starts at the lowest level; each round visits
    the providers in a random order (from `key`); a visited provider moves to the nearest level
    (by index distance, the lower one first at equal distance) that raises its utility by more than
    `rtol` relative; stop after a round without a move, or after `max_rounds`. The game has an exact
    potential in log utilities, so this converges. Utilities are compared in logs
    (`Payoffs.log_utilities`): at a large beta a share underflows (float32 at beta = 1e5), and
    utilities of 0 would leave those providers where they started. **Returns:** an [`Equilibrium`][]
    (`levels`, `rounds`)."""
    t = terms(market, params)
    n, levels = t.price.shape
    grid = jnp.arange(levels, dtype=jnp.int32)

    def visit(profile, i):
        log_u = jax.vmap(lambda lv: payoffs(t, profile.at[i].set(lv), params.beta).log_utilities[i])(grid)
        better = log_u > log_u[profile[i]] + jnp.log1p(rtol)  # u > (1 + rtol) u_current, u > 0
        order = 2 * jnp.abs(grid - profile[i]) + (grid > profile[i]).astype(jnp.int32)
        choice = jnp.argmin(jnp.where(better, order, 4 * levels)).astype(jnp.int32)
        moved = jnp.any(better)
        return profile.at[i].set(jnp.where(moved, choice, profile[i]).astype(jnp.int32)), moved

    def one_round(state):
        profile, key, rounds, _ = state
        key, sub = jax.random.split(key)
        profile, moved = lax.scan(visit, profile, jax.random.permutation(sub, n))
        return profile, key, rounds + 1, jnp.any(moved)

    start = (jnp.zeros((n,), jnp.int32), key, jnp.asarray(0), jnp.asarray(True))
    levels, _, rounds, _ = lax.while_loop(lambda s: s[3] & (s[2] < max_rounds), one_round, start)
    return Equilibrium(levels=levels, rounds=rounds)


def over_profiles(t: Terms, beta, chunk: int, reduce):
    """Apply `reduce(index, valid, profiles, payoffs)` to every chunk of `chunk` joint profiles (all
    L^n of them, numbered as in `profiles_from_index`), with `lax.map` so memory stays bounded."""
    n, levels = t.price.shape
    total = levels**n

    def one(c):
        index = c * chunk + jnp.arange(chunk)
        profiles = profiles_from_index(jnp.minimum(index, total - 1), n, levels)
        return reduce(index, index < total, profiles, jax.vmap(lambda p: payoffs(t, p, beta))(profiles))

    return lax.map(one, jnp.arange(-(-total // chunk)))


@eqx.filter_jit
def first_best_brute_force(market: TTCMarket, params: GameParams, *, chunk: int = 1 << 16) -> FirstBest:
    """max over all L^n joint profiles of the welfare, enumerated in chunks of `chunk` profiles
    (bounded memory; 6^9 = 10.1M profiles for nine instruct providers). **Returns:** a
    [`FirstBest`][] (`welfare` SW*, `levels`)."""
    t = terms(market, params)

    def best_of_chunk(index, valid, profiles, out):
        sw = jnp.where(valid, out.welfare, -jnp.inf)
        k = jnp.argmax(sw)
        return sw[k], index[k]

    best, where = over_profiles(t, params.beta, chunk, best_of_chunk)
    k = jnp.argmax(best)
    n, levels = t.price.shape
    return FirstBest(welfare=best[k], levels=profiles_from_index(where[k][None], n, levels)[0])


def _dinkelbach(t: Terms, beta, iterations: int):
    """Exact first best in O(n L) per iteration: SW = N / D with N = sum e^{beta V_i} w_i and
    D = 1 + sum e^{beta V_i}, w = q - c. max N/D = lambda* iff max_x N - lambda* D = 0, and
    N - lambda D = sum_i e^{beta V_i} (w_i - lambda) - lambda separates over providers; iterate
    lambda <- SW(argmax) (Dinkelbach), which is monotone and finite on a finite set."""
    n, _ = t.price.shape
    w = t.quality - t.cost

    def argmax_profile(lam):
        gap = w - lam
        tier = jnp.sign(gap)
        inner = jnp.where(gap > 0, beta * t.value + jnp.log(jnp.abs(gap) + 1e-300), 0.0)
        inner = jnp.where(gap < 0, -(beta * t.value + jnp.log(jnp.abs(gap) + 1e-300)), inner)
        top = jnp.max(tier, axis=1, keepdims=True)
        return jnp.argmax(jnp.where(tier == top, inner, -jnp.inf), axis=1).astype(jnp.int32)

    def step(carry, _):
        lam, profile = carry
        new = argmax_profile(lam)
        sw = payoffs(t, new, beta).welfare
        better = sw > lam
        return (jnp.where(better, sw, lam), jnp.where(better, new, profile)), None

    start = jnp.zeros((n,), jnp.int32)
    (lam, profile), _ = lax.scan(step, (payoffs(t, start, beta).welfare, start), None, length=iterations)
    return lam, profile


@eqx.filter_jit
def first_best(market: TTCMarket, params: GameParams, *, iterations: int = 30) -> FirstBest:
    """The first best SW* and its profile, exactly, by Dinkelbach's method (see `_dinkelbach`);
    equal to [`first_best_brute_force`][] (tested) at O(n L) per iteration instead of L^n.
    **Returns:** a [`FirstBest`][] (`welfare` SW*, `levels`)."""
    welfare, levels = _dinkelbach(terms(market, params), params.beta, iterations)
    return FirstBest(welfare=welfare, levels=levels)


class MarketOutcome(eqx.Module):
    """The pay-per-token market at one beta.

    **Fields:** `first_best` SW* ($ per query), `equilibrium_welfare` SW at the equilibrium
    reached by [`equilibrium`][], `inefficiency` 100 (SW* / SW_NE - 1) (percent), `theta` each
    provider's compute at that equilibrium, `levels` its index on the provider's grid,
    `avg_price` share-weighted price per query, `rounds` the better-response rounds taken.
    (`profile` and `level`, the old names of `theta` and `levels`, still read, with a
    DeprecationWarning.)
    """

    first_best: Float[Array, ""]
    equilibrium_welfare: Float[Array, ""]
    inefficiency: Float[Array, ""]
    theta: Float[Array, " n"]
    levels: Int[Array, " n"]
    avg_price: Float[Array, ""]
    rounds: Int[Array, ""]


@eqx.filter_jit
def outcome(market: TTCMarket, params: GameParams, key: PRNGKeyArray) -> MarketOutcome:
    """[`MarketOutcome`][] of `market` (first best by Dinkelbach); vmap it over `params.beta`."""
    eq_levels = equilibrium(market, params, key=key)
    level, rounds = eq_levels.levels, eq_levels.rounds
    t = terms(market, params)
    eq = payoffs(t, level, params.beta)
    best, _ = _dinkelbach(t, params.beta, 30)
    return MarketOutcome(
        first_best=best,
        equilibrium_welfare=eq.welfare,
        inefficiency=100.0 * (best / eq.welfare - 1.0),
        theta=market.theta[jnp.arange(level.shape[0]), level],
        levels=level,
        avg_price=eq.avg_price,
        rounds=rounds,
    )


def market_outcome(benchmark: str, method: str, beta: float, *, key: PRNGKeyArray, **params) -> MarketOutcome:
    """The bundled market (`benchmark` in GSM8K, AIME, GPQA; `method` in majority, best_of_n,
    effort) at user rationality `beta`; other [`GameParams`][] by keyword (markup, b, quality_fn)."""
    market = load_market(benchmark, method)  # GameParams checks beta, markup and b
    return outcome(market, GameParams(beta=jnp.asarray(beta, float), **params), key=key)


def _check_gibbs(market, params, sharpness, *, chunk: int = 1 << 14):
    in_range("sharpness", sharpness, 0.0, math.inf, "must be finite and >= 0", finite=True)
    size("chunk", chunk)


@checked(_check_gibbs)
def gibbs_welfare(market: TTCMarket, params: GameParams, sharpness, *, chunk: int = 1 << 14):
    """A smoothed market: expected welfare under the Gibbs distribution softmax(sharpness Phi)
    over all joint profiles (Phi the exact potential); as sharpness grows it tends to the welfare
    of the potential maximiser, an equilibrium. Differentiable in beta, markup, alpha and prices.
    **Returns:** a [`GibbsWelfare`][] (`welfare` E[SW], `inefficiency` 100 (SW* / E[SW] - 1))."""
    sharpness = in_range("sharpness", sharpness, 0.0, math.inf, "must be finite and >= 0", finite=True)
    t = terms(market, params)
    n, levels = t.price.shape

    # The Gibbs weights need Phi only up to a constant: take it relative to the potential maximiser
    # (a first pass), so the float32 rounding is relative to each profile's gap to the top.
    def top_of_chunk(index, valid, profiles, out):
        phi = jnp.where(valid, out.potential, -jnp.inf)
        k = jnp.argmax(phi)
        return phi[k], index[k]

    tops, where = over_profiles(t, params.beta, chunk, top_of_chunk)
    reference = lax.stop_gradient(profiles_from_index(where[jnp.argmax(tops)][None], n, levels)[0])

    def gibbs_of_chunk(index, valid, profiles, out):
        gain = jax.vmap(lambda x: potential_gain(t, x, reference, params.beta))(profiles)
        logit = jnp.where(valid, sharpness * gain, -jnp.inf)
        lse = jax.nn.logsumexp(logit)
        return lse, jnp.sum(jnp.exp(logit - lse) * out.welfare)

    lses, means = over_profiles(t, params.beta, chunk, gibbs_of_chunk)
    weights = jax.nn.softmax(lses)
    expected = jnp.sum(weights * means)
    _, best_profile = _dinkelbach(t, params.beta, 30)
    best = payoffs(t, lax.stop_gradient(best_profile), params.beta).welfare  # envelope theorem
    return GibbsWelfare(welfare=expected, inefficiency=100.0 * (best / expected - 1.0))


class AuctionOutcome(eqx.Module):
    """The reverse second-price auction with truthful bids (see [`auction`][])."""

    winner: str = eqx.field(static=True)
    runner_up: str = eqx.field(static=True)
    user_value: Float[Array, ""]
    user_price: Float[Array, ""]
    winner_profit: Float[Array, ""]
    welfare: Float[Array, ""]
    levels: Int[Array, " n"]


def auction_bids(market: TTCMarket, params: GameParams) -> AuctionBids:
    """Each provider's truthful bid: its level theta*_i = argmax (q - c), and the quality q_i, cost
    c_i and score q_i - c_i there. **Returns:** an [`AuctionBids`][]."""
    t = terms(market, params)
    surplus = t.quality - t.cost
    level = jnp.argmax(surplus, axis=1)
    rows = jnp.arange(level.shape[0])
    return AuctionBids(
        levels=level, quality=t.quality[rows, level], cost=t.cost[rows, level], score=surplus[rows, level]
    )


def auction(market: TTCMarket | str, method: str | None = None, **params) -> AuctionOutcome:
    """Reverse second-price auction on (price, quality) bids, truthful bidding, on any
    [`TTCMarket`][] (or a bundled one by name: `auction("GSM8K", "majority")`).

    Each provider picks theta*_i = argmax (q_i - c_i) and bids its cost; the highest score
    q - price wins; the user pays the winner's quality minus the runner-up's score. So user value
    = runner-up's score, winner profit = the score margin, welfare = the winner's score =
    max_i max_theta (q - c): efficient, individually rational, truthful bidding weakly dominant.
    Other [`GameParams`][] by keyword (beta plays no role). Needs two providers at least.
    """
    if isinstance(market, str):
        if method is None:
            raise TypeError(f"auction({market!r}) needs a method, as in auction({market!r}, 'majority').")
        market = load_market(market, method)
    elif not isinstance(market, TTCMarket):
        raise TypeError(f"market must be a TTCMarket or a benchmark name; got {type(market).__name__}.")
    elif method is not None:
        raise TypeError(f"method={method!r} applies to bundled markets only; a TTCMarket carries its own.")
    if market.theta.shape[0] < 2:
        n = market.theta.shape[0]
        raise ValueError(f"market must have two providers at least for a second-price auction; got {n}.")
    p = GameParams(beta=jnp.asarray(1.0, market.theta.dtype), **params)
    bids = auction_bids(market, p)
    level, quality, score = bids.levels, bids.quality, bids.score
    order = jnp.argsort(-score)
    w, r = int(order[0]), int(order[1])
    price = quality[w] - score[r]
    return AuctionOutcome(
        winner=market.names[w],
        runner_up=market.names[r],
        user_value=quality[w] - price,
        user_price=price,
        winner_profit=score[w] - score[r],
        welfare=score[w],
        levels=level,
    )
