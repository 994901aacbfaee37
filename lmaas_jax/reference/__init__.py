"""`lmaas_jax.reference`: the LMaaS game's exact reference solvers (HiGHS MILP and the search by
sub-market MILPs, C&CG, brute-force line search). They live in `lmaas_jax/lmaas/reference/` beside
the game they check; this is their one public path (`from lmaas_jax.reference import milp_pricing`)."""

from ..lmaas.reference._best_response import milp_best_response as milp_best_response
from ..lmaas.reference._brute_force_line import brute_force_line as brute_force_line
from ..lmaas.reference._ccg import CCGResult as CCGResult, ccg_rsr as ccg_rsr
from ..lmaas.reference._milp import milp_pricing as milp_pricing
from ..lmaas.reference._neighbourhoods import refine_by_milp as refine_by_milp
