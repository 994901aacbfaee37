"""Competition between sellers: per-seller profits, the best-response market, `lj.compete` against
closed forms (one seller, Bertrand) and the HiGHS best-response oracle, and `lj.relaxed_compete`
(first-order conditions, closed form, finite differences, vmap)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from tests.helpers import loyal_market


def _bertrand(dtype, costs, n=6, horizon=10.0):
    """Two identical models (one per seller), costs `costs`, and `n` customers of differing values."""
    rate = jnp.asarray(np.linspace(5.0, 10.0, n)[:, None].repeat(2, 1), dtype)
    hours = jnp.asarray(np.linspace(1.0, 3.0, n)[:, None].repeat(2, 1), dtype)
    side = lj.ModelPrices(
        jnp.asarray(costs, dtype), jnp.zeros(2, dtype), jnp.zeros(2, dtype), jnp.full(2, 20.0, dtype)
    )
    limits = lj.CustomerLimits(jnp.full(n, horizon, dtype), jnp.full(n, jnp.inf, dtype))
    return lj.ValueMarket(side, limits, rate, hours)


# ------------------------------------------------------------------------------------------------
# Per-seller profits and the tie rule


def _profits_by_hand(values, prices, owner, tie_tol):
    """Every customer's choice enumerated in NumPy: the best robust value, ties (as `rsr` judges them)
    to the largest margin, then renting, then the lowest model; margins summed per owner."""
    rate, hours = np.asarray(values.rate, np.float64), np.asarray(values.hours, np.float64)
    cost = np.asarray(values.models.serving_cost, np.float64)
    horizon = np.asarray(values.customers.horizon, np.float64)
    p = np.asarray(prices, np.float64)
    tau = np.minimum(hours, horizon[:, None])
    value = (rate - p) * tau
    margin = (p - cost) * tau
    out = np.zeros(owner.max() + 1)
    for i in range(rate.shape[0]):
        options = [(0.0, 0.0, 0, -1)] + [
            (value[i, j], margin[i, j], 1, j) for j in range(rate.shape[1]) if hours[i, j] > 0
        ]
        best = max(o[0] for o in options)
        scale = max((rate[i, j] * tau[i, j] for j in range(rate.shape[1]) if hours[i, j] > 0), default=0.0)
        tied = [o for o in options if o[0] >= best - tie_tol * (1.0 + scale)]
        pick = max(tied, key=lambda o: (o[1], o[2], -o[3]))
        if pick[3] >= 0:
            out[owner[pick[3]]] += pick[1]
    np.add.at(out, owner, -np.asarray(values.models.training_cost, np.float64))
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seller_profits_split_the_profit_by_owner(dtype):
    owner = np.array([0, 1, 0, 2])
    for seed in range(4):
        market = lj.random_market(jax.random.key(40 + seed), 4, 30, budget_share=0.0, dtype=dtype)
        values = lj.value_market(market)
        mo = market.models
        u = jax.random.uniform(jax.random.key(50 + seed), (4,), dtype)
        prices = mo.price_lo + u * (lj.lmaas.pricing._ascent.useful_top(values) - mo.price_lo)
        got = np.asarray(lj.seller_profits(market, prices, owner), np.float64)
        tol = 1e-5 if dtype == "float32" else 1e-9
        expect = _profits_by_hand(values, prices, owner, tol)
        np.testing.assert_allclose(got, expect, rtol=1e-5 if dtype == "float32" else 1e-10, atol=1e-6)
        whole = float(lj.seller_profit(market, prices))
        np.testing.assert_allclose(got.sum(), whole, rtol=1e-5 if dtype == "float32" else 1e-12)
        one = lj.seller_profits(market, prices, np.zeros(4, np.int32))
        assert one.shape == (1,) and float(one[0]) == pytest.approx(whole, rel=1e-6)


def test_a_tie_between_sellers_goes_to_the_larger_margin():
    # Two identical models at one price, seller 1's cheaper to serve: the tied customers rent from 1.
    market = _bertrand("float64", [2.0, 1.0])
    profits = np.asarray(lj.seller_profits(market, jnp.asarray([4.0, 4.0]), np.array([0, 1])))
    hours = np.asarray(market.hours[:, 0])
    assert profits[0] == 0.0 and profits[1] == pytest.approx(3.0 * hours.sum())


def test_the_best_response_market_gives_ties_to_the_deviator():
    # Seller 0 (dearer) at the rival's price wins the tie in the market it sees as a deviator.
    market = _bertrand("float64", [2.0, 1.0])
    seen = lj.best_response_market(market, jnp.asarray([4.0, 4.0]), jnp.asarray([0, 1]), 0)
    hours = np.asarray(market.hours[:, 0])
    assert float(lj.seller_profit(seen, jnp.asarray([4.0, 4.0]))) == pytest.approx(2.0 * hours.sum())
    assert float(seen.models.price_lo[1]) == float(seen.models.price_hi[1]) == 4.0


def test_owner_and_settings_are_checked_before_anything_runs():
    market = lj.random_market(jax.random.key(0), 4, 10, dtype="float64")
    key = jax.random.key(0)
    prices = jnp.ones(4)
    with pytest.raises(ValueError, match=r"owner must have shape \(4,\)"):
        lj.seller_profits(market, prices, np.array([0, 1]))
    with pytest.raises(TypeError, match="owner must hold integers"):
        lj.compete(market, np.array([0.0, 1.0, 0.0, 1.0]), key=key)
    with pytest.raises(ValueError, match="owner must name sellers 0..S-1; got -1 at index 2"):
        lj.compete(market, np.array([0, 1, -1, 1]), key=key)
    with pytest.raises(ValueError, match="seller 1 owns none"):
        lj.compete(market, np.array([0, 2, 2, 0]), key=key)
    with pytest.raises(ValueError, match="max_rounds must be an int >= 1; got 0"):
        lj.compete(market, np.array([0, 1, 0, 1]), key=key, max_rounds=0)
    with pytest.raises(ValueError, match="rtol"):
        lj.compete(market, np.array([0, 1, 0, 1]), key=key, rtol=-1.0)
    with pytest.raises(ValueError, match="start must have shape"):
        lj.compete(market, np.array([0, 1, 0, 1]), key=key, start=jnp.ones(3))
    with pytest.raises(TypeError, match="solver"):
        lj.compete(market, np.array([0, 1, 0, 1]), "imp", key=key)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        lj.relaxed_compete(market, np.array([0, 1, 0, 1]), 0.0)
    with pytest.raises(ValueError, match="seller must be an int in 0..1; got 2"):
        lj.reference.milp_best_response(market, prices, np.array([0, 1, 0, 1]), 2)


# ------------------------------------------------------------------------------------------------
# compete: closed forms


def _one_owner_is_imp(dtype, seeds, on_scenarios=False):
    key = jax.random.key(7)
    for seed in seeds:
        market = lj.random_market(jax.random.key(900 + seed), 4, 40, dtype=dtype)
        got = lj.compete(market, np.zeros(4, np.int32), key=key)
        # compete prices every seller on the market's value table (the game it solves); imp on the
        # scenario market posts off the breakpoints it recomputes from the scenarios, the same up
        # to float32 rounding.
        sol = lj.imp(lj.value_market(market), key=jax.random.fold_in(key, 0))
        if on_scenarios:
            scenario_profit = float(lj.imp(market, key=jax.random.fold_in(key, 0)).profit)
            assert float(got.profits[0]) == pytest.approx(
                scenario_profit, rel=1e-4 if dtype == "float32" else 1e-8
            )
        assert bool(got.converged) and got.cycle == 0
        np.testing.assert_array_equal(np.asarray(got.prices), np.asarray(sol.prices))
        # (summed in another order: the last float32 bit may differ)
        assert float(got.profits[0]) == pytest.approx(
            float(sol.profit), rel=1e-6 if dtype == "float32" else 1e-12
        )
        assert float(got.deviation_gain[0]) <= float(got.tolerance[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_one_owner_is_imp(dtype):
    _one_owner_is_imp(dtype, range(1))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_owner_is_imp_on_twenty_markets(dtype):
    _one_owner_is_imp(dtype, range(1, 11), on_scenarios=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_two_sellers_of_one_good_price_it_at_cost(dtype):
    # Bertrand: identical models, either seller can take every customer by an arbitrarily small cut,
    # so the only equilibrium under the tie rule is both prices at the common cost, profits 0.
    market = _bertrand(dtype, [1.0, 1.0])
    got = lj.compete(market, np.array([0, 1]), key=jax.random.key(0))
    assert bool(got.converged)
    # A few last ticks (2^-16 / 2^-21 of the useful price range, about 9) and the tie rule's nudges.
    slack = 1e-3 if dtype == "float32" else 5e-5
    np.testing.assert_allclose(np.asarray(got.prices, np.float64), [1.0, 1.0], atol=slack)
    assert np.all(np.asarray(got.prices) >= 1.0)
    assert float(jnp.max(got.profits)) <= 2 * float(got.tolerance[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_the_cheaper_seller_takes_the_market_at_the_rivals_cost(dtype):
    # Costs 1 < 2: the limit price. Seller 0 prices at the rival's cost 2 (the tie rule gives it the
    # customers there, its margin being larger), serves everyone and earns (2 - 1) x the hours.
    market = _bertrand(dtype, [1.0, 2.0])
    got = lj.compete(market, np.array([0, 1]), key=jax.random.key(0))
    assert bool(got.converged)
    slack = 1e-3 if dtype == "float32" else 5e-5
    np.testing.assert_allclose(float(got.prices[0]), 2.0, atol=slack)
    assert float(got.prices[1]) >= 2.0
    hours = float(np.sum(np.asarray(market.hours[:, 0], np.float64)))
    np.testing.assert_allclose(np.asarray(got.profits, np.float64), [hours, 0.0], atol=slack * hours)
    assert np.all(np.asarray(got.response.choice) == 1)


# ------------------------------------------------------------------------------------------------
# compete against the HiGHS best-response oracle


def _oracle_check(market, owner, got):
    """Each seller's exact best gain at the returned prices (HiGHS); returns the relative gains."""
    rel = []
    for s in range(owner.max() + 1):
        exact = lj.reference.milp_best_response(market, got.prices, owner, s)
        assert bool(exact.stats["optimal"])
        best = float(exact.stats["profit_supremum"])
        profit, gain = float(got.profits[s]), float(got.deviation_gain[s])
        # IMP's best response is achievable, so the exact one is at least as good ...
        assert best >= profit + gain - 1e-6 * max(abs(best), 1.0)
        # ... and where compete claims an equilibrium, no seller gains more than it allows.
        if bool(got.converged):
            # (the tolerance is 1e-4 of the profit plus atol, what the ticks and ties leave open)
            assert best - profit <= float(got.tolerance[s]) * (1 + 1e-6), (s, best, profit)
        rel.append((best - profit) / max(profit, 1e-9))
    return rel


