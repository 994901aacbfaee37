"""The O(N log N) line search of classic IMP against the brute force it replaced, and the polish."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax.lmaas.pricing._line_search import best_on_line, candidates
from lmaas_jax.lmaas.robust._rsr import tie_tolerance, value_market
from lmaas_jax.reference import brute_force_line

# (n_models, n_customers): 36 markets each, three price vectors each, every model's line: 756 cases
# per dtype.
SHAPES = [(3, 16), (4, 33)]
MARKETS = 36


def _batch(m, n, dtype, seed):
    """Markets with no, some and only finite budgets, and with duplicated customers (equal breakpoints)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), MARKETS)
    share = jnp.asarray(np.resize([0.0, 0.5, 1.0], MARKETS), dtype)
    gamma = jnp.asarray(np.resize([0, 1, 2, 3], MARKETS))
    markets = jax.vmap(lambda k, s, g: lj.random_market(k, m, n, budget_share=s, gamma=g, dtype=dtype))(
        keys, share, gamma
    )
    # Every other market: customer 1 becomes a copy of customer 0, so two breakpoints coincide.
    copy = (jnp.arange(MARKETS) % 2 == 0)[:, None]
    scenarios = jnp.where(
        copy[:, :, None, None], markets.scenarios.at[:, 1].set(markets.scenarios[:, 0]), markets.scenarios
    )
    customers = markets.customers
    fields = ("comm_price", "horizon", "budget")
    values = [
        jnp.where(
            copy, getattr(customers, f).at[:, 1].set(getattr(customers, f)[:, 0]), getattr(customers, f)
        )
        for f in fields
    ]
    markets = eqx.tree_at(
        lambda mk: (mk.scenarios, *[getattr(mk.customers, f) for f in fields]), markets, (scenarios, *values)
    )
    return markets, keys


def _prices(markets, keys, planted):
    """Random prices in the box; `planted`: each price moved onto a random customer's breakpoint."""

    def one(market, key):
        mo = market.models
        u = jax.random.uniform(key, (market.n_models,), mo.price_lo.dtype)
        prices = mo.price_lo + u * (mo.price_hi - mo.price_lo)
        if planted:
            terms = value_market(market)
            for j in range(market.n_models):
                cands, _ = candidates(terms, prices, j)
                pick = jax.random.randint(jax.random.fold_in(key, j), (), 0, market.n_customers)
                prices = prices.at[j].set(cands[pick])
        return prices

    return jax.vmap(one)(markets, keys)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.default_run(
    dict(shape=SHAPES[0], dtype="float32"), dict(shape=SHAPES[1], dtype="float64")
)  # the other cases: slow
def test_line_search_equals_the_brute_force(shape, dtype):
    m, n = shape
    markets, keys = _batch(m, n, dtype, seed=31 * m + n)
    # Random prices, planted ties, and every price at the bottom of the box (where most customers'
    # breakpoints on a line fall below it and are clipped to one repeated candidate, summed apart as
    # the first bin), for every market and every model's line: one vmapped call.
    both_markets = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, x, x]), markets)
    bottom = markets.models.price_lo
    prices = jnp.concatenate([_prices(markets, keys, False), _prices(markets, keys, True), bottom])

    def both(market, p, j):
        terms = value_market(market)
        tol = tie_tolerance(market)
        return best_on_line(terms, p, j, tol), brute_force_line(terms, p, j, tol)

    lines = jax.vmap(both, in_axes=(None, None, 0))
    (b_new, p_new), (b_old, p_old) = jax.jit(jax.vmap(lines, in_axes=(0, 0, None)))(
        both_markets, prices, jnp.arange(m)
    )
    assert p_new.size == 3 * MARKETS * m  # cases of this shape and dtype
    b_new, p_new, b_old, p_old = (np.asarray(x, np.float64) for x in (b_new, p_new, b_old, p_old))
    if dtype == "float64":
        np.testing.assert_allclose(p_new, p_old, rtol=1e-12, atol=1e-9)
        # Prices equal; the breakpoint formula compiled in two XLA fusions can round one ulp apart.
        np.testing.assert_allclose(b_new, b_old, rtol=4 * np.finfo(np.float64).eps)
    else:
        # float32: the same up to that one-ulp difference, at which the profit moves by ~1e-6.
        np.testing.assert_allclose(p_new, p_old, rtol=1e-5)
        np.testing.assert_allclose(b_new, b_old, rtol=4 * np.finfo(np.float32).eps)
    # The profit returned is the exact profit at the price returned.
    exact = jax.vmap(
        jax.vmap(lambda mk, p, b, j: lj.seller_profit(mk, p.at[j].set(b)), in_axes=(None, None, 0, 0)),
        in_axes=(0, 0, 0, None),
    )(both_markets, prices, jnp.asarray(b_new, markets.dtype), jnp.arange(m))
    # (float32: the same sum compiled separately rounds differently, relative to its largest terms)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(
        np.asarray(exact, np.float64), p_new, rtol=rtol, atol=rtol * np.abs(p_new).max()
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_classic_imp_stops_at_a_coordinatewise_optimum(dtype):
    """No model's line, searched by brute force from classic IMP's prices, beats its profit."""
    market = lj.random_market(jax.random.PRNGKey(12345), 3, 40, budget_share=0.5, dtype=dtype)
    sol = lj.classic_imp(market, 0.5 * (market.models.price_lo + market.models.price_hi))
    assert int(sol.stats["sweeps"]) < 20
    terms, tol = value_market(market), tie_tolerance(market)
    lines = jax.jit(jax.vmap(lambda j: brute_force_line(terms, sol.prices, j, tol)[1]))(jnp.arange(3))
    supremum = float(sol.stats["profit_supremum"])
    rtol = 1e-12 if dtype == "float64" else 1e-6
    assert np.all(np.asarray(lines, np.float64) <= supremum * (1 + rtol) + rtol)
    assert float(sol.profit) <= supremum


