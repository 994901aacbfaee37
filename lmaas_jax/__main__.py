"""`python -m lmaas_jax ...` is the `lmaas-jax` command (see `lmaas_jax.product._cli`)."""

from .product._cli import main

if __name__ == "__main__":
    main(prog_name="lmaas-jax")