# Held out: seeds used by no other test nor by any choice of a default. Per owner, four markets at
# loyalty 0.3, three at 0.6 and three of the default family (loyalty 1).
HELD_OUT = [
    (owner, loyalty, 5000 + 100 * k + i)
    for owner in ([0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 2, 2])
    for k, (loyalty, count) in enumerate(((0.3, 4), (0.6, 3), (1.0, 3)))
    for i in range(count)
]


@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_compete_against_the_oracle_on_a_market():
    owner = np.array([0, 0, 1, 1])
    for seed in (4000,):
        market = loyal_market(jax.random.key(seed), owner, 0.3)
        got = lj.compete(market, owner, key=jax.random.key(seed))
        _oracle_check(market, owner, got)


@pytest.mark.slow
def test_every_claimed_equilibrium_holds_by_the_oracle():
    """30 held-out budget-free markets of 2 and 3 sellers (M = 4, N = 60) at three loyalties; the
    fraction that converges is printed (see docs/competition.md for the measured one)."""
    converged = []
    for owner, loyalty, seed in HELD_OUT:
        owner = np.asarray(owner)
        market = loyal_market(jax.random.key(seed), owner, loyalty)
        got = lj.compete(market, owner, key=jax.random.key(seed))
        _oracle_check(market, owner, got)
        converged.append(bool(got.converged))
    assert len(converged) >= 30
    print(f"converged: {sum(converged)} of {len(converged)}")
    assert any(converged)  # the check above is not empty


