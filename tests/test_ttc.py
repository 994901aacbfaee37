"""Test-time compute game: potential identity, equilibrium, first best, auction incentives, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmaas_jax import ttc

KEY = jax.random.PRNGKey(0)


def _params(beta):
    return ttc.GameParams(beta=jnp.asarray(beta))


@pytest.mark.parametrize("bench, method", [("GSM8K", "majority"), ("AIME", "effort"), ("GPQA", "best_of_n")])
def test_potential_changes_exactly_as_log_utility(bench, method):
    market = ttc.load_market(bench, method)
    t = ttc.terms(market, _params(500.0))
    n, levels = market.theta.shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, levels, (500, n)), jnp.int32)
    i = jnp.asarray(rng.integers(0, n, 500), jnp.int32)
    y = jax.vmap(lambda row, k, lv: row.at[k].set(lv))(
        x, i, jnp.asarray(rng.integers(0, levels, 500), jnp.int32)
    )
    a = jax.vmap(lambda p: ttc.payoffs(t, p, 500.0))(x)
    b = jax.vmap(lambda p: ttc.payoffs(t, p, 500.0))(y)
    rows = jnp.arange(500)
    log_gain = jnp.log(b.utilities[rows, i]) - jnp.log(a.utilities[rows, i])
    np.testing.assert_allclose(b.potential - a.potential, log_gain, atol=1e-9)


@pytest.mark.parametrize(
    "bench, method, beta", [("GSM8K", "majority", 200.0), ("AIME", "effort", 1e3), ("GPQA", "best_of_n", 1e5)]
)
def test_equilibrium_admits_no_profitable_deviation(bench, method, beta):
    market = ttc.load_market(bench, method)
    profile, rounds = ttc.equilibrium(market, _params(beta), KEY)
    assert int(rounds) < 1000
    t = ttc.terms(market, _params(beta))
    u = ttc.payoffs(t, profile, beta).utilities
    for i in range(market.theta.shape[0]):
        for lv in range(market.theta.shape[1]):
            dev = ttc.payoffs(t, profile.at[i].set(lv), beta).utilities[i]
            assert float(dev) <= float(u[i]) * (1 + 1e-8), (i, lv)


def test_calibration_point_of_the_spec():
    o = ttc.market_outcome("GSM8K", "majority", 200.0, key=KEY)
    assert abs(float(o.first_best) / 0.00595 - 1) < 0.02
    assert abs(float(o.equilibrium_welfare) / 0.00489 - 1) < 0.02
    assert abs(float(o.inefficiency) - 21.7) < 0.02 * 21.7
    np.testing.assert_array_equal(o.profile, 64.0)


def test_dinkelbach_first_best_equals_brute_force():
    for bench, method, beta in [
        ("GSM8K", "majority", 1e3),
        ("AIME", "effort", 200.0),
        ("GPQA", "effort", 1e5),
    ]:
        market = ttc.load_market(bench, method)
        fast, _ = ttc.first_best(market, _params(beta))
        slow, profile = ttc.first_best_brute_force(market, _params(beta))
        np.testing.assert_allclose(float(fast), float(slow), rtol=1e-12)
        np.testing.assert_allclose(
            float(ttc.payoffs(ttc.terms(market, _params(beta)), profile, beta).welfare), float(slow)
        )


def test_beta_sweep_vmaps():
    market = ttc.load_market("AIME", "effort")
    betas = jnp.asarray([10.0, 300.0, 1e4])
    batch = jax.vmap(lambda b: ttc.outcome(market, ttc.GameParams(beta=b), KEY))(betas)
    for k, b in enumerate(betas):
        one = ttc.outcome(market, ttc.GameParams(beta=b), KEY)
        np.testing.assert_allclose(batch.inefficiency[k], one.inefficiency, rtol=1e-12)
        assert float(one.inefficiency) >= -1e-9  # the first best is an upper bound


def test_auction_of_the_spec_and_truthful_dominance():
    a = ttc.auction("GSM8K", "majority")
    assert (a.winner, a.runner_up) == ("Qwen2.5-7B", "Qwen2.5-3B")
    assert abs(float(a.user_price) - 0.0003) < 0.0001
    market = ttc.load_market("GSM8K", "majority")
    t = ttc.terms(market, _params(1.0))
    surplus = np.asarray(t.quality - t.cost)
    np.testing.assert_allclose(float(a.welfare), surplus.max())  # efficient
    assert float(a.winner_profit) >= 0 and float(a.user_value) >= 0  # individually rational
    # Truthful bidding is weakly dominant: against the others' truthful bids, no misreport
    # (any level, whose quality is verifiable, with any price on a grid) earns a provider more.
    _, quality, cost, score = (np.asarray(x) for x in ttc.auction_scores(market, _params(1.0)))
    q_all, c_all = np.asarray(t.quality), np.asarray(t.cost)
    for i in range(len(score)):
        rival = np.max(np.delete(score, i))
        truthful = max(score[i] - rival, 0.0)
        for lv in range(q_all.shape[1]):
            for bid in np.linspace(0.0, 2 * q_all[i, lv], 201):
                s = q_all[i, lv] - bid
                profit = (q_all[i, lv] - rival) - c_all[i, lv] if s > rival else 0.0
                assert profit <= truthful + 1e-15, (i, lv, bid)


def test_smoothed_inefficiency_gradients_match_finite_differences():
    market = ttc.load_market("GPQA", "effort")

    def smoothed(beta, markup, alpha):
        m = jax.tree_util.tree_map(lambda x: x, market)
        m = ttc.TTCMarket(m.theta, m.accuracy, m.tokens, m.token_price, alpha, m.names, m.benchmark, m.method)
        return ttc.gibbs_welfare(m, ttc.GameParams(beta=beta, markup=markup), 1e3)[1]

    x = (jnp.asarray(300.0), jnp.asarray(0.25), jnp.asarray(0.02))
    grads = jax.grad(smoothed, argnums=(0, 1, 2))(*x)
    for k, h in enumerate((1e-2, 1e-6, 1e-7)):
        up = list(x)
        down = list(x)
        up[k], down[k] = x[k] + h, x[k] - h
        fd = (smoothed(*up) - smoothed(*down)) / (2 * h)
        np.testing.assert_allclose(float(grads[k]), float(fd), rtol=1e-4, atol=1e-9)


def test_gibbs_tends_to_the_potential_maximiser():
    market = ttc.load_market("AIME", "effort")
    p = _params(1e3)
    t = ttc.terms(market, p)
    n, levels = market.theta.shape
    profiles = ttc.profiles_from_index(jnp.arange(levels**n), n, levels)
    pots = jax.vmap(lambda x: ttc.payoffs(t, x, p.beta).potential)(profiles)
    top = profiles[jnp.argmax(pots)]
    expected, _ = ttc.gibbs_welfare(market, p, 1e6)
    np.testing.assert_allclose(float(expected), float(ttc.payoffs(t, top, p.beta).welfare), rtol=1e-9)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="GSM8K, AIME, GPQA"):
        ttc.load_market("MMLU", "majority")
    with pytest.raises(ValueError, match="majority, best_of_n, effort"):
        ttc.auction("GSM8K", "beam")
    with pytest.raises(ValueError, match="beta"):
        ttc.market_outcome("GSM8K", "majority", -1.0, key=KEY)


def _log_utilities64(market, beta, markup=0.25, b=0.1):
    """Every (provider, level)'s log utility against the others' profile, in float64 NumPy."""
    a, tokens = np.asarray(market.accuracy, np.float64), np.asarray(market.tokens, np.float64)
    price = np.asarray(market.token_price, np.float64)[:, None] * tokens
    value = float(market.alpha) * (b + (1 - b) * a) - price
    margin = price - price / (1 + markup)

    def log_u(profile):
        rows = np.arange(len(profile))
        v = value[rows, profile]
        out = np.empty(value.shape)
        for i in rows:
            for lv in range(value.shape[1]):
                w = v.copy()
                w[i] = value[i, lv]
                lse = np.logaddexp.reduce(np.concatenate([[0.0], beta * w]))
                out[i, lv] = beta * w[i] - lse + np.log(margin[i, lv])
        return out

    return log_u


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bench, method", [("GSM8K", "majority"), ("GPQA", "best_of_n"), ("AIME", "effort")])
def test_equilibrium_at_a_large_beta_in_both_dtypes(dtype, bench, method):
    # beta = 1e5: shares underflow in float32, so utilities must be compared in logs. Judged by an
    # independent float64 computation on the same (rounded) data; 1e-3 in log utility covers
    # float32's rounding of V times beta.
    beta = 1e5
    market = ttc.load_market(bench, method, dtype=dtype)
    profile, rounds = ttc.equilibrium(market, ttc.GameParams(beta=jnp.asarray(beta, dtype)), KEY)
    assert int(rounds) < 1000 and market.theta.dtype == jnp.dtype(dtype)
    log_u = _log_utilities64(market, beta)(np.asarray(profile))
    current = log_u[np.arange(len(profile)), np.asarray(profile)]
    gain = log_u.max(axis=1) - current
    assert np.all(gain <= (1e-3 if dtype == "float32" else 1e-8)), gain
