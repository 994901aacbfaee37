"""The relaxed (smooth) RSR: customers mix over their options by a softmax of robust values."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..._checks import check_prices, checked, in_range
from ..scenarios._market import AnyMarket, ValueMarket, check_market
from ._rsr import Options, as_prices, rental_options, value_market, with_opt_out


class RelaxedResponse(eqx.Module):
    """The customers' smooth responses at one price vector and temperature.

    Options are indexed as in [`lmaas_jax.RSRResponse`][]: 0 = no rental, j = model j at its
    optimal duration tau_ij.

    **Fields:**

    - `probabilities`: shape `(N, M + 1)`, softmax(value / temperature) over the options.
    - `option_values`: shape `(N, M + 1)`, each option's robust value ($).
    - `option_durations`: shape `(N, M + 1)`, each option's duration (h).
    - `expected_duration`: shape `(N,)`, E_p[tau] (h).
    - `expected_margin`: shape `(N,)`, the seller's E_p[(beta_j - o_j) tau] ($).
    """

    probabilities: Float[Array, "customers options"]
    option_values: Float[Array, "customers options"]
    option_durations: Float[Array, "customers options"]
    expected_duration: Float[Array, " customers"]
    expected_margin: Float[Array, " customers"]


def relaxed_respond(market: ValueMarket, prices: Float[Array, " models"], temperature) -> RelaxedResponse:
    opts: Options = rental_options(market, prices)
    value = with_opt_out(opts.value, 0.0)
    duration = with_opt_out(opts.duration, 0.0)
    margin = with_opt_out(opts.seller_margin, 0.0)
    available = with_opt_out(opts.available, True)
    # A model a customer can never profit from (tau_ij = 0 at every price) is no option at all.
    logits = jnp.where(available, value / temperature, -jnp.inf)
    p = jax.nn.softmax(logits, axis=1)
    return RelaxedResponse(
        probabilities=p,
        option_values=value,
        option_durations=duration,
        expected_duration=jnp.sum(p * duration, axis=1),
        expected_margin=jnp.sum(p * margin, axis=1),
    )


def checked_temperature(temperature):
    """`temperature`, refused unless finite and > 0 (at 0 the relaxed responses are NaN, below it
    they are finite nonsense): in Python when concrete, by `equinox.error_if` when traced."""
    return in_range("temperature", temperature, 1e-30, math.inf, "must be finite and > 0", finite=True)


def check_relaxed(market, prices, temperature):
    """Python checks of a relaxed evaluation's concrete arguments (see `lmaas_jax._checks`)."""
    check_market(market)
    check_prices("prices", prices, market.n_models)
    checked_temperature(temperature)


@checked(check_relaxed)
def relaxed_rsr(
    market: AnyMarket, prices: Float[ArrayLike, " models"], temperature: Float[ArrayLike, ""]
) -> RelaxedResponse:
    """The customers' relaxed robust responses: a smooth stand-in for [`lmaas_jax.rsr`][].

    Each customer mixes over no rental and every model at its exact optimal duration tau_ij (the
    candidate from the exactness lemma in [`lmaas_jax.rsr`][]) with probabilities
    softmax(U / temperature), U the options' robust values. Everything is differentiable in the
    prices (and the market), and as temperature -> 0 the mixture concentrates on the exact robust
    optimum, so the seller's expected margin tends to the exact one away from ties.

    **Arguments:**

    - `market`: a [`lmaas_jax.Market`][] or [`lmaas_jax.ValueMarket`][].
    - `prices`: shape `(M,)`, $ per rented hour.
    - `temperature`: > 0, in $ (the scale of customers' robust profits at which they mix).

    **Returns:**

    A [`lmaas_jax.RelaxedResponse`][].
    """
    prices = as_prices(market, prices)
    temperature = checked_temperature(temperature)
    values = value_market(market)
    response = relaxed_respond(values, prices, temperature)
    if values.dense:
        return response

    def by_model(x):  # option lists -> (N, M + 1); a model that is no option has 0 everywhere
        return jnp.concatenate([x[:, :1], values.to_dense(x[:, 1:], market.n_models)], axis=1)

    return eqx.tree_at(
        lambda r: (r.probabilities, r.option_values, r.option_durations),
        response,
        tuple(map(by_model, (response.probabilities, response.option_values, response.option_durations))),
    )
