"""Figures E1-E6 (matplotlib, Agg): each reads the tables of `_tables` and writes one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._output import plt, save_figure
from ._tables import BASELINES, e3_models

_RULE_NAMES = {
    "nominal": "nominal planning",
    "most_accurate": "'most accurate model' rule",
    "cheapest": "'cheapest model' rule",
}


def _mark_max(ax, x, y, text: str) -> None:
    """Ring the largest point and say so in a box in the panel's free corner (nothing clipped)."""
    ax.plot(x, y, "o", ms=17, mfc="none", mec="crimson", mew=2, zorder=6)
    ax.text(
        0.03,
        0.97,
        text,
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize=8.5,
        color="crimson",
        bbox=dict(boxstyle="round", fc="white", ec="crimson", alpha=0.9),
        zorder=7,
    )


def e1_figure(e1: pd.DataFrame, path: Path) -> Path:
    """RSR's gain in worst-case customer profit over each baseline, versus deviation, per Gamma:
    in dollars per market (top row, the headline) and in percent of the baseline (bottom row,
    symlog; crosses mark bases within 10% of 0, where a percentage says little)."""
    fig, axes = plt.subplots(
        2, len(BASELINES), figsize=(5.4 * len(BASELINES), 8.2), squeeze=False, layout="constrained"
    )
    for col, rule in enumerate(BASELINES):
        top, bottom = axes[0, col], axes[1, col]
        for k, (gamma, g) in enumerate(e1.groupby("gamma")):
            # Gamma = 2 and 3 often coincide (a third deviating component rarely binds): dash the
            # later lines and hollow their markers so overlapping lines stay visible.
            style = dict(marker="os^D"[k % 4], ls=("-", "--", "-.", ":")[k % 4], ms=8 - k, color=f"C{k}")
            mfc = "none" if k % 2 else None
            top.plot(g["deviation"], g[f"gain_abs_{rule}"] / 1e3, mfc=mfc, label=f"Gamma = {gamma}", **style)
            bottom.plot(g["deviation"], g[f"gain_worst_{rule}"], mfc=mfc, label=f"Gamma = {gamma}", **style)
        uncertain = e1[e1["gamma"] >= 1]
        if len(uncertain):
            best = uncertain.loc[uncertain[f"gain_abs_{rule}"].idxmax()]
            base = best[f"customer_worst_{rule}"] / best["markets"]
            _mark_max(
                top,
                best["deviation"],
                best[f"gain_abs_{rule}"] / 1e3,
                f"max +{best[f'gain_abs_{rule}'] / 1e3:.1f} k$ per market\n"
                f"(Gamma {int(best['gamma'])}, dev {best['deviation']:g}; "
                f"rule's worst case {base / 1e3:.1f} k$)",
            )
            rel = uncertain[uncertain[f"gain_worst_{rule}"].notna()]
            if len(rel):
                b = rel.loc[rel[f"gain_worst_{rule}"].idxmax()]
                _mark_max(
                    bottom,
                    b["deviation"],
                    b[f"gain_worst_{rule}"],
                    f"max {b[f'gain_worst_{rule}']:.0f}% (Gamma {int(b['gamma'])}, dev {b['deviation']:g})",
                )
        near0 = e1[(e1[f"customer_worst_{rule}"].abs() < 0.1 * e1["customer_worst_rsr"].abs())]
        if len(near0):
            bottom.plot(
                near0["deviation"], near0[f"gain_worst_{rule}"], "kx", ms=9, label="base within 10% of 0"
            )
        for ax in (top, bottom):
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_xlabel("adverse deviation (fraction of nominal)")
            ax.margins(x=0.06, y=0.3)  # room for the rings and the corner box
            ax.legend(fontsize=7.5, loc="lower right")
        bottom.set_yscale("symlog", linthresh=10.0)
        top.set_ylabel("RSR - rule, worst-case profit (k$ per market)")
        bottom.set_ylabel("RSR over rule (% of the rule's worst case, symlog)")
        top.set_title(f"RSR vs {_RULE_NAMES[rule]}: dollars")
        bottom.set_title(f"RSR vs {_RULE_NAMES[rule]}: percent")
    fig.suptitle("E1: customers' worst-case profit, robust (RSR) vs other plans, at equilibrium prices")
    return save_figure(fig, path)


