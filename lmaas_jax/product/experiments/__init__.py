"""The LMaaS game's experiments E1-E6: tables ([`_tables`]), figures ([`_figures`]) and the report
section ([`_section`]). Public through [`lmaas_jax.experiments`][]; imports pandas and matplotlib,
and nothing in the JAX core imports it."""
