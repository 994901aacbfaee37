"""IMP's last stage: look two moves ahead, or take a compound move, where no single move pays.

Every allocation move (`_moves`) proposes an assignment and re-prices it at `keep_prices`, which
keeps everyone else's choice. From a local optimum of those moves two kinds of larger step remain:

- **pairs** (`best_two_moves`): where no single move pays, a pair can (one customer's insertion
  that costs a little makes room for another's that earns more): each of the `beam` best losing
  moves is extended by its best next move, then coordinate ascent. A pair costs `beam` + 1 rounds
  of single moves, so imp runs the look-ahead from its best start only.
- **compound moves** (`best_compound_move`): where a cut price should also draw other customers,
  `keep_prices` cuts their models instead and a re-assignment scores as a loss. A compound move
  proposes prices: a sold customer's model priced at that customer's value of it (with the models
  its staying customers would rather rent, as a raise), each customer who then leaves received by
  an option cut to what it gets elsewhere (`raised_and_received`), and coordinate ascent takes what
  else those prices make possible; it is scored after a few sweeps.

`improve_by_lookahead` takes the best pair or compound move where it pays, then single moves again.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from ..._checks import check_settings, setting
from ..robust._rsr import choose, rental_options
from ..scenarios._market import ValueMarket
from ._budget import Budget
from ._classic_imp import coordinate_ascent, improves
from ._line_search import inverse_value
from ._moves import (
    all_moves,
    best_move,
    candidate_count,
    improve_by_moves,
    raisable,
    raised_prices,
    scoring_depth,
)
from ._profit import exact_profit
from ._schedule import PARALLEL, SCHEDULES, SEQUENTIAL

# Compound moves per candidate customer: received by any model, by unsold models only, by the chain.
COMPOUND_KINDS = 3


class LookAhead(eqx.Module):
    """Settings of the look-ahead, run from the best start after the moves (see the module docstring).

    At most `rounds` steps (0: none), each the best pair of moves (the `beam` best losing first moves,
    each extended by its best second move) or, where it pays more, the best of `compounds` x 3
    compound moves (the smallest rises first; three kinds per customer: received by any model, by
    unsold models only, and through a chain of raises), each followed by single moves again.
    `schedule`: `"sequential"` finds the beam's second moves one after another, `"parallel"` as one
    batch (see `_schedule`); the prices are the same.
    """

    rounds: int = setting(0, "look-ahead steps (0: none)", lo=0)
    beam: int = setting(8, "losing first moves each extended by its best second move", lo=1)
    compounds: int = setting(0, "customers whose compound moves are scored per step (at most N)", lo=0)
    schedule: str = setting(SEQUENTIAL, "second moves one after another or all at once", choices=SCHEDULES)

    def __check_init__(self):
        check_settings(self)


def best_two_moves(
    market: ValueMarket, prices, tol, *, beam: int, sweeps: int, schedule: str = SEQUENTIAL, **counts
):
    """Look two moves ahead: from each of the `beam` best candidates that lower the profit (called
    where no single move pays), the best next move, then at most `sweeps` sweeps of coordinate
    ascent; the best of those `(new_prices, new_profit)`. The pair can pay where neither move alone
    does (one customer's move that costs a little makes room for another's that earns more).
    `schedule`: the second moves one after another (`lax.map`) or as one batch. Returns the prices,
    the profit and the sweeps each of the beam's pairs used."""
    base = exact_profit(market, prices, tol)
    qs, values = all_moves(market, prices, tol, **counts)
    # Only moves that lose something: at a local optimum many candidates re-price to the same
    # profit (the same prices, or a plateau of equal profits), which would fill the beam with one
    # point; in float32 those profits differ from `base` by rounding only.
    below = values < base - 64 * jnp.finfo(prices.dtype).eps * jnp.abs(base)
    first, pick = lax.top_k(jnp.where(below, values, -jnp.inf), min(beam, values.shape[0]))
    width = pick.shape[0] if schedule == PARALLEL else None
    second, value = lax.map(lambda q: best_move(market, q, tol, **counts), qs[pick], batch_size=width)
    value = jnp.where(first > -jnp.inf, value, -jnp.inf)
    second, value, used = coordinate_ascent(market, second, tol, sweeps, active=value > -jnp.inf)
    value = jnp.where(first > -jnp.inf, value, -jnp.inf)
    k = jnp.argmax(value)
    return second[k], value[k], jnp.sum(used, dtype=jnp.int32)


