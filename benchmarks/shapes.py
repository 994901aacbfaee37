"""IMP on every shape of market: default `lj.imp` against HiGHS optima, per shape, in one table.

Shapes (`SHAPES`): unit-demand markets from `lj.unit_demand_market` by value density (models each
customer values: 4, 8, 16, 32 and all, at N = M = 40) and by N : M (1:3, 1:1, 3:1 at density 8), and
LMaaS rentals (`lj.random_market`, budget-free so that HiGHS is exact) by N : M. Each shape has ten
instances, seeds `SEEDS` (kept apart from the seeds defaults were chosen on, see the docs: how IMP
works). `--large` adds the dense tables of 100 x 300 and 300 x 100 (two seeds each).

The optima are computed once by HiGHS (`lmaas_jax.reference.milp_pricing`) and kept with their seeds
and HiGHS's time in `benchmarks/data/shapes-optima.csv` (`--optima` fills in missing rows, saved row by
row); where HiGHS does not prove an instance within `--milp-time-limit` its incumbent is kept as
the best known. For the dense tables of 100 x 300 and 300 x 100 (30,000 binaries), where HiGHS
does not prove one in its limit, the best known is the higher of its incumbent and default imp's
prices refined by sub-market MILPs (`lmaas_jax.reference.refine_by_milp`) for `--milp-time-limit`
seconds, the upper bound (every customer pays its highest value) kept beside it. The table:
per shape and dtype, imp's profit (prices posted in the float64 market, `tie_tol=1e-9`) over the
optimum, worst and mean, imp's median seconds after compilation and HiGHS's median seconds to
prove.

    python benchmarks/shapes.py --optima             # compute missing optima (minutes)
    python benchmarks/shapes.py                      # the table, both dtypes
    python benchmarks/shapes.py --large --dtypes float32

`--study` runs the same shapes on the study seeds (`STUDY_SEEDS`, optima in
`benchmarks/data/shapes-study-optima.csv`), where defaults are chosen, and `--set STAGE.FIELD=VALUE`
(repeatable, the `[solver]` keys of a configuration file) prices them with a setting changed:

    python benchmarks/shapes.py --study --only LMaaS --optima
    python benchmarks/shapes.py --study --only LMaaS --set moves.groups=0
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lmaas_jax as lj  # noqa: E402

HERE = Path(__file__).resolve().parent
OPTIMA = HERE / "data" / "shapes-optima.csv"
STUDY_OPTIMA = HERE / "data" / "shapes-study-optima.csv"
SEEDS = tuple(range(1000, 1010))
STUDY_SEEDS = tuple(range(424242, 424252))  # the studies' seeds (see the docs: how IMP works)
LARGE_SEEDS = (1000, 1001)
# The reference of a dense table HiGHS does not prove, as `proven` records it (see compute_optima).
BEST_KNOWN = "best known"

# name: (kind, N, M, density); density None = every customer values every model.
SHAPES = {
    "density 4": ("unit", 40, 40, 4),
    "density 8": ("unit", 40, 40, 8),
    "density 16": ("unit", 40, 40, 16),
    "density 32": ("unit", 40, 40, 32),
    "dense 40 x 40": ("unit", 40, 40, None),
    "N:M 1:3": ("unit", 20, 60, 8),
    "N:M 3:1": ("unit", 60, 20, 8),
    "LMaaS 1:1": ("lmaas", 16, 16, None),
    "LMaaS 3:1": ("lmaas", 30, 10, None),
    "LMaaS 1:3": ("lmaas", 10, 30, None),
}
LARGE = {
    "dense 100 x 300": ("unit", 100, 300, None),
    "dense 300 x 100": ("unit", 300, 100, None),
}


def market(kind, n, m, density, seed, dtype):
    key = jax.random.PRNGKey(seed)
    if kind == "unit":  # every customer values exactly `density` models: K = density
        return lj.unit_demand_market(key, n, m, density=density, dtype=dtype)
    return lj.random_market(key, m, n, budget_share=0.0, dtype=dtype)


def reference(proven: str):
    """`proven` as the csv keeps it: True / False (HiGHS proved it / its incumbent) or `BEST_KNOWN`."""
    return proven if proven == BEST_KNOWN else proven == "True"


def read_optima(path):
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {(r["shape"], int(r["seed"])): r for r in csv.DictReader(f)}


def write_optima(rows, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["shape", "seed", "n", "m", "density", "optimum", "posted", "proven", "highs_s"]
    fields += ["upper_bound", "search_s"]  # the dense tables HiGHS does not prove (see above)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for key in sorted(rows, key=lambda k: (k[0], k[1])):
            w.writerow({k: rows[key].get(k, "") for k in fields})
    tmp.replace(path)  # an interrupted run keeps every row it finished


def compute_optima(shapes, limit, seeds=SEEDS, path=OPTIMA):
    from lmaas_jax.reference import milp_pricing, refine_by_milp

    rows = read_optima(path)
    for name, (kind, n, m, density) in shapes.items():
        for seed in LARGE_SEEDS if name in LARGE else seeds:
            if (name, seed) in rows and rows[(name, seed)].get("posted"):
                continue
            mk = market(kind, n, m, density, seed, "float64")
            start = time.perf_counter()
            sol = milp_pricing(mk, time_limit=limit)
            highs_s = time.perf_counter() - start
            proven = bool(sol.stats["optimal"])
            # The MILP's own value where HiGHS proved it (its prices, snapped onto breakpoints and
            # posted, can hold less: a customer the MILP assigns may tie elsewhere once snapped);
            # else the posted incumbent. `posted`: the profit of HiGHS's prices as posted.
            optimum = float(sol.stats["objective"] if proven else sol.profit)
            row = dict(
                shape=name,
                seed=seed,
                n=n,
                m=m,
                density="all" if density is None else density,
                optimum=f"{optimum:.10g}",
                posted=f"{float(sol.profit):.10g}",
                proven=proven,
                highs_s=f"{highs_s:.2f}",
            )
            if name in LARGE and not proven:
                # The best known where HiGHS stops at its limit: its incumbent or default imp's
                # prices (float64, key 0) refined by sub-market MILPs for `limit` seconds, whichever
                # is higher; imp alone is then measured against what its search reaches with exact
                # help. The upper bound (each customer pays its highest value) is kept beside it.
                start = time.perf_counter()
                found = jax.jit(lambda mk: lj.imp(mk, key=jax.random.PRNGKey(0)))(mk)
                refined = refine_by_milp(mk, found.prices, rounds=10**9, time_limit=limit)
                row.update(
                    optimum=f"{max(optimum, float(refined.profit)):.10g}",
                    proven=BEST_KNOWN,
                    upper_bound=f"{float(np.asarray(mk.rate).max(axis=1).sum()):.10g}",
                    search_s=f"{time.perf_counter() - start:.2f}",
                )
            rows[(name, seed)] = row
            write_optima(rows, path)
            print(f"{name} seed {seed}: {row['optimum']} proven={row['proven']}", flush=True)


def settings(market, overrides=()):
    """`lj.imp`'s default settings for `market` with `overrides` ((`STAGE.FIELD`, value) pairs) set."""
    solver = lj.GradientIMP.for_market(market)
    for key, value in overrides:
        stage, field = key.split(".")
        solver = dataclasses.replace(
            solver, **{stage: dataclasses.replace(getattr(solver, stage), **{field: value})}
        )
    return solver


