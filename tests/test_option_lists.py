"""Option lists (`ValueMarket.option_model`): the sparse layout gives what the dense table gives.

The oracle is the same market as a dense (N, M) table, priced by the code path every other test
checks against brute force, HiGHS and closed forms.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax.lmaas.pricing._assignment import keep_prices
from lmaas_jax.lmaas.pricing._classic_imp import coordinate_ascent
from lmaas_jax.lmaas.pricing._line_search import best_on_line, best_on_line_among
from lmaas_jax.lmaas.robust._rsr import value_market


def _market(seed, dtype, n=30, m=9, density=0.35):
    """A value market where each customer values a few models, with budgets and serving costs."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(1.0, 10.0, (n, m))
    hours = np.where(rng.random((n, m)) < density, rng.uniform(0.5, 2.0, (n, m)), 0.0)
    hours[:, 0] = np.where(hours.sum(axis=1) == 0, 1.0, hours[:, 0])  # everyone has an option
    # Planted ties: customer 1 values model 2 exactly as customer 0 does.
    rate[1], hours[1] = rate[0], hours[0]
    return lj.ValueMarket.from_table(
        rate,
        hours,
        horizon=1.5,
        budget=rng.uniform(2.0, 20.0, n),
        serving_cost=rng.uniform(0.0, 1.0, m),
        dtype=dtype,
    )


def _tol(dtype):
    return 1e-5 if dtype == "float32" else 1e-9


def test_layouts_convert_both_ways(dtype):
    table = _market(0, dtype)
    lists = table.as_option_lists()
    assert lists.n_options < table.n_models and lists.dtype == table.dtype
    ids = np.asarray(lists.option_model)
    hours = np.asarray(table.hours)
    # Each customer's usable models, ascending, padded with M.
    for i in range(table.n_customers):
        usable = np.flatnonzero(hours[i] > 0)
        np.testing.assert_array_equal(ids[i, : len(usable)], usable)
        assert np.all(ids[i, len(usable) :] == table.n_models)
    back = lists.as_table()
    np.testing.assert_array_equal(np.asarray(back.hours), hours)
    np.testing.assert_array_equal(np.asarray(back.rate), np.where(hours > 0, np.asarray(table.rate), 0.0))
    assert table.as_option_lists(n_options=lists.n_options + 3).n_options == lists.n_options + 3
    with pytest.raises(ValueError, match="n_options must be >= "):
        table.as_option_lists(n_options=1)


def test_responses_and_profits_agree(dtype):
    rng = np.random.default_rng(1)
    for seed in range(3):
        table = _market(seed, dtype)
        lists = table.as_option_lists()
        for _ in range(4):
            prices = jnp.asarray(rng.uniform(0.0, 9.0, table.n_models), dtype)
            a, b = lj.rsr(table, prices), lj.rsr(lists, prices)
            np.testing.assert_array_equal(np.asarray(a.choice), np.asarray(b.choice))
            for field in ("duration", "seller_margin", "robust_values", "model_durations"):
                np.testing.assert_array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(b, field)))
            p1, p2 = float(lj.seller_profit(table, prices)), float(lj.seller_profit(lists, prices))
            assert p1 == pytest.approx(p2, rel=4 * float(jnp.finfo(dtype).eps))
            r1, r2 = lj.relaxed_rsr(table, prices, 0.5), lj.relaxed_rsr(lists, prices, 0.5)
            rtol = 16 * float(jnp.finfo(dtype).eps)
            np.testing.assert_allclose(
                np.asarray(r1.probabilities), np.asarray(r2.probabilities), rtol=rtol, atol=rtol
            )
            np.testing.assert_allclose(
                np.asarray(r1.expected_margin), np.asarray(r2.expected_margin), rtol=rtol
            )


@pytest.mark.default_run(dict(dtype="float32"))  # the other cases: slow
def test_line_search_and_keep_prices_agree(dtype):
    """The exact step on option lists returns the dense step's price, every model, several markets;
    the greatest prices that keep an assignment are the same."""
    rng = np.random.default_rng(2)
    tol = _tol(dtype)
    line = jax.jit(best_on_line, static_argnums=3)
    for seed in range(4):
        table = _market(10 + seed, dtype)
        lists = table.as_option_lists()
        td, tl = value_market(table), value_market(lists)
        prices = jnp.asarray(rng.uniform(0.0, 9.0, table.n_models), dtype)
        for j in range(table.n_models):
            (b1, v1), (b2, v2) = (
                line(td, prices, j, tol),
                line(tl, prices, j, tol),
            )
            assert float(b1) == float(b2)
            assert float(v1) == pytest.approx(float(v2), rel=4 * float(jnp.finfo(dtype).eps))
        # A random assignment of each customer to one of its options (or free), in both layouts.
        ids = np.asarray(lists.option_model)
        slot = np.array(
            [rng.integers(0, 1 + int(np.sum(ids[i] < table.n_models))) for i in range(table.n_customers)]
        )
        model = np.where(slot > 0, ids[np.arange(table.n_customers), np.maximum(slot - 1, 0)] + 1, 0)
        q1, _ = keep_prices(td, jnp.asarray(model, jnp.int32))
        q2, _ = keep_prices(tl, jnp.asarray(slot, jnp.int32))
        np.testing.assert_array_equal(np.asarray(q1), np.asarray(q2))


