"""Seeded random markets from a documented "semantic communication" model family."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PRNGKeyArray

from ..._checks import check_fits, in_range, is_concrete, size
from ._market import Customers, Market, Models, ValueMarket, check_layout


def family_models(n_models: int = 4, *, capability_gap: float | ArrayLike = 0.4, dtype=None) -> Models:
    """The default "semantic communication" family of `n_models` large models.

    With size x_j = j / (M - 1) (0 = smallest; x = 0 when M = 1):

    - accuracy a_j = 0.95 - capability_gap (1 - x_j);
    - throughput mu_j = 2000 / 8^x_j task/h (smaller models are faster);
    - payload s_j = 40 * 0.3^x_j kbit/task (larger models compress better);
    - serving cost o_j = k_j mu_j $/h with per-task cost k_j = 0.002 * 10^x_j $/task;
    - training cost F_j = 20 * 10^x_j $ (amortised);
    - price box [o_j, 15 o_j] $/h.
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    m = int(n_models)
    if m < 1:
        raise ValueError(f"n_models must be >= 1; got {n_models}.")
    x = jnp.linspace(0.0, 1.0, m, dtype=dtype) if m > 1 else jnp.zeros((1,), dtype)
    throughput = 2000.0 * 8.0 ** (-x)
    serving = 0.002 * 10.0**x * throughput
    return Models(
        accuracy=(0.95 - jnp.asarray(capability_gap, dtype) * (1.0 - x)).astype(dtype),
        throughput=throughput,
        payload=40.0 * 0.3**x,
        serving_cost=serving,
        training_cost=20.0 * 10.0**x,
        price_lo=serving,
        price_hi=15.0 * serving,
    )


