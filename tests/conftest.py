import jax
import pytest

# As in Equinox/Optimistix: x64 available (tests choose dtypes explicitly), strict dtype promotion
# and no implicit rank promotion, so silent upcasts or broadcasts in the library fail loudly.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param
