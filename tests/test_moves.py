"""Allocation moves: the greatest prices that keep an assignment, against an LP; the best move,
against enumerating every re-assignment; and what the moves buy on a published instance.

Tolerances: prices to 1e-9 relative (float64) / 2e-5 (float32) of the box top against HiGHS's LP.
"""

import re
from dataclasses import replace
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

import lmaas_jax as lj
from lmaas_jax.lmaas.pricing import _lookahead as lk, _moves as mv
from lmaas_jax.lmaas.pricing._assignment import difference_constraints, keep_prices
from lmaas_jax.lmaas.pricing._moves import best_move, improve_by_moves
from lmaas_jax.lmaas.pricing._profit import exact_profit
from lmaas_jax.lmaas.robust._rsr import choose, rental_options, tie_tolerance, value_market
from lmaas_jax.reference import milp_pricing

DATA = Path(__file__).parent / "data" / "unit-demand"
RTOL = {"float32": 2e-5, "float64": 1e-9}


def _table(seed, n, m, dtype, *, unit=False, budgets=False, sparse=0.3):
    """A random value table: rates in [1, 10], hours in [0.5, 3] (1 with `unit`), some pairs no option."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(1.0, 10.0, (n, m))
    hours = np.ones((n, m)) if unit else rng.uniform(0.5, 3.0, (n, m))
    hours[rng.uniform(size=(n, m)) < sparse] = 0.0
    budget = np.where(rng.uniform(size=n) < 0.5, rng.uniform(2.0, 12.0, n), np.inf) if budgets else np.inf
    return lj.ValueMarket.from_table(
        jnp.asarray(rate, dtype),
        jnp.asarray(hours, dtype),
        horizon=jnp.asarray(rng.uniform(1.0, 4.0, n), dtype),
        budget=jnp.asarray(budget, dtype),
        price_hi=jnp.asarray(np.full(m, 10.0), dtype),
    )


def _lp_greatest(market, assign):
    """The greatest budget-free prices keeping `assign`, by HiGHS: max sum(prices) subject to
    L_ij (R_ij - p_j) >= L_ik (R_ik - p_k) and >= 0 for every customer i assigned j (linear without
    budgets). None where no price vector in the box keeps it."""
    mk = market.astype(jnp.float64)
    rate, hours = np.asarray(mk.rate), np.asarray(mk.hours)
    length = np.minimum(hours, np.asarray(mk.customers.horizon)[:, None])
    n, m = rate.shape
    rows, rhs = [], []
    for i in range(n):
        j = assign[i] - 1
        if assign[i] == 0 or length[i, j] <= 0:
            continue
        # IR: L_ij p_j <= L_ij R_ij
        row = np.zeros(m)
        row[j] = length[i, j]
        rows.append(row)
        rhs.append(length[i, j] * rate[i, j])
        for k in range(m):
            if k == j or length[i, k] <= 0:
                continue
            row = np.zeros(m)
            row[j], row[k] = length[i, j], -length[i, k]
            rows.append(row)
            rhs.append(length[i, j] * rate[i, j] - length[i, k] * rate[i, k])
    bounds = list(zip(np.asarray(mk.models.price_lo), np.asarray(mk.models.price_hi), strict=True))
    res = linprog(-np.ones(m), A_ub=np.asarray(rows), b_ub=np.asarray(rhs), bounds=bounds, method="highs")
    return res.x if res.status == 0 else None


@pytest.mark.parametrize("unit", [True, False], ids=["unit-demand", "hours"])
@pytest.mark.default_run(
    dict(unit=True, dtype="float32"), dict(unit=False, dtype="float64")
)  # the other cases: slow
def test_keep_prices_are_the_lp_greatest_prices(unit, dtype):
    """40 random (market, assignment) cases per kind: where some prices keep the assignment,
    keep_prices returns the LP's optimum (the greatest element maximises every positive sum)."""
    checked = 0
    for seed in range(40):
        market = _table(seed, 9, 4, dtype, unit=unit)
        rng = np.random.default_rng(1000 + seed)
        # An assignment prices can keep: the choices at random prices, one customer re-assigned.
        terms = value_market(market)
        prices = jnp.asarray(rng.uniform(0.0, 10.0, 4), dtype)
        assign = np.array(choose(rental_options(terms, prices), tie_tolerance(market)))
        if seed % 2:
            i = rng.integers(9)
            assign[i] = rng.integers(0, 5)
        expected = _lp_greatest(market, assign)
        got, rounds = keep_prices(terms, jnp.asarray(assign, jnp.int32), max_rounds=400)
        if expected is None:
            continue
        checked += 1
        np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=0, atol=10 * RTOL[dtype])
        if unit:  # Bellman-Ford: converged within M + 1 rounds, so the default cap is enough
            assert int(rounds) <= 4 + 1
    assert checked >= 25


