"""How a stage runs its starts: one after another, or all at once.

The exact stages (polish, moves, look-ahead) each start from several price vectors. Run one after
another (`"sequential"`), a start that has converged ends its loop and the next begins: the work is
what the starts need and nothing more, which is what a CPU pays for. Run side by side
(`"parallel"`), every start of a batch steps together until the slowest is done, converged starts
carried unchanged: more arithmetic, but the chain of dependent steps is that of one start, which is
what an accelerator pays for (each step is a few kernel launches whatever its width). Each start
follows the same path under either schedule, so the prices are the same; `Budget.depth` counts the
steps that ran one after another.
"""

from __future__ import annotations

import jax

SEQUENTIAL, PARALLEL = "sequential", "parallel"
SCHEDULES = (SEQUENTIAL, PARALLEL)


def default_schedule(backend: str | None = None) -> str:
    """The schedule [`lmaas_jax.GradientIMP.for_market`][] picks on `backend` (default: JAX's default
    backend): `"sequential"` on a CPU, where the work is the cost, `"parallel"` on an accelerator,
    where the sequential depth is."""
    backend = jax.default_backend() if backend is None else backend
    return SEQUENTIAL if backend == "cpu" else PARALLEL