@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_line_search_over_users_equals_the_full_one(dtype):
    """Reading only model j's users (`ModelUsers`) finds the full line search's best profit: the
    gain equals the full best minus the current profit, and the price returned attains it."""
    rng = np.random.default_rng(5)
    tol = _tol(dtype)
    eps = float(jnp.finfo(dtype).eps)
    cases = 0
    full = jax.jit(best_on_line, static_argnums=3)
    among = jax.jit(best_on_line_among, static_argnums=3)
    profit = jax.jit(lambda mk, p: lj.seller_profit(mk, p, tie_tol=tol))
    for seed in range(2):  # each seed's shapes compile anew: more price vectors, fewer seeds
        lists = _market(40 + seed, dtype, n=40, m=12, density=0.25).as_option_lists()
        terms = value_market(lists)
        users = lists.model_users
        for _ in range(8):
            prices = jnp.asarray(rng.uniform(0.0, 9.0, lists.n_models), dtype)
            current = float(profit(lists, prices))
            for j in range(lists.n_models):
                g = int(users.group[j])
                if g < 0:
                    continue
                who = users.customers[g][int(users.row[j])]
                b1, v1 = full(terms, prices, j, tol)
                b2, gain = among(terms, prices, j, tol, who)
                scale = 64 * eps * (abs(float(v1)) + abs(current) + 1.0)
                assert float(gain) >= 0.0
                assert float(gain) == pytest.approx(float(v1) - current, abs=scale)
                at_b2 = float(profit(lists, prices.at[j].set(b2)))
                assert at_b2 == pytest.approx(float(v1), abs=scale)
                cases += 1
    assert cases >= 150


@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_sweeps_over_users_end_at_a_coordinate_wise_optimum(dtype):
    """Coordinate ascent on option lists with users stops where no full line search improves."""
    tol = _tol(dtype)
    eps = float(jnp.finfo(dtype).eps)
    lists = _market(50, dtype, n=40, m=12, density=0.25).as_option_lists()
    terms = value_market(lists)
    prices, profit, used = coordinate_ascent(terms, lists.models.price_lo, tol, 30)
    assert int(used) < 30
    assert float(profit) == pytest.approx(float(lj.seller_profit(lists, prices, tie_tol=tol)), rel=4 * eps)
    full = jax.jit(best_on_line, static_argnums=3)
    for j in range(lists.n_models):
        _, best = full(terms, prices, j, tol)
        assert float(best) <= float(profit) + 64 * eps * abs(float(profit))


@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_classic_imp_agrees_across_layouts(dtype):
    """classic IMP: the same prices and profits on both layouts."""
    table = _market(20, dtype, n=24, m=7)
    lists = table.as_option_lists()
    eps = float(jnp.finfo(dtype).eps)
    c1, c2 = lj.classic_imp(table), lj.classic_imp(lists)
    np.testing.assert_allclose(np.asarray(c1.prices), np.asarray(c2.prices), rtol=64 * eps)
    assert float(c1.profit) == pytest.approx(float(c2.profit), rel=64 * eps)


