import jax
import jax.numpy as jnp
import numpy as np

import lmaas_jax as lj


def _market_and_prices(seed, n=60):
    market = lj.random_market(jax.random.PRNGKey(seed), 4, n, dtype="float64")
    u = jax.random.uniform(jax.random.PRNGKey(seed + 100), (4,), jnp.float64, 0.05, 0.5)
    prices = market.models.price_lo + u * (market.models.price_hi - market.models.price_lo)
    return market, prices


def test_relaxed_gradient_matches_finite_differences():
    for seed in range(3):
        market, prices = _market_and_prices(seed)
        scale = float(jnp.mean(jnp.abs(lj.rsr(market, prices).robust_values))) + 1.0
        temperature = 0.2 * scale

        def f(p, market=market, temperature=temperature):
            return lj.relaxed_seller_profit(market, p, temperature)

        grad = np.asarray(jax.grad(f)(prices))
        h = 1e-6 * np.asarray(prices)
        fd = np.asarray(
            [(f(prices.at[j].add(h[j])) - f(prices.at[j].add(-h[j]))) / (2 * h[j]) for j in range(4)]
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
        assert np.abs(grad).max() > 0


def test_relaxed_response_tends_to_exact_as_temperature_falls(dtype):
    market, prices = _market_and_prices(11, n=100)
    market = market.astype(dtype)
    prices = prices.astype(dtype)
    exact = lj.rsr(market, prices)
    exact_profit = float(lj.seller_profit(market, prices))
    errors = []
    for t in (10.0, 1.0, 0.1, 1e-2, 1e-3):
        relaxed = lj.relaxed_rsr(market, prices, t)
        profit = float(lj.relaxed_seller_profit(market, prices, t))
        errors.append(abs(profit - exact_profit) / abs(exact_profit))
        p = np.asarray(relaxed.probabilities)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert errors[-1] < 1e-4 and errors[0] > 10 * errors[-1], errors
    # The mixture's mode is the exact choice, and its mass there tends to 1.
    final = lj.relaxed_rsr(market, prices, 1e-3)
    np.testing.assert_array_equal(np.argmax(np.asarray(final.probabilities), 1), exact.choice)
    np.testing.assert_allclose(
        np.asarray(final.expected_duration), np.asarray(exact.duration), rtol=1e-3, atol=1e-3
    )
