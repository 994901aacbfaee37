"""Competition between sellers: time per market of `lj.compete` and `lj.relaxed_compete`, and how often
each reaches an equilibrium.

Two sellers owning two models each (the default family's M = 4 models, seller 0 the two smallest)
on budget-free default markets of N customers, and on markets whose customers are loyal to one
seller (`--loyalty`: a customer's value rate of the other seller's models is multiplied by it).
Per N, over `--markets` markets (seeds `SEED + i`):

- `compete`: wall time per market (the dynamics are a Python loop of jitted best responses, so the
  first market's compilation is reported apart), best responses per market, and how many markets
  converged (a pure equilibrium by IMP's best responses) or cycled;
- `relaxed_compete` at temperature 0.3 x the market's scale (the median customer's best robust
  profit): one market after compilation (median of the markets), and `jit(vmap)` over the batch,
  markets per second; how many converged.

    python benchmarks/competition.py --sizes 60,256,1024 --markets 8 [--games relaxed]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import lmaas_jax as lj
from lmaas_jax.lmaas.pricing._ascent import market_scale

SEED = 717171
OWNER = np.array([0, 0, 1, 1])


def loyal(market, loyalty):
    """`market`'s value table with each customer loyal to one seller (customers dealt in turn)."""
    values = lj.value_market(market)
    home = np.arange(values.n_customers) % 2
    scale = np.where(OWNER[None, :] == home[:, None], 1.0, loyalty)
    return eqx.tree_at(lambda v: v.rate, values, values.rate * jnp.asarray(scale, values.dtype))


def markets(n, count, loyalty, dtype):
    out = []
    for i in range(count):
        m = lj.random_market(jax.random.PRNGKey(SEED + 1000 * n + i), 4, n, budget_share=0.0, dtype=dtype)
        out.append(loyal(m, loyalty) if loyalty < 1.0 else lj.value_market(m))
    return out


def compete_rows(n, batch, loyalty):
    walls, calls, converged, cycles, first = [], [], 0, 0, None
    for i, m in enumerate(batch):
        start = time.perf_counter()
        got = lj.compete(m, OWNER, key=jax.random.PRNGKey(i))
        jax.block_until_ready(got.prices)
        wall = time.perf_counter() - start
        if first is None:
            first = wall
            continue  # compilation
        walls.append(wall)
        calls.append(got.best_responses)
        converged += bool(got.converged)
        cycles += got.cycle > 0
    return dict(
        game="compete",
        n=n,
        loyalty=loyalty,
        markets=len(walls),
        first_s=first,
        median_s=statistics.median(walls),
        best_responses=statistics.median(calls),
        converged=converged,
        cycled=int(cycles),
    )


def relaxed_rows(n, batch, loyalty):
    temps = [0.3 * float(market_scale(m)) for m in batch]
    one = []
    converged = 0
    for i, (m, t) in enumerate(zip(batch, temps, strict=True)):
        start = time.perf_counter()
        got = lj.relaxed_compete(m, OWNER, t)
        jax.block_until_ready(got.prices)
        if i:
            one.append(time.perf_counter() - start)
        converged += bool(got.converged)
    stacked = lj.stack_markets(batch)
    temps = jnp.asarray(temps, batch[0].dtype)
    fn = jax.jit(jax.vmap(lambda m, t: lj.relaxed_compete(m, OWNER, t, n_sellers=2).prices))
    jax.block_until_ready(fn(stacked, temps))
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(fn(stacked, temps))
        runs.append(time.perf_counter() - start)
    return dict(
        game="relaxed_compete",
        n=n,
        loyalty=loyalty,
        markets=len(batch),
        median_s=statistics.median(one),
        batch_markets_per_s=len(batch) / statistics.median(runs),
        converged=converged,
    )


def table(rows):
    lines = [
        "| game | N | loyalty | markets | s / market | best responses | converged | cycled "
        "| batch markets/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['game']} | {r['n']} | {r['loyalty']} | {r['markets']} | {r['median_s']:.3f} | "
            f"{r.get('best_responses', '')} | {r['converged']} / {r['markets']} | {r.get('cycled', '')} | "
            f"{r['batch_markets_per_s']:.1f} |"
            if "batch_markets_per_s" in r
            else f"| {r['game']} | {r['n']} | {r['loyalty']} | {r['markets']} | {r['median_s']:.3f} | "
            f"{r['best_responses']} | {r['converged']} / {r['markets']} | {r['cycled']} | |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="60,256,1024")
    parser.add_argument("--markets", type=int, default=8)
    parser.add_argument("--loyalty", default="0.5,1.0", help="loyalties, comma-separated (1: default)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--games", default="compete,relaxed", help="which rows: compete, relaxed or both")
    parser.add_argument("--out", default=None, help="folder for competition-<backend>.md/.json")
    args = parser.parse_args(argv)
    games = set(args.games.split(","))
    if not games or games - {"compete", "relaxed"}:
        raise ValueError(f"--games must name compete and/or relaxed; got {args.games!r}.")
    jax.config.update("jax_enable_x64", True)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for loyalty in (float(x) for x in args.loyalty.split(",")):
            batch = markets(n, args.markets + 1, loyalty, args.dtype)
            new = [compete_rows(n, batch, loyalty)] if "compete" in games else []
            new += [relaxed_rows(n, batch[1:], loyalty)] if "relaxed" in games else []
            rows += new
            print(table(new).splitlines()[-len(new) :], flush=True)
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    text = f"Device: {device}, {args.dtype}; two sellers of two models each.\n\n{table(rows)}\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tag = f"competition-{jax.devices()[0].platform}"
        (out / f"{tag}.md").write_text(text)
        (out / f"{tag}.json").write_text(
            json.dumps(dict(device=device, dtype=args.dtype, rows=rows), indent=2)
        )


if __name__ == "__main__":
    main()