@pytest.mark.default_run(dict(dtype="float32"))  # the other cases: slow
def test_keep_prices_stop_early_exactly_where_no_prices_keep_the_assignment(dtype):
    """Unit demand (difference constraints): on 60 random (market, assignment) cases of 20 x 8, with
    none to two customers re-assigned, wherever the LP finds prices that keep the assignment the
    early stop never fires (the LP's greatest prices, as without it), and wherever it finds none
    keep_prices stops before its cap of min(M, N) + 2 rounds (a negative cycle or a bound below the
    box proven), at prices where some assigned customer does not keep its option."""
    n, m = 20, 8
    feasible = infeasible = 0
    for seed in range(60):
        market = _table(seed, n, m, dtype, unit=True, sparse=0.1)
        terms = value_market(market)
        assert bool(difference_constraints(terms))
        rng = np.random.default_rng(2000 + seed)
        prices = jnp.asarray(rng.uniform(0.0, 10.0, m), dtype)
        tol = tie_tolerance(market)
        assign = np.array(choose(rental_options(terms, prices), tol))
        for i in rng.choice(n, rng.integers(0, 3), replace=False):
            assign[i] = rng.integers(0, m + 1)
        assign[np.asarray(terms.hours)[np.arange(n), np.maximum(assign - 1, 0)] == 0] = 0
        expected = _lp_greatest(market, assign)
        got, rounds = keep_prices(terms, jnp.asarray(assign, jnp.int32))
        if expected is not None:
            feasible += 1
            np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=0, atol=10 * RTOL[dtype])
            continue
        infeasible += 1
        assert int(rounds) < min(m, n) + 2
        opts = rental_options(terms, got)
        value = np.concatenate([np.zeros((n, 1)), np.where(opts.available, opts.value, -np.inf)], 1)
        own = value[np.arange(n), assign]
        assert np.any((assign > 0) & (own < value.max(1) - 1e-3))
    assert feasible >= 15 and infeasible >= 15, (feasible, infeasible)


def test_difference_constraints_only_without_budgets_and_with_one_length_per_customer(dtype):
    """The early stop's cycle rule is sound only for difference constraints: unit demand (and one
    length per customer) qualifies, hours that differ across a customer's options or a budget do
    not."""
    assert bool(difference_constraints(value_market(_table(0, 6, 3, dtype, unit=True))))
    assert not bool(difference_constraints(value_market(_table(0, 6, 3, dtype))))
    assert not bool(difference_constraints(value_market(_table(0, 6, 3, dtype, unit=True, budgets=True))))
    per_customer = _table(0, 6, 3, dtype, unit=True, sparse=0.0)
    longer = per_customer.hours * jnp.arange(1, 7, dtype=dtype)[:, None]
    per_customer = eqx.tree_at(lambda mk: mk.hours, per_customer, longer)
    assert bool(difference_constraints(value_market(per_customer)))


@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_keep_prices_with_budgets_keep_everyone_and_are_tight(dtype):
    """With budgets the constraints are not linear; check the defining properties instead: every
    assigned customer keeps its option (within rounding) and every price with an assigned customer
    is tight (a little more loses one of them: 1e-3 relative in float32, 1e-6 in float64)."""
    tol = {"float32": 1e-5, "float64": 1e-10}[dtype]
    bump = {"float32": 1e-3, "float64": 1e-6}[dtype]
    for seed in range(20):
        market = _table(seed, 10, 4, dtype, budgets=True)
        terms = value_market(market)
        rng = np.random.default_rng(seed)
        prices = jnp.asarray(rng.uniform(0.0, 10.0, 4), dtype)
        assign = choose(rental_options(terms, prices), tie_tolerance(market))
        got, _ = keep_prices(terms, assign, max_rounds=400)
        assert np.all(
            np.asarray(got) >= np.asarray(prices) * (1 - 100 * tol) - 100 * tol
        )  # prices kept it already

        def keeps(p, market=market, terms=terms, assign=assign):
            opts = rental_options(terms, p)
            value = np.concatenate([np.zeros((10, 1)), np.where(opts.available, opts.value, -np.inf)], 1)
            a = np.asarray(assign)
            own = value[np.arange(10), a]
            return (own >= value.max(1) - tol * (1 + np.abs(value[np.isfinite(value)]).max())) | (a == 0)

        assert keeps(got).all()
        for j in range(4):
            if np.any(np.asarray(assign) == j + 1) and float(got[j]) < float(market.models.price_hi[j]):
                assert not keeps(got.at[j].multiply(1 + bump)).all()


def _enumerate_moves(market, prices):
    """Every single re-assignment (each customer to each other option or freed), re-priced by the
    LP and evaluated exactly: the best exact profit."""
    terms = value_market(market)
    tol = tie_tolerance(market)
    sigma = np.array(choose(rental_options(terms, prices), tol))
    best = -np.inf
    for i in range(market.n_customers):
        for a in range(market.n_models + 1):
            if a == sigma[i] or (a > 0 and float(market.hours[i, a - 1]) == 0):
                continue
            assign = sigma.copy()
            assign[i] = a
            q = _lp_greatest(market, assign)
            if q is not None:
                best = max(best, float(exact_profit(terms, jnp.asarray(q, market.dtype), tol)))
    return best


@pytest.mark.slow  # 15 enumerations and an all_moves compilation (about 30 s); CI runs it in its slow step
def test_best_move_is_the_best_single_reassignment():
    """With every candidate allowed, best_move's profit is the best over all re-assignments that
    prices can keep (enumerated, each re-priced by an LP), on 15 unit-demand tables in float64."""
    for seed in range(15):
        market = _table(100 + seed, 8, 4, "float64", unit=True)
        terms = value_market(market)
        prices = jnp.asarray(np.random.default_rng(seed).uniform(2.0, 9.0, 4))
        _, value = best_move(terms, prices, 1e-9, inserts=8 * 4, drops=8, sheds=8)
        expected = _enumerate_moves(market, prices)
        # A candidate that no price vector keeps is still priced exactly: it can only add.
        assert float(value) >= expected - 1e-9 * abs(expected)


