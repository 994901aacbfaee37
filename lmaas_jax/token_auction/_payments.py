"""Payments for token auctions: the stable sampler's critical bids, Myerson and Clarke payments.

Formulas derived here from the model in `docs/models/token-auction.md` (our reading of Duetting
et al., WWW 2024, whose body we did not have).
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._rules import Rule, check_bids, check_inputs


class StableSample(eqx.Module):
    """One token drawn by the stable sampler of the linear rule, with its payments.

    **Fields:**

    - `token`: the sampled token.
    - `winner`: the agent whose distribution the token was drawn from.
    - `critical_bids`: shape `(n_agents,)`, for each agent the bid below which it would stop winning
      this draw (others' bids and the randomness fixed).
    - `payments`: shape `(n_agents,)`, the winner's critical bid, 0 for everyone else.
    """

    token: Int[Array, ""]
    winner: Int[Array, ""]
    critical_bids: Float[Array, " agents"]
    payments: Float[Array, " agents"]


def draw_token(u: Float[Array, ""], dist: Float[Array, " vocab"]) -> Int[Array, ""]:
    """Inverse-CDF draw: the first token whose cumulative probability exceeds `u` in [0, 1)."""
    token = jnp.searchsorted(jnp.cumsum(dist), u, side="right")
    return jnp.minimum(token, dist.shape[0] - 1).astype(jnp.int32)


def stable_sample_linear(
    key: PRNGKeyArray, dists: Float[ArrayLike, "agents vocab"], bids: Float[ArrayLike, " n_bids"]
) -> StableSample:
    """Sample one token from the linear rule with a stable sampler, and charge critical bids.

    Exponential clocks: E_j ~ Exp(1) independently, the winner is argmin_j E_j / b_j (so agent j
    wins with probability lambda_j = b_j / sum_k b_k), and the token is drawn from the winner's
    distribution with noise u ~ U[0, 1) shared by all agents; the token is therefore distributed as
    the linear aggregate. With the randomness fixed, raising b_i can only make i the winner (the
    token changes at most once, to one drawn from p_i): the sampler is stable. Agent i wins iff
    b_i > E_i max_{j != i} b_j / E_j, its critical bid; the winner pays it (second-price style), the
    others pay 0. (The spec writes min_{j != i} b_j / E_j; the winning condition E_i / b_i <
    min_j E_j / b_j gives the max, and only the max reproduces the spec's expected payment, see
    [`expected_payment_linear`][].) Payments lie in [0, b_i].

    **Arguments:** `key` a PRNG key; `dists`, `bids` as in [`lmaas_jax.token_auction.linear`][].
    Batch over keys (Monte Carlo) or steps with `jax.vmap`.

    **Returns:** a [`StableSample`][].
    """
    return _stable_sample_linear(key, *check_inputs(dists, bids))


@jax.jit
def _stable_sample_linear(key, dists, bids):
    k_clock, k_token = jax.random.split(key)
    clocks = jax.random.exponential(k_clock, bids.shape, bids.dtype)
    rate = jnp.where(bids > 0, clocks / jnp.where(bids > 0, bids, 1.0), jnp.inf)
    winner = jnp.argmin(rate).astype(jnp.int32)
    u = jax.random.uniform(k_token, (), bids.dtype)
    token = draw_token(u, dists[winner])
    pull = bids / clocks  # b_j / E_j
    n = bids.shape[0]
    others = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, pull[None, :])
    critical = clocks * jnp.max(others, axis=1)
    payments = jnp.where(jnp.arange(n, dtype=jnp.int32) == winner, critical, 0.0)
    return StableSample(token=token, winner=winner, critical_bids=critical, payments=payments)


def expected_payment_linear(bids: Float[ArrayLike, " n_bids"]) -> Float[Array, " agents"]:
    """Closed-form expected per-token payment of each agent under the stable linear sampler.

    With b = b_i and B = sum_{j != i} b_j, min_{j != i} E_j / b_j ~ Exp(B), so the critical bid
    c = E_i / that minimum has P(c <= x) = x / (x + B), and E[c; c < b] = B (ln(1 + b/B) - b/(b+B)).
    It equals the Myerson form b g(b) - int_0^b g with g(s) = s / (s + B), i's winning probability.
    """
    bids = jnp.asarray(bids)
    check_bids(bids)
    b = bids
    big_b = jnp.sum(bids) - bids
    safe = jnp.where(big_b > 0, big_b, 1.0)
    return jnp.where(big_b > 0, safe * (jnp.log1p(b / safe) - b / (b + safe)), 0.0)


def pull(rule: Rule, dists, bids, agent: int | Array, bid) -> Float[Array, ""]:
    """g_i(bid): the fraction of the way the aggregate has moved from q(b_i = 0) towards p_i.

    Measured in total variation, TV(q(bid), q(0)) / TV(p_i, q(0)); for the linear rule it is
    lambda_i = bid / (bid + B), the probability that the stable sampler lets i win.
    """
    base = rule(dists, bids.at[agent].set(0.0))
    moved = 0.5 * jnp.sum(jnp.abs(rule(dists, bids.at[agent].set(bid)) - base))
    span = 0.5 * jnp.sum(jnp.abs(dists[agent] - base))
    return jnp.where(span > 0, moved / jnp.where(span > 0, span, 1.0), 0.0)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


def expected_payment(
    rule: Rule, dists: Float[ArrayLike, "agents vocab"], bids: Float[ArrayLike, " n_bids"]
) -> Float[Array, " agents"]:
    """Myerson expected payment of every agent, for any monotone rule.

    E[z_i] = b_i g_i(b_i) - int_0^{b_i} g_i(s) ds with g_i = [`pull`][] (48-point Gauss-Legendre).
    For a monotone rule g_i is non-decreasing, so 0 <= E[z_i] <= b_i g_i(b_i) <= b_i. Needs every
    agent to have a competitor with a positive bid (q(b_i = 0) must exist).

    **Arguments:** `rule`, `dists`, `bids` as in [`lmaas_jax.token_auction.is_monotone`][].

    **Returns:** shape `(n_agents,)`, $ per token.
    """
    return _expected_payment(rule, *check_inputs(dists, bids))


@eqx.filter_jit
def _expected_payment(rule, dists, bids):
    nodes = jnp.asarray(_NODES, bids.dtype)
    w = jnp.asarray(_WEIGHTS, bids.dtype)

    def one(i):
        b = bids[i]
        s = 0.5 * b * (nodes + 1.0)
        g = jax.vmap(lambda x: pull(rule, dists, bids, i, x))(s)
        return b * pull(rule, dists, bids, i, b) - 0.5 * b * jnp.sum(w * g)

    return jax.vmap(one)(jnp.arange(bids.shape[0]))


def kl(p: Float[Array, " vocab"], q: Float[Array, " vocab"]) -> Float[Array, ""]:
    """KL(p || q) with 0 log 0 = 0 (inf where p > 0 = q)."""
    ratio = jnp.where(p > 0, p / jnp.where(q > 0, q, 1.0), 1.0)
    terms = jnp.where(p > 0, p * jnp.log(ratio), 0.0)
    return jnp.where(jnp.any((p > 0) & (q <= 0)), jnp.inf, jnp.sum(terms))


def clarke_payments(
    rule: Rule,
    dists: Float[ArrayLike, "agents vocab"],
    bids: Float[ArrayLike, " n_bids"],
    divergence: Literal["forward", "reverse"] = "forward",
) -> Float[Array, " agents"]:
    """VCG (Clarke pivot) payments when agent j's value of q is -b_j KL(p_j || q) or -b_j KL(q || p_j).

    The linear rule maximises -sum_j b_j KL(p_j || q) (`"forward"`), the log-linear one
    -sum_j b_j KL(q || p_j) (`"reverse"`); with the matching divergence each is welfare-maximising,
    so z_i = sum_{j != i} b_j [u_j(q_{-i}) - u_j(q)] with q_{-i} the rule's output without i
    (b_i = 0) is truthful and >= 0.

    **Returns:** shape `(n_agents,)`.
    """
    if divergence not in ("forward", "reverse"):
        raise ValueError(f"divergence must be 'forward' or 'reverse'; got {divergence!r}.")
    matching = {"linear": "forward", "log_linear": "reverse"}.get(getattr(rule, "__name__", ""))
    if matching is not None and matching != divergence:
        raise ValueError(
            f"divergence = {divergence!r} does not match rule {rule.__name__}, which maximises the "
            f"{matching} welfare: the Clarke payments would not be VCG (they can go negative); "
            f"use divergence={matching!r}."
        )
    return _clarke_payments(rule, *check_inputs(dists, bids), divergence)


@eqx.filter_jit
def _clarke_payments(rule, dists, bids, divergence):
    n = bids.shape[0]

    def utility(q):  # u_j(q) for every agent j
        if divergence == "forward":
            return -jax.vmap(kl, in_axes=(0, None))(dists, q)
        return -jax.vmap(kl, in_axes=(None, 0))(q, dists)

    u_with = utility(rule(dists, bids))

    def one(i):
        others = jnp.arange(n) != i
        u_without = utility(rule(dists, bids.at[i].set(0.0)))
        return jnp.sum(jnp.where(others, bids * (u_without - u_with), 0.0))

    return jax.vmap(one)(jnp.arange(n))
