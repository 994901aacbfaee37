"""The seller's profit, exact and relaxed."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..._checks import checked
from ..robust._relaxed_rsr import check_relaxed, checked_temperature, relaxed_respond
from ..robust._rsr import (
    as_prices,
    check_evaluation,
    choose,
    chosen_margin,
    rental_options,
    tie_tolerance,
    value_market,
)
from ..scenarios._market import AnyMarket, ValueMarket


def pairwise_sum(x: Float[Array, "n ..."]) -> Float[Array, "..."]:
    """The sum of `x` along its first axis in a fixed order: a balanced tree of elementwise additions.

    XLA picks a reduction's summation order by the shapes it compiles, so `jnp.sum` over the same
    entries can round differently inside a `jax.vmap` batch than alone; elementwise additions
    round alike at any batch size. The exact stages compare profits to decide every step, so each
    start takes the same path alone or in a batch of starts (see `_schedule`) only with this sum.
    """
    x = jnp.asarray(x)
    size = 1 << max(x.shape[0] - 1, 0).bit_length()
    x = jnp.concatenate([x, jnp.zeros((size - x.shape[0], *x.shape[1:]), x.dtype)])
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        x = x[:half] + x[half:]
    return x[0]


def exact_profit(market: ValueMarket, prices: Float[Array, " models"], tie_tol: float) -> Float[Array, ""]:
    """Exact seller profit on a value table ([`lmaas_jax.value_market`][]): O(N K) per price vector,
    summed by `pairwise_sum` (the same bits alone or in a batch)."""
    options = rental_options(market, prices)
    margin = chosen_margin(options, choose(options, tie_tol))
    return pairwise_sum(margin) - pairwise_sum(market.models.training_cost)


def relaxed_profit(market: ValueMarket, prices: Float[Array, " models"], temperature) -> Float[Array, ""]:
    """Relaxed seller profit on a value table ([`lmaas_jax.value_market`][])."""
    response = relaxed_respond(market, prices, temperature)
    return jnp.sum(response.expected_margin) - jnp.sum(market.models.training_cost)


@checked(check_evaluation)
def seller_profit(
    market: AnyMarket, prices: Float[ArrayLike, " models"], *, tie_tol: float | None = None
) -> Float[Array, ""]:
    """The seller's exact profit Pi(beta) = sum_i (beta_j* - o_j*) tau*_i - sum_j F_j ($).

    (j*_i, tau*_i) is customer i's exact robust response from [`lmaas_jax.rsr`][] (strong
    Stackelberg ties). Piecewise smooth and discontinuous in the prices; use
    [`lmaas_jax.relaxed_seller_profit`][] for gradients.
    """
    prices = as_prices(market, prices)
    tol = tie_tolerance(market, tie_tol)
    return exact_profit(value_market(market), prices, tol)


@checked(check_relaxed)
def relaxed_seller_profit(
    market: AnyMarket, prices: Float[ArrayLike, " models"], temperature: Float[ArrayLike, ""]
) -> Float[Array, ""]:
    """The seller's profit under the relaxed responses of [`lmaas_jax.relaxed_rsr`][] ($).

    Smooth in the prices; tends to [`lmaas_jax.seller_profit`][] as temperature -> 0 away from ties.
    """
    prices = as_prices(market, prices)
    temperature = checked_temperature(temperature)
    return relaxed_profit(value_market(market), prices, temperature)
