"""Sweeps: per-market results equal direct solves; resume after a kill; sharding over 4 devices."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import lmaas_jax as lj

SOLVER = lj.GradientIMP(lj.Ascent(steps=20, restarts=4), polish=None)


def test_rows_equal_direct_solves():
    # float32, with sensitivities (the sweeps of the other tests run without them).
    grid = lj.SweepGrid(n_models=2, n_customers=10, gamma=[0, 3], deviation=[0.1, 0.3], seeds=2)
    table = lj.sweep(grid, solver=SOLVER, chunk_size=3, progress=False, sensitivities=True)
    assert len(table) == 8 and list(table["market"]) == list(range(8))
    for row in table.itertuples():
        key = jax.random.PRNGKey(row.seed)
        market = lj.random_market(key, 2, 10, gamma=row.gamma, deviation=row.deviation, dtype="float32")
        sol = lj.imp(market, SOLVER, key=jax.random.fold_in(key, 1))
        np.testing.assert_allclose(row.profit, float(sol.profit), rtol=1e-5)
        np.testing.assert_allclose([row.price_1, row.price_2], np.asarray(sol.prices), rtol=1e-5)
        worst = float(np.sum(lj.plan(market, sol.prices, "nominal").worst_profit))
        np.testing.assert_allclose(row.customer_worst_nominal, worst, rtol=1e-4, atol=1e-3)
    shares = table[["share_none", "share_1", "share_2"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, rtol=1e-6)
    # RSR maximises every customer's worst case, so no rule's total beats it.
    for rule in ("nominal", "most_accurate", "cheapest"):
        assert np.all(table["customer_worst_rsr"] >= table[f"customer_worst_{rule}"] - 1e-3)
    # Closed form: d profit / d serving cost of model j is minus the hours rented of j.
    d_cost = table[["d_profit_serving_cost_1", "d_profit_serving_cost_2"]].sum(axis=1)
    np.testing.assert_allclose(-d_cost, table["rented_hours"], rtol=1e-4)


def test_sensitivity_columns_float64():
    # float32 in `test_rows_equal_direct_solves`.
    dtype, rtol = "float64", 1e-9
    grid = lj.SweepGrid(n_models=2, n_customers=10, gamma=1, seeds=2)
    table = lj.sweep(grid, solver=SOLVER, dtype=dtype, progress=False, sensitivities=True)
    d_cost = table[["d_profit_serving_cost_1", "d_profit_serving_cost_2"]].sum(axis=1)
    np.testing.assert_allclose(-d_cost, table["rented_hours"], rtol=rtol)
    # Each row equals the library's own sensitivities of the same market and solve.
    row = table.iloc[1]
    key = jax.random.PRNGKey(int(row.seed))
    market = lj.sweep_market(row, dtype)  # the row's market, rebuilt
    sens = lj.sensitivities(market, lambda m: lj.imp(m, SOLVER, key=jax.random.fold_in(key, 1)))
    assert bool(row.pattern_stable) == bool(sens.stable)
    for side in ("profit", "customer_worst"):
        for field in ("accuracy", "throughput", "payload", "serving_cost"):
            want = np.asarray(getattr(getattr(sens, f"d_{side}").models, field))
            got = row[[f"d_{side}_{field}_1", f"d_{side}_{field}_2"]].to_numpy(np.float64)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(abs(sens.profit)) * 1e-3)


@pytest.mark.parametrize(
    "field, value",
    [("gamma", 4), ("deviation", -0.1), ("n_customers", 0), ("seeds", 0), ("capability_gap", "big")],
)
def test_bad_grid_names_field_and_value(field, value):
    with pytest.raises(lj.ConfigError, match=rf"SweepGrid\.{field} = {value!r}"):
        lj.SweepGrid(**{field: value})


def test_other_sweep_in_folder_is_refused(tmp_path):
    grid = lj.SweepGrid(n_models=1, n_customers=4, gamma=0, seeds=1)
    lj.sweep(grid, tmp_path, solver=SOLVER, progress=False)
    # Any setting that changes a result is refused, by name, before anything is solved.
    other_rate = dataclasses.replace(
        SOLVER, ascent=dataclasses.replace(SOLVER.ascent, optimiser_kwargs={"learning_rate": 0.01})
    )
    for kwargs, words in [
        (dict(grid=lj.SweepGrid(n_models=1, n_customers=4, gamma=1, seeds=1)), "grid.gamma: [0] -> [1]"),
        (dict(solver=other_rate), "solver.settings.1x4.ascent.optimiser_kwargs.learning_rate: 0.05 -> 0.01"),
        (dict(seed=2), "solver.seed: 1 -> 2"),
        (dict(dtype="float64"), "dtype: 'float32' -> 'float64'"),
        (dict(sensitivities=True), "sensitivities: False -> True"),
    ]:
        args = dict(grid=grid, solver=SOLVER, progress=False) | kwargs
        with pytest.raises(lj.ConfigError, match="different sweep") as err:
            lj.sweep(out=tmp_path, **args)
        assert words in str(err.value), (words, str(err.value))
    (tmp_path / "manifest.json").write_text('{"grid": ')
    with pytest.raises(lj.ConfigError, match="not readable JSON"):
        lj.sweep(grid, tmp_path, solver=SOLVER, progress=False)


def test_copied_or_truncated_chunks_are_solved_again(tmp_path):
    grid = lj.SweepGrid(n_models=1, n_customers=4, gamma=[0, 1], seeds=2)
    first = lj.sweep(grid, tmp_path, solver=SOLVER, chunk_size=2, progress=False)
    chunks = sorted((tmp_path / "chunks").glob("chunk-*.parquet"))
    assert len(chunks) == 2
    chunks[1].write_bytes(chunks[0].read_bytes())  # a valid chunk holding the wrong markets
    with pytest.warns(UserWarning, match="does not hold the markets"):
        again = lj.sweep(grid, tmp_path, solver=SOLVER, chunk_size=2, progress=False)
    pd.testing.assert_frame_equal(again, first)
    chunks[0].write_bytes(chunks[0].read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        again = lj.sweep(grid, tmp_path, solver=SOLVER, chunk_size=2, progress=False)
    pd.testing.assert_frame_equal(again, first)


def test_solver_seed_acts():
    # One gradient step from one random start, no polish: the prices depend on IMP's key.
    crude = lj.GradientIMP(lj.Ascent(steps=1, restarts=1, eval_every=1), polish=None)
    grid = lj.SweepGrid(n_models=2, n_customers=6, seeds=1)
    tables = {seed: lj.sweep(grid, solver=crude, seed=seed, progress=False) for seed in (1, 7)}
    assert not np.allclose(tables[1]["price_1"], tables[7]["price_1"])
    key = jax.random.PRNGKey(0)
    sol = lj.imp(lj.random_market(key, 2, 6, dtype="float32"), crude, key=jax.random.fold_in(key, 7))
    np.testing.assert_allclose(
        tables[7][["price_1", "price_2"]].to_numpy()[0], np.asarray(sol.prices), rtol=1e-6
    )


@pytest.mark.parametrize("seeds", [10**9, 2**32 + 1])
def test_huge_grids_are_refused_up_front(seeds):
    with pytest.raises(lj.ConfigError, match=f"seeds = {seeds}|{seeds:,} markets"):
        lj.SweepGrid(seeds=seeds)


_SWEEP_TOML = """
[sweep]
n_models = 2
n_customers = 400
gamma = [1, 2, 3]
seeds = 3
chunk_size = 1
out = "{out}"

