"""`lmaas-jax run`: the four games end to end (LMaaS E1-E6, test-time compute, token auctions, token caps),
written as tables, figures and one `report.md`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from .._config import ConfigError, check_writable
from .._imp import GradientIMP
from .._sweep import SweepGrid, check_manifest, solver_fingerprint, sweep, write_atomic
from . import _figures, _tables

PAPER_GAIN = 43.96  # % : the LMaaS paper's largest reported gain of RSR over its baseline


def _progress(enabled: bool):
    from tqdm.auto import tqdm

    return lambda it, desc="": tqdm(it, desc=desc, disable=not enabled, leave=False)


def _markdown(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        if isinstance(v, float | np.floating):
            return "nan" if np.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _write(table: pd.DataFrame, out: Path, name: str) -> None:
    table.to_csv(out / f"{name}.csv", index=False)
    write_atomic(table, out / f"{name}.parquet")  # last: a whole .parquet marks a finished table


_MANIFEST = "run-manifest.json"


def _open_folder(out: Path, cfg: dict[str, Any], solver: GradientIMP, seed: int) -> None:
    """Use `out` for this run: create it, resume this run's own folder, refuse anything else."""
    from .. import __version__

    manifest = {
        "run": {k: v for k, v in cfg.items() if k != "out"},
        "solver": solver_fingerprint(solver, seed),
        "lmaas_jax": __version__,
    }
    if out.is_dir() and any(out.iterdir()) and not (out / _MANIFEST).exists():
        first = sorted(p.name for p in out.iterdir())[0]
        raise ConfigError(
            f"run.out = {str(out)!r} is not empty (it holds {first!r}, ...) and is not an earlier "
            "`lmaas-jax run`'s folder: give an empty or new folder, so that no report mixes two runs."
        )
    check_writable("run.out", out)
    check_manifest(out, manifest, _MANIFEST, what="run")


def _resumed(out: Path, name: str, compute, seconds: dict, label: str) -> pd.DataFrame:
    """The table `name` of an earlier, interrupted run in `out`, or `compute()` written there."""
    path = out / f"{name}.parquet"
    if path.exists():
        seconds[label] = "resumed"
        return pd.read_parquet(path)
    start = time.perf_counter()
    table = compute()
    _write(table, out, name)
    seconds[label] = time.perf_counter() - start
    return table


def _closest(values, target):
    return min(values, key=lambda v: (abs(v - target), v))


