"""Allocation moves: leave a coordinate-wise optimum by re-assigning one customer, then re-pricing all.

Classic IMP ([`lmaas_jax.classic_imp`][]) moves one price at a time, so it stops where no single
price can move profitably: a coordinate-wise optimum. Many of those are poor because the better
price vector needs several prices to move together, e.g. one model's price cut to win a customer
while the prices that customer's new choice lets rise go up with it. This module searches that
neighbourhood exactly, through the allocation the prices induce.

The moves re-price through `keep_prices`, the greatest prices at which every customer keeps an
assigned option (`_assignment`): they maximise the profit of that assignment, and the exact profit
there is at least that. (The same lift of a coordinate-wise optimum's own allocation changes
nothing: measured on the benchmark's n <= 100 instances, those prices are already the greatest that
keep it. What pays is changing the allocation.)

**The moves.** From prices beta with induced choices sigma (the tie rule's), two kinds of candidate
assignment, each re-priced by `keep_prices` and scored by the exact profit there:

- insert (i, j): sigma with customer i moved to model j; ranked by the relative cut of beta_j that
  alone would win i (cheapest first);
- drop i: sigma with customer i freed; ranked by how little room customer i leaves its model's price
  (the binding customers first).

`improve_by_moves` takes the best candidate if it raises the exact profit, runs classic IMP's
coordinate ascent from it, and repeats until no candidate pays, for at most a fixed number of
rounds (the cap bounds a `jax.vmap` batch's cost too). On the unit-demand benchmark's
n = 50 characteristics instances this turned coordinate-wise optima at 0.9976 to 0.9993 of the
published optimum into the optimum (see the README's "Markets from data").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..robust._rsr import RobustTerms, choose, rental_options
from ..scenarios._market import AnyMarket
from ._assignment import columns, keep_prices
from ._classic_imp import coordinate_ascent
from ._line_search import _inverse_value
from ._profit import profit_from_terms


def _candidates(market: AnyMarket, terms: RobustTerms, prices, opts, sigma, inserts: int, drops: int):
    """The move candidates as (customer, new option) pairs: `inserts` + `drops` of them, best first
    (`opts`: the options at `prices`, `sigma` the choices they induce)."""
    mo, cu = market.models, market.customers
    n, k = market.n_customers, terms.rate.shape[1]  # k: options per customer (M if dense)
    onehot = columns(sigma, k)
    ninf = jnp.asarray(-jnp.inf, prices.dtype)
    current = jnp.maximum(jnp.max(jnp.where(onehot & opts.available, opts.value, ninf), axis=1), 0.0)
    length = jnp.minimum(terms.hours, cu.horizon[:, None])
    # Insert (i, j): the price of j at which i's value of j reaches its current value.
    win = _inverse_value(terms.rate, length, cu.budget[:, None], current[:, None])
    room = jnp.maximum(prices - mo.serving_cost, jnp.finfo(prices.dtype).tiny)
    cut = (terms.per_option(prices) - win) / terms.per_option(room)
    insert_ok = opts.available & ~onehot & (win >= terms.per_option(mo.price_lo))
    insert_score = jnp.where(insert_ok, -cut, ninf).reshape(-1)
    k_ins = min(inserts, n * k)
    ins_score, ins_flat = lax.top_k(insert_score, k_ins)
    ins_customer, ins_option = ins_flat // k, ins_flat % k + 1
    # Drop i: the room its own price has before i leaves it (binding customers have none).
    others = opts.available & ~onehot
    alt = jnp.maximum(jnp.max(jnp.where(others, opts.value, ninf), axis=1), 0.0)
    own = jnp.maximum(sigma - 1, 0)
    own_model = jnp.maximum(terms.chosen_model(sigma) - 1, 0)
    own_rate = jnp.take_along_axis(terms.rate, own[:, None], axis=1)[:, 0]
    own_length = jnp.take_along_axis(length, own[:, None], axis=1)[:, 0]
    slack = (_inverse_value(own_rate, own_length, cu.budget, alt) - prices[own_model]) / room[own_model]
    k_drop = min(drops, n)
    drop_score, drop_customer = lax.top_k(jnp.where(sigma > 0, -slack, ninf), k_drop)
    customer = jnp.concatenate([ins_customer, drop_customer]).astype(sigma.dtype)
    option = jnp.concatenate([ins_option, jnp.zeros(k_drop, jnp.int32)]).astype(sigma.dtype)
    valid = jnp.concatenate([ins_score > ninf, drop_score > ninf])
    return customer, option, valid


def best_move(
    market: AnyMarket, terms: RobustTerms, prices, tol, *, inserts: int, drops: int, batch: int = 64
):
    """The best insert or drop move from `prices`: `(new_prices, new_profit)` of the best candidate
    (profit -inf where there is no candidate).

    Candidates are evaluated `batch` at a time (`lax.map`), so memory is `batch` copies of the
    (N, M) option arrays whatever the number of candidates.
    """
    opts = rental_options(market, terms, prices)
    sigma = choose(opts, tol)
    customer, option, valid = _candidates(market, terms, prices, opts, sigma, inserts, drops)

    def score(c):
        i, a, ok = c
        q, _ = keep_prices(market, terms, sigma.at[i].set(a))
        value = profit_from_terms(market, terms, q, tol)
        return q, jnp.where(ok, value, -jnp.inf)

    # Equal chunks of at most `batch`, padded with invalid candidates: lax.map would run a
    # remainder as one more call, as costly as a whole chunk.
    count = customer.shape[0]
    chunks = -(-count // batch)
    size = -(-count // chunks)
    pad = lambda x, fill: jnp.concatenate([x, jnp.full(chunks * size - count, fill, x.dtype)])  # noqa: E731
    cands = (pad(customer, 0), pad(option, 0), pad(valid, False))
    qs, values = lax.map(score, cands, batch_size=size)
    k = jnp.argmax(values)
    return qs[k], values[k]


def improve_by_moves(
    market: AnyMarket,
    terms: RobustTerms,
    prices,
    tol,
    *,
    rounds: int,
    inserts: int,
    drops: int,
    sweeps: int,
    count=None,
):
    """Alternate the best allocation move and classic IMP's coordinate ascent, at most `rounds` times.

    `prices` should be a coordinate-wise optimum (the polish's result), shape `(M,)`, or several,
    shape `(S, M)`, improved one after another. Each round takes the best move (see `best_move`) if
    it raises the exact profit by more than a relative 1e-12, then at most `sweeps` sweeps of
    coordinate ascent from there; a start is done at its first round that finds no such move or
    after `rounds` rounds, and the next start begins. Never lowers the exact profit. (Leaving a
    local optimum of this neighbourhood by its best non-improving move, an iterated local search,
    found nothing more on the unit-demand benchmark at three times the cost, so it is not offered.)
    `count` (traced or not): improve only the first `count` starts, return the others as they are.

    All starts' rounds run in one loop, one round per iteration, which ends when the last start is
    done: S to S `rounds` iterations. Under `jax.vmap` over markets the batch runs until its
    slowest market is done with all its starts, finished markets carried unchanged; the cost is the
    largest total over the markets, not the sum over starts of the slowest market per start (most
    starts end after one round, a few take several, rarely the same start everywhere).

    Returns `(prices, profit, moves)` shaped like `prices` with the model axis dropped for the last
    two, `moves` the number of moves taken.
    """
    single = prices.ndim == 1
    starts = prices[None, :] if single else prices
    count = starts.shape[0] if count is None else jnp.minimum(jnp.asarray(count, jnp.int32), starts.shape[0])
    profit = jax.vmap(lambda p: profit_from_terms(market, terms, p, tol))(starts)

    def body(state):
        pool, profit, moves, s, r = state
        q, value = best_move(market, terms, pool[s], tol, inserts=inserts, drops=drops)
        better = value > profit[s] + 1e-12 * jnp.abs(profit[s])
        q, value, _ = coordinate_ascent(market, terms, q, tol, sweeps, active=better)
        better = better & (value > profit[s])
        pool = pool.at[s].set(jnp.where(better, q, pool[s]))
        profit = profit.at[s].set(jnp.where(better, value, profit[s]))
        moves = moves.at[s].add(better.astype(moves.dtype))
        # The next round of this start, or the next start.
        go_on = better & (r + 1 < rounds)
        return pool, profit, moves, jnp.where(go_on, s, s + 1), jnp.where(go_on, r + 1, 0)

    def more(state):
        return state[3] < count

    zero = jnp.asarray(0, jnp.int32)
    init = (starts, profit, jnp.zeros(starts.shape[0], jnp.int32), zero, zero)
    pool, profit, moves, _, _ = lax.while_loop(more, body, init)
    if single:
        return pool[0], profit[0], moves[0]
    return pool, profit, moves
