import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import lmaas_jax as lj
from lmaas_jax.reference import ccg_rsr

from .helpers import customers, kink_market, one_model, random_customer_markets

TOL = {"float32": 1e-4, "float64": 1e-6}


def numpy_worst(market, prices, i, j, tau):
    """Worst-case profit of customer i renting model j (1-based, 0 = none) for tau hours."""
    if j == 0:
        return 0.0
    mo, cu = market.models, market.customers
    a, mu, s = (float(np.asarray(x)[j - 1]) for x in (mo.accuracy, mo.throughput, mo.payload))
    sc = np.asarray(market.scenarios[i], np.float64)[np.asarray(market.scenario_mask[i])]
    margin = np.maximum(sc[:, 2] * a - float(cu.comm_price[i]) * s, 0.0)
    served = np.minimum(mu * tau, np.minimum(sc[:, 0], sc[:, 1] / s))
    return float(np.min(margin * served) - float(prices[j - 1]) * tau)


@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_rsr_matches_ccg_on_random_customers(dtype):
    total = 0
    for name, market, prices in random_customer_markets(dtype):
        resp = lj.rsr(market, prices)
        tol = TOL[dtype]
        per_scenario = lj.worst_case_profit(market, resp.choice, resp.duration, prices)
        np.testing.assert_allclose(
            np.asarray(jnp.min(per_scenario, axis=1)),
            np.asarray(resp.worst_profit),
            rtol=tol,
            atol=tol * float(jnp.max(jnp.abs(resp.worst_profit))),
        )
        # C&CG (HiGHS) dominates the test's time: float64 checks every third customer, float32
        # every sixth.
        for i in range(0, market.n_customers, 3 if dtype == "float64" else 6):
            ref = ccg_rsr(market, prices, i)
            assert ref.converged, (name, i)
            value = float(resp.worst_profit[i])
            scale = 1.0 + abs(ref.value)
            assert abs(value - ref.value) <= tol * scale, (name, i, value, ref.value)
            choice = int(resp.choice[i])
            # The reported decision really earns its value (independent NumPy evaluation) ...
            got = numpy_worst(market, prices, i, choice, float(resp.duration[i]))
            assert abs(got - value) <= tol * scale, (name, i)
            # ... and the choices agree unless C&CG's choice is tied with RSR's within tie_tol.
            if ref.choice != choice:
                alt = 0.0 if ref.choice == 0 else float(resp.robust_values[i, ref.choice - 1])
                assert alt >= value - tol * scale, (name, i, ref.choice, choice)
            total += 1
    assert total >= (100 if dtype == "float64" else 50)


def test_market_edge_cases_are_exercised():
    """The C&CG comparison above really covers what it claims to."""
    cases = {name: (m, p) for name, m, p in random_customer_markets("float64")}
    m, p = cases["negative-margins"]
    terms = lj.value_market(m)
    assert bool(jnp.any(terms.rate == 0)) and bool(jnp.any(terms.rate > 0))
    binding = 0
    for name in ("budgets-at-lo", "budgets-mid", "budgets-at-hi"):
        m, p = cases[name]
        r = lj.rsr(m, p)
        spend = r.duration * jnp.where(r.choice > 0, p[jnp.maximum(r.choice - 1, 0)], 0.0)
        binding += int(jnp.sum(jnp.isclose(spend, m.customers.budget, rtol=1e-9)))
    assert binding >= 3
    for name in ("explicit-S1", "explicit-S20"):
        m, _ = cases[name]
        assert m.n_scenarios == int(name[len("explicit-S") :])
    assert {int(jnp.sum(cases[f"gamma{g}"][0].scenario_mask[0])) for g in range(4)} == {1, 4, 7, 8}