def run_experiments(
    cfg: dict[str, Any], solver: GradientIMP, *, seed: int = 1, progress: bool = True
) -> Path:
    """Run the main job with the `[run]` settings `cfg`; write to `cfg["out"]`: the LMaaS game's
    experiments E1-E5 and E6 (sensitivities), then the test-time compute game, token auctions and
    token caps.

    Writes `report.md` (what was run, the key numbers, the figures inline), `e1.png` ... `e6.png`,
    `ttc_inefficiency.png`, `token_auction.png`, `token_cap.png`, and every table as `.csv` and
    `.parquet`. Turns on `jax_enable_x64` (the HiGHS MILP and the
    float64 re-evaluations need it); the JAX solvers run in `cfg["dtype"]`.

    **Folders.** `cfg["out"]` must be new, empty, or an earlier run's folder: `run-manifest.json`
    there fingerprints the `[run]` settings, the solver (as in [`lmaas_jax.sweep`][]), the seed and
    the library version. A folder holding anything else is refused, so no report mixes two runs; a
    run with different settings is refused naming each difference; the same run again resumes: the
    E1/E3/E6 sweeps from their finished chunks (`sweeps/`), E2 and E5 from their finished tables
    (E4, a few seconds, is recomputed), and the report and figures are written anew.

    **Arguments:**

    - `cfg`: the `[run]` section of a configuration, e.g. `lmaas_jax.load_config(path, ("run",
      "solver"))["run"]` or the defaults of `lmaas_jax._config.defaults("run")`.
    - `solver`: the [`lmaas_jax.GradientIMP`][] every experiment prices with.
    - `seed`: IMP's seed (`[solver] seed`): a market drawn with key k is priced with key
      `jax.random.fold_in(k, seed)`.
    - `progress`: progress bars on stderr.

    **Returns:**

    The path of `report.md`.
    """
    out = Path(cfg["out"])
    _open_folder(out, cfg, solver, seed)
    jax.config.update("jax_enable_x64", True)
    bar = _progress(progress)
    scale, dtype = cfg["scale"], cfg["dtype"]
    m, n = cfg["n_models"], cfg["n_customers"]
    seconds = {}

    start = time.perf_counter()
    gammas, deviations = cfg["gammas"], cfg["deviations"]
    base_gamma = 2 if 2 in gammas else max(gammas)
    base_dev = _closest(deviations, 0.2)
    common = dict(n_models=m, n_customers=n, seeds=cfg["seeds"] * scale, budget_share=0.5)
    main_grid = SweepGrid(gamma=gammas, deviation=deviations, capability_gap=0.4, **common)
    gap_grid = SweepGrid(
        gamma=base_gamma, deviation=base_dev, capability_gap=cfg["capability_gaps"], **common
    )
    # Chunks as large as the gap sweep, so that both sweeps (usually) share one compiled shape.
    # Both record the equilibrium's sensitivities (E6 reads them at the base point).
    chunk = len(gap_grid.markets())
    kw = dict(solver=solver, dtype=dtype, chunk_size=chunk, progress=progress, sensitivities=True, seed=seed)
    main = sweep(main_grid, out / "sweeps" / "gamma_deviation", **kw)  # chunk by chunk: resumable
    gaps = sweep(gap_grid, out / "sweeps" / "capability_gap", **kw)
    _write(main, out, "markets_gamma_deviation")
    _write(gaps, out, "markets_capability_gap")
    e1 = _tables.e1_robustness(main)
    summary = _tables.e1_summary(e1, main)
    _write(e1, out, "e1_robustness")
    e3 = {
        "gamma": _tables.e3_sensitivity(main, "gamma", {"deviation": base_dev}),
        "deviation": _tables.e3_sensitivity(main, "deviation", {"gamma": base_gamma}),
        "capability_gap": _tables.e3_sensitivity(gaps, "capability_gap", {}),
    }
    for by, t in e3.items():
        _write(t, out, f"e3_by_{by}")
    base = main[(main["gamma"] == base_gamma) & np.isclose(main["deviation"], base_dev)]
    e6 = _tables.e6_sensitivities(base, dtype)
    e6_summary = _tables.e6_summary(e6)
    _write(e6, out, "e6_sensitivities")
    seconds["E1 + E3 + E6 sweeps"] = time.perf_counter() - start

    e2 = _resumed(
        out,
        "e2_seller",
        lambda: _tables.e2_seller(
            cfg["e2_sizes"], cfg["e2_markets"] * scale, solver, dtype=dtype, progress=bar, seed=seed
        ),
        seconds,
        "E2",
    )

    start = time.perf_counter()
    steps, ccg = _tables.e4_convergence(m, n, cfg["e4_customers"], solver, dtype=dtype, seed=seed)
    _write(steps, out, "e4_imp_steps")
    _write(ccg, out, "e4_ccg_bounds")
    seconds["E4"] = time.perf_counter() - start

    batches = [b * scale for b in cfg["e5_batches"]]
    e5 = _resumed(
        out,
        "e5_scale",
        lambda: _tables.e5_scale(
            cfg["e5_size"], batches, cfg["e5_milp_markets"], solver, dtype=dtype, progress=bar, seed=seed
        ),
        seconds,
        "E5",
    )

    _figures.e1_figure(e1, out / "e1.png")
    _figures.e2_figure(e2, out / "e2.png")
    _figures.e3_figure(e3, out / "e3.png")
    _figures.e4_figure(steps, ccg, out / "e4.png")
    _figures.e5_figure(e5, out / "e5.png")
    _figures.e6_figure(e6_summary, out / "e6.png")

    # The three sibling games, a few seconds each: recomputed on every run, like E4.
    from ._token_auction import token_auction_report, token_auction_section
    from ._token_cap import token_cap_report, token_cap_section
    from ._ttc import ttc_report, ttc_section

    start = time.perf_counter()
    games = ttc_section(ttc_report(out, n_sweep=cfg["ttc_sweep_points"], progress=bar))
    seconds["test-time compute"] = time.perf_counter() - start
    start = time.perf_counter()
    games += token_auction_section(token_auction_report(out))
    seconds["token auctions"] = time.perf_counter() - start
    start = time.perf_counter()
    games += token_cap_section(token_cap_report(out))
    seconds["token caps"] = time.perf_counter() - start
    (out / "summary.json").write_text(
        json.dumps({"e1": summary, "seconds": seconds}, indent=2, default=float)
    )
    path = out / "report.md"
    path.write_text(
        _report(cfg, solver, main, e1, summary, e2, e3, steps, ccg, e5, seconds, base_gamma, base_dev)
        + _e6_section(e6, e6_summary, base_gamma, base_dev)
        + "\n"
        + games
    )
    return path


