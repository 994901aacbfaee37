"""The seller's profit, exact and relaxed."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._market import Market
from ._relaxed_rsr import relaxed_rsr
from ._rsr import rsr


def seller_profit(
    market: Market, prices: Float[ArrayLike, " models"], *, tie_tol: float | None = None
) -> Float[Array, ""]:
    """The seller's exact profit Pi(beta) = sum_i (beta_j* - o_j*) tau*_i - sum_j F_j ($).

    (j*_i, tau*_i) is customer i's exact robust response from [`lmaas_jax.rsr`][] (strong
    Stackelberg ties). Piecewise smooth and discontinuous in the prices; use
    [`lmaas_jax.relaxed_seller_profit`][] for gradients.
    """
    response = rsr(market, prices, tie_tol=tie_tol)
    return jnp.sum(response.seller_margin) - jnp.sum(market.models.training_cost)


def relaxed_seller_profit(
    market: Market, prices: Float[ArrayLike, " models"], temperature: Float[ArrayLike, ""]
) -> Float[Array, ""]:
    """The seller's profit under the relaxed responses of [`lmaas_jax.relaxed_rsr`][] ($).

    Smooth in the prices; tends to [`lmaas_jax.seller_profit`][] as temperature -> 0 away from ties.
    """
    response = relaxed_rsr(market, prices, temperature)
    return jnp.sum(response.expected_margin) - jnp.sum(market.models.training_cost)
