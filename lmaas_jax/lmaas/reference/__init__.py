"""Reference solvers: slow and exact, to check the JAX core and to benchmark against.

The MILP and C&CG run outside JAX (NumPy + HiGHS through `scipy.optimize.milp`); the brute-force line
search is the old O(N^2 M) step of classic IMP, kept as the fast one's oracle. Nothing in the JAX
core imports this package.
"""

from ._brute_force_line import brute_force_line as brute_force_line
from ._ccg import CCGResult as CCGResult, ccg_rsr as ccg_rsr
from ._milp import milp_pricing as milp_pricing
