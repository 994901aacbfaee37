"""The main job's experiments, in the product layer: the LMaaS game's E1-E7 (tables, figures, the report
section) and the report sections of the test-time compute game, token auctions and token caps.
Public through [`lmaas_jax.experiments`][]; imports pandas and matplotlib, and nothing in the games
imports it."""
