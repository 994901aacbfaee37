"""Allocation moves: leave a coordinate-wise optimum by re-assigning customers, then re-pricing all.

Classic IMP ([`lmaas_jax.classic_imp`][]) moves one price at a time, so it stops where no single
price can move profitably: a coordinate-wise optimum. Many of those are poor because the better
price vector needs several prices to move together, e.g. one model's price cut to win a customer
while the prices that customer's new choice lets rise go up with it. This module searches that
neighbourhood exactly, through the allocation the prices induce.

The moves re-price through `keep_prices`, the greatest prices at which every customer keeps an
assigned option (`_assignment`): they maximise the profit of that assignment, and the exact profit
there is at least that. What pays is changing the allocation: a coordinate-wise optimum's own
allocation is usually already priced at those greatest prices.

**The moves.** From prices beta with induced choices sigma (the tie rule's), eight kinds of candidate
assignment, each re-priced by `keep_prices` and scored by the exact profit there:

- insert (i, j): sigma with customer i moved to model j; ranked by the relative cut of beta_j that
  alone would win i (cheapest first). Where the group moves are scored (below), further insertions
  are ranked by their estimated gain instead: the winning price less j's cost, less what cutting
  beta_j to it costs j's current customers, less what i earns now. The cut ranks last every
  insertion into a model nobody rents, which the polish prices at the top of its box (a cut from
  there is large and costs nobody anything); where models outnumber customers most models are such.
- drop i: sigma with customer i freed; ranked by how little room customer i leaves its model's price
  (the binding customers first);
- shed (j, t), three kinds: model j loses its t most binding customers, each re-homed or each
  freed, or its t customers cheapest to re-home, re-homed. A customer is re-homed to the option
  whose winning price, less what cutting that model's price to it costs on the model's current
  customers, earns the most (freed where none is worth anything). No sequence of single moves makes
  this move without first losing money: each re-homing alone can cost more than it earns until the
  model's price rises for the customers that stay, which only shedding them together allows.
  Ranked by t (the smallest sheds first where their number is capped).
- shed (j, t), re-homed as tried: as the first kind, but each customer goes where its insertion
  re-priced best among the inserts just scored (scored after them): the rule above guesses from
  one model's price cut, the inserts have measured each destination.
- group (i, o): customer i moved to option o of model k, and with it every customer of i's model
  whose own option of k wins it at a price no lower than i's (so one cut of k wins them all), each
  to that option. Where customers of one model should move to another together (their model then
  rises for the customers it keeps, or another customer takes its place), each moved alone loses:
  the model's price stays pinned by the others. Only pairs where at least two move (a group of one
  is an insertion), ranked by what a shed's re-homing scores (`net`: a model nobody rents loses
  nothing by its cut).
- raise (i): customer i's model j priced at i's value of it (`raised_assignment`): j's customers
  who can pay that stay, the other models they would rather rent are priced up until they do not,
  and every customer those prices move is re-assigned at once, each to its insertion that
  re-priced best (scored after the inserts, as the tried sheds). Where a chain of indifferences
  pins j's price (j's customer envies model k, whose own price k's customer pins by envying a
  third) no single re-assignment lifts it.

`improve_by_moves` takes the best candidate if it raises the exact profit, runs classic IMP's
coordinate ascent from it, and repeats until no candidate pays, for at most a fixed number of
rounds (the cap bounds a `jax.vmap` batch's cost too). What each kind of move is worth on the
unit-demand benchmark is in the docs (how IMP works).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from ..._checks import check_settings, setting
from ..robust._rsr import choose, rental_options
from ..scenarios._market import ValueMarket
from ._assignment import columns, keep_prices
from ._budget import Budget
from ._classic_imp import coordinate_ascent, improves
from ._line_search import inverse_value
from ._profit import exact_profit
from ._schedule import PARALLEL, SCHEDULES, SEQUENTIAL

# Kinds of candidate (see the module docstring).
INSERT, DROP, SHED_BINDING, FREE_BINDING, SHED_CHEAPEST, SHED_TRIED, GROUP, RAISE = range(8)


class _Neighbourhood(NamedTuple):
    """What the candidates are built from, per customer at the current prices."""

    sigma: jax.Array  # (N,) induced choices (options, 0 = none)
    model: jax.Array  # (N,) the chosen model (1-based, 0 = none)
    alt: jax.Array  # (N,) the option to re-home it to (0: none pays)
    rank_binding: jax.Array  # (N,) its place among its model's customers, most binding first
    rank_cheapest: jax.Array  # (N,) the same, cheapest to re-home first
    top: jax.Array  # (N,) the price of its option at which its value falls to 0 (R of that option)
    tried: jax.Array  # (N,) its insertion that re-priced best (`all_moves`; `alt` before that)
    reach: jax.Array  # (N, K) the price of each option at which it wins the customer (-inf: none can)
    ids: jax.Array  # (N, K) each option's model (0-based)


def _rank_within(model, key):
    """Each customer's 0-based place among the customers of its model, by ascending `key`."""
    order = jnp.lexsort((key, model))
    position = jnp.zeros_like(model).at[order].set(jnp.arange(model.shape[0], dtype=model.dtype))
    first = jnp.searchsorted(model[order], model, side="left").astype(model.dtype)
    return position - first