def raised_and_received(market: ValueMarket, prices, sigma, model, top, buyers, tol, customer, unsold, chain):
    """The prices a compound move proposes (see `best_compound_move`): customer i's model j priced at
    i's value of it (where that value falls to 0), the models its customers who can pay that would
    rather rent priced up until they stay (`raised_prices`, as a raise), and every customer who then
    leaves its model received by its best option cut to the price that gives that customer what it
    gets elsewhere at the raised prices (0 if nothing), all at once. `sigma`, `model`, `top`: the
    choices at `prices` and their models and tops (`raisable`); `buyers`: each model's customers.

    The receiving option of a leaving customer d is the one whose cut earns most: its price after the
    cut less the serving cost, less what the cut costs on that model's current customers (a model
    just raised receives nobody); a cut that earns nothing is not made. `unsold`: receive only by
    models nobody rents now (a cut that costs nothing on the model's customers). Several customers
    received by one model: its lowest cut.

    `chain`: first, each model not raised that a leaving customer now chooses is itself raised to
    where that customer's second best would tie (the lowest such price over its newcomers), and the
    customers that raise moves are received as above: a step where one raise makes a customer
    move, its new model is raised to keep it, and a third model is cut to receive whom that loses.
    `unsold` and `chain`: booleans, traced or not.
    """
    mo, cu = market.models, market.customers
    m = market.n_models
    ninf = jnp.asarray(-jnp.inf, prices.dtype)
    length = market.lengths()
    raised, _ = raised_prices(market, prices, sigma, model, top, customer)
    at_raised = rental_options(market, raised)
    new = choose(at_raised, tol)
    # The chain: newcomers' models (not raised) lifted to their newcomers' second best.
    moved = (sigma > 0) & (new != sigma) & (new > 0) & jnp.asarray(chain)
    slot = jnp.maximum(new - 1, 0)[:, None]
    options = jnp.arange(market.rate.shape[1], dtype=slot.dtype)[None, :]
    second = jnp.where(at_raised.available & (options != slot), at_raised.value, ninf)
    second = jnp.maximum(jnp.max(second, axis=1), 0.0)
    rate, hours = (jnp.take_along_axis(x, slot, axis=1)[:, 0] for x in (market.rate, length))
    lift = inverse_value(rate, hours, cu.budget, second)
    to = jnp.maximum(market.chosen_model(new) - 1, 0)
    lift = jnp.where(moved & (raised[to] == prices[to]) & (lift > raised[to]), lift, jnp.inf)
    lifts = jnp.full((m,), jnp.inf, prices.dtype).at[to].min(lift)
    lifted = jnp.isfinite(lifts)
    raised = jnp.where(lifted, jnp.minimum(lifts, mo.price_hi), raised)
    at_raised = rental_options(market, raised)
    # A newcomer its model's lift keeps is placed, not a customer to receive.
    again = choose(at_raised, tol)
    new = jnp.where(moved & lifted[to] & (again == new), sigma, again)
    leaves = (sigma > 0) & (new != sigma)
    elsewhere = jnp.maximum(jnp.max(jnp.where(at_raised.available, at_raised.value, ninf), axis=1), 0.0)
    win = inverse_value(market.rate, length, cu.budget[:, None], elsewhere[:, None])
    now = market.per_option(raised)
    ids = market.model_ids()
    kept = market.per_option(jnp.where(raised > prices, 0.0, 1.0).astype(prices.dtype)) > 0  # not raised
    ok = leaves[:, None] & at_raised.available & kept & (win < now)
    empty = market.per_option(buyers) == 0
    ok = ok & (win >= market.per_option(mo.price_lo)) & (~jnp.asarray(unsold) | empty)
    net = win - market.per_option(mo.serving_cost) - (now - win) * market.per_option(buyers)
    net = jnp.where(ok, net, ninf)
    pick = jnp.argmax(net, axis=1)
    take = jnp.max(net, axis=1) > 0
    to = jnp.where(take, jnp.take_along_axis(ids, pick[:, None], axis=1)[:, 0], m)
    cut = jnp.take_along_axis(win, pick[:, None], axis=1)[:, 0]
    cuts = jnp.full((m,), jnp.inf, prices.dtype).at[to].min(cut, mode="drop")
    return jnp.minimum(raised, cuts)


