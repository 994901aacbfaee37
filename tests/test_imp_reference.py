"""Default `lj.imp` against prices recorded before a change meant to keep them (the redesign of IMP
into stages): the same prices on the default market family, so a refactoring that changes an answer
fails here. The reference and the script that recorded it are in `tests/data/imp-reference/`. A
change meant to change answers (a stronger search) re-records only the markets it changes, and lists
each under `changes` in the file with its profit before and after and the reason."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import lmaas_jax as lj

REFERENCE = json.loads((Path(__file__).parent / "data" / "imp-reference" / "prices.json").read_text())
ROWS = REFERENCE["markets"]
# The default run checks two shapes, one in each dtype; `-m slow` every recorded market.
QUICK = {(2, 40, "float32"), (6, 64, "float64")}


def _check(row):
    m, n, seed, dtype = row["n_models"], row["n_customers"], row["seed"], row["dtype"]
    market = lj.random_market(jax.random.PRNGKey(1000 * m + seed), m, n, dtype=dtype)
    sol = lj.imp(market, key=jax.random.PRNGKey(10_000 + seed))
    prices, profit = np.asarray(sol.prices, np.float64), float(sol.profit)
    if dtype == "float64":
        np.testing.assert_allclose(prices, row["prices"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(profit, row["profit"], rtol=1e-12)
    else:
        np.testing.assert_allclose(profit, row["profit"], rtol=1e-6)
        np.testing.assert_allclose(prices, row["prices"], rtol=1e-6, atol=0)
    assert sol.settings == lj.GradientIMP.for_market(market)


def _ids(rows):
    return [f"{r['n_models']}x{r['n_customers']}-s{r['seed']}-{r['dtype']}" for r in rows]


def test_the_reference_covers_the_default_family():
    # A re-recorded market never ended lower: changes are improvements of the search.
    assert all(c["profit_after"] >= c["profit_before"] for c in REFERENCE.get("changes", []))
    shapes = {(r["n_models"], r["n_customers"]) for r in ROWS}
    assert len(ROWS) >= 40 and {m for m, _ in shapes} >= {2, 8} and {n for _, n in shapes} >= {40, 512}
    assert {r["dtype"] for r in ROWS} == {"float32", "float64"}


QUICK_ROWS = [r for r in ROWS if (r["n_models"], r["n_customers"], r["dtype"]) in QUICK and r["seed"] == 0]


@pytest.mark.parametrize("row", QUICK_ROWS, ids=_ids(QUICK_ROWS))
def test_imp_returns_the_recorded_prices(row):
    _check(row)


SLOW_ROWS = [r for r in ROWS if r not in QUICK_ROWS]


@pytest.mark.slow
@pytest.mark.parametrize("row", SLOW_ROWS, ids=_ids(SLOW_ROWS))
def test_imp_returns_the_recorded_prices_on_every_recorded_market(row):
    _check(row)
