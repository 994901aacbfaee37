"""IMP's work budget: a count of exact steps, spent by the exact stages in a fixed order.

A unit of work is one exact step: one model's line search in one sweep of classic IMP (from one
start), or one candidate move re-priced and evaluated. Each costs a few passes over the market's
(N, K) options, so the work a run spends times N K is about its arithmetic. The polish, the moves
and the look-ahead spend from one `Budget` in the order they run; each loop checks, before a step,
that the step's largest possible cost still fits, and once one does not, every later step of every
stage is skipped. A run with a smaller budget is therefore a prefix of the run with a larger one
from the same key, and as no stage ever lowers the best profit found, it never ends higher.

Beside the work, a `Budget` counts the run's sequential depth: the exact steps that ran one after
another, a batch of steps run side by side counting as its longest (a batch of starts polished
together costs the sweeps of its slowest start; a chunk of candidates re-priced together counts
once). The work is what a run's arithmetic costs; the depth is what an accelerator pays in latency,
as each step is a chain of dependent kernels whatever its width. The budget limits the work only.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

# The budget of an unlimited run: more than any run spends, and within int32.
UNLIMITED = 2**31 - 1


class Budget(eqx.Module):
    """Work spent so far, the limit, whether a step was skipped for lack of budget, and the depth."""

    spent: jnp.ndarray  # int32 scalar
    limit: jnp.ndarray  # int32 scalar
    stopped: jnp.ndarray  # bool scalar: a step did not fit, so every later one is skipped
    depth: jnp.ndarray  # int32 scalar: exact steps run one after another (see the module docstring)

    @classmethod
    def of(cls, limit) -> Budget:
        """A fresh budget of `limit` units: a Python int, an integer array (traced: one compilation
        serves every budget) or None (unlimited)."""
        limit = UNLIMITED if limit is None else jnp.minimum(jnp.asarray(limit), UNLIMITED)
        zero = jnp.asarray(0, jnp.int32)
        return cls(zero, jnp.asarray(limit, jnp.int32), jnp.asarray(False), zero)

    @classmethod
    def unlimited(cls) -> Budget:
        return cls.of(None)

    def allows(self, cost) -> jnp.ndarray:
        """Whether a step of at most `cost` units fits (never after a step was skipped)."""
        return ~self.stopped & (jnp.asarray(cost, jnp.int32) <= self.limit - self.spent)

    def spend(self, cost, depth) -> Budget:
        """Count `cost` units of work (summed if an array) that ran `depth` steps one after another."""
        cost = jnp.sum(jnp.asarray(cost, jnp.int32), dtype=jnp.int32)
        return Budget(_add(self.spent, cost), self.limit, self.stopped, _add(self.depth, depth))

    def stop_if(self, more_to_do) -> Budget:
        """After a loop: mark the budget stopped where the loop ended with work left to do."""
        return Budget(self.spent, self.limit, self.stopped | jnp.asarray(more_to_do), self.depth)


def _add(count, more):
    # Saturating: an unlimited run's count stops at UNLIMITED rather than wrap around in int32.
    more = jnp.asarray(more, jnp.int32)
    return jnp.where(more > UNLIMITED - count, UNLIMITED, count + more)
