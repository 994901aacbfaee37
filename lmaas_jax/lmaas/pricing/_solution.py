"""What every pricing solver returns."""

from __future__ import annotations

from typing import Any

import equinox as eqx
from jaxtyping import Array, Float

from ..robust._rsr import RSRResponse
from ._equilibrium import PinPattern


class PricingTrace(eqx.Module):
    """Per-step history of gradient IMP.

    **Fields:**

    - `relaxed_profit`: shape `(steps, restarts)`, the relaxed profit each restart ascends ($).
    - `best_profit`: shape `(steps,)`, the best exact profit found so far, over all restarts ($);
      exact profits are evaluated every `eval_every` steps, so it moves in steps.
    - `temperature`: shape `(steps,)`, the annealed temperature ($).
    """

    relaxed_profit: Float[Array, "steps restarts"]
    best_profit: Float[Array, " steps"]
    temperature: Float[Array, " steps"]


class PricingSolution(eqx.Module):
    """A seller's price vector with its exact consequences.

    **Fields:**

    - `prices`: shape `(M,)`, $ per rented hour.
    - `profit`: the seller's exact profit at `prices` (never a relaxed one) ($).
    - `response`: the customers' exact [`lmaas_jax.RSRResponse`][] at `prices`.
    - `trace`: a [`lmaas_jax.PricingTrace`][] for gradient IMP, else `None`.
    - `stats`: solver-specific numbers (steps, sweeps, evaluations, MILP status and gap, ...), and
      `pattern_stable` (`pins.stable`).
    - `pins`: the [`lmaas_jax.PinPattern`][] of the solution: which box end or binding customer pins
      each price. `prices` and `profit` are differentiable in the market's floating fields through
      it (see [`lmaas_jax.equilibrium_prices`][]); where `pins.stable` is False the derivative is
      one one-sided derivative of several.
    - `settings`: the solver's settings that ran (a [`lmaas_jax.GradientIMP`][] for
      [`lmaas_jax.imp`][]), else `None`; static.
    - `tie_tol`: the tie tolerance the prices were judged with (see [`lmaas_jax.rsr`][]); static.

    Differentiate a solver's result with `eqx.filter_grad` / `eqx.filter_jacfwd` over the market
    (a market holds boolean fields, which `jax.grad` refuses), e.g.
    `eqx.filter_grad(lambda m: lj.imp(m, key=key).profit)(market)`.
    """

    prices: Float[Array, " models"]
    profit: Float[Array, ""]
    response: RSRResponse
    trace: PricingTrace | None
    stats: dict[str, Any]
    pins: PinPattern | None = None
    settings: Any = eqx.field(static=True, default=None)
    tie_tol: float | None = eqx.field(static=True, default=None)