def raisable(market: ValueMarket, prices, sigma):
    """Per customer, for a raise of its model to where its value of its option falls to 0:
    `(model, top, rise, ok)`: the chosen model (1-based, 0 = none), that price (R of the option,
    -inf where it rents nothing), how far it lies above the model's price, and whether the raise is
    possible (the customer rents, the rise is positive and the price within the box)."""
    model = market.chosen_model(sigma)
    j = jnp.maximum(model - 1, 0)
    own = jnp.maximum(sigma - 1, 0)
    top = jnp.where(sigma > 0, jnp.take_along_axis(market.rate, own[:, None], axis=1)[:, 0], -jnp.inf)
    rise = top - prices[j]
    return model, top, rise, (sigma > 0) & (rise > 0) & (top <= market.models.price_hi[j])


def _candidates(
    market: ValueMarket,
    prices,
    opts,
    sigma,
    inserts: int,
    drops: int,
    sheds: int,
    raises: int = 0,
    groups: int = 0,
    gains: int = 0,
):
    """The move candidates as (customer, kind, option) triples, valid ones first within each kind:
    `inserts` + `drops` + 4 `sheds` + `groups` + `gains` + `raises` of them (`opts`: the options at `prices`,
    `sigma` the choices they induce), and the `_Neighbourhood` that `assignment` turns them into
    assignments with."""
    mo, cu = market.models, market.customers
    n, k = market.n_customers, market.rate.shape[1]  # k: options per customer (M if dense)
    m = market.n_models
    dtype = prices.dtype
    onehot = columns(sigma, k)
    ninf = jnp.asarray(-jnp.inf, dtype)
    current = jnp.maximum(jnp.max(jnp.where(onehot & opts.available, opts.value, ninf), axis=1), 0.0)
    length = market.lengths()
    # Insert (i, j): the price of j at which i's value of j reaches its current value.
    win = inverse_value(market.rate, length, cu.budget[:, None], current[:, None])
    room = jnp.maximum(prices - mo.serving_cost, jnp.finfo(dtype).tiny)
    cut = (market.per_option(prices) - win) / market.per_option(room)
    others = opts.available & ~onehot
    insert_ok = others & (win >= market.per_option(mo.price_lo))
    insert_score = jnp.where(insert_ok, -cut, ninf).reshape(-1)
    k_ins, k_drop, k_shed, k_raise, k_group, k_gain = capped_counts(
        n, k, inserts, drops, sheds, raises, groups, gains
    )
    ins_score, ins_flat = lax.top_k(insert_score, k_ins)
    ins_customer, ins_option = ins_flat // k, ins_flat % k + 1
    # Drop i: the room its own price has before i leaves it (binding customers have none).
    alt_value = jnp.maximum(jnp.max(jnp.where(others, opts.value, ninf), axis=1), 0.0)
    own = jnp.maximum(sigma - 1, 0)
    model = market.chosen_model(sigma)
    own_model = jnp.maximum(model - 1, 0)
    own_rate = jnp.take_along_axis(market.rate, own[:, None], axis=1)[:, 0]
    own_length = jnp.take_along_axis(length, own[:, None], axis=1)[:, 0]
    slack = (inverse_value(own_rate, own_length, cu.budget, alt_value) - prices[own_model]) / room[own_model]
    sold = sigma > 0
    drop_score, drop_customer = lax.top_k(jnp.where(sold, -slack, ninf), k_drop)
    # Shed: where would each customer go? The option whose winning price, less what cutting that
    # model's price to it costs on the model's current customers, earns the most.
    buyers = market.per_model(jnp.ones(n, dtype), sigma, m, "add", jnp.zeros((), dtype))
    lost = (market.per_option(prices) - win) * market.per_option(buyers)
    net = win - market.per_option(mo.serving_cost) - lost
    net = jnp.where(insert_ok, net, ninf)
    best_net = jnp.max(net, axis=1)
    alt = jnp.where(best_net > ninf, jnp.argmax(net, axis=1) + 1, 0).astype(sigma.dtype)
    # What re-homing it costs: its margin now less the best net (freeing it: the whole margin).
    margin = (prices - mo.serving_cost)[own_model]
    cost = margin - jnp.maximum(best_net, 0.0)
    big = jnp.asarray(jnp.inf, dtype)
    _, top, rise, raise_ok = raisable(market, prices, sigma)
    hood = _Neighbourhood(
        sigma=sigma,
        model=model,
        alt=alt,
        rank_binding=_rank_within(model, jnp.where(sold, slack, big)),
        rank_cheapest=_rank_within(model, jnp.where(sold, cost, big)),
        top=top,
        tried=alt,
        reach=jnp.where(insert_ok, win, ninf),
        ids=market.model_ids(),
    )
    # Shed candidates of customer i: its model sheds every customer up to i's rank. The smallest
    # sheds first where they are capped.
    shed_valid, shed_customer = lax.top_k(jnp.where(sold, -hood.rank_binding, -n - 1), k_shed)
    cheap_valid, cheap_customer = lax.top_k(jnp.where(sold, -hood.rank_cheapest, -n - 1), k_shed)
    # Raise (customer i): its model's price up to where i's value of it falls to 0, the prices of
    # the models its customers who stay would rather rent raised with it (see `raised_assignment`);
    # ranked by the rise times the customers who can pay it (an upper bound on the model's gain).
    stay = (_rank_within(model, -top) + 1).astype(dtype)  # customers of i's model valuing it at least as much
    raise_score, raise_customer = lax.top_k(jnp.where(raise_ok, rise * stay, ninf), k_raise)
    # Group (i, o): customer i moved to option o, and with it every customer of its model whose own
    # option of o's model wins it at no deeper cut; the (i, o) that a shed would re-home by first
    # (the best net: a model nobody rents loses nothing by its cut).
    # A group of one is an insertion: only pairs where another customer of i's model would join.
    pair = (model[:, None] * (m + 1) + hood.ids.astype(model.dtype)).reshape(-1)  # (i's model, o's)
    joined = _rank_within(pair, -net.reshape(-1)).reshape(n, k) > 0  # (customers, options) below the best
    group_ok = sold[:, None] & insert_ok & joined
    group_score, group_flat = lax.top_k(jnp.where(group_ok, net, ninf).reshape(-1), k_group)
    group_customer, group_option = group_flat // k, group_flat % k + 1
    # Insert (i, o) by gain, with the groups: what the shed's re-homing scores it (`net`) less what
    # i earns now, among the insertions the cut did not rank. The cut ranks last every insertion
    # into a model nobody rents, which the polish prices at the top of its box; where models
    # outnumber customers most models are such.
    own_margin = jnp.where(sold, margin, 0.0)
    ranked = jnp.zeros(n * k, bool).at[ins_flat].set(ins_score > ninf)
    gain = jnp.where(ranked, ninf, (net - own_margin[:, None]).reshape(-1))
    gain_score, gain_flat = lax.top_k(gain, k_gain)
    gain_customer, gain_option = gain_flat // k, gain_flat % k + 1
    sheds_of = [shed_customer, shed_customer, cheap_customer]
    customer = jnp.concatenate(
        [ins_customer, drop_customer, *sheds_of, group_customer, gain_customer, shed_customer, raise_customer]
    )
    kind = jnp.concatenate(
        [
            jnp.full(k_ins, INSERT),
            jnp.full(k_drop, DROP),
            jnp.full(k_shed, SHED_BINDING),
            jnp.full(k_shed, FREE_BINDING),
            jnp.full(k_shed, SHED_CHEAPEST),
            jnp.full(k_group, GROUP),
            jnp.full(k_gain, INSERT),
            jnp.full(k_shed, SHED_TRIED),
            jnp.full(k_raise, RAISE),
        ]
    ).astype(sigma.dtype)
    zeros = lambda count: jnp.zeros(count, ins_option.dtype)  # noqa: E731
    option = jnp.concatenate(
        [ins_option, zeros(k_drop + 3 * k_shed), group_option, gain_option, zeros(k_shed + k_raise)]
    )
    valid = jnp.concatenate(
        [
            ins_score > ninf,
            drop_score > ninf,
            shed_valid > -n - 1,
            shed_valid > -n - 1,
            cheap_valid > -n - 1,
            group_score > ninf,
            gain_score > ninf,
            shed_valid > -n - 1,
            raise_score > ninf,
        ]
    )
    return (customer.astype(sigma.dtype), kind, option.astype(sigma.dtype), valid), hood


