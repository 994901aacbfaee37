"""lmaas_jax: GPU-accelerated, differentiable solvers for large-model-as-a-service pricing games.

Four games as siblings: [`lmaas_jax.lmaas`][] (the LMaaS Stackelberg pricing game, the core:
scenarios -> robust terms -> pricing), [`lmaas_jax.ttc`][] (test-time compute),
[`lmaas_jax.token_auction`][] and [`lmaas_jax.token_cap`][]; markets from data in
[`lmaas_jax.datasets`][]; the product layer (config, sweeps, the `lmaas-jax` command, reports) in
`lmaas_jax/product/`, public through the names below and [`lmaas_jax.experiments`][]. The LMaaS
game's public names are re-exported here (`lmaas_jax.imp` is `lmaas_jax.lmaas.imp`).
"""

from . import datasets as datasets
from .lmaas import (
    STRESS_KINDS as STRESS_KINDS,
    AnyMarket as AnyMarket,
    CustomerLimits as CustomerLimits,
    Customers as Customers,
    GradientIMP as GradientIMP,
    Market as Market,
    ModelPrices as ModelPrices,
    Models as Models,
    ModelUsers as ModelUsers,
    PinPattern as PinPattern,
    PlanOutcome as PlanOutcome,
    PricingSolution as PricingSolution,
    PricingTrace as PricingTrace,
    RelaxedResponse as RelaxedResponse,
    RobustTerms as RobustTerms,
    RSRResponse as RSRResponse,
    Sensitivities as Sensitivities,
    ValueMarket as ValueMarket,
    classic_imp as classic_imp,
    equilibrium_prices as equilibrium_prices,
    family_models as family_models,
    grid_search as grid_search,
    imp as imp,
    nominal_market as nominal_market,
    pad_scenarios as pad_scenarios,
    plan as plan,
    random_market as random_market,
    relaxed_equilibrium as relaxed_equilibrium,
    relaxed_equilibrium_prices as relaxed_equilibrium_prices,
    relaxed_rsr as relaxed_rsr,
    relaxed_seller_profit as relaxed_seller_profit,
    robust_terms as robust_terms,
    rsr as rsr,
    seller_profit as seller_profit,
    sensitivities as sensitivities,
    stack_markets as stack_markets,
    stress_market as stress_market,
    unstack_market as unstack_market,
    worst_case_profit as worst_case_profit,
)
from .product._config import ConfigError as ConfigError, load_config as load_config

__version__ = "0.1.0"


def __getattr__(name):
    # `lmaas_jax.reference` needs scipy (HiGHS); load it on first use so the JAX core stays free of it.
    # `sweep`, `SweepGrid` and `sweep_market` live with pandas/pyarrow; load them on first use too.
    import importlib

    if name == "reference":
        return importlib.import_module(".reference", __name__)
    if name in ("sweep", "SweepGrid", "sweep_market"):
        return getattr(importlib.import_module(".product._sweep", __name__), name)
    raise AttributeError(f"module 'lmaas_jax' has no attribute {name!r}")