# ------------------------------------------------------------------------------------------------
# relaxed_compete


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_relaxed_bertrand_has_the_logit_markup(dtype):
    # Identical customers (value rate R, hours L) and two identical models at cost c: the logit
    # equilibrium's first-order condition gives (p - c) (1 - P) L / t = 1, P = each model's share;
    # as t -> 0 the prices tend to c, the exact equilibrium.
    n, r, length, c = 5, 8.0, 2.0, 1.0
    side = lj.ModelPrices(
        jnp.full(2, c, dtype), jnp.zeros(2, dtype), jnp.zeros(2, dtype), jnp.full(2, 20.0, dtype)
    )
    limits = lj.CustomerLimits(jnp.full(n, 10.0, dtype), jnp.full(n, jnp.inf, dtype))
    market = lj.ValueMarket(side, limits, jnp.full((n, 2), r, dtype), jnp.full((n, 2), length, dtype))
    for t in (2.0, 0.5, 0.05):
        got = lj.relaxed_compete(market, np.array([0, 1]), t)
        assert bool(got.converged)
        p = np.asarray(got.prices, np.float64)
        u = (r - p) * length / t
        share = np.exp(u - u.max()) / (np.exp(-u.max()) + np.exp(u - u.max()).sum())
        np.testing.assert_allclose(
            (p - c) * (1 - share) * length / t, 1.0, rtol=1e-4 if dtype == "float32" else 1e-9
        )
    assert np.all(np.abs(p - c) <= 2 * t)  # markup t / (L (1 - P)), P -> 1/2: tends to c as t -> 0