def assignment(hood: _Neighbourhood, customer, kind, option):
    """The assignment a candidate (see `_candidates`) proposes: the current choices re-assigned."""
    n = hood.sigma.shape[0]
    rank = jnp.where(kind == SHED_CHEAPEST, hood.rank_cheapest, hood.rank_binding)
    shed = (hood.model == hood.model[customer]) & (hood.sigma > 0) & (rank <= rank[customer])
    single = jnp.arange(n, dtype=hood.sigma.dtype) == customer
    moved = jnp.where(kind <= DROP, single, shed)
    freed = (kind == DROP) | (kind == FREE_BINDING)
    home = jnp.where(kind == SHED_TRIED, hood.tried, hood.alt)
    target = jnp.where(kind == INSERT, option, jnp.where(freed, 0, home))
    # A group: the model k of i's insertion, and every customer of i's model whose own option of k
    # wins it at a price no lower than i's, each moved to that option.
    t = jnp.maximum(option - 1, 0)
    k = hood.ids[customer, t]
    reach_k = jnp.where(hood.ids == k, hood.reach, -jnp.inf)
    joins = (hood.model == hood.model[customer]) & (hood.sigma > 0)
    joins = joins & (jnp.max(reach_k, axis=1) >= hood.reach[customer, t])
    to = (jnp.argmax(reach_k, axis=1) + 1).astype(hood.sigma.dtype)
    in_group = jnp.where(joins, to, hood.sigma)
    return jnp.where(kind == GROUP, in_group, jnp.where(moved, target, hood.sigma))


