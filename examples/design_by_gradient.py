"""Market design through the equilibrium: how accurate should the seller make its newest model?

The seller's newest model (the last one) can be built at any accuracy a in [0.55, 0.99], at a serving
cost that grows with it: o(a) = o0 (1 + 2 ((a - 0.55) / 0.44)^2).
The seller re-prices every model at the equilibrium for each choice, so the design objective is
the equilibrium profit Pi*(a), differentiated through `lj.imp` (the implicit derivative of the
pinned prices; see the README, "Differentiating through the equilibrium"). Gradient ascent on a
from three starts is checked against a grid of the same choice.

python examples/design_by_gradient.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import lmaas_jax as lj

jax.config.update("jax_enable_x64", True)
base = lj.random_market(jax.random.PRNGKey(11), n_models=2, n_customers=40, gamma=1, dtype="float64")
key = jax.random.PRNGKey(0)
solver = lj.GradientIMP(lj.Ascent(steps=100, restarts=16))
LO, HI = 0.55, 0.99  # the accuracies the seller can build
o0 = float(base.models.serving_cost[-1])


def designed(accuracy):
    """The market with the newest model at `accuracy`, its serving cost rising quadratically."""
    cost = o0 * (1.0 + 2.0 * ((accuracy - LO) / (HI - LO)) ** 2)
    models = eqx.tree_at(
        lambda m: (m.accuracy, m.serving_cost),
        base.models,
        (base.models.accuracy.at[-1].set(accuracy), base.models.serving_cost.at[-1].set(cost)),
    )
    return eqx.tree_at(lambda m: m.models, base, models)


def equilibrium_profit(accuracy):
    return lj.imp(designed(accuracy), solver, key=key).profit


value_and_grad = jax.jit(jax.value_and_grad(equilibrium_profit))


def ascend(a, steps=30, step=0.05):
    """Gradient-sign ascent on the accuracy, the step halved whenever it does not pay (the
    equilibrium profit is piecewise smooth: it jumps where a customer changes its choice)."""
    v, g = value_and_grad(jnp.asarray(a))
    for _ in range(steps):
        trial = float(np.clip(a + step * np.sign(float(g)), LO, HI))
        vt, gt = value_and_grad(jnp.asarray(trial))
        if float(vt) > float(v):
            a, v, g = trial, vt, gt
        else:
            step /= 2
    return a, float(v)


if __name__ == "__main__":
    grid = np.linspace(LO, HI, 45)
    profits = np.asarray(jax.jit(jax.vmap(equilibrium_profit))(jnp.asarray(grid)))
    g_best = int(np.argmax(profits))
    print(f"grid profits from {profits.min():.2f} to {profits.max():.2f} $")
    print(
        f"grid of {grid.size}: best accuracy {grid[g_best]:.4f}, equilibrium profit {profits[g_best]:.2f} $"
    )
    results = [ascend(a0) for a0 in (0.6, 0.77, 0.95)]
    a_best, p_best = max(results, key=lambda r: r[1])
    for (a, p), a0 in zip(results, (0.6, 0.77, 0.95), strict=True):
        print(f"gradient ascent from {a0:.2f}: accuracy {a:.4f}, equilibrium profit {p:.2f} $")
    print(f"best by gradient / best on the grid: {p_best / profits[g_best]:.5f}")
    sol = lj.imp(designed(jnp.asarray(a_best)), solver, key=key)
    print(
        "pins stable at the design:", bool(sol.pins.stable), " prices:", np.round(np.asarray(sol.prices), 3)
    )
