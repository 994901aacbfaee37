"""Robust terms: the customers' side of the LMaaS game.

Each customer's two-stage robust problem (RSR) reduces, per model, to a worst-case value rate and
usable hours ([`lmaas_jax.robust_terms`][]); [`lmaas_jax.rsr`][] is the exact best response on
them, [`lmaas_jax.relaxed_rsr`][] its smooth relaxation (what gradient IMP differentiates), and
[`lmaas_jax.plan`][] the naive planning rules E1 compares RSR with.
"""

from ._planning import PlanOutcome as PlanOutcome, nominal_market as nominal_market, plan as plan
from ._relaxed_rsr import RelaxedResponse as RelaxedResponse, relaxed_rsr as relaxed_rsr
from ._rsr import (
    RobustTerms as RobustTerms,
    RSRResponse as RSRResponse,
    robust_terms as robust_terms,
    rsr as rsr,
    worst_case_profit as worst_case_profit,
)