@pytest.mark.slow  # two all_moves compilations per table width (about 27 s); CI runs it in its slow step
def test_move_chunks_do_not_change_the_candidates(dtype):
    """`all_moves` re-prices candidates in chunks of `batch` (each chunk until its slowest converges):
    chunks of 3 (a ragged last one padded) and of 64 give every candidate the same prices and profit,
    up to the rounding of a differently compiled width."""
    eps = float(jnp.finfo(dtype).eps)
    for seed in range(3):
        market = _table(200 + seed, 12, 5, dtype, unit=seed % 2 == 0)
        terms = value_market(market)
        prices = jnp.asarray(np.random.default_rng(seed).uniform(2.0, 9.0, 5), dtype)
        counts = dict(inserts=8 * 5, drops=5, sheds=4, raises=12)
        (q3, v3), (q64, v64) = (mv.all_moves(terms, prices, 1e-6, batch=b, **counts) for b in (3, 64))
        # 40 + 5 + 4 x 4 + 12 candidates, scored in two passes (the last 4 sheds second), padded to
        # whole chunks and cut back.
        assert v3.shape == v64.shape == (73,) and np.isfinite(np.asarray(v64)).sum() >= 10
        np.testing.assert_allclose(np.asarray(v3), np.asarray(v64), rtol=64 * eps)
        np.testing.assert_allclose(np.asarray(q3), np.asarray(q64), rtol=64 * eps)


def _chain_market(tmp_path, dtype):
    """Seven consumers, four items, in the published format: item 0 sells to consumers 0 (value
    32.67) and 1 (20.1, who would take item 1 at 18.4); consumer 0 also values item 2 (25), whose
    buyer, consumer 2, is indifferent between it and item 3. From the coordinate-wise optimum
    (20.1, 19.52, 16.77, 12.6) item 0 can rise once consumer 1 leaves it only as far as item 2's
    price lets consumer 0 stay, and item 2's price rises only if consumer 2 leaves it."""
    values = {(0, 0): 32.67, (0, 2): 25.0, (1, 0): 20.1, (1, 1): 18.4, (2, 2): 19.36, (2, 3): 15.19}
    values.update({(3, 1): 19.52, (4, 1): 19.6, (5, 1): 19.7, (6, 3): 12.6})
    lines = [f"7 4 {len(values)}"] + [f"{i} {j} {v}" for (i, j), v in values.items()]
    (tmp_path / "chain.txt").write_text("\n".join(lines) + "\n")
    return lj.datasets.read_unit_demand(tmp_path / "chain.txt", dtype=dtype, layout="table")


@pytest.mark.slow  # about 30 s per dtype; CI runs it in its slow step
def test_raise_moves_break_a_chain_that_single_moves_cannot(tmp_path, dtype):
    """The chain market above (the pattern of p-n=150 .0, where imp stopped at 0.99912 of the
    optimum two re-assignments away): inserts, drops and sheds over every candidate stop at the
    coordinate-wise optimum, 128.13; a raise move (item 0 up to consumer 0's value, item 2 up with
    it, consumers 1 and 2 re-assigned at once) reaches the optimum of every assignment re-priced by
    an LP (enumerated, 431 of them), 131.47."""
    import itertools

    market = _chain_market(tmp_path, dtype)
    terms, tol = value_market(market), tie_tolerance(market)
    exact = market.astype(jnp.float64)
    options = [[0] + [j + 1 for j in range(4) if np.asarray(market.hours)[i, j] > 0] for i in range(7)]
    best = 0.0
    for assign in itertools.product(*options):
        q = _lp_greatest(market, list(assign)) if any(assign) else None
        if q is not None:
            best = max(best, float(exact_profit(value_market(exact), jnp.asarray(q), 1e-9)))
    start = lj.classic_imp(market, jnp.asarray([20.1, 19.52, 16.77, 12.6], dtype)).prices
    counts = dict(rounds=6, inserts=32, drops=7, sheds=7, sweeps=3)
    _, without, _, _ = improve_by_moves(terms, start, tol, **counts)
    prices, value, moves, _ = improve_by_moves(terms, start, tol, raises=7, **counts)
    rtol = RTOL[dtype]
    assert float(without) < best * (1 - 1e-3)
    assert float(value) == pytest.approx(best, rel=rtol) and int(moves) >= 1
    np.testing.assert_allclose(np.asarray(prices), [32.67, 18.4, 25.0, 12.6], rtol=rtol)


@pytest.mark.default_run(dict(dtype="float32"))  # the other cases: slow
def test_moves_never_lower_the_profit_and_leave_coordinate_optima(dtype):
    """From classic IMP's coordinate-wise optima on 12 tables with hours and budgets, the moves never
    lower the exact profit, and raise it on some."""
    raised = 0

    @jax.jit  # one compilation for the 12 tables (same shapes)
    def search(market):
        terms, tol = value_market(market), tie_tolerance(market)
        start = lj.classic_imp(market, market.models.price_lo).stats["prices_supremum"]
        before = exact_profit(terms, start, tol)
        return before, *improve_by_moves(terms, start, tol, rounds=6, inserts=60, drops=12, sweeps=3)[:3]

    for seed in range(12):
        market = _table(200 + seed, 12, 5, dtype, budgets=seed % 2 == 1)
        terms, tol = value_market(market), tie_tolerance(market)
        before, prices, profit, moves = search(market)
        before = float(before)
        assert float(profit) >= before
        assert float(profit) == pytest.approx(float(exact_profit(terms, prices, tol)), rel=1e-6)
        raised += float(profit) > before * (1 + 1e-6)
        assert (int(moves) > 0) == (float(profit) > before)
    assert raised >= 3


