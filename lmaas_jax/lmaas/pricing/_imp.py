"""Gradient IMP: the seller's prices by gradient ascent, polish, moves, look-ahead, and groups."""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import ArrayLike, Int, PRNGKeyArray

from ..._checks import check_fits, checked, is_concrete, size
from ..robust._rsr import tie_tolerance, value_market
from ..scenarios._market import AnyMarket, check_market
from ._ascent import Ascent, ascend
from ._budget import Budget
from ._lookahead import COMPOUND_KINDS, LookAhead, improve_by_lookahead
from ._moves import Moves, capped_counts, improve_by_moves, search_moves
from ._polish import Polish, polish, polish_starts
from ._posting import posted_solution
from ._schedule import PARALLEL, default_schedule
from ._solution import PricingSolution

# The size rule of `GradientIMP.for_market` (see there): markets of at least this many models get
# the larger neighbourhoods ...
MANY_MODELS = 16
# ... and, of those, markets whose option table (customers x options per customer) has at most this
# many entries the larger pools of starts.
SMALL_TABLE = 8192


class GradientIMP(eqx.Module):
    """Settings of gradient IMP ([`lmaas_jax.imp`][]): one settings Module per stage.

    **Fields:**

    - `ascent`: [`lmaas_jax.Ascent`][], projected gradient ascent of the relaxed profit from many
      restarts (the optax optimiser, steps, restarts, temperatures).
    - `polish`: [`lmaas_jax.Polish`][], classic IMP from the best restarts and from random prices;
      `None` skips it and every stage after it (imp then returns the gradient stage's best prices).
    - `moves`: [`lmaas_jax.Moves`][], allocation moves from the best polished optima
      (`Moves(rounds=0)`: none).
    - `lookahead`: [`lmaas_jax.LookAhead`][], pairs of moves and compound moves from the best start
      (`LookAhead(rounds=0)`: none).

    `GradientIMP()` holds each stage's defaults, which are the settings for markets of fewer than
    16 models but for `Moves.gains`; [`lmaas_jax.GradientIMP.for_market`][] gives the settings
    `lj.imp(market)` uses for a market of any size. Every field is static: equal settings compare
    equal, hash alike and reuse one compilation of [`lmaas_jax.imp`][] per market shape.
    """

    ascent: Ascent = Ascent()
    polish: Polish | None = Polish()
    moves: Moves = Moves()
    lookahead: LookAhead = LookAhead()

    def __check_init__(self):
        for name, kind in (("ascent", Ascent), ("moves", Moves), ("lookahead", LookAhead)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"GradientIMP.{name} must be a {kind.__name__}; got {getattr(self, name)!r}.")
        if self.polish is not None and not isinstance(self.polish, Polish):
            raise TypeError(f"GradientIMP.polish must be a Polish or None; got {self.polish!r}.")

    @classmethod
    def for_market(cls, market: AnyMarket, backend: str | None = None) -> GradientIMP:
        """The default settings for `market` (what `lj.imp(market)` uses): see `for_size`, with K the
        market's options per customer (M for a table, `n_options` for option lists)."""
        k = getattr(market, "n_options", market.n_models)
        return cls.for_size(market.n_models, market.n_customers, k, backend=backend)

    @classmethod
    def for_size(
        cls, n_models: int, n_customers: int, n_options: int | None = None, backend: str | None = None
    ) -> GradientIMP:
        """The default settings for a market of M = `n_models` models, N = `n_customers` customers
        and K = `n_options` options per customer (default M: every customer may rent every model),
        run on `backend` (default: JAX's default backend).

        The exact stages' schedule is `default_schedule(backend)`: their starts one after another
        on a CPU, all at once on an accelerator (see [`lmaas_jax.Polish`][]; the prices are the same
        either way, the time is not).

        Markets of fewer than 16 models get each stage's defaults (`GradientIMP()` but for the
        schedule and `Moves.gains`). Markets whose option table has at most 8192 entries
        (N K <= 8192) get group moves and, in the same last stage, every insertion the cut did not
        rank, ranked by gain (`gains` = K); larger tables neither. Where there are many models, which
        models each customer is allocated to is the hard part of the problem, so markets of at least
        16 models also get the larger neighbourhoods: four shed moves per model and kind, a raise
        move per customer, and four look-ahead steps. Of those, markets whose option table has at
        most 8192 entries (N K <= 8192) also get larger pools of starts (48 random polish starts and
        48 move starts, of which the defaults' 16 and 8 are the first) and compound moves for every
        customer, and re-price candidates in batches of 8 (a batch runs until its slowest candidate
        converges: a few take many rounds, most take 4); on larger tables a round of re-pricing
        costs more than the loop around it, and candidates are re-priced one at a time (the batch
        changes the time, never the prices). Every step of the exact stages costs a few passes
        over the N K options, so the pools are sized by the table, not by N alone: a dense table of
        100 customers and 300 models (30,000 entries) keeps the default pools, as a sparse market of
        1000 customers does.
        How these were chosen and what they cost is in the docs (how IMP works).
        """
        m, n = int(n_models), int(n_customers)
        k = m if n_options is None else int(n_options)
        run = default_schedule(backend)
        few = n * k <= SMALL_TABLE
        groups = Moves().groups if few else 0
        gains = k if few else 0  # every insertion the cut leaves out
        if m < MANY_MODELS:
            return cls(
                polish=Polish(schedule=run),
                moves=Moves(groups=groups, gains=gains, schedule=run),
                lookahead=LookAhead(schedule=run),
            )
        return cls(
            polish=Polish(random=48 if few else 16, schedule=run),
            moves=Moves(
                starts=48 if few else 8,
                sheds=4,
                raises=n,
                groups=groups,
                gains=gains,
                batch=8 if few else 1,
                schedule=run,
            ),
            lookahead=LookAhead(rounds=4, compounds=n if few else 0, schedule=run),
        )

    def with_schedule(self, schedule: str) -> GradientIMP:
        """These settings with every exact stage's `schedule` set to `schedule` (`"sequential"` or
        `"parallel"`; see [`lmaas_jax.Polish`][]): the same prices, another time and depth. Each
        stage's own check (`check_settings`) rejects any other value, naming its field."""
        stages = {}
        for name in ("polish", "moves", "lookahead"):
            stage = getattr(self, name)
            if stage is not None:
                stages[name] = dataclasses.replace(stage, schedule=schedule)
        return dataclasses.replace(self, **stages)

    def as_dict(self) -> dict[str, Any]:
        """Every setting as JSON-ready values, by stage (the optimiser by its import path)."""

        def value(v):
            if callable(v):
                return f"{v.__module__}.{v.__qualname__}"
            if isinstance(v, tuple):
                return {k: value(x) for k, x in v}
            return v

        def stage(module):
            if module is None:
                return None
            return {f.name: value(getattr(module, f.name)) for f in dataclasses.fields(module)}

        return {f.name: stage(getattr(self, f.name)) for f in dataclasses.fields(self)}


