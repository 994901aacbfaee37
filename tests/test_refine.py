"""`lj.reference.refine_by_milp`: the large-neighbourhood search by sub-market MILPs.

Oracles: HiGHS's optimum of the whole market (a neighbourhood holding every model is the whole
MILP), the brute-force line search (a neighbourhood of one model is a line search), and the start's
own exact profit (the search never lowers it).
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax.lmaas.reference._neighbourhoods import _sub_milp, _take, _Valuations
from lmaas_jax.lmaas.robust._rsr import tie_tolerance
from lmaas_jax.reference import brute_force_line, milp_pricing, refine_by_milp


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_one_neighbourhood_of_every_model_is_the_whole_milp(dtype):
    # A dense table is connected: a neighbourhood as large as the market frees every price, so one
    # round from the top of the box solves the whole market's MILP.
    market = lj.unit_demand_market(jax.random.PRNGKey(11), 7, 6, density=None, dtype=dtype)
    exact = milp_pricing(market)
    assert exact.stats["optimal"]
    top = np.asarray(market.models.price_hi, np.float64)
    sol = refine_by_milp(market, top, rounds=1, size=10**6)
    assert sol.stats["rounds"] == 1 and sol.stats["improved"] == 1
    assert float(sol.profit) >= float(exact.profit) * (1 - 1e-5)
    assert float(sol.profit) <= exact.stats["objective"] * (1 + 1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_a_neighbourhood_of_one_model_is_the_exact_line_search(dtype):
    # With every other price fixed, the sub-MILP of model j is its exact line search: the best
    # profit over j's breakpoints, evaluated exactly (in float64, where a breakpoint is exact).
    market = lj.unit_demand_market(jax.random.PRNGKey(5), 9, 5, density=None, dtype=dtype)
    exact = market.astype(jnp.float64)
    prices = np.asarray(jax.random.uniform(jax.random.PRNGKey(6), (5,), jnp.float64, 20.0, 90.0))
    v = _Valuations.of(market)
    for j in range(5):
        x, customers, _, _, _ = _sub_milp(v, prices, np.array([j]), 1e-9, 30.0)
        assert len(customers) == 9  # a dense table: every customer uses every model
        _, best = brute_force_line(lj.value_market(exact), jnp.asarray(prices), j, 1e-9)
        # HiGHS's price is a breakpoint to its feasibility tolerance: count ties within 1e-6.
        got = lj.seller_profit(exact, jnp.asarray(prices).at[j].set(x[0]), tie_tol=1e-6)
        assert float(got) == pytest.approx(float(best), abs=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_sub_milp_past_its_breakpoints_is_taken_at_the_prices_keeping_its_assignment(dtype):
    # HiGHS's prices can sit past a breakpoint by its feasibility tolerance, where customers walk
    # away. Here they sit 1e-3 of the box past it (every price raised): lowering them by up to 1e-6
    # recovers nothing, and the greatest prices keeping the MILP's assignment recover its gain.
    market = lj.unit_demand_market(jax.random.PRNGKey(11), 7, 6, density=None, dtype=dtype)
    v, tol = _Valuations.of(market), tie_tolerance(market)
    top = np.array(v.hi)
    every = np.arange(6)
    x, customers, options, slots, chosen = _sub_milp(v, top, every, tol, 30.0)
    scale = float(np.max(v.hi))
    gain, prices = _take(v, top, every, x, customers, options, slots, chosen, tol=tol, scale=scale)
    start = float(np.sum(v.choices(top, options, slots, len(customers), tol)[0]))
    # The oracle: the whole market's MILP optimum (one neighbourhood of every model is that MILP).
    assert gain > 0 and start + gain == pytest.approx(milp_pricing(market).stats["objective"], rel=1e-6)
    past = x + 1e-3 * scale
    lowered = np.maximum(past - 1e-6 * scale, v.lo)
    assert float(np.sum(v.choices(lowered, options, slots, len(customers), tol)[0])) < start + 0.9 * gain
    gain_past, kept = _take(v, top, every, past, customers, options, slots, chosen, tol=tol, scale=scale)
    assert gain_past == pytest.approx(gain, rel=1e-6)
    assert float(np.sum(v.choices(kept, options, slots, len(customers), tol)[0])) == pytest.approx(
        start + gain
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.default_run(dict(dtype="float32"))  # the other cases: slow
def test_the_search_never_lowers_the_profit_and_is_seeded(dtype, capfd):
    market = lj.unit_demand_market(jax.random.PRNGKey(21), 40, 40, density=4, dtype=dtype)
    start = lj.classic_imp(market, jnp.asarray(market.models.price_hi))
    sol = refine_by_milp(market, start.prices, rounds=12, size=24, seed=3)
    assert float(sol.profit) >= float(start.profit) - 1e-6 * abs(float(start.profit))
    assert sol.stats["rounds"] == 12 and sol.stats["stopped"] == "rounds"
    assert abs(sol.stats["start_profit"] - float(start.profit)) <= 1e-3 * abs(float(start.profit))
    # The posted prices hold: the reported profit is the exact profit at them with the default ties.
    assert float(lj.seller_profit(market, sol.prices)) == pytest.approx(float(sol.profit), rel=1e-6)
    again = refine_by_milp(market, start.prices, rounds=12, size=24, seed=3)
    np.testing.assert_array_equal(np.asarray(sol.prices), np.asarray(again.prices))
    # Two workers: the same guarantees, the same result on every run whatever the threads' timing,
    # and the C-level stdout the solves silence is back afterwards.
    both = [refine_by_milp(market, start.prices, rounds=12, size=24, seed=3, workers=2) for _ in "ab"]
    assert float(both[0].profit) >= float(start.profit) - 1e-6 * abs(float(start.profit))
    assert both[0].stats["rounds"] == 12
    assert float(lj.seller_profit(market, both[0].prices)) == pytest.approx(float(both[0].profit), rel=1e-6)
    np.testing.assert_array_equal(np.asarray(both[0].prices), np.asarray(both[1].prices))
    capfd.readouterr()
    os.write(1, b"stdout is back")
    assert capfd.readouterr().out == "stdout is back"


def test_time_limit_stops_between_rounds_and_progress_is_reported(capsys, monkeypatch):
    market = lj.unit_demand_market(jax.random.PRNGKey(2), 20, 20, density=4, dtype=jnp.float64)
    sol = refine_by_milp(market, np.asarray(market.models.price_hi), rounds=10**6, time_limit=0.0)
    assert sol.stats["stopped"] == "time_limit" and sol.stats["rounds"] <= 1
    # A clock that jumps 11 s a call: every round is reported, the time limit is read from it.
    clock = iter(range(0, 10**6, 11))
    monkeypatch.setattr("lmaas_jax.lmaas.reference._neighbourhoods.time.perf_counter", lambda: next(clock))
    sol = refine_by_milp(market, np.asarray(market.models.price_hi), rounds=3, progress=True)
    err = capsys.readouterr().err
    assert err.count("refine_by_milp: round") == 3 and "profit" in err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rounds=0), "rounds must be"),
        (dict(size=0), "size must be"),
        (dict(workers=0), "workers must be"),
        (dict(milp_time_limit=0.0), "milp_time_limit must be"),
        (dict(time_limit=float("nan")), "time_limit must be"),
        (dict(prices=np.ones(3)), "prices must be"),
        (dict(prices=np.full(6, np.nan)), "prices must be"),
    ],
)
def test_bad_input_is_refused_by_name(kwargs, message):
    market = lj.unit_demand_market(jax.random.PRNGKey(2), 5, 6, density=None, dtype=jnp.float64)
    prices = kwargs.pop("prices", np.ones(6))
    with pytest.raises(ValueError, match=re.escape(message)):
        refine_by_milp(market, prices, **kwargs)


def test_binding_budgets_are_refused():
    market = lj.random_market(jax.random.PRNGKey(0), 3, 6)
    with pytest.raises(ValueError, match=re.escape("needs budgets that never bind")):
        refine_by_milp(market, np.asarray(market.models.price_hi))


def test_a_market_nobody_values_is_returned_as_it_is():
    market = lj.unit_demand_market(jax.random.PRNGKey(2), 4, 3, density=None, dtype=jnp.float64)
    empty = market.__class__(market.models, market.customers, market.rate, 0 * market.hours)
    sol = refine_by_milp(empty, np.asarray(market.models.price_hi))
    assert sol.stats["rounds"] == 0 and float(sol.profit) == 0.0