@pytest.mark.slow  # about 22 s of compilation; CI runs it in its slow step
def test_several_starts_are_searched_one_by_one_up_to_count(dtype):
    """`improve_by_moves` on a batch of starts equals one call per start for the first `count`
    starts and returns the rest unchanged; `coordinate_ascent(active=False)` returns its starts."""
    from lmaas_jax.lmaas.pricing._classic_imp import coordinate_ascent

    market = _table(300, 12, 5, dtype, budgets=True)
    terms, tol = value_market(market), tie_tolerance(market)
    mo = market.models
    u = jnp.asarray(np.random.default_rng(3).uniform(size=(4, 5)), dtype)
    starts, _, _ = coordinate_ascent(
        terms, mo.price_lo[None, :] + u * (mo.price_hi - mo.price_lo)[None, :], tol, 6
    )
    kw = dict(rounds=4, inserts=30, drops=6, sweeps=3)
    search = jax.jit(lambda p, c: improve_by_moves(terms, p, tol, count=c, **kw))
    prices, profit, moves, _ = search(starts, 2)
    for s in range(2):
        alone = search(starts[s][None, :], 1)
        np.testing.assert_array_equal(np.asarray(prices[s]), np.asarray(alone[0][0]))
        assert float(profit[s]) == float(alone[1][0])
    np.testing.assert_array_equal(np.asarray(prices[2:]), np.asarray(starts[2:]))
    assert np.all(np.asarray(moves[2:]) == 0)
    frozen, value, used = coordinate_ascent(
        terms, starts, tol, 6, active=jnp.asarray([True, False, True, False])
    )
    np.testing.assert_array_equal(np.asarray(frozen[1::2]), np.asarray(starts[1::2]))
    assert np.all(np.asarray(used[1::2]) == 0)
    exact = [float(exact_profit(terms, starts[k], tol)) for k in (1, 3)]
    np.testing.assert_array_equal(np.asarray(value[1::2]), np.asarray(exact, dtype))


@pytest.mark.slow  # four 50 x 50 solves (about 30 s); CI runs it in its slow step
def test_moves_reach_the_published_optimum_where_coordinate_ascent_stops(dtype):
    """c-n=50 .0 of the unit-demand benchmark: the polish alone stops at 0.99759 of the published
    optimum (every start and dtype, see docs/imp.md); with the moves default imp reaches it (the
    published value has five significant digits)."""
    name = "c-n=50-c=14-p=7-o=8-l=1-h=100-d=0.25.0"
    best = lj.datasets.read_published(DATA / "published.csv")[name]["best_value"]
    exact = lj.datasets.read_unit_demand(DATA / name, dtype="float64")
    without = lj.imp(exact.astype(dtype), lj.GradientIMP(moves=lj.Moves(rounds=0)), key=jax.random.PRNGKey(0))
    sol = lj.imp(exact.astype(dtype), key=jax.random.PRNGKey(0))
    assert float(without.stats["profit_supremum"]) < 0.999 * best
    held = float(lj.seller_profit(exact, sol.prices.astype(jnp.float64), tie_tol=1e-9))
    assert held >= 0.9999 * best
    assert int(sol.stats["moves"]) >= 1


def _four_models(table_seed, price_seed, dtype):
    """A 14 x 4 unit-demand table, random prices and what they induce: `(terms, tol,
    prices, opts, sigma)`."""
    market = _table(table_seed, 14, 4, dtype, unit=True, sparse=0.2)
    terms, tol = value_market(market), tie_tolerance(market)
    prices = jnp.asarray(np.random.default_rng(price_seed).uniform(1.0, 6.0, 4), dtype)
    opts = rental_options(terms, prices)
    return market, terms, tol, prices, opts, choose(opts, tol)


@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_shed_candidates_move_a_prefix_of_one_models_customers(dtype):
    """A shed candidate of customer i moves, of i's model's customers, exactly the rank_i + 1 with the
    least room before they leave (recomputed here from the values: own value less the best other,
    unit demand), each to its re-home option (kinds SHED_*; `tried` is that option until `all_moves`
    scores the inserts) or to none (FREE_BINDING); no one else."""

    checked = 0
    for seed in range(10):
        market, terms, tol, prices, opts, sigma = _four_models(400 + seed, seed, dtype)
        (customer, kind, option, valid), hood = mv._candidates(terms, prices, opts, sigma, 8, 4, 14)
        value = np.where(np.asarray(opts.available), np.asarray(opts.value, np.float64), -np.inf)
        s = np.asarray(sigma)
        own = np.where(s > 0, value[np.arange(14), np.maximum(s - 1, 0)], 0.0)
        others = np.where(np.arange(4)[None, :] == (s - 1)[:, None], -np.inf, value)
        room = own - np.maximum(others.max(axis=1), 0.0)
        for c in np.nonzero(np.asarray(valid) & (np.asarray(kind) >= mv.SHED_BINDING))[0]:
            i, k = int(customer[c]), int(kind[c])
            new = np.asarray(mv.assignment(hood, customer[c], kind[c], option[c]))
            moved = np.nonzero(new != s)[0]
            same = np.nonzero(s == s[i])[0]
            assert set(moved) <= set(same)  # only i's model's customers
            if k in (mv.SHED_BINDING, mv.FREE_BINDING, mv.SHED_TRIED):
                rank = int(hood.rank_binding[i])
                expected = same[np.argsort(room[same], kind="stable")[: rank + 1]]
                changed = set(moved) | {j for j in expected if new[j] == s[j]}  # re-homed to itself: none
                assert changed == set(expected.tolist())
                checked += 1
            target = 0 if k == mv.FREE_BINDING else np.asarray(hood.alt)[moved]
            np.testing.assert_array_equal(new[moved], np.broadcast_to(target, moved.shape))
    assert checked >= 40