def raised_prices(market: ValueMarket, prices, sigma, model, top, customer):
    """Customer i's model j priced at t = `top[i]` (i's value of it falls to 0 there), and every
    other model k at least where each of j's customers who can pay t still weakly prefers j
    (V_ik(beta_k) <= V_ij(t)), capped at `price_hi`: `(raised prices, who stays)`. `sigma`, `model`
    and `top`: the choices, their models and the prices of their options at which their values fall
    to 0 (as in `_Neighbourhood`)."""
    m = market.n_models
    mine = model == model[customer]
    j = jnp.maximum(model[customer] - 1, 0)
    t = top[customer]
    stays = mine & (top >= t)
    own = jnp.maximum(sigma - 1, 0)[:, None]
    at_t = rental_options(market, prices.at[j].set(t))
    value_t = jnp.take_along_axis(at_t.value, own, axis=1)[:, 0]
    length = market.lengths()
    need = inverse_value(market.rate, length, market.customers.budget[:, None], value_t[:, None])
    others = stays[:, None] & (market.hours > 0) & ~columns(sigma, market.rate.shape[1])
    ids = jnp.where(others, market.model_ids(), m)
    floor = jnp.full((m,), -jnp.inf, prices.dtype).at[ids.reshape(-1)].max(need.reshape(-1), mode="drop")
    return jnp.minimum(jnp.maximum(prices, floor), market.models.price_hi).at[j].set(t), stays


def raised_assignment(market: ValueMarket, prices, tol, hood: _Neighbourhood, customer):
    """The assignment a raise candidate proposes (see the module docstring): customer i's model j
    priced at t = `hood.top[i]`, where i's value of it falls to 0.

    j's customers who value it at t at least 0 stay (i among them); each other model k is priced
    at least where every one of them still weakly prefers j (V_ik(beta_k) <= V_ij(t)); at those
    prices every other customer chooses again (the tie rule's choice). Every customer who had an
    option and now chooses another or none, and each of j's who cannot pay t, goes to its
    insertion that re-priced best (`hood.tried`), or where none was scored to that choice (j's:
    where a shed re-homes them). Where a chain of indifferences pins j's price (a customer of j
    envies model k, whose own price a customer of k pins by envying a third model) no single
    re-assignment lifts it; this moves the customers at both ends at once.
    """
    mine = hood.model == hood.model[customer]
    raised, stays = raised_prices(market, prices, hood.sigma, hood.model, hood.top, customer)
    sigma = choose(rental_options(market, raised), tol)
    # Customers the raised prices move (and j's who cannot pay t) go where their insertion re-priced
    # best, if any was scored: their choice at the raised prices may be nothing where cutting a
    # model's price would win them.
    moved = (hood.sigma > 0) & ((sigma != hood.sigma) | mine)
    out = jnp.where(moved & (hood.tried > 0), hood.tried, jnp.where(mine, hood.alt, sigma))
    return jnp.where(stays, hood.sigma, out)


