"""Type distributions (users' impatience r) and resolution-time laws (when the question resolves).

Our re-derivation of the model of Zhong, "Token Is All You Price" (arXiv 2510.09859): the paper's
body was not available to us (`docs/models/token-caps.md`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_shape, fail_where, is_concrete


class TypeDistribution(eqx.Module):
    """A distribution of the impatience r on [lo, hi]: subclasses give `cdf` and `pdf` in JAX.

    Parameters are array fields, so revenue is differentiable with respect to them. Every law
    (types and resolution) takes `dtype=`: by default its array arguments' floating dtype, else
    JAX's default float; [`solve`][] computes in the dtype of the type distribution.
    """

    def support(self) -> tuple[Array, Array]:
        raise NotImplementedError

    def cdf(self, r: Float[Array, "..."]) -> Float[Array, "..."]:
        raise NotImplementedError

    def pdf(self, r: Float[Array, "..."]) -> Float[Array, "..."]:
        raise NotImplementedError


def _float_dtype(dtype, *xs):
    """`dtype` if given; else the floating dtype of the array arguments (float32 stays float32 with
    x64 on); else JAX's default float (float32 unless x64 is on)."""
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"dtype must be a floating dtype; got {dtype}.")
        return dtype
    found = [x.dtype for x in xs if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]
    return np.result_type(*found) if found else jnp.result_type(float)


def _positive_interval(name, lo, hi):
    if not isinstance(lo, jax.core.Tracer) and not isinstance(hi, jax.core.Tracer):
        if not (float(lo) >= 0.0 and math.isfinite(float(hi)) and float(hi) > float(lo)):
            raise ValueError(
                f"{name} needs a finite support 0 <= lo < hi < inf; got lo={float(lo)!r}, hi={float(hi)!r}."
            )


class Uniform(TypeDistribution):
    """r uniform on [lo, hi] (0 <= lo < hi): G/g = r - lo increases, so no ironing is needed."""

    lo: Float[Array, ""]
    hi: Float[Array, ""]

    def __init__(self, lo: float | ArrayLike, hi: float | ArrayLike, *, dtype=None):
        _positive_interval("Uniform", lo, hi)
        dtype = _float_dtype(dtype, lo, hi)
        self.lo, self.hi = jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)

    def support(self):
        return self.lo, self.hi

    def cdf(self, r):
        return jnp.clip((r - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def pdf(self, r):
        return jnp.where((r >= self.lo) & (r <= self.hi), 1.0 / (self.hi - self.lo), 0.0)


class GaussianMixture(TypeDistribution):
    """A mixture of Gaussian bumps truncated to [lo, hi]. With well separated bumps G/g is not
    monotone, so the optimal caps need ironing (a non-regular distribution); from samples it is a
    kernel density estimate ([`GaussianMixture.from_samples`][]).

    **Fields:** `lo`, `hi` the support; `centres`, `widths`, `weights` shape `(n,)` each.
    """

    lo: Float[Array, ""]
    hi: Float[Array, ""]
    centres: Float[Array, " n"]
    widths: Float[Array, " n"]
    weights: Float[Array, " n"]

    def __init__(self, lo, hi, centres, widths, weights, *, dtype=None):
        _positive_interval("GaussianMixture", lo, hi)
        dtype = _float_dtype(dtype, lo, hi, centres, widths, weights)
        centres, widths, weights = (jnp.asarray(x, dtype) for x in (centres, widths, weights))
        for name, x in (("widths", widths), ("weights", weights)):
            check_shape(f"GaussianMixture.{name}", x, centres.shape)
        if is_concrete(centres, widths, weights):
            c, w, m = (np.asarray(x, np.float64) for x in (centres, widths, weights))
            fail_where("GaussianMixture.centres", ~np.isfinite(c), c, "must be finite")
            fail_where("GaussianMixture.widths", ~(np.isfinite(w) & (w > 0)), w, "must be finite and > 0")
            fail_where("GaussianMixture.weights", ~(np.isfinite(m) & (m >= 0)), m, "must be finite and >= 0")
            if not m.sum() > 0:
                raise ValueError(f"GaussianMixture.weights must not all be 0; got {m.tolist()}.")
        self.lo, self.hi = jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)
        self.centres, self.widths = centres, widths
        self.weights = weights / jnp.sum(weights)

    @classmethod
    def from_samples(cls, samples, lo=None, hi=None, bandwidth=None, *, dtype=None) -> GaussianMixture:
        """A Gaussian kernel density estimate of observed impatience `samples` (Silverman's
        bandwidth by default), truncated to [lo, hi] (default: the samples' range)."""
        x = jnp.asarray(samples, _float_dtype(dtype, samples)).ravel()
        if x.shape[0] < 2 or not bool(jnp.all(jnp.isfinite(x))) or not bool(jnp.all(x >= 0)):
            raise ValueError(f"samples must be >= 2 finite values >= 0; got {x.shape[0]} values.")
        h = 1.06 * jnp.std(x) * x.shape[0] ** (-0.2) if bandwidth is None else bandwidth
        lo = jnp.min(x) if lo is None else lo
        hi = jnp.max(x) if hi is None else hi
        return cls(lo, hi, x, jnp.full_like(x, h), jnp.ones_like(x), dtype=x.dtype)

    def support(self):
        return self.lo, self.hi

    def _z(self, r):
        r = jnp.asarray(r)
        shape = (1,) * r.ndim + self.centres.shape
        return (r[..., None] - self.centres.reshape(shape)) / self.widths.reshape(shape), shape

    def _raw_cdf(self, r):
        z, shape = self._z(r)
        return jnp.sum(self.weights.reshape(shape) * jax.scipy.stats.norm.cdf(z), axis=-1)

    def cdf(self, r):
        a, b = self._raw_cdf(self.lo), self._raw_cdf(self.hi)
        return jnp.clip((self._raw_cdf(r) - a) / (b - a), 0.0, 1.0)

    def pdf(self, r):
        z, shape = self._z(r)
        raw = jnp.sum(
            self.weights.reshape(shape) * jax.scipy.stats.norm.pdf(z) / self.widths.reshape(shape), axis=-1
        )
        mass = self._raw_cdf(self.hi) - self._raw_cdf(self.lo)
        return jnp.where((r >= self.lo) & (r <= self.hi), raw / mass, 0.0)


class FromFunctions(TypeDistribution):
    """Any distribution on [lo, hi] given by a JAX `cdf(r)` and `pdf(r)` (static callables)."""

    lo: Float[Array, ""]
    hi: Float[Array, ""]
    cdf_fn: Callable = eqx.field(static=True)
    pdf_fn: Callable = eqx.field(static=True)

    def __init__(self, lo, hi, cdf, pdf, *, dtype=None):
        _positive_interval("FromFunctions", lo, hi)
        dtype = _float_dtype(dtype, lo, hi)
        self.lo, self.hi = jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)
        self.cdf_fn, self.pdf_fn = cdf, pdf
        if is_concrete(self.lo, self.hi):  # a CDF must run from 0 at lo to 1 at hi
            ends = np.asarray([cdf(self.lo), cdf(self.hi)], np.float64)
            if not (abs(ends[0]) <= 1e-6 and abs(ends[1] - 1.0) <= 1e-6):
                raise ValueError(
                    f"FromFunctions: cdf must be 0 at lo and 1 at hi; got cdf(lo) = {ends[0].item()!r}, "
                    f"cdf(hi) = {ends[1].item()!r}."
                )

    def support(self):
        return self.lo, self.hi

    def cdf(self, r):
        return self.cdf_fn(r)

    def pdf(self, r):
        return self.pdf_fn(r)


