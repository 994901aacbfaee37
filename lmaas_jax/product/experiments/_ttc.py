"""`lmaas-jax ttc`: market versus auction for the nine bundled markets, and inefficiency versus beta."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ... import ttc
from .._output import markdown_table, plt, save_figure, write_table


def ttc_report(out: str | Path, betas=(200.0, 1e3, 1e5), n_sweep: int = 100, progress=lambda it, **kw: it):
    """Write `ttc_table.csv/.parquet` (market vs auction, every benchmark x method x beta) and
    `ttc_inefficiency.png` (inefficiency versus `n_sweep` log-spaced beta in [1, 1e6]); one vmapped
    call per market covers the table's betas and the sweep. Returns the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(0)
    sweep = jnp.logspace(0.0, 6.0, n_sweep)
    rows, curves = [], {}
    markets = [(b, m) for b in ttc.BENCHMARKS for m in ttc.METHODS]
    for bench, method in progress(markets, desc="TTC markets"):
        market = ttc.load_market(bench, method)
        a = ttc.auction(market)
        all_betas = jnp.concatenate([jnp.asarray(betas, sweep.dtype), sweep])
        batch = jax.vmap(lambda beta, m=market: ttc.outcome(m, ttc.GameParams(beta=beta), key=key))(all_betas)
        curves[(bench, method)] = np.asarray(batch.inefficiency[len(betas) :])
        for k, beta in enumerate(betas):
            o = jax.tree_util.tree_map(lambda x, k=k: x[k], batch)
            rows.append(
                dict(
                    benchmark=bench,
                    method=method,
                    beta=beta,
                    first_best=float(o.first_best),
                    market_welfare=float(o.equilibrium_welfare),
                    inefficiency_pct=float(o.inefficiency),
                    market_avg_price=float(o.avg_price),
                    market_profile=" ".join(f"{x:g}" for x in np.asarray(o.theta)),
                    auction_winner=a.winner,
                    auction_runner_up=a.runner_up,
                    auction_user_value=float(a.user_value),
                    auction_user_price=float(a.user_price),
                    auction_winner_profit=float(a.winner_profit),
                    auction_welfare=float(a.welfare),
                )
            )
    table = pd.DataFrame(rows)
    write_table(table, out, "ttc_table")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, method in zip(axes, ttc.METHODS, strict=True):
        for bench in ttc.BENCHMARKS:
            ax.plot(np.asarray(sweep), curves[(bench, method)], label=bench)
        ax.set_xscale("log")
        ax.set_xlabel("user rationality beta (1/$)")
        ax.set_title(f"{method} ({'3 reasoning' if method == 'effort' else '9 instruct'} providers)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("inefficiency of pay-per-token, 100 (SW*/SW_NE - 1) (%)")
    fig.suptitle("Test-time compute game: welfare lost at equilibrium (the auction loses none)")
    save_figure(fig, out / "ttc_inefficiency.png")
    return table


def ttc_section(table: pd.DataFrame) -> str:
    """The report's test-time compute section (markdown) from [`ttc_report`][]'s table."""
    worst = table.loc[table["inefficiency_pct"].idxmax()]
    cal = table[(table["benchmark"] == "GSM8K") & (table["method"] == "majority") & (table["beta"] == 200.0)]
    gain = 100 * (table["auction_welfare"] / table["market_welfare"] - 1)
    lines = [
        "## Test-time compute: pay-per-token market versus the reverse second-price auction",
        "",
        "Nine bundled markets (GSM8K, AIME, GPQA x majority vote, best-of-N, effort), providers "
        "choosing their compute level at equilibrium under pay-per-token, against the auction on "
        "(price, quality) bids (`docs/models/ttc.md`).",
        "",
        f"- Largest inefficiency of the market: {worst['inefficiency_pct']:.1f}% "
        f"({worst['benchmark']}, {worst['method']}, beta = {worst['beta']:g}); the auction is efficient: "
        f"its welfare is {gain.min():.1f}% to {gain.max():.1f}% above the market's equilibrium welfare.",
    ]
    if len(cal):
        c = cal.iloc[0]
        lines.append(
            f"- Calibration point (GSM8K, majority vote, beta = 200): SW* = {c['first_best']:.5f}, "
            f"SW_NE = {c['market_welfare']:.5f}, inefficiency {c['inefficiency_pct']:.1f}%; the auction's "
            f"winner {c['auction_winner']} against {c['auction_runner_up']}, user price "
            f"{c['auction_user_price']:.5f} $ per query."
        )
    cols = [
        "benchmark",
        "method",
        "beta",
        "inefficiency_pct",
        "market_welfare",
        "auction_welfare",
        "auction_winner",
    ]
    lines += ["", "![TTC](ttc_inefficiency.png)", "", markdown_table(table[cols]), ""]
    return "\n".join(lines)
