"""lmaas_jax: GPU-accelerated, differentiable solvers for large-model-as-a-service pricing games."""

from . import datasets as datasets
from ._classic_imp import classic_imp as classic_imp
from ._config import ConfigError as ConfigError, load_config as load_config
from ._equilibrium import (
    PinPattern as PinPattern,
    equilibrium_prices as equilibrium_prices,
    relaxed_equilibrium as relaxed_equilibrium,
    relaxed_equilibrium_prices as relaxed_equilibrium_prices,
)
from ._generator import (
    STRESS_KINDS as STRESS_KINDS,
    family_models as family_models,
    random_market as random_market,
    stress_market as stress_market,
)
from ._grid import grid_search as grid_search
from ._imp import GradientIMP as GradientIMP, imp as imp
from ._market import (
    AnyMarket as AnyMarket,
    CustomerLimits as CustomerLimits,
    Customers as Customers,
    Market as Market,
    ModelPrices as ModelPrices,
    Models as Models,
    ValueMarket as ValueMarket,
    pad_scenarios as pad_scenarios,
    stack_markets as stack_markets,
    unstack_market as unstack_market,
)
from ._planning import (
    PlanOutcome as PlanOutcome,
    nominal_market as nominal_market,
    plan as plan,
)
from ._profit import relaxed_seller_profit as relaxed_seller_profit, seller_profit as seller_profit
from ._relaxed_rsr import RelaxedResponse as RelaxedResponse, relaxed_rsr as relaxed_rsr
from ._rsr import (
    RobustTerms as RobustTerms,
    RSRResponse as RSRResponse,
    robust_terms as robust_terms,
    rsr as rsr,
    worst_case_profit as worst_case_profit,
)
from ._sensitivity import Sensitivities as Sensitivities, sensitivities as sensitivities
from ._solution import PricingSolution as PricingSolution, PricingTrace as PricingTrace

__version__ = "0.1.0"


def __getattr__(name):
    # `lmaas_jax.reference` needs scipy (HiGHS); load it on first use so the JAX core stays free of it.
    # `sweep`, `SweepGrid` and `sweep_market` live with pandas/pyarrow; load them on first use too.
    import importlib

    if name == "reference":
        return importlib.import_module(".reference", __name__)
    if name in ("sweep", "SweepGrid", "sweep_market"):
        return getattr(importlib.import_module("._sweep", __name__), name)
    raise AttributeError(f"module 'lmaas_jax' has no attribute {name!r}")
