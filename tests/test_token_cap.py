"""Token caps: the spec's check instance, closed forms, ironing against brute force, gradients."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmaas_jax import token_cap as tc

TYPES = tc.Uniform(0.5, 2.0)


# Tolerances: float64 keeps 1e-12 where the arithmetic is exact on the grid; float32 1e-6 (its
# rounding of values of size 1 summed over a few thousand grid steps).
EXACT = {"float32": 1e-6, "float64": 1e-12}


@pytest.fixture(scope="module", params=["float32", "float64"])
def menu(request):
    return tc.solve(tc.Uniform(0.5, 2.0, dtype=request.param), tc.Exponential(1.0, dtype=request.param))


def _types(menu):
    return tc.Uniform(0.5, 2.0, dtype=menu.types.dtype)


def _exact(menu):
    return EXACT[str(menu.types.dtype)]


def test_check_instance_of_the_spec(menu):
    assert abs(float(menu.revenue) - 0.342) <= 0.005 * 0.342
    assert abs(float(menu.revenue) - float(menu.virtual_surplus)) <= 0.005 * float(menu.virtual_surplus)
    types = _types(menu)
    ic, ir = _audit(menu, types)  # on the solver's own grid
    assert float(ic) < 1e-4 and float(ir) < _exact(menu)
    ic, ir = _audit(menu, types, tc.Exponential(1.0, dtype=menu.types.dtype))  # independent values
    assert float(ic) < 1e-4 and float(ir) < 1e-6
    assert abs(float(menu.utilities[-1])) < _exact(menu)  # the most impatient type keeps nothing
    assert np.all(np.diff(np.asarray(menu.utilities)) <= _exact(menu))  # patient users keep more


def test_caps_follow_the_closed_form(menu):
    r, caps = np.asarray(menu.types), np.asarray(menu.caps)
    # The discrete problem's first-order condition M_k e^{-r_k T} = M_{k-1} e^{-r_{k-1} T}, with
    # M_k = k / K for U[0.5, 2]: T_k = ln(k / (k - 1)) / (r_k - r_{k-1}) (k = 1 gets no cap); it
    # tends to the continuous g / G = 1 / (r - 0.5) as cells shrink.
    k = np.arange(1, len(r) + 1)
    with np.errstate(divide="ignore"):
        expected = np.log(k / (k - 1.0)) / (1.5 / len(r))
    continuous = 1.0 / (r - 0.5)
    assert np.all(np.abs(expected - continuous)[1:] <= (1.5 / len(r)) * continuous[1:] ** 2)
    dt = float(menu.times[1] - menu.times[0])
    # Beyond a cap of ~8 the chance that the question is still open (e^{-8}) makes longer caps
    # worth nothing either way, so the grid optimum there is flat; compare where it is not. In
    # float32 the objective is flat to its rounding already beyond 3 (up to ten grid steps off).
    inside = expected < (6.0 if menu.types.dtype == np.float64 else 3.0)
    np.testing.assert_array_less(np.abs(caps[inside] - expected[inside]), dt + 1e-5)
    assert np.all(np.diff(caps) <= 0)


def test_value_table_matches_the_exponential_closed_form():
    r = jnp.asarray([0.5, 1.0, 2.0])
    t = jnp.linspace(0.0, 30.0, 30001)
    v, _ = tc.value_table(r, t, tc.Exponential(1.0).density(t))
    closed = 1.0 / (1.0 + r[:, None]) * (1.0 - jnp.exp(-(1.0 + r[:, None]) * t[None, :]))
    np.testing.assert_allclose(v, closed, atol=1e-6)


def test_posted_price_benchmark():
    posted = tc.posted_price_constant_delay(TYPES, 1.0)
    price, revenue = posted.price, posted.revenue
    # revenue(p) = p (-ln p - 0.5) / 1.5, maximal at p = e^{-1.5}: e^{-1.5} / 1.5 = 0.1487.
    np.testing.assert_allclose(float(price), np.exp(-1.5), rtol=1e-3)
    np.testing.assert_allclose(float(revenue), np.exp(-1.5) / 1.5, rtol=1e-6)


def test_marginal_price_is_decreasing_and_is_the_schedule_slope(menu):
    caps, pay, mp = (np.asarray(x) for x in (menu.caps, menu.payments, menu.marginal_price))
    keep = caps < 0.5 * float(menu.times[-1])  # below the "no cap" end of the grid
    if menu.types.dtype == np.float32:  # where float32 can tell caps apart (see the closed form)
        keep &= caps < 3.0
    # Types pooled on one grid cap pay the same; their e^{-rT} f(T) differ a little: average them.
    c = np.unique(caps[keep])
    p = np.asarray([pay[keep][caps[keep] == x][0] for x in c])
    m = np.asarray([mp[keep][caps[keep] == x].mean() for x in c])
    assert np.all(np.diff(m) < 0)  # volume discounts
    slope = np.diff(p) / np.diff(c)
    np.testing.assert_allclose(slope, 0.5 * (m[1:] + m[:-1]), rtol=2e-2, atol=1e-9)


def test_dynamic_programme_equals_brute_force():
    obj = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    best = max(
        (sum(float(obj[k, j]) for k, j in enumerate(ls)), ls)
        for ls in itertools.product(range(5), repeat=4)
        if all(a >= b for a, b in itertools.pairwise(ls))
    )
    idx = tc.optimal_caps(obj)
    assert np.all(np.diff(np.asarray(idx)) <= 0)
    np.testing.assert_allclose(float(jnp.sum(obj[jnp.arange(4), idx])), best[0], rtol=1e-12)


def test_non_regular_distribution_is_ironed_and_incentive_compatible():
    types = tc.GaussianMixture(0.5, 2.0, centres=[0.8, 1.7], widths=[0.05, 0.05], weights=[1.0, 1.0])
    r = jnp.linspace(0.55, 1.95, 500)
    pointwise = types.pdf(r) / types.cdf(r)
    assert np.any(np.diff(np.asarray(pointwise)) > 1e-3)  # g/G rises somewhere: not regular
    menu = tc.solve(types, tc.Exponential(1.0), n_types=300, n_times=3000)
    caps = np.asarray(menu.caps)
    assert np.all(np.diff(caps) <= 0)
    ic, ir = _audit(menu, types, tc.Exponential(1.0))
    assert float(ic) < 1e-4 and float(ir) < 2e-5  # the 3000-point time grid's trapezoid error
    # Ironing pools a range of types around the gap between the bumps on one cap.
    between = (np.asarray(menu.types) > 1.1) & (np.asarray(menu.types) < 1.4)
    assert len(np.unique(caps[between])) == 1
    # And the ironed menu beats the best menu that follows g/G where it can (monotonised pointwise).
    assert float(menu.revenue) >= float(menu.virtual_surplus) * 0.99


def test_samples_and_user_functions_give_the_same_menu_as_uniform(menu):
    samples = jax.random.uniform(jax.random.PRNGKey(0), (4000,), minval=0.5, maxval=2.0)
    kde = tc.GaussianMixture.from_samples(samples, lo=0.5, hi=2.0)
    assert abs(float(tc.solve(kde, tc.Exponential(1.0)).revenue) - float(menu.revenue)) < 0.02
    u, dtype = _types(menu), menu.types.dtype
    own = tc.FromFunctions(0.5, 2.0, lambda r: u.cdf(r), lambda r: u.pdf(r), dtype=dtype)
    mine = tc.solve(own, tc.Exponential(1.0, dtype=dtype))
    assert mine.revenue.dtype == dtype
    np.testing.assert_allclose(mine.revenue, menu.revenue, rtol=_exact(menu))


def test_revenue_gradients_match_finite_differences():
    def revenue(hi, rate):
        law = tc.Exponential(rate)
        return tc.solve(tc.Uniform(0.5, hi), law, horizon=40.0, n_types=300, n_times=2000).revenue

    grad = jax.grad(revenue, argnums=(0, 1))(2.0, 1.0)
    h = 1e-3
    fd_hi = (revenue(2.0 + h, 1.0) - revenue(2.0 - h, 1.0)) / (2 * h)
    fd_rate = (revenue(2.0, 1.0 + h) - revenue(2.0, 1.0 - h)) / (2 * h)
    np.testing.assert_allclose(float(grad[0]), float(fd_hi), rtol=2e-2)
    np.testing.assert_allclose(float(grad[1]), float(fd_rate), rtol=2e-2)
    assert float(grad[1]) > 0  # faster resolution is worth more


def test_diffusion_law_and_the_aligned_models_advantage(menu):
    law = tc.Diffusion(drift=1.0, level=1.0)
    t = jnp.linspace(0.0, law.horizon(), 200001)
    mass = jnp.sum(0.5 * (law.density(t[1:]) + law.density(t[:-1])) * (t[1] - t[0]))
    np.testing.assert_allclose(float(mass), 1.0, atol=1e-4)
    diffusion = tc.solve(TYPES, law, n_types=300, n_times=3000)
    # Same mean resolution time (1); the exponential law is more dispersed, hence worth more.
    assert float(diffusion.revenue) < float(menu.revenue)
    assert float(tc.audit(diffusion, TYPES, law).ic_violation) < 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_audit_values_are_exact(dtype):
    # f(t) = e^{-t}: v(r, T) = (1 - e^{-(r + 1) T}) / (r + 1) in closed form.
    from lmaas_jax.token_cap._solve import _exact_values

    r = jnp.asarray([0.5, 1.2, 2.0], dtype)
    caps = jnp.asarray([0.1, 1.0, 3.0, 12.0], dtype)
    got = _exact_values(r, caps, tc.Exponential(jnp.asarray(1.0, dtype)), 16)
    want = (1 - np.exp(-(np.asarray(r)[:, None] + 1) * np.asarray(caps)[None, :])) / (
        np.asarray(r)[:, None] + 1
    )
    assert got.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12 if dtype == "float64" else 2e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: tc.Uniform(2.0, 1.0), "lo < hi"),
        (lambda: tc.Exponential(-1.0), "rate"),
        (lambda: tc.Diffusion(0.0), "drift"),
        (lambda: tc.solve(TYPES, tc.Exponential(1.0), n_types=1), "n_types"),
    ],
)
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _lottery_lp_revenue(menu):
    """The discrete problem's optimum over randomised menus, by an LP (SciPy's HiGHS): each type
    k = 1..K (mass m_k) gets a lottery x_k over the grid caps and pays P_k; IC between every pair
    of types and IR for each, values v(r_k, t_l) from the same time grid."""
    from scipy.optimize import linprog

    v, _ = tc.value_table(
        jnp.asarray(menu.types, jnp.float64),
        jnp.asarray(menu.times, jnp.float64),
        jnp.asarray(menu.density, jnp.float64),
    )
    v, m = np.asarray(v), np.asarray(menu.mass, np.float64)
    k_types, n_caps = v.shape
    n = k_types * n_caps + k_types  # x (K, L) flattened, then P (K,)

    def row(k, x_of, sign_p):
        a = np.zeros(n)
        a[x_of * n_caps : (x_of + 1) * n_caps] = v[k]
        a[k_types * n_caps + x_of] = sign_p
        return a

    a_ub, b_ub = [], []
    for k in range(k_types):
        a_ub.append(-row(k, k, -1.0))  # IR: v_k . x_k - P_k >= 0
        b_ub.append(0.0)
        for j in range(k_types):
            if j != k:  # IC: v_k . x_j - P_j <= v_k . x_k - P_k
                a_ub.append(row(k, j, -1.0) - row(k, k, -1.0))
                b_ub.append(0.0)
    a_eq = np.zeros((k_types, n))
    for k in range(k_types):
        a_eq[k, k * n_caps : (k + 1) * n_caps] = 1.0
    c = np.zeros(n)
    c[k_types * n_caps :] = -m
    bounds = [(0, 1)] * (k_types * n_caps) + [(None, None)] * k_types
    out = linprog(c, A_ub=np.asarray(a_ub), b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(k_types), bounds=bounds)
    assert out.status == 0, out.message
    return -out.fun


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_types", [3, 5, 8])
def test_few_types_reach_the_optimum_of_their_discretisation(dtype, n_types):
    # A non-regular law at few types: the DP on the continuous G/g was 7.7% below this optimum.
    types = tc.GaussianMixture(
        0.5, 2.0, centres=[0.8, 1.7], widths=[0.05, 0.05], weights=[1.0, 1.0], dtype=dtype
    )
    law = tc.Exponential(1.0, dtype=dtype)
    menu = tc.solve(types, law, n_types=n_types, n_times=400)
    assert menu.revenue.dtype == jnp.dtype(dtype) and menu.caps.dtype == jnp.dtype(dtype)
    lp = _lottery_lp_revenue(menu)
    # HiGHS's LP tolerances are 1e-7
    np.testing.assert_allclose(float(menu.revenue), lp, rtol={"float32": 1e-5, "float64": 1e-7}[dtype])
    ic, ir = _audit(menu, types)  # exactly IC and IR on its own grid
    assert float(ic) <= {"float32": 1e-6, "float64": 1e-12}[dtype] and float(ir) <= 1e-6


def _audit(menu, types, law=None):
    a = tc.audit(menu, types, law)
    return a.ic_violation, a.ir_violation


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_are_named(dtype):
    types = tc.Uniform(0.5, 2.0, dtype=dtype)
    menu = tc.solve(types, tc.Exponential(1.0, dtype=dtype))
    assert menu.revenue.dtype == jnp.dtype(dtype)
    a = tc.audit(menu, types)
    assert a.ic_violation.shape == a.ir_violation.shape == ()
    posted = tc.posted_price_constant_delay(types, 1.0)
    assert posted.price.dtype == jnp.dtype(dtype)
    price = posted.price
    assert float(posted.revenue) == pytest.approx(float(price) * float(types.cdf(-jnp.log(price))))
