"""Pricing: the seller's side of the LMaaS game. Exact profit and its relaxation, gradient IMP
(`_imp`) assembled from its stages (`_ascent`, `_polish`, `_moves`, `_lookahead`) on the exact
line search (`_line_search`) and assignment prices (`_assignment`), classic IMP, grid search, prices
that hold when posted (`_posting`), the equilibrium's pins and derivatives."""
