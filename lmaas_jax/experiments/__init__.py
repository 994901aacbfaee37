"""Experiments E1-E5 of the spec (section 6), E6 (sensitivities): tables, figures, the `lmaas-jax run` report.

Imports pandas and matplotlib; the JAX core never imports this package.
"""

from ._report import run_experiments as run_experiments
from ._tables import (
    e1_robustness as e1_robustness,
    e1_summary as e1_summary,
    e2_seller as e2_seller,
    e3_sensitivity as e3_sensitivity,
    e4_convergence as e4_convergence,
    e5_scale as e5_scale,
    market_batch as market_batch,
    timed as timed,
)