@pytest.mark.slow  # three imp compilations per dtype (about 50 s); CI runs it in its slow step
def test_padded_user_groups_share_one_shape(dtype):
    """With `max_users`, markets of one (N, M, K) have one shape (one compilation, and they stack
    for `jax.vmap`), and classic IMP prices them as the unpadded option lists do, one at a time and
    vmapped over the stack."""
    tables = [_market(60 + s, dtype, n=24, m=7) for s in range(3)]
    k = max(t.as_option_lists().n_options for t in tables)
    padded = [t.as_option_lists(n_options=k, max_users=24) for t in tables]
    assert len({str(jax.tree_util.tree_map(lambda x: x.shape, p)) for p in padded}) == 1
    assert (
        len({str(jax.tree_util.tree_map(lambda x: x.shape, t.as_option_lists(n_options=k))) for t in tables})
        > 1
    )
    eps = float(jnp.finfo(dtype).eps)
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *padded)
    batch = jax.vmap(lj.classic_imp)(stacked)
    for i, table in enumerate(tables):
        ref = lj.classic_imp(table.as_option_lists())
        for sol in (lj.classic_imp(padded[i]), jax.tree_util.tree_map(lambda x, i=i: x[i], batch)):
            np.testing.assert_allclose(np.asarray(sol.prices), np.asarray(ref.prices), rtol=64 * eps)
            assert float(sol.profit) == pytest.approx(float(ref.profit), rel=64 * eps)
    with pytest.raises(ValueError, match="max_users must be >= "):
        tables[0].as_option_lists(max_users=2)


@pytest.mark.slow  # two compilations of imp (about 28 s); CI runs it in its slow step
def test_imp_agrees_across_layouts():
    """IMP (float64; small settings, one key): the same prices, profits and pins on both layouts."""
    table = _market(20, "float64", n=24, m=7)
    lists = table.as_option_lists()
    eps = float(jnp.finfo("float64").eps)
    solver = lj.GradientIMP(
        lj.Ascent(steps=40, restarts=4), lj.Polish(random=4), lj.Moves(rounds=2, starts=2)
    )
    key = jax.random.PRNGKey(3)
    s1, s2 = lj.imp(table, solver, key=key), lj.imp(lists, solver, key=key)
    sup1, sup2 = (float(s.stats["profit_supremum"]) for s in (s1, s2))
    assert sup1 == pytest.approx(sup2, rel=64 * eps)
    np.testing.assert_allclose(
        np.asarray(s1.stats["prices_supremum"]), np.asarray(s2.stats["prices_supremum"]), rtol=64 * eps
    )
    for field in ("kind", "customer", "other"):
        np.testing.assert_array_equal(
            np.asarray(getattr(s1.pins, field)), np.asarray(getattr(s2.pins, field))
        )
    np.testing.assert_array_equal(np.asarray(s1.response.choice), np.asarray(s2.response.choice))


def test_equilibrium_derivative_agrees():
    """The equilibrium's derivative in the values: the same on both layouts (the lists' gradient
    scattered back onto the table)."""
    table = _market(30, "float64", n=16, m=5)
    lists = table.as_option_lists()

    def revenue(mk):
        return lj.classic_imp(mk).profit

    # `equinox.filter_grad`: option lists carry an integer field, which `jax.grad` refuses.
    g1 = eqx.filter_grad(revenue)(table)
    g2 = eqx.filter_grad(revenue)(lists)
    dense = value_market(lists).to_dense(g2.rate, table.n_models)
    usable = np.asarray(table.hours) > 0
    np.testing.assert_allclose(np.asarray(dense)[usable], np.asarray(g1.rate)[usable], rtol=1e-9, atol=1e-12)
    assert np.any(np.asarray(g1.rate) != 0)


@pytest.mark.parametrize(
    "index, hours_pad, match",
    [
        ([[0, 2], [1, 1]], 0.0, "ascending and distinct"),
        ([[0, 2], [3, 1]], 0.0, "ascending and distinct"),
        ([[0, 4], [1, 2]], 0.0, r"must be in 0..3"),
        ([[0, -1], [1, 2]], 0.0, r"must be in 0..3"),
        ([[0, 3], [1, 2]], 1.0, "must be 0 on padding"),
    ],
)
def test_bad_option_lists_are_refused(index, hours_pad, match):
    base = lj.ValueMarket.from_table(np.ones((2, 3)), np.ones((2, 3)))
    hours = np.ones((2, 2))
    hours[0, 1] = hours_pad if np.asarray(index)[0, 1] == 3 else 1.0
    with pytest.raises(ValueError, match=match):
        lj.ValueMarket(base.models, base.customers, np.ones((2, 2)), hours, jnp.asarray(index, jnp.int32))


def test_option_lists_must_match_rate():
    base = lj.ValueMarket.from_table(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="ValueMarket.rate"):
        lj.ValueMarket(
            base.models,
            base.customers,
            np.ones((2, 3)),
            np.ones((2, 2)),
            jnp.asarray([[0, 1], [0, 1]], jnp.int32),
        )
    # A float array: our message, or jaxtyping's where its import hook checks annotations (tests).
    with pytest.raises((ValueError, TypeError), match="option_model"):
        lj.ValueMarket(base.models, base.customers, np.ones((2, 2)), np.ones((2, 2)), jnp.ones((2, 2)))