def _report(cfg, solver, main, e1, summary, e2, e3, steps, ccg, e5, seconds, base_gamma, base_dev) -> str:
    device = f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s))"
    nom = summary["nominal"]
    lines = [
        "# lmaas-jax report: the LMaaS game (E1-E6), test-time compute, token auctions, token caps",
        "",
        f"Device: {device}; JAX solvers in {cfg['dtype']}, HiGHS and re-evaluations in float64. "
        f"Markets from `random_market` ({cfg['n_models']} models, {cfg['n_customers']} customers, "
        f"budgets for half the customers); sellers price with gradient IMP ({solver.steps} steps, "
        f"{solver.restarts} restarts, polish {'on' if solver.polish else 'off'}); scale {cfg['scale']}. "
        "Our formulation of the LMaaS game (see the README), not the paper's equations. "
        "Every table below is also in this folder as CSV and Parquet.",
        "",
        "Time per experiment (s, compile included): "
        + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in seconds.items())
        + ".",
        "",
        "## E1 Robustness: what robust planning is worth to customers",
        "",
        f"{len(main)} markets: Gamma in {list(cfg['gammas'])} x deviation in {list(cfg['deviations'])} x "
        f"{cfg['seeds'] * cfg['scale']} seeds, capability gap 0.4. At the seller's equilibrium prices "
        "(gradient IMP against RSR customers) every customer plans by RSR, by nominal planning (plan for "
        "the nominal scenario, then face the scenario set), by the 'most accurate model' rule or by the "
        "'cheapest model' rule (each renting its model for the nominal-optimal duration). Gain = 100 "
        "(RSR - rule) / |rule| of the customers' total worst-case profit over the scenario set.",
        "",
        f"- **Over nominal planning: maximum gain {nom['max']:.2f}%** (Gamma = {nom['where'].get('gamma')}, "
        f"deviation = {nom['where'].get('deviation')}), **median {nom['median']:.2f}%** over the grid "
        f"points with Gamma >= 1. Per market: maximum {nom['market_max']:.2f}% "
        f"({_where(nom['market_where'])}), median {nom['market_median']:.2f}%. "
        f"The LMaaS paper reports gains of up to {PAPER_GAIN}% over its baseline "
        "(its baseline and markets are not ours, so the numbers are not directly comparable).",
    ]
    for rule in ("most_accurate", "cheapest"):
        s = summary[rule]
        lines.append(
            f"- Over the {rule.replace('_', ' ')} rule: maximum {s['max']:.1f}% "
            f"(Gamma = {s['where'].get('gamma')}, deviation = {s['where'].get('deviation')}), "
            f"median {s['median']:.1f}%."
        )
    avg = e1[e1["gamma"] >= 1]["gain_mean_nominal"]
    lines += [
        f"- The price of robustness: RSR's scenario-average profit differs from nominal planning's by "
        f"{avg.min():.1f}% to {avg.max():.1f}% (median {avg.median():.1f}%).",
        "",
        "![E1](e1.png)",
        "",
        _markdown(
            e1[
                [
                    "gamma",
                    "deviation",
                    "markets",
                    "customer_worst_rsr",
                    "customer_worst_nominal",
                    "gain_worst_nominal",
                    "gain_worst_most_accurate",
                    "gain_worst_cheapest",
                    "gain_mean_nominal",
                ]
            ]
        ),
        "",
        "## E2 Seller: gradient IMP against the exact optimum",
        "",
        "Budget-free markets (Gamma = 2), where the HiGHS MILP is exact; IMP batched over the markets "
        "of a size (compile apart), HiGHS one market at a time.",
        "",
        _markdown(
            e2.groupby(["M", "N"], as_index=False).agg(
                markets=("fraction", "size"),
                mean_fraction=("fraction", "mean"),
                min_fraction=("fraction", "min"),
                milp_optimal=("milp_optimal", "sum"),
                imp_ms=("imp_ms", "mean"),
                milp_ms=("milp_ms", "mean"),
                time_ratio=("time_ratio", "median"),
            ),
            digits=4,
        ),
        "",
        "![E2](e2.png)",
        "",
        "## E3 Sensitivity: the equilibrium versus Gamma, deviation and capability gap",
        "",
        f"Means over seeds; the other parameters at Gamma = {base_gamma}, deviation = {base_dev}, gap = 0.4.",
        "",
        "![E3](e3.png)",
        "",
    ]
    for by, t in e3.items():
        cols = [c for c in t.columns if not (c.startswith(("price_", "share_")) and t[c].isna().all())]
        lines += [f"By {by}:", "", _markdown(t[cols]), ""]
    final = steps.attrs.get("final_profit", float("nan"))
    best = steps["best_exact_profit"]
    lines += [
        "## E4 Convergence",
        "",
        f"Gradient IMP on the default market (seed 0): best exact profit {best.iloc[0]:,.0f} $ "
        f"after step 1, {best.iloc[-1]:,.0f} $ after step {len(steps)}, "
        f"{final:,.0f} $ after the classic-IMP polish. C&CG at IMP's prices, for the "
        f"{ccg['customer'].nunique()} customers (of the first 40) that take the most iterations: "
        + "; ".join(
            f"customer {i}: {len(g)} iterations, "
            f"final gap {g['upper'].iloc[-1] - g['lower'].iloc[-1]:.2g} $, "
            f"|C&CG - RSR| = {abs(g['lower'].iloc[-1] - g['rsr_value'].iloc[0]):.2g} $"
            for i, g in ccg.groupby("customer")
        )
        + ".",
        "",
        "![E4](e4.png)",
        "",
        "## E5 Scale",
        "",
        f"Markets priced per second by batched gradient IMP on {device} and by HiGHS (one market at a "
        "time), same budget-free markets; median of 2 runs, compile apart.",
        "",
        _markdown(e5),
        "",
        "![E5](e5.png)",
        "",
    ]
    return "\n".join(lines)