def all_moves(
    market: ValueMarket,
    prices,
    tol,
    *,
    inserts: int,
    drops: int,
    sheds: int,
    raises: int = 0,
    groups: int = 0,
    gains: int = 0,
    batch: int = 64,
):
    """Every candidate move from `prices` (see `_candidates`), re-priced: `(prices, profits)` of shape
    `(C, M)` and `(C,)`, profit -inf for an invalid candidate.

    Candidates are evaluated `batch` at a time, valid ones first, until a chunk holds none (an
    invalid candidate is not re-priced: its prices are `prices`), so memory is `batch` copies of
    the (N, K) option arrays whatever the number of candidates. Each chunk's re-pricing runs until its
    slowest candidate converges: most candidates need a few rounds of `keep_prices` and a few
    (assignments no prices keep) run to the cap, min(M, N) + 2, so on many-model markets small chunks waste
    fewer rounds; on small markets one chunk is one sequential step fewer.
    """
    opts = rental_options(market, prices)
    sigma = choose(opts, tol)
    cands, hood = _candidates(market, prices, opts, sigma, inserts, drops, sheds, raises, groups, gains)

    def score_all(cands, hood, raising):
        def score(c):
            i, kind, a, ok = c
            proposed = assignment(hood, i, kind, a)
            if raising:
                raised = raised_assignment(market, prices, tol, hood, i)
                proposed = jnp.where(kind == RAISE, raised, proposed)
            q, _ = keep_prices(market, proposed)
            value = exact_profit(market, q, tol)
            # An invalid candidate's prices are `prices` whether or not its chunk ran (below).
            return jnp.where(ok, q, prices), jnp.where(ok, value, -jnp.inf)

        # Valid candidates first, in equal chunks of at most `batch` (padded with invalid ones), and
        # chunks re-priced one after another until the first without a valid candidate: the work
        # follows the candidates the market has, not the slots (of a kind's slots, a sparse market
        # fills few: a group needs two customers of one model who both value the target).
        count = cands[0].shape[0]
        chunks = _chunks(count, batch)
        size = -(-count // chunks)
        order = jnp.argsort(~cands[3], stable=True)
        pad = lambda x, fill: jnp.concatenate([x, jnp.full(chunks * size - count, fill, x.dtype)])  # noqa: E731
        cands = tuple(pad(x[order], fill) for x, fill in zip(cands, (0, INSERT, 0, False), strict=True))

        def chunk(state):
            c, q, value = state
            part = tuple(lax.dynamic_slice_in_dim(x, c * size, size) for x in cands)
            qc, vc = jax.vmap(score)(part)
            q = lax.dynamic_update_slice_in_dim(q, qc, c * size, 0)
            return c + 1, q, lax.dynamic_update_slice_in_dim(value, vc, c * size, 0)

        def more(state):
            c = state[0]
            return (c < chunks) & cands[3][jnp.minimum(c * size, chunks * size - 1)]

        q0 = jnp.broadcast_to(prices, (chunks * size, prices.shape[0]))
        init = (jnp.asarray(0, jnp.int32), q0, jnp.full(chunks * size, -jnp.inf, prices.dtype))
        _, q, value = lax.while_loop(more, chunk, init)
        back = jnp.argsort(order)  # each candidate's place among the sorted ones
        return q[back], value[back]

    # The last two kinds, SHED_TRIED and RAISE, re-home customers by the insertion of each that
    # re-priced best among those just scored, so they are scored second.
    kept = capped_counts(
        market.n_customers, market.rate.shape[1], inserts, drops, sheds, raises, groups, gains
    )
    k_ins = kept.inserts
    first, k_tried, k_raise = kept.parts
    q, value = score_all(tuple(x[:first] for x in cands), hood, False)
    if not k_tried + k_raise:
        return q, value
    who, where, tried = cands[0][:k_ins], cands[2][:k_ins], value[:k_ins]
    best = jnp.full(market.n_customers, -jnp.inf, tried.dtype).at[who].max(tried)
    top = (tried == best[who]) & (tried > -jnp.inf)
    pick = jnp.zeros_like(hood.alt).at[who].max(jnp.where(top, where, 0))
    hood = hood._replace(tried=jnp.where(best > -jnp.inf, pick, hood.alt))
    # Only the RAISE candidates (the last) build a raised assignment, which costs a choice at the
    # raised prices: the tried sheds are scored apart without it.
    parts = [(q, value)]
    if k_tried:
        parts.append(score_all(tuple(x[first : first + k_tried] for x in cands), hood, False))
    if k_raise:
        parts.append(score_all(tuple(x[first + k_tried :] for x in cands), hood, True))
    return jnp.concatenate([p[0] for p in parts]), jnp.concatenate([p[1] for p in parts])


def _chunks(count: int, batch: int) -> int:
    return -(-count // batch)


def scoring_depth(market: ValueMarket, batch: int = 64, **kinds: int) -> int:
    """Chunks of candidates `all_moves` re-prices one after another with these counts (`kinds`: its
    `inserts`, `drops`, `sheds`, `raises`, `groups`, `gains`): its depth in `Budget.depth`'s units (the
    candidates scored first, then the tried sheds, then the raises)."""
    kept = capped_counts(market.n_customers, market.rate.shape[1], **kinds)
    return sum(_chunks(p, batch) for p in kept.parts if p)


def best_move(market: ValueMarket, prices, tol, **counts):
    """The best candidate move from `prices`: `(new_prices, new_profit)` (profit -inf where there
    is no candidate). `counts`: `inserts`, `drops`, `sheds` as in `all_moves`."""
    qs, values = all_moves(market, prices, tol, **counts)
    k = jnp.argmax(values)
    return qs[k], values[k]


def improve_by_moves(
    market: ValueMarket,
    prices,
    tol,
    *,
    rounds: int,
    inserts: int,
    drops: int,
    sheds: int = 0,
    raises: int = 0,
    groups: int = 0,
    gains: int = 0,
    batch: int = 64,
    sweeps: int,
    count=None,
    budget: Budget | None = None,
    schedule: str = SEQUENTIAL,
):
    """Alternate the best allocation move and classic IMP's coordinate ascent, at most `rounds` times.

    `prices` should be a coordinate-wise optimum (the polish's result), shape `(M,)`, or several,
    shape `(S, M)`. Each round takes the best move (see `best_move`) if it raises the exact profit
    by more than a relative 1e-12, then at most `sweeps` sweeps of coordinate ascent from there; a
    start is done at its first round that finds no such move or after `rounds` rounds. Never lowers
    the exact profit. (Leaving a local optimum of this neighbourhood by its best non-improving move,
    an iterated local search, is not offered: see the docs, how IMP works.)
    `count` (traced or not): improve only the first `count` starts, return the others as they are.
    `budget`: a `Budget` (default none): a round runs only while its largest cost (the candidates
    plus `sweeps` sweeps' line searches, for every start it moves) fits, so a smaller budget stops
    on a prefix of the rounds.

    `schedule` (see `_schedule`): `"sequential"` runs the starts one after another in one loop, one
    round per iteration, which ends when the last start is done: S to S `rounds` iterations. Under
    `jax.vmap` over markets the batch runs until its slowest market is done with all its starts,
    finished markets carried unchanged; the cost is the largest total over the markets, not the
    sum over starts of the slowest market per start (most starts end after one round, a few take
    several, rarely the same start everywhere). `"parallel"` runs round r of every start that is
    not done as one batch: at most `rounds` iterations, each start on the same path.

    Returns `(prices, profit, moves, budget)`: the first three shaped like `prices` with the model
    axis dropped for the last two, `moves` the number of moves taken; `budget` after the rounds run.
    """
    budget = Budget.unlimited() if budget is None else budget
    m = market.n_models
    kinds = dict(inserts=inserts, drops=drops, sheds=sheds, raises=raises, groups=groups, gains=gains)
    counts = dict(**kinds, batch=batch)
    candidates = candidate_count(market, **kinds)
    scoring = scoring_depth(market, **counts)
    round_cost = candidates + sweeps * m
    single = prices.ndim == 1
    starts = prices[None, :] if single else prices
    count = starts.shape[0] if count is None else jnp.minimum(jnp.asarray(count, jnp.int32), starts.shape[0])
    profit = jax.vmap(lambda p: exact_profit(market, p, tol))(starts)

    def round_of(pool, profit, active):
        # One round from each of `pool`'s starts, `active` (one per start) those that take part.
        q, value = jax.vmap(lambda p: best_move(market, p, tol, **counts))(pool)
        better = active & improves(value, profit)
        q, value, used = coordinate_ascent(market, q, tol, sweeps, active=better)
        better = better & (value > profit)
        pool = jnp.where(better[:, None], q, pool)
        return pool, jnp.where(better, value, profit), better, used

    zero = jnp.asarray(0, jnp.int32)
    moves = jnp.zeros(starts.shape[0], jnp.int32)
    if schedule == PARALLEL:

        def body(state):
            pool, profit, moves, active, r, budget = state
            pool, profit, better, used = round_of(pool, profit, active)
            spent = jnp.sum(active, dtype=jnp.int32) * candidates + jnp.sum(used, dtype=jnp.int32) * m
            budget = budget.spend(spent, scoring + jnp.max(used) * m)
            moves = moves + better.astype(moves.dtype)
            return pool, profit, moves, better & (r + 1 < rounds), r + 1, budget

        def more(state):
            active, budget = state[3], state[5]
            return jnp.any(active) & budget.allows(jnp.sum(active, dtype=jnp.int32) * round_cost)

        active = jnp.arange(starts.shape[0], dtype=jnp.int32) < count
        init = (starts, profit, moves, active, zero, budget)
        pool, profit, moves, active, _, budget = lax.while_loop(more, body, init)
        budget = budget.stop_if(jnp.any(active))
    else:

        def body(state):
            pool, profit, moves, s, r, budget = state
            q, value, better, used = round_of(pool[s][None], profit[s][None], jnp.ones(1, bool))
            budget = budget.spend(candidates + used * m, scoring + used[0] * m)
            pool, profit = pool.at[s].set(q[0]), profit.at[s].set(value[0])
            moves = moves.at[s].add(better[0].astype(moves.dtype))
            # The next round of this start, or the next start.
            go_on = better[0] & (r + 1 < rounds)
            return pool, profit, moves, jnp.where(go_on, s, s + 1), jnp.where(go_on, r + 1, 0), budget

        def more(state):
            return (state[3] < count) & state[5].allows(round_cost)

        init = (starts, profit, moves, zero, zero, budget)
        pool, profit, moves, s, _, budget = lax.while_loop(more, body, init)
        budget = budget.stop_if(s < count)
    if single:
        return pool[0], profit[0], moves[0], budget
    return pool, profit, moves, budget


class Counts(NamedTuple):
    """Candidates of each kind in a round, as `_candidates` builds them (sheds: of each of four kinds)."""

    inserts: int
    drops: int
    sheds: int
    raises: int
    groups: int = 0
    gains: int = 0

    @property
    def total(self) -> int:
        return self.inserts + self.drops + 4 * self.sheds + self.raises + self.groups + self.gains

    @property
    def parts(self) -> tuple[int, int, int]:
        """The candidates in the order `all_moves` scores them: every kind but the last two, then
        the tried sheds, then the raises (both re-home customers by the insertions just scored)."""
        return self.total - self.sheds - self.raises, self.sheds, self.raises


def capped_counts(
    n_customers: int,
    n_options: int,
    inserts: int,
    drops: int,
    sheds: int,
    raises: int = 0,
    groups: int = 0,
    gains: int = 0,
):
    """The counts of each kind a round scores on a market of N customers with K options each: at most
    N K insertions (one per customer and option), and at most N of every other kind (one per
    customer). The one place these caps are written: `_candidates`, `all_moves`, the budget's round
    cost and `memory_need` read them here."""
    n = n_customers
    k = n * n_options
    # Insertions ranked by gain are those the first ranking left out (see `_candidates`).
    inserts = min(inserts, k)
    gains = min(gains, k - inserts)
    return Counts(inserts, min(drops, n), min(sheds, n), min(raises, n), min(groups, k), gains)


def candidate_count(market: ValueMarket, **kinds: int) -> int:
    """Candidates `all_moves` scores per round with these counts (`kinds`: the counts of
    `capped_counts`, each capped by the market)."""
    return capped_counts(market.n_customers, market.rate.shape[1], **kinds).total


class Moves(eqx.Module):
    """Settings of the allocation moves: leave the polish's coordinate-wise optima by re-assigning
    customers and re-pricing every model (see the module's docstring for the kinds of move).

    Each round scores every candidate move exactly and takes the best if it raises the profit, then
    polishes again; a start stops at its first round without a paying move, or after `rounds`. The
    `starts` best polished optima of distinct profits are searched, the best result kept. Per round:
    `inserts` insertions per model or per customer, whichever are fewer; `drops` drops per model (at
    most N); `sheds` sheds of each of four kinds (at most N in all per kind); `raises` raise moves
    (at most N). All these kinds are scaled down alike to at most `max_candidates` per round (at
    least one insert), so a round's cost stops growing with M. `groups`: group moves per model or per
    customer, whichever are fewer (at most one per customer and option, and `max_candidates`),
    scored only once the other moves and the look-ahead stop: [`lmaas_jax.imp`][] then runs the
    moves and the look-ahead once more from its best prices with them added, so they never change
    the path the other moves take, and the result is never below the search without them.
    `gains`: insertions per customer ranked by their estimated gain instead of their cut (at most
    the N K insertions the cut did not rank, and `max_candidates`), scored with the groups: the cut
    ranks last every insertion into a model nobody rents, which the polish prices at the top of its
    box, and where models outnumber customers most models are such.
    `batch` candidates are re-priced together; each batch runs until its slowest candidate's
    re-pricing converges. `rounds = 0` turns the moves (and the look-ahead, which extends them) off.
    `schedule`: `"sequential"` searches one start after another, `"parallel"` every start's round
    at once (see `_schedule`); the prices are the same.
    """

    rounds: int = setting(8, "rounds of moves per start (0: no moves)", lo=0)
    starts: int = setting(8, "best polished optima (of distinct profits) the moves start from", lo=1)
    inserts: int = setting(8, "insertion candidates per model and round", lo=1)
    drops: int = setting(1, "drop candidates per model and round", lo=0)
    sheds: int = setting(0, "shed candidates per model, kind and round", lo=0)
    raises: int = setting(0, "raise candidates per round (at most N)", lo=0)
    groups: int = setting(8, "group candidates per model and round", lo=0)
    gains: int = setting(0, "insertions ranked by gain per customer and round, with the groups", lo=0)
    max_candidates: int = setting(2048, "candidates per round at most, all kinds scaled alike", lo=1)
    batch: int = setting(64, "candidates re-priced together", lo=1)
    schedule: str = setting(SEQUENTIAL, "starts one after another or all at once", choices=SCHEDULES)

    def __check_init__(self):
        check_settings(self)

    def counts(self, n_models: int, n_customers: int) -> dict[str, int]:
        """Candidates per round on an M-model, N-customer market: `inserts`, `drops`, `sheds` (of each
        of four kinds), `raises`, `groups` and `gains`, scaled down alike to at most `max_candidates`, and
        `batch`."""
        m, n = n_models, n_customers
        # Insertions move a customer to a model: at most min(M, N) of either side can take part.
        inserts, drops = self.inserts * min(m, n), min(self.drops * m, n)
        sheds = min(self.sheds * m, n)
        raises = min(self.raises, n)
        cap = self.max_candidates
        total = inserts + drops + 4 * sheds + raises
        if total > cap:
            share = cap / total
            inserts = max(1, int(inserts * share))
            drops = min(int(drops * share), cap - inserts)
            sheds = min(int(sheds * share), (cap - inserts - drops) // 4)
            raises = min(int(raises * share), cap - inserts - drops - 4 * sheds)
        # Groups join the search only after the other kinds stop (see `lj.imp`): capped on their own.
        groups = min(self.groups * min(m, n), cap)
        gains = min(self.gains * n, cap)
        return {
            "inserts": inserts,
            "drops": drops,
            "sheds": sheds,
            "raises": raises,
            "groups": groups,
            "gains": gains,
            "batch": self.batch,
        }


def search_moves(market: ValueMarket, prices, profit, tol, settings: Moves, sweeps: int, budget=None):
    """The moves stage: from the polished starts `prices` `(S, M)` with exact profits `profit`, the
    best `settings.starts` of distinct profits are improved by `improve_by_moves` (each round polished
    for `sweeps` sweeps). Starts that polished to one optimum would repeat one search, so only one
    of them is searched. Returns `(prices, profit, moves)` for every start searched and the `budget`
    after (see `improve_by_moves`)."""
    order = jnp.argsort(-profit)
    ranked = profit[order]
    repeat = jnp.concatenate([jnp.zeros(1, bool), ranked[1:] >= ranked[:-1] * (1 - 1e-9) - 1e-12])
    score, pos = lax.top_k(jnp.where(repeat, -jnp.inf, ranked), min(settings.starts, profit.shape[0]))
    top = order[pos]
    return improve_by_moves(
        market,
        prices[top],
        tol,
        rounds=settings.rounds,
        sweeps=sweeps,
        count=jnp.sum(score > -jnp.inf),  # repeats (ranked last) are not searched again
        budget=budget,
        schedule=settings.schedule,
        **settings.counts(market.n_models, market.n_customers),
    )
