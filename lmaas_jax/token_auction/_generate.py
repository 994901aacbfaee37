"""A whole generation under a token auction: any next-token functions, fixed bids, per-token payments."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._payments import expected_payment, stable_sample_linear
from ._rules import Rule, check_inputs, linear

NextToken = Callable[[Int[Array, " length"], Int[Array, ""]], Float[Array, " vocab"]]


class Generation(eqx.Module):
    """The result of [`lmaas_jax.token_auction.generate`][].

    **Fields:**

    - `tokens`: shape `(max_tokens,)`, the generated tokens (after the prompt).
    - `payments`: shape `(max_tokens, n_agents)`, each agent's payment for each token.
    - `total`: shape `(n_agents,)`, each agent's total payment.
    - `winners`: shape `(max_tokens,)`, the agent whose distribution each token came from (linear
      rule), or -1 (other rules).
    """

    tokens: Int[Array, " steps"]
    payments: Float[Array, "steps agents"]
    total: Float[Array, " agents"]
    winners: Int[Array, " steps"]


def generate(
    next_token_fns: Sequence[NextToken],
    bids: Float[ArrayLike, " n_bids"],
    prompt: Int[ArrayLike, " prompt"],
    key: PRNGKeyArray,
    max_tokens: int,
    *,
    rule: Rule = linear,
) -> Generation:
    """Generate `max_tokens` tokens, one auction per token, with the bids fixed throughout.

    At each step every agent's `next_token_fn(tokens, length)` gives its next-token distribution
    for the shared prefix `tokens[:length]` (`tokens` is a fixed-size buffer, so any JAX function
    works under `lax.scan`: an n-gram table, a JAX transformer, ...). With the linear rule the token
    comes from [`stable_sample_linear`][] and the winner pays its critical bid; with any other rule
    the token is drawn from the aggregate and every agent pays its Myerson expected payment
    ([`expected_payment`][]; meaningful for monotone rules).

    **Arguments:**

    - `next_token_fns`: one function per agent, `(tokens int32 (L,), length int32) -> (vocab,)`.
    - `bids`: shape `(n_agents,)`, >= 0, not all 0.
    - `prompt`: shape `(P,)`, token ids.
    - `key`: PRNG key; the same key gives the same text.
    - `max_tokens`: tokens to generate.
    - `rule`: the aggregation rule.

    **Returns:** a [`Generation`][].
    """
    bids = jnp.asarray(bids)
    prompt = jnp.asarray(prompt, jnp.int32)
    if len(next_token_fns) != bids.shape[0]:
        raise ValueError(
            f"next_token_fns has {len(next_token_fns)} functions but bids has {bids.shape[0]} entries."
        )
    if int(max_tokens) < 1:
        raise ValueError(f"max_tokens must be >= 1; got {max_tokens!r}.")
    if prompt.ndim != 1:
        raise ValueError(f"prompt must be a 1-D array of token ids; got shape {tuple(prompt.shape)}.")
    p = prompt.shape[0]
    buffer = jnp.concatenate([prompt, jnp.zeros((max_tokens,), jnp.int32)])
    first = jnp.stack([f(buffer, jnp.asarray(p, jnp.int32)) for f in next_token_fns])
    _, bids = check_inputs(first, bids)  # validates bids and the first step's distributions

    def step(buf, inputs):
        t, k = inputs
        length = p + t
        dists = jnp.stack([f(buf, length) for f in next_token_fns]).astype(bids.dtype)
        if rule is linear:
            s = stable_sample_linear(k, dists, bids)
            token, pay, winner = s.token, s.payments, s.winner
        else:
            q = rule(dists, bids)
            token = jax.random.categorical(k, jnp.log(q)).astype(jnp.int32)
            pay, winner = expected_payment(rule, dists, bids), jnp.asarray(-1, jnp.int32)
        return buf.at[length].set(token), (token, pay, winner)

    steps = jnp.arange(max_tokens, dtype=jnp.int32)
    _, (tokens, payments, winners) = lax.scan(step, buffer, (steps, jax.random.split(key, max_tokens)))
    return Generation(tokens=tokens, payments=payments, total=jnp.sum(payments, axis=0), winners=winners)
