import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj

from .helpers import customers, one_model

GOOD_MODELS = dict(
    accuracy=[0.6, 0.9],
    throughput=[100.0, 50.0],
    payload=[10.0, 5.0],
    serving_cost=[1.0, 2.0],
    training_cost=[0.0, 5.0],
    price_lo=[1.0, 2.0],
    price_hi=[10.0, 20.0],
)


def models(**changes):
    fields = {k: np.asarray(v) for k, v in GOOD_MODELS.items()}
    fields.update({k: np.asarray(v) for k, v in changes.items()})
    return lj.Models(**fields)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"accuracy": [0.6, np.nan]}, "Models.accuracy must be finite; got nan at index 1."),
        ({"throughput": [np.inf, 50.0]}, "Models.throughput must be finite; got inf at index 0."),
        ({"accuracy": [1.5, 0.9]}, "Models.accuracy must lie in (0, 1]; got 1.5 at index 0."),
        ({"accuracy": [0.6, 0.0]}, "Models.accuracy must lie in (0, 1]; got 0.0 at index 1."),
        ({"throughput": [100.0, 0.0]}, "Models.throughput must be > 0; got 0.0 at index 1."),
        ({"payload": [-1.0, 5.0]}, "Models.payload must be > 0; got -1.0 at index 0."),
        ({"serving_cost": [1.0, -2.0]}, "Models.serving_cost must be >= 0; got -2.0 at index 1."),
        ({"training_cost": [-5.0, 0.0]}, "Models.training_cost must be >= 0; got -5.0 at index 0."),
        ({"price_lo": [-1.0, 2.0]}, "Models.price_lo must be >= 0; got -1.0 at index 0."),
        ({"price_hi": [10.0, np.inf]}, "Models.price_hi must be finite; got inf at index 1."),
        (
            {"price_lo": [11.0, 2.0]},
            "Models.price_lo must be <= Models.price_hi; got 11.0 at index 0.",
        ),
        ({"payload": [10.0, 5.0, 1.0]}, "Models.payload must have shape (2,); got shape (3,)."),
    ],
)
def test_models_validation(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        models(**changes)


@pytest.mark.parametrize(
    "field, values, message",
    [
        ("comm_price", [-1e-3, 0.0], "Customers.comm_price must be >= 0; got -0.001 at index 0."),
        ("horizon", [10.0, 0.0], "Customers.horizon must be > 0; got 0.0 at index 1."),
        ("horizon", [np.inf, 1.0], "Customers.horizon must be finite; got inf at index 0."),
        ("budget", [0.0, 1.0], "Customers.budget must be > 0 (use inf for no budget); got 0.0"),
        ("budget", [np.nan, 1.0], "Customers.budget must not be NaN; got nan at index 0."),
        ("budget", [1.0, 2.0, 3.0], "Customers.budget must have shape (2,); got shape (3,)."),
    ],
)
def test_customers_validation(field, values, message):
    fields = dict(comm_price=[1e-4, 1e-4], horizon=[10.0, 10.0], budget=[np.inf, 5.0])
    fields[field] = values
    with pytest.raises(ValueError, match=re.escape(message)):
        lj.Customers(**{k: np.asarray(v) for k, v in fields.items()})


NOMINAL = np.asarray([[100.0, 1000.0, 0.1], [50.0, 800.0, 0.2]])


@pytest.mark.parametrize(
    "nominal, deviation, gamma, message",
    [
        (
            NOMINAL,
            -0.1 * NOMINAL,
            1,
            "deviation[:, 0] (demand) must be >= 0; got -10.0 at index 0.",
        ),
        (
            NOMINAL,
            NOMINAL * np.asarray([0.0, 1.5, 0.0]),
            1,
            "deviation[:, 1] (channel) must not exceed nominal channel (it would make channel "
            "negative); got 1500.0 at index 0.",
        ),
        (
            NOMINAL,
            NOMINAL * np.asarray([0.0, 0.0, 2.0]),
            1,
            "deviation[:, 2] (value) must not exceed nominal value (it would make value negative)",
        ),
        (NOMINAL, 0.1 * NOMINAL, 4, "gamma must be an integer in {0, 1, 2, 3}; got 4 at index 0."),
        (
            NOMINAL,
            0.1 * NOMINAL,
            [0, -1],
            "gamma must be an integer in {0, 1, 2, 3}; got -1 at index 1.",
        ),
        (
            NOMINAL,
            0.1 * NOMINAL,
            1.5,
            "gamma must be an integer in {0, 1, 2, 3}; got 1.5 at index 0.",
        ),
        (
            NOMINAL * np.asarray([1.0, np.nan, 1.0]),
            0.0 * NOMINAL,
            1,
            "nominal[:, 1] (channel) must be finite; got nan at index 0.",
        ),
        (NOMINAL[:1], 0.1 * NOMINAL[:1], 1, "nominal must have shape (2, 3); got shape (1, 3)."),
    ],
)
def test_budgeted_validation(nominal, deviation, gamma, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lj.Market.budgeted(models(), customers(2), nominal, deviation, gamma)


def test_market_validation():
    m, c = models(), customers(2)
    good = np.broadcast_to(NOMINAL[:, None, :], (2, 3, 3)).copy()
    with pytest.raises(ValueError, match=re.escape("Market.scenarios must have shape (N=2, S>=1, 3)")):
        lj.Market.explicit(m, c, good[:, :, :2])
    with pytest.raises(ValueError, match=re.escape("Market.scenario_mask must have shape (2, 3)")):
        lj.Market.explicit(m, c, good, np.ones((2, 2), bool))
    mask = np.ones((2, 3), bool)
    mask[1] = False
    with pytest.raises(
        ValueError,
        match=re.escape("Market.scenario_mask must give every customer a scenario; got 1"),
    ):
        lj.Market.explicit(m, c, good, mask)
    bad = good.copy()
    bad[0, 2, 0] = -3.0
    with pytest.raises(
        ValueError,
        match=re.escape("Market.scenarios[..., 0] (demand) must be >= 0; got -3.0 at index (0, 2)."),
    ):
        lj.Market.explicit(m, c, bad)
    bad = good.copy()
    bad[1, 0, 2] = np.inf
    with pytest.raises(ValueError, match=re.escape("(value) must be finite; got inf at index (1, 0)")):
        lj.Market.explicit(m, c, bad)
    # Padding may hold anything: it is masked out.
    mask = np.ones((2, 3), bool)
    mask[1, 0] = False
    lj.Market.explicit(m, c, bad, mask)
    c32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), c)
    with pytest.raises(ValueError, match="Market arrays must share one float dtype"):
        lj.Market.explicit(
            m.__class__(**{k: jnp.asarray(v, jnp.float64) for k, v in GOOD_MODELS.items()}),
            c32,
            good.astype(np.float32),
        )


