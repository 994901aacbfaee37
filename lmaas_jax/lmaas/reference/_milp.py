"""The seller's exact single-level MILP for markets without binding budgets, solved by HiGHS."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from ..pricing._assignment import keep_prices
from ..pricing._classic_imp import coordinate_ascent
from ..pricing._posting import posted_solution
from ..pricing._solution import PricingSolution
from ..robust._rsr import tie_tolerance, value_market
from ..scenarios._market import AnyMarket, ValueMarket

_QUIET_LOCK = threading.Lock()
_quiet = {"depth": 0, "fd": 1, "saved": -1}


@contextlib.contextmanager
def quiet_stdout():
    """Silence the C-level standard output for the duration: HiGHS prints debug lines
    (`HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();`) even with
    `disp=False`, straight to file descriptor 1, past Python's `sys.stdout`.

    Safe to nest and to enter from several threads at once (sub-MILPs solved in parallel): the
    first caller redirects the descriptor, the last to leave restores it. Two callers each saving
    and restoring it themselves could restore each other's redirect and leave it silenced."""
    with _QUIET_LOCK:
        if _quiet["depth"] == 0:
            try:
                fd = sys.stdout.fileno()
            except (AttributeError, OSError, ValueError):  # no descriptor (a notebook, a captured stream)
                fd = 1
            sys.stdout.flush()
            saved = os.dup(fd)
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), fd)
            _quiet.update(fd=fd, saved=saved)
        _quiet["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet["depth"] -= 1
            if _quiet["depth"] == 0:
                os.dup2(_quiet["saved"], _quiet["fd"])
                os.close(_quiet["saved"])


def _budget_free(market: ValueMarket) -> tuple[np.ndarray, np.ndarray]:
    """Rental lengths L_ij = min(hours_ij, H_i) and rates R_ij = m_ij mu_j; errors if a budget binds."""
    mo, cu = market.models, market.customers
    hours = np.asarray(
        market.to_dense(market.hours, market.n_models), np.float64
    )  # (N, M) for option lists too
    length = np.minimum(hours, np.asarray(cu.horizon, np.float64)[:, None])
    budget = np.asarray(cu.budget, np.float64)
    # A budget can bind somewhere in the box iff hi_j L_ij > B_i for some model j.
    spend = np.max(np.asarray(mo.price_hi, np.float64)[None, :] * length, axis=1)
    bad = budget < spend
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            "milp_pricing needs budgets that never bind in the price box (the MILP's durations must "
            f"not depend on prices); Customers.budget got {float(budget[i])!r} at index {i}, below the "
            f"{float(spend[i])!r} this customer could spend. Use grid_search or imp for such markets."
        )
    rate = np.asarray(market.to_dense(market.rate, market.n_models), np.float64)
    return length, rate


