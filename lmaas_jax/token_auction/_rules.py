"""Aggregation rules: several agents' next-token distributions and bids -> one distribution.

Our reading of Duetting, Mirrokni, Paes Leme, Xu and Zuo, "Mechanism Design for Large Language
Models" (WWW 2024): the paper's body was not available to us, so the formulas here are derived from
its abstract and public summaries (`docs/models/token-auction.md`), not copied from it.

A *rule* is any function `rule(dists, bids) -> q` with `dists` of shape `(n_agents, vocab)` and
`bids` of shape `(n_agents,)`; [`linear`][] and [`log_linear`][] are two, and a user's own function
is accepted wherever a rule is.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import fail_where, is_concrete

Rule = Callable[[Array, Array], Array]


def check_bids(bids) -> None:
    """Bids finite and >= 0, when concrete (a ValueError naming index and value)."""
    if is_concrete(bids):
        b = np.asarray(bids, np.float64)
        fail_where("bids", ~np.isfinite(b) | (b < 0), b, "must be finite and >= 0")


def check_inputs(dists, bids, *, atol: float = 1e-5) -> tuple[Array, Array]:
    """Validate `dists` (n_agents, vocab) and `bids` (n_agents,); names the field and value at fault.

    Checks shapes always, and values when the inputs are concrete (not traced): probabilities in
    [0, 1] summing to 1 within `atol`, bids finite and >= 0, not all zero.
    """
    dists, bids = jnp.asarray(dists), jnp.asarray(bids)
    if dists.ndim != 2:
        raise ValueError(f"dists must have shape (n_agents, vocab); got shape {tuple(dists.shape)}.")
    if bids.shape != dists.shape[:1]:
        raise ValueError(
            f"bids must have shape (n_agents,) = ({dists.shape[0]},) to match dists; "
            f"got shape {tuple(bids.shape)}."
        )
    if is_concrete(dists, bids):
        d, b = np.asarray(dists, np.float64), np.asarray(bids, np.float64)
        fail_where("dists", ~np.isfinite(d) | (d < 0) | (d > 1 + atol), d, "must be probabilities in [0, 1]")
        total = d.sum(axis=1)
        fail_where(
            "dists", np.abs(total - 1.0) > atol, total, f"rows must sum to 1 (within {atol}); row sums"
        )
        check_bids(b)
        if not np.any(b > 0):
            raise ValueError(f"bids must not all be zero; got {b.tolist()}.")
    dtype = jnp.result_type(dists.dtype, bids.dtype, float)
    return dists.astype(dtype), bids.astype(dtype)


def weights(bids: Float[Array, " agents"]) -> Float[Array, " agents"]:
    """lambda_j = b_j / sum_k b_k."""
    return bids / jnp.sum(bids)


def linear(
    dists: Float[ArrayLike, "agents vocab"], bids: Float[ArrayLike, " n_bids"]
) -> Float[Array, " vocab"]:
    """Linear aggregation q = sum_j lambda_j p_j, lambda_j = b_j / sum_k b_k.

    It minimises sum_j b_j KL(p_j || q) over distributions q, and it is monotone: raising b_i moves
    q along the segment towards p_i, every token's probability towards p_i(t) without overshoot.
    Example (the spec's): p = (0.8, 0.2), (1, 0), (0, 1) with bids (1, 2, 2) give (0.56, 0.44).

    **Arguments:** `dists` shape `(n_agents, vocab)`, rows probability vectors; `bids` shape
    `(n_agents,)`, >= 0 and not all 0. Batch with `jax.vmap`.

    **Returns:** the aggregated distribution, shape `(vocab,)`.
    """
    return _linear(*check_inputs(dists, bids))


@jax.jit
def _linear(dists, bids):
    return weights(bids) @ dists


def log_linear(
    dists: Float[ArrayLike, "agents vocab"], bids: Float[ArrayLike, " n_bids"]
) -> Float[Array, " vocab"]:
    """Log-linear aggregation q proportional to exp(sum_j lambda_j log p_j).

    It minimises sum_j b_j KL(q || p_j) (the RLHF direction) but is *not* monotone in the robust
    sense (see [`is_monotone`][]). Zero probabilities are masked: a token that an agent with a
    positive bid gives probability 0 gets probability 0 (the limit of the formula); an agent with
    bid 0 has no say. If the agents with positive bids share no token, a `nan` distribution results
    (there is no aggregate).

    **Arguments and returns:** as [`linear`][].
    """
    return _log_linear(*check_inputs(dists, bids))


@jax.jit
def _log_linear(dists, bids):
    lam = weights(bids)
    speaks = lam[:, None] > 0
    allowed = jnp.all(jnp.where(speaks, dists > 0, True), axis=0)
    safe = jnp.where(dists > 0, dists, 1.0)
    logits = jnp.sum(jnp.where(speaks, lam[:, None] * jnp.log(safe), 0.0), axis=0)
    logits = jnp.where(allowed, logits, -jnp.inf)
    return jax.nn.softmax(logits)


def bid_path(
    rule: Rule, dists, bids, agent: int | Array, scales: Float[Array, " grid"]
) -> Float[Array, "grid vocab"]:
    """The aggregate as agent `agent`'s bid runs over `scales` (others fixed), one row per bid."""
    return jax.vmap(lambda b: rule(dists, bids.at[agent].set(b)))(scales)


class Monotonicity(eqx.Module):
    """What [`is_monotone`][] found, per agent: `monotone` (no violation beyond `atol`) and
    `violation`, the largest one (probability). (Unpacking as the old `(monotone, violation)`
    tuple still works, with a DeprecationWarning.)"""

    monotone: Bool[Array, " agents"]
    violation: Float[Array, " agents"]


def is_monotone(
    rule: Rule,
    dists: Float[ArrayLike, "agents vocab"],
    bids: Float[ArrayLike, " n_bids"],
    *,
    max_bid: float | None = None,
    grid: int = 201,
    atol: float = 1e-6,
) -> Monotonicity:
    """Check robust monotonicity numerically, agent by agent.

    A rule is monotone if raising b_i (others fixed) moves every token's probability q(t) towards
    p_i(t) without overshooting it. For each agent this evaluates the rule on `grid` bids in
    [0, max_bid] and measures the largest violation: a retreat of q(t) from p_i(t) after it came
    closer, q(t) beyond p_i(t), or any move of a q(t) that starts at p_i(t) (within `atol`).

    **Arguments:**

    - `rule`: any aggregation rule (e.g. [`linear`][], [`log_linear`][], a user's function).
    - `dists`, `bids`: as in [`linear`][]; the others' bids stay at `bids`.
    - `max_bid`: top of the bid grid; default 10 x the sum of the bids.
    - `grid`: bids per agent.
    - `atol`: violations up to this size are rounding.

    **Returns:**

    A [`Monotonicity`][] (`monotone`, `violation`), both shape `(n_agents,)`: whether each agent's
    path is monotone and the largest violation (probability).
    """
    dists, bids = check_inputs(dists, bids)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 3:
        raise ValueError(f"grid must be an int >= 3 (a path of bids to compare); got {grid!r}.")
    top = 10.0 * jnp.sum(bids) if max_bid is None else jnp.asarray(max_bid, bids.dtype)
    return _is_monotone(rule, dists, bids, top, grid, atol)


@eqx.filter_jit
def _is_monotone(rule, dists, bids, top, grid, atol):
    scales = jnp.linspace(0.0, 1.0, grid, dtype=bids.dtype) * top

    def violation(i):
        # At bid 0 agent i is absent; if every other bid is 0 too the rule is undefined there.
        others = jnp.sum(bids) - bids[i] > 0
        path = bid_path(rule, dists, bids, i, jnp.where(others, scales, scales.at[0].set(scales[1])))
        gap = dists[i] - path[0]
        toward = jnp.where(jnp.abs(gap) > atol, jnp.sign(gap), 0.0)  # the way each token must move
        z = path * toward[None, :]
        backwards = jnp.max(lax.cummax(z, axis=0) - z)  # the largest retreat from the best so far
        overshoot = jnp.max(jnp.maximum((path - dists[i][None, :]) * toward[None, :], 0.0))
        # Where q(t) already equals p_i(t) at bid 0 it must stay there: any move is away from p_i.
        drift = jnp.max(jnp.where(toward[None, :] == 0, jnp.abs(path - dists[i][None, :]), 0.0))
        return jnp.maximum(jnp.maximum(backwards, overshoot), drift)

    v = jax.vmap(violation)(jnp.arange(dists.shape[0]))
    return Monotonicity(monotone=v <= atol, violation=v)
