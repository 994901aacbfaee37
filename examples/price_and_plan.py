"""Use lmaas_jax directly: price a market, compare customers' planning rules, run a small sweep.

python examples/price_and_plan.py
"""

import jax
import jax.numpy as jnp

import lmaas_jax as lj

# One seeded market and its equilibrium under gradient IMP.
market = lj.random_market(jax.random.PRNGKey(0), n_models=3, n_customers=80, gamma=2, deviation=0.3)
solution = lj.imp(market, key=jax.random.PRNGKey(1))
print("prices $/h:", solution.prices, " seller profit $:", float(solution.profit))

# What robust planning is worth to the customers at those prices.
for rule in ("rsr", "nominal", "most_accurate", "cheapest"):
    outcome = lj.plan(market, solution.prices, rule)
    print(
        f"{rule:14s} customers' worst-case profit {float(jnp.sum(outcome.worst_profit)):10.0f} $"
        f"   scenario mean {float(jnp.sum(outcome.mean_profit)):10.0f} $"
    )

# The seller's marginal revenue at the equilibrium, through the relaxed RSR (temperature 1 $).
grad = jax.grad(lj.relaxed_seller_profit, argnums=1)(market, solution.prices, 1.0)
print("d relaxed profit / d price:", grad)

# A small sweep, in memory: the equilibrium versus Gamma (4 seeds each).
table = lj.sweep(lj.SweepGrid(n_models=3, n_customers=80, gamma=[0, 1, 2, 3], deviation=0.3, seeds=4))
print(table.groupby("gamma")[["profit", "share_none", "customer_worst_rsr"]].mean())
