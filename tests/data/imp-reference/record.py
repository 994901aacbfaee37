"""Record default `lmaas_jax.imp` prices on the default market family, as the reference that a change
meant to preserve behaviour is tested against (`tests/test_imp_reference.py`).

Run from a checkout whose prices are the reference: `python tests/data/imp-reference/record.py OUT.json`.
Markets: `lmaas_jax.random_market(jax.random.PRNGKey(seed), M, N, dtype=...)` priced by default
`lmaas_jax.imp(market, key=jax.random.PRNGKey(10_000 + seed))`, one call per market (no vmap).
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import lmaas_jax as lj  # noqa: E402

# (M, N) shapes over M = 2..8 and N = 40..512; four markets (seeds) of each shape.
SHAPES = [(2, 40), (3, 512), (4, 256), (5, 96), (6, 64), (8, 128)]
SEEDS = range(4)


def main(out):
    rows = []
    for m, n in SHAPES:
        for seed in SEEDS:
            for dtype in ("float64", "float32"):
                market = lj.random_market(jax.random.PRNGKey(1000 * m + seed), m, n, dtype=dtype)
                sol = lj.imp(market, key=jax.random.PRNGKey(10_000 + seed))
                rows.append(
                    {
                        "n_models": m,
                        "n_customers": n,
                        "seed": seed,
                        "dtype": dtype,
                        "prices": [float(x) for x in sol.prices],
                        "profit": float(sol.profit),
                    }
                )
                print(m, n, seed, dtype, rows[-1]["profit"], flush=True)
    with open(out, "w") as f:
        json.dump({"markets": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
