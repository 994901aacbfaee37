"""One seller's exact best response in a competitive market, by the HiGHS MILP."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import ArrayLike, Float

from ..._checks import check_prices
from ..competition._owners import best_response_market, check_owner
from ..pricing._solution import PricingSolution
from ..robust._rsr import value_market
from ..scenarios._market import AnyMarket, check_market
from ._milp import milp_pricing


def milp_best_response(
    market: AnyMarket,
    prices: Float[ArrayLike, " models"],
    owner: ArrayLike,
    seller: int,
    *,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-9,
) -> PricingSolution:
    """Seller `seller`'s exact best response to the others' `prices`: the HiGHS MILP
    ([`lmaas_jax.reference.milp_pricing`][]) on [`lmaas_jax.best_response_market`][] (budget-free
    markets).

    The oracle that checks [`lmaas_jax.compete`][]'s equilibria: the MILP picks each customer's
    option among its ties in the deviator's favour, so its optimum is the supremum of what `seller`
    earns by re-pricing its own models alone, arbitrarily small undercuts included.

    **Returns:**

    A [`lmaas_jax.PricingSolution`][] of the best-response market: `prices` the whole price vector
    (the others' as given), `profit` and `stats["profit_supremum"]` the seller's own profit (its
    margins minus its training costs), `stats["optimal"]` whether HiGHS proved it.
    """
    check_market(market)
    check_prices("prices", prices, market.n_models)
    n_sellers = check_owner(owner, market.n_models)
    if isinstance(seller, bool) or not isinstance(seller, int) or not 0 <= seller < n_sellers:
        raise ValueError(f"seller must be an int in 0..{n_sellers - 1}; got {seller!r}.")
    values = value_market(market)
    prices = jnp.asarray(prices, values.dtype)
    seen = best_response_market(values, prices, jnp.asarray(owner, jnp.int32), seller)
    return milp_pricing(seen, time_limit=time_limit, mip_rel_gap=mip_rel_gap)
