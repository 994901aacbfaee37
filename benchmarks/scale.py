"""IMP at scale: time split into gradient phase and polish, growth in N, schedules, batching, memory.

One run, one machine, six tables (markdown to stdout and `--out`, JSON beside it):

1. `lj.imp` (defaults) on default markets for M in {2, 4, 8} and N from 64 to 1024: gradient phase
   (`polish=False`) and polish (the difference) per market, and the growth exponent of the total in N.
2. The polish alone from the same starting prices on the same markets: the O(N log N) line search
   against the brute force it replaced (`lmaas_jax.reference.brute_force_line`), as a ratio.
3. The exact stages' two schedules (`--schedules`, see `GradientIMP.with_schedule`) on one default
   market per size: the sequential depth (exact steps one after another, `stats["depth"]`), the
   work, and the time and process CPU time of each.
4. `jit(vmap(imp))` markets per second against batch size (M = 4, N = 64 and N = 256), per schedule,
   with the process CPU time (markets per CPU-second: what batching saves in arithmetic, whatever
   the threads) and the batch's median depth and work per market.
5. Memory of one `imp` (XLA's compiled temporary buffers, from `memory_analysis`) against N, up to
   N = 20,000 customers, with the time of that solve.
6. With `--baseline PATH` (a checkout of an older lmaas_jax, e.g. `git worktree add /tmp/base REV`):
   that version's `imp` on the same markets, in a subprocess, for the speed-up and profit ratios.

Times are medians of `--repeats` calls after a compile call, with `block_until_ready`; CPU times
are the process's (`time.process_time`, all threads) over the same calls.

    python benchmarks/scale.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import lmaas_jax as lj
from lmaas_jax.experiments import timed
from lmaas_jax.lmaas.pricing._classic_imp import coordinate_ascent
from lmaas_jax.lmaas.pricing._line_search import best_on_line
from lmaas_jax.lmaas.robust._rsr import tie_tolerance, value_market
from lmaas_jax.product._config import SolverChoice
from lmaas_jax.reference import brute_force_line

SEED = 515151  # markets: random_market(PRNGKey(SEED + N), M, N); the baseline script uses the same


def market(m, n, dtype):
    return lj.random_market(jax.random.PRNGKey(SEED + n), m, n, dtype=dtype)


def cpu_timed(fn, *args, repeats=3):
    """(compile s, median wall s, median process CPU s, output) of a jitted `fn`, as `timed`."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    wall = float(np.median(walls))
    return max(first - wall, 0.0), wall, float(np.median(cpus)), out


def schedule_table(shapes, schedules, dtype, repeats, rows, save=lambda: None, deadline=float("inf")):
    """Default `lj.imp` on one default market per (M, N), under each schedule."""
    for m, n in shapes:
        for schedule in schedules:
            if time.perf_counter() > deadline:
                print(f"schedule M={m} N={n} {schedule}: skipped (--budget-s spent)", flush=True)
                continue
            mk, key = market(m, n, dtype), jax.random.PRNGKey(0)
            solver = lj.GradientIMP.for_market(mk).with_schedule(schedule)
            fn = jax.jit(lambda mk, k, solver=solver: lj.imp(mk, solver, key=k))
            compile_s, wall, cpu, sol = cpu_timed(fn, mk, key, repeats=repeats)
            rows.append(
                dict(
                    M=m,
                    N=n,
                    schedule=schedule,
                    depth=int(sol.stats["depth"]),
                    work=int(sol.stats["work"]),
                    run_s=wall,
                    cpu_s=cpu,
                    compile_s=compile_s,
                    profit=float(sol.profit),
                )
            )
            print(f"schedule M={m} N={n} {schedule}: depth {rows[-1]['depth']}, {wall:.3f} s", flush=True)
            save()
    # The depth of each parallel run over the sequential run's on the same market.
    seq = {(r["M"], r["N"]): r["depth"] for r in rows if r["schedule"] == "sequential"}
    for r in rows:
        r["depth_ratio"] = r["depth"] / seq[(r["M"], r["N"])] if (r["M"], r["N"]) in seq else float("nan")
    return rows


