"""`lmaas_jax.reference`: the LMaaS game's exact reference solvers (HiGHS MILP, C&CG, brute-force line
search). They live in `lmaas_jax/lmaas/reference/` beside the game they check; this name stays the
public one (`from lmaas_jax.reference import milp_pricing`)."""

from ..lmaas.reference import (
    CCGResult as CCGResult,
    brute_force_line as brute_force_line,
    ccg_rsr as ccg_rsr,
    milp_pricing as milp_pricing,
)
