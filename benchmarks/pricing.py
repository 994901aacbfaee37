"""Benchmark the seller's pricing solvers on the same markets: profit and time.

Compares gradient IMP, classic IMP and grid search (each jit-compiled and vmapped over a batch of
markets) with the HiGHS MILP (one market at a time) on budget-free markets across sizes, then
times gradient IMP on one large batch of default markets. With `--quality SIZES`, the quality
table instead: default `lj.imp` solved in each of `--dtypes` on held-out budget-free markets (seeds
from 50,000 on; the tests use seeds below 10^4), its prices posted in the float64 market with
`tie_tol=1e-9`, as a fraction of the HiGHS MILP's profit (optimal, or its incumbent at the
limit). Compile time and run time are reported apart (run time = median of `--repeats` calls
after `block_until_ready`); profit is a fraction of the best known for each market (the MILP's
when it proves optimality). Writes a markdown table and JSON next to each other.

    python benchmarks/pricing.py                      # CPU-sized defaults
    python benchmarks/pricing.py --scale-batch 4096   # the GPU target: 4096 markets, M=4, N=256
    python benchmarks/pricing.py --quality 2x20,3x40,4x40,4x60 --markets 10 --milp-time-limit 300
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lmaas_jax as lj
from lmaas_jax.experiments import market_batch, timed
from lmaas_jax.reference import milp_pricing


def compare(sizes, n_markets, grid_points, repeats, milp_limit, dtype):
    rows = []
    for m, n in sizes:
        batch, keys = market_batch(n_markets, m, n, seed=m * 1000 + n, dtype=dtype, gamma=2, budget_share=0.0)
        imp = jax.jit(jax.vmap(lambda mk, k: lj.imp(mk, key=k).profit))  # the size rule's defaults
        classic = jax.jit(jax.vmap(lambda mk: lj.classic_imp(mk).profit))
        g = grid_points[m]
        grid = jax.jit(jax.vmap(lambda mk, g=g: lj.grid_search(mk, g).profit))
        results = {}
        for name, fn, args in (
            ("gradient IMP", imp, (batch, keys)),
            ("classic IMP", classic, (batch,)),
            (f"grid {g}^{m}", grid, (batch,)),
        ):
            compile_s, run_s, profit = timed(fn, *args, repeats=repeats)
            results[name] = dict(
                profit=np.asarray(profit, np.float64), compile_s=compile_s, per_market_s=run_s / n_markets
            )
        profits, seconds, optimal = [], [], []
        for b in range(n_markets):
            sol = milp_pricing(lj.unstack_market(batch, b).astype(jnp.float64), time_limit=milp_limit)
            profits.append(float(sol.profit))
            seconds.append(sol.stats["seconds"])
            optimal.append(sol.stats["optimal"])
        results["HiGHS MILP"] = dict(
            profit=np.asarray(profits), compile_s=0.0, per_market_s=statistics.mean(seconds)
        )
        best = np.max(np.stack([r["profit"] for r in results.values()]), axis=0)
        for name, r in results.items():
            frac = r["profit"] / best
            rows.append(
                dict(
                    M=m,
                    N=n,
                    method=name,
                    markets=n_markets,
                    mean_fraction=float(frac.mean()),
                    min_fraction=float(frac.min()),
                    compile_s=r["compile_s"],
                    per_market_ms=1e3 * r["per_market_s"],
                    speedup_vs_milp=results["HiGHS MILP"]["per_market_s"] / r["per_market_s"],
                    milp_optimal=int(sum(optimal)),
                )
            )
            print(
                f"M={m} N={n:4d} {name:14s} profit/best mean {frac.mean():.4f} min {frac.min():.4f}"
                f"  {1e3 * r['per_market_s']:9.3f} ms/market  compile {r['compile_s']:.1f} s",
                flush=True,
            )
    return rows


def quality(sizes, n_markets, milp_limit, dtypes, seed=50000, save=lambda rows: None):
    """Default `lj.imp` in each dtype against the HiGHS MILP, prices posted in float64 (tie_tol 1e-9).

    `save(rows)` is called after every size, so an interrupted run keeps what it computed.
    """
    rows = []
    imp = jax.jit(jax.vmap(lambda mk, k: lj.imp(mk, key=k)))  # the size rule's defaults
    posted = jax.jit(jax.vmap(lambda mk, p: lj.seller_profit(mk, p, tie_tol=1e-9)))
    for m, n in sizes:
        batch, keys = market_batch(
            n_markets, m, n, seed=seed + m * 1000 + n, dtype="float64", gamma=2, budget_share=0.0
        )
        milp = [milp_pricing(lj.unstack_market(batch, b), time_limit=milp_limit) for b in range(n_markets)]
        milp_profit = np.asarray([float(s.profit) for s in milp])
        optimal = int(sum(bool(s.stats["optimal"]) for s in milp))
        milp_s = statistics.mean(float(s.stats["seconds"]) for s in milp)
        for dtype in dtypes:
            low = batch.astype(jnp.dtype(dtype))
            compile_s, run_s, sol = timed(imp, low, keys, repeats=1)
            held = np.asarray(posted(batch, sol.prices.astype(jnp.float64)), np.float64)
            frac = held / milp_profit
            rows.append(
                dict(
                    M=m,
                    N=n,
                    dtype=dtype,
                    markets=n_markets,
                    milp_optimal=optimal,
                    milp_limit_s=milp_limit,
                    mean_fraction=float(frac.mean()),
                    min_fraction=float(frac.min()),
                    imp_ms_per_market=1e3 * run_s / n_markets,
                    milp_s_per_market=milp_s,
                    held_over_reported=float(np.min(held / np.asarray(sol.profit, np.float64))),
                )
            )
            print(
                f"quality M={m} N={n} {dtype}: imp / MILP mean {frac.mean():.6f} min {frac.min():.6f} "
                f"(MILP optimal on {optimal}/{n_markets}, {milp_s:.1f} s/market)",
                flush=True,
            )
        save(rows)
    return rows


def quality_markdown(rows, device):
    lines = [
        f"# Gradient IMP against the HiGHS MILP ({device})",
        "",
        "Default `lj.imp`, solved in the given dtype, its prices posted in the float64 market with "
        "`tie_tol=1e-9`; profit as a fraction of the MILP's (proven optimal on `optimal` markets, "
        "else its incumbent at the time limit). Held-out budget-free markets (Gamma = 2).",
        "",
        "| M | N | dtype | markets | MILP optimal | MILP limit s | imp/MILP mean | min "
        "| held/reported min | imp ms/market (batched) | MILP s/market |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['M']} | {r['N']} | {r['dtype']} | {r['markets']} | {r['milp_optimal']} | "
            f"{r['milp_limit_s']:.0f} | {r['mean_fraction']:.6f} | {r['min_fraction']:.6f} | "
            f"{r['held_over_reported']:.7f} | {r['imp_ms_per_market']:.1f} | {r['milp_s_per_market']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def scale(batch_size, n_customers, repeats, dtype):
    batch, keys = market_batch(batch_size, 4, n_customers, seed=7, dtype=dtype, gamma=2, budget_share=0.5)
    imp = jax.jit(jax.vmap(lambda mk, k: lj.imp(mk, key=k).profit))
    compile_s, run_s, _ = timed(imp, batch, keys, repeats=repeats)
    return dict(
        batch=batch_size,
        M=4,
        N=n_customers,
        gamma=2,
        compile_s=compile_s,
        run_s=run_s,
        markets_per_s=batch_size / run_s,
    )


def markdown(rows, scale_row, device):
    lines = [
        f"# Pricing benchmark ({device})",
        "",
        "Profit as a fraction of the best known per market (the MILP is exact when it proves "
        "optimality); time per market = batched run time / markets for the JAX solvers (median of "
        "repeats, compile apart), HiGHS's own solve time for the MILP.",
        "",
        "| M | N | method | profit/best mean | min | ms per market | x faster than MILP | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['M']} | {r['N']} | {r['method']} | {r['mean_fraction']:.4f} | {r['min_fraction']:.4f} "
            f"| {r['per_market_ms']:.3f} | {r['speedup_vs_milp']:.1f} | {r['compile_s']:.1f} |"
        )
    if scale_row:
        s = scale_row
        lines += [
            "",
            f"Gradient IMP on one batch of {s['batch']} default markets (M={s['M']}, N={s['N']}, "
            f"Gamma={s['gamma']}, budgets on): {s['run_s']:.3f} s after compilation "
            f"({s['markets_per_s']:.3g} markets/s); compile {s['compile_s']:.1f} s.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2x20,3x40,4x40,4x80", help="MxN,... for the comparison")
    parser.add_argument("--markets", type=int, default=8, help="markets per size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--milp-time-limit", type=float, default=120.0)
    parser.add_argument("--scale-batch", type=int, default=64, help="markets in the scale run (0: skip)")
    parser.add_argument("--scale-customers", type=int, default=256)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--quality", default="", help="MxN,... : run the quality table instead")
    parser.add_argument("--dtypes", default="float32,float64", help="dtypes of the quality table")
    parser.add_argument("--tag", default="", help="suffix of the quality table's file names")
    parser.add_argument("--out", default="benchmarks/results", help="folder for pricing-<device>.md/json")
    args = parser.parse_args(argv)
    # x64 on, so the MILP and its exact check run in float64; the JAX solvers use --dtype.
    jax.config.update("jax_enable_x64", True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    print(f"device {device}, dtype {args.dtype}", flush=True)
    grid_points = {1: 400, 2: 120, 3: 30, 4: 14, 5: 8}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = jax.devices()[0].platform
    if args.quality:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.quality.split(",")]
        name = f"quality-{tag}{'-' + args.tag if args.tag else ''}"

        def save_quality(rows):
            (out / f"{name}.json").write_text(json.dumps(dict(device=device, rows=rows), indent=2))
            (out / f"{name}.md").write_text(quality_markdown(rows, device))

        rows = quality(sizes, args.markets, args.milp_time_limit, args.dtypes.split(","), save=save_quality)
        print(quality_markdown(rows, device))
        return
    rows = compare(sizes, args.markets, grid_points, args.repeats, args.milp_time_limit, args.dtype)
    save(out, tag, device, args.dtype, rows, None)  # the comparison survives an interrupted scale run
    scale_row = None
    if args.scale_batch > 0:
        scale_row = scale(args.scale_batch, args.scale_customers, args.repeats, args.dtype)
        print(
            f"scale: {scale_row['batch']} markets M=4 N={scale_row['N']}: {scale_row['run_s']:.3f} s "
            f"({scale_row['markets_per_s']:.3g} markets/s), compile {scale_row['compile_s']:.1f} s",
            flush=True,
        )
    save(out, tag, device, args.dtype, rows, scale_row)
    print(markdown(rows, scale_row, device))


def save(out, tag, device, dtype, rows, scale_row):
    (out / f"pricing-{tag}.json").write_text(
        json.dumps(dict(device=device, dtype=dtype, rows=rows, scale=scale_row), indent=2)
    )
    (out / f"pricing-{tag}.md").write_text(markdown(rows, scale_row, device))


if __name__ == "__main__":
    main()
