"""Who owns which model: each seller's profit, and the market as one seller sees it.

The tie rule of the competitive game is the single-seller one, read across sellers: a customer
indifferent between options takes the one with the largest margin (beta_j - o_j) tau_ij, whoever
owns it, then renting over not renting, then the lowest model index ([`lmaas_jax.rsr`][]). The
seller with the larger margin on a tied customer is the one that would win it by an arbitrarily
small price cut, so the rule gives each tie to the seller who could take it anyway; one owner is
today's game exactly. A seller's *deviation* is judged with every tie in the deviator's favour
(`best_response_market`): the supremum of what its small cuts can win. See the formulation page.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ..._checks import check_prices, is_concrete
from ..robust._rsr import as_prices, respond, tie_tolerance, value_market
from ..scenarios._market import AnyMarket, ModelPrices, ValueMarket, check_market


def check_owner(owner, n_models: int, n_sellers: int | None = None) -> int:
    """The number of sellers S that `owner` names, after checking it: an integer array of shape
    `(n_models,)` whose entries are sellers 0..S-1, each owning at least one model (a TypeError or
    ValueError naming `owner` and the value otherwise). With a traced `owner`, `n_sellers` must be
    given (shapes are static) and its entries are not inspected."""
    if n_sellers is not None:
        if isinstance(n_sellers, bool) or not isinstance(n_sellers, int | np.integer) or n_sellers < 1:
            raise ValueError(f"n_sellers must be an int >= 1; got {n_sellers!r}.")
    if not hasattr(owner, "shape"):
        owner = np.asarray(owner)
    if tuple(owner.shape) != (n_models,):
        raise ValueError(
            f"owner must have shape ({n_models},), one seller per model; got shape {tuple(owner.shape)}."
        )
    if not jnp.issubdtype(owner.dtype, jnp.integer):
        raise TypeError(f"owner must hold integers (seller 0..S-1 per model); got dtype {owner.dtype}.")
    if not is_concrete(owner):
        if n_sellers is None:
            raise ValueError("owner is traced: pass n_sellers (the number of sellers, static).")
        return int(n_sellers)
    o = np.asarray(owner)
    if (o < 0).any():
        j = int(np.argmax(o < 0))
        raise ValueError(f"owner must name sellers 0..S-1; got {int(o[j])} at index {j}.")
    s = int(o.max()) + 1 if n_sellers is None else int(n_sellers)
    if (o >= s).any():
        j = int(np.argmax(o >= s))
        raise ValueError(f"owner[{j}] = {int(o[j])} is not a seller of n_sellers = {s} (0..{s - 1}).")
    missing = sorted(set(range(s)) - set(o.tolist()))
    if missing:
        raise ValueError(
            f"owner must give every seller 0..{s - 1} a model; seller {missing[0]} owns none "
            f"(owner = {o.tolist()})."
        )
    return s


def profits_by_seller(
    values: ValueMarket, prices: Float[Array, " models"], owner: Int[Array, " models"], n_sellers: int, tol
) -> Float[Array, " sellers"]:
    """Each seller's exact profit on a value table (internal: no checks)."""
    response = respond(values, values, prices, tol)
    j = jnp.maximum(response.choice - 1, 0)
    seller = jnp.where(response.choice > 0, owner[j], n_sellers)  # n_sellers: no rental
    earned = jnp.zeros(n_sellers + 1, prices.dtype).at[seller].add(response.seller_margin)[:n_sellers]
    fixed = jnp.zeros(n_sellers, prices.dtype).at[owner].add(values.models.training_cost)
    return earned - fixed


def _check_profits(market, prices, owner, *, n_sellers=None, tie_tol=None):
    check_market(market)
    check_prices("prices", prices, market.n_models)
    check_owner(owner, market.n_models, n_sellers)
    tie_tolerance(market, tie_tol)


def seller_profits(
    market: AnyMarket,
    prices: Float[ArrayLike, " models"],
    owner: ArrayLike,
    *,
    n_sellers: int | None = None,
    tie_tol: float | None = None,
) -> Float[Array, " sellers"]:
    """Each seller's exact profit when seller `owner[j]` owns model j ($, shape `(S,)`).

    Seller s earns (beta_j - o_j) tau*_i from every customer i whose robust response
    ([`lmaas_jax.rsr`][]) rents one of its models, minus the training costs F_j of its models. Ties
    between options go to the largest margin whoever owns it (the module's tie rule), so the
    profits sum to [`lmaas_jax.seller_profit`][] and one owner gives exactly it.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][].
    - `prices`: shape `(M,)`, $ per rented hour.
    - `owner`: shape `(M,)` integers, the seller of each model, sellers 0..S-1 each owning a model.
    - `n_sellers`: S; default `max(owner) + 1` (give it when `owner` is traced).
    - `tie_tol`: as in [`lmaas_jax.rsr`][].
    """
    _check_profits(market, prices, owner, n_sellers=n_sellers, tie_tol=tie_tol)
    s = check_owner(owner, market.n_models, n_sellers)
    return _seller_profits(market, prices, jnp.asarray(owner, jnp.int32), s, tie_tolerance(market, tie_tol))


@eqx.filter_jit
def _seller_profits(market, prices, owner, n_sellers, tol):
    prices = as_prices(market, prices)
    return profits_by_seller(value_market(market), prices, owner, n_sellers, tol)


def best_response_market(
    values: ValueMarket, prices: Float[Array, " models"], owner: Int[Array, " models"], seller
) -> ValueMarket:
    """The market as `seller` sees it when the others hold `prices`: its own models as they are;
    every rival model's price box closed at its price (`price_lo = price_hi = prices[j]`), its
    serving cost set to that price and its training cost to 0.

    A rival's option then earns this market's (single) seller nothing, so the market's profit is
    `seller`'s own (minus the rivals' training costs, which it no longer counts), and the
    single-seller tie rule, largest margin first, gives every tie between a rival's option and one
    of `seller`'s to `seller`: the supremum of what its arbitrarily small price cuts can win. Any
    single-seller solver on this market is a best response ([`lmaas_jax.imp`][]; the HiGHS MILP,
    [`lmaas_jax.reference.milp_best_response`][]). `seller` may be traced; `jax.vmap` over sellers
    works.
    """
    mine = owner == seller
    mo = values.models
    fixed = jax.lax.stop_gradient(prices).astype(mo.serving_cost.dtype)
    side = ModelPrices(
        jnp.where(mine, mo.serving_cost, fixed),
        jnp.where(mine, mo.training_cost, 0.0),
        jnp.where(mine, mo.price_lo, fixed),
        jnp.where(mine, mo.price_hi, fixed),
    )
    return eqx.tree_at(lambda v: v.models, values, side)
