"""Customer planning rules to compare RSR against: nominal planning and two naive rules.

A rule picks each customer's (model, rental duration) before the scenario is known; the customer
then faces its whole scenario set. [`lmaas_jax.plan`][] evaluates any rule's choice by its worst-case
and average profit over that set, the two numbers experiment E1 compares.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from ..._checks import checked
from ..scenarios._market import Market
from ._rsr import RSRResponse, as_prices, check_evaluation, rsr, worst_case_profit

RULES = ("rsr", "nominal", "most_accurate", "cheapest")


class PlanOutcome(eqx.Module):
    """What one planning rule gives every customer.

    **Fields:**

    - `choice`: shape `(N,)`, 0 = no rental, j in 1..M = model j.
    - `duration`: shape `(N,)`, hours rented.
    - `worst_profit`: shape `(N,)`, the lowest profit over the customer's scenario set ($).
    - `mean_profit`: shape `(N,)`, the profit averaged uniformly over the scenario set ($).
    """

    choice: Int[Array, " customers"]
    duration: Float[Array, " customers"]
    worst_profit: Float[Array, " customers"]
    mean_profit: Float[Array, " customers"]


def nominal_market(market: Market) -> Market:
    """The same market with each customer's scenario set cut down to its first scenario.

    For a budgeted market ([`lmaas_jax.Market.budgeted`][]) the first scenario is the nominal one
    (no component deviates); for an explicit market it is whichever scenario comes first.
    """
    first = jnp.arange(market.n_scenarios) == 0
    return eqx.tree_at(lambda m: m.scenario_mask, market, jnp.broadcast_to(first, market.scenario_mask.shape))


def _nominal_for_model(nominal: RSRResponse, j: Int[Array, " customers"]):
    """Rent model j (0-based, per customer) for its nominal-optimal duration, if that pays."""
    value = jnp.take_along_axis(nominal.robust_values, j[:, None], axis=1)[:, 0]
    hours = jnp.take_along_axis(nominal.model_durations, j[:, None], axis=1)[:, 0]
    rent = value > 0  # robust_values is clipped at 0, so a losing rental shows as 0
    return jnp.where(rent, j + 1, 0).astype(jnp.int32), jnp.where(rent, hours, 0.0)


@checked(check_evaluation)
def plan(
    market: Market, prices: Float[ArrayLike, " models"], rule: str = "rsr", *, tie_tol: float | None = None
) -> PlanOutcome:
    """Every customer's plan under `rule`, judged over its full scenario set.

    Rules (our formulation of E1's comparison):

    - `"rsr"`: the robust plan, [`lmaas_jax.rsr`][].
    - `"nominal"`: plan as if the nominal scenario were certain (RSR on
      [`lmaas_jax.nominal_market`][]), then face the scenario set.
    - `"most_accurate"`: rent the most accurate model for its nominal-optimal duration, or nothing
      if that earns nothing even nominally.
    - `"cheapest"`: the same with the model of the lowest price per hour.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][]. Batch with `jax.vmap`.
    - `prices`: shape `(M,)`, $ per rented hour.
    - `rule`: one of `"rsr"`, `"nominal"`, `"most_accurate"`, `"cheapest"`.
    - `tie_tol`: as in [`lmaas_jax.rsr`][].

    **Returns:**

    A [`lmaas_jax.PlanOutcome`][].
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}.")
    prices = as_prices(market, prices)
    if rule == "rsr":
        response = rsr(market, prices, tie_tol=tie_tol)
        choice, duration = response.choice, response.duration
    else:
        nominal = rsr(nominal_market(market), prices, tie_tol=tie_tol)
        if rule == "nominal":
            choice, duration = nominal.choice, nominal.duration
        else:
            key = -market.models.accuracy if rule == "most_accurate" else prices
            j = jnp.full((market.n_customers,), jnp.argmin(key), jnp.int32)
            choice, duration = _nominal_for_model(nominal, j)
    profit = worst_case_profit(market, choice, duration, prices)
    valid = market.scenario_mask
    mean = jnp.sum(jnp.where(valid, profit, 0.0), axis=1) / jnp.sum(valid, axis=1).astype(profit.dtype)
    return PlanOutcome(
        choice=choice, duration=duration, worst_profit=jnp.min(profit, axis=1), mean_profit=mean
    )