def random_market(
    key: PRNGKeyArray,
    n_models: int = 4,
    n_customers: int = 100,
    *,
    gamma: int | ArrayLike = 2,
    deviation: float | ArrayLike = 0.2,
    capability_gap: float | ArrayLike = 0.4,
    budget_share: float | ArrayLike = 0.5,
    dtype=None,
) -> Market:
    """Draw a market: the default family of models and `n_customers` random customers.

    Models (`n_models` >= 1, indexed by size x_j = j / (M - 1), 0 = smallest) follow
    [`lmaas_jax.family_models`][]: larger models are more accurate, slower, send smaller payloads
    and cost more per task. Customers, independently (log-U[a, b] is log-uniform):

    - value of a correctly served task v0 ~ log-U[0.01, 0.2] $/task;
    - channel price c ~ log-U[1e-5, 1e-3] $/kbit;
    - horizon H ~ U[24, 168] h; demand D0 = d H with d ~ log-U[100, 2000] task/h;
    - channel W0 = rho D0 25 kbit with rho ~ log-U[0.3, 3] (so the channel binds for some);
    - budget: with probability `budget_share` finite, B = f v0 D0 with f ~ U[0.02, 0.3], else inf;
    - budgeted uncertainty: deviations `deviation` x nominal on all three components and budget
      `gamma` (integer 0..3).

    With the defaults, at the optimal prices every model serves some customers, some customers
    opt out, some budgets bind, and demand and channel are each the worst case for some customers
    (tested).

    Works under `jax.jit`/`jax.vmap` over `key` (and over `gamma` and the float arguments, whose
    ranges are then checked when the compiled code runs, by `equinox.error_if`); `n_models`,
    `n_customers` (ints) and `dtype` are static, and a size whose market would not fit in the
    device's memory is refused before anything is allocated.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `n_models`, `n_customers`: market size.
    - `gamma`: uncertainty budget, integer in {0, 1, 2, 3}.
    - `deviation`: relative adverse deviation in [0, 1].
    - `capability_gap`: accuracy difference between the largest and smallest model, in [0, 0.9].
    - `budget_share`: probability that a customer has a finite budget, in [0, 1].
    - `dtype`: float dtype; default JAX's default float (float64 only under x64).

    **Returns:**

    A [`lmaas_jax.Market`][] built by [`lmaas_jax.Market.budgeted`][].
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    n_models, n = size("n_models", n_models), size("n_customers", n_customers)
    # Budgeted sets are padded to 8 scenarios of 3 components; with the customers' own fields and the
    # (N, M) option arrays every solver builds, about 40 + 6 M numbers per customer.
    check_fits(
        f"random_market(n_customers={n}, n_models={n_models})", n * (40 + 6 * n_models) * dtype.itemsize
    )
    deviation = in_range("deviation", deviation, 0.0, 1.0)
    capability_gap = in_range("capability_gap", capability_gap, 0.0, 0.9)
    budget_share = in_range("budget_share", budget_share, 0.0, 1.0)
    if not is_concrete(gamma):  # a concrete gamma gets Market.budgeted's message (integer in 0..3)
        gamma = in_range("gamma", gamma, 0, 3)
    models = family_models(n_models, capability_gap=capability_gap, dtype=dtype)
    keys = jax.random.split(key, 8)

    def log_uniform(k, lo, hi):
        u = jax.random.uniform(k, (n,), dtype)
        return jnp.exp(jnp.log(lo) + u * (jnp.log(hi) - jnp.log(lo))).astype(dtype)

    value = log_uniform(keys[0], 0.01, 0.2)
    comm_price = log_uniform(keys[1], 1e-5, 1e-3)
    horizon = jax.random.uniform(keys[2], (n,), dtype, 24.0, 168.0)
    demand = log_uniform(keys[3], 100.0, 2000.0) * horizon
    channel = log_uniform(keys[4], 0.3, 3.0) * demand * 25.0
    finite = jax.random.uniform(keys[5], (n,), dtype) < budget_share
    fraction = jax.random.uniform(keys[6], (n,), dtype, 0.02, 0.3)
    budget = jnp.where(finite, fraction * value * demand, jnp.inf).astype(dtype)
    customers = Customers(comm_price=comm_price, horizon=horizon, budget=budget)
    nominal = jnp.stack([demand, channel, value], axis=1)
    dev = jnp.asarray(deviation, dtype) * nominal
    return Market.budgeted(models, customers, nominal, dev, gamma)


STRESS_KINDS = ("whale", "no_gap", "identical", "gamma0", "budgets", "wide_box", "narrow_box")


def stress_market(
    kind: str, key: PRNGKeyArray, n_models: int = 4, n_customers: int = 60, *, dtype=None
) -> Market:
    """A market built to be hard for pricing solvers: one of `STRESS_KINDS`, budget-free unless named.

    - `"whale"`: customer 0's nominal demand and channel are 30x the draw, so it is worth far more
      than any other customer (and dominates the market's mean scale).
    - `"no_gap"`: no capability gap: every model is equally accurate.
    - `"identical"`: near-identical models: every model is the middle one of the family, its
      throughput, payload and costs jittered by at most 1%.
    - `"gamma0"`: no uncertainty (Gamma = 0).
    - `"budgets"`: every customer has a finite budget, most of which bind.
    - `"wide_box"`: price boxes [o_j, 1000 o_j]; `"narrow_box"`: [o_j, 1.05 o_j].

    **Arguments:** as in [`lmaas_jax.random_market`][], plus `kind`.

    **Returns:** a [`lmaas_jax.Market`][].
    """
    import equinox as eqx

    if kind not in STRESS_KINDS:
        raise ValueError(f"kind must be one of {STRESS_KINDS}; got {kind!r}.")
    k1, k2 = jax.random.split(key)
    options = dict(budget_share=0.0, dtype=dtype)
    if kind == "no_gap":
        options["capability_gap"] = 0.0
    if kind == "gamma0":
        options["gamma"] = 0
    if kind == "budgets":
        options["budget_share"] = 1.0
    market = random_market(k1, n_models, n_customers, **options)
    mo = market.models
    if kind == "whale":
        boost = jnp.ones_like(market.scenarios).at[0, :, :2].set(30.0)
        return eqx.tree_at(lambda m: m.scenarios, market, market.scenarios * boost)
    if kind == "identical":
        middle = n_models // 2
        jitter = 1.0 + 0.01 * jax.random.uniform(k2, (4, n_models), mo.accuracy.dtype, -1.0, 1.0)
        serving = mo.serving_cost[middle] * jitter[2]
        models = Models(
            accuracy=jnp.full_like(mo.accuracy, mo.accuracy[middle]),
            throughput=mo.throughput[middle] * jitter[0],
            payload=mo.payload[middle] * jitter[1],
            serving_cost=serving,
            training_cost=mo.training_cost[middle] * jitter[3],
            price_lo=serving,
            price_hi=15.0 * serving,
        )
        return eqx.tree_at(lambda m: m.models, market, models)
    if kind in ("wide_box", "narrow_box"):
        factor = 1000.0 if kind == "wide_box" else 1.05
        return eqx.tree_at(lambda m: m.models.price_hi, market, mo.serving_cost * factor)
    return market


def unit_demand_market(
    key: PRNGKeyArray,
    n_customers: int,
    n_models: int,
    *,
    density: int | None = None,
    values: tuple[int, int] = (1, 100),
    layout: str = "auto",
    dtype=None,
) -> ValueMarket:
    """A random unit-demand market: each customer values `density` models, at random integer values.

    Unit demand is the LMaaS game with one-hour rentals, no budgets and no costs (as the benchmark
    read by [`lmaas_jax.datasets.read_unit_demand`][]). Customer i values `density` distinct models
    drawn uniformly (all of them where `density` is None or equals `n_models`: a dense table), each
    at an integer drawn uniformly from `values = (lo, hi)`, as in the dense instances of Shioda,
    Tuncel and Myklebust; unvalued pairs are no option. Model j's price box is [0, the highest value
    anyone puts on j]. The shape of the market is the point: `density` (options per customer) and
    N : M are what the cost of [`lmaas_jax.imp`][] and the difficulty of the problem follow.

    Seeded by `key`: the same key gives the same market on every backend, in either dtype, with x64
    on or off (the draws are float32 and int32 whatever the mode). The sizes are static Python
    ints, so this runs eagerly (option lists need concrete arrays).

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `n_customers`, `n_models`: N and M, each >= 1.
    - `density`: models each customer values, 1..M; default None: all M (a dense table).
    - `values`: the inclusive integer range of a value, 0 <= lo <= hi.
    - `layout`: `"lists"`, `"table"` or `"auto"` (lists where 2 density <= M): see
      [`lmaas_jax.ValueMarket.in_layout`][].
    - `dtype`: float dtype; default JAX's default float.

    **Returns:**

    A [`lmaas_jax.ValueMarket`][] of `n_models` models and `n_customers` customers.
    """
    n, m = size("n_customers", n_customers), size("n_models", n_models)
    d = m if density is None else size("density", density)
    if d > m:
        raise ValueError(f"density must be at most n_models = {m} (None: all); got {density}.")
    check_layout(layout)
    try:
        lo, hi = (int(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"values must be a pair of ints (lo, hi); got {values!r}.") from None
    if not 0 <= lo <= hi:
        raise ValueError(f"values must be a range 0 <= lo <= hi; got {values!r}.")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    check_fits(f"unit_demand_market(n_customers={n}, n_models={m})", 4 * n * m * dtype.itemsize)
    k_pick, k_value = jax.random.split(key)
    # Each row's `d` smallest of M uniforms: `d` distinct models, uniformly.
    # Draws in fixed dtypes (not x64's defaults), so the market is the same whether x64 is on or not.
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_pick, (n, m), jnp.float32), axis=1), axis=1)
    valued = rank < d
    value = jax.random.randint(k_value, (n, m), lo, hi + 1, jnp.int32).astype(dtype)
    hours = valued.astype(dtype)
    market = ValueMarket.from_table(jnp.where(valued, value, 0.0), hours, horizon=1.0, dtype=dtype)
    return market.in_layout(layout)