def best_compound_move(market: ValueMarket, prices, tol, *, count: int, sweeps: int):
    """The best compound move from `prices`: `(new_prices, new_profit)` (profit -inf where there is
    no candidate), each candidate scored by the exact profit after at most `sweeps` sweeps of
    coordinate ascent from the prices it proposes (`raised_and_received`, receiving by any model, by
    unsold models only, and with the chain: 3 `count` candidates, polished together as one batch of
    starts).

    Candidates: the `count` sold customers whose model's price is below their value of it, the
    smallest rises first. A move that only re-assigns (scored at `keep_prices`) keeps everyone else's
    choice; this one moves prices, and coordinate ascent takes whatever else those prices make
    possible, where every re-assignment of the same customers alone or in pairs can lose. Where
    these moves took imp on the unit-demand benchmark is in the docs (how IMP works).
    """
    n, m = market.n_customers, market.n_models
    sigma = choose(rental_options(market, prices), tol)
    model, top, rise, ok = raisable(market, prices, sigma)
    buyers = market.per_model(jnp.ones(n, prices.dtype), sigma, m, "add", jnp.zeros((), prices.dtype))
    k = min(count, n)
    score, customer = lax.top_k(jnp.where(ok, -rise, -jnp.inf), k)
    customer = jnp.tile(customer, COMPOUND_KINDS)
    valid = jnp.tile(score, COMPOUND_KINDS) > -jnp.inf
    kind = jnp.arange(COMPOUND_KINDS * k) // k

    def propose(i, kind):
        unsold, chain = kind == 1, kind == 2
        return raised_and_received(market, prices, sigma, model, top, buyers, tol, i, unsold, chain)

    starts = jax.vmap(propose)(customer, kind)
    # One batch: coordinate ascent's line searches serve all starts at once (an order of magnitude
    # faster than `lax.map` chunks of a vmapped single start).
    qs, values, used = coordinate_ascent(market, starts, tol, sweeps, active=valid)
    values = jnp.where(valid, values, -jnp.inf)
    best = jnp.argmax(values)
    return qs[best], values[best], used


def improve_by_lookahead(
    market: ValueMarket,
    prices,
    tol,
    *,
    rounds: int,
    beam: int,
    moves: int,
    sweeps: int,
    compounds: int = 0,
    budget: Budget | None = None,
    schedule: str = SEQUENTIAL,
    **counts,
):
    """From a local optimum of the single moves, `prices` shape `(M,)`: take the best pair of moves
    (`best_two_moves`), or the best of 3 `compounds` compound moves (`best_compound_move`, each scored
    after `sweeps` sweeps of coordinate ascent, the one taken polished for `sweeps` more) where that
    pays more, if it raises the exact profit; then single moves again (`improve_by_moves`, at most
    `moves` rounds), for at most `rounds` such steps. Never lowers the profit.

    `budget`: a `Budget` (default none); a step runs only while its scoring's largest cost fits (the
    single moves after it check their own rounds), so a smaller budget stops on a prefix.
    `schedule`: how `best_two_moves` runs the beam's second moves (see `LookAhead`).

    Returns `(prices, profit, pairs, budget)`, `pairs` the number of steps taken (pairs or compound
    moves), `budget` after them.
    """
    budget = Budget.unlimited() if budget is None else budget
    m = market.n_models
    kinds = {k: counts.get(k, 0) for k in ("inserts", "drops", "sheds", "raises", "groups", "gains")}
    c = candidate_count(market, **kinds)
    chunks = scoring_depth(market, **kinds, batch=counts.get("batch", 64))
    # The first moves' chunks, then the beam's second moves' (one after another, or as one batch).
    pair_depth = chunks * (1 + (1 if schedule == PARALLEL else min(beam, c)))
    scoring = (beam + 1) * c + beam * sweeps * m
    if compounds:
        scoring += (COMPOUND_KINDS * min(compounds, market.n_customers) + 1) * sweeps * m
    profit = exact_profit(market, prices, tol)

    def body(state):
        prices, profit, pairs, _, budget = state
        q, value, used = best_two_moves(
            market, prices, tol, beam=beam, sweeps=sweeps, schedule=schedule, **counts
        )
        budget = budget.spend(
            (beam + 1) * c + jnp.sum(used, dtype=jnp.int32) * m, pair_depth + jnp.max(used) * m
        )
        if compounds:
            q2, value2, used = best_compound_move(market, prices, tol, count=compounds, sweeps=sweeps)
            use = value2 > value
            q2, value2, used2 = coordinate_ascent(market, q2, tol, sweeps, active=use)
            budget = budget.spend((jnp.sum(used, dtype=jnp.int32) + used2) * m, (jnp.max(used) + used2) * m)
            q, value = jnp.where(use, q2, q), jnp.where(use, value2, value)
        better = improves(value, profit)
        # count 0: no single moves where the pair did not pay (a traced count, so no `lax.cond`).
        q, value, _, budget = improve_by_moves(
            market,
            q[None, :],
            tol,
            rounds=moves,
            sweeps=sweeps,
            count=better.astype(jnp.int32),
            budget=budget,
            **counts,
        )
        better = better & (value[0] > profit)
        prices = jnp.where(better, q[0], prices)
        profit = jnp.where(better, value[0], profit)
        return prices, profit, pairs + better.astype(pairs.dtype), better, budget

    def more(state):
        return state[3] & (state[2] < rounds) & state[4].allows(scoring)

    init = (prices, profit, jnp.asarray(0, jnp.int32), jnp.asarray(rounds > 0), budget)
    prices, profit, pairs, go_on, budget = lax.while_loop(more, body, init)
    return prices, profit, pairs, budget.stop_if(go_on & (pairs < rounds))