def size_table(models, sizes, dtype, repeats, rows, save=lambda: None, deadline=float("inf")):
    full = jax.jit(lambda mk, k: lj.imp(mk, key=k).profit)
    still = jax.jit(lambda mk, k: lj.imp(mk, lj.GradientIMP(moves=lj.Moves(rounds=0)), key=k).profit)
    grad = jax.jit(lambda mk, k: lj.imp(mk, lj.GradientIMP(polish=None), key=k).profit)
    for m in models:
        for n in sizes:
            if time.perf_counter() > deadline:
                print(f"size M={m} N={n}: skipped (--budget-s spent)", flush=True)
                continue
            mk, key = market(m, n, dtype), jax.random.PRNGKey(0)
            _, t_full, profit = timed(full, mk, key, repeats=repeats)
            _, t_still, profit_still = timed(still, mk, key, repeats=repeats)
            _, t_grad, _ = timed(grad, mk, key, repeats=repeats)
            rows.append(
                dict(
                    M=m,
                    N=n,
                    total_s=t_full,
                    gradient_s=t_grad,
                    polish_s=max(t_still - t_grad, 0.0),
                    moves_s=max(t_full - t_still, 0.0),
                    profit=float(profit),
                    moves_gain=float(profit) / float(profit_still) - 1.0,
                )
            )
            print(
                f"size M={m} N={n}: total {t_full:.3f} s, gradient {t_grad:.3f} s, "
                f"without moves {t_still:.3f} s",
                flush=True,
            )
            growth(rows)
            save()
    return rows


def growth(rows):
    """The slope of log time against log N per M (NaN with fewer than two sizes)."""
    for m in {r["M"] for r in rows}:
        sub = [r for r in rows if r["M"] == m]
        slope = (
            np.polyfit(np.log([r["N"] for r in sub]), np.log([r["total_s"] for r in sub]), 1)[0]
            if len(sub) > 1
            else float("nan")
        )
        for r in sub:
            r["growth_exponent"] = float(slope)


def polish_table(sizes, dtype, repeats, starts=16, sweeps=8):
    rows = []
    for n in sizes:
        mk = market(4, n, dtype)
        terms, tol = value_market(mk), tie_tolerance(mk)
        u = jax.random.uniform(jax.random.PRNGKey(n), (starts, 4), mk.dtype)
        x0 = mk.models.price_lo + u * (mk.models.price_hi - mk.models.price_lo)
        out = {}
        for name, line in (("new", best_on_line), ("old", brute_force_line)):
            fn = jax.jit(
                jax.vmap(
                    lambda p, mk=mk, terms=terms, tol=tol, line=line: coordinate_ascent(
                        terms, p, tol, sweeps, line=line
                    )[1]
                )
            )
            _, t, profit = timed(fn, x0, repeats=repeats)
            out[name] = (t, np.asarray(profit, np.float64))
        same = float(np.max(np.abs(out["new"][1] - out["old"][1]) / np.abs(out["old"][1])))
        rows.append(
            dict(
                N=n,
                starts=starts,
                sweeps=sweeps,
                new_s=out["new"][0],
                old_s=out["old"][0],
                speedup=out["old"][0] / out["new"][0],
                max_rel_profit_diff=same,
            )
        )
        print(f"polish N={n}: new {out['new'][0]:.3f} s old {out['old'][0]:.3f} s", flush=True)
    return rows


def batch_table(
    sizes,
    batches,
    dtype,
    repeats,
    rows,
    save=lambda: None,
    deadline=float("inf"),
    subset=None,
    solver=None,
    schedules=(None,),
):
    """`jit(vmap(imp))` on batches of default markets, per schedule (None: the backend's default);
    with `subset`, a batch larger than it is represented by its first `subset` markets (the rate of
    the same markets on a slower machine)."""
    solver = SolverChoice(()) if solver is None else solver

    def program(schedule):
        def one(mk, k):
            settings = solver(mk.n_models, mk.n_customers)
            settings = settings if schedule is None else settings.with_schedule(schedule)
            sol = lj.imp(mk, settings, key=k)
            return sol.profit, sol.stats["depth"], sol.stats["work"]

        return jax.jit(jax.vmap(one))

    for schedule in schedules:
        fn = program(schedule)
        name = schedule or lj.GradientIMP.for_size(4, 64).polish.schedule
        for n in sizes:
            for b in batches:
                if time.perf_counter() > deadline:
                    print(f"batch N={n} B={b} {name}: skipped (--budget-s spent)", flush=True)
                    continue
                keys = jax.random.split(jax.random.PRNGKey(n), b)
                priced = b if subset is None else min(b, subset)
                keys = keys[:priced]
                mks = jax.vmap(lambda k, n=n: lj.random_market(k, 4, n, dtype=dtype))(keys)
                compile_s, t, cpu, (profit, depth, work) = cpu_timed(fn, mks, keys, repeats=repeats)
                rows.append(
                    dict(
                        M=4,
                        N=n,
                        schedule=name,
                        batch=b,
                        priced=priced,
                        run_s=t,
                        markets_per_s=priced / t,
                        cpu_s=cpu,
                        markets_per_cpu_s=priced / cpu,
                        depth=float(np.median(np.asarray(depth))),
                        work=float(np.median(np.asarray(work))),
                        compile_s=compile_s,
                        mean_profit_first64=float(np.mean(np.asarray(profit[:64], np.float64))),
                    )
                )
                print(
                    f"batch N={n} B={b} {name} ({priced} priced): {priced / t:.2f} markets/s, "
                    f"{priced / cpu:.2f} per CPU-s, compile {compile_s:.1f} s",
                    flush=True,
                )
                save()
    return rows


