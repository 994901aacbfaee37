"""Input validation shared by the data classes: every error names the field and the bad value.

Checks run on concrete arrays only. Inside `jax.jit`/`jax.vmap` the values are tracers and nothing
can be inspected, so validation is skipped there: validate by constructing outside the transform.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """Whether every argument holds concrete values (no tracer inside jit/vmap/grad)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def as_float(x) -> jax.Array:
    """Converter for float fields: keep a floating JAX array's dtype, else use JAX's default float."""
    if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.asarray(x)
    return jnp.asarray(x, dtype=jnp.result_type(float))


def fail_where(name: str, bad, value, requirement: str) -> None:
    """Raise `ValueError` naming `name`, the first offending index and value, if `bad` is anywhere true.

    **Arguments:**

    - `name`: the field, as the user wrote it (`"Models.accuracy"`).
    - `bad`: boolean array, true where the requirement fails.
    - `value`: the array the requirement is about, for the message.
    - `requirement`: what must hold, as a phrase (`"must lie in (0, 1]"`).
    """
    if not is_concrete(bad, value):
        return
    bad = np.asarray(bad)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at index {idx if len(idx) > 1 else idx[0]}" if np.ndim(bad) else ""
        got = np.asarray(value)[idx] if np.ndim(value) else np.asarray(value)
        raise ValueError(f"{name} {requirement}; got {got.item()!r}{where}.")


def check_shape(name: str, x, shape: tuple[int, ...]) -> None:
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got shape {tuple(jnp.shape(x))}.")


def check_not_nan(name: str, x) -> None:
    if is_concrete(x):
        fail_where(name, np.isnan(np.asarray(x)), x, "must not be NaN")


def check_finite(name: str, x) -> None:
    if is_concrete(x):
        fail_where(name, ~np.isfinite(np.asarray(x)), x, "must be finite")