def test_classic_imp_vmaps_and_equals_the_loop():
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    markets = jax.vmap(lambda k: lj.random_market(k, 3, 25, dtype="float64"))(keys)
    batched = jax.jit(jax.vmap(lambda mk: lj.classic_imp(mk)))(markets)
    for b in range(3):
        one = lj.classic_imp(lj.unstack_market(markets, b))
        np.testing.assert_allclose(float(batched.profit[b]), float(one.profit), rtol=1e-12)
        np.testing.assert_array_equal(np.asarray(batched.prices[b]), np.asarray(one.prices))


def test_classic_imp_validation():
    market = lj.random_market(jax.random.PRNGKey(0), 2, 5)
    with pytest.raises(ValueError, match="max_sweeps must be >= 1; got 0"):
        lj.classic_imp(market, max_sweeps=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_near_ties_go_to_the_highest_price_under_any_rounding(dtype):
    """Profits within the rounding slack are ties, and ties go to the highest price, so a change of
    the last bits (another summation order, another batch shape) cannot flip the choice.

    One model, customers worth 5 and 10 (+ delta): at 5 both rent (profit 10), at 10 one does (10 +
    delta). With delta = 0 the two tie exactly; with delta = +-16 ulps of 10 they differ by rounding-
    level amounts, where a rule on the last bit returns 10 for +delta and 5 for -delta. A model nobody
    values has one profit on its whole line: it is priced at the top of its box.
    """
    eps = float(np.finfo(dtype).eps)
    for delta in (0.0, 16 * eps * 10, -16 * eps * 10):
        rate = jnp.asarray([[5.0, 0.0], [10.0 + delta, 0.0]], dtype)
        hours = jnp.asarray([[1.0, 0.0], [1.0, 0.0]], dtype)
        market = lj.ValueMarket.from_table(rate, hours, price_hi=jnp.asarray([12.0, 7.0], dtype))
        terms, tol = value_market(market), tie_tolerance(market)
        prices = jnp.asarray([5.0, 7.0], dtype)
        for line in (best_on_line, brute_force_line):
            price, profit = jax.jit(line, static_argnums=3)(terms, prices, 0, tol)
            np.testing.assert_allclose(float(price), 10.0 + delta, rtol=4 * eps)
            np.testing.assert_allclose(float(profit), 10.0 + delta, rtol=4 * eps)
    # Model 1 (valued by nobody; the box's top 7) from the bottom of its box.
    rate = jnp.asarray([[5.0, 1.0], [10.0, 2.0]], dtype)
    market = lj.ValueMarket.from_table(rate, jnp.asarray([[1.0, 0.0], [1.0, 0.0]], dtype))
    market = eqx.tree_at(lambda mk: mk.models.price_hi, market, jnp.asarray([12.0, 7.0], dtype))
    terms, tol = value_market(market), tie_tolerance(market)
    for line in (best_on_line, brute_force_line):
        price, _ = jax.jit(line, static_argnums=3)(terms, jnp.asarray([5.0, 0.0], dtype), 1, tol)
        assert float(price) == 7.0
