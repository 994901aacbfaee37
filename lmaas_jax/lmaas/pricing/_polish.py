"""IMP's second stage: classic IMP (exact coordinate ascent) from many starts."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from ..._checks import check_settings, setting
from ..scenarios._market import ValueMarket
from ._ascent import Ascended, search_box
from ._budget import Budget
from ._classic_imp import coordinate_ascent
from ._profit import exact_profit
from ._schedule import PARALLEL, SCHEDULES, SEQUENTIAL

# The probability that a random start prices a model out of the market (at price_hi).
OUT_OF_MARKET = 0.25


class Polish(eqx.Module):
    """Settings of the polish: classic IMP ([`lmaas_jax.classic_imp`][]) from many starts at once.

    The starts are the best `restarts` of the gradient stage's restarts (by exact profit) and
    `random` random price vectors (each model uniform in the gradient stage's box or, with
    probability 1/4, priced out of the market at `price_hi`): which models to offer is the
    combinatorial part the relaxed landscape handles worst, and classic IMP from several menus
    finds basins it hides. Every start gets `sweeps` sweeps; the best `finalists` then get
    `max_sweeps` more (rounded up to a multiple of `sweeps`). A start stops early once a sweep
    changes nothing. Each polished start costs O(M N log N) per sweep plus a few O(N M) exact checks
    per model. Random starts come from one key, so a larger `random` holds the smaller one's starts.
    `schedule`: `"sequential"` polishes one start after another, `"parallel"` all starts as one batch
    and then the finalists as one batch (see `_schedule`); the prices are the same.
    """

    restarts: int = setting(32, "polish the best this many gradient restarts (at most all)", lo=1)
    random: int = setting(16, "random price vectors also polished", lo=0)
    sweeps: int = setting(3, "coordinate-ascent sweeps every start gets", lo=1)
    finalists: int = setting(4, "starts that get max_sweeps more sweeps", lo=1)
    max_sweeps: int = setting(8, "further sweeps of the finalists", lo=1)
    schedule: str = setting(SEQUENTIAL, "starts one after another or all at once", choices=SCHEDULES)

    def __check_init__(self):
        check_settings(self)


def random_starts(market: ValueMarket, count: int, key) -> jax.Array:
    """`count` random price vectors, shape `(count, M)`: each model uniform in the gradient stage's box
    (`search_box`) or, with probability `OUT_OF_MARKET`, at `price_hi`."""
    lo, width = search_box(market)
    k_price, k_menu = jax.random.split(key)
    u = jax.random.uniform(k_price, (count, market.n_models), market.dtype)
    out = jax.random.bernoulli(k_menu, OUT_OF_MARKET, u.shape)
    return jnp.where(out, market.models.price_hi[None, :], jax.vmap(lambda x: lo + x * width)(u))


def polish_starts(market, ascended: Ascended, settings: Polish, key) -> jax.Array:
    """The polish's starts: the gradient stage's best `settings.restarts` restarts, then the random
    ones."""
    _, top = lax.top_k(ascended.profit, min(settings.restarts, ascended.profit.shape[0]))
    starts = ascended.prices[top]
    if settings.random:
        starts = jnp.concatenate([starts, random_starts(market, settings.random, key)])
    return starts


def polish(market, tol, starts, settings: Polish, budget=None):
    """Classic IMP from every start for `sweeps` sweeps, then the best `finalists` for `max_sweeps`
    more (in rounds of `sweeps`, the finalists in a fixed order).

    `settings.schedule == "sequential"`: one loop whose body polishes one start: most starts end in
    poor basins after a sweep or two and only the finalists need every sweep, one traced copy of
    the line search keeps compile time down, and a start that has converged skips its remaining
    sweeps (see `coordinate_ascent`; under `jax.vmap` over markets the batch is the parallel axis).
    `"parallel"`: every start as one batch of `coordinate_ascent`, then each round of the finalists
    as one batch: the depth of one start's sweeps per batch, each start on the same path.

    `budget`: a `Budget` of line searches (default: none); the loop stops before a start (or a
    batch) whose sweeps could overrun it, so what is returned is a prefix of the unlimited run.

    Returns `(prices, profits, sweeps, budget)` for every start (each start's sweeps that changed
    something) and the budget after the line searches spent.
    """
    budget = Budget.unlimited() if budget is None else budget
    n = starts.shape[0]
    f = min(settings.finalists, n)
    rounds = -(-settings.max_sweeps // settings.sweeps)
    m = market.n_models
    step_cost = settings.sweeps * m  # line searches of one start's sweeps, at most
    if settings.schedule == PARALLEL:
        return _polish_parallel(market, tol, starts, settings, budget, f, rounds, step_cost)
    total = n + rounds * f
    profit0 = jax.vmap(lambda p: exact_profit(market, p, tol))(starts)

    def body(state):
        i, pool, profit, sweeps, finalists, budget = state
        # Stage 2 polishes the starts that were best when stage 1 ended, in a fixed order.
        finalists = jnp.where(i == n, lax.top_k(profit, f)[1], finalists)
        row = jnp.where(i < n, i, finalists[jnp.maximum(i - n, 0) % f])
        new, value, used = coordinate_ascent(market, pool[row], tol, settings.sweeps)
        budget = budget.spend(used * m, used * m)
        state = pool.at[row].set(new), profit.at[row].set(value), sweeps.at[row].add(used), finalists
        return (i + 1, *state, budget)

    def more(state):
        return (state[0] < total) & state[-1].allows(step_cost)

    zero = jnp.asarray(0, jnp.int32)
    init = (zero, starts, profit0, jnp.zeros(n, jnp.int32), jnp.zeros(f, jnp.int32), budget)
    i, pool, profit, sweeps, _, budget = lax.while_loop(more, body, init)
    return pool, profit, sweeps, budget.stop_if(i < total)


def _polish_parallel(market, tol, starts, settings: Polish, budget, f, rounds, step_cost):
    m, n = market.n_models, starts.shape[0]

    def batch(pool, profit, sweeps, rows, budget):
        # One batch of starts, run only if every start's sweeps fit (a `jnp.where`, not a `lax.cond`,
        # which `jax.vmap` over markets would run both sides of anyway).
        fits = budget.allows(rows.shape[0] * step_cost)
        new, value, used = coordinate_ascent(market, pool[rows], tol, settings.sweeps, active=fits)
        budget = budget.spend(used * m, jnp.max(used) * m)
        pool, profit = pool.at[rows].set(new), profit.at[rows].set(value)
        return pool, profit, sweeps.at[rows].add(used), budget.stop_if(~fits)

    profit0 = jnp.zeros(n, starts.dtype)  # every entry set by the first batch
    pool, profit, sweeps, budget = batch(starts, profit0, jnp.zeros(n, jnp.int32), jnp.arange(n), budget)
    finalists = lax.top_k(profit, f)[1]

    def more_sweeps(_, state):
        return batch(*state[:3], finalists, state[3])

    pool, profit, sweeps, budget = lax.fori_loop(0, rounds, more_sweeps, (pool, profit, sweeps, budget))
    return pool, profit, sweeps, budget
