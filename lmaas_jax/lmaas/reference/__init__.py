"""Reference solvers, slow and exact, to check the JAX core and benchmark against: the HiGHS MILP
and C&CG (NumPy + `scipy.optimize.milp`) and the brute-force line search. Public through
[`lmaas_jax.reference`][]; nothing in the JAX core imports this package."""