def test_group_candidates_move_the_customers_who_need_no_deeper_cut(dtype):
    """A group candidate (i, o) moves customer i to option o and, with it, exactly the customers of
    i's model whose own option of o's model wins them at a price no lower than i's (recomputed here
    from the values: unit demand, so that price is the rate less what the customer gets now), each
    to that option; at least two move (a group of one is an insertion), and no one else."""
    checked = 0
    for seed in range(10):
        market, terms, tol, prices, opts, sigma = _four_models(400 + seed, seed, dtype)
        cands, hood = mv._candidates(terms, prices, opts, sigma, 8, 4, 0, 0, 56)
        customer, kind, option, valid = (np.asarray(x) for x in cands)
        rate, s = np.asarray(market.rate, np.float64), np.asarray(sigma)
        usable = np.asarray(market.hours) > 0
        p = np.asarray(prices, np.float64)
        now = np.where(s > 0, rate[np.arange(14), np.maximum(s - 1, 0)] - p[np.maximum(s - 1, 0)], 0.0)
        reach = np.where(usable, rate - np.maximum(now, 0.0)[:, None], -np.inf)  # the winning price
        assert np.sum(kind == mv.GROUP) == 56
        for c in np.nonzero(valid & (kind == mv.GROUP))[0]:
            i, k = int(customer[c]), int(option[c]) - 1
            new = np.asarray(mv.assignment(hood, customer[c], kind[c], option[c]))
            same = (s == s[i]) & (s > 0)
            joins = same & (reach[:, k] >= reach[i, k] - 1e-5 * abs(reach[i, k]))
            sure = same & (reach[:, k] >= reach[i, k] + 1e-5 * abs(reach[i, k]))  # clear of rounding
            moved = new != s
            assert moved[i] and set(np.nonzero(sure)[0]) <= set(np.nonzero(moved)[0])
            assert set(np.nonzero(moved)[0]) <= set(np.nonzero(joins)[0])
            assert np.all(new[moved] == k + 1) and moved.sum() >= 2
            checked += 1
    assert checked >= 10


def test_gain_candidates_are_the_best_insertions_the_cut_left_out(dtype):
    """The insertions ranked by gain (`gains`) are insertions (i, o) the cut did not rank, and the
    ones of highest estimated gain among those (recomputed here for unit demand: the winning price
    less the model's cost, less what cutting the model's price to it costs its current customers,
    less what i earns now); an insertion into a model nobody rents loses no customer's payment."""
    checked = 0
    for seed in range(10):
        market, terms, tol, prices, opts, sigma = _four_models(600 + seed, seed, dtype)
        (customer, kind, option, valid), _ = mv._candidates(terms, prices, opts, sigma, 4, 0, 0, 0, 0, 12)
        customer, kind, option, valid = (np.asarray(x) for x in (customer, kind, option, valid))
        assert np.sum(kind == mv.INSERT) == 4 + 12  # 4 ranked by the cut, then 12 by gain
        rate, s = np.asarray(market.rate, np.float64), np.asarray(sigma)
        p, o = np.asarray(prices, np.float64), np.zeros(4)  # `_table` markets cost nothing to serve
        usable = np.asarray(market.hours) > 0
        now = np.where(s > 0, rate[np.arange(14), np.maximum(s - 1, 0)] - p[np.maximum(s - 1, 0)], 0.0)
        win = rate - np.maximum(now, 0.0)[:, None]
        buyers = np.bincount(s, minlength=5)[1:]
        ok = usable & (np.arange(4)[None, :] != (s - 1)[:, None]) & (win >= 0.0)
        own = np.where(s > 0, p[np.maximum(s - 1, 0)] - o[np.maximum(s - 1, 0)], 0.0)
        gain = np.where(ok, win - o - (p - win) * buyers - own[:, None], -np.inf)
        cut = [(int(i), int(a) - 1) for i, a in zip(customer[:4], option[:4], strict=True)]
        by_gain = [
            (int(i), int(a) - 1)
            for i, a, v in zip(customer[4:16], option[4:16], valid[4:16], strict=True)
            if v
        ]
        assert not set(cut) & set(by_gain)
        rest = gain.copy()
        for i, a in cut:
            rest[i, a] = -np.inf
        left = np.sort(rest[np.isfinite(rest)])[::-1]
        assert len(by_gain) == min(12, left.size)
        got = np.sort([gain[i, a] for i, a in by_gain])[::-1]
        np.testing.assert_allclose(got, left[: len(by_gain)], rtol=1e-4, atol=1e-4)
        checked += len(by_gain)
    assert checked >= 60


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_group_moves_reach_the_optimum_where_single_moves_stop(dtype):
    """Worked by hand: customers 0 and 1 value model A at 10 and model B at 9.5, customer 2 values
    A at 15 and C at 12. At prices (10, 20, 12) all three rent A (profit 30), and no single move
    pays: B cut to 9.5 wins one of the first two, but A stays at 10 for the other (29.5). Moving
    both to B together frees A to rise to customer 2's 15: 9.5 + 9.5 + 15 = 34, the optimum
    (HiGHS). Group moves find it; without them the moves stop at 30."""
    rate = jnp.asarray([[10.0, 9.5, 0.0], [10.0, 9.5, 0.0], [15.0, 0.0, 12.0]], dtype)
    market = lj.ValueMarket.from_table(rate, (rate > 0).astype(dtype), price_hi=jnp.full(3, 20.0, dtype))
    terms, tol = value_market(market), tie_tolerance(market)
    prices = jnp.asarray([10.0, 20.0, 12.0], dtype)
    optimum = float(milp_pricing(market.astype(jnp.float64)).stats["objective"])
    np.testing.assert_allclose(optimum, 34.0, rtol=1e-9)
    counts = dict(rounds=4, inserts=8, drops=1, sweeps=2)
    without = improve_by_moves(terms, prices, tol, **counts)[1]
    with_groups = improve_by_moves(terms, prices, tol, **counts, groups=8)[1]
    np.testing.assert_allclose(float(without), 30.0, rtol=RTOL[dtype])
    np.testing.assert_allclose(float(with_groups), optimum, rtol=RTOL[dtype])


