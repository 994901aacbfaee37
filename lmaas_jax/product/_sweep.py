"""Scenario sweeps: grids of random markets priced in sharded batches, saved chunk by chunk.

[`lmaas_jax.sweep`][] draws every market of a [`lmaas_jax.SweepGrid`][], prices it with gradient
IMP and records the seller's and the customers' side of the equilibrium (one row per market). The
batch axis is sharded over every device JAX sees (`jax.sharding.Mesh` + `NamedSharding`); each
finished chunk is written atomically, so an interrupted sweep resumes where it stopped. Pandas and
PyArrow are imported here only, never by the JAX core.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..lmaas.pricing._imp import GradientIMP, imp
from ..lmaas.pricing._sensitivity import sensitivities as equilibrium_sensitivities
from ..lmaas.robust._planning import RULES, plan
from ..lmaas.scenarios._generator import random_market
from ._config import SCHEMA, ConfigError
from ._mappings import release_compiled_programs

_PARAMS = ("gamma", "deviation", "capability_gap", "budget_share")
MAX_MARKETS = 10_000_000  # markets per sweep: each is listed up front (about 1 KB of Python)
SENSITIVITY_FIELDS = ("accuracy", "throughput", "payload", "serving_cost")  # recorded per model


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """A grid of market families: the Cartesian product of the fields, times `seeds` seeds.

    Each field takes one value or a sequence; every combination is drawn with seeds 0..seeds-1 by
    [`lmaas_jax.random_market`][] (the same seed draws the same customers whatever Gamma, deviation
    or gap, so neighbouring grid points differ only in the parameter swept).

    **Fields:** `n_models`, `n_customers`, `gamma`, `deviation`, `capability_gap`, `budget_share`
    (as in [`lmaas_jax.random_market`][]) and `seeds` (a count).
    """

    n_models: Any = (4,)
    n_customers: Any = (100,)
    gamma: Any = (2,)
    deviation: Any = (0.2,)
    capability_gap: Any = (0.4,)
    budget_share: Any = (0.5,)
    seeds: int = 4

    def __post_init__(self):
        schema = SCHEMA["sweep"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple | np.ndarray):
                value = [v.item() if isinstance(v, np.generic) else v for v in value]
            object.__setattr__(self, f.name, schema[f.name].check(f"SweepGrid.{f.name}", value))
        size = self.seeds * math.prod(len(getattr(self, f.name)) for f in dataclasses.fields(self)[:-1])
        if size > MAX_MARKETS:
            raise ConfigError(
                f"SweepGrid holds {size:,} markets (seeds = {self.seeds:,} per grid point); a sweep lists "
                f"every market up front, about 1 KB each ({size / 1e6:,.0f} GB here), so at most "
                f"{MAX_MARKETS:,}: split it into several sweeps."
            )

    def markets(self) -> list[dict[str, Any]]:
        """Every market of the grid, in a fixed order: one dict of parameters and `seed` each."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "seeds"]
        axes = [getattr(self, n) for n in names] + [range(self.seeds)]
        return [dict(zip([*names, "seed"], combo, strict=True)) for combo in itertools.product(*axes)]


def sweep_market(row, dtype: str = "float32"):
    """The market a sweep row was priced on: [`lmaas_jax.random_market`][] with the row's seed,
    sizes and parameters (any mapping with `seed`, `n_models`, `n_customers`, `gamma`, `deviation`,
    `capability_gap`, `budget_share`, such as a row of [`lmaas_jax.sweep`][]'s table)."""
    return random_market(
        jax.random.PRNGKey(row["seed"]),
        int(row["n_models"]),
        int(row["n_customers"]),
        **{p: row[p] for p in _PARAMS},
        dtype=dtype,
    )


