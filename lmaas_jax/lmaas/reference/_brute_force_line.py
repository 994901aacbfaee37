"""The brute-force line search of classic IMP: every candidate price evaluated exactly, O(N^2 M).

This was classic IMP's line search until the O(N log N) one in `lmaas_jax.lmaas.pricing._line_search` replaced
it; it stays as that search's test oracle and as the benchmark's baseline.
"""

from __future__ import annotations

import jax

from ..pricing._line_search import candidates, highest_near_best, profit_bounds
from ..pricing._profit import exact_profit


def brute_force_line(market, prices, j, tol):
    """Best exact profit over model j's breakpoints and box ends, the other prices fixed.

    Evaluates [`lmaas_jax.seller_profit`][]'s exact profit at all N + 3 candidates (every customer's
    breakpoint, `price_lo`, `price_hi` and the current price), vmapped, and returns
    `(price, profit)` of the highest price whose profit lies within the rounding slack of the best
    (the line search's tie rule, `_line_search.highest_near_best`; the slack is the rounding bound
    of `_line_search.profit_bounds`). Memory and time O(N^2 M).
    """
    cands, parts = candidates(market, prices, j)
    _, slack, _ = profit_bounds(market, prices, j, tol, cands, parts)
    profits = jax.vmap(lambda b: exact_profit(market, prices.at[j].set(b), tol))(cands)
    k = highest_near_best(cands, profits, slack)
    return cands[k], profits[k]
