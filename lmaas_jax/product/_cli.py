"""The `lmaas-jax` command (also `python -m lmaas_jax`): run, solve and sweep."""

from __future__ import annotations

import errno
import functools
import json
import time
from pathlib import Path

import click

from .._checks import failed_checks_give_nan
from ._config import SCHEMA, ConfigError, check_config, check_writable, describe, gradient_imp, load_config

_STORAGE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _friendly(fn):
    """Turn configuration errors, and storage failures met while writing results (full disk, quota,
    read-only or forbidden folder), into a one-line message and exit status 1; bugs keep their
    traceback. Results are written atomically, so what was finished before a failure is kept."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:
            if e.errno not in _STORAGE:
                raise
            where = f" ({e.filename})" if e.filename else ""
            raise click.ClickException(
                f"cannot write results{where}: {e.strerror or e}. Finished results are kept; free space "
                "or fix the folder, then run the same command again to resume."
            ) from None

    return wrapper


def _config(path, sections):
    return check_config({}, sections) if path is None else load_config(path, sections)


def default_cache_dir() -> Path:
    """Where the command keeps JAX's compiled programs: `$XDG_CACHE_HOME/lmaas_jax/jax-J-L` (by
    default under `~/.cache`), J and L the versions of JAX and of this package.

    One folder per pair of versions: programs compiled by other versions are never read again,
    and JAX's bounded cache looks at every entry of its folder each time it writes one, so a folder
    that kept every version's programs would make each write slower release after release.
    """
    import os

    import jax

    from .._version import __version__

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmaas_jax" / f"jax-{jax.__version__}-{__version__}"


CACHE_MAX_BYTES = 4 * 2**30


def _date_unbounded_entries(folder: Path) -> None:
    """Give every entry of JAX's cache in `folder` that lacks one its last-use file (`KEY-atime`
    beside `KEY-cache`, as JAX's bounded cache writes them), dated by the entry's last write."""
    if not folder.is_dir():
        return
    for entry in folder.glob("*-cache"):
        used = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        try:
            if not used.exists():
                used.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, "little"))
        except OSError:  # another process evicted or wrote it meanwhile: it has its own
            continue


def use_compilation_cache(folder: Path) -> None:
    """Keep every program JAX compiles in `folder` (JAX's persistent compilation cache), so the same
    command compiles once and reads its programs back on later runs.

    The cache is bounded (`CACHE_MAX_BYTES`, least recently used programs evicted first), which is
    also what makes JAX lock the folder while it reads or writes an entry: without a bound it
    writes entries in place, unlocked, and a second process sharing the folder (two sweeps at once,
    the hosts of one sweep) can read one half-written and crash in deserialising it. A bounded
    cache keeps each entry's last use in a file beside it; entries an unbounded cache wrote into
    `folder` (an earlier version of this command) get one here, dated by their last write, or JAX
    would fail to write any new entry.
    """
    import jax

    _date_unbounded_entries(Path(folder))
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="lmaas_jax")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of JAX's persistent compilation cache [default: $XDG_CACHE_HOME/lmaas_jax/jax-VERSIONS].",
)
@click.option("--no-cache", is_flag=True, help="Compile everything afresh; keep nothing compiled.")
def main(cache_dir, no_cache):
    """GPU-accelerated solvers for large-model-as-a-service pricing games.

    Start with `lmaas-jax run` (the four games on the built-in default configuration). Every
    subcommand has --help; CONFIG files are TOML, checked before any work starts. Compiled
    programs are kept in a cache folder (see --cache-dir), so a second run of the same command
    skips most of its compilation.
    """
    import jax

    if no_cache:
        jax.config.update("jax_compilation_cache_dir", None)
    elif cache_dir is not None or not jax.config.jax_compilation_cache_dir:
        # A folder set before (JAX_COMPILATION_CACHE_DIR, a test run's own) is kept unless named.
        use_compilation_cache(cache_dir or default_cache_dir())
    # Every command checks its configuration in Python before it compiles; the checks left in the
    # compiled programs then give NaN rather than raise, which would compile a host callback into
    # each program, and JAX's cache keeps no program with one (it kept none of imp's before).
    click.get_current_context().with_resource(failed_checks_give_nan())


@main.command(
    epilog="CONFIG keys (all optional) and their defaults:\n\n\b\n" + describe(("run", "solver")),
)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="TOML file with [run], [solver]."
)
@click.option(
    "--scale", type=int, help="Multiply seeds, market counts and E5 batch sizes (e.g. 16 on a GPU)."
)
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default lmaas-out).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@_friendly
def run(config_path, scale, out, progress):
    """Run the four games (LMaaS E1-E7, TTC, token auctions, token caps); write report.md, figures
    (PNG) and tables (CSV, Parquet).

    With no options: the built-in default configuration, about 5 minutes on a 2-core CPU. Output
    goes to ./lmaas-out/.
    """
    cfg = _config(config_path, ("run", "solver"))
    if scale is not None:
        cfg["run"]["scale"] = _check("run", "scale", scale)
    if out is not None:
        cfg["run"]["out"] = out
    from ._run import run_experiments
    from .experiments._section import PAPER_GAIN

    start = time.perf_counter()
    games = "the four games (LMaaS E1-E7, TTC, token auctions, token caps)"
    click.echo(f"Running {games} into {cfg['run']['out']}/ (scale {cfg['run']['scale']}) ...", err=True)
    path = run_experiments(
        cfg["run"], gradient_imp(cfg["solver"]), seed=cfg["solver"]["seed"], progress=progress
    )
    summary = json.loads((path.parent / "summary.json").read_text())["e1"]["nominal"]
    click.echo(
        f"E1: RSR adds up to {summary['abs_max']:,.0f} $ of worst-case profit per market over nominal "
        f"planning (median {summary['abs_median']:,.0f} $; in percent: max {summary['max']:.2f}%, "
        f"median {summary['median']:.2f}%; the LMaaS paper: up to {PAPER_GAIN}%)."
    )
    seconds = time.perf_counter() - start
    click.echo(f"Wrote {path} and its figures (e1..e7, ttc, token auction, token caps) in {seconds:.0f} s.")


def _check(section, key, value):
    return SCHEMA[section][key].check(f"--{key}", value)


@main.command(
    epilog="CONFIG keys (all optional) and their defaults:\n\n\b\n" + describe(("market", "solver"))
)
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "--compare", is_flag=True, help="Also price with classic IMP, grid search and (budget-free) HiGHS."
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
@_friendly
def solve(config_path, compare, json_path):
    """Price one market from a TOML CONFIG; print prices, profits and market shares."""
    cfg = _config(config_path, ("market", "solver"))
    if json_path:  # before the solve, not after it
        check_writable("--json", Path(json_path).parent)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ..lmaas.pricing._classic_imp import classic_imp
    from ..lmaas.pricing._grid import grid_search
    from ..lmaas.pricing._imp import imp
    from ..lmaas.robust._planning import plan
    from ..lmaas.scenarios._generator import random_market

    mk = cfg["market"]
    if mk["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    market = random_market(
        jax.random.PRNGKey(mk["seed"]),
        mk["n_models"],
        mk["n_customers"],
        gamma=mk["gamma"],
        deviation=mk["deviation"],
        capability_gap=mk["capability_gap"],
        budget_share=mk["budget_share"],
        dtype=mk["dtype"],
    )
    solver = gradient_imp(cfg["solver"])(market.n_models, market.n_customers)
    solvers = {"gradient IMP": lambda: imp(market, solver, key=jax.random.PRNGKey(cfg["solver"]["seed"]))}
    if compare:
        solvers["classic IMP"] = lambda: classic_imp(market)
        if market.n_models <= 4:
            g = {1: 400, 2: 120, 3: 30, 4: 14}[market.n_models]
            solvers[f"grid {g}^{market.n_models}"] = lambda: grid_search(market, g)
        if mk["budget_share"] == 0.0:
            from ..lmaas.reference._milp import milp_pricing

            jax.config.update("jax_enable_x64", True)
            solvers["HiGHS MILP (exact)"] = lambda: milp_pricing(market.astype(jnp.float64))
    click.echo(
        f"Market: {mk['n_models']} models, {mk['n_customers']} customers, Gamma = {mk['gamma']}, "
        f"deviation = {mk['deviation']}, seed {mk['seed']}, {mk['dtype']}"
    )
    header = (
        f"{'solver':20s} {'seller $':>12s} {'customers $':>12s} {'compile s':>9s} {'solve s':>7s}  "
        "prices $/h  |  shares (none, 1..M)"
    )
    click.echo(header)
    results = {}
    for name, fn in solvers.items():
        start = time.perf_counter()
        sol = jax.block_until_ready(fn())
        first = time.perf_counter() - start
        if name.startswith("HiGHS"):  # no compilation: its own solve time
            compile_s, seconds = 0.0, first
        else:  # the first call compiles (or reads the cache) and solves; the second only solves
            start = time.perf_counter()
            sol = jax.block_until_ready(fn())
            seconds = time.perf_counter() - start
            compile_s = max(first - seconds, 0.0)
        choice = np.asarray(sol.response.choice)
        worst = float(jnp.sum(plan(market, jnp.asarray(sol.prices, market.dtype)).worst_profit))
        r = results[name] = {
            "seller_profit": float(sol.profit),
            "customer_worst_profit": worst,
            "prices": [float(p) for p in np.asarray(sol.prices)],
            "shares": [float(np.mean(choice == j)) for j in range(market.n_models + 1)],
            "compile_seconds": compile_s,
            "solve_seconds": seconds,
        }
        prices = " ".join(f"{p:.3f}" for p in r["prices"])
        shares = " ".join(f"{s:.2f}" for s in r["shares"])
        click.echo(
            f"{name:20s} {r['seller_profit']:12.2f} {worst:12.2f} {compile_s:9.1f} {seconds:7.2f}  "
            f"{prices}  |  {shares}"
        )
    if json_path:
        Path(json_path).write_text(json.dumps({"config": cfg, "results": results}, indent=2))
        click.echo(f"Wrote {json_path}")


@main.command(epilog="CONFIG keys (all optional) and their defaults:\n\n\b\n" + describe(("sweep", "solver")))
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (overrides sweep.out).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@_friendly
def sweep(config_path, out, progress):
    """Solve a grid of market families from a TOML CONFIG in sharded batches; results to Parquet.

    Each finished chunk is saved at once; rerunning the same command resumes an interrupted sweep.
    """
    cfg = _config(config_path, ("sweep", "solver"))
    sw = cfg["sweep"]
    folder = check_writable("--out" if out else "sweep.out", Path(out or sw["out"]))
    import jax

    from ._sweep import SweepGrid, sweep as run_sweep

    if sw["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    grid = SweepGrid(
        **{
            k: sw[k]
            for k in (
                "n_models",
                "n_customers",
                "gamma",
                "deviation",
                "capability_gap",
                "budget_share",
                "seeds",
            )
        }
    )
    click.echo(
        f"Sweep of {len(grid.markets())} markets on {jax.device_count()} device(s) into {folder}/", err=True
    )
    table = run_sweep(
        grid,
        folder,
        solver=gradient_imp(cfg["solver"]),
        chunk_size=sw["chunk_size"],
        dtype=sw["dtype"],
        progress=progress,
        sensitivities=sw["sensitivities"],
        seed=cfg["solver"]["seed"],
    )
    keys = ["n_models", "n_customers", "gamma", "deviation", "capability_gap", "budget_share"]
    summary = table.groupby(keys, as_index=False)[["profit", "share_none", "customer_worst_rsr"]].mean()
    click.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"Wrote {folder / 'results.parquet'} ({len(table)} markets).")


@main.command("ttc")
@click.option("--out", type=click.Path(file_okay=False), default="lmaas-out/ttc", show_default=True)
@click.option(
    "--sweep-points",
    type=click.IntRange(2, 10_000),
    default=100,
    show_default=True,
    help="Log-spaced beta values in [1, 1e6] for the inefficiency figure.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def ttc_command(out, sweep_points, progress):
    """Test-time compute: pay-per-token market versus the reverse second-price auction.

    All nine bundled markets (GSM8K, AIME, GPQA x majority, best-of-N, effort) at beta in
    {200, 1e3, 1e5}, and the inefficiency-versus-beta figure.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    from ._run import progress_bar
    from .experiments._ttc import ttc_report

    table = ttc_report(out, n_sweep=sweep_points, progress=progress_bar(progress))
    cols = [
        "benchmark",
        "method",
        "beta",
        "first_best",
        "market_welfare",
        "inefficiency_pct",
        "auction_winner",
        "auction_user_price",
        "auction_welfare",
    ]
    click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"Wrote {out}/ttc_table.csv, ttc_table.parquet and ttc_inefficiency.png")


