"""`lmaas-jax run`: the four games end to end (LMaaS E1-E7, test-time compute, token auctions, token caps),
written as tables, figures and one `report.md`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from ._config import ConfigError, check_writable
from ._output import write_table
from ._sweep import Solver, SweepGrid, check_manifest, solver_fingerprint, sweep
from .experiments import _figures, _tables
from .experiments._section import e6_section, lmaas_section


def progress_bar(enabled: bool):
    from tqdm.auto import tqdm

    return lambda it, desc="": tqdm(it, desc=desc, disable=not enabled, leave=False)


_MANIFEST = "run-manifest.json"


def _sizes(cfg: dict[str, Any]) -> list[tuple[int, int]]:
    """Every market size (M, N) the run prices with IMP."""
    return [(cfg["n_models"], cfg["n_customers"]), *cfg["e2_sizes"], cfg["e5_size"]]


def _open_folder(out: Path, cfg: dict[str, Any], solver: Solver, seed: int) -> None:
    """Use `out` for this run: create it, resume this run's own folder, refuse anything else."""
    from .._version import __version__

    manifest = {
        "run": {k: v for k, v in cfg.items() if k != "out"},
        "solver": solver_fingerprint(solver, seed, _sizes(cfg)),
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
    write_table(table, out, name)
    seconds[label] = time.perf_counter() - start
    return table


def _closest(values, target):
    return min(values, key=lambda v: (abs(v - target), v))


def run_experiments(
    cfg: dict[str, Any], solver: Solver = None, *, seed: int = 1, progress: bool = True
) -> Path:
    """Run the main job with the `[run]` settings `cfg`; write to `cfg["out"]`: the LMaaS game's
    experiments E1-E5, E6 (sensitivities) and E7 (competition between sellers), then the test-time
    compute game, token auctions and token caps.

    Writes `report.md` (what was run, the key numbers, the figures inline), `e1.png` ... `e7.png`,
    `ttc_inefficiency.png`, `token_auction.png`, `token_cap.png`, and every table as `.csv` and
    `.parquet`. Turns on `jax_enable_x64` (the HiGHS MILP and the
    float64 re-evaluations need it); the JAX solvers run in `cfg["dtype"]`.

    **Folders.** `cfg["out"]` must be new, empty, or an earlier run's folder: `run-manifest.json`
    there fingerprints the `[run]` settings, the solver (as in [`lmaas_jax.sweep`][]), the seed and
    the library version. A folder holding anything else is refused, so no report mixes two runs; a
    run with different settings is refused naming each difference; the same run again resumes: the
    E1/E3/E6 sweeps from their finished chunks (`sweeps/`), E2 and E5 from their finished tables
    (E4 and E7, a minute at most, are recomputed), and the report and figures are written anew.

    **Arguments:**

    - `cfg`: the `[run]` section of a configuration, e.g. `lmaas_jax.load_config(path, ("run",
      "solver"))["run"]` or the defaults of `lmaas_jax.product._config.defaults("run")`.
    - `solver`: what every experiment prices with, as in [`lmaas_jax.sweep`][]: a
      [`lmaas_jax.GradientIMP`][], a function of the market size, or by default
      [`lmaas_jax.GradientIMP.for_size`][].
    - `seed`: IMP's seed (`[solver] seed`): a market drawn with key k is priced with key
      `jax.random.fold_in(k, seed)`.
    - `progress`: progress bars on stderr.

    **Returns:**

    The path of `report.md`.
    """
    out = Path(cfg["out"])
    _open_folder(out, cfg, solver, seed)
    jax.config.update("jax_enable_x64", True)
    bar = progress_bar(progress)
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
    write_table(main, out, "markets_gamma_deviation")
    write_table(gaps, out, "markets_capability_gap")
    e1 = _tables.e1_robustness(main)
    summary = _tables.e1_summary(e1, main)
    write_table(e1, out, "e1_robustness")
    e3 = {
        "gamma": _tables.e3_sensitivity(main, "gamma", {"deviation": base_dev}),
        "deviation": _tables.e3_sensitivity(main, "deviation", {"gamma": base_gamma}),
        "capability_gap": _tables.e3_sensitivity(gaps, "capability_gap", {}),
    }
    for by, t in e3.items():
        write_table(t, out, f"e3_by_{by}")
    base = main[(main["gamma"] == base_gamma) & np.isclose(main["deviation"], base_dev)]
    e6 = _tables.e6_sensitivities(base, dtype)
    e6_summary = _tables.e6_summary(e6)
    write_table(e6, out, "e6_sensitivities")
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
    write_table(steps, out, "e4_imp_steps")
    write_table(ccg, out, "e4_ccg_bounds")
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

    from .experiments._competition import e7_report, e7_section

    start = time.perf_counter()
    e7 = e7_report(out, m, n, cfg["e7_markets"] * scale, dtype=dtype, seed=seed, progress=bar)
    seconds["E7"] = time.perf_counter() - start

    # The three sibling games, a few seconds each: recomputed on every run, like E4.
    from .experiments._token_auction import token_auction_report, token_auction_section
    from .experiments._token_cap import token_cap_report, token_cap_section
    from .experiments._ttc import ttc_report, ttc_section

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
        lmaas_section(cfg, solver, main, e1, summary, e2, e3, steps, ccg, e5, seconds, base_gamma, base_dev)
        + e6_section(e6, e6_summary, base_gamma, base_dev)
        + "\n"
        + e7_section(e7)
        + "\n"
        + games
    )
    return path
