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
