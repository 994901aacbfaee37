"""The exact one-model line search of classic IMP, in O(N log N) plus a few O(N M) exact checks.

With every price but beta_j fixed, the seller's exact profit as a function of b = beta_j changes
only where some customer changes its option, so its maximum over the price box is attained at a
customer's breakpoint (the price at which it stops preferring model j) or at a box end. Evaluating
the exact profit at all N + 3 candidates costs O(N^2 M) (that is
[`lmaas_jax.reference.brute_force_line`][], the oracle this module is tested against). Here:

1. **An upper bound at every candidate, by sorting.** Per customer i, with A_i the best value of its
   other options (opt-out included) and V_i(b) = (R - b) min(L, B / b) the value of renting j
   (R = m_ij mu_j, L = min(hours_ij, H_i); continuous and strictly decreasing in b), the customer's
   contribution to the profit is:

   - S_i(b) = (b - o_j) min(L, B / b) while V_i(b) > A_i + w_i: it rents j, no other option ties;
     a linear piece -o L + L b up to its budget kink B / L, then B - o B / b;
   - at most max(S_i(w2_i), s_i) on the window V_i(b) in [A_i - w_i, A_i + w_i], where ties are
     possible (S is nondecreasing in b, s_i the largest seller margin among its other options
     within w_i of A_i);
   - at most s_i beyond the window, where j no longer ties.

   w_i bounds the tie tolerance of [`lmaas_jax.rsr`][] at every b (its scale, the customer's
   largest gross value, is at most max(others' gross, R L)) plus rounding. Customers who can never
   use j contribute their current, exact margin. Each contribution is a + c b + d / b on at most
   four pieces, so sorting the candidates, placing each piece's end among them by binary search
   and summing the coefficient changes by bins and prefix sums gives the bound at all candidates
   in O(N log N).

2. **Exact checks in bound order.** Candidates are then evaluated exactly, with the same
   `exact_profit` as the brute force (so at a given price the two agree to the last bit),
   `chunk` at a time (default 2) in decreasing order of the bound, until the best exact profit found
   exceeds every remaining bound by more than twice the rounding slack. Profits within the slack of
   the best are ties, and ties go to the highest price (`highest_near_best`: which of two such
   profits rounds higher depends on the compiled summation order, so a rule on the last bit made
   a batch of 300 starts end elsewhere than the same start in a batch of 150). Where the data are
   generic one chunk suffices; at most `max_chunks` are checked (among equal bounds the higher
   price first), which only matters where many candidates share one profit, and then the returned
   price is the highest of the checked ones.

**Exactness.** The bound is a bound (each piece dominates the exact contribution, including every
tie case of the strong Stackelberg rule, which can only be decided in the window), so no unchecked
candidate can beat the returned one by more than the slack, which covers the rounding of both sums.
`tests/test_line_search.py` checks against the brute force on 756 random (market, prices, model)
cases per dtype, with finite budgets, planted ties and prices at the bottom of the box (most
candidates clipped to one), in float32 and float64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from ..robust._rsr import choose, chosen_margin, rental_options
from ..scenarios._market import ValueMarket
from ._profit import exact_profit, pairwise_sum


def candidates(market: ValueMarket, prices, j):
    """Model j's candidate prices: every customer's breakpoint, the box ends and the current price.

    Returns `(candidates, parts)` where `parts` holds the per-customer quantities the bound needs.
    The breakpoint is where V_i(b) = A_i: b = R - A / L while the budget is slack (b <= B / L), else
    b = R B / (A + B); customers who can never use j get `price_lo`. Clipped to the price box.
    """
    mo, cu = market.models, market.customers
    opts = rental_options(market, prices)
    others = ~market.is_model(j) & opts.available  # options, dense or lists (see ValueMarket)
    alt = jnp.maximum(jnp.max(jnp.where(others, opts.value, 0.0), axis=1), 0.0)
    rate = market.column(market.rate, j)
    length = jnp.minimum(market.column(market.hours, j), cu.horizon)
    usable = length > 0
    lo, hi = mo.price_lo[j], mo.price_hi[j]
    breakpoint = jnp.where(usable, inverse_value(rate, length, cu.budget, alt), lo)
    cands = jnp.concatenate([jnp.clip(breakpoint, lo, hi), jnp.stack([lo, hi, prices[j]])])
    parts = dict(opts=opts, others=others, alt=alt, rate=rate, length=length, usable=usable)
    return cands, parts


def inverse_value(rate, length, budget, y):
    """The price b >= 0 at which V(b) = (R - b) min(L, B / b) equals y (V is decreasing in b).

    b = R - y / L where that leaves the budget slack (b L <= B), else b = R B / (y + B), which is
    +inf where y <= -B (V never falls that low). Entries with L = 0 are meaningless (masked later).
    """
    finite = jnp.isfinite(budget)
    safe_length = jnp.where(length > 0, length, 1.0)
    # y times 1 / L, not y / L: in a batch of price vectors (y batched, L the market's), XLA
    # rewrites a division by a broadcast divisor into this product, which rounds differently, and
    # a start would then find other breakpoints in a batch than alone (see `_schedule`).
    slack = rate - y * (1.0 / safe_length)
    safe_budget = jnp.where(finite, budget, 1.0)
    denom = y + safe_budget
    by_budget = jnp.where(denom > 0, rate * safe_budget / jnp.where(denom > 0, denom, 1.0), jnp.inf)
    return jnp.where(finite & (slack * safe_length > safe_budget), by_budget, slack)


def _prefix(x):
    """Inclusive prefix sums along the first axis with log-depth (pairwise) rounding error."""
    return lax.associative_scan(jnp.add, x, axis=0)


def _count_sum(positions, deltas, queries, order):
    """For each query q: the sum of `deltas` rows whose position is <= q, and the most rows summed
    one after another (for the rounding slack).

    The queries (N + 3 candidates) are sorted, not the 3N positions: each position falls in the bin
    of the first sorted query at or above it (an event that must count only where its position is
    < q is passed at the next float up: p < q iff nextafter(p, inf) <= q), the bins' deltas are
    summed by a scatter-add and the bins by prefix sums. Sorting a third as many keys made the
    whole line search about 2x faster at N = 64 (XLA's CPU sort dominated it). A bin's rows are
    added in sequence, so its error grows with its count: the largest count is returned. The first
    bin (positions at or below the lowest query: every breakpoint clipped to `price_lo`, often most
    customers on a large market) counts for every query and is summed by a reduction instead.
    """
    c = queries.shape[0]
    bins = jnp.searchsorted(queries[order], positions, side="left")
    first = bins == 0
    always = pairwise_sum(jnp.where(first[:, None], deltas, 0.0))
    rows = jnp.concatenate([deltas, jnp.ones((positions.shape[0], 1), deltas.dtype)], 1)  # + a count
    rows = jnp.where(first[:, None], 0.0, rows)
    hist = jnp.zeros((c + 1, rows.shape[1]), deltas.dtype).at[bins].add(rows)
    # Positions above every query (bin c) never count.
    csum = _prefix(hist[:c, :-1]) + always[None, :]
    return jnp.zeros_like(csum).at[order].set(csum), jnp.max(hist[:c, -1])


def profit_bounds(market: ValueMarket, prices, j, tol, cands, parts):
    """An upper bound on the exact profit at every candidate price of model j, and its slack.

    Returns `(bound, slack, by_price)`: exact(c) <= bound(c) + slack for every candidate c, in exact
    arithmetic up to the rounding that `slack` covers, except that a candidate equal to one of
    lower index gets -inf (its exact profit is that one's); `by_price` orders the candidates by
    ascending price (the sort the bound needs, for the search's order).
    """
    mo, cu = market.models, market.customers
    opts = parts["opts"]
    others, alt, rate, length, usable = (parts[k] for k in ("others", "alt", "rate", "length", "usable"))
    dtype = prices.dtype
    eps = jnp.finfo(dtype).eps
    n = market.n_customers
    o = mo.serving_cost[j]
    hi = mo.price_hi[j]
    budget = cu.budget
    finite = jnp.isfinite(budget)

    # Current exact choice: the contribution of customers who can never use j, whatever beta_j.
    current = chosen_margin(opts, choose(opts, tol))

    # Window half-width: the largest tie tolerance over b, plus the rounding of the values.
    gross_others = jnp.max(jnp.where(others, opts.gross, 0.0), axis=1)
    scale = jnp.maximum(gross_others, jnp.where(usable, rate * length, 0.0))
    value_mag = jnp.maximum(rate, hi) * length + jnp.max(jnp.where(others, jnp.abs(opts.value), 0.0), axis=1)
    width = tol * (1.0 + scale) + 16.0 * eps * (1.0 + scale + value_mag)
    near = others & (opts.value >= (alt - width)[:, None])
    s_near = jnp.max(jnp.where(near, opts.seller_margin, -jnp.inf), axis=1)
    s_near = jnp.where(alt - width <= 0.0, jnp.maximum(s_near, 0.0), s_near)  # opt-out ties too

    w1 = inverse_value(rate, length, budget, alt + width)
    w2 = inverse_value(rate, length, budget, alt - width)
    w1 = w1 * (1.0 - 8.0 * eps) - 8.0 * eps * jnp.abs(hi)
    w2 = w2 * (1.0 + 8.0 * eps) + 8.0 * eps * jnp.abs(hi)
    kink = jnp.where(finite, jnp.where(finite, budget, 1.0) / jnp.where(usable, length, 1.0), jnp.inf)

    def s_at(b):
        tau = jnp.where(
            finite & (b * length > jnp.where(finite, budget, 0.0)),
            jnp.where(finite, budget, 0.0) / jnp.where(b > 0, b, 1.0),
            length,
        )
        return (b - o) * tau

    # S is nondecreasing and candidates lie in the box, so S(min(w2, hi)) bounds S on the window.
    top = jnp.maximum(s_at(jnp.minimum(w2, hi)), s_near)
    zero = jnp.zeros_like(rate)
    # Pieces as (a, c, d): contribution a + c b + d / b.
    linear = jnp.stack([-o * length, length, zero], axis=1)
    by_budget = jnp.stack([jnp.where(finite, budget, 0.0), zero, -o * jnp.where(finite, budget, 0.0)], axis=1)
    window = jnp.stack([top, zero, zero], axis=1)
    beyond = jnp.stack([s_near, zero, zero], axis=1)
    fixed = jnp.stack([current, zero, zero], axis=1)

    kinked = finite & (kink < w1)
    base = jnp.where(usable[:, None], linear, fixed)
    before_window = jnp.where(kinked[:, None], by_budget, linear)
    use = usable[:, None]
    d_kink = jnp.where(use & kinked[:, None], by_budget - linear, 0.0)
    d_w1 = jnp.where(use, window - before_window, 0.0)
    d_w2 = jnp.where(use, beyond - window, 0.0)
    big = jnp.asarray(jnp.inf, dtype)
    # Kink and window start count where position <= b, the window's end where position < b.
    positions = jnp.concatenate(
        [
            jnp.where(use[:, 0] & kinked, kink, big),
            jnp.where(usable, w1, big),
            jnp.nextafter(jnp.where(usable, w2, big), big),
        ]
    )
    deltas = jnp.concatenate([d_kink, d_w1, d_w2], axis=0)
    order = jnp.argsort(cands)  # stable: equal candidates in index order
    summed, pile = _count_sum(positions, deltas, cands, order)
    coef = pairwise_sum(base)[None, :] + summed
    b = cands
    inv = jnp.where(b > 0, 1.0 / jnp.where(b > 0, b, 1.0), 0.0)
    bound = coef[:, 0] + coef[:, 1] * b + coef[:, 2] * inv - pairwise_sum(mo.training_cost)
    # A candidate equal to an earlier one has its profit: only the first is checked (breakpoints
    # clipped to the box end pile up there and would fill the exact checks with one price).
    ranked = cands[order]
    repeat = jnp.concatenate([jnp.zeros(1, bool), ranked[1:] == ranked[:-1]])
    bound = bound.at[order].set(jnp.where(repeat, -jnp.inf, bound[order]))

    # Every term the sums add, in absolute value (on the budget piece o B / b <= o L, as b >= B / L).
    per_customer = jnp.abs(top) + jnp.abs(s_near) + (jnp.abs(o) + jnp.abs(hi)) * length
    per_customer = per_customer + jnp.where(kinked, jnp.where(finite, budget, 0.0), 0.0)
    # (Sums of a fixed order, as every sum the search compares: see `pairwise_sum`.)
    magnitude = (
        pairwise_sum(jnp.abs(current))
        + pairwise_sum(jnp.where(usable, per_customer, 0.0))
        + pairwise_sum(jnp.abs(mo.training_cost))
    )
    # Pairwise sums over customers and bins (log terms), plus one bin's rows added in sequence.
    slack = (64.0 + 8.0 * math.log2(2 * n + 2) + 4.0 * math.sqrt(n) + 2.0 * pile) * eps * magnitude
    return bound, slack, order


def best_on_line(
    market: ValueMarket,
    prices,
    j,
    tol,
    *,
    chunk: int = 2,
    max_chunks: int = 16,
):
    """The best exact profit over model j's breakpoints and box ends, the other prices fixed.

    `j` (0-based) may be a Python int or a traced integer (so `jax.vmap` over models works).

    Returns `(price, profit)`: the highest candidate price whose exact profit lies within the
    rounding slack of the best (`highest_near_best`), and that profit; the same as
    [`lmaas_jax.reference.brute_force_line`][] (see the module docstring for the argument and the one
    documented difference: beyond `chunk * max_chunks` near-best candidates, the highest of those
    checked).
    """
    cands, parts = candidates(market, prices, j)
    bound, slack, by_price = profit_bounds(market, prices, j, tol, cands, parts)
    c = cands.shape[0]
    k = min(chunk, c)
    n_chunks = min(max_chunks, -(-c // k))
    # Only the first n_chunks * k in bound order can be checked; among equal bounds the higher price
    # first (a model nobody buys has one profit, and so one bound, everywhere on its line): top_k
    # over the candidates by descending price (its ties go to the earlier), not another sort.
    descending = by_price[::-1]
    top_bound, position = lax.top_k(bound[descending], min(n_chunks * k, c))
    order = descending[position]
    pad = max(n_chunks * k - c, 0)  # a ragged last chunk re-checks the last candidate
    padded = jnp.concatenate([order, jnp.full((pad,), order[-1])])
    sorted_bound = jnp.concatenate([top_bound, jnp.full((pad,), -jnp.inf, bound.dtype)])

    def exact(index):
        return exact_profit(market, prices.at[j].set(cands[index]), tol)

    def body(state):
        r, best_p, seen = state
        idx = lax.dynamic_slice(padded, (r * k,), (k,))
        profits = jax.vmap(exact)(idx)
        seen = lax.dynamic_update_slice(seen, profits, (r * k,))
        return r + 1, jnp.maximum(best_p, jnp.max(profits)), seen

    def more(state):
        # Every candidate that could come within the slack of the best (exact <= bound + slack).
        r, best_p, _ = state
        nxt = lax.dynamic_index_in_dim(sorted_bound, jnp.minimum(r * k, n_chunks * k - 1), keepdims=False)
        return (r < n_chunks) & (nxt + 2 * slack >= best_p)

    ninf = jnp.asarray(-jnp.inf, bound.dtype)
    init = (jnp.asarray(0, jnp.int32), ninf, jnp.full((n_chunks * k,), ninf))
    _, _, seen = lax.while_loop(more, body, init)
    pick = highest_near_best(cands[padded], seen, slack)
    return cands[padded[pick]], seen[pick]


def highest_near_best(prices, profits, slack):
    """The tie rule of the line search: the index of the highest price among those whose profit lies
    within `slack` of the best (the first such index where several share that price).

    Profits closer than the rounding slack are ties: which of them rounds higher depends on the
    summation order XLA compiles, and that changes with the batch shape (a batch of 150 starts or of
    300), the backend and the fusion, so without a rule one search's end point could depend on the
    size of the batch it ran in (seen on the unit-demand benchmark, see the docs). Taking the highest
    price of the near-best ones makes the choice hold under any order (unless a
    profit lies right at the window's edge) and prices a model nobody buys at the top of its box.
    """
    near = profits >= jnp.max(profits) - slack
    return jnp.argmax(jnp.where(near, prices, -jnp.inf))


def best_on_line_among(market: ValueMarket, prices, j, tol, users):
    """`best_on_line` reading only `users` (shape `(D,)`, padded with N): the customers who have
    model j as an option; every other customer's choice, and so its margin, does not depend on
    beta_j. Costs O(D (K + log D)) instead of O(N (K + log N)) (option lists, see
    [`lmaas_jax.ModelUsers`][]).

    Returns `(price, gain)`: the best candidate among the users' breakpoints, the box ends and the
    current price, and the exact profit it adds over the current price (>= 0 up to the rounding
    slack; the users' margins summed before and after). The price maximises the whole profit as
    `best_on_line`'s does (the non-users' candidates, all `price_lo`, are never above the users'
    lowest); the slack is the users' own, so near-ties can resolve differently.
    """
    sub = market.restrict(users)
    price, value = best_on_line(sub, prices, j, tol)
    return price, value - exact_profit(sub, prices, tol)
