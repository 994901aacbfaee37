"""Robust terms: the customers' side of the LMaaS game. Each customer's two-stage robust problem
(RSR) reduces, per model, to a worst-case value rate and usable hours (`value_market`); `rsr` is the
exact best response on them, `relaxed_rsr` its smooth relaxation, `plan` the naive planning rules."""
