"""Benchmark the first-best brute force of the test-time compute game: JAX (chunked, jit) against
a NumPy loop over the same chunks, and Dinkelbach's exact O(n L) method, on the nine-provider
GSM8K majority-vote market (6^9 = 10.1M joint profiles).

Compile time apart; median of `--repeats` runs after `block_until_ready`. Writes
benchmarks/results/ttc-<platform>.md.

    python benchmarks/ttc.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lmaas_jax import ttc
from lmaas_jax.experiments import timed


def numpy_first_best(market, beta, chunk=1 << 16):
    """The same brute force in NumPy: a Python loop over chunks, vectorised within a chunk."""
    price = np.asarray(market.token_price)[:, None] * np.asarray(market.tokens)
    cost = price / 1.25
    quality = float(market.alpha) * (0.1 + 0.9 * np.asarray(market.accuracy))
    n, levels = price.shape
    total, best = levels**n, -np.inf
    powers = levels ** np.arange(n - 1, -1, -1)
    rows = np.arange(n)
    for start in range(0, total, chunk):
        idx = np.arange(start, min(start + chunk, total))
        prof = (idx[:, None] // powers[None, :]) % levels
        v = beta * (quality - price)[rows, prof]
        top = np.maximum(v.max(axis=1, keepdims=True), 0.0)
        e = np.exp(v - top)
        shares = e / (np.exp(-top) + e.sum(axis=1, keepdims=True))
        sw = (shares * (quality - cost)[rows, prof]).sum(axis=1)
        best = max(best, sw.max())
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    market = ttc.load_market("GSM8K", "majority")
    params = ttc.GameParams(beta=jnp.asarray(200.0))
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    rows = []
    for name, fn in (
        ("JAX brute force (chunked lax.map)", lambda: ttc.first_best_brute_force(market, params).welfare),
        ("JAX Dinkelbach (exact, O(n L))", lambda: ttc.first_best(market, params).welfare),
    ):
        compile_s, run_s, value = timed(fn, repeats=args.repeats)
        rows.append((name, float(value), compile_s, run_s))
    runs, value = [], None
    for _ in range(max(1, args.repeats - 2)):
        start = time.perf_counter()
        value = numpy_first_best(market, 200.0)
        runs.append(time.perf_counter() - start)
    rows.append(("NumPy loop over chunks", float(value), 0.0, statistics.median(runs)))
    base = rows[-1][3]
    lines = [
        f"# TTC first best, GSM8K majority vote, beta = 200, 6^9 profiles ({device})",
        "",
        "| method | SW* | compile s | run s | x faster than NumPy |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {v:.8f} | {c:.2f} | {r:.4f} | {base / r:.1f} |" for n, v, c, r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ttc-{jax.devices()[0].platform}.md").write_text(text)


if __name__ == "__main__":
    main()
