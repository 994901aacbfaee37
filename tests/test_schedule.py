"""The exact stages' two schedules: the same prices one start after another or all at once.

The oracle is the sequential schedule itself: each start follows its own path whichever schedule
runs it, so the parallel schedule must return the sequential one's prices (bit for bit in float64;
in float32 to 1e-6 with the same profit, as a batch may compile a few operations differently), alone
under `jax.jit` and under `jax.vmap` over markets, while running fewer steps one after another.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax.lmaas.pricing._schedule import default_schedule


def _markets(m, n, dtype, count, seed):
    """`count` default markets of M x N, every other one without budgets, and the batch of them."""
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    markets = [
        lj.random_market(k, m, n, budget_share=0.0 if i % 2 else 0.5, dtype=dtype) for i, k in enumerate(keys)
    ]
    return markets, jax.tree.map(lambda *x: jnp.stack(x), *markets)


def _solver(market, schedule):
    return lj.GradientIMP.for_market(market, backend="cpu").with_schedule(schedule)


def _same(dtype, parallel, sequential, profit_par, profit_seq):
    if dtype == jnp.float64:
        np.testing.assert_array_equal(parallel, sequential)
        assert profit_par == profit_seq
    else:
        np.testing.assert_allclose(parallel, sequential, rtol=1e-6, atol=0)
        assert profit_par == profit_seq


def _check_shape(m, n, dtype, count, seed, jit_too=False):
    """Both schedules under `jax.vmap` over the markets, and (`jit_too`) under `jax.jit` one market at
    a time. (A batch of markets may round the gradient stage differently from one market alone, so
    each schedule is compared with the other under the same transformation.)"""
    markets, batch = _markets(m, n, dtype, count, seed)
    key = jax.random.PRNGKey(3)

    def run(schedule):
        return lambda mk: lj.imp(mk, _solver(mk, schedule), key=key)

    seq, par = (jax.jit(jax.vmap(run(s)))(batch) for s in ("sequential", "parallel"))
    for i in range(count):
        _same(dtype, par.prices[i], seq.prices[i], float(par.profit[i]), float(seq.profit[i]))
    depth, work = (np.asarray(x) for x in (seq.stats["depth"], seq.stats["work"]))
    assert np.all(np.asarray(par.stats["depth"]) <= depth) and np.all(depth <= work)
    if jit_too:
        seq_one, par_one = jax.jit(run("sequential")), jax.jit(run("parallel"))
        for market in markets:
            one, alone = seq_one(market), par_one(market)
            _same(dtype, alone.prices, one.prices, float(alone.profit), float(one.profit))
            assert int(alone.stats["depth"]) < int(one.stats["depth"])


# float64 (about 25 s more) in CI's slow step, with the 56 markets.
@pytest.mark.parametrize("dtype", [jnp.float32, pytest.param(jnp.float64, marks=pytest.mark.slow)])
def test_the_parallel_schedule_gives_the_sequential_prices_on_a_small_batch(dtype):
    _check_shape(3, 24, dtype, count=4, seed=41)


# 52 markets per dtype: M = 2..8, N = 20..512, with budgets and without; and 4 of 16 models, which
# get the look-ahead (its pairs' second moves one after another or as one batch).
SHAPES = [(2, 20, 13), (4, 64, 13), (6, 200, 13), (8, 512, 13), (16, 20, 4)]


@pytest.mark.slow  # about 6 minutes on 2 cores; CI runs it in its slow step
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_the_parallel_schedule_gives_the_sequential_prices_on_56_markets(dtype):
    for s, (m, n, count) in enumerate(SHAPES):
        _check_shape(m, n, dtype, count=count, seed=500 + s, jit_too=s == 0)


def test_the_default_schedule_follows_the_backend():
    assert default_schedule("cpu") == "sequential"
    assert default_schedule("gpu") == default_schedule("tpu") == "parallel"
    market = lj.random_market(jax.random.PRNGKey(0), 4, 10)
    for backend, schedule in (("cpu", "sequential"), ("gpu", "parallel")):
        solver = lj.GradientIMP.for_market(market, backend=backend)
        assert solver.polish.schedule == solver.moves.schedule == solver.lookahead.schedule == schedule
    solver = lj.GradientIMP.for_market(market, backend="gpu")
    # Recorded with the settings: the solution's `settings` and its dict say which ran.
    assert solver.as_dict()["polish"]["schedule"] == "parallel"
    assert solver.with_schedule("sequential") == lj.GradientIMP.for_market(market, backend="cpu")


def test_a_bad_schedule_is_named():
    with pytest.raises(ValueError, match=r"Polish\.schedule must be one of .*'fast'"):
        lj.Polish(schedule="fast")
    with pytest.raises(TypeError, match="schedule"):
        lj.Moves(schedule=1)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lj.GradientIMP().with_schedule("gpu")


def test_depth_counts_the_steps_run_one_after_another():
    """Polish only, by hand: sequentially each start's sweeps add up, in parallel the slowest's."""
    market = lj.random_market(jax.random.PRNGKey(5), 3, 30, dtype=jnp.float64)
    base = lj.GradientIMP(
        ascent=lj.Ascent(steps=20, restarts=4),
        polish=lj.Polish(restarts=4, random=2, finalists=2, max_sweeps=3),
        moves=lj.Moves(rounds=0),
    )
    key = jax.random.PRNGKey(0)
    runs = {
        s: jax.jit(lambda mk, s=s: lj.imp(mk, base.with_schedule(s), key=key))(market)
        for s in ("sequential", "parallel")
    }
    seq, par = runs["sequential"], runs["parallel"]
    np.testing.assert_array_equal(seq.prices, par.prices)
    m = market.n_models
    # Sequential: every line search ran after the one before; work and depth agree.
    assert int(seq.stats["depth"]) == int(seq.stats["work"])
    assert int(par.stats["work"]) == int(seq.stats["work"])
    # Parallel: the first batch (6 starts) and one round of the 2 finalists, each its slowest
    # start's sweeps: at most 2 batches of `sweeps` sweeps of M line searches.
    assert m <= int(par.stats["depth"]) <= 2 * base.polish.sweeps * m < int(seq.stats["depth"])
    assert dataclasses.asdict(par.settings.polish)["schedule"] == "parallel"