@main.command("token-cap")
@click.option("--out", type=click.Path(file_okay=False), default="lmaas-out/token-cap", show_default=True)
@click.option("--lo", type=float, default=0.5, show_default=True, help="Lowest impatience r.")
@click.option("--hi", type=float, default=2.0, show_default=True, help="Highest impatience r.")
@click.option(
    "--rate", type=float, default=1.0, show_default=True, help="Resolution rate of the aligned model."
)
@_friendly
def token_cap(out, lo, hi, rate):
    """Token caps as the optimal screening menu: revenue comparison and figure (r ~ U[lo, hi])."""
    if not 0 <= lo < hi:
        raise ConfigError(f"--lo = {lo!r}, --hi = {hi!r}: need 0 <= lo < hi.")
    if not rate > 0:
        raise ConfigError(f"--rate = {rate!r}: must be > 0.")
    import jax

    jax.config.update("jax_enable_x64", True)
    from .experiments._token_cap import token_cap_report

    table = token_cap_report(out, lo, hi, rate)
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"Wrote {out}/token_cap.png, token_cap.csv and token_cap.parquet")


@main.command("token-auction")
@click.option("--out", type=click.Path(file_okay=False), default="lmaas-out/token-auction", show_default=True)
@click.option("--words", type=click.IntRange(1, 10_000), default=12, show_default=True, help="Tokens per ad.")
@click.option(
    "--draws", type=click.IntRange(10, 10_000_000), default=20000, show_default=True, help="Monte Carlo draws"
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Random seed.")
@_friendly
def token_auction(out, words, draws, seed):
    """Token auctions: two advertisers' LLMs bid to steer one ad; payments and monotonicity."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from .experiments._token_auction import token_auction_report

    tables = token_auction_report(out, words=words, draws=draws, key=jax.random.PRNGKey(seed))
    click.echo(tables["texts"].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    names = "token_auction_{texts,payments,monotonicity}.csv/.parquet"
    click.echo(f"Wrote {out}/token_auction.png and {names}")


if __name__ == "__main__":
    main()
