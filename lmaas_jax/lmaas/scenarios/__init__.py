"""Scenarios: what the seller offers and what each customer faces (the data of the LMaaS game).

[`lmaas_jax.Market`][] holds the models, the customers and each customer's scenario set;
[`lmaas_jax.ValueMarket`][] holds a value table instead (per customer and model a worst-case value
rate and usable hours), the form every scenario market reduces to in [`lmaas_jax.lmaas.robust`][].
"""

from ._generator import (
    STRESS_KINDS as STRESS_KINDS,
    family_models as family_models,
    random_market as random_market,
    stress_market as stress_market,
)
from ._market import (
    AnyMarket as AnyMarket,
    CustomerLimits as CustomerLimits,
    Customers as Customers,
    Market as Market,
    ModelPrices as ModelPrices,
    Models as Models,
    ModelUsers as ModelUsers,
    ValueMarket as ValueMarket,
    pad_scenarios as pad_scenarios,
    stack_markets as stack_markets,
    unstack_market as unstack_market,
)
