"""The numbers behind experiments E1-E5 (spec section 6), each as pandas DataFrames.

Every function here takes explicit sizes and a solver, runs its solves, and returns tables; the
figures ([`_figures`]) and the report section ([`_section`]) only read them.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ...lmaas.pricing._imp import GradientIMP, imp
from ...lmaas.pricing._profit import seller_profit
from ...lmaas.robust._planning import RULES
from ...lmaas.robust._rsr import rsr, tie_tolerance
from ...lmaas.scenarios._generator import family_models, random_market
from ...lmaas.scenarios._market import unstack_market
from .._sweep import SENSITIVITY_FIELDS, Solver, settings_for, sweep_market

BASELINES = tuple(r for r in RULES if r != "rsr")


def timed(fn: Callable, *args, repeats: int = 3):
    """(compile seconds, median run seconds, output) of a jitted `fn`, with `block_until_ready`.

    The first call's time minus the median of `repeats` further calls is the compile time.
    """
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - start)
    run = statistics.median(runs)
    return max(first - run, 0.0), run, out


@functools.lru_cache(maxsize=8)
def batched_imp(solver: GradientIMP):
    """`jit(vmap(imp))` returning (prices, profit), one per solver so that E2 and E5 share compiles."""

    def one(market, key):
        sol = imp(market, solver, key=key)
        return sol.prices, sol.profit

    return jax.jit(jax.vmap(one))


def market_batch(
    n_markets: int, n_models: int, n_customers: int, *, seed: int, dtype: str, solver_seed: int = 1, **params
):
    """`n_markets` seeded [`lmaas_jax.random_market`][]s stacked on a leading axis, and IMP's keys for
    them (the market's key folded with `solver_seed`, as in [`lmaas_jax.sweep`][])."""
    keys = jax.random.split(jax.random.PRNGKey(seed), n_markets)
    batch = jax.vmap(lambda k: random_market(k, n_models, n_customers, dtype=dtype, **params))(keys)
    return batch, jax.vmap(lambda k: jax.random.fold_in(k, solver_seed))(keys)


def _gain(rsr_total, base_total):
    """100 (RSR - base) / |base|, NaN where the base is 0."""
    base = np.asarray(base_total, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(base) > 1e-9, 100.0 * (np.asarray(rsr_total) - base) / np.abs(base), np.nan)


def _family_rows(table: pd.DataFrame):
    """Per row of a sweep table, its markets' models ([`lmaas_jax.family_models`][] at the row's
    size and capability gap: what the sweep's generator uses), built once per distinct pair."""
    rows = list(zip(table["n_models"].astype(int), table["capability_gap"].astype(float), strict=True))
    models = {r: family_models(r[0], capability_gap=r[1]) for r in set(rows)}
    return [models[r] for r in rows]


def e3_models(e3: pd.DataFrame) -> int:
    """How many models an [`e3_sensitivity`][] table has columns for."""
    return max(int(c.split("_")[1]) for c in e3.columns if c.startswith("sold_"))


def rules_coincide(table: pd.DataFrame) -> np.ndarray:
    """Per market of a sweep table: whether the 'most accurate' and 'cheapest' rules pick the same
    model, i.e. the most accurate model (of the generator's family at the market's capability gap)
    is also the cheapest per hour at the equilibrium prices. Then the two rules plan alike."""
    out = np.zeros(len(table), bool)
    for k, ((_, r), models) in enumerate(zip(table.iterrows(), _family_rows(table), strict=True)):
        accuracy = np.asarray(models.accuracy)
        prices = r[[f"price_{j + 1}" for j in range(accuracy.size)]].to_numpy(np.float64)
        out[k] = int(np.argmin(-accuracy)) == int(np.argmin(prices))
    return out


def e1_robustness(table: pd.DataFrame) -> pd.DataFrame:
    """E1: customers' total worst-case and scenario-average profit per (Gamma, deviation), by rule.

    Sums over the markets (seeds) of each grid point, then the gain of RSR over each baseline rule,
    in percent: 100 (RSR - rule) / |rule|, for the worst case (`gain_worst_<rule>`) and for the
    scenario average (`gain_mean_<rule>`); and in dollars per market, (RSR - rule) / markets, for the
    worst case (`gain_abs_<rule>`): a percentage over a base near 0 is large whatever the dollars.
    `rules_coincide`: markets where the 'most accurate' and 'cheapest' rules pick the same model.
    """
    cols = [f"customer_{k}_{r}" for r in RULES for k in ("worst", "mean")]
    table = table.assign(rules_coincide=rules_coincide(table))
    out = table.groupby(["gamma", "deviation"], as_index=False)[[*cols, "rules_coincide"]].sum()
    out["markets"] = table.groupby(["gamma", "deviation"]).size().to_numpy()
    for rule in BASELINES:
        for kind in ("worst", "mean"):
            out[f"gain_{kind}_{rule}"] = _gain(out[f"customer_{kind}_rsr"], out[f"customer_{kind}_{rule}"])
        out[f"gain_abs_{rule}"] = (out["customer_worst_rsr"] - out[f"customer_worst_{rule}"]) / out["markets"]
    return out


def e1_summary(e1: pd.DataFrame, table: pd.DataFrame) -> dict:
    """Maximum and median worst-case gain over each rule, in percent and in dollars per market
    (`abs_max`, `abs_median`, `abs_where`, and `abs_base` the rule's worst case per market there),
    and where each maximum occurs; `rules_coincide` counts the markets where the two naive rules
    plan alike.

    Medians are over grid points with Gamma >= 1 (at Gamma = 0 the scenario set is the nominal
    scenario alone and RSR is nominal planning, gain 0). Also the per-market maximum and median.
    """
    summary = {}
    uncertain = e1[e1["gamma"] >= 1]
    per_market = table[table["gamma"] >= 1]
    for rule in BASELINES:
        gains = uncertain[f"gain_worst_{rule}"]
        market_gains = pd.Series(
            _gain(per_market["customer_worst_rsr"], per_market[f"customer_worst_{rule}"]),
            index=per_market.index,
        )
        row = {"max": np.nan, "median": np.nan, "where": {}}
        row.update(market_max=np.nan, market_median=np.nan, market_where={})
        if gains.notna().any():
            best = uncertain.loc[gains.idxmax()]
            row.update(
                max=float(gains.max()),
                median=float(gains.median()),
                where={"gamma": int(best["gamma"]), "deviation": float(best["deviation"])},
            )
        if market_gains.notna().any():
            i = market_gains.idxmax()
            row.update(
                market_max=float(market_gains.max()),
                market_median=float(market_gains.median()),
                market_where={k: per_market[k].loc[i].item() for k in ("gamma", "deviation", "seed")},
            )
        gains = uncertain[f"gain_abs_{rule}"]
        best = uncertain.loc[gains.idxmax()] if len(gains) else None
        row.update(
            abs_max=float(gains.max()) if len(gains) else np.nan,
            abs_median=float(gains.median()) if len(gains) else np.nan,
            abs_where={}
            if best is None
            else {"gamma": int(best["gamma"]), "deviation": float(best["deviation"])},
            abs_base=np.nan if best is None else float(best[f"customer_worst_{rule}"] / best["markets"]),
        )
        summary[rule] = row
    summary["rules_coincide"] = {"markets": int(e1["rules_coincide"].sum()), "of": int(e1["markets"].sum())}
    return summary


def e3_sensitivity(table: pd.DataFrame, by: str, fixed: dict) -> pd.DataFrame:
    """E3: the equilibrium versus `by`, the other parameters `fixed`, over the seeds of each value.

    Per value of `by` and model j: `price_j` the mean price over the seeds where model j sells (NaN
    where it sells in none: an unsold model's price is wherever the solver left it, not a market
    price), `price_min_j` and `price_max_j` over those seeds, `sold_j` the number of those seeds,
    `ceiling_j` how many of them price it at the top of its box (`box_top_j`, within 1e-4
    relative: the seller would charge more if it could); shares and both sides' profits as the
    mean, `_min` and `_max` over all seeds; `seeds` their number.
    """
    keep = np.ones(len(table), bool)
    for k, v in fixed.items():
        keep &= np.isclose(table[k].to_numpy(np.float64), v)
    t = table[keep].copy()
    m = max(int(c.split("_")[1]) for c in t.columns if c.startswith("price_") and t[c].notna().any())
    tops = [np.asarray(models.price_hi, np.float64) for models in _family_rows(t)]
    for j in range(1, m + 1):
        t[f"box_top_{j}"] = [top[j - 1] if j <= top.size else np.nan for top in tops]
        sold = t[f"share_{j}"] > 0
        t[f"sold_{j}"] = sold
        t[f"ceiling_{j}"] = sold & (t[f"price_{j}"] >= t[f"box_top_{j}"] * (1 - 1e-4))
        t[f"price_sold_{j}"] = t[f"price_{j}"].where(sold)
    spread = ["profit", "customer_worst_rsr", "customer_mean_rsr", "share_none"]
    spread += [f"share_{j}" for j in range(1, m + 1)]
    agg = {"seeds": ("seed", "size")}
    for j in range(1, m + 1):
        agg |= {
            f"price_{j}": (f"price_sold_{j}", "mean"),
            f"price_min_{j}": (f"price_sold_{j}", "min"),
            f"price_max_{j}": (f"price_sold_{j}", "max"),
            f"sold_{j}": (f"sold_{j}", "sum"),
            f"ceiling_{j}": (f"ceiling_{j}", "sum"),
            f"box_top_{j}": (f"box_top_{j}", "first"),
        }
    for c in spread:
        agg |= {c: (c, "mean"), f"{c}_min": (c, "min"), f"{c}_max": (c, "max")}
    return t.groupby(by, as_index=False).agg(**agg)


def e6_sensitivities(table: pd.DataFrame, dtype: str) -> pd.DataFrame:
    """E6: what +1% of each model attribute is worth at the equilibrium, to each side.

    `table` holds rows of a sweep run with `sensitivities=True`. Per market, model j and attribute a
    in `accuracy`, `throughput`, `payload`, `serving_cost`: the first-order change of the seller's
    profit (`seller`) and of the customers' total worst-case surplus (`customers`) when a_j rises by
    1% of its value, the seller re-pricing every model ($): d / d a_j times a_j / 100. Also whether
    model j sells in that market and whether the market's pin pattern is stable.
    """
    out = []
    for _, r in table.iterrows():
        models = sweep_market(r, dtype).models
        for a in SENSITIVITY_FIELDS:
            value = np.asarray(getattr(models, a), np.float64)
            for j in range(value.size):
                out.append(
                    {
                        "market": int(r["market"]),
                        "seed": int(r["seed"]),
                        "model": j + 1,
                        "attribute": a,
                        "value": value[j],
                        "sold": bool(r[f"share_{j + 1}"] > 0),
                        "stable": bool(r["pattern_stable"]),
                        "seller": r[f"d_profit_{a}_{j + 1}"] * value[j] / 100 + 0.0,  # no -0
                        "customers": r[f"d_customer_worst_{a}_{j + 1}"] * value[j] / 100 + 0.0,
                    }
                )
    return pd.DataFrame(out)


def e6_summary(e6: pd.DataFrame) -> pd.DataFrame:
    """E6 per (attribute, model): mean, min and max over markets of each side's +1% effect."""
    return e6.groupby(["attribute", "model"], as_index=False, sort=False).agg(
        markets=("seed", "size"),
        sold=("sold", "sum"),
        seller_mean=("seller", "mean"),
        seller_min=("seller", "min"),
        seller_max=("seller", "max"),
        customers_mean=("customers", "mean"),
        customers_min=("customers", "min"),
        customers_max=("customers", "max"),
    )


def e2_seller(
    sizes: Sequence[tuple[int, int]],
    n_markets: int,
    solver: Solver,
    *,
    dtype: str = "float32",
    milp_time_limit: float = 120.0,
    progress: Callable = lambda it, **kw: it,
    seed: int = 1,
) -> pd.DataFrame:
    """E2: gradient IMP's exact profit against the MILP optimum, and the time each takes.

    Budget-free markets (the MILP's domain), Gamma = 2. IMP is batched over the markets of a size
    (time per market = batch time / markets, median of 3 runs, compile apart); its prices are
    re-evaluated in float64 with `dtype`'s tie tolerance. HiGHS's time is its own solve time.
    Needs `jax_enable_x64` (the MILP and the re-evaluation run in float64).
    """
    from ...lmaas.reference._milp import milp_pricing

    rows = []
    for m, n in progress(sizes, desc="E2 IMP vs MILP"):
        fn = batched_imp(settings_for(solver, m, n))
        batch, keys = market_batch(
            n_markets, m, n, seed=1000 * m + n, dtype=dtype, budget_share=0.0, solver_seed=seed
        )
        compile_s, run_s, (prices, _) = timed(fn, batch, keys)
        tol = tie_tolerance(unstack_market(batch, 0))
        for b in range(n_markets):
            market = unstack_market(batch, b).astype(jnp.float64)
            milp = milp_pricing(market, time_limit=milp_time_limit)
            imp_profit = float(seller_profit(market, jnp.asarray(prices[b], jnp.float64), tie_tol=tol))
            rows.append(
                dict(
                    M=m,
                    N=n,
                    market=b,
                    imp_profit=imp_profit,
                    optimal_profit=float(milp.profit),
                    fraction=imp_profit / float(milp.profit),
                    milp_optimal=bool(milp.stats["optimal"]),
                    imp_ms=1e3 * run_s / n_markets,
                    imp_compile_s=compile_s,
                    milp_ms=1e3 * milp.stats["seconds"],
                )
            )
    out = pd.DataFrame(rows)
    out["time_ratio"] = out["milp_ms"] / out["imp_ms"]
    return out


def e4_convergence(
    n_models: int,
    n_customers: int,
    n_traced: int,
    solver: Solver,
    *,
    dtype: str = "float32",
    seed: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """E4: gradient IMP's profit per step, and C&CG's bounds per iteration at IMP's prices.

    One default market (seed 0). IMP's table: step, the best exact profit found so far, the relaxed
    profit of the restart that ends highest, the mean relaxed profit over restarts and the
    temperature. C&CG's table: for the `n_traced` customers (of the first 40) that take the most
    iterations, the lower and upper bounds per iteration and RSR's closed-form value.
    """
    from ...lmaas.reference._ccg import ccg_rsr

    key = jax.random.PRNGKey(0)
    market = random_market(key, n_models, n_customers, dtype=dtype)
    sol = imp(market, settings_for(solver, n_models, n_customers), key=jax.random.fold_in(key, seed))
    relaxed = np.asarray(sol.trace.relaxed_profit, np.float64)
    steps = pd.DataFrame(
        dict(
            step=np.arange(1, relaxed.shape[0] + 1),
            best_exact_profit=np.asarray(sol.trace.best_profit, np.float64),
            relaxed_profit_best_restart=relaxed[:, np.argmax(relaxed[-1])],
            relaxed_profit_mean=relaxed.mean(axis=1),
            temperature=np.asarray(sol.trace.temperature, np.float64),
        )
    )
    steps.attrs["final_profit"] = float(sol.profit)
    market64 = market.astype(jnp.float64)
    prices = jnp.asarray(sol.prices, jnp.float64)
    closed = np.asarray(rsr(market64, prices).worst_profit)
    results = [ccg_rsr(market64, prices, i) for i in range(min(40, n_customers))]
    order = sorted(range(len(results)), key=lambda i: (-results[i].iterations, i))[:n_traced]
    rows = []
    for i in sorted(order):
        r = results[i]
        for it, (lo, hi) in enumerate(zip(r.lower_bounds, r.upper_bounds, strict=True), start=1):
            rows.append(dict(customer=i, iteration=it, lower=lo, upper=hi, rsr_value=float(closed[i])))
    return steps, pd.DataFrame(rows)


def e5_scale(
    size: tuple[int, int],
    batches: Sequence[int],
    n_milp: int,
    solver: Solver,
    *,
    dtype: str = "float32",
    milp_time_limit: float = 120.0,
    progress: Callable = lambda it, **kw: it,
    seed: int = 1,
) -> pd.DataFrame:
    """E5: markets priced per second by batched gradient IMP versus batch size, and by HiGHS.

    Budget-free default markets of `size` (M, N). IMP: one `jit(vmap(imp))` per batch size, compile
    apart, median of 2 runs. HiGHS MILP: one market at a time, its own solve time, `n_milp` markets.
    Needs `jax_enable_x64` for the MILP.
    """
    from ...lmaas.reference._milp import milp_pricing

    m, n = size
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    fn = batched_imp(settings_for(solver, m, n))
    rows = []
    for b in progress(batches, desc="E5 batch sizes"):
        batch, keys = market_batch(b, m, n, seed=5, dtype=dtype, budget_share=0.0, solver_seed=seed)
        compile_s, run_s, _ = timed(fn, batch, keys, repeats=2)
        rows.append(dict(method="gradient IMP", device=device, batch=b, compile_s=compile_s, run_s=run_s))
    batch, _ = market_batch(n_milp, m, n, seed=5, dtype=dtype, budget_share=0.0)
    seconds = [
        milp_pricing(unstack_market(batch, k).astype(jnp.float64), time_limit=milp_time_limit).stats[
            "seconds"
        ]
        for k in range(n_milp)
    ]
    rows.append(
        dict(method="HiGHS MILP", device="cpu (HiGHS)", batch=1, compile_s=0.0, run_s=float(np.mean(seconds)))
    )
    out = pd.DataFrame(rows)
    out["markets_per_s"] = out["batch"] / out["run_s"]
    out["x_vs_milp"] = out["markets_per_s"] / out["markets_per_s"].iloc[-1]
    out.insert(0, "M", m)
    out.insert(1, "N", n)
    return out