def run(shapes, dtypes, save, max_work=None, seeds=SEEDS, path=OPTIMA, overrides=()):
    post = jax.jit(lambda mk, p: lj.seller_profit(mk, p, tie_tol=1e-9))
    rows = []
    for name, (kind, n, m, density) in shapes.items():
        optima = read_optima(path)  # per shape: an --optima run beside this one may have added rows
        for dtype in dtypes:
            fn = jax.jit(lambda mk, k: lj.imp(mk, settings(mk, overrides), key=k, max_work=max_work))
            compiled = None
            for seed in LARGE_SEEDS if name in LARGE else seeds:
                best = optima.get((name, seed))
                if best is None:
                    print(f"{name} seed {seed}: no optimum on file (run --optima)", flush=True)
                    continue
                exact = market(kind, n, m, density, seed, "float64")
                mk = exact.astype(jnp.dtype(dtype))
                # Option lists: every user group up to N users, so one compilation serves every seed.
                if isinstance(mk, lj.ValueMarket) and not mk.dense:
                    mk = mk.as_option_lists(n_options=mk.n_options, max_users=n)
                key = jax.random.PRNGKey(0)
                compile_s = 0.0
                if compiled is None:
                    start = time.perf_counter()
                    compiled = fn.lower(mk, key).compile()
                    compile_s = time.perf_counter() - start
                start = time.perf_counter()
                sol = jax.block_until_ready(compiled(mk, key))
                imp_s = time.perf_counter() - start
                profit = float(post(exact, sol.prices.astype(jnp.float64)))
                optimum = float(best["optimum"])
                rows.append(
                    dict(
                        shape=name,
                        dtype=dtype,
                        seed=seed,
                        n=n,
                        m=m,
                        density=best["density"],
                        profit=profit,
                        optimum=optimum,
                        ratio=profit / optimum if optimum else 1.0,
                        proven=reference(best["proven"]),
                        imp_s=imp_s,
                        compile_s=compile_s,
                        highs_s=float(best["highs_s"]),
                        work=int(sol.stats["work"]),
                        budget_spent=bool(sol.stats["budget_spent"]),
                    )
                )
                save(rows)
                print(f"{name} {dtype} seed {seed}: {rows[-1]['ratio']:.6f} in {imp_s:.2f} s", flush=True)
    return rows


