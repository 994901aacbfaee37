"""Classic Iterative Model Pricing: exact coordinate ascent over the customers' breakpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import ArrayLike, Float

from ..._checks import check_prices, checked, size
from ..robust._rsr import as_prices, choose, rental_options, tie_tolerance, value_market
from ..scenarios._market import AnyMarket, check_market
from ._line_search import best_on_line, best_on_line_among
from ._posting import posted_solution
from ._profit import exact_profit
from ._solution import PricingSolution


def improves(new, old):
    """Whether profit `new` beats `old` by more than a relative 1e-12: the test every stage uses
    before it takes a step, so that rounding alone never counts as progress."""
    return new > old + 1e-12 * jnp.abs(old)


def coordinate_ascent(
    market, prices, tol, sweeps: int, steepest: bool = False, line=best_on_line, active=True
):
    """Exact coordinate ascent for at most `sweeps` sweeps; a start whose sweep stops paying is frozen.

    Each sweep first prices every model nobody rents out of the market (at `price_hi`), then
    re-prices the models in turn (cyclic), or with `steepest` searches every model's line from the
    same prices and takes the single best move (slower, but the first model's move cannot spoil a
    better one of another model). Pricing out an unsold model never lowers the profit (a customer's
    chosen option stays within the tie window, so its margin can only rise) and frees the other
    models' lines: an unsold model at a low price caps what its neighbours can charge, a plateau that
    coordinate moves alone never leave. A move is taken only if it raises the exact profit; once a
    sweep raises it by no more than a relative 1e-12 the prices are a coordinate-wise optimum and
    stay frozen for the remaining sweeps.

    `prices` is one start, shape `(M,)`, or a batch of starts, shape `(W, M)`, polished together:
    the loop stops once every start of the batch is frozen or `sweeps` sweeps have run. Under an
    outer `jax.vmap` over markets it stops once every market's starts are frozen, frozen markets
    carried unchanged: a batch costs the sweeps its slowest market needs, at most `sweeps`, and a
    batch whose markets all converge early stops early.

    `line(market, prices, j, tol) -> (price, profit)` is the line search: the O(N log N) one,
    or [`lmaas_jax.reference.brute_force_line`][] for comparison. `active` (a boolean, or one per
    start): starts where it is False are frozen from the outset and returned as they are (a caller
    inside a traced loop skips the sweeps without a `lax.cond`, which `jax.vmap` would turn into
    running them).

    Returns `(prices, profit, sweeps_used)`, shaped like `prices` with the model axis dropped for the
    last two; `sweeps_used == sweeps` means the cap was reached before convergence.
    """
    single = prices.ndim == 1
    starts = prices[None, :] if single else prices
    profit0 = jax.vmap(lambda p: exact_profit(market, p, tol))(starts)

    # One traced copy of the line search per sweep (j is a loop index, not unrolled): compile time
    # stays flat in M.
    def one_sweep(prices, profit):
        if steepest:
            b, values = jax.vmap(lambda j: line(market, prices, j, tol))(jnp.arange(market.n_models))
            j = jnp.argmax(values)
            better = values[j] > profit
            return jnp.where(better, prices.at[j].set(b[j]), prices), jnp.where(better, values[j], profit)

        if line is best_on_line and market.model_users is not None:
            return users_sweep(prices)

        def move(j, carry):
            prices, profit = carry
            b, p = line(market, prices, j, tol)
            better = p > profit
            return jnp.where(better, prices.at[j].set(b), prices), jnp.where(better, p, profit)

        return lax.fori_loop(0, market.n_models, move, (prices, profit))

    def users_sweep(prices):
        # Option lists with each model's users: each line search reads only the users (the others'
        # margins do not depend on that price) and a move is taken where the users' margins rise.
        # Models in index order as above; a switch on the model's group picks the line search of
        # that group's user count. The exact profit is summed once a sweep.
        users = market.model_users

        def line(users_of_group):
            return lambda prices, j, row: best_on_line_among(market, prices, j, tol, users_of_group[row])

        lines = [line(u) for u in users.customers]

        def move(j, prices):
            g = users.group[j]
            b, gain = lax.switch(jnp.maximum(g, 0), lines, prices, j, users.row[j])
            return jnp.where((g >= 0) & (gain > 0), prices.at[j].set(b), prices)

        prices = lax.fori_loop(0, market.n_models, move, prices)
        return prices, exact_profit(market, prices, tol)

    m = market.n_models
    price_hi = market.models.price_hi

    def price_out_unsold(prices, profit):
        choice = choose(rental_options(market, prices), tol)
        sold = market.per_model(jnp.ones(choice.shape, bool), choice, m, "max", False)
        out = jnp.where(sold, prices, price_hi)
        value = exact_profit(market, out, tol)
        take = jnp.any(out != prices) & (value >= profit)
        return jnp.where(take, out, prices), jnp.where(take, value, profit)

    def run(carry):
        prices, profit, done, used = carry
        new_prices, new_profit = jax.vmap(lambda p, v: one_sweep(*price_out_unsold(p, v)))(prices, profit)
        improved = improves(new_profit, profit)
        # A sweep never lowers the profit, but summed once a sweep (`users_sweep`) rounding could say
        # it did: then the start keeps its prices (and stops, as `improved` is False).
        keep = done | (new_profit < profit)
        prices = jnp.where(keep[:, None], prices, new_prices)
        profit = jnp.where(keep, profit, new_profit)
        used = used + jnp.where(done, 0, 1).astype(used.dtype)
        return prices, profit, done | ~improved, used

    def body(carry):
        return (*run(carry[:4]), carry[4] + 1)

    def more(carry):
        return ~jnp.all(carry[2]) & (carry[4] < sweeps)

    w = starts.shape[0]
    frozen = jnp.broadcast_to(~jnp.asarray(active, bool), (w,))
    init = (starts, profit0, frozen, jnp.zeros(w, jnp.int32), jnp.asarray(0, jnp.int32))
    # The body under a (redundant) `lax.cond`: run bare as the loop's body, XLA's CPU backend failed
    # to compile it (jax 0.10.2, a float32 market with x64 on: "Failed to translate module to LLVM").
    prices, profit, _, used, _ = lax.while_loop(more, lambda c: lax.cond(more(c), body, lambda c: c, c), init)
    if single:
        return prices[0], profit[0], used[0]
    return prices, profit, used


def _check_classic(market, prices=None, *, max_sweeps=20, tie_tol=None):
    check_market(market)
    if prices is not None:
        check_prices("prices", prices, market.n_models)
    size("max_sweeps", max_sweeps)
    tie_tolerance(market, tie_tol)


@checked(_check_classic)
def classic_imp(
    market: AnyMarket,
    prices: Float[ArrayLike, " models"] | None = None,
    *,
    max_sweeps: int = 20,
    tie_tol: float | None = None,
) -> PricingSolution:
    """Classic IMP: re-price one model at a time at its best breakpoint, exactly.

    With the other prices fixed, the seller's profit in beta_j is piecewise increasing: each
    customer who rents j pays more as beta_j rises, (beta_j - o_j) min(L, B / beta_j) being
    increasing, until the price passes the customer's breakpoint (where it switches to its best
    alternative). So the best beta_j is a breakpoint or the top of the box. One coordinate step
    finds the best of those N + 3 prices exactly in O(N log N) plus a few O(N M) exact checks (see
    `_line_search`: an upper bound on the profit at every candidate by sorting and prefix
    sums, then exact evaluation in bound order until no unchecked candidate can win), which returns
    what evaluating all N + 3 candidates ([`lmaas_jax.reference.brute_force_line`][], O(N^2 M))
    returns. Steps never lower the profit and sweeps over all models repeat until one no longer
    raises it: a coordinate-wise optimum after finitely many sweeps (at most `max_sweeps`, a cap
    that also bounds what a `jax.vmap` batch of markets costs). This is our reading of the paper's
    description of IMP (iterate over models, each re-priced against every customer's best response).

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][]; `jax.vmap` over markets works.
    - `prices`: shape `(M,)`, the starting prices; default the bottom of the box.
    - `max_sweeps`: sweeps over all models; converged prices stay frozen for the rest.
    - `tie_tol`: as in [`lmaas_jax.rsr`][].

    **Returns:**

    A [`lmaas_jax.PricingSolution`][] whose prices are moved off the breakpoints so that they hold
    when posted (see `_posting`; `stats["profit_supremum"]` is the profit before the move),
    with `stats["sweeps"]` (sweeps that changed something plus the one that confirmed convergence;
    equal to `max_sweeps` if the cap was reached first).
    """
    # The search never sees the market's derivative; the solution carries the equilibrium's.
    differentiable, market = market, lax.stop_gradient(market)
    prices = market.models.price_lo if prices is None else lax.stop_gradient(as_prices(market, prices))
    tol = tie_tolerance(market, tie_tol)
    values = value_market(market)
    prices, _, sweeps = coordinate_ascent(values, prices, tol, int(max_sweeps))
    return posted_solution(differentiable, values, prices, tol, stats={"sweeps": sweeps})
