"""Compiled programs against Linux's cap on a process's memory mappings.

JAX keeps every program it compiles until its caches drop it, and on the CPU each program holds
memory mappings for its machine code: about 700 for `imp` on one market shape (measured with JAX
0.10.2). Linux caps a process's mappings (`vm.max_map_count`, 65530 by default), so a process that
compiles on the order of a hundred market shapes (a long sweep over a grid of sizes, a test run)
reaches the cap, and XLA's next compilation then aborts or segfaults with no message that names
the cause. Releasing the compiled programs (`jax.clear_caches`) before that costs only their
recompilation where they are needed again.
"""

from __future__ import annotations

import gc

import jax

DEFAULT_CAP = 65530  # Linux's default vm.max_map_count


def mapping_count() -> int | None:
    """Memory mappings this process holds now; None where the system does not say (not Linux)."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


def mapping_cap() -> int:
    """Linux's cap on a process's memory mappings (`vm.max_map_count`), or its default."""
    try:
        with open("/proc/sys/vm/max_map_count") as cap:
            return int(cap.read())
    except (OSError, ValueError):
        return DEFAULT_CAP


def release_compiled_programs(share: float = 0.5) -> bool:
    """Clear JAX's caches of compiled programs if this process holds more than `share` of the
    mapping cap; return whether it did. Cheap otherwise (one read of `/proc/self/maps`).

    Call it between pieces of work that compile different programs: the caches drop every
    program, so the next call of any jitted function compiles again.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1]; got {share!r}.")
    count = mapping_count()
    if count is None or count <= share * mapping_cap():
        return False
    jax.clear_caches()
    gc.collect()
    return True