def milp_pricing(
    market: AnyMarket,
    *,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-9,
) -> PricingSolution:
    """Exact optimal prices by one MILP (HiGHS through `scipy.optimize.milp`), for budget-free markets.

    When no budget binds, customer i's optimal duration of model j, L_ij = min(hours_ij, H_i), does
    not depend on the prices (see [`lmaas_jax.rsr`][]), and renting j is worth
    R_ij L_ij - beta_j L_ij, R_ij = m_ij mu_j. With binaries z_ij (z_i0 = no rental, one per
    customer), price variables beta_j in the box and w_ij = z_ij beta_j linearised by McCormick
    (exact for binary z):

        max  sum_ij L_ij (w_ij - o_j z_ij) - sum_j F_j
        s.t. sum_j z_ij = 1 (j = 0..M);
             sum_j (R_ij L_ij z_ij - L_ij w_ij) >= R_il L_il - L_il beta_l  for every model l, and >= 0;
             lo_j z_ij <= w_ij <= hi_j z_ij,  beta_j - hi_j (1 - z_ij) <= w_ij <= beta_j - lo_j (1 - z_ij).

    The constraints say that each customer's pick is a robust best response; the objective then
    picks the seller's favourite among the customer's ties, which is exactly the strong Stackelberg
    convention of [`lmaas_jax.rsr`][]. This is the formulation a practitioner would write by hand:
    the exact oracle for small markets and the peer our benchmarks compare against.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][] (one market) whose budgets
      cannot bind in the price box.
    - `time_limit`: HiGHS time limit in seconds.
    - `mip_rel_gap`: HiGHS relative optimality gap.

    **Returns:**

    A [`lmaas_jax.PricingSolution`][] whose `profit` is [`lmaas_jax.seller_profit`][] at the MILP's
    prices snapped onto the exact breakpoints (see the code: HiGHS's feasibility tolerance) and then
    moved off them so they hold when posted (`stats["profit_supremum"]`: the profit before), with
    `stats` holding `objective` (the MILP's own value), `status`, `message`, `mip_gap`,
    `dual_bound`, `optimal`, `seconds`, `raw_prices` (HiGHS's) and `assignment` (each customer's
    option in the MILP, 0 = none).
    """
    values = value_market(market)
    length, rate = _budget_free(values)
    mo = market.models
    lo, hi = np.asarray(mo.price_lo, np.float64), np.asarray(mo.price_hi, np.float64)
    cost = np.asarray(mo.serving_cost, np.float64)
    fixed = float(np.sum(np.asarray(mo.training_cost, np.float64)))
    n, m = length.shape
    usable = length > 0
    # Variable layout: beta (m), then per customer: z_i0, z_i1..z_im, w_i1..w_im.
    per = 1 + 2 * m
    nv = m + n * per

    def z(i, j):  # j = 0..m
        return m + i * per + j

    def w(i, j):  # j = 1..m
        return m + i * per + m + j

    rows, cols, vals, lbs, ubs = [], [], [], [], []
    r = 0

    def add(entries, lb, ub):
        nonlocal r
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        lbs.append(lb)
        ubs.append(ub)
        r += 1

    objective = np.zeros(nv)
    for i in range(n):
        add([(z(i, j), 1.0) for j in range(m + 1)], 1.0, 1.0)
        chosen = []
        for j in range(1, m + 1):
            if not usable[i, j - 1]:  # no option: z_ij = w_ij = 0 by their bounds, no rows (sparse tables)
                continue
            L, R = length[i, j - 1], rate[i, j - 1]
            objective[w(i, j)] = -L
            objective[z(i, j)] = cost[j - 1] * L
            chosen += [(z(i, j), R * L), (w(i, j), -L)]
            b = j - 1
            add([(w(i, j), 1.0), (z(i, j), -lo[b])], 0.0, np.inf)
            add([(w(i, j), 1.0), (z(i, j), -hi[b])], -np.inf, 0.0)
            add([(w(i, j), 1.0), (b, -1.0), (z(i, j), -hi[b])], -hi[b], np.inf)
            add([(w(i, j), 1.0), (b, -1.0), (z(i, j), -lo[b])], -np.inf, -lo[b])
        add(chosen, 0.0, np.inf)  # no worse than not renting
        for alt in range(m):
            if usable[i, alt]:
                L, R = length[i, alt], rate[i, alt]
                add(chosen + [(alt, L)], R * L, np.inf)  # chosen value >= (R - beta_alt) L
    lb = np.zeros(nv)
    ub = np.ones(nv)
    lb[:m], ub[:m] = lo, hi
    for i in range(n):
        for j in range(1, m + 1):
            ub[w(i, j)] = hi[j - 1]
            if not usable[i, j - 1]:
                ub[z(i, j)] = ub[w(i, j)] = 0.0
    integrality = np.ones(nv)
    integrality[:m] = 0
    for i in range(n):
        for j in range(1, m + 1):
            integrality[w(i, j)] = 0
    a = coo_array((vals, (rows, cols)), shape=(r, nv)).tocsr()
    start = time.perf_counter()
    options = {"time_limit": float(time_limit), "mip_rel_gap": float(mip_rel_gap), "disp": False}

    def solve(**extra):
        with quiet_stdout():
            return milp(
                objective,
                constraints=LinearConstraint(a, lbs, ubs),
                integrality=integrality,
                bounds=Bounds(lb, ub),
                options={**options, **extra},
            )

    res = solve()
    if res.x is None and res.status == 4:
        # HiGHS's presolve occasionally ends in "Solve error" on these big-M models (seen on a
        # 2 x 8 market); the same model without presolve solves.
        res = solve(presolve=False, time_limit=max(float(time_limit) - (time.perf_counter() - start), 1.0))
    seconds = time.perf_counter() - start
    if res.x is None:
        raise RuntimeError(f"HiGHS found no feasible prices: {res.message}")
    raw_prices = jnp.clip(jnp.asarray(res.x[:m], market.dtype), mo.price_lo, mo.price_hi)
    assignment = np.asarray([int(np.argmax(res.x[z(i, 0) : z(i, 0) + m + 1])) for i in range(n)], np.int32)
    tol = tie_tolerance(market)
    # HiGHS meets the follower constraints only to its feasibility tolerance, so its prices can sit a
    # hair past a customer's breakpoint, where that customer walks away. Snap them onto the exact
    # breakpoints by steepest exact coordinate moves (classic IMP's line search), which never lower
    # the profit; steepest, because a cyclic first move can spoil a tie elsewhere. Where that loses
    # a customer the MILP assigned, the greatest prices keeping the MILP's assignment do better.
    # Then move them off the breakpoints so they hold when posted, as every solver does.
    # The stats are merged outside the compiled function: as static Python values they would
    # recompile it on every call (2.8 s per call at 2 x 8).
    sol = _snap_and_post(market, values, raw_prices, jnp.asarray(assignment), tol)
    return eqx.tree_at(
        lambda s: s.stats,
        sol,
        {
            **sol.stats,
            "objective": -float(res.fun) - fixed,
            "status": int(res.status),
            "message": str(res.message),
            "optimal": bool(res.status == 0),
            "mip_gap": float(getattr(res, "mip_gap", np.nan)),
            "dual_bound": -float(getattr(res, "mip_dual_bound", np.nan)) - fixed,
            "seconds": seconds,
            "raw_prices": raw_prices,
            "assignment": assignment,
        },
    )


def kept_prices(values, assignment, start=None):
    """The greatest prices (at most `start`, default `price_hi`) at which every customer keeps its
    model in `assignment` (shape `(N,)`, 0 = none, j = model j, 1-based, as the MILP assigns), in
    either layout of `values`."""
    n = values.n_customers
    option = values.slot(jnp.arange(n), jnp.maximum(assignment - 1, 0)) + 1
    kept, _ = keep_prices(values, jnp.where(assignment > 0, option, 0).astype(jnp.int32), start=start)
    return kept


@eqx.filter_jit
def _snap_and_post(market, values, raw_prices, assignment, tol):
    # Two starts polished together: HiGHS's prices, and the greatest prices that keep the MILP's own
    # assignment (they earn at least what it does, wherever its prices sat a hair past a
    # breakpoint); the second is taken only where it earns more.
    starts = jnp.stack([raw_prices, kept_prices(values, assignment)])
    prices, profit, _ = coordinate_ascent(values, starts, tol, 4 * market.n_models, steepest=True)
    return posted_solution(market, values, prices[jnp.argmax(profit)], tol)