def _e6_section(e6: pd.DataFrame, summary: pd.DataFrame, base_gamma, base_dev) -> str:
    markets = e6["market"].nunique()
    stable = e6.drop_duplicates("market")["stable"].sum()
    top = {side: summary.loc[summary[f"{side}_mean"].abs().idxmax()] for side in ("seller", "customers")}
    split = summary[np.sign(summary["seller_mean"]) * np.sign(summary["customers_mean"]) < 0]
    table = summary.rename(
        columns={c: c.replace("_", " ") for c in summary.columns if c.startswith(("seller_", "customers_"))}
    )
    lines = [
        "## E6 Sensitivities: what each model attribute is worth at the equilibrium",
        "",
        f"The {markets} markets of E1 at Gamma = {base_gamma}, deviation = {base_dev} "
        f"({stable} of them with a locally stable pin pattern, where the derivative is the "
        "equilibrium's). The seller's exact profit and the customers' total worst-case surplus are "
        "differentiated through the equilibrium prices (`lj.sensitivities`: the implicit derivative of "
        "the pinned prices, the seller re-pricing every model); shown as the first-order change when "
        "one attribute of one model rises by 1% of its value ($). Serving cost reaches the customers "
        "only through the prices, and customer-pinned prices do not depend on it: its customer bar is 0.",
        "",
    ]
    for side, name in (("seller", "the seller"), ("customers", "the customers")):
        r = top[side]
        lines.append(
            f"- Largest effect on {name}: +1% {r['attribute'].replace('_', ' ')} of model {int(r['model'])}, "
            f"{r[f'{side}_mean']:+,.1f} $ on average (from {r[f'{side}_min']:+,.1f} to "
            f"{r[f'{side}_max']:+,.1f} $ over the markets)."
        )
    if len(split):
        pairs = ", ".join(f"{r.attribute.replace('_', ' ')} of model {r.model}" for r in split.itertuples())
        lines.append(f"- The two sides disagree in sign (on average) for: {pairs}.")
    lines += ["", "![E6](e6.png)", "", _markdown(table), ""]
    return "\n".join(lines)


def _where(d: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in d.items()) if d else "n/a"
