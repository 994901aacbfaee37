"""The unit-demand pricing benchmark: default `lj.imp` against published optima, and HiGHS.

Every instance in a folder with a `published.csv` beside it (by default the shared copy of the
Fernandes-Ferreira-Franco-Schouery benchmark, `../shared/data/unit-demand`): read with
`lj.datasets.read_unit_demand`, priced by default `lj.imp` (compile apart, `block_until_ready`),
its profit (prices posted in the float64 market, `tie_tol=1e-9`) over the published best value,
then the HiGHS MILP within `--milp-time-limit` on the same market (up to `--milp-max-n` consumers:
its model build alone takes minutes at n = 150), and CPLEX's published time.
Markdown and JSON into `--out` (file names tagged with `--tag`). Instances above `--max-n`
consumers are listed as skipped. Instances are read as option lists (each consumer's valued items,
about 8 of up to 3000), so a polish sweep costs O(M N log N + M N K), K the most items a consumer
values, not O(M^2 N).

    python benchmarks/unit_demand.py                       # the shared folder
    python benchmarks/unit_demand.py tests/data/unit-demand --milp-time-limit 60
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# x64 is on below (the float64 check market) while imp runs in float32: XLA's CPU fusion emitter
# (jax 0.10.2) can then fail to compile ("Failed to translate module to LLVM IR", two fused
# functions given one name); its older emitters compile the same programs at the same speed.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lmaas_jax as lj  # noqa: E402
from lmaas_jax.reference import milp_pricing, refine_by_milp  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "unit-demand"


def run(
    folder,
    dtype,
    milp_limit,
    max_n,
    only=None,
    save=lambda rows: None,
    milp_max_n=None,
    refine_within=None,
    schedule=None,
    refine_workers=1,
):
    published = lj.datasets.read_published(Path(folder) / "published.csv")
    rows = []

    def solve(m, k):  # default: GradientIMP.for_market(m), its schedule by the backend
        solver = lj.GradientIMP.for_market(m)
        return lj.imp(m, solver if schedule is None else solver.with_schedule(schedule), key=k)

    fn = jax.jit(solve)
    post = jax.jit(lambda m, p: lj.seller_profit(m, p, tie_tol=1e-9))
    compiled = {}
    for name, pub in sorted(published.items(), key=lambda kv: (len(kv[0]), kv[0])):
        if only and only not in name:
            continue
        path = Path(folder) / name
        exact = lj.datasets.read_unit_demand(path, dtype="float64")
        row = dict(
            instance=name,
            n=exact.n_customers,
            m=exact.n_models,
            valuations=int(np.sum(np.asarray(exact.hours) > 0)),
            published=pub["best_value"],
            published_optimal=pub["proven_optimal"],
            cplex_s=pub["fastest_optimal_s"],
            best_bound=pub["best_bound"],
        )
        if exact.n_customers > max_n:
            rows.append(dict(row, skipped=f"n > --max-n {max_n}"))
            print(f"{name}: skipped (n = {exact.n_customers})", flush=True)
            continue
        market = exact.astype(jnp.dtype(dtype))
        if market.option_model is not None:
            # K rounded up to a multiple of 8 and, up to 300 consumers (five instances per size),
            # every user group up to N users with a row per model: the instances of one size share
            # a shape and a compilation (one per instance made XLA's CPU JIT run out of code memory
            # after about 35).
            pad = market.n_customers if market.n_customers <= 300 else None
            market = market.as_option_lists(n_options=-(-market.n_options // 8) * 8, max_users=pad)
        key = jax.random.PRNGKey(0)
        # Compiled ahead of time, once per shape, so each instance is solved once (a first call to
        # time the compilation would solve it twice).
        # Every array's shape (option lists: K and each user group's): one compilation per shape.
        shape = str(jax.tree_util.tree_map(lambda x: x.shape, market))
        compile_s = 0.0
        if shape not in compiled:
            start = time.perf_counter()
            compiled[shape] = fn.lower(market, key).compile()
            compile_s = time.perf_counter() - start
        start = time.perf_counter()
        sol = jax.block_until_ready(compiled[shape](market, key))
        run_s = time.perf_counter() - start
        held = float(post(exact, sol.prices.astype(jnp.float64)))
        row.update(
            imp_profit=held,
            imp_over_published=held / pub["best_value"],
            imp_s=run_s,
            compile_s=compile_s,
            work=int(sol.stats["work"]),
            depth=int(sol.stats["depth"]),
        )
        if refine_within is not None:
            # imp's prices refined by sub-market MILPs in what is left of the instance's time
            # (compilation and imp included), less a margin for the last round and the posting.
            left = refine_within - compile_s - run_s
            limit = max(0.0, 0.95 * left - 10.0)
            start = time.perf_counter()
            refined = refine_by_milp(
                exact,
                np.asarray(sol.prices, np.float64),
                rounds=10**9,
                time_limit=limit,
                workers=refine_workers,
            )
            refine_s = time.perf_counter() - start
            held_refined = float(post(exact, refined.prices))
            row.update(
                refined_profit=held_refined,
                refined_over_published=held_refined / pub["best_value"],
                refine_s=refine_s,
                refine_rounds=refined.stats["rounds"],
                refine_workers=refine_workers,
                total_s=compile_s + run_s + refine_s,
            )
        if milp_max_n is None or exact.n_customers <= milp_max_n:
            start = time.perf_counter()
            milp = milp_pricing(exact, time_limit=milp_limit)
            row.update(
                milp_profit=float(milp.profit),
                milp_over_published=float(milp.profit) / pub["best_value"],
                milp_optimal=bool(milp.stats["optimal"]),
                milp_s=float(milp.stats["seconds"]),
                milp_wall_s=time.perf_counter() - start,
            )
        rows.append(row)
        save(rows)  # after every instance: an interrupted run keeps what it computed
        refined = (
            f"; refined {row['refined_over_published']:.6f} after {row['refine_rounds']} rounds, "
            f"{row['total_s']:.0f} s in all"
            if "refine_s" in row
            else ""
        )
        print(
            f"{name}: imp/published {row['imp_over_published']:.6f} in {run_s:.2f} s "
            f"(compile {compile_s:.1f} s){refined}; {highs(row)}",
            flush=True,
        )
    return rows


def highs(row):
    if "milp_s" not in row:
        return "HiGHS not run (n > --milp-max-n)"
    optimal = " (optimal)" if row["milp_optimal"] else ""
    return f"HiGHS {row['milp_over_published']:.6f} in {row['milp_s']:.1f} s{optimal}"


def highs_cells(row):
    if "milp_s" not in row:
        return "not run | "
    limit = "" if row["milp_optimal"] else " (limit)"
    return f"{row['milp_over_published']:.6f}{limit} | {row['milp_s']:.1f}"


def at_least(profit, published):
    """Whether `profit` reaches `published`, a value printed to five significant digits."""
    return profit >= published - 0.5 * 10 ** (np.floor(np.log10(abs(published))) - 4)


def refined_cells(r):
    if "refine_s" not in r:
        return " | | | | "
    bound = (
        r["best_bound"]
        if np.isfinite(r["best_bound"])
        else r["published"]
        if r["published_optimal"]
        else np.nan
    )
    gap = 1 - r["refined_profit"] / bound
    return (
        f" {r['refined_over_published']:.6f} | {r.get('refine_workers', 1)} | {r['total_s']:.0f} | "
        f"{gap:.5f} |"
    )


def markdown(rows, device, dtype, milp_limit):
    refine = any("refine_s" in r for r in rows)
    lines = [
        f"# Unit-demand pricing benchmark ({device}, imp in {dtype})",
        "",
        "Profit over the published best value (CPLEX; proven optimal where marked, else its one-hour "
        "incumbent; printed to five significant digits, so ratios within 1e-4 of 1 are ties). imp: "
        "default `lj.imp`, its prices posted in the float64 market (`tie_tol=1e-9`), seconds after "
        f"compilation. HiGHS: `lmaas_jax.reference.milp_pricing`, limit {milp_limit:.0f} s. CPLEX s: "
        "the fastest published proof, on the authors' machine."
        + (
            " refined: imp's prices then `lmaas_jax.reference.refine_by_milp` (sub-market MILPs, "
            "`workers` of them at once) in "
            "what is left of the instance's time limit; total s: compilation, imp and refining; gap: "
            "to CPLEX's proven bound (`best_bound`; the optimum where proven)."
            if refine
            else ""
        ),
        "",
        "| instance | n | valuations | published | optimal | imp / published | imp s | compile s "
        + ("| refined / published | workers | total s | gap to bound " if refine else "")
        + "| HiGHS / published | HiGHS s | CPLEX s |",
        "|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if refine else "") + "---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {r['instance']} | {r['n']} | {r['valuations']} | {r['published']:g} | "
                f"{r['published_optimal']} | skipped: {r['skipped']} | | | | | |"
                + (" | | | |" if refine else "")
            )
            continue
        lines.append(
            f"| {r['instance']} | {r['n']} | {r['valuations']} | {r['published']:g} | "
            f"{r['published_optimal']} | {r['imp_over_published']:.6f} | {r['imp_s']:.2f} | "
            f"{r['compile_s']:.1f} |{refined_cells(r) if refine else ''} {highs_cells(r)} | "
            f"{r['cplex_s']:.3g} |"
        )
    done = [r for r in rows if "skipped" not in r]
    if done:
        ratio = np.asarray([r["imp_over_published"] for r in done])
        proven = np.asarray([r["imp_over_published"] for r in done if r["published_optimal"]])
        lines += [
            "",
            f"imp / published over {len(done)} instances: mean {ratio.mean():.6f}, worst {ratio.min():.6f}; "
            f"median imp time {np.median([r['imp_s'] for r in done]):.2f} s, "
            f"median HiGHS time {np.median([r['milp_s'] for r in done if 'milp_s' in r] or [np.nan]):.1f} s.",
        ]
        if proven.size:
            lines += [
                "",
                f"On the {proven.size} proven-optimal ones: {int(np.sum(proven >= 0.999))} reach 99.9% of "
                f"the optimum, {int(np.sum(proven >= 1 - 1e-4))} match it to 1e-4 (the published values "
                f"have five significant digits); worst {proven.min():.6f}.",
            ]
        above = [r for r in done if not r["published_optimal"] and r["imp_over_published"] > 1]
        if above:
            lines.append(
                "\nAbove CPLEX's one-hour incumbent: "
                + ", ".join(f"{r['instance']} ({r['imp_over_published']:.4f})" for r in above)
                + "."
            )
        refined = [r for r in done if "refine_s" in r]
        if refined:
            ratio = np.asarray([r["refined_over_published"] for r in refined])
            lines.append(
                f"\nRefined over {len(refined)} instances: mean {ratio.mean():.6f}, worst {ratio.min():.6f}, "
                f"{sum(at_least(r['refined_profit'], r['published']) for r in refined)} at least the "
                "published value (to half a unit of its fifth digit); "
                f"longest instance {max(r['total_s'] for r in refined):.0f} s in all."
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_DIR), help="instances + published.csv")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--milp-time-limit", type=float, default=120.0)
    parser.add_argument("--max-n", type=int, default=3000, help="skip larger instances")
    parser.add_argument("--tag", default="", help="suffix of the output files' names")
    parser.add_argument("--only", default="", help="run only instances whose name contains this")
    parser.add_argument(
        "--milp-max-n",
        type=int,
        default=None,
        help="skip HiGHS above this n (its model build takes minutes at 150)",
    )
    parser.add_argument(
        "--refine-within",
        type=float,
        default=None,
        metavar="SECONDS",
        help="refine imp's prices by sub-market MILPs (reference.refine_by_milp) within this many "
        "seconds per instance, compilation and imp included",
    )
    parser.add_argument(
        "--refine-workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="sub-MILPs solved at once while refining (default: this process's CPU cores)",
    )
    parser.add_argument(
        "--schedule",
        default=None,
        choices=["sequential", "parallel"],
        help="the exact stages' schedule (default: the backend's, GradientIMP.for_market)",
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "published.csv").is_file():
        parser.error(f"folder {str(folder)!r} has no published.csv beside its instances")
    jax.config.update("jax_enable_x64", True)  # the float64 check market; imp runs in --dtype
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"unit-demand-{jax.devices()[0].platform}{args.tag}"

    def save(rows):
        (out / f"{tag}.md").write_text(markdown(rows, device, args.dtype, args.milp_time_limit))

        payload = dict(device=device, dtype=args.dtype, rows=rows)
        (out / f"{tag}.json").write_text(json.dumps(payload, indent=2))

    rows = run(
        folder,
        args.dtype,
        args.milp_time_limit,
        args.max_n,
        args.only,
        save=save,
        milp_max_n=args.milp_max_n,
        refine_within=args.refine_within,
        schedule=args.schedule,
        refine_workers=args.refine_workers,
    )
    save(rows)
    text = markdown(rows, device, args.dtype, args.milp_time_limit)
    print(text)


if __name__ == "__main__":
    main()