@pytest.mark.slow  # imp compiled twice per dtype (about 40 s); CI runs it in its slow step
def test_the_group_stage_never_ends_below_the_search_without_it(dtype):
    """Group moves and insertions by gain are scored only after the other stages stop, from their
    best prices: imp with them is never below imp without them from the same key, on budget-free
    LMaaS markets."""
    markets = [
        lj.random_market(jax.random.PRNGKey(700 + seed), 10, 12, budget_share=0.0, dtype=dtype)
        for seed in range(4)
    ]
    base = lj.GradientIMP.for_market(markets[0])
    assert base.moves.groups == 8 and base.moves.gains == 10
    without = replace(base, moves=replace(base.moves, groups=0, gains=0))
    run = lambda solver: jax.jit(lambda m: lj.imp(m, solver, key=jax.random.PRNGKey(1)))  # noqa: E731
    grouped, plain = run(base), run(without)
    for market in markets:
        a, b = grouped(market), plain(market)
        assert float(a.stats["profit_supremum"]) >= float(b.stats["profit_supremum"]) * (1 - RTOL[dtype])
        assert int(a.stats["moves"]) >= int(b.stats["moves"])


@pytest.mark.slow  # all_moves compiled per dtype (about 28 s); CI runs it in its slow step
def test_tried_sheds_re_home_where_the_insertion_scored_best(dtype):
    """`all_moves` scores the tried sheds after the inserts: a tried shed that moves one customer (its
    model's most binding) proposes that customer's best-scoring insertion, so it scores what the
    best of that customer's insert candidates scored, and never the heuristic re-home's value where
    that differs."""
    checked = differs = 0
    for seed in range(8):
        market, terms, tol, prices, opts, sigma = _four_models(500 + seed, seed, dtype)
        counts = dict(inserts=8 * 4, drops=4, sheds=14)
        (customer, kind, _, valid), hood = mv._candidates(terms, prices, opts, sigma, **counts)
        _, values = mv.all_moves(terms, prices, tol, **counts)
        customer, kind, valid, values = (np.asarray(x) for x in (customer, kind, valid, values))
        for c in np.nonzero(valid & (kind == mv.SHED_TRIED))[0]:
            i = customer[c]
            inserts = valid & (kind == mv.INSERT) & (customer == i)
            if int(hood.rank_binding[i]) != 0 or not inserts.any():
                continue
            assert values[c] == pytest.approx(values[inserts].max(), rel=RTOL[dtype])
            binding = np.nonzero(valid & (kind == mv.SHED_BINDING) & (customer == i))[0]
            differs += bool(binding.size) and values[binding[0]] < values[c] * (1 - 1e-6)
            checked += 1
    assert checked >= 20 and differs >= 1


@pytest.mark.slow  # the look-ahead's compilation (about 35 s); CI runs it in its slow step
def test_lookahead_never_lowers_the_profit_and_pairs_pay(dtype):
    """From the single moves' local optima on 12 unit-demand tables, the two-move look-ahead never
    lowers the exact profit, reports the exact profit of the prices it returns, takes a pair only
    where that raises the profit, and finds a paying pair on some tables."""
    from lmaas_jax.lmaas.pricing._lookahead import improve_by_lookahead

    kw = dict(inserts=40, drops=10, sheds=16, sweeps=3)

    @jax.jit
    def search(market):
        terms, tol = value_market(market), tie_tolerance(market)
        start = lj.classic_imp(market, market.models.price_lo).stats["prices_supremum"]
        local, before, _, _ = improve_by_moves(terms, start, tol, rounds=8, **kw)
        return before, *improve_by_lookahead(terms, local, tol, rounds=3, beam=6, moves=8, **kw)[:3]

    paid = 0
    for seed in range(12):
        market = _table(500 + seed, 16, 5, dtype, unit=True)
        terms, tol = value_market(market), tie_tolerance(market)
        before, prices, profit, pairs = search(market)
        assert float(profit) >= float(before)
        assert float(profit) == pytest.approx(float(exact_profit(terms, prices, tol)), rel=1e-6)
        assert (int(pairs) > 0) == (float(profit) > float(before))
        paid += int(pairs) > 0
    assert paid >= 1


