"""The brute-force line search of classic IMP: every candidate price evaluated exactly, O(N^2 M).

This was classic IMP's line search until the O(N log N) one in `lmaas_jax.lmaas.pricing._line_search` replaced
it; it stays as that search's test oracle and as the benchmark's baseline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..pricing._line_search import candidates
from ..pricing._profit import profit_from_terms


def brute_force_line(market, terms, prices, j, tol):
    """Best exact profit over model j's breakpoints and box ends, the other prices fixed.

    Evaluates [`lmaas_jax.seller_profit`][]'s exact profit at all N + 3 candidates (every customer's
    breakpoint, `price_lo`, `price_hi` and the current price), vmapped, and returns
    `(price, profit)` of the first best in that order. Memory and time O(N^2 M).
    """
    cands, _ = candidates(market, terms, prices, j)
    profits = jax.vmap(lambda b: profit_from_terms(market, terms, prices.at[j].set(b), tol))(cands)
    k = jnp.argmax(profits)
    return cands[k], profits[k]
