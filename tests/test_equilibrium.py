"""The equilibrium's derivative (prices, the seller's profit, the customers' surplus) against finite
differences of the exact optimum (HiGHS re-solved)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax.reference import milp_pricing

# Held-out seeds (the pricing tests use 1000 + i): 10 small budget-free markets, two shapes.
MARKETS = [(2, 8, seed) for seed in range(5)] + [(3, 10, seed) for seed in range(5, 10)]
FIELDS = {
    "accuracy": lambda m: m.models.accuracy,
    "throughput": lambda m: m.models.throughput,
    "payload": lambda m: m.models.payload,
    "serving_cost": lambda m: m.models.serving_cost,
    "training_cost": lambda m: m.models.training_cost,
    "comm_price": lambda m: m.customers.comm_price,
    "scenarios": lambda m: m.scenarios,
}


def market_of(m, n, seed, dtype="float64"):
    # float32 markets are the float64 ones rounded (drawn in float64, then cast).
    key = jax.random.PRNGKey(77000 + seed)
    return lj.random_market(key, m, n, gamma=1, budget_share=0.0, dtype="float64").astype(dtype)


def optimum(market):
    """The exact optimum: HiGHS's global solution (snapped onto its breakpoints by exact moves)."""
    ref = milp_pricing(market, time_limit=60.0)
    assert ref.stats["optimal"], ref.stats["message"]
    return ref


def best(market, near):
    """The optimum at a bumped market, (profit, customers' total worst-case surplus): HiGHS re-solved,
    or classic IMP from the unbumped optimum's prices `near` where that is higher (HiGHS meets its
    constraints to 1e-6 or so, about the size of the bump, so its snapped solution can be a
    neighbouring breakpoint). Both at the optimum's breakpoint prices, ties to the seller."""
    sol = max(
        [optimum(market), lj.classic_imp(market, near)], key=lambda s: float(s.stats["profit_supremum"])
    )
    surplus = jnp.sum(lj.rsr(market, sol.stats["prices_supremum"]).worst_profit)
    return np.asarray([float(sol.stats["profit_supremum"]), float(surplus)])


def bumped(market, field, direction, h):
    get = FIELDS[field]
    return eqx.tree_at(get, market, get(market) + h * direction)


@pytest.fixture(scope="module")
def solved():
    out = []
    for m, n, seed in MARKETS:
        market = market_of(m, n, seed)
        out.append((market, optimum(market)))
    return out


def test_profit_and_surplus_gradients_equal_finite_differences_of_the_optimum(solved):
    stable = 0
    rng = np.random.default_rng(0)
    for market, sol in solved:
        if not bool(sol.pins.stable):
            continue
        stable += 1
        start = sol.prices
        sens = lj.sensitivities(market, lambda mk, start=start: lj.classic_imp(mk, start))
        assert bool(sens.stable)
        for field, get in FIELDS.items():
            x = get(market)
            # Relative bumps: the fields (and a scenario's three components) differ by 10^7 in scale.
            sign = np.sign(rng.normal(size=x.shape))
            direction = jnp.asarray(rng.uniform(0.5, 1.5, x.shape) * sign) * jnp.abs(x)
            h = 1e-4  # relative: the optimum is known to about 1e-9 of the profit, so smaller h is noise
            up = best(bumped(market, field, direction, h), start)
            down = best(bumped(market, field, direction, -h), start)
            fd = (up - down) / (2 * h)
            exact = [float(jnp.sum(get(g) * direction)) for g in (sens.d_profit, sens.d_customer_worst)]
            # 1e-4 relative; derivatives below 3e-5 of the profit (per unit relative change) are
            # compared absolutely: the optimum's 1e-9 noise over h = 1e-4 is about 1e-5 of it.
            tol = 1e-4 * np.abs(fd) + 3e-5 * float(sol.profit)
            assert np.all(np.abs(np.asarray(exact) - fd) <= tol), (field, exact, fd)
    assert stable >= 8, stable


def test_cost_derivatives_are_minus_hours_and_minus_one(solved):
    for market, sol in solved:
        grad = eqx.filter_grad(lambda mk, p: lj.classic_imp(mk, p).profit)(market, sol.prices)
        choice, hours = np.asarray(sol.response.choice), np.asarray(sol.response.duration)
        rented = np.asarray([hours[choice == j + 1].sum() for j in range(market.n_models)])
        np.testing.assert_allclose(np.asarray(grad.models.serving_cost), -rented, rtol=1e-12)
        np.testing.assert_array_equal(np.asarray(grad.models.training_cost), -np.ones(market.n_models))


@pytest.mark.slow
def test_price_jacobian_equals_finite_differences(solved):
    for market, sol in solved[:2] + solved[5:7]:
        if not bool(sol.pins.stable):
            continue
        jac = eqx.filter_jacfwd(lambda mk, p: lj.classic_imp(mk, p).prices)(market, sol.prices)
        for field in ("accuracy", "comm_price"):
            x = FIELDS[field](market)
            direction = x
            h = 1e-4  # relative: the optimum is known to about 1e-9 of the profit, so smaller h is noise
            p_up = _supremum_prices(bumped(market, field, direction, h))
            p_down = _supremum_prices(bumped(market, field, direction, -h))
            fd = (p_up - p_down) / (2 * h)
            exact = np.tensordot(np.asarray(FIELDS[field](jac)), np.asarray(direction), axes=direction.ndim)
            np.testing.assert_allclose(exact, fd, rtol=1e-4, atol=1e-6 * float(jnp.max(sol.prices)))