@pytest.mark.slow  # four 50 x 50 solves (about 40 s); CI runs it in its slow step
def test_shed_moves_reach_the_published_optimum_where_single_moves_stop(dtype):
    """p-n=50 .0 of the unit-demand benchmark: inserts and drops alone stop at 0.99966 of the
    published optimum (the best model keeps three customers it should lose to three others: each
    re-homing alone costs more than it earns); with the shed moves imp reaches it. Both from 8 move
    starts and 16 random polish starts: from the defaults (48 and 48 at this size) some start's
    single moves reach it too."""
    name = "p-n=50-e=400-q=200-d=0.25.0"
    best = lj.datasets.read_published(DATA / "published.csv")[name]["best_value"]
    exact = lj.datasets.read_unit_demand(DATA / name, dtype="float64")
    market = exact.astype(dtype)
    base = lj.GradientIMP.for_market(market)
    solver = replace(base, polish=replace(base.polish, random=16), moves=replace(base.moves, starts=8))
    no_sheds = replace(solver, moves=replace(solver.moves, sheds=0), lookahead=lj.LookAhead(rounds=0))
    single = lj.imp(market, no_sheds, key=jax.random.PRNGKey(0))
    sol = lj.imp(market, solver, key=jax.random.PRNGKey(0))
    held = lambda s: float(lj.seller_profit(exact, s.prices.astype(jnp.float64), tie_tol=1e-9))  # noqa: E731
    assert held(single) < 0.9999 * best
    assert held(sol) >= 0.9999 * best  # the published value has five significant digits


def test_larger_neighbourhoods_default_on_from_many_models():
    """`GradientIMP.for_size`: below 16 models the class defaults; from 16 models sheds, raises, the
    look-ahead and batches of 8; of those, markets of at most 8192 option entries (N K) 48 random
    polish starts, 48 move starts and compound moves for every customer, else 16, 8 and none: a
    sparse market of 512 customers gets the larger pools, a dense table of 100 x 300 does not.
    Group moves, and insertions ranked by gain for every customer and option (`gains` = K), on
    tables of at most 8192 entries, whatever M. The larger pool of random starts
    holds the smaller one (same key), so the moves' best over more starts is never lower before
    the look-ahead."""
    with_gains = lambda k: replace(lj.GradientIMP(), moves=lj.Moves(gains=k))  # noqa: E731
    assert lj.GradientIMP.for_size(15, 64) == with_gains(15) and lj.GradientIMP().moves.groups == 8
    assert lj.GradientIMP.for_size(4, 2048) == with_gains(4)  # N K = 8192
    assert lj.GradientIMP.for_size(4, 30, 2) == with_gains(2) and lj.GradientIMP().moves.gains == 0
    no_groups = replace(lj.GradientIMP(), moves=lj.Moves(groups=0))
    assert lj.GradientIMP.for_size(4, 2049) == no_groups == lj.GradientIMP.for_size(4, 10**6)
    few, many = lj.GradientIMP.for_size(300, 512, 16), lj.GradientIMP.for_size(300, 513, 16)
    pools = lambda s: (s.polish.random, s.moves.starts, s.moves.groups, s.moves.gains, s.lookahead.compounds)  # noqa: E731
    assert pools(few) == (48, 48, 8, 16, 512) and pools(many) == (16, 8, 0, 0, 0)
    assert lj.GradientIMP.for_size(300, 100) == replace(
        lj.GradientIMP.for_size(300, 513, 16), moves=replace(many.moves, raises=100)
    )  # a dense table: K = M
    table = lj.unit_demand_market(jax.random.PRNGKey(0), 30, 40, density=None)
    lists = lj.unit_demand_market(jax.random.PRNGKey(0), 30, 40, density=4)
    assert lj.GradientIMP.for_market(table) == lj.GradientIMP.for_size(40, 30, 40)
    assert lj.GradientIMP.for_market(lists) == lj.GradientIMP.for_size(40, 30, lists.n_options)
    for s, n, batch in ((few, 512, 8), (many, 513, 1)):
        assert (s.moves.sheds, s.moves.raises, s.moves.batch, s.lookahead.rounds) == (4, n, batch, 4)
    assert lj.GradientIMP().lookahead.rounds == 0 and lj.GradientIMP().moves.sheds == 0
    key = jax.random.PRNGKey(3)
    for dtype in (jnp.float32, jnp.float64):  # imp draws its random prices in the market's dtype
        np.testing.assert_array_equal(
            jax.random.uniform(key, (48, 50), dtype)[:16], jax.random.uniform(key, (16, 50), dtype)
        )
    np.testing.assert_array_equal(
        jax.random.bernoulli(key, 0.25, (48, 50))[:16], jax.random.bernoulli(key, 0.25, (16, 50))
    )
    # Candidates per round: sheds per model and kind at most N, raises at most N, all capped alike.
    moves = lj.GradientIMP.for_size(50, 50).moves
    assert moves.counts(50, 50)["sheds"] == 50 and moves.counts(50, 500)["sheds"] == 200
    assert lj.GradientIMP.for_size(50, 40).moves.counts(50, 40)["raises"] == 40
    capped = lj.Moves(inserts=8, sheds=4, raises=3000, max_candidates=2048).counts(3000, 3000)
    assert capped["inserts"] + capped["drops"] + 4 * capped["sheds"] + capped["raises"] <= 2048
    assert capped["groups"] == 2048  # scored apart from the other kinds, capped on their own
    assert (
        lj.Moves(gains=3000).counts(3000, 3000)["gains"] == 2048 == lj.Moves(gains=1).counts(3, 3000)["gains"]
    )
    assert capped["inserts"] >= 1
    # Insertions per model or per customer, whichever are fewer; drops at most N.
    assert lj.Moves().counts(300, 100)["inserts"] == 800 and lj.Moves().counts(100, 300)["inserts"] == 800
    assert lj.Moves().counts(300, 100)["drops"] == 100
    explicit = lj.Moves(sheds=2, raises=5, groups=3, gains=2, batch=16)
    expected = {"inserts": 32, "drops": 4, "sheds": 8, "raises": 5, "groups": 12, "gains": 128, "batch": 16}
    assert explicit.counts(4, 64) == expected  # groups per model or per customer, whichever are fewer
    with pytest.raises(ValueError, match=re.escape("LookAhead.rounds must be >= 0; got -1.")):
        lj.LookAhead(rounds=-1)
    with pytest.raises(ValueError, match=re.escape("LookAhead.compounds must be >= 0; got -2.")):
        lj.LookAhead(compounds=-2)


