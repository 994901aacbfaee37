"""The study behind gradient IMP's defaults: profit against the best known, and time, per setting.

Markets: held-out seeds (the tests use seeds below 10^4), the default family and every kind of
`lj.stress_market` (one customer worth far more than the rest, no capability gap, near-identical
models, Gamma = 0, binding budgets, huge and tiny price boxes). For each market the best known
profit is the best over every setting studied and classic IMP from 64 random starts. Reports the
mean and worst fraction of the best known per setting and kind, and seconds per market (one market
at a time, compile apart). Markdown to stdout and `--out`.

    python benchmarks/imp_defaults.py --markets 6 --customers 60
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lmaas_jax as lj
from lmaas_jax.experiments import timed
from lmaas_jax.product._config import SolverChoice

# Each row: settings in place of `GradientIMP.for_size`'s, as `STAGE.FIELD` keys (the `[solver]`
# keys of a configuration file). Add rows to study any other.
SETTINGS = {
    "defaults": dict(),
    "16 inserts + 1 drop per model": {"moves.inserts": 16},
    "moves from the best 4 optima, 16 rounds": {"moves.starts": 4, "moves.rounds": 16},
    "no moves": {"moves.rounds": 0},
    "moves from the best optimum only": {"moves.starts": 1},
    "4 inserts + 1 drop per model": {"moves.inserts": 4},
    "16 restarts, 100 steps": {"ascent.restarts": 16, "ascent.steps": 100},
    "no random polish starts": {"polish.random": 0},
}

MULTISTART = "classic IMP, 64 random starts"


def classic_multistart(market, key, starts=64):
    mo = market.models
    u = jax.random.uniform(key, (starts, market.n_models), market.dtype)
    x = mo.price_lo + u * (mo.price_hi - mo.price_lo)
    return jnp.max(jax.vmap(lambda p: lj.classic_imp(market, p).profit)(x))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=6, help="markets per kind")
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--time-customers", type=int, default=512, help="N of the timing column")
    parser.add_argument("--out", default="benchmarks/results/imp-defaults.md")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    kinds = ("family",) + lj.STRESS_KINDS
    markets = {}
    for i, kind in enumerate(kinds):
        keys = jax.random.split(jax.random.PRNGKey(424242 + i), args.markets)
        build = (
            (lambda k: lj.random_market(k, args.models, args.customers, dtype=args.dtype))
            if kind == "family"
            else (
                lambda k, kind=kind: lj.stress_market(kind, k, args.models, args.customers, dtype=args.dtype)
            )
        )
        markets[kind] = [build(k) for k in keys]
    profits, seconds = {}, {}
    for name, options in SETTINGS.items():
        solver = SolverChoice(tuple(options.items()))(args.models, args.customers)
        fn = jax.jit(lambda m, k, solver=solver: lj.imp(m, solver, key=k).profit)
        jax.block_until_ready(fn(markets["family"][0], jax.random.PRNGKey(0)))
        for kind in kinds:
            t0 = time.perf_counter()
            out = [fn(m, jax.random.PRNGKey(90000 + b)) for b, m in enumerate(markets[kind])]
            jax.block_until_ready(out)
            seconds[name, kind] = (time.perf_counter() - t0) / len(out)
            profits[name, kind] = np.asarray([float(p) for p in out])
        big = lj.random_market(jax.random.PRNGKey(515151), args.models, args.time_customers, dtype=args.dtype)
        seconds[name, "large"] = timed(fn, big, jax.random.PRNGKey(0), repeats=3)[1]
        print(f"done: {name}", flush=True)
    multistart = jax.jit(classic_multistart)
    best = {}
    for kind in kinds:
        ref = np.asarray(
            [float(multistart(m, jax.random.PRNGKey(7 + b))) for b, m in enumerate(markets[kind])]
        )
        profits["classic IMP, 64 random starts", kind] = ref
        best[kind] = np.max(
            np.stack([profits[name, kind] for name in list(SETTINGS) + ["classic IMP, 64 random starts"]]), 0
        )
    lines = [
        f"# Gradient IMP settings ({jax.devices()[0].platform}, {args.dtype}, M = {args.models}, "
        f"N = {args.customers}, {args.markets} markets per kind)",
        "",
        "Profit as a fraction of the best known per market: mean / worst over the kind's markets; "
        "s = seconds per market, one at a time, compile apart; "
        f"s at N = {args.time_customers}: one default-family market of that size (median of 3).",
        "",
        "| setting | "
        + " | ".join(kinds)
        + f" | all: mean | all: worst | s | s at N = {args.time_customers} |",
        "|---|" + "---|" * (len(kinds) + 4),
    ]
    for name in [*SETTINGS, MULTISTART]:
        fr = {k: profits[name, k] / best[k] for k in kinds}
        every = np.concatenate(list(fr.values()))
        s = np.mean([seconds.get((name, k), np.nan) for k in kinds])
        s_large = seconds.get((name, "large"), np.nan)
        cells = " | ".join(f"{fr[k].mean():.5f} / {fr[k].min():.5f}" for k in kinds)
        stats = f"{every.mean():.6f} | {every.min():.5f} | {s:.3f} | {s_large:.3f}"
        lines.append(f"| {name} | {cells} | {stats} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
