"""Input validation shared by the data classes: every error names the field and the bad value.

Checks run on concrete arrays as Python checks (a ValueError or TypeError naming the argument and
the value). Inside `jax.jit`/`jax.vmap` the values are tracers that Python cannot inspect: there the
data classes' field checks are skipped (validate by constructing outside the transform), while the
generators' parameters, prices, tie tolerances and temperatures are checked at run time by
`equinox.error_if` (an error naming the argument, raised when the compiled code runs). Sizes are
checked against the device's memory before anything is allocated.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# What a failed check on a traced value does: "raise" (the default: `equinox.error_if` raises when
# the compiled code runs) or "nan" (the checked output becomes NaN, or an integer's largest value).
# "raise" compiles a host callback into the program, and JAX's persistent compilation cache keeps no
# program with one; the command line, which checks its whole configuration in Python before it
# compiles anything, runs in "nan" (`failed_checks_give_nan`) so that its cache keeps its programs.
_ON_ERROR = {"mode": "raise"}


def runtime_check(x, bad, message: str):
    """`x`, with `equinox.error_if(x, bad, message)` in the current mode (above)."""
    return eqx.error_if(x, bad, message, on_error=_ON_ERROR["mode"])


@contextlib.contextmanager
def failed_checks_give_nan():
    """Within: checks on traced values compile without a host callback, and a failed one gives NaN
    instead of raising, so that JAX's persistent compilation cache can keep the programs. For callers
    that have checked every input in Python first (the command line). On leaving, JAX's in-memory
    caches are cleared, so no program traced within is reused outside it."""
    previous = _ON_ERROR["mode"]
    _ON_ERROR["mode"] = "nan"
    try:
        yield
    finally:
        _ON_ERROR["mode"] = previous
        jax.clear_caches()


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
    if tuple(np.shape(x)) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got shape {tuple(np.shape(x))}.")


def check_not_nan(name: str, x) -> None:
    if is_concrete(x):
        fail_where(name, np.isnan(np.asarray(x)), x, "must not be NaN")


def check_finite(name: str, x) -> None:
    if is_concrete(x):
        fail_where(name, ~np.isfinite(np.asarray(x)), x, "must be finite")


def in_range(
    name: str,
    value,
    lo: int | float,
    hi: int | float,
    requirement: str | None = None,
    *,
    finite: bool = False,
    on=None,
):
    """`value` if every entry lies in [lo, hi] (NaN fails; with `finite`, infinities too): a ValueError
    naming it when concrete, an `equinox.error_if` runtime error under `jax.jit`/`jax.vmap` (where
    Python cannot look). With `on`, the traced check is attached to `on` instead and `on` is
    returned (for a value the caller does not compute with: the check must feed the output, or the
    compiler drops it)."""
    requirement = requirement or f"must lie in [{lo}, {hi}]"
    out = value if on is None else on
    if is_concrete(value):
        v = np.asarray(value, np.float64)
        if not (np.all(v >= lo) and np.all(v <= hi) and (not finite or np.all(np.isfinite(v)))):
            raise ValueError(f"{name} {requirement}; got {value!r}.")
        return out
    bad = ~((value >= lo) & (value <= hi))
    if finite:
        bad = bad | ~jnp.isfinite(value)
    return runtime_check(out, bad, f"{name} {requirement}")


def size(name: str, value) -> int:
    """`value` as a Python int >= 1 (a shape), else a TypeError or ValueError naming it."""
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int; got {value!r} ({type(value).__name__}).") from None
    if n < 1:
        raise ValueError(f"{name} must be >= 1; got {n}.")
    return n


def device_memory() -> int:
    """Bytes the default device can hold: its allocator's limit on a GPU, the machine's RAM on a CPU."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(what: str, nbytes: int | float) -> None:
    """Refuse, before allocating, a computation whose arrays would not fit in the device's memory."""
    limit = device_memory()
    if nbytes > limit:
        raise ValueError(
            f"{what} would need about {nbytes / 2**30:,.1f} GiB, more than the {limit / 2**30:,.1f} GiB "
            f"of {jax.devices()[0].platform} memory here; make it smaller or split it."
        )


def check_prices(name: str, prices, n_models: int) -> None:
    """Shape `(n_models,)`, finite and >= 0, when concrete (a ValueError naming index and value)."""
    check_shape(name, prices, (n_models,))
    if is_concrete(prices):
        p = np.asarray(prices)
        fail_where(name, ~np.isfinite(p), p, "must be finite")
        fail_where(name, p < 0, p, "must be >= 0")


def checked(check, *, jit: bool = True):
    """`equinox.filter_jit` a public function (unless `jit` is False), with `check(*args, **kwargs)`
    run first in Python: the one entry contract of every solver.

    Inside the jitted function the arguments are tracers; `check` sees what the caller passed, so a
    bad value gets a ValueError or TypeError naming it (concrete values) before anything is traced
    or compiled.
    """

    def wrap(fn):
        jitted = eqx.filter_jit(fn) if jit else fn

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            check(*args, **kwargs)
            return jitted(*args, **kwargs)

        return wrapper

    return wrap


def setting(
    default,
    help: str,
    *,
    lo: int | float | None = None,
    hi: int | float | None = None,
    choices: tuple[str, ...] = (),
):
    """A solver setting: a static field with its default, its meaning and its range (or, for a
    string, its `choices`).

    The one source for a setting's name, default, range and help: `check_settings` validates a
    Module's settings from it, and the product layer builds its configuration schema from it.
    """
    meta = {"help": help, "lo": lo, "hi": hi, "choices": tuple(choices)}
    return eqx.field(static=True, default=default, metadata=meta)


def check_settings(module) -> None:
    """Every `setting` field of `module` has its default's type (int, float or str) and lies in its
    range or among its choices; else a TypeError or ValueError naming `Class.field` and the value."""
    import dataclasses

    owner = type(module).__name__
    for f in dataclasses.fields(module):
        if "help" not in f.metadata:
            continue
        name, value = f"{owner}.{f.name}", getattr(module, f.name)
        kind = type(f.default)
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int; got {value!r} ({type(value).__name__}).")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise TypeError(f"{name} must be a float; got {value!r} ({type(value).__name__}).")
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite; got {value!r}.")
        elif kind is str:
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str; got {value!r} ({type(value).__name__}).")
            choices = f.metadata["choices"]
            if choices and value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
            continue
        else:
            continue
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        if lo is not None and not value >= lo:
            raise ValueError(f"{name} must be {'> 0' if lo == _TINY else f'>= {lo}'}; got {value!r}.")
        if hi is not None and not value <= hi:
            raise ValueError(f"{name} must be <= {hi}; got {value!r}.")


# The lower bound of a setting that must be positive (a float range is closed).
_TINY = 1e-300
POSITIVE = _TINY