def e2_figure(e2: pd.DataFrame, path: Path) -> Path:
    """IMP's profit as a percentage of the MILP optimum, and HiGHS time / IMP time, per market size."""
    labels = [f"{m}x{n}" for m, n in e2[["M", "N"]].drop_duplicates().itertuples(index=False)]
    x = {lab: i for i, lab in enumerate(labels)}
    pos = np.array([x[f"{m}x{n}"] for m, n in zip(e2["M"], e2["N"], strict=True)])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.scatter(pos, 100 * e2["fraction"], alpha=0.6, label="one market")
    mean = e2.groupby(["M", "N"], sort=False)["fraction"].mean().to_numpy()
    a.hlines(
        100 * mean, np.arange(len(labels)) - 0.3, np.arange(len(labels)) + 0.3, colors="k", lw=2, label="mean"
    )
    a.set_ylabel("gradient IMP profit (% of exact optimum)")
    a.ticklabel_format(axis="y", useOffset=False)
    a.set_title("profit")
    b.scatter(pos, e2["time_ratio"], alpha=0.6, color="tab:green")
    b.set_yscale("log")
    b.set_ylabel("HiGHS MILP time / IMP time per market (x)")
    b.set_title("time ratio (IMP batched, compile excluded)")
    for ax in (a, b):
        ax.set_xlim(-0.6, len(labels) - 0.4)  # the mean bars (0.6 wide) end inside the frame
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("market size (models x customers)")
    a.legend(fontsize=8)
    fig.suptitle("E2: gradient IMP against the exact MILP optimum (budget-free markets, Gamma = 2)")
    return save_figure(fig, path)