def _relaxed_markets(dtype):
    for seed, owner in ((6000, [0, 0, 1, 1]), (6001, [0, 1, 0, 1]), (6002, [0, 1, 2, 2])):
        market = lj.random_market(jax.random.key(seed), 4, 40, budget_share=0.0, dtype=dtype)
        t = float(lj.lmaas.pricing._ascent.market_scale(lj.value_market(market))) * 0.3
        yield market, np.asarray(owner), t


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_relaxed_equilibrium_meets_its_conditions(dtype):
    _relaxed_conditions(dtype, 1)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relaxed_equilibrium_meets_its_conditions_with_two_and_three_sellers(dtype):
    _relaxed_conditions(dtype, 3)


def _relaxed_conditions(dtype, count):
    from lmaas_jax.lmaas.competition._relaxed import (
        FLOOR_FACTOR,
        _hours_by_model,
        own_gradient,
        relaxed_profits_by_seller,
    )

    for market, owner, t in list(_relaxed_markets(dtype))[:count]:
        got = lj.relaxed_compete(market, owner, t)
        assert bool(got.converged), float(got.residual)
        # The first-order conditions, recomputed in float64 at the returned prices: below 1e-6
        # relative to the hours sold, or (float32) within the solver's tolerance of what rounding
        # the prices to float32 leaves, a floor that is itself a few hundred units in the last place.
        wide = jax.tree.map(
            lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, market
        )
        values64 = lj.value_market(wide)
        p64 = jnp.asarray(np.asarray(got.prices, np.float64))
        n_sellers = int(owner.max()) + 1
        g = np.asarray(own_gradient(values64, p64, jnp.asarray(owner), n_sellers, jnp.float64(t)))
        sold = np.asarray(_hours_by_model(values64, p64, jnp.float64(t)))
        lo, hi = np.asarray(wide.models.price_lo), np.asarray(wide.models.price_hi)
        held = ((p64 <= lo) & (g <= 0)) | ((p64 >= hi) & (g >= 0))
        residual = np.max(np.where(held, 0.0, np.abs(g) / (sold + 1.0)))
        assert float(got.floor) <= 200 * np.finfo(dtype).eps
        assert residual <= max(1e-6, FLOOR_FACTOR * float(got.floor)), (residual, float(got.floor))
        # No seller gains by moving one of its prices a little either way (a local maximum).
        values = lj.value_market(market)
        base = np.asarray(
            relaxed_profits_by_seller(values, got.prices, jnp.asarray(owner), int(owner.max()) + 1, t)
        )
        for j in range(4):
            for step in (-1e-2, 1e-2):
                p = got.prices.at[j].add(step * (1.0 + got.prices[j]))
                p = jnp.clip(p, market.models.price_lo, market.models.price_hi)
                moved = relaxed_profits_by_seller(values, p, jnp.asarray(owner), int(owner.max()) + 1, t)
                assert float(moved[owner[j]]) <= base[owner[j]] * (1 + 1e-6) + 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_relaxed_equilibrium_derivative_matches_finite_differences(dtype):
    import equinox as eqx

    market, owner, t = next(_relaxed_markets(dtype))

    def prices_of(scale):
        scale = jnp.asarray(scale, dtype)
        m = eqx.tree_at(lambda m: m.models.serving_cost, market, market.models.serving_cost * scale)
        return lj.relaxed_compete(m, owner, t).prices

    grad = jax.jacfwd(prices_of)(jnp.asarray(1.0, dtype))
    h = 1e-3 if dtype == "float32" else 1e-6
    fd = (np.asarray(prices_of(1.0 + h), np.float64) - np.asarray(prices_of(1.0 - h), np.float64)) / (2 * h)
    np.testing.assert_allclose(
        np.asarray(grad, np.float64),
        fd,
        rtol=2e-2 if dtype == "float32" else 1e-5,
        atol=1e-2 if dtype == "float32" else 1e-6,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.slow  # compiles IMP and the relaxed solver: kept out of the default run's workers
def test_relaxed_compete_under_vmap_equals_a_loop(dtype):
    markets = [
        lj.random_market(jax.random.key(6100 + i), 4, 30, budget_share=0.0, dtype=dtype) for i in range(3)
    ]
    temps = [0.3 * float(lj.lmaas.pricing._ascent.market_scale(lj.value_market(m))) for m in markets]
    owner = np.array([0, 1, 0, 1])
    batched = jax.vmap(lambda m, t: lj.relaxed_compete(m, owner, t, n_sellers=2))(
        lj.stack_markets(markets), jnp.asarray(temps, dtype)
    )
    for i, (m, t) in enumerate(zip(markets, temps, strict=True)):
        alone = lj.relaxed_compete(m, owner, t)
        assert bool(alone.converged) and bool(batched.converged[i])
        np.testing.assert_allclose(
            np.asarray(batched.prices[i]),
            np.asarray(alone.prices),
            rtol=1e-5 if dtype == "float32" else 1e-12,
        )
