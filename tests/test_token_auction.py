"""Token auctions: rules, monotonicity, payments against closed forms, Monte Carlo and brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmaas_jax import token_auction as ta

# float32 keeps about 1e-6 of a probability or payment; float64 1e-12
TOL = {"float32": 1e-6, "float64": 1e-12}


def _random_instance(key, n=4, vocab=6, dtype="float64"):
    k1, k2 = jax.random.split(key)
    dists = jax.random.dirichlet(k1, jnp.ones(vocab, dtype), (n,)).astype(dtype)
    bids = jax.random.uniform(k2, (n,), dtype, 0.1, 3.0)
    return dists, bids


def test_linear_example_of_the_spec(dtype):
    dists = jnp.asarray([[0.8, 0.2], [1.0, 0.0], [0.0, 1.0]], dtype)
    q = ta.linear(dists, jnp.asarray([1.0, 2.0, 2.0], dtype))
    np.testing.assert_allclose(q, [0.56, 0.44], rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_linear_is_monotone_on_random_instances(seed, dtype):
    dists, bids = _random_instance(jax.random.PRNGKey(seed), dtype=dtype)
    check = ta.is_monotone(ta.linear, dists, bids)
    ok, violation = check.monotone, check.violation
    assert bool(jnp.all(ok)), violation


def test_log_linear_fails_on_the_counterexample(dtype):
    dists = jnp.asarray([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]], dtype)
    lam = jnp.asarray([0.0, 0.25, 0.5, 0.75, 1.0], dtype)
    # Two agents, bids (lam, 1 - lam): the middle token goes up and comes back, away from p_i = 0.3.
    middle = jax.vmap(lambda x: ta.log_linear(dists, jnp.stack([x, 1.0 - x]))[1])(lam)
    np.testing.assert_allclose(middle, [0.30, 0.36, 0.38, 0.36, 0.30], atol=5e-3)
    check = ta.is_monotone(ta.log_linear, dists, jnp.asarray([1.0, 1.0], dtype))
    ok, violation = check.monotone, check.violation
    assert not bool(ok[0]) and float(violation[0]) > 0.05 and violation.dtype == jnp.dtype(dtype)
    assert bool(jnp.all(ta.is_monotone(ta.linear, dists, jnp.asarray([1.0, 1.0], dtype)).monotone))


def test_a_users_rule_is_accepted():
    def winner_takes_all(dists, bids):  # not monotone: jumps past nothing, but overshoots nobody
        return dists[jnp.argmax(bids)]

    dists = jnp.asarray([[0.6, 0.4], [0.2, 0.8]])
    ok = ta.is_monotone(winner_takes_all, dists, jnp.asarray([1.0, 2.0])).monotone
    assert ok.shape == (2,)
    pay = ta.expected_payment(winner_takes_all, dists, jnp.asarray([1.0, 2.0]))
    # A threshold rule's Myerson payment is the threshold: the other agent's bid.
    np.testing.assert_allclose(pay, [0.0, 1.0], atol=0.05)


def test_log_linear_masks_zero_probabilities(dtype):
    dists = jnp.asarray([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype)
    q = ta.log_linear(dists, jnp.asarray([1.0, 3.0], dtype))
    assert bool(jnp.all(jnp.isfinite(q))) and float(q[2]) == 0.0 and q.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(jnp.sum(q), 1.0, rtol=TOL[dtype])
    q0 = ta.log_linear(dists, jnp.asarray([0.0, 3.0], dtype))  # a silent agent's zeros do not count
    np.testing.assert_allclose(q0, dists[1], rtol=TOL[dtype])


def test_payments_lie_between_zero_and_the_bid(dtype):
    dists, bids = _random_instance(jax.random.PRNGKey(7), dtype=dtype)
    keys = jax.random.split(jax.random.PRNGKey(8), 2000)
    samples = jax.vmap(lambda k: ta.stable_sample_linear(k, dists, bids))(keys)
    pay = np.asarray(samples.payments)
    assert np.all(pay >= 0) and np.all(pay <= np.asarray(bids)[None, :] * (1 + TOL[dtype]))
    assert np.all((pay > 0).sum(axis=1) == 1)  # exactly the winner pays
    for rule in (ta.linear, ta.log_linear):
        m = np.asarray(ta.expected_payment(rule, dists, bids))
        assert np.all(m >= -1e-9) and np.all(m <= np.asarray(bids))
    for rule, divergence in ((ta.linear, "forward"), (ta.log_linear, "reverse")):
        clarke = ta.clarke_payments(rule, dists, bids, divergence)
        assert clarke.dtype == jnp.dtype(dtype) and np.all(np.asarray(clarke) >= -TOL[dtype])


def test_stable_sampler_draws_from_the_linear_aggregate_and_is_stable():
    dists, bids = _random_instance(jax.random.PRNGKey(3), n=3, vocab=4)
    keys = jax.random.split(jax.random.PRNGKey(4), 40000)
    tokens = jax.vmap(lambda k: ta.stable_sample_linear(k, dists, bids).token)(keys)
    freq = np.bincount(np.asarray(tokens), minlength=4) / len(keys)
    q = np.asarray(ta.linear(dists, bids))
    np.testing.assert_array_less(np.abs(freq - q), 4 * np.sqrt(q * (1 - q) / len(keys)) + 1e-12)
    # Stability: with the randomness fixed, raising b_0 changes the winner at most once, to agent 0.
    scales = jnp.linspace(0.01, 20.0, 400)

    @jax.jit
    def path(k):
        winners = jax.vmap(lambda b: ta.stable_sample_linear(k, dists, bids.at[0].set(b)).winner)(scales)
        return winners, ta.stable_sample_linear(k, dists, bids).critical_bids[0]

    winners, crit = (np.asarray(x) for x in jax.vmap(path)(keys[:50]))
    for w, c in zip(winners, crit, strict=True):
        changes = np.flatnonzero(np.diff(w))
        assert len(changes) <= 1 and (len(changes) == 0 or w[changes[0] + 1] == 0)
        # ... and it changes exactly at agent 0's critical bid.
        np.testing.assert_array_equal(w == 0, np.asarray(scales) > c)


def test_expected_payment_closed_form_matches_monte_carlo_and_myerson(dtype):
    dists, bids = _random_instance(jax.random.PRNGKey(11), n=3, dtype=dtype)
    n = 200_000
    keys = jax.random.split(jax.random.PRNGKey(12), n)
    pay = np.asarray(jax.vmap(lambda k: ta.stable_sample_linear(k, dists, bids).payments)(keys))
    mean, se = pay.mean(axis=0), pay.std(axis=0) / np.sqrt(n)
    closed = np.asarray(ta.expected_payment_linear(bids))
    np.testing.assert_array_less(np.abs(mean - closed), 3 * se)
    # The Myerson integral by quadrature: 1e-8 in float64, float32's rounding of its sum in float32
    np.testing.assert_allclose(
        ta.expected_payment(ta.linear, dists, bids), closed, rtol={"float32": 1e-5, "float64": 1e-8}[dtype]
    )


def test_truthful_bidding_is_optimal_for_a_linear_value(dtype):
    """An agent worth v per unit of mass gained, paying Myerson payments, does best bidding v."""
    dists, bids = _random_instance(jax.random.PRNGKey(21), n=3, dtype=dtype)
    grid = jnp.linspace(0.02, 6.0, 300, dtype=dtype)
    for v in (0.5, 1.7, 4.0):

        def utility(b, v=v):
            with_b = bids.at[0].set(b)
            return (
                v * ta.pull(ta.linear, dists, with_b, 0, b) - ta.expected_payment(ta.linear, dists, with_b)[0]
            )

        u = np.asarray(jax.vmap(utility)(grid))
        truthful = float(utility(jnp.asarray(v, dtype)))
        assert truthful >= u.max() - {"float32": 1e-5, "float64": 1e-9}[dtype]
        assert abs(float(grid[np.argmax(u)]) - v) <= float(grid[1] - grid[0])


def test_each_rule_maximises_its_kl_welfare(dtype):
    """The basis of the Clarke payments: linear max -sum b KL(p||q), log-linear max -sum b KL(q||p)."""
    dists, bids = _random_instance(jax.random.PRNGKey(5), n=3, vocab=5, dtype=dtype)
    for rule, welfare in (
        (ta.linear, lambda q: -jnp.sum(bids * jax.vmap(ta.kl, in_axes=(0, None))(dists, q))),
        (ta.log_linear, lambda q: -jnp.sum(bids * jax.vmap(ta.kl, in_axes=(None, 0))(q, dists))),
    ):
        q = rule(dists, bids)
        others = jax.random.dirichlet(jax.random.PRNGKey(6), 50.0 * q + 1e-3, (500,), dtype=dtype)
        assert float(welfare(q)) >= float(jnp.max(jax.vmap(welfare)(others))) - TOL[dtype]


def _bigram(table):
    table = jnp.asarray(table)
    return lambda tokens, length: table[tokens[length - 1]]


def test_generate_charges_winners_and_follows_the_bids():
    vocab = 5
    a = jnp.full((vocab, vocab), 0.02).at[:, 0].set(0.92)  # agent 0 loves token 0
    b = jnp.full((vocab, vocab), 0.02).at[:, 4].set(0.92)  # agent 1 loves token 4
    fns = [_bigram(a), _bigram(b)]
    bids = jnp.asarray([3.0, 1.0])
    out = ta.generate(fns, bids, jnp.asarray([2]), jax.random.PRNGKey(0), 4000)
    again = ta.generate(fns, bids, jnp.asarray([2]), jax.random.PRNGKey(0), 4000)
    np.testing.assert_array_equal(out.tokens, again.tokens)
    winners = np.asarray(out.winners)
    share = np.mean(winners == 0)
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 4000)
    np.testing.assert_allclose(out.total, np.asarray(out.payments).sum(axis=0), rtol=1e-12)
    per_token = np.asarray(out.total) / 4000
    np.testing.assert_allclose(per_token, ta.expected_payment_linear(bids), rtol=0.1)
    assert np.mean(np.asarray(out.tokens)[winners == 0] == 0) > 0.85
    other = ta.generate(fns, bids, jnp.asarray([2]), jax.random.PRNGKey(0), 50, rule=ta.log_linear)
    assert np.all(np.asarray(other.winners) == -1) and np.all(np.asarray(other.payments) >= 0)


@pytest.mark.parametrize(
    "dists, bids, match",
    [
        ([[0.5, 0.5], [0.5, 0.5]], [1.0, -1.0], "bids"),
        ([[0.5, 0.5], [0.5, 0.5]], [0.0, 0.0], "all be zero"),
        ([[0.5, 0.6], [0.5, 0.5]], [1.0, 1.0], "sum to 1"),
        ([[0.5, 0.5], [0.5, 0.5]], [1.0, 1.0, 1.0], "shape"),
        ([[1.5, -0.5], [0.5, 0.5]], [1.0, 1.0], "dists"),
    ],
)
def test_bad_input_is_named(dists, bids, match):
    with pytest.raises(ValueError, match=match):
        ta.linear(jnp.asarray(dists), jnp.asarray(bids))


def test_bigram_counts_and_round_trip():
    vocab = ("a", "b", "c")
    model = ta.Bigram.from_text("a b a b a c", vocab, smoothing=0.0)
    np.testing.assert_allclose(model.table[0], [0.0, 2 / 3, 1 / 3])  # after "a": b twice, c once
    np.testing.assert_allclose(model(model.encode("c a"), jnp.asarray(2)), model.table[0])
    assert model.decode(model.encode("b a c")) == "b a c"
    np.testing.assert_allclose(model.table[2], [1 / 3] * 3)  # "c" is never followed: uniform