def e3_figure(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Equilibrium prices, market shares and both sides' profits versus Gamma, deviation and gap.

    Lines are means over seeds, bands span the smallest to the largest seed. A model's price is
    averaged over the seeds where it sells only, and left out where it sells in none (its price
    there is not a market price); hollow markers: it sold in some seeds only. Dotted lines are the
    tops of the price boxes; a triangle marks a point where some seed prices the model at its top.
    """
    xlabels = {
        "gamma": "uncertainty budget Gamma",
        "deviation": "adverse deviation (fraction of nominal)",
        "capability_gap": "accuracy gap, largest - smallest model",
    }
    fig, axes = plt.subplots(
        3, len(tables), figsize=(5.2 * len(tables), 11), squeeze=False, layout="constrained"
    )
    for col, (by, t) in enumerate(tables.items()):
        x = t[by].to_numpy(np.float64)
        m = e3_models(t)
        for j in range(1, m + 1):
            name = f"model {j}" + (" (smallest)" if j == 1 else " (largest)" if j == m else "")
            color = f"C{j - 1}"
            price, sold, seeds = t[f"price_{j}"], t[f"sold_{j}"], t["seeds"]
            ax = axes[0, col]
            ax.plot(x, price, "-", color=color, label=name)
            ax.fill_between(x, t[f"price_min_{j}"], t[f"price_max_{j}"], color=color, alpha=0.15, lw=0)
            full = (sold == seeds).to_numpy()
            ax.plot(x[full], price[full], "o", color=color, ms=5)
            ax.plot(x[~full], price[~full], "o", mfc="white", mec=color, ms=6)
            top = t[f"ceiling_{j}"].to_numpy() > 0
            ax.plot(x[top], price[top], "^", color=color, ms=10, mec="k", zorder=5)
            ax.axhline(t[f"box_top_{j}"].iloc[0], color=color, ls=":", lw=1)
            share = 100 * t[f"share_{j}"]
            axes[1, col].plot(x, share, marker="o", color=color, label=name)
            axes[1, col].fill_between(
                x, 100 * t[f"share_{j}_min"], 100 * t[f"share_{j}_max"], color=color, alpha=0.12, lw=0
            )
        axes[0, col].plot([], [], "o", mfc="white", mec="grey", label="sold in some seeds only")
        axes[0, col].plot([], [], "^", color="grey", mec="k", label="some seed at the box top")
        axes[0, col].plot([], [], ":", color="grey", label="top of the price box")
        axes[1, col].plot(x, 100 * t["share_none"], "k--", marker="x", label="no rental")
        axes[0, col].set_ylabel("price where sold ($ per rented hour)")
        tops = [t[f"box_top_{j}"].iloc[0] for j in range(1, m + 1)]
        axes[0, col].set_ylim(0.0, 1.45 * np.nanmax(tops))  # the legend sits above the box tops
        axes[1, col].set_ylabel("market share (% of customers)")
        for k, (c, label, marker) in enumerate(
            (
                ("profit", "seller profit", "o"),
                ("customer_worst_rsr", "customers, worst case", "s"),
                ("customer_mean_rsr", "customers, scenario mean", "^"),
            )
        ):
            axes[2, col].plot(x, t[c] / 1e3, marker=marker, color=f"C{k}", label=label)
            axes[2, col].fill_between(
                x, t[f"{c}_min"] / 1e3, t[f"{c}_max"] / 1e3, color=f"C{k}", alpha=0.12, lw=0
            )
        axes[2, col].set_ylabel("profit per market (thousand $)")
        for row in range(3):
            axes[row, col].set_xlabel(xlabels.get(by, by))
            if by == "gamma":
                axes[row, col].set_xticks(sorted(set(x)))
            if row == 0:
                axes[row, col].legend(fontsize=6.5, ncol=3, loc="upper center")
            else:
                axes[row, col].legend(fontsize=6.5)
    fig.suptitle(
        "E3: equilibrium under gradient IMP pricing and RSR customers (mean over seeds; bands: min to max)"
    )
    return save_figure(fig, path)


_ATTRIBUTE_NAMES = {
    "accuracy": "accuracy",
    "throughput": "throughput (task/h)",
    "payload": "payload (kbit/task)",
    "serving_cost": "serving cost ($/h)",
}


def e6_figure(summary: pd.DataFrame, path: Path) -> Path:
    """Per attribute, per model: the seller's and the customers' first-order gain from +1% of it.

    Bars are means over markets; whiskers span the smallest to the largest market; a model that
    sells in none of the markets is labelled so.
    """
    attributes = list(dict.fromkeys(summary["attribute"]))
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 4.4), squeeze=False)
    for ax, a in zip(axes[0], attributes, strict=True):
        t = summary[summary["attribute"] == a]
        x = t["model"].to_numpy()
        for k, side in enumerate(("seller", "customers")):
            mean = t[f"{side}_mean"].to_numpy()
            err = np.vstack([mean - t[f"{side}_min"].to_numpy(), t[f"{side}_max"].to_numpy() - mean])
            label = "seller's profit" if side == "seller" else "customers' worst case"
            ax.bar(x + (k - 0.5) * 0.38, mean, 0.38, yerr=err, capsize=3, color=f"C{k}", label=label)
        ax.axhline(0.0, color="k", lw=0.6)
        ticks = [f"{m}" + ("\n(unsold)" if s == 0 else "") for m, s in zip(x, t["sold"], strict=True)]
        ax.set_xticks(x, ticks)
        ax.set_xlabel("model (1 = smallest)")
        ax.set_title(f"+1% {_ATTRIBUTE_NAMES.get(a, a)}")
        ax.set_ylabel("change at the equilibrium ($)")
        ax.margins(y=0.12)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        "E6: what 1% more of each model attribute is worth, the seller re-pricing "
        "(mean over markets; whiskers: min to max)"
    )
    return save_figure(fig, path)


def e4_figure(steps: pd.DataFrame, ccg: pd.DataFrame, path: Path) -> Path:
    """C&CG's bounds per iteration (left) and IMP's exact and relaxed profit per step (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (i, g) in enumerate(ccg.groupby("customer")):
        color = f"C{k}"
        a.plot(g["iteration"], g["upper"], "--", marker="v", color=color, label=f"customer {i}: upper")
        a.plot(g["iteration"], g["lower"], "-", marker="^", color=color, label=f"customer {i}: lower")
        a.axhline(g["rsr_value"].iloc[0], color=color, lw=0.6, ls=":")
    a.set_xlabel("C&CG iteration")
    a.set_ylabel("bound on robust profit ($)")
    a.set_title("C&CG bounds (dotted: closed-form RSR)")
    a.set_xticks(range(1, int(ccg["iteration"].max()) + 1))
    a.legend(fontsize=7, ncol=2)
    b.plot(steps["step"], steps["best_exact_profit"] / 1e3, lw=2, label="best exact profit so far")
    b.plot(steps["step"], steps["relaxed_profit_best_restart"] / 1e3, label="relaxed profit, best restart")
    b.plot(steps["step"], steps["relaxed_profit_mean"] / 1e3, alpha=0.7, label="relaxed profit, restart mean")
    b.axhline(steps.attrs.get("final_profit", np.nan) / 1e3, color="k", ls=":", label="after polish")
    b.set_xlabel("gradient step")
    b.set_ylabel("seller profit (thousand $)")
    t = b.twinx()
    t.plot(steps["step"], steps["temperature"], color="grey", lw=0.8, ls="--")
    t.set_yscale("log")
    t.set_ylabel("temperature ($, dashed grey)")
    b.set_title("gradient IMP")
    b.legend(fontsize=7, loc="lower right")
    fig.suptitle("E4: convergence")
    return save_figure(fig, path)


def e5_figure(e5: pd.DataFrame, path: Path) -> Path:
    """Markets priced per second versus batch size, with HiGHS's rate as a line."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    imp = e5[e5["method"] == "gradient IMP"]
    for device, g in imp.groupby("device"):
        ax.plot(g["batch"], g["markets_per_s"], marker="o", label=f"gradient IMP ({device})")
    milp = e5[e5["method"] == "HiGHS MILP"]
    if len(milp):
        ax.axhline(milp["markets_per_s"].iloc[0], color="crimson", ls="--", label="HiGHS MILP, one at a time")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("markets per batch (jax.vmap)")
    ax.set_ylabel("markets priced per second")
    m, n = int(e5["M"].iloc[0]), int(e5["N"].iloc[0])
    ax.set_title(f"E5: throughput, {m} models x {n} customers, budget-free")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
