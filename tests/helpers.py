"""A zoo of small markets with known answers, shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np

import lmaas_jax as lj


def one_model(dtype="float64", **overrides):
    fields = dict(
        accuracy=[1.0],
        throughput=[1.0],
        payload=[1.0],
        serving_cost=[0.0],
        training_cost=[0.0],
        price_lo=[0.0],
        price_hi=[10.0],
    )
    fields.update(overrides)
    return lj.Models(**{k: jnp.asarray(v, dtype) for k, v in fields.items()})


def customers(n, dtype="float64", comm_price=0.0, horizon=100.0, budget=np.inf):
    def col(x):
        return jnp.broadcast_to(jnp.asarray(x, dtype), (n,))

    return lj.Customers(comm_price=col(comm_price), horizon=col(horizon), budget=col(budget))


def kink_market(dtype="float64"):
    """One customer, two scenarios whose worst-case kink is neither scenario's own kink.

    Model: a = mu = s = 1, free channel. Scenario A: demand 10, value 1; scenario B: demand 4,
    value 2. Worst case min(tau, 10, 2 tau, 8) - beta tau = min(tau, 8) - beta tau, so at beta = 0.5
    the optimum is tau = 8 with value 4, while the scenarios' own kinks (4 and 10) give at most 3.
    """
    scenarios = jnp.asarray([[[10.0, 1e9, 1.0], [4.0, 1e9, 2.0]]], dtype)
    return lj.Market.explicit(one_model(dtype), customers(1, dtype), scenarios)


def random_customer_markets(dtype="float64"):
    """(name, market, prices) for the C&CG comparison: edge cases on purpose, 314 customers."""
    out = []
    key = jax.random.PRNGKey(20261122)
    k = iter(jax.random.split(key, 32))
    for gamma in (0, 1, 2, 3):
        m = lj.random_market(next(k), 4, 30, gamma=gamma, dtype=dtype)
        p = jax.random.uniform(next(k), (4,), dtype, 0.0, 1.0)
        out.append((f"gamma{gamma}", m, m.models.price_lo + p * (m.models.price_hi - m.models.price_lo)))
    m = lj.random_market(next(k), 4, 40, budget_share=1.0, dtype=dtype)
    out.append(("budgets-at-lo", m, m.models.price_lo))
    out.append(("budgets-mid", m, m.models.price_lo + 0.2 * (m.models.price_hi - m.models.price_lo)))
    out.append(("budgets-at-hi", m, m.models.price_hi))
    # Expensive channels: the margin v a - c s is negative for some models and scenarios.
    m = lj.random_market(next(k), 4, 25, deviation=0.9, dtype=dtype)
    pricey = eqx_replace_comm(m, m.customers.comm_price * 40.0)
    out.append(("negative-margins", pricey, 0.5 * (m.models.price_lo + m.models.price_hi)))
    for s in (1, 20):
        out.append((f"explicit-S{s}", *explicit_market(next(k), s, 27, dtype)))
    out.append(("kink", kink_market(dtype), jnp.asarray([0.5], dtype)))
    return out


def _between(market, fraction):
    return market.models.price_lo + fraction * (market.models.price_hi - market.models.price_lo)


def eqx_replace_comm(market, comm_price):
    import equinox as eqx

    return eqx.tree_at(lambda m: m.customers.comm_price, market, comm_price)


def explicit_market(key, n_scenarios, n_customers, dtype="float64"):
    """Scenarios sampled independently per component (value too), some budgets finite."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    base = lj.random_market(k1, 3, n_customers, gamma=0, dtype=dtype)
    nominal = base.scenarios[:, 0, :]
    noise = jax.random.uniform(k2, (n_customers, n_scenarios, 3), dtype, 0.4, 1.3)
    scenarios = nominal[:, None, :] * noise
    mask = jnp.arange(n_scenarios)[None, :] < jax.random.randint(k3, (n_customers, 1), 1, n_scenarios + 1)
    market = lj.Market.explicit(base.models, base.customers, scenarios, mask)
    u = jax.random.uniform(k4, (3,), dtype)
    prices = base.models.price_lo + u * (base.models.price_hi - base.models.price_lo)
    return market, prices


def loyal_market(key, owner, loyalty, n_customers=60, dtype="float64"):
    """A budget-free market of the default family whose customers each belong to one seller: a
    customer's value rate of the other sellers' models is multiplied by `loyalty` in [0, 1] (0: each
    seller a monopolist of its own customers; 1: the default market). Sellers 0..S-1 by `owner`;
    customers are dealt to sellers in turn."""
    owner = np.asarray(owner)
    market = lj.random_market(key, len(owner), n_customers, budget_share=0.0, dtype=dtype)
    values = lj.value_market(market)
    home = np.arange(n_customers) % (owner.max() + 1)
    scale = np.where(owner[None, :] == home[:, None], 1.0, loyalty)
    import equinox as eqx

    return eqx.tree_at(lambda v: v.rate, values, values.rate * jnp.asarray(scale, values.dtype))
