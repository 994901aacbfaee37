"""Bad input on purpose: every case gets an error naming the argument (and, outside jit, the value).

The LMaaS core's entry points: evaluators (rsr, seller_profit, relaxed_*, plan, C&CG), the
generator, the solvers' settings and sizes that cannot fit; then the other three games' parameters,
laws and bids. Sweeps have their own cases in
`tests/test_sweep.py` (resume with other settings, copied and truncated chunks, huge grids).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import lmaas_jax as lj
from lmaas_jax import token_auction as ta, token_cap as tc, ttc
from lmaas_jax._checks import failed_checks_give_nan, in_range, size
from lmaas_jax.reference import ccg_rsr

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module", params=["float32", "float64"])
def market(request):
    return lj.random_market(KEY, 3, 8, dtype=request.param)


def _prices(market, *values):
    return jnp.asarray(values, market.dtype)


NAN, INF = float("nan"), float("inf")

EAGER_CASES = {
    "rsr, NaN price": (
        lambda m: lj.rsr(m, _prices(m, NAN, 2, 3)),
        "prices must be finite; got nan at index 0",
    ),
    "rsr, infinite price": (
        lambda m: lj.rsr(m, _prices(m, 1, INF, 3)),
        "prices must be finite; got inf at index 1",
    ),
    "rsr, negative price": (
        lambda m: lj.rsr(m, _prices(m, 1, 2, -3)),
        r"prices must be >= 0; got -3.0 at index 2",
    ),
    "rsr, wrong shape": (
        lambda m: lj.rsr(m, _prices(m, 1, 2)),
        r"prices must have shape \(3,\); got shape \(2,\)",
    ),
    "rsr, negative tie_tol": (lambda m: lj.rsr(m, _prices(m, 1, 2, 3), tie_tol=-1.0), "tie_tol .* got -1.0"),
    "rsr, NaN tie_tol": (lambda m: lj.rsr(m, _prices(m, 1, 2, 3), tie_tol=NAN), "tie_tol .* got nan"),
    "seller_profit, NaN price": (
        lambda m: lj.seller_profit(m, _prices(m, NAN, 2, 3)),
        "prices must be finite",
    ),
    "plan, NaN price": (lambda m: lj.plan(m, _prices(m, NAN, 2, 3), "nominal"), "prices must be finite"),
    "relaxed profit, temperature 0": (
        lambda m: lj.relaxed_seller_profit(m, _prices(m, 1, 2, 3), 0.0),
        "temperature must be finite and > 0; got 0.0",
    ),
    "relaxed profit, negative temperature": (
        lambda m: lj.relaxed_seller_profit(m, _prices(m, 1, 2, 3), -1.0),
        "temperature must be finite and > 0; got -1.0",
    ),
    "relaxed rsr, NaN temperature": (
        lambda m: lj.relaxed_rsr(m, _prices(m, 1, 2, 3), NAN),
        "temperature must be finite and > 0; got nan",
    ),
    "C&CG, NaN price": (
        lambda m: ccg_rsr(m.astype(jnp.float64), np.array([NAN, 2.0, 3.0]), 0),
        "prices must be finite; got nan at index 0",
    ),
    "imp, 10^9 steps (memory)": (
        lambda m: lj.imp(m, lj.GradientIMP(lj.Ascent(steps=10**9)), key=KEY),
        r"imp with steps=1000000000, restarts=32 on 3 x 8 would need about [\d,.]+ GiB",
    ),
    "imp, 10^8 restarts (memory)": (
        lambda m: lj.imp(m, lj.GradientIMP(lj.Ascent(restarts=10**8)), key=KEY),
        r"restarts=100000000 .* would need about [\d,.]+ GiB",
    ),
}


@pytest.mark.parametrize("case", EAGER_CASES)
def test_bad_evaluator_input_is_named(market, case):
    fn, words = EAGER_CASES[case]
    with pytest.raises(ValueError, match=words):
        fn(market)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        # Under the test suite's jaxtyping hook the annotation check answers first (TypeCheckError).
        (dict(n_models=2.7), (TypeError, TypeCheckError), r"n_models"),
        (dict(n_customers="10"), (TypeError, TypeCheckError), "n_customers"),
        (dict(n_customers=0), ValueError, "n_customers must be >= 1; got 0"),
        (dict(n_customers=2**63 - 1), ValueError, r"n_customers=9223372036854775807.* GiB"),
        (dict(n_customers=10**9), ValueError, r"would need about [\d,.]+ GiB"),
        (dict(deviation=1.5), ValueError, r"deviation must lie in \[0.0, 1.0\]; got 1.5"),
        (dict(deviation=NAN), ValueError, "deviation must lie in .*; got nan"),
        (dict(gamma=4), ValueError, r"gamma must be an integer in \{0, 1, 2, 3\}; got 4"),
        (dict(budget_share=-0.1), ValueError, "budget_share must lie in"),
    ],
)
def test_bad_generator_input_is_named(kwargs, error, words):
    args = dict(n_models=2, n_customers=5) | kwargs
    with pytest.raises(error, match=words):
        lj.random_market(KEY, **args)


def test_sizes_must_be_ints():
    # What a user without the jaxtyping hook sees (the generator calls this first).
    with pytest.raises(TypeError, match=r"n_models must be an int; got 2.7 \(float\)"):
        size("n_models", 2.7)
    assert size("n_models", np.int64(3)) == 3


def test_solver_settings_are_checked():
    with pytest.raises(ValueError, match="final_temperature = 0.1 is above initial_temperature = 0.01"):
        lj.Ascent(initial_temperature=0.01, final_temperature=0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_under_jit_and_vmap_the_checks_run_in_the_compiled_code(dtype):
    # Correct results where the input is good: the generator under jit draws the eager market.
    eager = lj.random_market(KEY, 2, 5, dtype=dtype)
    jitted = jax.jit(lambda k: lj.random_market(k, 2, 5, dtype=dtype))(KEY)
    np.testing.assert_allclose(np.asarray(jitted.scenarios), np.asarray(eager.scenarios), rtol=1e-6)
    # Bad traced values: a runtime error naming the argument (the values cannot be shown).
    deviations = jnp.asarray([0.2, 1.5], dtype)
    with pytest.raises(Exception, match=r"deviation must lie in \[0.0, 1.0\]"):
        jax.vmap(lambda d: lj.random_market(KEY, 2, 5, deviation=d, dtype=dtype).scenarios)(deviations)
    bad = jnp.asarray([NAN, 2.0], dtype)
    with pytest.raises(Exception, match="prices must be finite and >= 0"):
        jax.block_until_ready(jax.jit(lambda p: lj.rsr(eager, p).choice)(bad))
    temperatures = jnp.asarray([0.1, -1.0], dtype)
    with pytest.raises(Exception, match="temperature must be finite and > 0"):
        jax.vmap(lambda t: lj.relaxed_seller_profit(eager, jnp.asarray([1.0, 2.0], dtype), t))(temperatures)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_within_failed_checks_give_nan_the_checks_give_nan_and_compile_no_host_callback(dtype):
    # The command line's mode: its programs must carry no host callback, or JAX's persistent cache
    # keeps none of them. A failed check makes the checked value NaN there (what follows computes
    # with it), and raises again after it.
    eager = lj.random_market(KEY, 2, 5, dtype=dtype)
    bad, good = jnp.asarray([NAN, 2.0], dtype), jnp.asarray([1.0, 2.0], dtype)

    def checked(x):
        return in_range("x", x, 0.0, 1.0)

    def profit(p):
        return lj.seller_profit(eager, p)

    with failed_checks_give_nan():
        np.testing.assert_array_equal(np.asarray(jax.jit(checked)(jnp.asarray([0.5, 2.0], dtype))), NAN)
        assert float(jax.jit(checked)(jnp.asarray(0.5, dtype))) == 0.5
        assert float(jax.jit(profit)(good)) == pytest.approx(float(lj.seller_profit(eager, good)), rel=1e-6)
        assert "callback" not in jax.jit(profit).lower(bad).as_text()
    assert "callback" in jax.jit(profit).lower(bad).as_text()
    with pytest.raises(Exception, match="prices must be finite and >= 0"):
        jax.block_until_ready(jax.jit(profit)(bad))
    with pytest.raises(Exception, match=r"x must lie in \[0.0, 1.0\]"):
        jax.block_until_ready(jax.jit(checked)(jnp.asarray(2.0, dtype)))


# The three other games.
_D = np.array([[0.5, 0.5], [0.9, 0.1]])
_B = np.array([1.0, 2.0])
GAME_CASES = {
    "ttc, beta 0": (lambda: ttc.market_outcome("GSM8K", "majority", 0.0, key=KEY), "GameParams.beta"),
    "ttc, NaN beta": (
        lambda: ttc.GameParams(beta=jnp.asarray(NAN)),
        "GameParams.beta must be finite and > 0",
    ),
    "ttc, markup 0": (lambda: ttc.GameParams(beta=jnp.asarray(1.0), markup=jnp.asarray(0.0)), "markup"),
    "ttc, quality floor 2": (
        lambda: ttc.auction("GSM8K", "majority", b=jnp.asarray(2.0)),
        r"GameParams.b must",
    ),
    "ttc, accuracy 1.5": (
        lambda: ttc.TTCMarket(
            theta=jnp.ones((1, 2)),
            accuracy=jnp.asarray([[0.5, 1.5]]),
            tokens=jnp.ones((1, 2)),
            token_price=jnp.ones(1),
            alpha=jnp.asarray(1.0),
            names=("a",),
            benchmark="x",
            method="y",
        ),
        r"TTCMarket.accuracy must lie in \[0, 1\]; got 1.5 at index \(0, 1\)",
    ),
    "token caps, infinite support": (lambda: tc.Uniform(0.5, INF), "finite support .* hi=inf"),
    "token caps, negative mixture weight": (
        lambda: tc.GaussianMixture(0.0, 1.0, [0.3, 0.7], [0.1, 0.1], [1.0, -1.0]),
        "GaussianMixture.weights must be finite and >= 0; got -1.0 at index 1",
    ),
    "token caps, negative width": (
        lambda: tc.GaussianMixture(0.0, 1.0, [0.3, 0.7], [0.1, -0.5], [1.0, 1.0]),
        "GaussianMixture.widths must be finite and > 0; got -0.5 at index 1",
    ),
    "token caps, CDF stops at 0.5": (
        lambda: tc.FromFunctions(0.0, 1.0, lambda r: 0.5 * jnp.clip(r, 0, 1), lambda r: 0.5 + 0 * r),
        r"cdf must be 0 at lo and 1 at hi; got cdf\(lo\) = 0.0, cdf\(hi\) = 0.5",
    ),
    "token caps, negative delay": (
        lambda: tc.posted_price_constant_delay(tc.Uniform(0.5, 2.0), -1.0),
        "delay must be finite and > 0; got -1.0",
    ),
    "auction, negative bid": (lambda: ta.expected_payment_linear(np.array([1.0, -2.0])), "bids .* got -2.0"),
    "auction, NaN bid": (lambda: ta.expected_payment_linear(np.array([1.0, NAN])), "bids .* got nan"),
    "auction, monotonicity on 1 bid": (lambda: ta.is_monotone(ta.linear, _D, _B, grid=1), "grid .* got 1"),
    "auction, Clarke with the other divergence": (
        lambda: ta.clarke_payments(ta.linear, _D, _B, "reverse"),
        "divergence = 'reverse' does not match rule linear",
    ),
}


@pytest.mark.parametrize("case", GAME_CASES)
def test_bad_game_input_is_named(case):
    fn, words = GAME_CASES[case]
    with pytest.raises(ValueError, match=words):
        fn()


def test_ttc_parameters_are_checked_under_vmap():
    market = ttc.load_market("GSM8K", "majority")
    outcome = jax.vmap(lambda b: ttc.outcome(market, ttc.GameParams(beta=b), KEY).inefficiency)
    with pytest.raises(Exception, match="GameParams.beta must be finite and > 0"):
        outcome(jnp.asarray([1.0, -1.0]))
    # Good values: the batch equals the one-by-one outcomes.
    betas = jnp.asarray([1.0, 10.0])
    one = [float(ttc.outcome(market, ttc.GameParams(beta=b), KEY).inefficiency) for b in betas]
    np.testing.assert_allclose(np.asarray(outcome(betas)), one, rtol=1e-5)