def memory_table(sizes, dtype, rows, save=lambda: None, deadline=float("inf")):
    fn = jax.jit(lambda mk, k: lj.imp(mk, key=k).profit)
    for n in sizes:
        if time.perf_counter() > deadline:
            print(f"memory N={n}: skipped (--budget-s spent)", flush=True)
            continue
        mk, key = market(4, n, dtype), jax.random.PRNGKey(0)
        compiled = fn.lower(mk, key).compile()
        mem = compiled.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", float("nan"))
        t0 = time.perf_counter()
        profit = float(jax.block_until_ready(compiled(mk, key)))
        rows.append(dict(M=4, N=n, temp_MiB=temp / 2**20, seconds=time.perf_counter() - t0, profit=profit))
        print(f"memory N={n}: {temp / 2**20:.1f} MiB, {rows[-1]['seconds']:.1f} s", flush=True)
        save()
    return rows


BASELINE_SCRIPT = """
import json, sys, time
import jax, numpy as np
import lmaas_jax as lj
sizes, seeds, dtype = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
f = jax.jit(lambda mk, k: lj.imp(mk, key=k).profit)
out = []
for n in sizes:
    for seed in seeds:
        mk = lj.random_market(jax.random.PRNGKey(seed + n), 4, n, dtype=dtype)
        p = float(jax.block_until_ready(f(mk, jax.random.PRNGKey(0))))
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(f(mk, jax.random.PRNGKey(0)))
            runs.append(time.perf_counter() - t0)
        seconds = sorted(runs)[2]
        out.append(dict(N=n, seed=seed, seconds=seconds, profit=p, version=lj.__file__))
print("BASELINE" + json.dumps(out))
"""

BASELINE_SEEDS = [SEED, SEED + 1, SEED + 2, SEED + 3]  # four markets per size: main's time varies 3x


def baseline_table(path, sizes, dtype):
    """Both versions' default `imp` on the same markets: medians of 5 calls after a compile call."""
    env = dict(os.environ, PYTHONPATH=str(path))
    res = subprocess.run(
        [sys.executable, "-c", BASELINE_SCRIPT, json.dumps(sizes), json.dumps(BASELINE_SEEDS), dtype],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",  # not this checkout: the old package must come first on the path
    )
    old = json.loads(res.stdout.split("BASELINE", 1)[1])
    fn = jax.jit(lambda mk, k: lj.imp(mk, key=k).profit)
    rows = []
    for o in old:
        mk = lj.random_market(jax.random.PRNGKey(o["seed"] + o["N"]), 4, o["N"], dtype=dtype)
        _, t, profit = timed(fn, mk, jax.random.PRNGKey(0), repeats=5)
        rows.append(
            dict(
                N=o["N"],
                seed=o["seed"],
                old_s=o["seconds"],
                new_s=t,
                speedup=o["seconds"] / t,
                profit_ratio=float(profit) / o["profit"],
            )
        )
        print(f"baseline N={o['N']} seed {o['seed']}: {o['seconds']:.2f} s -> {t:.3f} s", flush=True)
    for n in sizes:
        sub = [r for r in rows if r["N"] == n]
        rows.append(
            dict(
                N=n,
                seed="all",
                old_s=sum(r["old_s"] for r in sub),
                new_s=sum(r["new_s"] for r in sub),
                speedup=sum(r["old_s"] for r in sub) / sum(r["new_s"] for r in sub),
                profit_ratio=min(r["profit_ratio"] for r in sub),
            )
        )
    return rows