def test_worst_case_kink_between_scenarios(dtype):
    market = kink_market(dtype)
    prices = jnp.asarray([0.5], dtype)
    resp = lj.rsr(market, prices)
    assert int(resp.choice[0]) == 1
    np.testing.assert_allclose(float(resp.duration[0]), 8.0, rtol=1e-6)
    np.testing.assert_allclose(float(resp.worst_profit[0]), 4.0, rtol=1e-6)
    ref = ccg_rsr(market, prices, 0)
    np.testing.assert_allclose(ref.value, 4.0, rtol=1e-9)
    # The scenarios' own kinks {0, 4, 10} would settle for 3: the optimum is elsewhere.
    own_kinks = [numpy_worst(market, prices, 0, 1, t) for t in (0.0, 4.0, 10.0, 100.0)]
    assert max(own_kinks) <= 3.0 + 1e-9


def test_robust_values_against_duration_grid():
    """Brute force: no duration on a fine grid beats U_ij, and the grid gets within its spacing."""
    for name, market, prices in random_customer_markets("float64")[:6]:
        resp = lj.rsr(market, prices)
        mo, cu = market.models, market.customers
        a, mu, s = (np.asarray(x) for x in (mo.accuracy, mo.throughput, mo.payload))
        beta = np.asarray(prices)
        for i in range(0, market.n_customers, 3):
            sc = np.asarray(market.scenarios[i])[np.asarray(market.scenario_mask[i])]
            for j in range(market.n_models):
                longest = min(float(cu.horizon[i]), float(cu.budget[i]) / beta[j])
                taus = np.linspace(0.0, longest, 20001)[:, None]
                margin = np.maximum(sc[:, 2] * a[j] - float(cu.comm_price[i]) * s[j], 0.0)
                served = np.minimum(mu[j] * taus, np.minimum(sc[:, 0], sc[:, 1] / s[j]))
                worst = np.min(margin * served, axis=1) - beta[j] * taus[:, 0]
                u = float(resp.robust_values[i, j])
                assert worst.max() <= u + 1e-7 * (1 + abs(u)), (name, i, j)
                slope = float(margin.max()) * mu[j] + beta[j]  # |d worst / d tau| bound
                assert worst.max() >= u - slope * longest / 20000 - 1e-9, (name, i, j)


@settings(max_examples=150, deadline=None)
@given(
    nominal=st.tuples(st.floats(1.0, 1e4), st.floats(1.0, 1e5), st.floats(0.01, 1.0)),
    rel_dev=st.tuples(*[st.floats(0.0, 1.0)] * 3),
    gamma=st.integers(0, 3),
    comm_price=st.floats(0.0, 0.05),
    price=st.floats(0.0, 50.0),
    budget=st.one_of(st.just(np.inf), st.floats(1.0, 1e4)),
    z=st.tuples(*[st.floats(0.0, 1.0)] * 3),
)
def test_polytope_points_never_worse_than_worst_vertex(nominal, rel_dev, gamma, comm_price, price, budget, z):
    models = one_model(accuracy=[0.8], throughput=[20.0], payload=[3.0])
    cust = customers(1, comm_price=comm_price, horizon=50.0, budget=budget)
    nominal = np.asarray(nominal)
    deviation = nominal * np.asarray(rel_dev)
    market = lj.Market.budgeted(models, cust, nominal[None], deviation[None], gamma)
    prices = jnp.asarray([price])
    resp = lj.rsr(market, prices)
    j, tau = int(resp.choice[0]), float(resp.duration[0])
    worst_vertex = numpy_worst(market, prices, 0, j, tau)
    np.testing.assert_allclose(worst_vertex, float(resp.worst_profit[0]), rtol=1e-9, atol=1e-9)
    z = np.asarray(z)
    if z.sum() > gamma:
        z = z * gamma / z.sum() if gamma > 0 else np.zeros(3)
    xi = nominal - deviation * z
    if j == 0:
        u = 0.0
    else:
        margin = max(xi[2] * 0.8 - comm_price * 3.0, 0.0)
        u = margin * min(20.0 * tau, xi[0], xi[1] / 3.0) - price * tau
    assert u >= worst_vertex - 1e-9 * (1 + abs(worst_vertex))


