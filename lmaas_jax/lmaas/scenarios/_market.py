"""Market data: the seller's models, the customers, and each customer's scenario set.

Every class here is an `equinox.Module`, so a market is a pytree of arrays: one market per object,
many markets by `jax.vmap` over a stacked market (see `stack_markets`). Validation happens once, at
construction, with concrete values; the error names the field and the offending value.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._checks import (
    as_float,
    check_finite,
    check_not_nan,
    check_shape,
    fail_where,
    is_concrete,
)

DEMAND, CHANNEL, VALUE = 0, 1, 2
SCENARIO_COMPONENTS = ("demand", "channel", "value")

# The vertices z of {z in {0,1}^3}, ordered by how many components deviate. Vertex k belongs to the
# budgeted set with budget Gamma iff sum(z) <= Gamma, so the first 1, 4, 7, 8 vertices are the sets
# for Gamma = 0, 1, 2, 3.
_VERTICES = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]],
    dtype=np.int32,
)


class Models(eqx.Module):
    """The seller's large models, one entry per model (shape `(M,)` for every field).

    **Fields:**

    - `accuracy`: fraction of tasks served correctly, in (0, 1].
    - `throughput`: tasks served per rented hour (task/h), > 0.
    - `payload`: semantic payload per task over the customer's channel (kbit/task), > 0.
    - `serving_cost`: seller's cost per rented hour ($/h), >= 0.
    - `training_cost`: fixed, amortised cost ($), >= 0; shifts profit, never prices.
    - `price_lo`, `price_hi`: the allowed price range ($/h), 0 <= price_lo <= price_hi < inf.
    """

    accuracy: Float[Array, " models"] = eqx.field(converter=as_float)
    throughput: Float[Array, " models"] = eqx.field(converter=as_float)
    payload: Float[Array, " models"] = eqx.field(converter=as_float)
    serving_cost: Float[Array, " models"] = eqx.field(converter=as_float)
    training_cost: Float[Array, " models"] = eqx.field(converter=as_float)
    price_lo: Float[Array, " models"] = eqx.field(converter=as_float)
    price_hi: Float[Array, " models"] = eqx.field(converter=as_float)

    def __check_init__(self):
        if not is_concrete(*jax.tree_util.tree_leaves(self)):
            return
        _check_vectors("Models", self, finite=_fields(self))
        a = np.asarray(self.accuracy)
        fail_where("Models.accuracy", (a <= 0) | (a > 1), a, "must lie in (0, 1]")
        for name in ("throughput", "payload"):
            x = np.asarray(getattr(self, name))
            fail_where(f"Models.{name}", x <= 0, x, "must be > 0")
        _check_seller_side("Models", self)

    @property
    def n_models(self) -> int:
        return self.accuracy.shape[-1]


class Customers(eqx.Module):
    """The customers, one entry per customer (shape `(N,)` for every field).

    **Fields:**

    - `comm_price`: price of moving one kbit over the customer's channel ($/kbit), >= 0.
    - `horizon`: longest rental (h), > 0 and finite.
    - `budget`: spend cap ($), > 0; `inf` means no cap.
    """

    comm_price: Float[Array, " customers"] = eqx.field(converter=as_float)
    horizon: Float[Array, " customers"] = eqx.field(converter=as_float)
    budget: Float[Array, " customers"] = eqx.field(converter=as_float)

    def __check_init__(self):
        if not is_concrete(*jax.tree_util.tree_leaves(self)):
            return
        _check_vectors("Customers", self, finite=("comm_price",))
        c = np.asarray(self.comm_price)
        fail_where("Customers.comm_price", c < 0, c, "must be >= 0")
        _check_limits("Customers", self)

    @property
    def n_customers(self) -> int:
        return self.comm_price.shape[-1]


class Market(eqx.Module):
    """One LMaaS market: models, customers and every customer's finite scenario set.

    Build it with [`lmaas_jax.Market.budgeted`][] (Bertsimas-Sim budgeted sets) or
    [`lmaas_jax.Market.explicit`][] (a given scenario array), or draw one with
    [`lmaas_jax.random_market`][]. Batch markets with [`lmaas_jax.stack_markets`][] and `jax.vmap`.

    **Fields:**

    - `models`: [`lmaas_jax.Models`][], `M` models.
    - `customers`: [`lmaas_jax.Customers`][], `N` customers.
    - `scenarios`: shape `(N, S, 3)`; the last axis is (demand in tasks, channel in kbit, value of a
      correctly served task in $), all >= 0.
    - `scenario_mask`: shape `(N, S)` bool; false marks padding. Every customer has a true entry.
    """

    models: Models
    customers: Customers
    scenarios: Float[Array, "customers scenarios 3"] = eqx.field(converter=as_float)
    scenario_mask: Bool[Array, "customers scenarios"] = eqx.field(
        converter=lambda x: jnp.asarray(x, dtype=bool)
    )

    def __check_init__(self):
        leaves = jax.tree_util.tree_leaves(self)
        if not is_concrete(*leaves):
            return
        _check_one_float_dtype("Market", leaves)
        n = self.customers.n_customers
        sc = self.scenarios
        if sc.ndim != 3 or sc.shape[0] != n or sc.shape[2] != 3 or sc.shape[1] < 1:
            raise ValueError(
                f"Market.scenarios must have shape (N={n}, S>=1, 3); got shape {tuple(sc.shape)}."
            )
        check_shape("Market.scenario_mask", self.scenario_mask, sc.shape[:2])
        mask = np.asarray(self.scenario_mask)
        empty = ~mask.any(axis=1)
        fail_where("Market.scenario_mask", empty, np.arange(n), "must give every customer a scenario")
        arr = np.asarray(sc)
        for k, comp in enumerate(SCENARIO_COMPONENTS):
            x = np.where(mask, arr[..., k], 0.0)
            fail_where(f"Market.scenarios[..., {k}] ({comp})", ~np.isfinite(x), x, "must be finite")
            fail_where(f"Market.scenarios[..., {k}] ({comp})", x < 0, x, "must be >= 0")

    @property
    def n_models(self) -> int:
        return self.models.n_models

    @property
    def n_customers(self) -> int:
        return self.customers.n_customers

    @property
    def n_scenarios(self) -> int:
        return self.scenarios.shape[-2]

    @property
    def dtype(self):
        return self.scenarios.dtype

    def astype(self, dtype) -> Market:
        """This market with every float array cast to `dtype` (e.g. `jnp.float64` under x64)."""
        return _cast_floats(self, dtype)

    @classmethod
    def budgeted(
        cls,
        models: Models,
        customers: Customers,
        nominal: Float[ArrayLike, "..."],
        deviation: Float[ArrayLike, "..."],
        gamma: ArrayLike | Sequence[int],
    ) -> Market:
        """A market whose scenario sets are budgeted (Bertsimas-Sim) uncertainty sets.

        Customer i's set is { nominal_i - deviation_i * z : z in {0,1}^3, sum(z) <= gamma_i }: the
        vertices of the polytope {z in [0,1]^3, sum z <= gamma_i}. Sets are padded to 8 scenarios
        so that markets with different gamma stack and vmap together.

        **Arguments:**

        - `models`, `customers`: as in the fields.
        - `nominal`: shape `(N, 3)`, nominal (demand, channel, value), >= 0.
        - `deviation`: shape `(N, 3)`, adverse deviations, 0 <= deviation <= nominal.
        - `gamma`: integer budget in {0, 1, 2, 3}, one for all customers or one per customer.

        **Returns:**

        A `Market` with `scenarios` of shape `(N, 8, 3)`.
        """
        nominal, deviation, mask = _budgeted_parts(customers, nominal, deviation, gamma)
        z = jnp.asarray(_VERTICES, dtype=nominal.dtype)
        scenarios = nominal[:, None, :] - deviation[:, None, :] * z[None, :, :]
        return cls(models, customers, scenarios, mask)

    @classmethod
    def explicit(
        cls,
        models: Models,
        customers: Customers,
        scenarios: Float[ArrayLike, "..."],
        scenario_mask: Bool[ArrayLike, "..."] | None = None,
    ) -> Market:
        """A market with explicitly given scenario sets (e.g. sampled from data).

        **Arguments:**

        - `models`, `customers`: as in the fields.
        - `scenarios`: shape `(N, S, 3)`: (demand, channel, value) per scenario.
        - `scenario_mask`: shape `(N, S)` bool, false for padding; default all true.
        """
        scenarios = as_float(scenarios)
        if scenario_mask is None:
            scenario_mask = jnp.ones(jnp.shape(scenarios)[:2], dtype=bool)
        return cls(models, customers, scenarios, scenario_mask)


def _check_one_float_dtype(kind: str, leaves) -> None:
    """A market's float arrays share one dtype (`kind`: the class, for the message)."""
    floats = {x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)}
    if len(floats) > 1:
        raise ValueError(
            f"{kind} arrays must share one float dtype; got {sorted(map(str, floats))}. "
            f"Use {kind}.astype(dtype)."
        )