def memory_need(market: AnyMarket, solver: GradientIMP, steps: int) -> int:
    """Bytes `imp` holds at once, about: the trace's (steps, restarts) numbers and a few (N, K + 1)
    option arrays per polished start, per batch of re-priced move candidates and per compound move."""
    n, m, r = market.n_customers, market.n_models, solver.ascent.restarts
    k = getattr(market, "n_options", m)  # options per customer: M, or K for option lists
    held = 3 * steps * r
    if solver.polish is not None:
        held += 12 * (r + solver.polish.random) * n * (k + 1)
        if solver.moves.rounds:
            counts = solver.moves.counts(m, n)
            batch = counts.pop("batch")
            chunk = 12 * min(batch, capped_counts(n, k, **counts).total) * n * (k + 1)
            # The parallel schedules hold a chunk per move start, or per second move of the beam.
            held += chunk * (solver.moves.starts if solver.moves.schedule == PARALLEL else 1)
            if solver.lookahead.rounds:
                held += 12 * COMPOUND_KINDS * min(solver.lookahead.compounds, n) * n * (k + 1)
                if solver.lookahead.schedule == PARALLEL:
                    held += chunk * solver.lookahead.beam
    return held * jnp.dtype(market.dtype).itemsize


def _lookahead(values, prices, tol, solver: GradientIMP, moves: Moves, budget: Budget):
    """The look-ahead stage from `prices` with the solver's settings and the candidate kinds of `moves`."""
    look, m, n = solver.lookahead, values.n_models, values.n_customers
    return improve_by_lookahead(
        values,
        prices,
        tol,
        rounds=look.rounds,
        beam=look.beam,
        compounds=min(look.compounds, n),
        moves=solver.moves.rounds,
        sweeps=solver.polish.sweeps,
        budget=budget,
        schedule=look.schedule,
        **moves.counts(m, n),
    )


