"""How every report writes: markdown tables, CSV + Parquet tables, PNG figures (matplotlib, Agg).

The games' report modules (`lmaas_jax/<game>/_report.py`, `lmaas_jax/lmaas/experiments/`) write
through these, so the one `lmaas-jax run` report reads alike from section to section.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ._sweep import write_atomic  # noqa: E402

__all__ = ["markdown_table", "plt", "save_figure", "write_table"]


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table of `df`: floats to `digits` significant digits, thousands separated above 1e4."""

    def cell(v):
        if isinstance(v, float | np.floating):
            return "nan" if np.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def write_table(table: pd.DataFrame, out: Path, name: str) -> None:
    """`out/name.csv` and `out/name.parquet`; the Parquet file last and atomically, so a whole
    `.parquet` marks a finished table (what a resumed run skips)."""
    table.to_csv(out / f"{name}.csv", index=False)
    write_atomic(table, out / f"{name}.parquet")


def save_figure(fig, path: Path) -> Path:
    """Lay out `fig` (unless it has a layout engine already), write it to `path` (PNG, 120 dpi) and
    close it."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