@pytest.mark.slow  # two look-ahead compilations per dtype (about 60 s); CI runs it in its slow step
def test_compound_moves_reach_the_optimum_where_single_moves_and_pairs_stop(dtype):
    """On 20 x 8 unit-demand tables 40 and 74 (the two of seeds 0 to 99 where compound moves found
    more than pairs, in float64): single moves and the look-ahead's pairs stop below HiGHS's optimum
    (the MILP, float64); with compound moves (a model raised to a customer's value, the customers it
    loses received by cut prices, all at once, then coordinate ascent) the look-ahead reaches it.
    The profit reported is the exact profit at the prices returned."""
    from lmaas_jax.lmaas.pricing._lookahead import improve_by_lookahead

    n, m = 20, 8
    kw = dict(inserts=8 * m, drops=m, sheds=4 * m, raises=n, sweeps=3)

    @jax.jit
    def search(market):
        terms, tol = value_market(market), tie_tolerance(market)
        start = lj.classic_imp(market, market.models.price_lo).stats["prices_supremum"]
        local, _, _, _ = improve_by_moves(terms, start, tol, rounds=8, **kw)
        pairs = improve_by_lookahead(terms, local, tol, rounds=4, beam=8, moves=8, **kw)
        both = improve_by_lookahead(terms, local, tol, rounds=4, beam=8, moves=8, compounds=n, **kw)
        return pairs[1], both[:3]

    for seed in (40, 74):
        market = _table(seed, n, m, dtype, unit=True, sparse=0.6)
        terms, tol = value_market(market), tie_tolerance(market)
        best = float(lj.reference.milp_pricing(market.astype(jnp.float64)).stats["profit_supremum"])
        pairs, (prices, value, steps) = search(market)
        assert float(pairs) < best * (1 - 1e-3)
        assert float(value) == pytest.approx(best, rel=RTOL[dtype]) and int(steps) >= 1
        assert float(value) == pytest.approx(float(exact_profit(terms, prices, tol)), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_the_chain_lifts_the_receiving_model_and_passes_its_marginal_customer_on(dtype):
    """A compound move's chain on a three-customer market worked by hand (unit demand, prices 6, 6, 6).

    Customer 0 values model A at 10, customer 1 A at 8 and B at 7, customer 2 B at 6.2 and C at 5.8;
    they rent A, A and B (profit 18). Raising A to customer 0's value 10: customer 1 leaves for B,
    where it would pay up to 7 (its second best, A at 10, is worth nothing). Without the chain B
    keeps 6 and no cut draws anyone (customer 1 already gets B at its price): 10, 6, 6 (profit 22).
    With it, B is lifted to 7, customer 2 leaves B and C is cut to 5.8 to receive it: 10, 7, 5.8
    (profit 22.8).
    """
    rate = jnp.asarray([[10.0, 0.0, 0.0], [8.0, 7.0, 0.0], [0.0, 6.2, 5.8]], dtype)
    hours = (rate > 0).astype(dtype)
    market = lj.ValueMarket.from_table(rate, hours, price_hi=jnp.asarray([12.0, 12.0, 12.0], dtype))
    terms, tol = value_market(market), tie_tolerance(market)
    prices = jnp.asarray([6.0, 6.0, 6.0], dtype)
    sigma = choose(rental_options(terms, prices), tol)
    model, top, _, ok = lk.raisable(terms, prices, sigma)
    assert np.asarray(terms.chosen_model(sigma)).tolist() == [1, 1, 2] and bool(ok[0])
    buyers = terms.per_model(jnp.ones(3, dtype), sigma, 3, "add", jnp.zeros((), dtype))
    rtol = 4 * float(np.finfo(dtype).eps)
    for chain, want, profit in ((False, [10.0, 6.0, 6.0], 22.0), (True, [10.0, 7.0, 5.8], 22.8)):
        got = lk.raised_and_received(terms, prices, sigma, model, top, buyers, tol, 0, False, chain)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol)
        np.testing.assert_allclose(float(exact_profit(terms, got, tol)), profit, rtol=rtol)
    # The compound moves from (6, 6, 6) find at least the chain's proposal.
    _, value, _ = lk.best_compound_move(terms, prices, tol, count=3, sweeps=3)
    assert float(value) >= 22.8 * (1 - rtol)
