"""The greatest prices at which every customer keeps an assigned option.

**The greatest prices that keep an assignment.** Fix an assignment a (customer i -> option a_i,
0 = free: no constraint on its choice). Customer i with a_i = j keeps j at prices beta when
V_ij(beta_j) >= max(0, max_{k != j} V_ik(beta_k)), V_ik(b) = (R_ik - b) min(L_ik, B_i / b) its value
of renting k (continuous and strictly decreasing in b). Inverting V_ij, each constraint reads
beta_j <= f(beta_k) with f nondecreasing, so the set of price vectors that keep a (within the box)
is closed under the componentwise maximum: where it is not empty it has a greatest element. It is
the limit of the monotone iteration from the top of the box,

    beta_j <- min(price_hi_j, beta_j, min_{i: a_i = j} V_ij^{-1}( max(0, max_{k != j} V_ik(beta_k)) )),

which stays above every price vector that keeps a (each step maps such a lower bound to itself) and
so ends at the greatest one. For unit demand (one hour, no budgets) the constraints are difference
constraints and this is Bellman-Ford: it ends after at most M + 1 rounds. Every customer's margin
(b - o_j) min(L, B / b) is nondecreasing in b, so these prices maximise the profit of the
assignment, and under the strong Stackelberg tie rule the exact profit there is at least that (a
customer tied between a_i and another option takes the one better for the seller; a free customer
only adds what it buys). `keep_prices` computes it; a fixed cap on the rounds keeps it a static
loop (prices where the cap cut it short are still evaluated exactly, so a move never reports more
than it earns).

**Stopping early where no prices keep it.** The iterate stays above every price vector that keeps
the assignment, so a step whose bound for some model falls below `price_lo` proves that none does.
For difference constraints (no budgets, one length per customer: `difference_constraints`) the
iteration is Bellman-Ford, and the models whose prices bind each other form a predecessor graph
(model j's predecessor: the model whose price set j's last fall, through the customer whose bound
was least; none where that customer's bound was opting out). As in Bellman-Ford, a cycle in that
graph is a negative cycle: summing p_j >= p_k + w_kj around it, with one inequality strict (the
last model on it to fall fell after its successor's pointer was set), gives a negative sum of
weights, so no prices keep the assignment. Such cycles appear within about their length in
rounds, where the iteration without the check runs on to the cap, lowering the cycle's prices a
little each round; the check costs O(M log M) a round (pointer doubling) against the round's
O(N K). Without the early stop, an assignment that cannot be kept costs min(M, N) + 2 rounds,
which dominated the moves on dense tables of many customers.

Used by the allocation moves (`_moves`) and by posting (`_posting`: with a required gap, the
greatest prices below a solution's at which every intended customer strictly prefers its option).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ..robust._rsr import rental_options
from ..scenarios._market import ValueMarket
from ._line_search import inverse_value


def columns(assign, k):
    """(N, K) one-hot of an assignment of options (a row of False for 0 = free)."""
    return assign[:, None] == jnp.arange(1, k + 1, dtype=assign.dtype)[None, :]


def keep_prices(
    market: ValueMarket,
    assign,
    *,
    start=None,
    gap=None,
    max_rounds: int | None = None,
):
    """The greatest prices in the box at which every customer keeps its assigned option.

    `assign`: shape `(N,)`, 0 = free (the customer may do anything), k = its option k (1-based;
    option k is model k in a dense table, see [`lmaas_jax.ValueMarket`][]).
    `start`: an upper bound on the prices (default `price_hi`): the result is the greatest below it.
    `gap`: shape `(N, K + 1)`, the margin by which customer i's assigned option must beat option l
    (column 0: opting out), default 0 (weakly); `post`
    uses it to make intended customers strictly prefer their option. Returns `(prices, rounds)`.

    Models nobody is assigned to end at `price_hi`. Where no price vector in the box keeps the
    assignment, the iteration stops once that is proven (a bound below `price_lo`, or for difference
    constraints a cycle of binding models; see the module docstring) or the rounds run out, and
    some assigned customer does not keep its option at the prices returned (the caller evaluates
    them exactly). `max_rounds` caps the
    iteration (default min(M, N) + 2: only models with an assigned customer ever move, at most
    min(M, N) of them, and for unit demand, Bellman-Ford over those, the iteration ends within one
    round more than their number where the assignment can be kept at all; with hours and budgets
    the iteration can converge only in the limit, and prices cut short are higher than the greatest
    ones, which the exact evaluation then prices as they are).
    """
    mo, cu = market.models, market.customers
    m = market.n_models
    # Only models with an assigned customer move, at most min(M, N) of them (see the docstring).
    rounds_cap = min(m, market.n_customers) + 2 if max_rounds is None else int(max_rounds)
    onehot = columns(assign, market.rate.shape[1])
    j = jnp.maximum(assign - 1, 0)
    pick = lambda x: jnp.take_along_axis(x, j[:, None], axis=1)[:, 0]  # noqa: E731
    rate = pick(market.rate)
    length = jnp.minimum(pick(market.hours), cu.horizon)
    kept = (assign > 0) & (length > 0)
    owner = jnp.where(kept, assign, 0)
    own_model = jnp.maximum(market.chosen_model(owner) - 1, 0)  # 0-based; unused where owner = 0
    ninf = jnp.asarray(-jnp.inf, market.rate.dtype)
    ids = market.model_ids()
    linear = difference_constraints(market)

    zero = jnp.zeros((market.n_customers, market.rate.shape[1] + 1), market.rate.dtype)
    gap = zero if gap is None else gap

    def step(p, pred):
        opts = rental_options(market, p)
        others = opts.available & ~onehot
        score = jnp.where(others, opts.value + gap[:, 1:], ninf)
        alt = jnp.max(score, axis=1)
        # The model whose price binds each customer's bound (m: none, the customer opts out); a
        # max over the tied, not an argmax (a variadic reduction, slow on a CPU).
        tied = jnp.max(jnp.where(score == alt[:, None], ids, -1), axis=1)
        via = jnp.where(alt > gap[:, 0], tied, m)
        alt = jnp.maximum(alt, gap[:, 0])
        bound = inverse_value(rate, length, cu.budget, alt)
        cap = market.per_model(bound, owner, m, "min", jnp.inf)
        least = bound <= cap[own_model]
        binding = market.per_model(jnp.where(least, via, -1), owner, m, "max", -1)
        below = jnp.minimum(cap, p)
        q = jnp.maximum(jnp.minimum(below, mo.price_hi), mo.price_lo)
        fell = q < p
        pred = jnp.where(fell, jnp.where(binding >= 0, binding, m), pred)
        # Every price vector that keeps the assignment lies below the iterate, so a bound below
        # the box proves that none does; for difference constraints so does a cycle of binding
        # models (a negative cycle, see the docstring).
        hopeless = jnp.any(below < mo.price_lo) | (linear & _has_cycle(pred, m))
        return q, pred, hopeless

    def more(state):
        p, q, _, hopeless, r = state
        return (r < rounds_cap) & jnp.any(p != q) & ~hopeless

    def body(state):
        _, q, pred, _, r = state
        q2, pred, hopeless = step(q, pred)
        return q, q2, pred, hopeless, r + 1

    top = mo.price_hi if start is None else jnp.minimum(start, mo.price_hi)
    root = jnp.full(m, m, jnp.int32)
    first, pred, hopeless = step(top, root)
    init = (top, first, pred, hopeless, jnp.asarray(1, jnp.int32))
    _, prices, _, _, rounds = lax.while_loop(more, body, init)
    return prices, rounds


def difference_constraints(market: ValueMarket):
    """Whether keeping an assignment is a system of difference constraints (traced bool): no budgets
    and, per customer, one length for all its options, so V_ik(b) = L_i (R_ik - b) and every
    constraint reads beta_j <= beta_k + w. Unit demand is the case."""
    length = market.lengths()
    usable = market.hours > 0
    longest = jnp.max(jnp.where(usable, length, -jnp.inf), axis=1)
    shortest = jnp.min(jnp.where(usable, length, jnp.inf), axis=1)
    one_length = jnp.all(~jnp.any(usable, axis=1) | (longest == shortest))
    return jnp.all(jnp.isinf(market.customers.budget)) & one_length


def _has_cycle(pred, m: int):
    """Whether following `pred` (shape `(M,)`, m = the root) from some model never reaches the root:
    pointer doubling, ceil(log2(M + 1)) squarings of the successor map."""
    succ = jnp.concatenate([pred, jnp.full(1, m, pred.dtype)])
    for _ in range(max(1, (m + 1).bit_length())):
        succ = succ[succ]
    return jnp.any(succ[:m] != m)