def test_ties_favour_the_seller():
    """At beta = m mu the customer is indifferent and rents (renting at zero profit wins)."""
    models = one_model(serving_cost=[0.2])
    scen = jnp.asarray([[[10.0, 1e9, 1.0]]])
    market = lj.Market.explicit(models, customers(1), scen)
    at_rate = lj.rsr(market, jnp.asarray([1.0]))  # margin 1 $/task, 1 task/h: break-even at 1
    assert int(at_rate.choice[0]) == 1 and float(at_rate.duration[0]) == 10.0
    above = lj.rsr(market, jnp.asarray([1.0 + 1e-6]))
    assert int(above.choice[0]) == 0
    # Below the seller's cost the seller prefers no rental among the customer's ties.
    cheap = one_model(serving_cost=[2.0], price_hi=[10.0])
    m2 = lj.Market.explicit(cheap, customers(1), scen)
    assert int(lj.rsr(m2, jnp.asarray([1.0])).choice[0]) == 0


def test_served_tasks_per_scenario():
    market = kink_market()
    resp = lj.rsr(market, jnp.asarray([0.5]))
    np.testing.assert_allclose(np.asarray(resp.served[0]), [8.0, 4.0])


def test_vmap_over_markets_equals_loop(dtype):
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    gammas = jnp.arange(64) % 4
    markets = jax.vmap(lambda k, g: lj.random_market(k, 4, 40, gamma=g, dtype=dtype))(keys, gammas)
    u = jax.random.uniform(jax.random.PRNGKey(4), (64, 4), dtype)
    prices = markets.models.price_lo + u * (markets.models.price_hi - markets.models.price_lo)
    batched = jax.jit(jax.vmap(lj.rsr))(markets, prices)
    rtol = 1e-5 if dtype == "float32" else 1e-12  # jit fuses float32 arithmetic differently
    for b in range(64):
        one = lj.rsr(lj.unstack_market(markets, b), prices[b])
        np.testing.assert_array_equal(np.asarray(batched.choice[b]), np.asarray(one.choice))
        np.testing.assert_allclose(
            np.asarray(batched.worst_profit[b]),
            np.asarray(one.worst_profit),
            rtol=rtol,
            atol=rtol * float(jnp.max(jnp.abs(one.worst_profit))),  # cancellation in (R - beta) tau
        )
    # vmap over price vectors for one market, too.
    market = lj.unstack_market(markets, 0)
    profits = jax.vmap(lj.seller_profit, in_axes=(None, 0))(market, prices)
    loop = [lj.seller_profit(market, p) for p in prices]
    np.testing.assert_allclose(np.asarray(profits), np.asarray(loop), rtol=rtol)


def test_stacked_markets_with_different_scenario_counts():
    a = lj.random_market(jax.random.PRNGKey(0), 3, 10, gamma=1, dtype="float64")
    b = kink_market()
    scen = jnp.concatenate([b.scenarios] * 10, axis=0)
    b = lj.Market.explicit(a.models, a.customers, scen[:, :, :])
    stacked = lj.stack_markets([a, b])
    assert stacked.scenarios.shape == (2, 10, 8, 3)
    p = jnp.stack([a.models.price_lo, a.models.price_hi])
    out = jax.vmap(lj.seller_profit)(stacked, p)
    np.testing.assert_allclose(float(out[1]), float(lj.seller_profit(b, p[1])), rtol=1e-12)
    np.testing.assert_allclose(float(out[0]), float(lj.seller_profit(a, p[0])), rtol=1e-12)


def test_float32_agrees_with_float64():
    m64 = lj.random_market(jax.random.PRNGKey(7), 4, 200, dtype="float64")
    m32 = m64.astype(jnp.float32)
    p = 0.5 * (m64.models.price_lo + m64.models.price_hi)
    r64, r32 = lj.rsr(m64, p), lj.rsr(m32, p.astype(jnp.float32))
    assert r32.worst_profit.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(r32.robust_values), np.asarray(r64.robust_values), rtol=1e-4, atol=1e-3
    )
    np.testing.assert_allclose(
        float(lj.seller_profit(m32, p.astype(jnp.float32))),
        float(lj.seller_profit(m64, p)),
        rtol=1e-4,
    )


def test_prices_shape_error():
    market = kink_market()
    with pytest.raises(ValueError, match=r"prices must have shape \(1,\); got shape \(2,\)"):
        lj.rsr(market, jnp.asarray([1.0, 2.0]))
