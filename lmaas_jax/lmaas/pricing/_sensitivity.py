"""Sensitivities of the equilibrium: how the seller's profit and the customers' surplus move with
the market.

[`lmaas_jax.sensitivities`][] prices a market with any pricing solver and differentiates both sides
of the equilibrium it finds with respect to every floating field of the market, in one reverse pass
per side through the equilibrium's implicit derivative ([`lmaas_jax.equilibrium_prices`][]):

- the seller's exact profit, `solution.profit`;
- the customers' total worst-case surplus, the sum over customers of `solution.response.worst_profit`
  (each customer's robust value of its choice at the equilibrium prices).

Along a locally stable pin pattern every customer keeps its choice, so the surplus is smooth too: a
binding customer is indifferent between its two options and stays so (that is its pin), so both give
the same derivative. Where `stable` is False both derivatives are one one-sided derivative of several.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ..._checks import checked
from ..scenarios._market import AnyMarket, check_market
from ._solution import PricingSolution


class Sensitivities(eqx.Module):
    """Both sides of an equilibrium and their derivatives with respect to the market.

    **Fields:**

    - `solution`: the [`lmaas_jax.PricingSolution`][] the pricing solver returned.
    - `profit`: the seller's exact profit ($), `solution.profit`.
    - `customer_worst`: the customers' total worst-case surplus ($), the sum of
      `solution.response.worst_profit`.
    - `d_profit`: d `profit` / d market, a market of the same type whose floating fields hold the
      derivative with respect to that field (e.g. `d_profit.models.accuracy`, shape `(M,)`, $ per
      unit of accuracy); non-floating fields are `None`.
    - `d_customer_worst`: d `customer_worst` / d market, likewise.
    - `stable`: whether the solution's pin pattern is locally stable (`solution.pins.stable`), so that
      both derivatives are the equilibrium's.
    """

    solution: PricingSolution
    profit: Float[Array, ""]
    customer_worst: Float[Array, ""]
    d_profit: AnyMarket
    d_customer_worst: AnyMarket
    stable: Bool[Array, ""]


def _check_sensitivities(market, pricing):
    check_market(market)
    if not callable(pricing):
        raise TypeError(
            f"pricing must be a function from a market to a PricingSolution, e.g. "
            f"lambda m: lj.imp(m, key=key); got {pricing!r} ({type(pricing).__name__})."
        )


@checked(_check_sensitivities, jit=False)
def sensitivities(market: AnyMarket, pricing: Callable[[AnyMarket], PricingSolution]) -> Sensitivities:
    """Price `market` with `pricing` and differentiate the seller's profit and the customers' total
    worst-case surplus with respect to every floating field of the market.

    One forward solve, two reverse passes (`equinox.filter_vjp`); the solver's iterations are never
    differentiated (the derivative is the implicit one of the pinned prices, see
    `lmaas_jax.lmaas.pricing._equilibrium`). Works under `jax.jit` and `jax.vmap`.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or a [`lmaas_jax.ValueMarket`][].
    - `pricing`: any function from a market to a [`lmaas_jax.PricingSolution`][], e.g.
      `lambda m: lj.imp(m, solver, key=key)` or `lambda m: lj.classic_imp(m, start)`.

    **Returns:**

    A [`lmaas_jax.Sensitivities`][]. For example, `s.d_profit.models.accuracy[j] / 100` is what one
    more point of accuracy of model j is worth to the seller at the equilibrium (the seller
    re-pricing every model), and `s.d_customer_worst.models.throughput[j]` how the customers'
    total worst case moves per task/h more of model j, the seller re-pricing.
    """

    def both(mk):
        sol = pricing(mk)
        if not isinstance(sol, PricingSolution):
            raise TypeError(f"pricing must return a PricingSolution; got {type(sol).__name__}.")
        values = jnp.stack([sol.profit, jnp.sum(sol.response.worst_profit)])
        return values, sol

    values, pull, sol = eqx.filter_vjp(both, market, has_aux=True)
    (d_profit,) = pull(jnp.asarray([1.0, 0.0], values.dtype))
    (d_worst,) = pull(jnp.asarray([0.0, 1.0], values.dtype))
    stable = sol.pins.stable if sol.pins is not None else jnp.asarray(False)
    return Sensitivities(
        solution=sol,
        profit=values[0],
        customer_worst=values[1],
        d_profit=d_profit,
        d_customer_worst=d_worst,
        stable=stable,
    )