def _market_outcome(
    seed,
    gamma,
    deviation,
    capability_gap,
    budget_share,
    *,
    n_models,
    n_customers,
    solver,
    dtype,
    sensitivities,
    solver_seed,
    tie_tol,
):
    """Draw one market, price it with IMP, and summarise both sides of the equilibrium."""
    key = jax.random.PRNGKey(seed)
    params = dict(gamma=gamma, deviation=deviation, capability_gap=capability_gap, budget_share=budget_share)
    market = sweep_market(dict(seed=seed, n_models=n_models, n_customers=n_customers, **params), dtype)
    price = functools.partial(imp, solver=solver, key=jax.random.fold_in(key, solver_seed), tie_tol=tie_tol)
    out = {}
    if sensitivities:
        sens = equilibrium_sensitivities(market, price)
        sol = sens.solution
        out["pattern_stable"] = sens.stable
        for side in ("profit", "customer_worst"):
            grad = getattr(sens, f"d_{side}").models
            for field in SENSITIVITY_FIELDS:
                out[f"d_{side}_{field}"] = getattr(grad, field)
    else:
        sol = price(market)
    out |= {
        "profit": sol.profit,
        "prices": sol.prices,
        "shares": jnp.mean(jax.nn.one_hot(sol.response.choice, n_models + 1, dtype=market.dtype), axis=0),
        "rented_hours": jnp.sum(sol.response.duration),
    }
    for rule in RULES:
        outcome = plan(market, sol.prices, rule, tie_tol=tie_tol)
        out[f"customer_worst_{rule}"] = jnp.sum(outcome.worst_profit)
        out[f"customer_mean_{rule}"] = jnp.sum(outcome.mean_profit)
    return out


Solver = GradientIMP | Callable[[int, int], GradientIMP] | None


def settings_for(solver: Solver, n_models: int, n_customers: int) -> GradientIMP:
    """The settings that price an M x N market: `solver` itself, `solver(M, N)` if it is a function of
    the size, or by default [`lmaas_jax.GradientIMP.for_size`][]."""
    if solver is None:
        return GradientIMP.for_size(n_models, n_customers)
    if isinstance(solver, GradientIMP):
        return solver
    if callable(solver):
        settings = solver(n_models, n_customers)
        if isinstance(settings, GradientIMP):
            return settings
    raise TypeError(
        "solver must be a GradientIMP, a function (n_models, n_customers) -> GradientIMP, or None; "
        f"got {solver!r}."
    )


@functools.lru_cache(maxsize=16)
def _batched(
    n_models: int, n_customers: int, solver: GradientIMP, dtype: str, sens: bool, seed: int, tie_tol, mesh
):
    sharding = NamedSharding(mesh, PartitionSpec("markets"))
    one = functools.partial(
        _market_outcome,
        n_models=n_models,
        n_customers=n_customers,
        solver=solver,
        dtype=dtype,
        sensitivities=sens,
        solver_seed=seed,
        tie_tol=tie_tol,
    )
    return jax.jit(jax.vmap(one), in_shardings=sharding, out_shardings=sharding), sharding