[solver.ascent]
steps = 30
restarts = 8
"""


def _cli(*args, **kwargs):
    cmd = [sys.executable, "-m", "lmaas_jax", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# Three command processes (about 45 s): CI runs it in its slow step. The default run resumes cut
# sweeps in process (a full disk mid-sweep, copied or truncated chunks).
@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    for name in ("killed", "whole"):
        (tmp_path / f"{name}.toml").write_text(_SWEEP_TOML.format(out=tmp_path / name))
    chunks = tmp_path / "killed" / "chunks"
    proc = _cli("sweep", str(tmp_path / "killed.toml"), "--no-progress", start_new_session=True)
    deadline = time.monotonic() + 240
    while not (chunks / "chunk-00000.parquet").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(chunks.glob("chunk-*.parquet"))
    assert 1 <= len(done) < 9 and not (tmp_path / "killed" / "results.parquet").exists()
    first = pd.read_parquet(done[0])

    resumed = _cli("sweep", str(tmp_path / "killed.toml"), "--no-progress")
    whole = _cli("sweep", str(tmp_path / "whole.toml"), "--no-progress")
    for p in (resumed, whole):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a = pd.read_parquet(tmp_path / "killed" / "results.parquet")
    b = pd.read_parquet(tmp_path / "whole" / "results.parquet")
    assert len(a) == 9
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(done[0]), first)  # the finished chunk was reused
    # The command's compilation cache (this test run's folder) kept the sweep's program: it has no
    # host callback, which JAX's cache refuses (it kept none of imp's programs before).
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "lmaas_jax"
    assert list(cache.rglob("jit__market_outcome-*-cache")), sorted(p.name for p in cache.rglob("*"))


_SHARDED = """
import jax, lmaas_jax as lj
# float64: a different per-device batch may round reductions differently, and float32 rounding
# differences grow through the gradient steps; in float64 they stay far below the tolerance.
jax.config.update("jax_enable_x64", True)
assert jax.device_count() == 4, jax.devices()
grid = lj.SweepGrid(n_models=2, n_customers=12, gamma=[0, 1, 2, 3], deviation=[0.1, 0.3], seeds=2)
solver = lj.GradientIMP(lj.Ascent(steps=20, restarts=4), polish=None)
kw = dict(solver=solver, chunk_size=6, dtype="float64", progress=False)
lj.sweep(grid, **kw).to_parquet("{out}/sharded.parquet")
lj.sweep(grid, devices=jax.devices()[:1], **kw).to_parquet("{out}/single.parquet")
"""


def test_sharded_sweep_equals_unsharded(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    script = textwrap.dedent(_SHARDED.format(out=tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    a = pd.read_parquet(tmp_path / "sharded.parquet")
    b = pd.read_parquet(tmp_path / "single.parquet")
    assert len(a) == 16
    shares = [c for c in a.columns if c.startswith("share_")]
    pd.testing.assert_frame_equal(a[shares], b[shares], check_exact=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


_TWO_PROCESSES = """
import sys, jax, lmaas_jax as lj
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize("localhost:{port}", num_processes=2, process_id=int(sys.argv[1]))
assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
grid = lj.SweepGrid(n_models=2, n_customers=12, gamma=[0, 1, 2, 3], deviation=[0.1, 0.3], seeds=2)
solver = lj.GradientIMP(lj.Ascent(steps=20, restarts=4), polish=None)
table = lj.sweep(grid, "{out}/sweep", solver=solver, chunk_size=6, dtype="float64", progress=False)
table.to_parquet(f"{out}/process-{{jax.process_index()}}.parquet")
"""


@pytest.mark.slow  # two JAX processes, about 25 s: run by .ci/run as its own step
def test_two_process_sweep_equals_one_process(tmp_path):
    # A real jax.distributed run on localhost: two processes of two CPU devices each, one mesh of 4.
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    script = textwrap.dedent(_TWO_PROCESSES.format(port=port, out=tmp_path))
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], env=env, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    grid = lj.SweepGrid(n_models=2, n_customers=12, gamma=[0, 1, 2, 3], deviation=[0.1, 0.3], seeds=2)
    solver = lj.GradientIMP(lj.Ascent(steps=20, restarts=4), polish=None)
    one = lj.sweep(
        grid, solver=solver, chunk_size=6, dtype="float64", devices=jax.devices()[:1], progress=False
    )
    for i in range(2):  # both processes hold the whole table, gathered
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"process-{i}.parquet"), one, rtol=1e-9)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sweep" / "results.parquet"), one, rtol=1e-9)


def test_compiled_programs_are_released_past_their_share_of_the_mapping_cap(monkeypatch):
    from lmaas_jax.product import _mappings

    if _mappings.mapping_count() is None:
        pytest.skip("needs /proc (Linux)")
    traces = []

    @jax.jit
    def f(x):
        traces.append(x.shape)
        return x + 1

    for size in range(1, 31):  # 30 programs, a few mappings each
        f(jax.numpy.ones(size)).block_until_ready()
    assert len(traces) == 30
    monkeypatch.setattr(_mappings, "mapping_cap", lambda: 10**9)
    assert not _mappings.release_compiled_programs()
    f(jax.numpy.ones(1)).block_until_ready()
    assert len(traces) == 30  # kept: no second compilation

    before = _mappings.mapping_count()
    monkeypatch.setattr(_mappings, "mapping_cap", lambda: before)  # past half of it
    assert _mappings.release_compiled_programs()
    assert _mappings.mapping_count() < before
    f(jax.numpy.ones(1)).block_until_ready()
    assert len(traces) == 31  # released: compiled again
    with pytest.raises(ValueError, match="share must be in"):
        _mappings.release_compiled_programs(share=0.0)