def _cast_floats(module, dtype):
    """`module` with every float array cast to `dtype` (other arrays, e.g. masks, unchanged)."""

    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, module)


def _check_vectors(prefix: str, module, finite) -> None:
    """Every field of `module` is a 1-D array of one length >= 1, finite if named in `finite`."""
    names = _fields(module)
    shape = jnp.shape(getattr(module, names[0]))
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"{prefix}.{names[0]} must be a 1-D array of length >= 1; got shape {shape}.")
    for name in names:
        check_shape(f"{prefix}.{name}", getattr(module, name), shape)
        if name in finite:
            check_finite(f"{prefix}.{name}", getattr(module, name))


def _check_seller_side(prefix: str, x) -> None:
    """Costs and price box, shared by `Models` and `ModelPrices` (concrete values)."""
    for name in ("serving_cost", "training_cost", "price_lo", "price_hi"):
        v = np.asarray(getattr(x, name))
        fail_where(f"{prefix}.{name}", v < 0, v, "must be >= 0")
    lo, hi = np.asarray(x.price_lo), np.asarray(x.price_hi)
    fail_where(f"{prefix}.price_lo", lo > hi, lo, f"must be <= {prefix}.price_hi")


def _check_limits(prefix: str, x) -> None:
    """Horizon and budget, shared by `Customers` and `CustomerLimits` (concrete values)."""
    check_finite(f"{prefix}.horizon", x.horizon)
    check_not_nan(f"{prefix}.budget", x.budget)
    h, b = np.asarray(x.horizon), np.asarray(x.budget)
    fail_where(f"{prefix}.horizon", h <= 0, h, "must be > 0")
    fail_where(f"{prefix}.budget", b <= 0, b, "must be > 0 (use inf for no budget)")