def _solve_chunk(
    rows: list[dict[str, Any]], width: int, solver, dtype, sensitivities, seed, tie_tol, mesh
) -> dict[str, np.ndarray]:
    """Solve one chunk of markets sharing (n_models, n_customers), sharded over `mesh`.

    The chunk is padded to `width` markets (repeating its last one), so every chunk of a group
    has one shape and compiles once.
    """
    m, n = rows[0]["n_models"], rows[0]["n_customers"]
    fn, sharding = _batched(m, n, settings_for(solver, m, n), dtype, sensitivities, seed, tie_tol, mesh)
    size = -(-width // mesh.size) * mesh.size  # and to a multiple of the device count
    padded = rows + [rows[-1]] * (size - len(rows))
    float_dtype = np.dtype(dtype)
    columns = [np.asarray([r["seed"] for r in padded], np.uint32)]
    columns.append(np.asarray([r["gamma"] for r in padded], np.int32))
    columns += [np.asarray([r[p] for r in padded], float_dtype) for p in _PARAMS[1:]]
    args = [jax.make_array_from_callback(c.shape, sharding, lambda idx, c=c: c[idx]) for c in columns]
    out = fn(*args)
    if jax.process_count() > 1:
        out = multihost_utils.process_allgather(out, tiled=True)
    return {k: np.asarray(v)[: len(rows)] for k, v in jax.device_get(out).items()}


def _per_model(table, prefix: str, values, max_models: int) -> None:
    """Columns `prefix_1` ... `prefix_<max_models>` (float64) from `values` (rows, M), NaN beyond M."""
    values = np.asarray(values, np.float64)
    for j in range(max_models):
        table[f"{prefix}_{j + 1}"] = values[:, j] if j < values.shape[1] else np.nan


def _table(rows, outcome, max_models):
    import pandas as pd

    table = pd.DataFrame(rows)
    table["profit"] = outcome["profit"].astype(np.float64)
    _per_model(table, "price", outcome["prices"], max_models)
    table["share_none"] = outcome["shares"][:, 0].astype(np.float64)
    _per_model(table, "share", outcome["shares"][:, 1:], max_models)
    table["rented_hours"] = outcome["rented_hours"].astype(np.float64)
    for rule in RULES:
        for kind in ("worst", "mean"):
            table[f"customer_{kind}_{rule}"] = outcome[f"customer_{kind}_{rule}"].astype(np.float64)
    if "pattern_stable" in outcome:
        table["pattern_stable"] = outcome["pattern_stable"].astype(bool)
        for side in ("profit", "customer_worst"):
            for field in SENSITIVITY_FIELDS:
                _per_model(table, f"d_{side}_{field}", outcome[f"d_{side}_{field}"], max_models)
    return table


def write_atomic(table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)  # atomic on POSIX: a chunk file is either whole or absent


def solver_fingerprint(
    solver: Solver, seed: int, sizes: Iterable[tuple[int, int]], tie_tol: float | None = None
) -> dict[str, Any]:
    """Every setting that changes a result, as JSON-ready values: the settings that price each market
    size `(M, N)` in `sizes` ([`lmaas_jax.GradientIMP.as_dict`][]), IMP's `seed` and `tie_tol`."""
    settings = {f"{m}x{n}": settings_for(solver, m, n).as_dict() for m, n in sorted(set(sizes))}
    return {"settings": settings, "seed": seed, "tie_tol": tie_tol}


def _manifest(grid, solver, chunk_size, dtype, sensitivities, seed, tie_tol) -> dict[str, Any]:
    from .._version import __version__

    sizes = itertools.product(grid.n_models, grid.n_customers)
    return {
        "grid": dataclasses.asdict(grid),
        "solver": solver_fingerprint(solver, seed, sizes, tie_tol),
        "chunk_size": chunk_size,
        "dtype": dtype,
        "sensitivities": sensitivities,
        "lmaas_jax": __version__,
    }


def _differences(saved: Any, now: Any, where: str = "") -> list[str]:
    """Where two manifests differ, as 'key: saved -> now' lines."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now), key=str):
            out += _differences(saved.get(k, "(absent)"), now.get(k, "(absent)"), f"{where}{k}.")
        return out
    return [] if saved == now else [f"{where.rstrip('.')}: {saved!r} -> {now!r}"]


def check_manifest(folder: Path, manifest: dict[str, Any], name: str = "manifest.json", what: str = "sweep"):
    """Write `folder/name`, or refuse a folder whose saved one differs, naming every difference."""
    path = folder / name
    if not path.exists():
        if jax.process_index() == 0:  # whole or absent, as other hosts may read it meanwhile
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, path)
        return
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{str(path)!r} is not readable JSON ({err}), so what is in {str(folder)!r} cannot be "
            f"matched to this {what}; use another folder or delete it."
        ) from None
    now = json.loads(json.dumps(manifest))
    if saved != now:
        diff = _differences(saved, now)
        raise ConfigError(
            f"{str(folder)!r} holds a different {what} (its {name} differs in "
            + "; ".join(diff[:6])
            + ("; ..." if len(diff) > 6 else "")
            + "); use another folder or delete it."
        )


def _read_chunk(path: Path, chunk: list[dict[str, Any]]):
    """A finished chunk's table, or None (with a warning) if it is unreadable or holds other rows."""
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for truncated or foreign files
        msg = f"{path} is unreadable ({type(err).__name__}); solving its markets again."
        warnings.warn(msg, stacklevel=3)
        return None
    keys = ["market", "seed", "n_models", "n_customers", *_PARAMS]
    want = pd.DataFrame(chunk)[keys]
    same = set(keys) <= set(table.columns) and len(table) == len(want)
    same = same and all(
        np.allclose(table[k].to_numpy(np.float64), want[k].to_numpy(np.float64), rtol=1e-6) for k in keys
    )
    if not same:
        warnings.warn(
            f"{path} does not hold the markets it should ({want['market'].iloc[0]} to "
            f"{want['market'].iloc[-1]}); solving them again.",
            stacklevel=3,
        )
        return None
    return table


def sweep(
    grid: SweepGrid,
    out: str | Path | None = None,
    *,
    solver: Solver = None,
    tie_tol: float | None = None,
    chunk_size: int = 64,
    dtype: str = "float32",
    devices: list | None = None,
    progress: bool = True,
    sensitivities: bool = False,
    seed: int = 1,
):
    """Price every market of `grid` with gradient IMP; one table row per market.

    Markets are grouped by size (`n_models`, `n_customers` are static shapes), cut into equal
    chunks of at most `chunk_size`, and each chunk is solved as one `jax.vmap` batch whose market
    axis is sharded over `devices` (a 1-D `Mesh` named `"markets"`,
    `NamedSharding(mesh, P("markets"))`; the chunk is padded to a multiple of the device count).
    Each market depends only on its own parameters and seed, so results do not depend on the
    chunking or the devices (up to floating-point rounding of reductions when the per-device batch
    changes).

    **Resuming.** With `out`, chunk k is written to `out/chunks/chunk-0000k.parquet` (to a temporary
    name, then renamed: a file is whole or absent) as soon as it is solved, next to `manifest.json`,
    which fingerprints everything that changes a result: the grid, the solver's settings for every
    market size of the grid (the optax optimiser by its factory and arguments), `seed`, `tie_tol`,
    chunk size, dtype, `sensitivities` and the library version. Calling `sweep` again with the same
    arguments reads finished chunks back and solves only the rest, so a run killed at any point
    loses only the chunk in flight and the final table is the same. A sweep whose manifest differs
    is refused, naming every difference; an unreadable `manifest.json` is refused too. Each chunk
    read back is checked against the markets it should hold (ids, seeds, sizes, parameters); a
    truncated, foreign or copied chunk is solved again, with a warning. At the end the whole table
    is written to `out/results.parquet`.

    **Several hosts.** Call `jax.distributed.initialize()` on every host first and run the same
    `sweep` call everywhere: `jax.devices()` then lists every host's devices, each host feeds its
    own shards (`jax.make_array_from_callback`), results are gathered with
    `multihost_utils.process_allgather`, and process 0 writes the files.

    **Arguments:**

    - `grid`: a [`lmaas_jax.SweepGrid`][].
    - `out`: folder for chunks and results; `None` keeps everything in memory.
    - `solver`: a [`lmaas_jax.GradientIMP`][] for every market, or a function `(n_models,
      n_customers) -> GradientIMP`; default [`lmaas_jax.GradientIMP.for_size`][], as `lj.imp` does.
    - `tie_tol`: as in [`lmaas_jax.rsr`][], for the pricing and the customers' plans; default by dtype.
    - `chunk_size`: markets per batch and per file.
    - `dtype`: `"float32"` or `"float64"` (needs `jax_enable_x64`).
    - `devices`: devices to shard over; default `jax.devices()`.
    - `progress`: show a progress bar over chunks (tqdm, on stderr).
    - `seed`: IMP's seed: the market drawn with key k is priced with `jax.random.fold_in(k, seed)`
      (the `[solver] seed` of a configuration).
    - `sensitivities`: also record the equilibrium's derivatives ([`lmaas_jax.sensitivities`][]):
      `pattern_stable`, and per model j and attribute a in `accuracy`, `throughput`, `payload`,
      `serving_cost` the columns `d_profit_a_j` (d seller profit / d a_j) and
      `d_customer_worst_a_j` (d customers' total worst-case surplus / d a_j), both with the seller
      re-pricing every model. Costs a second compilation and about one more solve's time.

    **Returns:**

    A `pandas.DataFrame`, one row per market in grid order: its parameters and seed, `profit`
    (seller, exact, $), `price_j` ($/h), `share_none` and `share_j` (fractions of customers),
    `rented_hours`, and for each customer rule r in `rsr`, `nominal`, `most_accurate`, `cheapest`
    (see [`lmaas_jax.plan`][]) the customers' total worst-case profit `customer_worst_r` and total
    scenario-average profit `customer_mean_r` ($).
    """
    import pandas as pd

    if not isinstance(grid, SweepGrid):
        raise TypeError(f"grid must be a SweepGrid; got {type(grid).__name__}.")
    settings_for(solver, 1, 1)  # a wrong solver is refused before any work
    chunk_size = SCHEMA["sweep"]["chunk_size"].check("chunk_size", chunk_size)
    dtype = SCHEMA["sweep"]["dtype"].check("dtype", dtype)
    sensitivities = SCHEMA["sweep"]["sensitivities"].check("sensitivities", sensitivities)
    if dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise ValueError("dtype = 'float64' needs jax.config.update('jax_enable_x64', True) first.")
    devices = jax.devices() if devices is None else list(devices)
    mesh = Mesh(np.asarray(devices), ("markets",))

    rows = grid.markets()
    for i, r in enumerate(rows):
        r["market"] = i
    chunks = []
    for _, group in itertools.groupby(rows, key=lambda r: (r["n_models"], r["n_customers"])):
        group = list(group)
        # Equal chunks of at most chunk_size: one shape per group (one compilation), little padding.
        width = -(-len(group) // -(-len(group) // chunk_size))
        chunks += [(group[k : k + width], width) for k in range(0, len(group), width)]

    folder = None
    if out is not None:
        folder = Path(out)
        (folder / "chunks").mkdir(parents=True, exist_ok=True)
        check_manifest(folder, _manifest(grid, solver, chunk_size, dtype, sensitivities, seed, tie_tol))

    max_models = max(grid.n_models)
    paths = [
        None if folder is None else folder / "chunks" / f"chunk-{k:05d}.parquet" for k in range(len(chunks))
    ]
    tables = {}  # chunk index -> its table: the finished ones first, each checked
    for k, ((chunk, _), path) in enumerate(zip(chunks, paths, strict=True)):
        if path is not None and path.exists() and (table := _read_chunk(path, chunk)) is not None:
            tables[k] = table
    bar = _progress(len(rows), sum(len(chunks[k][0]) for k in tables), progress)
    for k, ((chunk, width), path) in enumerate(zip(chunks, paths, strict=True)):
        if k in tables:
            continue
        # Each shape compiles a program holding hundreds of memory mappings on the CPU; a grid of
        # many shapes would reach Linux's cap on them (see `_mappings`). A no-op until half of it.
        release_compiled_programs()
        outcome = _solve_chunk(chunk, width, solver, dtype, sensitivities, seed, tie_tol, mesh)
        tables[k] = _table(chunk, outcome, max_models)
        if path is not None and jax.process_index() == 0:
            write_atomic(tables[k], path)
        bar.update(len(chunk))
    bar.close()
    result = pd.concat([tables[k] for k in range(len(chunks))], ignore_index=True)
    result = result.sort_values("market", kind="stable").reset_index(drop=True)
    result = result[["market", *[c for c in result.columns if c != "market"]]]
    if folder is not None and jax.process_index() == 0:
        write_atomic(result, folder / "results.parquet")
    return result


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="market", desc="sweep", disable=not enabled, leave=False)