class ResolutionLaw(eqx.Module):
    """The law of the resolution time tau: a density on [0, `horizon`]."""

    def density(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        raise NotImplementedError

    def horizon(self) -> float:
        """A time beyond which the law has negligible mass (the largest cap considered)."""
        raise NotImplementedError


class Exponential(ResolutionLaw):
    """tau ~ Exp(rate): full revelation at Poisson rate `rate` (the aligned model's law)."""

    rate: Float[Array, ""]

    def __init__(self, rate: float | ArrayLike, *, dtype=None):
        if not isinstance(rate, jax.core.Tracer) and not float(rate) > 0:
            raise ValueError(f"Exponential.rate must be > 0; got {float(rate)!r}.")
        self.rate = jnp.asarray(rate, _float_dtype(dtype, rate))

    def density(self, t):
        return self.rate * jnp.exp(-self.rate * t)

    def horizon(self):
        return 40.0 / float(jax.lax.stop_gradient(self.rate))


class Diffusion(ResolutionLaw):
    """Brownian learning: tau = first time drift * t + sigma * W_t reaches `level` (inverse Gaussian).

    Density level / (sigma sqrt(2 pi t^3)) exp(-(level - drift t)^2 / (2 sigma^2 t)), mean
    level / drift. Less dispersed than the exponential law of the same mean.
    """

    drift: Float[Array, ""]
    level: Float[Array, ""]
    sigma: Float[Array, ""]

    def __init__(self, drift, level=1.0, sigma=1.0, *, dtype=None):
        for name, v in (("drift", drift), ("level", level), ("sigma", sigma)):
            if not isinstance(v, jax.core.Tracer) and not float(v) > 0:
                raise ValueError(f"Diffusion.{name} must be > 0; got {float(v)!r}.")
        dtype = _float_dtype(dtype, drift, level, sigma)
        self.drift, self.level, self.sigma = (jnp.asarray(x, dtype) for x in (drift, level, sigma))

    def density(self, t):
        safe = jnp.where(t > 0, t, 1.0)
        d = self.level / (self.sigma * jnp.sqrt(2 * jnp.pi * safe**3))
        d = d * jnp.exp(-((self.level - self.drift * safe) ** 2) / (2 * self.sigma**2 * safe))
        return jnp.where(t > 0, d, 0.0)

    def horizon(self):
        mean = float(jax.lax.stop_gradient(self.level / self.drift))
        return 40.0 * mean
