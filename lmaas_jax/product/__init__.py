"""The product layer, apart from the games: configuration files, sweeps over many markets and
devices, the `lmaas-jax` command, and the one `lmaas-jax run` report that gathers the four games.

Imports pandas, pyarrow and matplotlib; nothing in the games' JAX cores imports it. Its public
names are re-exported at the top level (`lmaas_jax.sweep`, `lmaas_jax.load_config`, ...) and in
[`lmaas_jax.experiments`][].
"""
