"""One entry contract for every solver: bad concrete arguments raise a ValueError or TypeError that
names the argument as the user passed it, before anything is traced or compiled (an
`EquinoxRuntimeError` from inside a compiled function, or numpy's broadcasting message, would name
neither)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax import ttc

KEY = jax.random.PRNGKey(0)


def _market(dtype):
    return lj.random_market(KEY, 2, 5, dtype=dtype)


def _no_compile():
    """Counts the programs JAX lowers meanwhile: a check that runs first lowers none."""
    from jax._src import monitoring

    events = []
    monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: events.append(name) if "lowering" in name or "compil" in name else None
    )
    return events


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda m: lj.classic_imp(m, [np.nan, 1.0]),
            ValueError,
            "prices must be finite; got nan at index 0.",
        ),
        (lambda m: lj.classic_imp(m, [1.0, -2.0]), ValueError, "prices must be >= 0; got -2.0 at index 1."),
        (lambda m: lj.classic_imp(m, [1.0]), ValueError, "prices must have shape (2,); got shape (1,)."),
        (lambda m: lj.classic_imp(m, max_sweeps=0), ValueError, "max_sweeps must be >= 1; got 0."),
        (lambda m: lj.classic_imp(m, tie_tol=np.nan), ValueError, "tie_tol must be a finite float >= 0"),
        (lambda m: lj.grid_search(m, 1), ValueError, "points_per_model must be >= 2; got 1."),
        (lambda m: lj.grid_search(m, 2.5), TypeError, "points_per_model must be an int; got 2.5"),
        (lambda m: lj.sensitivities(m, 3), TypeError, "pricing must be a function from a market"),
        (lambda m: lj.imp(m, 3, key=KEY), TypeError, "solver must be a GradientIMP or None; got 3 (int)."),
        (lambda m: lj.imp(m, key=3), TypeError, "key must be a JAX PRNG key"),
        (lambda m: lj.imp(m, key=KEY, max_steps=0), ValueError, "max_steps must be >= 1; got 0."),
        (lambda m: lj.imp(m, key=KEY, tie_tol=-1.0), ValueError, "tie_tol must be a finite float >= 0"),
        (lambda m: lj.seller_profit(m, [np.inf, 1.0]), ValueError, "prices must be finite; got inf"),
    ],
)
def test_solver_arguments_are_checked_before_compiling(call, error, message, dtype):
    market = _market(dtype)
    events = _no_compile()
    with pytest.raises(error, match=re.escape(message)):
        call(market)
    assert not events, events


@pytest.mark.parametrize(
    "call",
    [
        lambda: lj.imp("market", key=KEY),
        lambda: lj.classic_imp({"rate": 1}),
        lambda: lj.grid_search(None, 4),
        lambda: lj.rsr([1.0], [1.0]),
        lambda: lj.sensitivities(3, lambda m: m),
    ],
)
def test_a_market_argument_must_be_a_market(call):
    with pytest.raises(TypeError, match="market must be a lmaas_jax.Market or lmaas_jax.ValueMarket; got"):
        call()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_value_tables_name_the_table_not_what_is_derived_from_it(dtype):
    rate = np.array([[np.nan, 1.0], [2.0, 3.0]], dtype)
    with pytest.raises(ValueError, match=re.escape("rate must be finite; got nan at index (0, 0).")):
        lj.ValueMarket.from_table(rate, np.ones((2, 2), dtype))
    with pytest.raises(ValueError, match=re.escape("hours must be >= 0; got -1.0 at index (1, 0).")):
        lj.ValueMarket.from_table(np.ones((2, 2), dtype), np.array([[1.0, 1.0], [-1.0, 1.0]], dtype))
    with pytest.raises(ValueError, match=re.escape("hours must have shape (2, 3); got shape (3, 2).")):
        lj.ValueMarket.from_table(np.ones((2, 3), dtype), np.ones((3, 2), dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sharpness", [np.nan, -1.0, np.inf])
def test_gibbs_welfare_refuses_a_sharpness_that_is_no_number(sharpness, dtype):
    market = ttc.load_market("GSM8K", "majority", dtype=dtype)
    params = ttc.GameParams(beta=jnp.asarray(200.0, dtype))
    with pytest.raises(ValueError, match="sharpness must be finite and >= 0"):
        ttc.gibbs_welfare(market, params, jnp.asarray(sharpness, dtype))
