"""The unit-demand envy-free pricing benchmark of Fernandes, Ferreira, Franco and Schouery.

Unit-demand pricing is the LMaaS game with every rental one hour long, no budgets and no costs:
consumer i buys the item j maximising v_ij - p_j if that is >= 0, ties go to the seller, and the
seller maximises the sum of the prices paid. So an instance is a [`lmaas_jax.ValueMarket`][] with
rate_ij = v_ij and hours_ij = 1 for every valued pair (0, "no option", for the others), horizon 1,
no budget, zero costs and price box [0, the item's highest value].
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..lmaas.scenarios._market import ValueMarket, check_layout


def _fail(path, lineno: int, line: str, why: str):
    raise ValueError(f"{path}: line {lineno} {line.strip()!r}: {why}")


def read_unit_demand(path, *, dtype=None, layout: str = "auto") -> ValueMarket:
    """Read one instance of the unit-demand benchmark into a [`lmaas_jax.ValueMarket`][].

    The format (text): a header line `consumers items valuations`, then one line per valuation,
    `consumer item value`, 0-based indices. Only the first `valuations` lines are read, as the
    benchmark's authors read them: files of the popularity generator carry more lines than their
    header announces, and the published optima are those of the announced ones (checked in
    `tests/test_value_market.py` against HiGHS). Customer i is consumer i and model j is item j; each
    valued pair is a one-hour rental worth v_ij, unvalued pairs are no option; horizon 1 h, no
    budgets, zero serving and training costs; item j's price box is [0, max_i v_ij], and an item
    nobody values has box [0, 0] and is no one's option (unavailable).

    **Arguments:**

    - `path`: the instance file.
    - `dtype`: float dtype of the market (default JAX's default float: float32 unless x64 is on).
    - `layout`: `"lists"` (each consumer's valued items as option lists, K of them padded to the
      most any consumer values; see `ValueMarket.option_model`), `"table"` (dense N x M) or
      `"auto"` (default): lists where K <= M / 2, which is every instance of the benchmark
      (consumers value about 8 items, at most 18, of 50 to 3000), the table otherwise.

    **Returns:**

    A `ValueMarket` of `items` models and `consumers` customers. Its optimal profit is the
    instance's optimal revenue.

    Malformed files raise `ValueError` naming the file, the line number and its content: a header
    that is not three non-negative integers, a line that is not `int int number`, an index out of
    range, a negative or non-finite value, a pair listed twice, or fewer valuation lines than the
    header announces.
    """
    check_layout(layout)  # before the file is read
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    body = [(k + 1, line) for k, line in enumerate(lines) if line.strip()]
    if not body:
        raise ValueError(f"{path}: empty file; expected a header line 'consumers items valuations'.")
    lineno, header = body[0]
    parts = header.split()
    try:
        n, m, count = (int(v) for v in parts)
        if len(parts) != 3 or min(n, m, count) < 0:
            raise ValueError
    except ValueError:
        _fail(path, lineno, header, "the header must be three integers >= 0: 'consumers items valuations'")
    if n < 1 or m < 1:
        _fail(path, lineno, header, "an instance needs at least one consumer and one item")
    if len(body) - 1 < count:
        last_no, last = body[-1]
        why = f"the header announces {count} valuations but the file has {len(body) - 1}"
        _fail(path, last_no, last, why)
    value = np.zeros((n, m), np.float64)
    seen = np.zeros((n, m), bool)
    # Only the first `valuations` lines count: the popularity generator's files carry more lines than
    # their header announces (e.g. 443 for 400), and the published optima are those of the first
    # `valuations` (p-n=50-e=400-q=200-d=0.25.0: 1111.69 as published, 1222.53 with every line).
    for lineno, line in body[1 : count + 1]:
        parts = line.split()
        try:
            if len(parts) != 3:
                raise ValueError
            i, j, v = int(parts[0]), int(parts[1]), float(parts[2])
        except ValueError:
            _fail(path, lineno, line, "expected 'consumer item value' (two integers and a number)")
        if not 0 <= i < n:
            _fail(path, lineno, line, f"consumer {i} is out of range 0..{n - 1}")
        if not 0 <= j < m:
            _fail(path, lineno, line, f"item {j} is out of range 0..{m - 1}")
        if not math.isfinite(v) or v < 0:
            _fail(path, lineno, line, f"the value must be finite and >= 0; got {v!r}")
        if seen[i, j]:
            _fail(path, lineno, line, f"consumer {i} values item {j} twice")
        seen[i, j] = True
        value[i, j] = v
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    rate = jnp.asarray(value, dtype)
    hours = jnp.asarray(seen, dtype)
    return ValueMarket.from_table(rate, hours, horizon=1.0, dtype=dtype).in_layout(layout)


def read_published(path) -> dict[str, dict]:
    """`published.csv` of the benchmark: instance name -> {best_value, proven_optimal, fastest_optimal_s,
    best_bound}.

    `best_value` is the best objective the authors published (CPLEX, one hour, five formulations),
    `proven_optimal` whether one of them proved it optimal, `fastest_optimal_s` the fastest proof in
    seconds on their machine (NaN where none), `best_bound` CPLEX's proven upper bound where the
    optimum was not proven (NaN where the column is absent or blank). Missing columns or unparsable
    rows raise `ValueError` naming the row.
    """
    path = Path(path)
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"instance", "proven_optimal", "best_value", "fastest_optimal_s"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: needs columns {sorted(need)}; got {reader.fieldnames}.")
        for k, row in enumerate(reader, start=2):
            try:
                out[row["instance"]] = dict(
                    best_value=float(row["best_value"]),
                    proven_optimal=row["proven_optimal"].strip().lower() == "true",
                    fastest_optimal_s=float(row["fastest_optimal_s"]),
                    best_bound=float(row.get("best_bound") or "nan"),
                )
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {k} {row!r}: unparsable row.") from None
    return out