def _check_imp(market, solver=None, *, key, max_steps=None, tie_tol=None, max_work=None):
    check_market(market)
    if solver is not None and not isinstance(solver, GradientIMP):
        raise TypeError(f"solver must be a GradientIMP or None; got {solver!r} ({type(solver).__name__}).")
    if not hasattr(key, "shape") or not hasattr(key, "dtype"):
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key or PRNGKey); got {key!r}.")
    if max_steps is not None:
        size("max_steps", max_steps)
    if max_work is not None and is_concrete(max_work):
        if not jnp.issubdtype(jnp.asarray(max_work).dtype, jnp.integer) or jnp.ndim(max_work) != 0:
            raise TypeError(f"max_work must be an int or an integer scalar array; got {max_work!r}.")
        if int(max_work) < 1:
            raise ValueError(f"max_work must be >= 1; got {int(max_work)}.")
    tie_tolerance(market, tie_tol)


@checked(_check_imp)
def imp(
    market: AnyMarket,
    solver: GradientIMP | None = None,
    *,
    key: PRNGKeyArray,
    max_steps: int | None = None,
    tie_tol: float | None = None,
    max_work: int | Int[ArrayLike, ""] | None = None,
) -> PricingSolution:
    """Price a market by gradient IMP: gradient ascent through the relaxed RSR, then exact stages.

    The stages, each configured by its settings Module in `solver` (see [`lmaas_jax.GradientIMP`][]):

    1. **ascent** ([`lmaas_jax.Ascent`][]): every restart ascends the relaxed seller profit
       ([`lmaas_jax.relaxed_seller_profit`][]) over prices scaled to [0, 1] per model, projected onto
       the box, while the temperature anneals; each restart keeps its best exact prices.
    2. **polish** ([`lmaas_jax.Polish`][]): classic IMP ([`lmaas_jax.classic_imp`][]) from the best
       restarts and from random prices.
    3. **moves** ([`lmaas_jax.Moves`][]): allocation moves from the best polished optima of distinct
       profits.
    4. **look-ahead** ([`lmaas_jax.LookAhead`][]): pairs of moves and compound moves from the best.
    5. **groups** (`Moves.groups` or `Moves.gains`, where either is not 0): from there the moves
       (one start) and the look-ahead once more with group moves (customers of one model moved to
       another together) and insertions ranked by gain among the candidates. Run last, they never
       change the path of the stages before them.

    Every stage evaluates the exact profit ([`lmaas_jax.seller_profit`][]) and never lowers it; the
    relaxed profit is never reported. `jax.jit` and `jax.vmap` over markets and keys work.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][].
    - `solver`: a [`lmaas_jax.GradientIMP`][]; default `GradientIMP.for_market(market)`.
    - `key`: a JAX PRNG key for the restarts and the random polish starts.
    - `max_steps`: overrides `solver.ascent.steps`.
    - `tie_tol`: as in [`lmaas_jax.rsr`][]; default by dtype.
    - `max_work`: a work budget for the exact stages (polish, moves, look-ahead), in exact steps: a
      line search of one model from one start, or a candidate move re-priced (each a few passes
      over the market's options). Each stage runs a step only while its largest cost fits, and
      once one does not, imp returns the best prices found so far: a smaller budget never ends
      higher than a larger one from the same key. Default: none. The gradient stage's cost is set
      by `solver.ascent` and is not counted. An integer array is traced (one compilation serves
      every budget, and `jax.vmap` over budgets works); a Python int is static.

    **Returns:**

    A [`lmaas_jax.PricingSolution`][] with a [`lmaas_jax.PricingTrace`][], `settings` the
    `GradientIMP` that ran, and `stats` holding `steps`, `restarts`, `profit_before_polish`,
    `polish_sweeps`, `moves` (allocation moves taken by the best start and the group stage),
    `move_pairs` (steps taken by the look-ahead, both times), `work` (exact steps spent), `depth`
    (exact steps that ran one after another, a batch run side by side counting as its longest:
    what an accelerator pays latency for; see the schedules in [`lmaas_jax.Polish`][]) and
    `budget_spent` (whether a step was skipped because `max_work` would not cover it).
    """
    solver = GradientIMP.for_market(market) if solver is None else solver
    steps = solver.ascent.steps if max_steps is None else int(max_steps)
    # Shapes are static, so this runs before compiling.
    check_fits(
        f"imp with steps={steps}, restarts={solver.ascent.restarts} on {market.n_models} x "
        f"{market.n_customers}",
        memory_need(market, solver, steps),
    )
    # The search never sees the market's derivative; the solution carries the equilibrium's.
    differentiable, market = market, lax.stop_gradient(market)
    tol = tie_tolerance(market, tie_tol)
    values = value_market(market)

    key_starts, key_polish = jax.random.split(key)
    ascended = ascend(values, tol, solver.ascent, steps, key_starts)
    before = jnp.max(ascended.profit)
    sweeps = moves = pairs = jnp.asarray(0, jnp.int32)
    budget = Budget.of(max_work)
    # Group moves and insertions by gain join only once the other moves and the look-ahead stop.
    early = dataclasses.replace(solver.moves, groups=0, gains=0)
    if solver.polish is None:
        prices = ascended.prices[jnp.argmax(ascended.profit)]
    else:
        starts = polish_starts(values, ascended, solver.polish, key_polish)
        prices, profit, sweeps, budget = polish(values, tol, starts, solver.polish, budget)
        if solver.moves.rounds:
            prices, profit, moves, budget = search_moves(
                values, prices, profit, tol, early, solver.polish.sweeps, budget
            )
            moves = moves[jnp.argmax(profit)]
        r = jnp.argmax(profit)
        prices, profit, sweeps = prices[r], profit[r], jnp.max(sweeps)
        if solver.moves.rounds and solver.lookahead.rounds:
            prices, profit, pairs, budget = _lookahead(values, prices, tol, solver, early, budget)
        if solver.moves.rounds and (solver.moves.groups or solver.moves.gains):
            prices, profit, more, budget = improve_by_moves(
                values,
                prices,
                tol,
                rounds=solver.moves.rounds,
                sweeps=solver.polish.sweeps,
                budget=budget,
                schedule=solver.moves.schedule,
                **solver.moves.counts(market.n_models, market.n_customers),
            )
            moves = moves + more
            if solver.lookahead.rounds:
                prices, profit, more, budget = _lookahead(values, prices, tol, solver, solver.moves, budget)
                pairs = pairs + more
    stats = {
        "steps": jnp.asarray(steps),
        "restarts": jnp.asarray(solver.ascent.restarts),
        "profit_before_polish": before,
        "polish_sweeps": sweeps,
        "moves": moves,
        "move_pairs": pairs,
        "work": budget.spent,
        "depth": budget.depth,
        "budget_spent": budget.stopped,
    }
    return posted_solution(
        differentiable, values, prices, tol, trace=ascended.trace, stats=stats, settings=solver
    )
