"""The revenue-optimal menu of token caps, its audit, and the posted-price benchmark.

Our re-derivation of Zhong, "Token Is All You Price" (arXiv 2510.09859); the paper's body was not
available to us (`docs/models/token-caps.md`). A user of impatience r, whose question resolves at
time tau ~ f, values a cap T (conversation time; T chi tokens) at v(r, T) = int_0^T e^{-r t} f(t) dt.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from .._checks import in_range
from ._laws import ResolutionLaw, TypeDistribution


class Menu(eqx.Module):
    """A menu of token caps with its consequences, one entry per type cell (r increasing).

    **Fields:**

    - `types`: shape `(K,)`, r_k, the right edge of cell k = (r_{k-1}, r_k], whose types all take
      item k; `mass`: each cell's probability.
    - `caps`: T(r_k), conversation time (multiply by chi for tokens); non-increasing in r.
    - `cap_index`: index of each cap on `times`.
    - `payments`: P(r_k); `values`: v(r_k, T(r_k)); `utilities`: v - P (0 for the most impatient).
    - `marginal_price`: e^{-r T} f(T) at each type's cap, the slope of the price schedule P(T).
    - `pooled`: whether the type shares its cap with a neighbour (ironing, or the cap grid).
    - `revenue`, `welfare`, `virtual_surplus`: sum over cells of mass x payment, value, and the
      virtual surplus int_0^T e^{-r t} (1 - t G/g) f dt; revenue = virtual surplus as cells shrink.
    - `times`, `density`: the time grid and f on it.
    """

    types: Float[Array, " K"]
    mass: Float[Array, " K"]
    caps: Float[Array, " K"]
    cap_index: Int[Array, " K"]
    payments: Float[Array, " K"]
    values: Float[Array, " K"]
    utilities: Float[Array, " K"]
    marginal_price: Float[Array, " K"]
    pooled: Bool[Array, " K"]
    revenue: Float[Array, ""]
    welfare: Float[Array, ""]
    virtual_surplus: Float[Array, ""]
    times: Float[Array, " L"]
    density: Float[Array, " L"]


def _cumtrapz(y: Float[Array, "... L"], dt) -> Float[Array, "... L"]:
    """Cumulative trapezoid integral from t = 0, same length as y."""
    steps = 0.5 * (y[..., 1:] + y[..., :-1]) * dt
    return jnp.concatenate([jnp.zeros_like(y[..., :1]), jnp.cumsum(steps, axis=-1)], axis=-1)


def value_table(types, times, density):
    """v(r, t_l) and int_0^{t_l} t e^{-r t} f dt for every type and grid time, shape (K, L)."""
    dt = times[1] - times[0]
    discount = jnp.exp(-types[:, None] * times[None, :]) * density[None, :]
    return _cumtrapz(discount, dt), _cumtrapz(discount * times[None, :], dt)


def _suffix_argmax(x):
    """For each l, (max_{l' >= l} x[l'], its index); ties go to the larger index (bigger cap)."""

    def combine(a, b):  # a is to the left of b in the reversed order, i.e. larger indices
        take_b = b[0] > a[0]
        return jnp.where(take_b, b[0], a[0]), jnp.where(take_b, b[1], a[1])

    idx = jnp.arange(x.shape[0], dtype=jnp.int32)
    best, arg = lax.associative_scan(combine, (x[::-1], idx[::-1]))
    return best[::-1], arg[::-1]


def optimal_caps(objective: Float[Array, "K L"]) -> Int[Array, " K"]:
    """argmax over non-increasing cap indices l_0 >= l_1 >= ... of sum_k objective[k, l_k].

    Exact dynamic programme on the grid, O(K L): the monotonicity constraint (caps fall as
    impatience rises) is what incentive compatibility requires, so this irons automatically where
    the pointwise optimum g/G is not monotone.
    """

    def forward(prev, row):
        best, arg = _suffix_argmax(prev)
        return row + best, arg

    # Each row's best is subtracted first (the argmax is the same): the running sums then hold only
    # the losses from ironing, not the total, so float32 keeps the digits that tell caps apart.
    objective = objective - jnp.max(objective, axis=1, keepdims=True)
    first, rest = objective[0], objective[1:]
    last, args = lax.scan(forward, first, rest)
    l_last = jnp.argmax(jnp.where(last >= jnp.max(last), jnp.arange(last.shape[0]), -1)).astype(jnp.int32)

    def backward(next_index, arg_row):
        index = arg_row[next_index]
        return index, index

    _, ls = lax.scan(backward, l_last, args, reverse=True)
    return jnp.concatenate([ls, l_last[None]])


def solve(
    types: TypeDistribution,
    resolution: ResolutionLaw,
    *,
    n_types: int = 600,
    n_times: int = 6000,
    horizon: float | None = None,
) -> Menu:
    """The revenue-maximising menu of token caps for any type distribution and resolution law.

    **Model and solution (our re-derivation).** Type r (impatience) has CDF G and density g on
    [lo, hi]; a cap T is worth v(r, T) = int_0^T e^{-r t} f(t) dt. Incentive compatibility makes
    T(r) non-increasing and, with the most impatient type's utility 0,
    U(r) = int_r^hi int_0^{T(s)} t e^{-s t} f(t) dt ds (envelope); revenue is then the virtual
    surplus int int_0^{T(r)} rho_r(t) f(t) dt g(r) dr with rho_r(t) = e^{-r t} (1 - t G(r)/g(r)).
    Pointwise, T(r) = g(r)/G(r) (the most patient type gets no cap); where that is not
    non-increasing, the caps are ironed. Numerically: K type cells (each priced for its right edge,
    exact cell masses), caps on the time grid, and payments from binding local downward IC
    constraints, P_K = v(r_K, T_K) (IR), P_k = P_{k+1} + v(r_k, T_k) - v(r_k, T_{k+1}), which makes
    the menu exactly IC on the cells. The caps maximise that discrete problem's revenue exactly: it
    equals sum_k [M_k v(r_k, T_k) - M_{k-1} v(r_{k-1}, T_k)] (M_k the mass of the k most patient
    cells; the discrete virtual values, which tend to m_k (v - G/g int t e^{-rt} f dt) as cells
    shrink), maximised over non-increasing caps by an exact dynamic programme
    ([`optimal_caps`][]). Randomised menus do no better (tested against the LP over lotteries).
    The arithmetic runs in the type distribution's dtype.

    **Arguments:**

    - `types`: a [`TypeDistribution`][] (e.g. [`Uniform`][]); differentiable in its parameters.
    - `resolution`: a [`ResolutionLaw`][] (e.g. [`Exponential`][], [`Diffusion`][]).
    - `n_types`, `n_times`: grid sizes.
    - `horizon`: the largest cap; default `resolution.horizon()` (pass it when differentiating
      with respect to the law's parameters).

    **Returns:** a [`Menu`][].
    """
    if int(n_types) < 2 or int(n_times) < 3:
        raise ValueError(f"n_types must be >= 2 and n_times >= 3; got {n_types!r}, {n_times!r}.")
    horizon = resolution.horizon() if horizon is None else horizon
    if not isinstance(horizon, jax.core.Tracer) and not float(horizon) > 0:
        raise ValueError(f"horizon must be > 0; got {horizon!r}.")
    dtype = types.support()[0].dtype
    return _solve(types, resolution, jnp.asarray(horizon, dtype), int(n_types), int(n_times))


@eqx.filter_jit
def _solve(types, resolution, horizon, n_types, n_times):
    lo, hi = types.support()
    dtype = lo.dtype
    edges = lo + (hi - lo) * jnp.linspace(0.0, 1.0, n_types + 1, dtype=dtype)
    # Each cell (r_{k-1}, r_k] is priced for its most impatient type r_k, the right edge: then every
    # type in the cell weakly prefers the cell's item (single crossing) and has utility >= 0.
    r = edges[1:]
    mass = jnp.diff(types.cdf(edges))
    hazard_inv = types.cdf(r) / types.pdf(r)  # G/g
    times = jnp.linspace(0.0, 1.0, n_times, dtype=dtype) * horizon
    with jax.numpy_dtype_promotion("standard"):  # a law's parameters may be wider than the types
        f = resolution.density(times).astype(dtype)
    value, weighted = value_table(r, times, f)
    virtual = value - hazard_inv[:, None] * weighted  # int_0^T rho_r f dt / ... per unit g
    # The DP maximises the discrete problem's revenue exactly: with P_K = v(r_K, T_K) and binding
    # local downward IC, sum_k m_k P_k = sum_k [M_k v(r_k, T_k) - M_{k-1} v(r_{k-1}, T_k)]
    # (M_k = m_1 + ... + m_k), so those are the discrete virtual values. The continuous
    # m_k (v - G/g int t e^{-rt} f) tends to them as cells shrink, but at few types on a
    # non-regular law it left the DP 7.7% short of the discretisation's optimum. Each is integrated
    # from its own integrand e^{-r_k t} f (m_k - M_{k-1} expm1((r_k - r_{k-1}) t)), not as a
    # difference of two values of size 1: in float32 that difference's rounding moved caps by 0.3.
    below = jnp.cumsum(mass)
    prev = jnp.concatenate([jnp.zeros((1,), dtype), below[:-1]])
    step = jnp.concatenate([jnp.zeros((1,), dtype), jnp.diff(r)])
    discount = jnp.exp(-r[:, None] * times[None, :]) * f[None, :]
    weight = mass[:, None] - prev[:, None] * jnp.expm1(step[:, None] * times[None, :])
    discrete = _cumtrapz(discount * weight, times[1] - times[0])
    idx = optimal_caps(discrete)
    rows = jnp.arange(n_types)
    v_own = value[rows, idx]
    v_next = value[rows[:-1], idx[1:]]  # v(r_k, T_{k+1})
    steps = v_own[:-1] - v_next
    tail = jnp.cumsum(steps[::-1])[::-1]
    payments = v_own[-1] + jnp.concatenate([tail, jnp.zeros((1,), tail.dtype)])
    caps = times[idx]
    pooled = jnp.concatenate([idx[:-1] == idx[1:], jnp.zeros((1,), bool)]) | jnp.concatenate(
        [jnp.zeros((1,), bool), idx[1:] == idx[:-1]]
    )
    return Menu(
        types=r,
        mass=mass,
        caps=caps,
        cap_index=idx,
        payments=payments,
        values=v_own,
        utilities=v_own - payments,
        marginal_price=jnp.exp(-r * caps) * f[idx],
        pooled=pooled,
        revenue=jnp.sum(mass * payments),
        welfare=jnp.sum(mass * v_own),
        virtual_surplus=jnp.sum(mass * virtual[rows, idx]),
        times=times,
        density=f,
    )


def _exact_values(rp, caps, resolution: ResolutionLaw, n_nodes: int, n_panels: int = 64):
    """v(r, T) = int_0^T e^{-r t} f(t) dt for every audit type and cap, by composite Gauss-Legendre
    quadrature of the law's own density: `n_nodes` nodes on each panel between consecutive caps and
    `n_panels` even breakpoints up to the largest cap. Independent of the solver's time grid."""
    top = jnp.max(caps)
    grid = top * jnp.linspace(0.0, 1.0, n_panels + 1, dtype=caps.dtype)
    edges = jnp.sort(jnp.concatenate([grid, caps]))
    a, b = edges[:-1], edges[1:]
    x, w = (jnp.asarray(v, caps.dtype) for v in np.polynomial.legendre.leggauss(n_nodes))
    t = a[:, None] + 0.5 * (b - a)[:, None] * (x[None, :] + 1.0)  # (panels, nodes)
    with jax.numpy_dtype_promotion("standard"):  # a law's parameters may be wider than the menu
        f = resolution.density(t).astype(caps.dtype)
    fw = f * 0.5 * (b - a)[:, None] * w[None, :]
    panels = lax.map(lambda r: jnp.sum(jnp.exp(-r * t) * fw, axis=1), rp)  # (n_audit, panels)
    cumulative = jnp.concatenate([jnp.zeros_like(panels[:, :1]), jnp.cumsum(panels, axis=1)], axis=1)
    return cumulative[:, jnp.searchsorted(edges, caps, side="left")]


class Audit(eqx.Module):
    """What [`audit`][] found: the largest incentive-compatibility and individual-rationality
    violations (>= 0, in units of value). (Unpacking as the old `(ic, ir)` tuple still works, with
    a DeprecationWarning.)"""

    ic_violation: Float[Array, ""]
    ir_violation: Float[Array, ""]


class PostedPrice(eqx.Module):
    """The best single posted price of [`posted_price_constant_delay`][] and its revenue."""

    price: Float[Array, ""]
    revenue: Float[Array, ""]


@eqx.filter_jit
def audit(
    menu: Menu,
    types: TypeDistribution,
    resolution: ResolutionLaw | None = None,
    *,
    n_audit: int = 1500,
    n_nodes: int = 16,
) -> Audit:
    """Largest IC and IR violations of `menu` over a fine grid of types and every menu item.

    Each audit type r' takes the item of its cell (r_{k-1}, r_k]; the IC violation is
    max_{r'} [max_k (v(r', T_k) - P_k) - (v(r', own) - P(own))], the IR violation
    max_{r'} -(v(r', own) - P(own)), both >= 0 and in the units of v (probability-discounted
    value). The null item (no cap, no payment) is on the menu too.

    With `resolution` (the law the menu was solved for) the values v(r', T) are computed
    independently of the solver: composite Gauss-Legendre quadrature (`n_nodes` per panel, panels
    between consecutive caps and 64 even ones) of the law's own density on [0, T], so an audit
    finds what the solver's time grid and trapezoids hide. Without it the values
    come from the solver's own grid (`menu.times`, `menu.density`, trapezoids): a consistency check.

    **Returns:** an [`Audit`][] (`ic_violation`, `ir_violation`).
    """
    lo, hi = types.support()
    rp = lo + (hi - lo) * (jnp.arange(n_audit, dtype=menu.types.dtype) + 0.5) / n_audit
    if resolution is None:
        value, _ = value_table(rp, menu.times, menu.density)
        value = value[:, menu.cap_index]
    else:
        value = _exact_values(rp, menu.caps, resolution, n_nodes)
    items = value - menu.payments[None, :]  # (n_audit, K)
    cell = jnp.clip(jnp.searchsorted(menu.types, rp, side="left"), 0, menu.types.shape[0] - 1)
    own = jnp.take_along_axis(items, cell[:, None], axis=1)[:, 0]
    best = jnp.maximum(jnp.max(items, axis=1), 0.0)
    return Audit(ic_violation=jnp.max(best - own), ir_violation=jnp.maximum(jnp.max(-own), 0.0))


def posted_price_constant_delay(
    types: TypeDistribution, delay: float, *, n_prices: int = 20001
) -> PostedPrice:
    """The best single posted price when every question resolves after exactly `delay`.

    A type r buys iff e^{-r delay} >= p, so revenue(p) = p G(-ln(p) / delay), maximised over a
    grid of prices in [e^{-hi delay}, e^{-lo delay}]. **Returns:** a [`PostedPrice`][].
    """
    delay = in_range("delay", delay, 1e-300, math.inf, "must be finite and > 0", finite=True)
    lo, hi = types.support()
    p = jnp.exp(-delay * (lo + (hi - lo) * jnp.linspace(0.0, 1.0, n_prices, dtype=lo.dtype)))
    revenue = p * types.cdf(-jnp.log(p) / delay)
    k = jnp.argmax(revenue)
    return PostedPrice(price=p[k], revenue=revenue[k])