class ModelPrices(eqx.Module):
    """The seller's side of each model in a [`lmaas_jax.ValueMarket`][]: costs and price box.

    **Fields** (shape `(M,)`): `serving_cost` ($/h), `training_cost` ($), `price_lo`, `price_hi`
    ($/h), as in [`lmaas_jax.Models`][].
    """

    serving_cost: Float[Array, " models"] = eqx.field(converter=as_float)
    training_cost: Float[Array, " models"] = eqx.field(converter=as_float)
    price_lo: Float[Array, " models"] = eqx.field(converter=as_float)
    price_hi: Float[Array, " models"] = eqx.field(converter=as_float)

    def __check_init__(self):
        if not is_concrete(*jax.tree_util.tree_leaves(self)):
            return
        _check_vectors("ModelPrices", self, finite=_fields(self))
        _check_seller_side("ModelPrices", self)

    @property
    def n_models(self) -> int:
        return self.serving_cost.shape[-1]


class CustomerLimits(eqx.Module):
    """Each customer's rental limits in a [`lmaas_jax.ValueMarket`][].

    **Fields** (shape `(N,)`): `horizon` (h, > 0, finite) and `budget` ($, > 0; `inf` for none), as
    in [`lmaas_jax.Customers`][].
    """

    horizon: Float[Array, " customers"] = eqx.field(converter=as_float)
    budget: Float[Array, " customers"] = eqx.field(converter=as_float)

    def __check_init__(self):
        if not is_concrete(*jax.tree_util.tree_leaves(self)):
            return
        _check_vectors("CustomerLimits", self, finite=())
        _check_limits("CustomerLimits", self)

    @property
    def n_customers(self) -> int:
        return self.horizon.shape[-1]


