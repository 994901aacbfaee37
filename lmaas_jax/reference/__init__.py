"""Reference solvers outside JAX (NumPy + HiGHS through `scipy.optimize.milp`).

They are slow and exact, and exist to check the JAX core and to benchmark against. Nothing in the
JAX core imports this package.
"""

from ._ccg import CCGResult as CCGResult, ccg_rsr as ccg_rsr
from ._milp import milp_pricing as milp_pricing
