"""Gradient Iterative Model Pricing: projected gradient ascent through the relaxed RSR."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jaxtyping import PRNGKeyArray

from ..._checks import check_fits, is_concrete
from ..robust._rsr import rental_options, robust_terms, tie_tolerance
from ..scenarios._market import AnyMarket
from ._classic_imp import coordinate_ascent
from ._moves import COMPOUND_KINDS, improve_by_lookahead, improve_by_moves
from ._posting import posted_solution
from ._profit import profit_from_terms, relaxed_profit_from_terms
from ._solution import PricingSolution, PricingTrace

# One shared default: `filter_jit` keys its cache on static fields, and two `optax.adam(0.05)` calls
# make two different objects, so a fresh default per solver would recompile on every call.
_DEFAULT_OPTIMISER = optax.adam(0.05)


class GradientIMP(eqx.Module):
    """Settings of gradient IMP (see [`lmaas_jax.imp`][]).

    **Fields:**

    - `optimiser`: an optax optimiser over prices scaled to [0, 1] per model (default Adam, 0.05).
    - `steps`: gradient steps per restart.
    - `restarts`: independent starts, run together under `jax.vmap`.
    - `eval_every`: steps between exact profit evaluations (the best exact prices are kept); the
      loop runs `steps` rounded up to a multiple of it, and the trace keeps the first `steps`.
    - `initial_temperature`, `final_temperature`: the temperature falls geometrically from the first
      to the second, both relative to the market's scale (the median over customers of their best
      robust profit at the lowest prices), so one setting serves markets of any size and currency.
    - `polish`: finish with classic IMP (exact breakpoint coordinate ascent) from the restarts' best
      prices, vmapped; it never lowers the profit.
    - `polish_restarts`: polish only this many restarts, those with the best exact profit (`None`:
      all). Each polished start costs O(M N log N) per sweep plus a few O(N M) exact checks per model.
    - `polish_random`: also polish this many random prices drawn from `key`: each model uniform in
      its useful box (see `useful_top`) or, with probability 1/4, priced out of the market at
      `price_hi`. Classic IMP from several starts and menus finds basins the relaxed landscape
      hides. `None` (default): 48 on markets of at least `many_models` models and at most
      `MANY_STARTS_CUSTOMERS` (256) customers, else 16 (the same key: 48 include the 16).
    - `polish_sweeps`: sweeps every polished start gets (stage 1).
    - `polish_finalists`: the best this many after stage 1 get `max_polish_sweeps` more (stage 2).
    - `max_polish_sweeps`: sweeps of stage 2, rounded up to a multiple of `polish_sweeps` (9 by
      default). Each polished start's sweeps stop once it converges, at most these caps; under
      `jax.vmap` a batch of markets runs until its slowest member stops, never past the caps.
    - `moves`: rounds of allocation moves after the polish (0: none): each round re-assigns one
      customer (to another model, or frees it) where that and re-pricing every model at the greatest
      prices that keep everyone else's choice raises the exact profit, then polishes again (see
      `_moves`). Coordinate moves stop at coordinate-wise optima; these leave them.
    - `move_starts`: how many of the best polished optima (of distinct profits) get the moves, one
      after another, the best result kept (the same key: 32 starts include the 8 best).
      `None` (default): 48 on markets of at least `many_models` models and at most
      `MANY_STARTS_CUSTOMERS` (256) customers, else 8. Which local optimum the moves end in depends
      on where they start; on the unit-demand benchmark's p-n=150 instances 32 starts reached the
      published optimum to 1e-4 on four of five (8 starts: one) and took c-n=200 .1 from 0.99664
      to 0.99940, at 3 to 5 times the time (n = 150 to 200: 26 to 94 s on a 2-core CPU, against
      CPLEX's proofs of 80 to 3500 s); larger markets keep 8, which prices n = 3000 in about 5
      minutes there. Round 17 raised 32 to 48 with 48 random polish starts (16 before): c-n=150
      .3, where every pair and compound move stops at 0.99936, then reached the optimum (0.99999)
      with keys 0, 1 and 2 of 0 to 3 (before: key 1 only), at 1.45x the time.
    - `move_inserts`, `move_drops`: candidates per round and per model (M times these in all):
      the cheapest insertions (customer i to model j, by the cut of beta_j that wins i) and the most
      binding customers freed. Each costs one re-pricing, O(N K) per round of its iteration (K
      options per customer: M for a dense table).
    - `move_sheds`: shed moves per model and kind (0: none): model j sheds its t most binding
      customers (each re-homed to the option that pays best, or to its insertion that re-priced
      best, or freed), or its t cheapest to re-home, for t = 1 to this, all re-priced together (at
      most N per kind, four kinds). A model that loses
      its most binding customers can charge the rest more, where re-homing each alone costs more
      than it earns. `None` (default): 4 on markets of at least `many_models` models, else 0.
    - `move_raises`: raise moves per round (0: none): a customer's model priced up to where that
      customer's value of it falls to 0, the models its staying customers would rather rent priced
      up with it, and every customer those prices move re-assigned at once (see
      `_moves.raised_assignment`), the largest rises first; at most N. `None` (default): N on markets
      of at least `many_models` models, else 0.
    - `max_move_candidates`: at most this many candidates per round (all kinds scaled down
      alike), so a round's cost stops growing with M on large markets (unit demand at M = 3000).
    - `move_batch`: candidates re-priced together (`_moves.all_moves`); each chunk runs until its
      slowest candidate's re-pricing converges. `None` (default): 8 on markets of at least
      `many_models` models (where a few candidates need up to M + 2 rounds and most need 4), else
      64.
    - `lookahead`: then, from the best start, at most this many pairs of moves (0: none) that pay
      together where no single move does (`_moves.best_two_moves`), each followed by single moves
      again; a pair costs `lookahead_beam` + 1 rounds of single moves. `None` (default): 4 on
      markets of at least `many_models` models, else 0.
    - `lookahead_beam`: the best this many non-paying first moves are each extended by the best
      second move.
    - `lookahead_compounds`: compound moves per look-ahead step (0: none): a sold customer's model
      priced at that customer's value of it, the customers it loses received by cut prices, then
      coordinate ascent (`_moves.best_compound_move`), the smallest rises first; the look-ahead
      takes the best compound move where it pays more than the best pair. Three candidates per
      customer (received by any model, by unsold models only, and through a chain of raises, see
      `_moves.raised_and_received`), each polished for `polish_sweeps` sweeps, all as one batch of
      starts. `None` (default): N on markets of at least `many_models` models and at most
      `MANY_STARTS_CUSTOMERS` (256) customers, else 0. On the unit-demand benchmark they took
      p-n=200 .0 from 0.99922 and .2 from 0.99972 to the optimum and c-n=200 .4 from 0.99866 to
      0.99998 (the chain: 0.99977 without it), where pairs of re-assignments stop.
    - `many_models`: where the defaults of `move_starts`, `move_sheds`, `lookahead`,
      `lookahead_compounds` and `move_batch` switch. The larger neighbourhoods pay where the
      allocation is the hard part (the unit-demand benchmark, M = 50 to 3000: 0.99966 -> 0.99999 of
      the optimum on p-n=50 .0, 0.99927 -> 0.99999 on c-n=100 .0); on 4-model markets of 128 and
      512 customers they found nothing, cost 1.2x to 2x, and under `jax.vmap` the look-ahead runs
      every market of a batch for its slowest (batch 16 priced 0.99x the markets/s of batch 1,
      against 1.78x without either; README "IMP at scale").
    - `tie_tol`: as in [`lmaas_jax.rsr`][]; default by dtype.

    [`lmaas_jax.imp`][] is compiled once per market shape and solver: reuse one solver object (and
    one optax optimiser object) across calls to reuse the compilation.
    """

    optimiser: optax.GradientTransformation = eqx.field(static=True, default=_DEFAULT_OPTIMISER)
    steps: int = eqx.field(static=True, default=200)
    restarts: int = eqx.field(static=True, default=32)
    eval_every: int = eqx.field(static=True, default=10)
    initial_temperature: float = 0.1
    final_temperature: float = 1e-3
    polish: bool = eqx.field(static=True, default=True)
    polish_restarts: int | None = eqx.field(static=True, default=None)
    polish_random: int | None = eqx.field(static=True, default=None)
    polish_sweeps: int = eqx.field(static=True, default=3)
    polish_finalists: int = eqx.field(static=True, default=4)
    max_polish_sweeps: int = eqx.field(static=True, default=8)
    moves: int = eqx.field(static=True, default=8)
    move_starts: int | None = eqx.field(static=True, default=None)
    move_inserts: int = eqx.field(static=True, default=8)
    move_drops: int = eqx.field(static=True, default=1)
    move_sheds: int | None = eqx.field(static=True, default=None)
    move_raises: int | None = eqx.field(static=True, default=None)
    max_move_candidates: int = eqx.field(static=True, default=2048)
    move_batch: int | None = eqx.field(static=True, default=None)
    lookahead: int | None = eqx.field(static=True, default=None)
    lookahead_beam: int = eqx.field(static=True, default=8)
    lookahead_compounds: int | None = eqx.field(static=True, default=None)
    many_models: int = eqx.field(static=True, default=16)
    tie_tol: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        for name in (
            "steps",
            "restarts",
            "eval_every",
            "max_polish_sweeps",
            "polish_restarts",
            "polish_sweeps",
            "polish_finalists",
            "move_starts",
            "move_inserts",
            "max_move_candidates",
            "move_batch",
            "lookahead_beam",
            "many_models",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if int(value) < 1:
                raise ValueError(f"GradientIMP.{name} must be >= 1; got {value!r}.")
        for name in (
            "polish_random",
            "moves",
            "move_drops",
            "move_sheds",
            "move_raises",
            "lookahead",
            "lookahead_compounds",
        ):
            if getattr(self, name) is not None and int(getattr(self, name)) < 0:
                raise ValueError(f"GradientIMP.{name} must be >= 0; got {getattr(self, name)!r}.")
        for name in ("initial_temperature", "final_temperature"):
            value = getattr(self, name)
            if not isinstance(value, jax.core.Tracer) and not float(value) > 0:
                raise ValueError(f"GradientIMP.{name} must be > 0; got {value!r}.")
        t0, t1 = self.initial_temperature, self.final_temperature
        if is_concrete(t0, t1) and float(t1) > float(t0):
            raise ValueError(
                f"GradientIMP.final_temperature = {t1!r} is above initial_temperature = {t0!r}; "
                "the temperature anneals from the initial to the final one."
            )


def useful_top(market: AnyMarket, terms) -> jax.Array:
    """Per model, 1% above the highest price anyone pays: min(price_hi, 1.01 max_i m_ij mu_j) >= price_lo.

    Above R_ij = m_ij mu_j customer i's value of model j is negative, so no customer rents j at a
    higher price and the profit no longer depends on beta_j there. The gradient phase searches
    [price_lo, useful_top] (a box of [o, 1000 o] would otherwise put every optimum in its bottom
    percent); the polish and the solution still use the whole box.
    """
    mo = market.models
    rate = jnp.where(terms.hours > 0, terms.rate, 0.0)
    # The highest rate per model: over customers (a dense table), or over their options' models.
    ids = jnp.where(terms.hours > 0, terms.model_ids(), market.n_models)
    top = jnp.zeros(market.n_models, rate.dtype).at[ids.reshape(-1)].max(rate.reshape(-1), mode="drop")
    # 1% beyond: the top of the gradient box then prices the model out of the market altogether,
    # which pays where near-identical models cannibalise each other.
    return jnp.clip(1.01 * top, mo.price_lo, mo.price_hi)


def market_scale(market: AnyMarket, terms) -> jax.Array:
    """The typical customer's best robust profit at the lowest prices ($): the median over customers
    who can profit at all (1 if none can).

    The median, not the mean: one customer worth far more than the rest would inflate a mean, and
    with it every temperature, leaving the relaxed landscape too smooth for the others at the end.
    """
    opts = rental_options(market, terms, market.models.price_lo)
    best = jnp.max(jnp.where(opts.available, jnp.maximum(opts.value, 0.0), 0.0), axis=1)
    scale = jnp.nanmedian(jnp.where(best > 0, best, jnp.nan))
    return jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)


def _large_default(value: int | None, on: int, m: int, solver: GradientIMP, off: int = 0) -> int:
    """`value`, or where it is None `on` on markets of at least `solver.many_models` models, else
    `off`."""
    if value is not None:
        return int(value)
    return on if m >= solver.many_models else off


# Markets of at most this many customers (and at least `many_models` models) polish 48 random
# starts and search 48 polished optima with moves by default, larger ones 16 and 8 (see
# `GradientIMP.polish_random`, `GradientIMP.move_starts`), and only they try compound moves
# (`GradientIMP.lookahead_compounds`).
MANY_STARTS_CUSTOMERS = 256


def _move_starts(solver: GradientIMP, m: int, n: int) -> int:
    """`solver.move_starts`, or its default for an M-model, N-customer market."""
    return _large_default(solver.move_starts, 48 if n <= MANY_STARTS_CUSTOMERS else 8, m, solver, off=8)


def _polish_random(solver: GradientIMP, m: int, n: int) -> int:
    """`solver.polish_random`, or its default for an M-model, N-customer market."""
    return _large_default(solver.polish_random, 48 if n <= MANY_STARTS_CUSTOMERS else 16, m, solver, off=16)


def _lookahead_compounds(solver: GradientIMP, m: int, n: int) -> int:
    """`solver.lookahead_compounds`, or its default for an M-model, N-customer market: N on markets
    of at least `many_models` models and at most `MANY_STARTS_CUSTOMERS` customers, else 0."""
    on = n if n <= MANY_STARTS_CUSTOMERS else 0
    return min(_large_default(solver.lookahead_compounds, on, m, solver), n)


def _move_candidates(solver: GradientIMP, m: int, n: int) -> dict[str, int]:
    """Candidates per round of moves: `move_inserts`, `move_drops` and `move_sheds` (of each of four
    kinds, at most N) per model, all scaled down alike to at most `max_move_candidates` (at least
    one insert), and `batch`, the candidates re-priced together (`move_batch`)."""
    inserts, drops = solver.move_inserts * m, solver.move_drops * m
    sheds = min(_large_default(solver.move_sheds, 4, m, solver) * m, n)
    raises = min(_large_default(solver.move_raises, n, m, solver), n)
    cap = solver.max_move_candidates
    total = inserts + drops + 4 * sheds + raises
    if total > cap:
        share = cap / total
        inserts = max(1, int(inserts * share))
        drops = min(int(drops * share), cap - inserts)
        sheds = min(int(sheds * share), (cap - inserts - drops) // 4)
        raises = min(int(raises * share), cap - inserts - drops - 4 * sheds)
    batch = _large_default(solver.move_batch, 8, m, solver, off=64)
    return {"inserts": inserts, "drops": drops, "sheds": sheds, "raises": raises, "batch": batch}


def _polish(market, terms, tol, starts, solver: GradientIMP):
    """Classic IMP from every start for `polish_sweeps` sweeps, then the best `polish_finalists`
    for `max_polish_sweeps` more, in one loop whose body polishes one start: most starts end in poor
    basins after a sweep or two and only the finalists need every sweep, one traced copy of the line
    search keeps compile time down, and a start that has converged skips its remaining sweeps (see
    `coordinate_ascent`; under `jax.vmap` over markets the batch is the parallel axis).

    Returns `(prices, profits, sweeps)` for every start (each start's sweeps that changed something).
    """
    n = starts.shape[0]
    f = min(solver.polish_finalists, n)
    rounds = -(-solver.max_polish_sweeps // solver.polish_sweeps)
    profit0 = jax.vmap(lambda p: profit_from_terms(market, terms, p, tol))(starts)

    def body(i, state):
        pool, profit, sweeps, finalists = state
        # Stage 2 polishes the starts that were best when stage 1 ended, in a fixed order.
        finalists = jnp.where(i == n, lax.top_k(profit, f)[1], finalists)
        row = jnp.where(i < n, i, finalists[jnp.maximum(i - n, 0) % f])
        new, value, used = coordinate_ascent(market, terms, pool[row], tol, solver.polish_sweeps)
        return pool.at[row].set(new), profit.at[row].set(value), sweeps.at[row].add(used), finalists

    init = (starts, profit0, jnp.zeros(n, jnp.int32), jnp.zeros(f, jnp.int32))
    pool, profit, sweeps, _ = lax.fori_loop(0, n + rounds * f, body, init)
    return pool, profit, sweeps


@eqx.filter_jit
def imp(
    market: AnyMarket,
    solver: GradientIMP | None = None,
    *,
    key: PRNGKeyArray,
    max_steps: int | None = None,
) -> PricingSolution:
    """Price a market by gradient IMP: a jit-compiled bilevel gradient loop through the relaxed RSR.

    Prices are scaled to x in [0, 1]^M (beta = lo + x (hi - lo)). Each of `solver.restarts`
    starting points, drawn uniformly from the box with `key`, ascends the relaxed seller profit
    ([`lmaas_jax.relaxed_seller_profit`][], divided by N times the market's scale) with
    `solver.optimiser`, projected back onto the box (`optax.projections.projection_box`) after each
    step, while the temperature anneals geometrically toward 0. Every `solver.eval_every` steps
    the exact profit ([`lmaas_jax.seller_profit`][]) of every restart is evaluated and the best
    exact price vector so far is kept; the relaxed profit is never reported as the result. With
    `solver.polish` the best prices are then improved by classic IMP ([`lmaas_jax.classic_imp`][]).
    The whole loop is one `lax.scan`; `jax.jit` and `jax.vmap` over markets and keys work.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][].
    - `solver`: a [`lmaas_jax.GradientIMP`][]; default `GradientIMP()`.
    - `key`: a JAX PRNG key for the starting points.
    - `max_steps`: overrides `solver.steps`.

    **Returns:**

    A [`lmaas_jax.PricingSolution`][] with a [`lmaas_jax.PricingTrace`][] and `stats` holding
    `steps`, `restarts`, `profit_before_polish`, `polish_sweeps`, `moves` (allocation moves
    taken by the best start) and `move_pairs` (pairs of moves taken by the look-ahead).
    """
    solver = GradientIMP() if solver is None else solver
    steps = solver.steps if max_steps is None else int(max_steps)
    if steps < 1:
        raise ValueError(f"max_steps must be >= 1; got {max_steps!r}.")
    # Shapes are static, so this runs before compiling: the trace keeps (steps, restarts) numbers and
    # every restart and polished start holds a few (N, M) option arrays.
    n, m, r = market.n_customers, market.n_models, solver.restarts
    randoms = _polish_random(solver, m, n)
    starts = r + randoms
    k = getattr(market, "n_options", m)  # options per customer: M, or K for option lists
    counts = _move_candidates(solver, m, n)
    candidates = counts["inserts"] + counts["drops"] + 4 * counts["sheds"] + counts["raises"]  # four sheds
    moving = 12 * min(counts["batch"], candidates) * n * (k + 1) if solver.moves else 0
    # Compound moves polish COMPOUND_KINDS per candidate customer as one batch of starts.
    lookahead = _large_default(solver.lookahead, 4, m, solver) if solver.moves else 0
    compounding = 12 * COMPOUND_KINDS * _lookahead_compounds(solver, m, n) * n * (k + 1) if lookahead else 0
    held = 3 * steps * r + 12 * starts * n * (k + 1) + moving + compounding
    need = held * jnp.dtype(market.dtype).itemsize
    check_fits(f"imp with steps={steps}, restarts={r} on {m} x {n}", need)
    # The search never sees the market's derivative; the solution carries the equilibrium's.
    differentiable, market = market, lax.stop_gradient(market)
    dtype = market.dtype
    tol = tie_tolerance(market, solver.tie_tol)
    mo = market.models
    terms = robust_terms(market)
    lo, width = mo.price_lo, useful_top(market, terms) - mo.price_lo
    scale = market_scale(market, terms)
    norm = scale * market.n_customers

    every = min(solver.eval_every, steps)
    blocks = -(-steps // every)
    total = blocks * every
    frac = jnp.arange(total, dtype=dtype) / max(total - 1, 1)
    t0 = jnp.asarray(solver.initial_temperature, dtype)
    t1 = jnp.asarray(solver.final_temperature, dtype)
    temperature = scale * t0 * (t1 / t0) ** frac

    def prices_of(x):
        return lo + x * width

    def relaxed(x, t):
        return relaxed_profit_from_terms(market, terms, prices_of(x), t)

    def exact(x):
        return profit_from_terms(market, terms, prices_of(x), tol)

    opt = solver.optimiser
    grad = jax.value_and_grad(lambda x, t: -relaxed(x, t) / norm)

    def step(carry, t):
        x, state = carry
        loss, g = grad(x, t)
        # Optax mixes its int32 step count with float32 parameters, which strict dtype promotion
        # (on in our tests) rejects; the promotion rule applies to optax's internals only.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(g, state, x)
        x = optax.projections.projection_box(optax.apply_updates(x, updates), 0.0, 1.0)
        return (x, state), -loss * norm

    def block(carry, ts):
        x, state, best_x, best = carry
        (x, state), relaxed_trace = lax.scan(step, (x, state), ts)
        value = exact(x)
        better = value > best
        best_x = jnp.where(better, x, best_x)
        best = jnp.where(better, value, best)
        return (x, state, best_x, best), (relaxed_trace, best)

    def run(x0, ts):
        with jax.numpy_dtype_promotion("standard"):
            state = opt.init(x0)
        init = (x0, state, x0, exact(x0))
        (_, _, best_x, best), (relaxed_trace, best_trace) = lax.scan(block, init, ts)
        return best_x, best, relaxed_trace.reshape(-1), best_trace

    key_starts, key_polish = jax.random.split(key)
    x0 = jax.random.uniform(key_starts, (solver.restarts, market.n_models), dtype)
    ts = temperature.reshape(blocks, every)
    best_x, best, relaxed_trace, best_trace = jax.vmap(run, in_axes=(0, None))(x0, ts)
    before = jnp.max(best)
    sweeps = moves = pairs = jnp.asarray(0, jnp.int32)
    if solver.polish:
        # Polish the restarts' best points (all by default): restarts that end in different basins
        # of the relaxed landscape often polish to different exact optima.
        k = (
            solver.restarts
            if solver.polish_restarts is None
            else min(solver.polish_restarts, solver.restarts)
        )
        _, top = lax.top_k(best, k)
        starts = best_x[top]
        starts = jax.vmap(prices_of)(starts)
        if randoms:
            # Random menus too: each model priced out of the market (at price_hi) with probability
            # 1/4, since which models to offer is the combinatorial part the gradient handles worst.
            k_price, k_menu = jax.random.split(key_polish)
            u = jax.random.uniform(k_price, (randoms, market.n_models), dtype)
            out = jax.random.bernoulli(k_menu, 0.25, u.shape)
            fresh = jnp.where(out, mo.price_hi[None, :], jax.vmap(prices_of)(u))
            starts = jnp.concatenate([starts, fresh])
        prices, best, sweeps = _polish(market, terms, tol, starts, solver)
        if solver.moves:
            # The best starts of distinct profits: starts that polished to one optimum would repeat
            # one search (fewer distinct optima than move_starts: only those are searched).
            order = jnp.argsort(-best)
            ranked = best[order]
            repeat = jnp.concatenate([jnp.zeros(1, bool), ranked[1:] >= ranked[:-1] * (1 - 1e-9) - 1e-12])
            score, pos = lax.top_k(
                jnp.where(repeat, -jnp.inf, ranked), min(_move_starts(solver, m, n), best.shape[0])
            )
            top = order[pos]
            # One start after another, one round per iteration of a single loop (see
            # `improve_by_moves`): a start stops at its first round without a paying move.
            prices, best, moves = improve_by_moves(
                market,
                terms,
                prices[top],
                tol,
                rounds=solver.moves,
                sweeps=solver.polish_sweeps,
                count=jnp.sum(score > -jnp.inf),  # repeats (ranked last) are not searched again
                **counts,
            )
            moves = moves[jnp.argmax(best)]
        r = jnp.argmax(best)
        prices, best, sweeps = prices[r], best[r], jnp.max(sweeps)
        if lookahead:
            prices, best, pairs = improve_by_lookahead(
                market,
                terms,
                prices,
                tol,
                rounds=lookahead,
                beam=solver.lookahead_beam,
                compounds=_lookahead_compounds(solver, m, n),
                moves=solver.moves,
                sweeps=solver.polish_sweeps,
                **counts,
            )
    else:
        prices = prices_of(best_x[jnp.argmax(best)])
    trace = PricingTrace(
        relaxed_profit=relaxed_trace.T[:steps],
        best_profit=jnp.repeat(jnp.max(best_trace, axis=0), every)[:steps],
        temperature=temperature[:steps],
    )
    stats = {
        "steps": jnp.asarray(steps),
        "restarts": jnp.asarray(solver.restarts),
        "profit_before_polish": before,
        "polish_sweeps": sweeps,
        "moves": moves,
        "move_pairs": pairs,
    }
    return posted_solution(differentiable, terms, prices, tol, trace=trace, stats=stats)
