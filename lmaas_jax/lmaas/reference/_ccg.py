"""Column-and-constraint generation (C&CG) for one customer's robust problem, with HiGHS."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from ..._checks import check_prices
from ..scenarios._market import CHANNEL, DEMAND, VALUE, Market
from ._milp import quiet_stdout


@dataclasses.dataclass(frozen=True)
class CCGResult:
    """What [`lmaas_jax.reference.ccg_rsr`][] found for one customer.

    - `choice`: 0 = no rental, j in 1..M = model j.
    - `duration`: hours rented.
    - `value`: the worst-case profit of (choice, duration), its robust value ($).
    - `lower_bounds`, `upper_bounds`: the bounds after each iteration (they meet at convergence).
    - `scenarios`: indices of the scenarios the master problem held, in the order added.
    - `converged`: whether upper - lower <= tol before `max_iterations`.
    """

    choice: int
    duration: float
    value: float
    lower_bounds: list[float]
    upper_bounds: list[float]
    scenarios: list[int]
    converged: bool

    @property
    def iterations(self) -> int:
        return len(self.upper_bounds)


def _customer_data(market: Market, prices, customer: int):
    mo, cu = market.models, market.customers
    a, mu, s = (np.asarray(x, np.float64) for x in (mo.accuracy, mo.throughput, mo.payload))
    beta = np.asarray(prices, np.float64)
    c = float(cu.comm_price[customer])
    horizon, budget = float(cu.horizon[customer]), float(cu.budget[customer])
    mask = np.asarray(market.scenario_mask[customer])
    sc = np.asarray(market.scenarios[customer], np.float64)[mask]
    margin = np.maximum(sc[:, VALUE, None] * a[None, :] - c * s[None, :], 0.0)  # (S, M)
    capacity = np.minimum(sc[:, DEMAND, None], sc[:, CHANNEL, None] / s[None, :])  # (S, M)
    with np.errstate(divide="ignore"):
        longest = np.minimum(horizon, np.where(beta > 0, budget / beta, np.inf))
    return beta, mu, margin, capacity, longest, np.flatnonzero(mask)


def _worst(beta, mu, margin, capacity, j, tau):
    """Profit in every scenario of renting model j (0-based; -1 = none) for tau hours."""
    if j < 0:
        return np.zeros(margin.shape[0])
    return margin[:, j] * np.minimum(mu[j] * tau, capacity[:, j]) - beta[j] * tau


def _master(beta, mu, margin, capacity, longest, active):
    """MILP over the scenarios in `active`: max eta s.t. eta <= profit in each of them."""
    m, k = len(beta), len(active)
    # Variables: x (m binaries), tau (m), y (k * m, tasks served per scenario), eta.
    nx, nt, ny = m, m, k * m
    n = nx + nt + ny + 1
    ix, it, iy, ie = 0, nx, nx + nt, nx + nt + ny
    rows, lo, hi = [], [], []

    def row():
        r = np.zeros(n)
        rows.append(r)
        return r

    r = row()
    r[ix : ix + m] = 1.0  # at most one model
    lo.append(-np.inf)
    hi.append(1.0)
    for j in range(m):  # tau_j <= T_j x_j
        r = row()
        r[it + j], r[ix + j] = 1.0, -longest[j]
        lo.append(-np.inf)
        hi.append(0.0)
    for q, sidx in enumerate(active):
        for j in range(m):  # y_qj <= mu_j tau_j
            r = row()
            r[iy + q * m + j], r[it + j] = 1.0, -mu[j]
            lo.append(-np.inf)
            hi.append(0.0)
        r = row()  # eta <= sum_j margin_qj y_qj - beta_j tau_j
        r[ie] = 1.0
        r[iy + q * m : iy + (q + 1) * m] = -margin[sidx]
        r[it : it + m] = beta
        lo.append(-np.inf)
        hi.append(0.0)
    ub = np.concatenate([np.ones(m), longest, np.concatenate([capacity[sidx] for sidx in active]), [np.inf]])
    lb = np.concatenate([np.zeros(nx + nt + ny), [-np.inf]])
    cost = np.zeros(n)
    cost[ie] = -1.0
    integrality = np.zeros(n)
    integrality[ix : ix + m] = 1
    with quiet_stdout():
        res = milp(
            cost,
            constraints=LinearConstraint(np.array(rows), lo, hi),
            integrality=integrality,
            bounds=Bounds(lb, ub),
            options={"mip_rel_gap": 1e-12},
        )
    if not res.success:
        raise RuntimeError(f"C&CG master problem failed: {res.message}")
    x, tau = res.x[ix : ix + m], res.x[it : it + m]
    j = int(np.argmax(x)) if x.max() > 0.5 else -1
    return j, (float(tau[j]) if j >= 0 else 0.0), float(-res.fun)


def ccg_rsr(
    market: Market,
    prices,
    customer: int,
    *,
    tol: float = 1e-9,
    max_iterations: int = 100,
) -> CCGResult:
    """Solve customer `customer`'s robust problem by column-and-constraint generation.

    Zeng and Zhao (2013): the master problem is a MILP (HiGHS through `scipy.optimize.milp`) over
    the scenarios found so far, with binaries x_j for the model, durations tau_j <= T_j x_j and one
    copy y_sj <= min(mu_j tau_j, D_s, W_s / s_j) of the recourse per scenario; it maximises eta
    subject to eta <= sum_j max(m_sj, 0) y_sj - beta_j tau_j for every held scenario, an upper
    bound on the robust value. The subproblem evaluates the master's (j, tau) in every scenario of
    the customer's finite set; its worst case is a lower bound, and the worst scenario joins the
    master. It stops when the bounds are within `tol` (relative to 1 + |bound|). Independent of
    the closed form in [`lmaas_jax.rsr`][], which it checks.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] (one market, not a batch).
    - `prices`: shape `(M,)`, $ per rented hour.
    - `customer`: index of the customer.
    - `tol`: relative stopping gap between the bounds.
    - `max_iterations`: cap on master solves.

    **Returns:**

    A [`lmaas_jax.reference.CCGResult`][].
    """
    n = market.n_customers
    if not 0 <= customer < n:
        raise ValueError(f"customer must lie in [0, {n}); got {customer}.")
    check_prices("prices", prices, market.n_models)
    beta, mu, margin, capacity, longest, scenario_ids = _customer_data(market, prices, customer)
    active = [0]  # start from the customer's first scenario (the nominal one for budgeted sets)
    best = (-1, 0.0, 0.0)  # no rental is always feasible
    lower, upper = [], []
    converged = False
    for _ in range(max_iterations):
        j, tau, ub = _master(beta, mu, margin, capacity, longest, active)
        profits = _worst(beta, mu, margin, capacity, j, tau)
        worst = int(np.argmin(profits))
        if profits[worst] > best[2]:
            best = (j, tau, float(profits[worst]))
        lower.append(best[2])
        upper.append(ub)
        if ub - best[2] <= tol * (1.0 + abs(ub)):
            converged = True
            break
        if worst in active:  # cannot happen unless HiGHS returned a suboptimal master
            break
        active.append(worst)
    j, tau, value = best
    return CCGResult(
        choice=j + 1,
        duration=tau if j >= 0 else 0.0,
        value=value,
        lower_bounds=lower,
        upper_bounds=upper,
        scenarios=[int(scenario_ids[q]) for q in active],
        converged=converged,
    )