def markdown(rows, device, max_work, study=False, overrides=()):
    budget = "none" if max_work is None else f"{max_work:,}"
    changed = ", ".join(f"`{k} = {v}`" for k, v in overrides)
    lines = [
        f"# IMP on every shape of market ({device}{', study seeds' if study else ''})",
        "",
        f"{'`lj.imp` with ' + changed if changed else 'Default `lj.imp`'} (key 0), its prices posted in "
        "the float64 market (`tie_tol=1e-9`), over the optimum HiGHS proved (the MILP's value; "
        f"`benchmarks/data/{(STUDY_OPTIMA if study else OPTIMA).name}`; 'best known' where "
        "HiGHS did not prove it in its limit). Posting moves prices off "
        "the breakpoints so that they hold, which costs about 1e-5 of the profit in float32 (more where "
        "the profit is a small part of the revenue). "
        f"Work budget: {budget}. Seconds after compilation, medians over the seeds.",
        "",
        "| shape | N | M | density | dtype | instances | worst | mean | >= 0.999 | imp s | work | HiGHS s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for r in rows:
        groups.setdefault((r["shape"], r["dtype"]), []).append(r)
    for (shape, dtype), rs in groups.items():
        ratio = np.array([r["ratio"] for r in rs])
        proven = all(r["proven"] is True for r in rs)
        note = ""
        if rs[0]["proven"] == BEST_KNOWN:
            note = " (limit; best known: HiGHS's incumbent or imp refined by sub-market MILPs)"
        if any(r.get("reference") == "posted" for r in rs):
            note = " (HiGHS's prices as posted, not its proven value)"
        note = note or ("" if proven else " (best known)")
        lines.append(
            f"| {shape} | {rs[0]['n']} | {rs[0]['m']} | {rs[0]['density']} | {dtype} | {len(rs)} | "
            f"{ratio.min():.6f} | {ratio.mean():.6f} | {int(np.sum(ratio >= 0.999))} | "
            f"{np.median([r['imp_s'] for r in rs]):.2f} | {int(np.median([r['work'] for r in rs])):,} | "
            f"{np.median([r['highs_s'] for r in rs]):.1f}{note} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optima", action="store_true", help="compute missing HiGHS optima and stop")
    parser.add_argument("--large", action="store_true", help="add the dense 100 x 300 and 300 x 100 rows")
    parser.add_argument("--only", default="", help="shapes whose name contains this")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--milp-time-limit", type=float, default=600.0)
    parser.add_argument("--max-work", type=int, default=None, help="imp's work budget (default none)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--study", action="store_true", help="the study seeds, not the benchmark's")
    parser.add_argument(
        "--set", action="append", default=[], metavar="STAGE.FIELD=INT", help="an integer setting changed"
    )
    args = parser.parse_args(argv)
    overrides = []
    for item in args.set:
        key, _, value = item.partition("=")
        stage, _, field = key.partition(".")
        if stage not in ("polish", "moves", "lookahead") or not field or not value.lstrip("-").isdigit():
            parser.error(f"--set {item!r}: expected STAGE.FIELD=INT, STAGE one of polish, moves, lookahead")
        overrides.append((key, int(value)))
    seeds, path = (STUDY_SEEDS, STUDY_OPTIMA) if args.study else (SEEDS, OPTIMA)
    jax.config.update("jax_enable_x64", True)
    shapes = {**SHAPES, **(LARGE if args.large else {})}
    shapes = {k: v for k, v in shapes.items() if args.only in k}
    if args.optima:
        compute_optima(shapes, args.milp_time_limit, seeds, path)
        return
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"shapes-{jax.devices()[0].platform}{args.tag}"
    table = lambda rows: markdown(rows, device, args.max_work, args.study, overrides)  # noqa: E731

    def save(rows):
        (out / f"{tag}.md").write_text(table(rows))
        (out / f"{tag}.json").write_text(json.dumps(dict(device=device, rows=rows), indent=2))

    rows = run(shapes, args.dtypes.split(","), save, args.max_work, seeds, path, tuple(overrides))
    save(rows)
    print(table(rows))


if __name__ == "__main__":
    main()