def _supremum_prices(market):
    """The optimum's breakpoint prices (before the posting move, a constant in the derivative)."""
    return np.asarray(optimum(market).stats["prices_supremum"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_closed_form_on_a_value_table(dtype):
    # One model, two one-hour customers worth 10 and 6 $/h: price 6 sells to both (12 > 10),
    # pinned by the second customer's opt-out, so d price / d rate_2 = 1 and d profit / d rate_2 = 2.
    market = lj.ValueMarket.from_table(np.array([[10.0], [6.0]]), np.ones((2, 1)), price_hi=20.0, dtype=dtype)
    key = jax.random.PRNGKey(0)
    sol = lj.imp(market, key=key)
    assert bool(sol.pins.stable) and int(sol.pins.customer[0]) == 1 and int(sol.pins.other[0]) == 0
    grad = eqx.filter_grad(lambda mk: lj.imp(mk, key=key).profit)(market)
    np.testing.assert_allclose(np.asarray(grad.rate), [[0.0], [2.0]], atol=1e-6)
    jac = eqx.filter_jacrev(lambda mk: lj.imp(mk, key=key).prices)(market)
    np.testing.assert_allclose(np.asarray(jac.rate)[0], [[0.0], [1.0]], atol=1e-6)
    # Two identical customers pin one price together: not stable, and said so.
    twins = lj.ValueMarket.from_table(np.full((2, 1), 6.0), np.ones((2, 1)), price_hi=20.0, dtype=dtype)
    assert not bool(lj.imp(twins, key=key).pins.stable)


@pytest.mark.slow  # about 45 s on 2 cores under load
def test_gradient_vmaps_and_float32_agrees():
    # float32, the default (the float64 derivative is checked above against finite differences;
    # `imp`'s derivative, the same posted solution's, in the closed-form test). Classic IMP from
    # fixed starts keeps the compilations few.
    dtype = "float32"
    markets64 = [market_of(2, 8, 20 + b) for b in range(3)]
    markets = lj.stack_markets([m.astype(dtype) for m in markets64])
    starts = jax.vmap(lambda m: 0.5 * (m.models.price_lo + m.models.price_hi))(markets)

    def grad_of(market, start):
        return eqx.filter_grad(lambda mk, p: lj.classic_imp(mk, p).profit)(market, start).models.accuracy

    batched = jax.vmap(grad_of)(markets, starts)
    agreed = 0
    for b in range(3):
        one = grad_of(lj.unstack_market(markets, b), starts[b])
        np.testing.assert_allclose(np.asarray(batched[b]), np.asarray(one), rtol=1e-5)
        # The same solution's derivative in float64 agrees to float32's precision where the
        # choices agree (the float32 markets are the float64 ones rounded).
        sol32 = lj.classic_imp(lj.unstack_market(markets, b), starts[b])
        start = sol32.prices.astype(jnp.float64)
        sol64 = lj.classic_imp(markets64[b], start)
        g64 = grad_of(markets64[b], start)
        if np.array_equal(np.asarray(sol64.response.choice), np.asarray(sol32.response.choice)):
            agreed += 1
            scale = 1e-3 * float(sol64.profit)
            np.testing.assert_allclose(np.asarray(batched[b]), np.asarray(g64), rtol=2e-3, atol=scale)
    assert agreed >= 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.default_run(dict(dtype="float32"))  # the other cases: slow
def test_relaxed_derivative_matches_finite_differences_and_tends_to_the_exact_one(dtype):
    market = lj.ValueMarket.from_table(np.array([[10.0], [6.0]]), np.ones((2, 1)), price_hi=20.0, dtype=dtype)
    start = jnp.asarray([6.0], dtype)

    def relaxed_optimum(mk, t):
        return lj.relaxed_seller_profit(mk, lj.relaxed_equilibrium(mk, t, start), t)

    def bump(s):
        return eqx.tree_at(lambda m: m.rate, market, market.rate.at[1, 0].add(s))

    errors = []
    for t in (0.3, 0.03, 0.003):
        grad = eqx.filter_grad(relaxed_optimum)(market, t).rate
        assert float(grad[0, 0]) == pytest.approx(0.0, abs=1e-3)
        if dtype == "float64":  # finite differences of the relaxed optimum, re-solved
            h = 1e-5
            fd = (float(relaxed_optimum(bump(h), t)) - float(relaxed_optimum(bump(-h), t))) / (2 * h)
            assert float(grad[1, 0]) == pytest.approx(fd, rel=1e-6)
        errors.append(abs(float(grad[1, 0]) - 2.0))  # the exact derivative (closed form above)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3, errors