def test_budgeted_sets_are_the_polytope_vertices():
    nom = NOMINAL
    dev = 0.1 * NOMINAL
    for gamma, count in zip(range(4), (1, 4, 7, 8), strict=True):
        market = lj.Market.budgeted(models(), customers(2), nom, dev, gamma)
        assert market.scenarios.shape == (2, 8, 3)
        mask = np.asarray(market.scenario_mask)
        assert (mask.sum(axis=1) == count).all()
        sc = np.asarray(market.scenarios)[0][mask[0]]
        z = (nom[0] - sc) / dev[0]
        assert set(map(tuple, np.round(z).astype(int))) == {v for v in np.ndindex(2, 2, 2) if sum(v) <= gamma}
    per_customer = lj.Market.budgeted(models(), customers(2), nom, dev, [0, 3])
    assert np.asarray(per_customer.scenario_mask).sum(axis=1).tolist() == [1, 8]


def test_random_market_is_seeded_and_valid(dtype):
    a = lj.random_market(jax.random.PRNGKey(5), 3, 30, dtype=dtype)
    b = lj.random_market(jax.random.PRNGKey(5), 3, 30, dtype=dtype)
    c = lj.random_market(jax.random.PRNGKey(6), 3, 30, dtype=dtype)
    assert a.dtype == jnp.dtype(dtype)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.scenarios), np.asarray(c.scenarios))
    mo = a.models
    # The family: larger models are more accurate, slower, send less and cost more per task.
    assert (np.diff(np.asarray(mo.accuracy)) > 0).all()
    assert (np.diff(np.asarray(mo.throughput)) < 0).all()
    assert (np.diff(np.asarray(mo.payload)) < 0).all()
    assert (np.diff(np.asarray(mo.serving_cost / mo.throughput)) > 0).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"deviation": 1.5}, "deviation must lie in [0.0, 1.0]; got 1.5."),
        ({"budget_share": -0.1}, "budget_share must lie in [0.0, 1.0]; got -0.1."),
        ({"capability_gap": 0.95}, "capability_gap must lie in [0.0, 0.9]; got 0.95."),
        ({"gamma": 5}, "gamma must be an integer in {0, 1, 2, 3}; got 5 at index 0."),
        (
            {"n_customers": 0},
            "n_customers must be >= 1; got 0.",
        ),
    ],
)
def test_random_market_validation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lj.random_market(jax.random.PRNGKey(0), **kwargs)


def test_single_model_helper_is_valid():
    lj.Market.explicit(one_model(), customers(1), np.asarray([[[1.0, 1.0, 1.0]]]))