class ModelUsers(eqx.Module):
    """Each model's users (the customers who have it as an option), grouped by count.

    Built by `ValueMarket.as_option_lists()`; lets classic IMP's exact line search for model j read
    only its d_j users (the others' choices do not depend on beta_j), so a sweep over all models
    costs O(sum_j d_j (K + log d_j)) = O(N K (K + log N)) instead of O(M N (K + log N)). Models are
    grouped by d_j rounded up to a power of two (at least 8), one static shape per group: by default
    only the groups that occur, each as many rows as members; with `max_users` every width from 8
    to `max_users` (rounded up), each with M rows, so every market of one (N, M, K) and `max_users`
    has one shape (one compilation; markets that stack for `jax.vmap`).

    **Fields:**

    - `group`: shape `(M,)`, each model's group (-1: nobody values it, so its price cannot change
      the profit).
    - `row`: shape `(M,)`, its row in that group.
    - `customers`: per group, shape `(M_b, D_b)`, each member's users ascending, padded with N.
    """

    group: Int[Array, " models"]
    row: Int[Array, " models"]
    customers: tuple[Int[Array, "..."], ...]

    @staticmethod
    def of(usable: np.ndarray, max_users: int | None = None) -> ModelUsers:
        """From the `(N, M)` boolean table of who can use what (concrete); `max_users` as above
        (an error if some model has more users)."""
        n, m = usable.shape
        degree = usable.sum(axis=0)
        width = lambda d: np.maximum(8, 2 ** np.ceil(np.log2(np.maximum(d, 1)))).astype(int)  # noqa: E731
        size = width(degree)
        if max_users is None:
            widths = sorted(set(size[degree > 0].tolist()))
        else:
            if int(max_users) < int(degree.max(initial=0)):
                most = int(degree.max())
                raise ValueError(
                    f"max_users must be >= {most} (the most users of a model); got {max_users!r}."
                )
            widths = [8 * 2**i for i in range(int(np.log2(width(int(max_users)) // 8)) + 1)]
        group, row = np.full(m, -1, np.int32), np.zeros(m, np.int32)
        customers = []
        for g, s in enumerate(widths):
            members = np.flatnonzero((size == s) & (degree > 0))
            users = np.full((members.size if max_users is None else m, s), n, np.int32)
            for r, j in enumerate(members):
                who = np.flatnonzero(usable[:, j])
                users[r, : who.size] = who
            group[members], row[members] = g, np.arange(members.size)
            customers.append(jnp.asarray(users))
        return ModelUsers(jnp.asarray(group), jnp.asarray(row), tuple(customers))


class ValueMarket(eqx.Module):
    """A market given by its value table: per (customer, model), a worst-case value rate and hours.

    What the seller's side of the game reads of any market is this table (scenarios -> robust terms
    -> pricing): [`lmaas_jax.value_market`][] reduces a scenario [`lmaas_jax.Market`][] to the
    equivalent `ValueMarket`, and every pricing solver,
    [`lmaas_jax.rsr`][], [`lmaas_jax.seller_profit`][] and the HiGHS MILP accept either. Use it for
    values measured rather than generated (logs, surveys, another model's output) and for the
    unit-demand pricing benchmark ([`lmaas_jax.datasets.read_unit_demand`][]).

    Customer i renting model j for tau hours at price beta_j gets (rate_ij - beta_j) tau for
    tau <= min(hours_ij, horizon_i, budget_i / beta_j) and nothing more beyond hours_ij, so its best
    rental is tau = min(hours_ij, horizon_i, budget_i / beta_j); `hours_ij = 0` means model j is
    of no use to customer i (not an option). A scenario market's table is rate_ij = m_ij mu_j
    (worst-case margin per task times throughput) and hours_ij = Q_ij / mu_j (see
    [`lmaas_jax.value_market`][]); the two markets then give identical responses and prices.

    **Fields:**

    - `models`: [`lmaas_jax.ModelPrices`][], `M` models' costs and price boxes.
    - `customers`: [`lmaas_jax.CustomerLimits`][], `N` customers' horizons and budgets.
    - `rate`: shape `(N, M)`, worst-case value per rented hour ($/h), >= 0 and finite; with
      `option_model`, shape `(N, K)`, the value of each customer's k-th option.
    - `hours`: shaped like `rate`, the hours of model j worth renting to customer i, >= 0 and finite.
    - `option_model`: None (a dense table), or shape `(N, K)` int: option lists, the model of each
      customer's k-th option, ascending and distinct per customer, padded at the end with M (whose
      `hours` must be 0). A market where each customer values a few of many models is then priced
      in O(N K) per price vector instead of O(N M) (see Layout below); convert with
      `as_option_lists()` and `as_table()`. Responses, profits and prices are the same in both
      layouts (`tests/test_option_lists.py`).
    - `model_users`: None, or a [`lmaas_jax.ModelUsers`][] (built by `as_option_lists()`): each
      model's users, which classic IMP's line search then reads instead of every customer.
    - `cancellation`: None (0: a table of values), or shaped like `rate`: the magnitude of what
      cancels in computing `rate` from scenarios (2 c_i s_j mu_j, see [`lmaas_jax.value_market`][]).
      Rounding in `rate` scales with it, which posting prices that hold must allow for.

    **Layout.** Dense (`option_model` None): option k of every customer is model k, shape `(N, M)`.
    Option lists: option k of customer i is model `option_model[i, k]`. Every solver works on
    options and maps them to models only where a price or a per-model total needs it (the methods
    `model_ids`, `per_option`, `column`, `slot`, `chosen_model`, `per_model`, `to_dense`).
    """

    models: ModelPrices
    customers: CustomerLimits
    rate: Float[Array, "customers options"] = eqx.field(converter=as_float)
    hours: Float[Array, "customers options"] = eqx.field(converter=as_float)
    option_model: Int[Array, "customers options"] | None = None
    model_users: ModelUsers | None = None
    cancellation: Float[Array, "customers options"] | None = None

    def __check_init__(self):
        leaves = jax.tree_util.tree_leaves(self)
        if not is_concrete(*leaves):
            return
        _check_one_float_dtype("ValueMarket", leaves)
        n, m = self.customers.n_customers, self.models.n_models
        shape = (n, m)
        if self.option_model is not None:
            index = np.asarray(self.option_model)
            if index.ndim != 2 or index.shape[0] != n or not np.issubdtype(index.dtype, np.integer):
                raise ValueError(
                    f"ValueMarket.option_model must be an integer array of shape ({n}, K); got "
                    f"{index.dtype} of shape {index.shape}."
                )
            shape = index.shape
            fail_where(
                "ValueMarket.option_model",
                (index < 0) | (index > m),
                index,
                f"must be in 0..{m} ({m}: padding)",
            )
            if index.shape[1] > 1:
                step = np.diff(index, axis=1)
                bad = np.zeros(index.shape, bool)
                bad[:, 1:] = (step <= 0) & (index[:, 1:] < m)
                fail_where(
                    "ValueMarket.option_model",
                    bad,
                    index,
                    "must list each customer's models ascending and distinct, padding (M) at the end",
                )
        for name in ("rate", "hours", "cancellation"):
            x = getattr(self, name)
            if x is None:
                continue
            check_shape(f"ValueMarket.{name}", x, shape)
            check_finite(f"ValueMarket.{name}", x)
            fail_where(f"ValueMarket.{name}", np.asarray(x) < 0, x, "must be >= 0")
        if self.model_users is not None:
            if self.option_model is None:
                raise ValueError(
                    "ValueMarket.model_users needs option_model (build both with as_option_lists())."
                )
            users = self.model_users
            check_shape("ValueMarket.model_users.group", users.group, (m,))
            check_shape("ValueMarket.model_users.row", users.row, (m,))
            group = np.asarray(users.group)
            fail_where(
                "ValueMarket.model_users.group",
                (group < -1) | (group >= len(users.customers)),
                group,
                f"must be in -1..{len(users.customers) - 1}",
            )
            for g, who in enumerate(users.customers):
                who = np.asarray(who)
                fail_where(
                    f"ValueMarket.model_users.customers[{g}]",
                    (who < 0) | (who > n),
                    who,
                    f"must be in 0..{n} ({n}: padding)",
                )
        if self.option_model is not None:
            pad = np.asarray(self.option_model) == m
            hours = np.asarray(self.hours)
            fail_where("ValueMarket.hours", pad & (hours != 0), hours, "must be 0 on padding options")

    @property
    def n_models(self) -> int:
        return self.models.n_models

    @property
    def n_customers(self) -> int:
        return self.customers.n_customers

    @property
    def dtype(self):
        return self.rate.dtype

    @property
    def n_options(self) -> int:
        """Options per customer: M for a dense table, K for option lists."""
        return self.rate.shape[-1]

    def astype(self, dtype) -> ValueMarket:
        """This market with every float array cast to `dtype`."""
        return _cast_floats(self, dtype)

    @property
    def dense(self) -> bool:
        """Whether option k of every customer is model k (no option lists)."""
        return self.option_model is None

    @property
    def rounding(self) -> Float[Array, "customers options"]:
        """`cancellation`, or zeros for a table of values."""
        return jnp.zeros_like(self.rate) if self.cancellation is None else self.cancellation

    def lengths(self) -> Float[Array, "customers options"]:
        """The hours of each option worth renting within the horizon, min(hours_ik, horizon_i)
        (budgets aside: those depend on the price)."""
        return jnp.minimum(self.hours, self.customers.horizon[:, None])

    def model_ids(self) -> Int[Array, "customers options"]:
        """Each option's model (0-based), shape `(N, K)` (M on padding)."""
        if self.option_model is None:
            return jnp.broadcast_to(jnp.arange(self.rate.shape[1], dtype=jnp.int32), self.rate.shape)
        return self.option_model

    def is_model(self, j) -> Bool[Array, "customers options"]:
        """Which options are model `j` (0-based), shape `(N, K)`."""
        ids = self.model_ids()
        return ids == jnp.asarray(j).astype(ids.dtype)

    def per_option(self, x: Float[Array, " models"]) -> Float[Array, "customers options"]:
        """A per-model vector (prices, costs) at every option, shape `(N, K)` (broadcast if dense)."""
        if self.option_model is None:
            return x[None, :]
        return jnp.take(x, self.option_model, mode="clip")

    def column(self, x: Float[Array, "customers options"], j) -> Float[Array, " customers"]:
        """Each customer's entry of option array `x` at model `j` (0 where j is not its option)."""
        if self.option_model is None:
            return jax.lax.dynamic_index_in_dim(x, j, axis=1, keepdims=False)
        return jnp.sum(jnp.where(self.is_model(j), x, jnp.zeros((), x.dtype)), axis=1)

    def slot(self, customer, j):
        """The option (0-based) of model `j` in `customer`'s list (arrays of one shape; the last
        option where j is not in the list)."""
        if self.option_model is None:
            return j
        rows = self.option_model[customer]
        hit = rows == jnp.asarray(j).astype(rows.dtype)[..., None]
        return jnp.where(jnp.any(hit, axis=-1), jnp.argmax(hit, axis=-1), rows.shape[-1] - 1)

    def chosen_model(self, choice: Int[Array, " customers"]) -> Int[Array, " customers"]:
        """Options chosen (0 = none, k = option k, 1-based) as models (0 = none, j = model j)."""
        if self.option_model is None:
            return choice
        k = jnp.maximum(choice - 1, 0)
        j = jnp.take_along_axis(self.option_model, k[:, None], axis=1)[:, 0]
        return jnp.where(choice > 0, j + 1, 0).astype(choice.dtype)

    def per_model(self, values, choice, n_models: int, reduce: str, fill):
        """`values` (one per customer) reduced (`"min"`, `"max"` or `"add"`) over the customers
        who chose each model (`choice` in option terms, 0 = none), `fill` where none did: `(M,)`."""
        j = self.chosen_model(choice)
        index = jnp.where(j > 0, j - 1, n_models)
        out = jnp.full((n_models,), fill, jnp.result_type(values))
        return getattr(out.at[index], reduce)(values, mode="drop")

    def restrict(self, customers) -> ValueMarket:
        """The market of `customers` only (shape `(D,)`, N = padding: a customer with no option),
        for a line search that reads one model's users (option lists only)."""
        n = self.n_customers
        valid = (customers < n)[:, None]
        i = jnp.minimum(customers, n - 1)
        hours = jnp.where(valid, self.hours[i], jnp.zeros((), self.hours.dtype))
        limits = CustomerLimits(self.customers.horizon[i], self.customers.budget[i])
        return ValueMarket(
            self.models, limits, self.rate[i], hours, self.option_model[i], cancellation=self.rounding[i]
        )

    def to_dense(self, x, n_models: int, fill=0.0):
        """An option array `(N, K)` as a model array `(N, M)`, `fill` where a model is no option."""
        if self.option_model is None:
            return x
        rows = jnp.arange(x.shape[0])[:, None]
        out = jnp.full((x.shape[0], n_models), fill, x.dtype)
        return out.at[rows, self.option_model].set(x, mode="drop")

    def as_table(self) -> ValueMarket:
        """This market as a dense `(N, M)` table (itself if it is one)."""
        if self.option_model is None:
            return self
        n, m = self.n_customers, self.n_models
        rows = jnp.arange(n)[:, None]

        def dense(x):
            return jnp.zeros((n, m), x.dtype).at[rows, self.option_model].set(x, mode="drop")

        cancellation = None if self.cancellation is None else dense(self.cancellation)
        return ValueMarket(
            self.models, self.customers, dense(self.rate), dense(self.hours), cancellation=cancellation
        )

    def in_layout(self, layout: str = "auto") -> ValueMarket:
        """This market as option lists (`"lists"`), a dense table (`"table"`), or by the rule
        (`"auto"`): option lists where no customer has more than half of the M models as options,
        the table otherwise. Needs concrete arrays (see `as_option_lists`)."""
        check_layout(layout)
        most = int((np.asarray(self.as_table().hours) > 0).sum(axis=1).max(initial=0))
        if layout == "lists" or (layout == "auto" and 2 * most <= self.n_models):
            return self if self.option_model is not None else self.as_option_lists()
        return self.as_table()

    def as_option_lists(self, n_options: int | None = None, max_users: int | None = None) -> ValueMarket:
        """This market as option lists: each customer's usable models (hours > 0), ascending.

        `n_options` (K) defaults to the most any customer has (at least 1); a larger K pads.
        `max_users` (default: the groups that occur): every model user group up to this many users,
        each with a row per model (see [`lmaas_jax.ModelUsers`][]). Markets of one N, M, K and
        `max_users` then have one shape: `lj.imp` compiles once for all of them, and they stack for
        `jax.vmap`. Needs concrete arrays (K and the groups are shapes).
        """
        table = self.as_table()
        hours, rate = np.asarray(table.hours), np.asarray(table.rate)
        n, m = hours.shape
        usable = hours > 0
        count = usable.sum(axis=1)
        k = max(int(count.max(initial=0)), 1) if n_options is None else int(n_options)
        if k < max(int(count.max(initial=0)), 1):
            raise ValueError(
                f"n_options must be >= {int(count.max())} (the most options of a customer); got {k}."
            )
        # Stable sort puts each row's usable models first, in model order.
        order = np.argsort(~usable, axis=1, kind="stable")[:, :k]
        if k > m:
            order = np.concatenate([order, np.full((n, k - m), m)], axis=1)
        keep = np.take_along_axis(np.concatenate([usable, np.zeros((n, 1), bool)], axis=1), order, axis=1)
        index = np.where(keep, order, m).astype(np.int32)
        pick = lambda x: np.where(keep, np.take_along_axis(np.pad(x, ((0, 0), (0, 1))), order, axis=1), 0)  # noqa: E731
        return ValueMarket(
            self.models,
            self.customers,
            jnp.asarray(pick(rate), self.dtype),
            jnp.asarray(pick(hours), self.dtype),
            jnp.asarray(index),
            ModelUsers.of(usable, max_users),
            None
            if self.cancellation is None
            else jnp.asarray(pick(np.asarray(table.cancellation)), self.dtype),
        )

    @classmethod
    def from_table(
        cls,
        rate: Float[ArrayLike, "..."],
        hours: Float[ArrayLike, "..."],
        *,
        horizon: Float[ArrayLike, "..."] = 1.0,
        budget: Float[ArrayLike, "..."] = float("inf"),
        serving_cost: Float[ArrayLike, "..."] = 0.0,
        training_cost: Float[ArrayLike, "..."] = 0.0,
        price_lo: Float[ArrayLike, "..."] = 0.0,
        price_hi: Float[ArrayLike, "..."] | None = None,
        dtype=None,
    ) -> ValueMarket:
        """A `ValueMarket` from an `(N, M)` value table; scalars broadcast over customers or models.

        `price_hi` defaults to each model's highest rate (no customer rents above it); `dtype`
        defaults to `rate`'s float dtype (JAX's default float for other input).
        """
        rate = as_float(rate) if dtype is None else jnp.asarray(rate, dtype)
        dtype = rate.dtype
        if rate.ndim != 2:
            raise ValueError(f"rate must be a 2-D (customers, models) table; got shape {tuple(rate.shape)}.")
        n, m = rate.shape
        hours = jnp.asarray(hours, dtype)
        check_shape("hours", hours, (n, m))
        # The table first: price_hi's default is derived from it, and must not take the blame.
        for name, x in (("rate", rate), ("hours", hours)):
            check_finite(name, x)
            fail_where(name, np.asarray(x) < 0, x, "must be >= 0")

        def vec(name, x, size):
            x = jnp.asarray(x, dtype)
            if x.ndim == 0:
                return jnp.full((size,), x)
            check_shape(name, x, (size,))
            return x

        if price_hi is None:
            price_hi = jnp.max(jnp.where(hours > 0, rate, 0.0), axis=0)
        models = ModelPrices(
            vec("serving_cost", serving_cost, m),
            vec("training_cost", training_cost, m),
            vec("price_lo", price_lo, m),
            vec("price_hi", price_hi, m),
        )
        customers = CustomerLimits(vec("horizon", horizon, n), vec("budget", budget, n))
        return cls(models, customers, rate, hours)


def _budgeted_parts(customers, nominal, deviation, gamma):
    nominal, deviation = as_float(nominal), as_float(deviation)
    n = customers.n_customers
    check_shape("nominal", nominal, (n, 3))
    check_shape("deviation", deviation, (n, 3))
    gamma_arr = jnp.broadcast_to(jnp.asarray(gamma), (n,))
    if is_concrete(nominal, deviation, gamma_arr):
        g = np.asarray(gamma_arr)
        if not np.issubdtype(g.dtype, np.integer):
            fail_where("gamma", g != np.round(g), g, "must be an integer in {0, 1, 2, 3}")
        fail_where("gamma", (g < 0) | (g > 3), g, "must be an integer in {0, 1, 2, 3}")
        for k, comp in enumerate(SCENARIO_COMPONENTS):
            nom, dev = np.asarray(nominal[:, k]), np.asarray(deviation[:, k])
            fail_where(f"nominal[:, {k}] ({comp})", ~np.isfinite(nom), nom, "must be finite")
            fail_where(f"nominal[:, {k}] ({comp})", nom < 0, nom, "must be >= 0")
            fail_where(f"deviation[:, {k}] ({comp})", ~np.isfinite(dev), dev, "must be finite")
            fail_where(f"deviation[:, {k}] ({comp})", dev < 0, dev, "must be >= 0")
            fail_where(
                f"deviation[:, {k}] ({comp})",
                dev > nom,
                dev,
                f"must not exceed nominal {comp} (it would make {comp} negative)",
            )
    gamma_arr = gamma_arr.astype(jnp.int32)
    mask = jnp.asarray(_VERTICES.sum(axis=1), jnp.int32)[None, :] <= gamma_arr[:, None]
    return nominal, deviation, mask


def pad_scenarios(market: Market, n_scenarios: int) -> Market:
    """`market` with its scenario axis padded to `n_scenarios` (padding is masked out).

    Padding repeats each customer's first scenario so every entry stays a valid number.
    """
    s = market.n_scenarios
    if n_scenarios < s:
        raise ValueError(f"n_scenarios must be >= the market's {s} scenarios; got {n_scenarios}.")
    extra = n_scenarios - s
    if extra == 0:
        return market
    fill = jnp.repeat(market.scenarios[:, :1, :], extra, axis=1)
    scenarios = jnp.concatenate([market.scenarios, fill], axis=1)
    mask = jnp.concatenate([market.scenario_mask, jnp.zeros((market.n_customers, extra), dtype=bool)], axis=1)
    return eqx.tree_at(lambda m: (m.scenarios, m.scenario_mask), market, (scenarios, mask))


def stack_markets(markets):
    """Stack markets of equal `M` and `N` into one batched market (leading batch axis) for vmap.

    Scenario markets ([`lmaas_jax.Market`][]): scenario sets of different sizes are padded to the
    largest. Value-table markets ([`lmaas_jax.ValueMarket`][]) stack as they are.
    """
    markets = list(markets)
    if not markets:
        raise ValueError("stack_markets needs at least one market; got an empty sequence.")
    shapes = {(m.n_models, m.n_customers) for m in markets}
    if len(shapes) != 1:
        raise ValueError(f"stack_markets needs markets of one (n_models, n_customers); got {sorted(shapes)}.")
    kinds = {type(m).__name__ for m in markets}
    if len(kinds) != 1:
        raise ValueError(f"stack_markets needs markets of one kind; got {sorted(kinds)}.")
    if isinstance(markets[0], Market):
        s = max(m.n_scenarios for m in markets)
        markets = [pad_scenarios(m, s) for m in markets]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *markets)


def unstack_market(batched, index: int):
    """The `index`-th market of a batched market."""
    return jax.tree_util.tree_map(lambda x: x[index], batched)


def _fields(module) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(module)]


AnyMarket = Market | ValueMarket
"""What the pricing side accepts: a scenario market or a value-table market."""


def check_layout(layout) -> None:
    """`layout` is one of `"auto"`, `"lists"`, `"table"` (see `ValueMarket.in_layout`), else a
    ValueError naming it."""
    if layout not in ("auto", "lists", "table"):
        raise ValueError(f"layout must be 'auto', 'lists' or 'table'; got {layout!r}.")


def check_market(market, name: str = "market") -> None:
    """The entry check every solver shares: `market` is a [`lmaas_jax.Market`][] or a
    [`lmaas_jax.ValueMarket`][] (a TypeError naming the argument and what it got otherwise)."""
    if not isinstance(market, Market | ValueMarket):
        raise TypeError(
            f"{name} must be a lmaas_jax.Market or lmaas_jax.ValueMarket; got {type(market).__name__}."
        )
