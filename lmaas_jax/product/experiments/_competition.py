"""E7 of `lmaas-jax run`: monopoly, duopoly and every model its own seller on the default family."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ...lmaas.competition._compete import compete
from ...lmaas.competition._relaxed import relaxed_compete
from ...lmaas.pricing._ascent import market_scale
from ...lmaas.robust._relaxed_rsr import relaxed_rsr
from ...lmaas.robust._rsr import value_market
from ...lmaas.scenarios._generator import random_market
from .._output import markdown_table, plt, save_figure, write_table

# The relaxed game's temperature, as a fraction of the market's scale (the median customer's best
# robust profit at the lowest prices): smooth enough for the relaxed best responses to settle.
RELAXED_TEMPERATURE = 0.3


def structures(n_models: int) -> dict[str, np.ndarray]:
    """The market structures E7 compares: one seller, two (the smaller and the larger half of the
    family), and every model its own seller."""
    half = np.arange(n_models) >= n_models // 2
    return {
        "monopoly": np.zeros(n_models, np.int32),
        "duopoly": half.astype(np.int32),
        "every model its own seller": np.arange(n_models, dtype=np.int32),
    }


def e7_competition(
    n_models: int,
    n_customers: int,
    markets: int,
    *,
    dtype="float32",
    seed: int = 1,
    progress=lambda it, **kw: it,
) -> pd.DataFrame:
    """One row per (market, structure, game): the exact game by `compete` and the relaxed game by
    `relaxed_compete`, on budget-free default markets (the relaxed game's first-order conditions
    need them; see docs/competition.md): mean price, the sellers' total profit, the customers'
    surplus (their worst-case profit; expected under the relaxed responses), welfare (their sum),
    whether an equilibrium was reached, and the largest deviation gain relative to its seller's
    profit (exact game)."""
    rows = []
    cases = [(i, name, owner) for i in range(markets) for name, owner in structures(n_models).items()]
    for i, name, owner in progress(cases, desc="E7 competition"):
        market = random_market(
            jax.random.PRNGKey(7_000_000 + 1000 * seed + i),
            n_models,
            n_customers,
            budget_share=0.0,
            dtype=dtype,
        )
        exact = compete(market, owner, key=jax.random.PRNGKey(seed + i))
        profits = np.asarray(exact.profits, np.float64)
        surplus = float(np.sum(np.asarray(exact.response.worst_profit, np.float64)))
        gain = np.asarray(exact.deviation_gain, np.float64) / np.maximum(np.abs(profits), 1e-9)
        common = dict(market=i, structure=name, sellers=int(owner.max()) + 1)
        rows.append(
            dict(
                common,
                game="exact",
                mean_price=float(np.mean(np.asarray(exact.prices, np.float64))),
                profit=float(profits.sum()),
                surplus=surplus,
                welfare=float(profits.sum()) + surplus,
                equilibrium=bool(exact.converged),
                max_gain=float(gain.max()),
            )
        )
        t = RELAXED_TEMPERATURE * float(market_scale(value_market(market)))
        relaxed = relaxed_compete(market, owner, t)
        response = relaxed_rsr(market, relaxed.prices, t)
        expected = jnp.sum(response.probabilities * response.option_values)
        rows.append(
            dict(
                common,
                game=f"relaxed (t = {RELAXED_TEMPERATURE} x scale)",
                mean_price=float(np.mean(np.asarray(relaxed.prices, np.float64))),
                profit=float(jnp.sum(relaxed.profits)),
                surplus=float(expected),
                welfare=float(jnp.sum(relaxed.profits) + expected),
                equilibrium=bool(relaxed.converged),
                max_gain=float("nan"),
            )
        )
    return pd.DataFrame(rows)


def e7_report(out: str | Path, n_models: int, n_customers: int, markets: int, **kw) -> pd.DataFrame:
    """Write `e7_competition.csv/.parquet` and `e7.png` (mean price, profit, surplus and welfare per
    structure, exact and relaxed); return the table."""
    out = Path(out)
    table = e7_competition(n_models, n_customers, markets, **kw)
    write_table(table, out, "e7_competition")
    means = table.groupby(["game", "structure"], sort=False)[
        ["mean_price", "profit", "surplus", "welfare"]
    ].mean()
    order = list(structures(n_models))
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, col in zip(axes, ["mean_price", "profit", "surplus", "welfare"], strict=True):
        for k, game in enumerate(table["game"].unique()):
            y = [means.loc[(game, s), col] for s in order]
            ax.bar(np.arange(len(order)) + 0.4 * k - 0.2, y, width=0.4, label=game)
        ax.set_xticks(
            np.arange(len(order)), [s.replace("every model its own seller", "one per model") for s in order]
        )
        ax.set_title(col.replace("_", " ") + (" ($/h)" if col == "mean_price" else " ($ per market)"))
    axes[0].legend(fontsize=8)
    fig.suptitle(f"E7 Competition: {n_models} models, {n_customers} customers, mean of {markets} markets")
    save_figure(fig, out / "e7.png")
    return table


def e7_section(table: pd.DataFrame) -> str:
    """The report's E7 section (markdown) from [`e7_report`][]'s table."""
    means = (
        table.groupby(["structure", "game"], sort=False)[["mean_price", "profit", "surplus", "welfare"]]
        .mean()
        .reset_index()
    )
    exact = table[table["game"] == "exact"]
    cycled = exact[~exact["equilibrium"]]
    reached = exact.groupby("structure", sort=False)["equilibrium"].agg(["sum", "count"])
    relaxed = table[table["game"] != "exact"]
    lines = [
        "## E7 Competition: one seller, two, and one per model",
        "",
        "The same budget-free default markets priced by one seller (monopoly), by two sellers owning the "
        "smaller and the larger half of the family, and with every model its own seller "
        "(`lj.compete`: best-response dynamics with IMP's best responses; `lj.relaxed_compete`: the "
        "relaxed game's equilibrium; docs/competition.md). Surplus is the customers' worst-case profit "
        "(expected under the relaxed responses); welfare is surplus plus the sellers' profit.",
        "",
        "- Pure equilibria of the exact game reached: "
        + ", ".join(f"{s} {int(r['sum'])} of {int(r['count'])}" for s, r in reached.iterrows())
        + "."
        + (
            " Where none is reached the dynamics cycle (undercutting, then a seller raising its prices "
            "to the customers only it can serve), and the prices reported are the cycle's least "
            f"unstable state: its largest deviation gain is a median "
            f"{100 * cycled['max_gain'].median():.1f}% of the deviating seller's profit."
            if len(cycled)
            else ""
        ),
        f"- The relaxed game's equilibrium was found in {int(relaxed['equilibrium'].sum())} of "
        f"{len(relaxed)} cases.",
        "",
        "![E7](e7.png)",
        "",
        markdown_table(means),
        "",
    ]
    return "\n".join(lines)
