"""The LMaaS game's section of the `lmaas-jax run` report: E1-E6 as markdown, from the tables of
[`_tables`] (the figures are [`_figures`]'s)."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ...lmaas.scenarios._generator import family_models
from .._output import markdown_table
from .._sweep import settings_for
from ._tables import e3_models

PAPER_GAIN = 43.96  # % : the LMaaS paper's largest reported gain of RSR over its baseline


def lmaas_section(
    cfg, solver, main, e1, summary, e2, e3, steps, ccg, e5, seconds, base_gamma, base_dev
) -> str:
    settings = settings_for(solver, cfg["n_models"], cfg["n_customers"])
    device = f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s))"
    nom = summary["nominal"]
    family = family_models(cfg["n_models"])  # the generator's models, whose numbers the text quotes
    box = float(np.round(family.price_hi[0] / family.serving_cost[0], 6))
    lines = [
        "# lmaas-jax report: the LMaaS game (E1-E7), test-time compute, token auctions, token caps",
        "",
        f"Device: {device}; JAX solvers in {cfg['dtype']}, HiGHS and re-evaluations in float64. "
        f"Markets from `random_market` ({cfg['n_models']} models, {cfg['n_customers']} customers, "
        f"budgets for half the customers); sellers price with gradient IMP ({settings.ascent.steps} "
        f"steps, {settings.ascent.restarts} restarts, polish {'on' if settings.polish else 'off'}); "
        f"scale {cfg['scale']}. "
        "Our formulation of the LMaaS game (docs/models/lmaas.md), not the paper's equations. "
        "Every table below is also in this folder as CSV and Parquet.",
        "",
        "Time per experiment (s, compile included): "
        + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in seconds.items())
        + ".",
        "",
        "## E1 Robustness: what robust planning is worth to customers",
        "",
        f"{len(main)} markets: Gamma in {list(cfg['gammas'])} x deviation in {list(cfg['deviations'])} x "
        f"{cfg['seeds'] * cfg['scale']} seeds, capability gap 0.4. At the seller's equilibrium prices "
        "(gradient IMP against RSR customers) every customer plans by RSR, by nominal planning (plan for "
        "the nominal scenario, then face the scenario set), by the 'most accurate model' rule or by the "
        "'cheapest model' rule (each renting its model for the nominal-optimal duration). Gain = 100 "
        "(RSR - rule) / |rule| of the customers' total worst-case profit over the scenario set, and in "
        "dollars per market (RSR - rule) / markets; the headline is in dollars, because a percentage "
        "over a rule whose worst case is near 0 is large whatever the dollars.",
        "",
        "- **Over nominal planning, RSR adds up to "
        f"{nom['abs_max']:,.0f} $ of worst-case profit per market** "
        f"(Gamma = {nom['abs_where'].get('gamma')}, deviation = {nom['abs_where'].get('deviation')}; "
        f"nominal planning's worst case there: {nom['abs_base']:,.0f} $ per market), **median "
        f"{nom['abs_median']:,.0f} $** over the grid points with Gamma >= 1.",
        f"- In percent: maximum {nom['max']:.2f}% (Gamma = {nom['where'].get('gamma')}, "
        f"deviation = {nom['where'].get('deviation')}), median {nom['median']:.2f}% over the grid points "
        f"with Gamma >= 1; per market: maximum {nom['market_max']:.2f}% ({_where(nom['market_where'])}), "
        f"median {nom['market_median']:.2f}%. The LMaaS paper reports gains of up to {PAPER_GAIN}% over "
        "its baseline (its baseline and markets are not ours, so the numbers are not directly comparable).",
    ]
    for rule in ("most_accurate", "cheapest"):
        s = summary[rule]
        lines.append(
            f"- Over the {rule.replace('_', ' ')} rule: up to {s['abs_max']:,.0f} $ per market "
            f"(Gamma = {s['abs_where'].get('gamma')}, deviation = {s['abs_where'].get('deviation')}), "
            f"median {s['abs_median']:,.0f} $; in percent, maximum {s['max']:.1f}%, "
            f"median {s['median']:.1f}%."
        )
    same = summary["rules_coincide"]
    throughput = np.asarray(family.throughput, np.float64)
    lines.append(
        f"- The two naive rules plan alike in {same['markets']} of {same['of']} markets: there the most "
        "accurate model is also the cheapest per hour at the equilibrium prices. Prices are per rented "
        f"hour and the largest model serves the fewest tasks per hour ({throughput[-1]:.0f} against the "
        f"smallest's {throughput[0]:.0f}), so an hour of it is worth less to a customer and the seller "
        "prices it lowest."
    )
    avg = e1[e1["gamma"] >= 1]["gain_mean_nominal"]
    lines += [
        f"- The price of robustness: RSR's scenario-average profit differs from nominal planning's by "
        f"{avg.min():.1f}% to {avg.max():.1f}% (median {avg.median():.1f}%).",
        "",
        "![E1](e1.png)",
        "",
        markdown_table(
            e1[
                [
                    "gamma",
                    "deviation",
                    "markets",
                    "customer_worst_rsr",
                    "customer_worst_nominal",
                    "gain_abs_nominal",
                    "gain_worst_nominal",
                    "gain_worst_most_accurate",
                    "gain_worst_cheapest",
                    "gain_mean_nominal",
                ]
            ]
        ),
        "",
        "## E2 Seller: gradient IMP against the exact optimum",
        "",
        "Budget-free markets (Gamma = 2), where the HiGHS MILP is exact; IMP batched over the markets "
        "of a size (compile apart), HiGHS one market at a time.",
        "",
        markdown_table(
            e2.groupby(["M", "N"], as_index=False).agg(
                markets=("fraction", "size"),
                mean_fraction=("fraction", "mean"),
                min_fraction=("fraction", "min"),
                milp_optimal=("milp_optimal", "sum"),
                imp_ms=("imp_ms", "mean"),
                milp_ms=("milp_ms", "mean"),
                time_ratio=("time_ratio", "median"),
            ),
            digits=4,
        ),
        "",
        "![E2](e2.png)",
        "",
        "## E3 Sensitivity: the equilibrium versus Gamma, deviation and capability gap",
        "",
        f"Means over seeds; the other parameters at Gamma = {base_gamma}, deviation = {base_dev}, gap = 0.4. "
        "A model's price is its mean over the seeds where it sells (`sold_j` of them; an unsold "
        "model's price is not a market price); `ceiling_j` counts those where the seller prices it at "
        f"the top of its price box ({box:g} times its serving cost per hour), where the seller would charge "
        "more if the box let it. The figure's bands span the seeds; every column, with minima and "
        "maxima, is in `e3_by_<parameter>.csv`.",
        "",
        "![E3](e3.png)",
        "",
    ]
    for by, t in e3.items():
        m = e3_models(t)
        per_model = [f"{k}_{j}" for j in range(1, m + 1) for k in ("price", "sold", "ceiling")]
        cols = [by, "seeds", *per_model, "share_none", "profit", "customer_worst_rsr"]
        lines += [f"By {by}:", "", markdown_table(t[cols]), ""]
    final = steps.attrs.get("final_profit", float("nan"))
    best = steps["best_exact_profit"]
    lines += [
        "## E4 Convergence",
        "",
        f"Gradient IMP on the default market (seed 0): best exact profit {best.iloc[0]:,.0f} $ "
        f"after step 1, {best.iloc[-1]:,.0f} $ after step {len(steps)}, "
        f"{final:,.0f} $ after the classic-IMP polish. C&CG at IMP's prices, for the "
        f"{ccg['customer'].nunique()} customers (of the first 40) that take the most iterations: "
        + "; ".join(
            f"customer {i}: {len(g)} iterations, "
            f"final gap {g['upper'].iloc[-1] - g['lower'].iloc[-1]:.2g} $, "
            f"|C&CG - RSR| = {abs(g['lower'].iloc[-1] - g['rsr_value'].iloc[0]):.2g} $"
            for i, g in ccg.groupby("customer")
        )
        + ".",
        "",
        "![E4](e4.png)",
        "",
        "## E5 Scale",
        "",
        f"Markets priced per second by batched gradient IMP on {device} and by HiGHS (one market at a "
        "time), same budget-free markets; median of 2 runs, compile apart.",
        "",
        markdown_table(e5),
        "",
        "![E5](e5.png)",
        "",
    ]
    return "\n".join(lines)


def e6_section(e6: pd.DataFrame, summary: pd.DataFrame, base_gamma, base_dev) -> str:
    markets = e6["market"].nunique()
    stable = e6.drop_duplicates("market")["stable"].sum()
    top = {side: summary.loc[summary[f"{side}_mean"].abs().idxmax()] for side in ("seller", "customers")}
    split = summary[np.sign(summary["seller_mean"]) * np.sign(summary["customers_mean"]) < 0]
    table = summary.rename(
        columns={c: c.replace("_", " ") for c in summary.columns if c.startswith(("seller_", "customers_"))}
    )
    lines = [
        "## E6 Sensitivities: what each model attribute is worth at the equilibrium",
        "",
        f"The {markets} markets of E1 at Gamma = {base_gamma}, deviation = {base_dev} "
        f"({stable} of them with a locally stable pin pattern, where the derivative is the "
        "equilibrium's). The seller's exact profit and the customers' total worst-case surplus are "
        "differentiated through the equilibrium prices (`lj.sensitivities`: the implicit derivative of "
        "the pinned prices, the seller re-pricing every model); shown as the first-order change when "
        "one attribute of one model rises by 1% of its value ($). Serving cost reaches the customers "
        "only through the prices, and customer-pinned prices do not depend on it: its customer bar is 0.",
        "",
    ]
    for side, name in (("seller", "the seller"), ("customers", "the customers")):
        r = top[side]
        lines.append(
            f"- Largest effect on {name}: +1% {r['attribute'].replace('_', ' ')} of model {int(r['model'])}, "
            f"{r[f'{side}_mean']:+,.1f} $ on average (from {r[f'{side}_min']:+,.1f} to "
            f"{r[f'{side}_max']:+,.1f} $ over the markets)."
        )
    if len(split):
        pairs = ", ".join(f"{r.attribute.replace('_', ' ')} of model {r.model}" for r in split.itertuples())
        lines.append(f"- The two sides disagree in sign (on average) for: {pairs}.")
    lines += ["", "![E6](e6.png)", "", markdown_table(table), ""]
    return "\n".join(lines)


def _where(d: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in d.items()) if d else "n/a"
