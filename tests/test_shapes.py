"""`lj.unit_demand_market`: the shapes users bring (value density, dense tables, N != M), seeded.

Oracles: counting (each customer values exactly `density` models, in the value range), the
equality of two draws from one key, and HiGHS's optimum for default `lj.imp` on a few shapes.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize(("n", "m", "density"), [(12, 30, 4), (30, 10, 3), (9, 7, None)])
def test_each_customer_values_density_models_at_integer_values(dtype, n, m, density):
    market = lj.unit_demand_market(jax.random.PRNGKey(3), n, m, density=density, values=(5, 9), dtype=dtype)
    assert market.dtype == dtype and (market.n_customers, market.n_models) == (n, m)
    table = market.as_table()
    valued = np.asarray(table.hours) > 0
    d = m if density is None else density
    assert np.all(valued.sum(axis=1) == d)
    value = np.asarray(table.rate)[valued]
    assert np.all((value >= 5) & (value <= 9)) and np.all(value == np.round(value))
    assert market.dense == (2 * d > m)  # option lists where 2 density <= M, as read_unit_demand
    # Unit demand: one-hour rentals, no budgets, no costs; the box tops at the highest value.
    assert np.all(np.asarray(market.customers.horizon) == 1) and np.all(np.isinf(market.customers.budget))
    top = np.where(valued, np.asarray(table.rate), 0).max(axis=0)
    np.testing.assert_array_equal(np.asarray(market.models.price_hi), top)
    # Seeded: the same key gives the same market, in either dtype; another key another one.
    again = lj.unit_demand_market(
        jax.random.PRNGKey(3), n, m, density=density, values=(5, 9), dtype=jnp.float64
    )
    np.testing.assert_array_equal(np.asarray(table.rate, np.float64), np.asarray(again.as_table().rate))
    # ... and with x64 off (the draws' dtypes are fixed, not x64's defaults).
    with jax.enable_x64(False):
        narrow = lj.unit_demand_market(
            jax.random.PRNGKey(3), n, m, density=density, values=(5, 9), dtype=jnp.float32
        )
        narrow = np.asarray(narrow.as_table().rate, np.float64)
    np.testing.assert_array_equal(narrow, np.asarray(again.as_table().rate))
    other = lj.unit_demand_market(jax.random.PRNGKey(4), n, m, density=density, values=(5, 9), dtype=dtype)
    assert not np.array_equal(np.asarray(other.as_table().rate), np.asarray(table.rate))


def test_every_model_is_drawn_alike():
    """Which models a customer values is uniform: over many customers each model is valued about
    N d / M times (a binomial count, checked at five standard deviations)."""
    n, m, d = 4000, 10, 3
    market = lj.unit_demand_market(jax.random.PRNGKey(0), n, m, density=d, layout="table")
    counts = (np.asarray(market.hours) > 0).sum(axis=0)
    p = d / m
    assert np.all(np.abs(counts - n * p) <= 5 * np.sqrt(n * p * (1 - p))), counts


def test_bad_shapes_are_refused_by_name():
    key = jax.random.PRNGKey(0)
    with pytest.raises(
        ValueError, match=re.escape("density must be at most n_models = 5 (None: all); got 6.")
    ):
        lj.unit_demand_market(key, 3, 5, density=6)
    with pytest.raises(ValueError, match=re.escape("n_customers must be >= 1; got 0.")):
        lj.unit_demand_market(key, 0, 5)
    with pytest.raises(ValueError, match=re.escape("values must be a range 0 <= lo <= hi; got (5, 2).")):
        lj.unit_demand_market(key, 3, 5, density=2, values=(5, 2))
    with pytest.raises(ValueError, match=re.escape("layout must be 'auto', 'lists' or 'table'; got 'csr'.")):
        lj.unit_demand_market(key, 3, 5, layout="csr")


@pytest.mark.slow  # about a minute of compilation per shape and dtype; CI runs it in its slow step
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize(("n", "m", "density"), [(12, 24, None), (30, 10, 4)])
def test_default_imp_reaches_the_highs_optimum_on_generated_shapes(dtype, n, m, density):
    for seed in (900, 901):
        exact = lj.unit_demand_market(jax.random.PRNGKey(seed), n, m, density=density, dtype=jnp.float64)
        best = float(lj.reference.milp_pricing(exact).stats["profit_supremum"])
        sol = lj.imp(exact.astype(dtype), key=jax.random.PRNGKey(0))
        held = float(lj.seller_profit(exact, sol.prices.astype(jnp.float64), tie_tol=1e-9))
        assert held >= 0.999 * best, (seed, held, best)


@pytest.mark.slow  # HiGHS and a compilation per dtype; CI runs it in its slow step
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_highs_posted_prices_hold_the_milp_value(dtype):
    """`milp_pricing`'s posted prices earn what its MILP proved (to the posting's cost): its raw
    prices can sit a hair past a breakpoint, and snapping them by coordinate moves alone lost a
    customer on some generated markets; the greatest prices keeping the MILP's assignment do not."""
    for seed in (910, 911):
        market = lj.unit_demand_market(jax.random.PRNGKey(seed), 24, 24, density=8, dtype=dtype)
        sol = lj.reference.milp_pricing(market)
        assert sol.stats["optimal"]
        objective = sol.stats["objective"]
        assert float(sol.stats["profit_supremum"]) >= objective * (1 - 1e-6), seed
        assert float(sol.profit) >= objective * (1 - 1e-4), seed
