"""The LMaaS Stackelberg pricing game (the core of `lmaas_jax`), in four layers, each importing only
those before it:

- `scenarios/`: the data: models, customers, scenario sets, value tables, the seeded generator;
- `robust/`: the customers: each customer's robust problem reduced to a value table, the exact and
  relaxed best responses on it, and the naive planners;
- `pricing/`: the seller: exact profit, gradient IMP and its stages, classic IMP, grid search, the
  equilibrium's structure and derivatives;
- `competition/`: several sellers, each owning some of the models: per-seller profits, the market as
  one seller sees it, best-response dynamics by IMP and the relaxed game's equilibrium;

and `reference/` beside them: the exact reference solvers (HiGHS MILP, C&CG, brute-force line
search), which import scipy. The modules are private; every public name is at the top level
(`lmaas_jax.imp`), the reference solvers' in [`lmaas_jax.reference`][].
"""
