import atexit
import os
import shutil
import tempfile

# XLA's CPU fusion emitter (jax 0.10.2) can give two functions of one fusion the same name (an HLO
# `dynamic_slice.59` from JAX and a `dynamic-slice.59` of its own, both sanitised to
# `dynamic_slice_59`), and then fails with "Failed to translate module to LLVM IR". Seen only with
# x64 on and a float32 market, which is what these tests run; the older emitters compile the same
# programs at the same speed (measured: imp on a 4 x 128 market, 0.142 s against 0.148 s).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lmaas_jax.product._mappings import release_compiled_programs  # noqa: E402

# As in Equinox/Optimistix: x64 available (tests choose dtypes explicitly), strict dtype promotion
# and no implicit rank promotion, so silent upcasts or broadcasts in the library fail loudly.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


# No persistent compilation cache in the test processes. Shared by the two xdist workers it saved
# about 20 s of an 8-minute run, and workers died of segmentation faults in it (JAX writes an entry
# in place without a lock unless the cache is bounded, and the other worker read it half-written);
# the in-process CLI tests would otherwise turn on the command's cache (`lmaas-jax` keeps one) for
# the rest of their worker. The commands the tests start as processes keep theirs in this run's own
# folder, not the user's.
jax.config.update("jax_enable_compilation_cache", False)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="lmaas-jax-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


# The tests compile many programs in one process (markets of many shapes, both dtypes, many
# settings): the slow ones reach Linux's cap on memory mappings about three quarters of the way
# through, and XLA's next compile then aborts (seen in CI and here at 65,531 mappings). A test that
# leaves the process past half the cap releases them; later tests recompile what they need.
@pytest.fixture(autouse=True)
def _release_compiled_programs_near_the_mapping_cap():
    yield
    release_compiled_programs()


def _same_param(name, a, b):
    return np.dtype(a) == np.dtype(b) if name == "dtype" else a == b  # "float32" is jnp.float32


# `@pytest.mark.default_run(dict(dtype="float32"), ...)`: of a parametrised test, only the cases whose
# parameters match one of these dicts run in the default run; every other case is marked slow (CI's
# slow step runs it). So a costly test keeps one case of each property in the README's command (one
# dtype, one shape) and the rest as second checks, both dtypes still tested in CI.
@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(config, items):
    kept = {}  # per marked test function: whether any of its cases stays in the default run
    for item in items:
        mark = item.get_closest_marker("default_run")
        if mark is None:
            continue
        params = item.callspec.params
        for keep in mark.args:
            if not set(keep) <= set(params):
                raise pytest.UsageError(
                    f"{item.nodeid}: default_run names {sorted(keep)}, not all its parameters"
                )
        stays = any(all(_same_param(k, params[k], v) for k, v in keep.items()) for keep in mark.args)
        if not stays:
            item.add_marker(pytest.mark.slow)
        name = item.nodeid.split("[")[0]
        kept[name] = kept.get(name, False) or stays
    if missing := [name for name, stays in kept.items() if not stays]:  # a typo would hide the test
        raise pytest.UsageError(f"default_run keeps no case of {missing}")