def table(rows, columns):
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    # A cell not measured (yet: the depth ratio of a row saved before its size's last schedule): "".
    return head + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="2,4,8")
    parser.add_argument("--sizes", default="64,128,256,512,1024")
    parser.add_argument("--polish-sizes", default="128,512")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--schedule-shapes", default="4x64,4x256,4x1024,8x512", help="MxN markets")
    parser.add_argument(
        "--schedules", default="sequential,parallel", help="schedules of the schedule and batch tables"
    )
    parser.add_argument("--batches", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--memory-sizes", default="1000,2000,5000,20000")
    parser.add_argument(
        "--batch-subset", type=int, default=None, help="price only the first this many markets of a batch"
    )
    parser.add_argument(
        "--baseline", default=None, help="path of an older lmaas_jax checkout to compare with"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--parts",
        default="sizes,polish,baseline,schedule,batch,memory",
        help="tables to run, in this order",
    )
    parser.add_argument(
        "--budget-s", type=float, default=float("inf"), help="start no new row after this many seconds"
    )
    parser.add_argument(
        "--batch-solver",
        default="",
        help="settings of the batch table in place of the defaults, as [solver] keys, e.g. 'moves.rounds=0'",
    )
    parser.add_argument("--tag", default="", help="suffix of the output files' names")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    settings = {
        k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in args.batch_solver.split(",") if kv)
    }
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores"
    result = dict(
        device=device,
        dtype=args.dtype,
        batch_solver=settings,
        sizes=[],
        polish=[],
        schedule=[],
        batch=[],
        memory=[],
    )
    schedules = [s for s in args.schedules.split(",") if s]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = jax.devices()[0].platform + args.tag

    def save():
        # After every row: an interrupted run (a lease running out) keeps what it measured.
        (out / f"scale-{tag}.md").write_text(markdown(result, args))
        (out / f"scale-{tag}.json").write_text(json.dumps(result, indent=2))

    deadline = time.perf_counter() + args.budget_s
    limits = dict(save=save, deadline=deadline)
    for part in args.parts.split(","):
        if part == "sizes":
            size_table(
                ints(args.models), ints(args.sizes), args.dtype, args.repeats, result["sizes"], **limits
            )
        elif part == "polish":
            result["polish"] = polish_table(ints(args.polish_sizes), args.dtype, args.repeats)
        elif part == "baseline" and args.baseline:
            result["baseline"] = baseline_table(args.baseline, ints(args.polish_sizes), args.dtype)
        elif part == "schedule":
            shapes = [tuple(int(x) for x in s.split("x")) for s in args.schedule_shapes.split(",") if s]
            schedule_table(shapes, schedules, args.dtype, args.repeats, result["schedule"], **limits)
        elif part == "batch":
            batch_table(
                ints(args.batch_sizes),
                ints(args.batches),
                args.dtype,
                args.repeats,
                result["batch"],
                subset=args.batch_subset,
                solver=SolverChoice(tuple(settings.items())),
                schedules=schedules or [None],
                **limits,
            )
        elif part == "memory":
            memory_table(ints(args.memory_sizes), args.dtype, result["memory"], **limits)
        save()
    print(markdown(result, args))


def markdown(result, args):
    text = f"# IMP at scale ({result['device']}, {args.dtype})\n\n"
    text += "## Default `lj.imp` per market: gradient phase and polish\n\n"
    text += table(
        result["sizes"],
        ["M", "N", "total_s", "gradient_s", "polish_s", "moves_s", "moves_gain", "growth_exponent", "profit"],
    )
    text += "\n## Polish from the same 16 starts, 8 sweeps: new line search vs brute force (M = 4)\n\n"
    text += table(result["polish"], ["N", "new_s", "old_s", "speedup", "max_rel_profit_diff"])
    if result.get("baseline"):
        text += f"\n## Against the baseline checkout ({args.baseline}), M = 4, same markets\n\n"
        text += "Seed `all`: the totals per size (speed-up = total old / total new; profit ratio: worst).\n\n"
        text += table(result["baseline"], ["N", "seed", "old_s", "new_s", "speedup", "profit_ratio"])
    if result.get("schedule"):
        text += "\n## The exact stages' schedules: one default market per size\n\n"
        text += (
            "`depth`: exact steps run one after another (`stats['depth']`: a line search, or a chunk of "
            "candidates re-priced together); `depth_ratio`: over the sequential schedule's on the same "
            "market; `cpu_s`: process CPU time, all threads.\n\n"
        )
        text += table(
            result["schedule"],
            ["M", "N", "schedule", "depth", "depth_ratio", "work", "run_s", "cpu_s", "compile_s", "profit"],
        )
    text += (
        f"\n## jit(vmap(imp)): markets per second against batch size (M = 4, {result['batch_solver']})\n\n"
    )
    text += (
        "`priced`: the batch's first markets actually priced (`--batch-subset`), the rate over those; "
        "`markets_per_cpu_s`: over the process CPU time; `depth`, `work`: medians over the batch's "
        "markets.\n\n"
    )
    text += table(
        result["batch"],
        [
            "N",
            "schedule",
            "batch",
            "priced",
            "run_s",
            "markets_per_s",
            "cpu_s",
            "markets_per_cpu_s",
            "depth",
            "work",
            "compile_s",
            "mean_profit_first64",
        ],
    )
    text += "\n## Memory of one imp (XLA temporaries) and its time, M = 4\n\n"
    text += table(result["memory"], ["N", "temp_MiB", "seconds", "profit"])
    return text


if __name__ == "__main__":
    main()
