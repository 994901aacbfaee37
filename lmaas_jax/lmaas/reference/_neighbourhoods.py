"""Large-neighbourhood search by the MILP: re-price a small sub-market exactly, the rest held fixed."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from ..._checks import in_range, size as at_least_one
from ..pricing._posting import posted_solution
from ..pricing._profit import exact_profit
from ..pricing._solution import PricingSolution
from ..robust._rsr import tie_tolerance, value_market
from ..scenarios._market import AnyMarket, ValueMarket
from ._milp import _budget_free, kept_prices, quiet_stdout


@dataclass(frozen=True)
class _Valuations:
    """A budget-free market as its usable options, sorted by customer: option e is model `model[e]`
    for customer `customer[e]`, worth `(rate - beta) length` to it and `(beta - cost) length` to
    the seller."""

    n: int
    m: int
    customer: np.ndarray
    model: np.ndarray
    worth: np.ndarray  # rate * length: the customer's value of the option at price 0
    length: np.ndarray
    cost: np.ndarray  # per model
    lo: np.ndarray
    hi: np.ndarray  # per model, at most the highest rate of any user (above it nobody buys)
    first: np.ndarray  # (n + 1,): customer i's options are first[i]:first[i + 1]
    users: list  # per model: the options (indices e) of its users
    values: ValueMarket  # the market's value table, which the posting reads

    @classmethod
    def of(cls, market: AnyMarket) -> _Valuations:
        values = value_market(market)
        length, rate = _budget_free(values)  # (N, M) float64; errors where a budget can bind
        n, m = length.shape
        customer, model = np.nonzero(length > 0)  # row-major: sorted by customer, then model
        mo = market.models
        lo = np.asarray(mo.price_lo, np.float64)
        top = np.full(m, -np.inf)
        np.maximum.at(top, model, rate[customer, model])
        hi = np.maximum(lo, np.minimum(np.asarray(mo.price_hi, np.float64), top))
        by_model = np.argsort(model, kind="stable")
        cut = np.searchsorted(model[by_model], np.arange(1, m))
        return cls(
            n=n,
            m=m,
            customer=customer,
            model=model,
            worth=rate[customer, model] * length[customer, model],
            length=length[customer, model],
            cost=np.asarray(mo.serving_cost, np.float64),
            lo=lo,
            hi=hi,
            first=np.searchsorted(customer, np.arange(n + 1)),
            users=np.split(by_model, cut),
            values=values,
        )

    def models_of(self, pick: np.ndarray) -> np.ndarray:
        """The 1-based model of each chosen option in `pick` (0 where it is -1: none)."""
        return np.r_[self.model, -1][pick] + 1

    def options_of(self, customers: np.ndarray) -> np.ndarray:
        """The options (indices e) of these customers, in customer order."""
        starts, stops = self.first[customers], self.first[customers + 1]
        counts = stops - starts
        offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
        return offsets + np.arange(counts.sum())

    def choices(self, prices: np.ndarray, options: np.ndarray, slots: np.ndarray, k: int, tol: float):
        """Per customer slot (0..k-1): the seller's margin and the chosen option (-1: none) under the
        strong-Stackelberg tie rule (within `tol` of the best, the seller's favourite), for `options`
        belonging to customers `slots`."""
        j = self.model[options]
        utility = self.worth[options] - prices[j] * self.length[options]
        margin = (prices[j] - self.cost[j]) * self.length[options]
        best = np.zeros(k)
        np.maximum.at(best, slots, utility)
        tied = utility >= best[slots] - tol
        gain = np.where(tied, margin, -np.inf)
        top = np.full(k, -np.inf)
        np.maximum.at(top, slots, gain)
        out = best <= tol  # opting out is among the ties
        top = np.where(out, np.maximum(top, 0.0), top)
        pick = np.full(k, -1)
        order = np.nonzero(tied & (gain >= top[slots]))[0][::-1]  # the lowest option wins a tie
        pick[slots[order]] = options[order]
        return top, np.where(out & (top <= 0.0), -1, pick)


def _neighbourhood(v: _Valuations, rng: np.random.Generator, size: int) -> np.ndarray:
    """Models to re-price: one seeded by a uniformly random option (so a model is seeded in proportion
    to its users), then the other models of its users, of theirs, ... (breadth first) while their
    users number at most `size` in all (the seed's own are not counted)."""
    seed = int(v.model[rng.integers(len(v.model))])
    chosen, free = [seed], np.zeros(v.m, bool)
    free[seed] = True
    seen = np.zeros(v.n, bool)
    used, head = 0, 0
    while head < len(chosen) and used < size:
        users = v.customer[v.users[chosen[head]]]
        head += 1
        for i in rng.permutation(users):
            if seen[i]:
                continue
            seen[i] = True
            for j in v.model[v.first[i] : v.first[i + 1]]:
                d = len(v.users[j])
                if not free[j] and used + d <= size:
                    free[j] = True
                    chosen.append(int(j))
                    used += d
    return np.asarray(chosen)


def _sub_milp(v: _Valuations, prices, free_models, tol, time_limit):
    """The MILP of the sub-market: prices of `free_models` free, every other price fixed.

    The customers are the free models' users; each has one more option, its best among the fixed
    models and opting out (`outside`), worth `u0` to it and `r0` to the seller (the seller's favourite
    among its ties). Otherwise the MILP is [`lmaas_jax.reference.milp_pricing`][]'s. Returns the free
    models' prices (None where HiGHS found none), the customers, their options, each option's
    customer slot, and per customer the free option the MILP assigns it (-1: its outside option)."""
    k = len(free_models)
    slot_of = np.full(v.m, -1)
    slot_of[free_models] = np.arange(k)
    customers = np.unique(v.customer[np.concatenate([v.users[j] for j in free_models])])
    nc = len(customers)
    options = v.options_of(customers)
    slots = np.searchsorted(customers, v.customer[options])
    is_free = slot_of[v.model[options]] >= 0
    # The outside option: the best fixed option or opting out, with the seller's favourite tie.
    fixed = options[~is_free]
    r0, _ = v.choices(prices, fixed, slots[~is_free], nc, tol)
    u = v.worth[fixed] - prices[v.model[fixed]] * v.length[fixed]
    u0 = np.zeros(nc)
    np.maximum.at(u0, slots[~is_free], u)
    free_opts, free_slots = options[is_free], slots[is_free]
    nf = len(free_opts)
    b = slot_of[v.model[free_opts]]  # each free option's price variable
    lo, hi = v.lo[free_models], v.hi[free_models]
    L, W = v.length[free_opts], v.worth[free_opts]
    # Variables: prices (k), outside z0 (nc), z (nf), w = z * price (nf).
    z0 = k + np.arange(nc)
    z = k + nc + np.arange(nf)
    w = k + nc + nf + np.arange(nf)
    nv = k + nc + 2 * nf
    rows, cols, vals, lbs, ubs = [], [], [], [], []
    count = 0

    def block(r, c, x, lb, ub, n_rows):
        nonlocal count
        rows.append(np.asarray(r) + count)
        cols.append(np.asarray(c))
        vals.append(np.asarray(x, np.float64))
        lbs.append(np.broadcast_to(lb, n_rows))
        ubs.append(np.broadcast_to(ub, n_rows))
        count += n_rows

    e = np.arange(nf)
    lo_e, hi_e = lo[b], hi[b]
    # McCormick, exact for binary z: lo z <= w <= hi z; price - hi (1 - z) <= w <= price - lo (1 - z).
    block(np.r_[e, e], np.r_[w, z], np.r_[np.ones(nf), -lo_e], 0.0, np.inf, nf)
    block(np.r_[e, e], np.r_[w, z], np.r_[np.ones(nf), -hi_e], -np.inf, 0.0, nf)
    block(np.r_[e, e, e], np.r_[w, b, z], np.r_[np.ones(nf), -np.ones(nf), -hi_e], -hi_e, np.inf, nf)
    block(np.r_[e, e, e], np.r_[w, b, z], np.r_[np.ones(nf), -np.ones(nf), -lo_e], -np.inf, -lo_e, nf)
    # One choice per customer.
    c = np.arange(nc)
    block(np.r_[c, free_slots], np.r_[z0, z], np.ones(nc + nf), 1.0, 1.0, nc)
    # U_c = u0 z0 + sum (W z - L w) >= u0 (no worse than outside), and >= W' - L' price' per free option.
    u_rows = np.r_[c, free_slots, free_slots]
    u_cols = np.r_[z0, z, w]
    u_vals = np.r_[u0, W, -L]
    block(u_rows, u_cols, u_vals, u0, np.inf, nc)
    # One row per free option e': the terms of its customer's U, plus L' price'.
    bounds_ = np.searchsorted(free_slots, np.arange(nc + 1))  # free options of customer s: a slice
    rr, cc, xx = [], [], []
    for r_, s in enumerate(free_slots):
        own = np.arange(bounds_[s], bounds_[s + 1])
        rr.append(np.full(1 + 2 * len(own) + 1, r_))
        cc.append(np.r_[z0[s], z[own], w[own], b[r_]])
        xx.append(np.r_[u0[s], W[own], -L[own], L[r_]])
    if nf:
        block(np.concatenate(rr), np.concatenate(cc), np.concatenate(xx), W, np.inf, nf)
    a = coo_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(count, nv)
    ).tocsr()
    objective = np.zeros(nv)
    objective[z0] = r0
    objective[z] = -v.cost[free_models][b] * L
    objective[w] = L
    lb = np.r_[lo, np.zeros(nc + nf), np.minimum(lo_e, 0.0)]
    ub = np.r_[hi, np.ones(nc + nf), hi_e]
    integrality = np.r_[np.zeros(k), np.ones(nc + nf), np.zeros(nf)]
    with quiet_stdout():
        res = milp(
            -objective,
            constraints=LinearConstraint(a, np.concatenate(lbs), np.concatenate(ubs)),
            integrality=integrality,
            bounds=Bounds(lb, ub),
            options={"time_limit": float(time_limit), "mip_rel_gap": 1e-9, "disp": False},
        )
    if res.x is None:
        return None, customers, options, slots, None
    chosen = np.full(nc, -1)
    on = res.x[z] > 0.5
    chosen[free_slots[on]] = free_opts[on]
    return np.clip(res.x[:k], lo, hi), customers, options, slots, chosen


_TINY = np.finfo(np.float64).tiny  # the least time limit in_range accepts: any positive one


@eqx.filter_jit
def _keep_and_post(market, values, prices, assignment, tol):
    # The search's prices, or the greatest prices keeping its assignment where they earn more (a
    # price HiGHS left a hair past a breakpoint loses its customer; the kept prices do not), posted.
    kept = kept_prices(values, assignment)
    better = exact_profit(values, kept, tol) > exact_profit(values, prices, tol)
    return posted_solution(market, values, jnp.where(better, kept, prices), tol)


@eqx.filter_jit
def _kept_below(values, assignment, start):
    return kept_prices(values, assignment, start.astype(values.rate.dtype))


def _posted_assignment(v: _Valuations, p, pick, free, customers, mine):
    """Prices posting a sub-MILP's assignment exactly: the greatest at which every customer keeps
    its choice (the sub-market's `customers` their option in `mine`, -1 for none, every other
    customer its choice `pick` at `p`), the free models' prices below their box ends, every other
    below its price in `p`."""
    assignment = v.models_of(pick)
    assignment[customers] = v.models_of(mine)
    start = p.copy()
    start[free] = v.hi[free]
    kept = _kept_below(v.values, jnp.asarray(assignment, jnp.int32), jnp.asarray(start))
    return np.maximum(np.asarray(kept, np.float64), v.lo)


def _take(v: _Valuations, p, free, x, customers, options, slots, chosen, *, tol, scale):
    """The sub-MILP's prices `x` for the models `free`, where they earn more than `p` does: returns
    the gain and the prices. Only the free models' users see a change, so the gain is the change of
    their margins, exact whatever prices the sub-MILP was built from.

    HiGHS meets the customers' constraints to its feasibility tolerance, so its prices can sit past
    a breakpoint, where a customer walks away: first the prices lowered by a little are tried, then
    the greatest prices that keep the MILP's assignment (`_posted_assignment`; these may lower a
    fixed model's price too, so their gain is the whole market's)."""
    if x is None:
        return 0.0, p
    now, _ = v.choices(p, options, slots, len(customers), tol)
    now = float(np.sum(now))
    best, best_p = now, None
    for eps in (0.0, 1e-9, 1e-8, 1e-7, 1e-6):
        q = p.copy()
        q[free] = np.maximum(x - eps * scale, v.lo[free])
        got, _ = v.choices(q, options, slots, len(customers), tol)
        got = float(np.sum(got))
        if got > best:
            best, best_p = got, q
    thin = 10 * tol * scale
    gain, out = (best - now, best_p) if best_p is not None and best > now + thin else (0.0, p)
    # The MILP's assignment: what it claims to earn, and where that is more, its greatest prices.
    outside = ~np.isin(v.model[options], free)
    r_out, pick_out = v.choices(p, options[outside], slots[outside], len(customers), tol)
    q = p.copy()
    q[free] = x
    e = np.maximum(chosen, 0)
    claimed = np.where(chosen >= 0, (q[v.model[e]] - v.cost[v.model[e]]) * v.length[e], r_out)
    if float(np.sum(claimed)) <= now + gain + thin:
        return gain, out
    every = np.arange(len(v.customer))
    margin, pick = v.choices(p, every, v.customer, v.n, tol)
    before = float(np.sum(margin))
    q = _posted_assignment(v, p, pick, free, customers, np.where(chosen >= 0, chosen, pick_out))
    after = float(np.sum(v.choices(q, every, v.customer, v.n, tol)[0]))
    if after - before > gain + thin:
        return after - before, q
    return gain, out


def refine_by_milp(
    market: AnyMarket,
    prices,
    *,
    rounds: int = 1000,
    size: int = 512,
    time_limit: float | None = None,
    milp_time_limit: float = 10.0,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> PricingSolution:
    """Improve prices by re-pricing small sub-markets exactly (large-neighbourhood search by HiGHS).

    Each round picks a neighbourhood of models (below), holds every other price fixed, and solves
    the seller's MILP of that sub-market exactly: its customers are the chosen models' users, each
    with one more option, its best among the fixed models and opting out. Where the sub-market's
    optimum earns more than the current prices, its prices replace theirs. The profit never falls;
    the search is a local one whose neighbourhoods are far larger than `lj.imp`'s moves (every
    assignment of a sub-market of hundreds of customers at once), and it finds what those miss on
    large sparse markets (`docs/imp.md`, "Refining by sub-market MILPs").

    The neighbourhood: a model seeded by a uniformly random option (a popular model is seeded in
    proportion to its users), then, breadth first, the other models valued by its users, by theirs,
    and so on, each taken while the chosen models' users (options) number at most `size` beside the
    seed's. A sub-MILP then has about `size` customers' choices and solves in a fraction of a second
    at the default; a model with more users than `size` is re-priced only from its own seed.

    Runs on the CPU in NumPy and `scipy.optimize.milp` (not under `jax.jit`), for budget-free
    markets, as [`lmaas_jax.reference.milp_pricing`][].

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][] (one market) whose budgets
      cannot bind in the price box.
    - `prices`: shape `(M,)`, the prices to start from (e.g. `lj.imp(...).prices`).
    - `rounds`: how many neighbourhoods to solve (>= 1). With `time_limit=None` the result depends
      only on `seed`, `workers` and the market (HiGHS is deterministic).
    - `size`: the neighbourhood's options beside its seed's (>= 1).
    - `time_limit`: stop after this many seconds (checked between rounds), or None.
    - `milp_time_limit`: HiGHS's limit per sub-MILP in seconds; a sub-MILP stopped by it still
      gives its best prices.
    - `seed`: seeds the neighbourhoods (NumPy's `default_rng`).
    - `workers`: sub-MILPs solved at once, in threads (HiGHS releases Python's lock while it
      solves, so two workers do about twice the rounds on two cores). Each batch of `workers`
      neighbourhoods is solved from the same prices; their results are then taken in order, each
      re-valued at the prices the ones before it left and kept only where it earns more, so the
      profit still never falls. The result depends on `seed` and `workers` (not on the machine or
      the threads' timing); the default, 1, gives the same result on every machine.
    - `progress`: print the rounds, the profit and the time to stderr every 10 seconds.

    **Returns:**

    A [`lmaas_jax.PricingSolution`][], prices posted as every solver posts them, with `stats`:
    `rounds` (solved), `improved` (rounds that raised the profit), `start_profit` (the profit of
    `prices` with the seller's favourite ties), `seconds`, and `stopped` (`"rounds"` or
    `"time_limit"`).
    """
    at_least_one("rounds", rounds)
    at_least_one("size", size)
    at_least_one("workers", workers)
    in_range("milp_time_limit", milp_time_limit, _TINY, np.inf, "must be a number > 0", finite=True)
    if time_limit is not None:
        in_range("time_limit", time_limit, 0.0, np.inf, "must be a number >= 0 or None", finite=True)
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer; got {seed!r}.")
    p = np.array(prices, np.float64)
    m = market.n_models
    if p.shape != (m,) or not np.all(np.isfinite(p)):
        raise ValueError(f"prices must be a finite array of shape ({m},); got shape {p.shape}.")
    v = _Valuations.of(market)
    tol = tie_tolerance(market)
    start = time.perf_counter()
    all_options = np.arange(len(v.customer))
    margin, _ = v.choices(p, all_options, v.customer, v.n, tol)
    start_profit = float(np.sum(margin))
    scale = max(1.0, float(np.max(np.abs(v.hi), initial=1.0)))
    rng = np.random.default_rng(int(seed))
    solved = improved = 0
    stopped = "rounds"
    profit, shown = start_profit, start
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    # One redirect of the C-level stdout around every solve: HiGHS prints past disp=False.
    with quiet_stdout(), pool or contextlib.nullcontext():
        while solved < (rounds if len(v.model) else 0):  # a market nobody values: nothing to re-price
            if time_limit is not None and time.perf_counter() - start > time_limit:
                stopped = "time_limit"
                break
            hoods = [_neighbourhood(v, rng, size) for _ in range(min(workers, rounds - solved))]
            solve = functools.partial(_sub_milp, v, p, tol=tol, time_limit=milp_time_limit)
            found_all = pool.map(solve, hoods) if pool else map(solve, hoods)
            for free, found in zip(hoods, found_all, strict=True):
                solved += 1
                gain, p = _take(v, p, free, *found, tol=tol, scale=scale)
                improved += gain > 0
                profit += gain
            if progress and time.perf_counter() - shown > 10.0:
                shown = time.perf_counter()
                print(
                    f"refine_by_milp: round {solved}, profit {profit:.6g} (+{profit - start_profit:.4g}), "
                    f"{shown - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    _, pick = v.choices(p, all_options, v.customer, v.n, tol)
    assignment = v.models_of(pick).astype(np.int32)
    sol = _keep_and_post(market, v.values, jnp.asarray(p, market.dtype), jnp.asarray(assignment), tol)
    return eqx.tree_at(
        lambda s: s.stats,
        sol,
        {
            **sol.stats,
            "rounds": solved,
            "improved": improved,
            "start_profit": start_profit,
            "seconds": time.perf_counter() - start,
            "stopped": stopped,
        },
    )
