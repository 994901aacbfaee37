"""Bad input on purpose: every case gets an error naming the argument (and, outside jit, the value).

The LMaaS core's entry points: evaluators (rsr, seller_profit, relaxed_*, plan, C&CG), the
generator, the solvers' settings and sizes that cannot fit. Sweeps have their own cases in
`tests/test_sweep.py` (resume with other settings, copied and truncated chunks, huge grids).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import lmaas_jax as lj
from lmaas_jax._checks import size
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
        lambda m: lj.imp(m, lj.GradientIMP(steps=10**9), key=KEY),
        r"imp with steps=1000000000, restarts=32 on 3 x 8 would need about [\d,.]+ GiB",
    ),
    "imp, 10^8 restarts (memory)": (
        lambda m: lj.imp(m, lj.GradientIMP(restarts=10**8), key=KEY),
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
        lj.GradientIMP(initial_temperature=0.01, final_temperature=0.1)


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
