"""IMP's work budget (`max_work`): a smaller budget never ends higher, and `stats` says what was spent.

The oracle is the same run with more budget: the budget stops the exact stages on a prefix of the
unlimited run, so the profit reached must be nondecreasing in the budget, the work spent within
it, and an ample budget must return the unlimited run's prices bit for bit.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmaas_jax as lj
from lmaas_jax.lmaas.pricing._budget import UNLIMITED

# Small stages with every kind of step (polish, moves with sheds and raises, pairs and compound
# moves), so the budget cuts each of them somewhere along the range below.
SOLVER = lj.GradientIMP(
    ascent=lj.Ascent(steps=20, restarts=4),
    polish=lj.Polish(restarts=4, random=4),
    moves=lj.Moves(starts=4, sheds=1, raises=8, batch=16),
    lookahead=lj.LookAhead(rounds=2, compounds=4),
)


@pytest.mark.slow  # a minute of compilation per case; CI runs it in its slow step
@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_smaller_budget_never_ends_higher_and_stats_report_the_work(dtype, schedule):
    market = lj.unit_demand_market(jax.random.PRNGKey(11), 16, 12, density=5, dtype=dtype)
    key = jax.random.PRNGKey(0)
    # The last budget is the unlimited run's (max_work=None); one compilation serves all of them.
    budgets = jnp.asarray([1, 20, 60, 200, 600, 2000, 6000, UNLIMITED], jnp.int32)
    solver = SOLVER.with_schedule(schedule)
    run = jax.jit(jax.vmap(lambda b: lj.imp(market, solver, key=key, max_work=b)))
    sols = run(budgets)
    reached = np.asarray(sols.stats["profit_supremum"])
    work = np.asarray(sols.stats["work"])
    spent = np.asarray(sols.stats["budget_spent"])
    total = int(work[-1])
    assert 6000 > total > 600 and not spent[-1]  # the range covers the run
    assert np.all(np.diff(reached) >= 0), reached
    assert np.all(work <= np.asarray(budgets)), (work, budgets)
    # Short budgets stop early and say so (a step runs only where its largest cost fits, so a
    # budget a little above the unlimited run's work may still stop short); a run not stopped is
    # the unlimited run, bit for bit.
    assert spent[0] and spent[2] and reached[0] < reached[-1]
    for k in np.flatnonzero(~spent):
        assert int(work[k]) == total
        np.testing.assert_array_equal(np.asarray(sols.prices[k]), np.asarray(sols.prices[-1]))
    # The polish's best never lowers the gradient stage's best, budget or not.
    assert np.all(reached >= np.asarray(sols.stats["profit_before_polish"]) * (1 - 1e-6))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.default_run(dict(dtype="float64"))  # the other cases: slow
def test_the_polish_stops_on_a_prefix_of_its_starts(dtype):
    """The default run's cheaper check: the polish alone (no moves), budgets across its range."""
    market = lj.unit_demand_market(jax.random.PRNGKey(12), 10, 6, density=3, dtype=dtype)
    solver = lj.GradientIMP(
        ascent=lj.Ascent(steps=10, restarts=4),
        polish=lj.Polish(restarts=4, random=4),
        moves=lj.Moves(rounds=0),
    )
    budgets = jnp.asarray([1, 18, 40, 80, 160, UNLIMITED], jnp.int32)
    sols = jax.jit(jax.vmap(lambda b: lj.imp(market, solver, key=jax.random.PRNGKey(1), max_work=b)))(budgets)
    reached, work = np.asarray(sols.stats["profit_supremum"]), np.asarray(sols.stats["work"])
    spent = np.asarray(sols.stats["budget_spent"])
    assert np.all(np.diff(reached) >= 0) and np.all(work <= np.asarray(budgets))
    assert spent[0] and int(work[0]) == 0 and not spent[-1] and int(work[-1]) > 18
    for k in np.flatnonzero(~spent):
        np.testing.assert_array_equal(np.asarray(sols.prices[k]), np.asarray(sols.prices[-1]))


def test_max_work_is_checked_before_compiling():
    market = lj.unit_demand_market(jax.random.PRNGKey(0), 6, 4, density=2, dtype=jnp.float64)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=re.escape("max_work must be >= 1; got 0.")):
        lj.imp(market, key=key, max_work=0)
    with pytest.raises(TypeError, match="max_work must be an int or an integer scalar array; got 2.5"):
        lj.imp(market, key=key, max_work=2.5)
