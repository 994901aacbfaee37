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

    Models nobody is assigned to end at `price_hi`; where no price vector in the box keeps the
    assignment, some price ends at `price_lo` or the rounds run out, and some assigned
    customer does not keep its option there (the caller evaluates exactly). `max_rounds` caps the
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
    ninf = jnp.asarray(-jnp.inf, market.rate.dtype)

    zero = jnp.zeros((market.n_customers, market.rate.shape[1] + 1), market.rate.dtype)
    gap = zero if gap is None else gap

    def step(p):
        opts = rental_options(market, p)
        others = opts.available & ~onehot
        alt = jnp.max(jnp.where(others, opts.value + gap[:, 1:], ninf), axis=1)
        alt = jnp.maximum(alt, gap[:, 0])
        bound = inverse_value(rate, length, cu.budget, alt)
        cap = market.per_model(bound, jnp.where(kept, assign, 0), m, "min", jnp.inf)
        return jnp.maximum(jnp.minimum(jnp.minimum(cap, p), mo.price_hi), mo.price_lo)

    def more(state):
        p, q, r = state
        return (r < rounds_cap) & jnp.any(p != q)

    def body(state):
        _, q, r = state
        return q, step(q), r + 1

    top = mo.price_hi if start is None else jnp.minimum(start, mo.price_hi)
    _, prices, rounds = lax.while_loop(more, body, (top, step(top), jnp.asarray(1, jnp.int32)))
    return prices, rounds
