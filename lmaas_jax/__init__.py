"""lmaas_jax: GPU-accelerated, differentiable solvers for large-model-as-a-service pricing games.

The LMaaS Stackelberg pricing game, the core, is this flat namespace (`lmaas_jax.imp`,
`lmaas_jax.Market`, ...), built in three layers inside `lmaas_jax/lmaas/`: scenarios -> robust terms
-> pricing. Beside it: the exact reference solvers in [`lmaas_jax.reference`][] (they need scipy's
HiGHS, loaded on first use), markets from data in [`lmaas_jax.datasets`][], the three other games
[`lmaas_jax.ttc`][], [`lmaas_jax.token_auction`][] and [`lmaas_jax.token_cap`][], and on top the
product layer: sweeps (`lmaas_jax.sweep`), configuration files (`lmaas_jax.load_config`), the
`lmaas-jax` command and the reports of [`lmaas_jax.experiments`][]. Every name has this one public
path; the modules it comes from are private.
"""

from . import datasets as datasets
from ._version import __version__ as __version__  # noqa: E402
from .lmaas.competition._compete import Competition as Competition, compete as compete
from .lmaas.competition._owners import (
    best_response_market as best_response_market,
    seller_profits as seller_profits,
)
from .lmaas.competition._relaxed import (
    RelaxedCompetition as RelaxedCompetition,
    relaxed_compete as relaxed_compete,
)
from .lmaas.pricing._ascent import Ascent as Ascent
from .lmaas.pricing._classic_imp import classic_imp as classic_imp
from .lmaas.pricing._equilibrium import (
    PinPattern as PinPattern,
    equilibrium_prices as equilibrium_prices,
    relaxed_equilibrium as relaxed_equilibrium,
    relaxed_equilibrium_prices as relaxed_equilibrium_prices,
)
from .lmaas.pricing._grid import grid_search as grid_search
from .lmaas.pricing._imp import GradientIMP as GradientIMP, imp as imp
from .lmaas.pricing._lookahead import LookAhead as LookAhead
from .lmaas.pricing._moves import Moves as Moves
from .lmaas.pricing._polish import Polish as Polish
from .lmaas.pricing._profit import (
    relaxed_seller_profit as relaxed_seller_profit,
    seller_profit as seller_profit,
)
from .lmaas.pricing._sensitivity import Sensitivities as Sensitivities, sensitivities as sensitivities
from .lmaas.pricing._solution import PricingSolution as PricingSolution, PricingTrace as PricingTrace
from .lmaas.robust._planning import PlanOutcome as PlanOutcome, nominal_market as nominal_market, plan as plan
from .lmaas.robust._relaxed_rsr import RelaxedResponse as RelaxedResponse, relaxed_rsr as relaxed_rsr
from .lmaas.robust._rsr import (
    RSRResponse as RSRResponse,
    rsr as rsr,
    value_market as value_market,
    worst_case_profit as worst_case_profit,
)
from .lmaas.scenarios._generator import (
    STRESS_KINDS as STRESS_KINDS,
    family_models as family_models,
    random_market as random_market,
    stress_market as stress_market,
    unit_demand_market as unit_demand_market,
)
from .lmaas.scenarios._market import (
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
from .product._config import ConfigError as ConfigError, load_config as load_config


def __getattr__(name):
    # `lmaas_jax.reference` needs scipy (HiGHS); load it on first use so the JAX core stays free of it.
    # `sweep`, `SweepGrid` and `sweep_market` live with pandas/pyarrow; load them on first use too.
    import importlib

    if name == "reference":
        return importlib.import_module(".reference", __name__)
    if name in ("sweep", "SweepGrid", "sweep_market"):
        return getattr(importlib.import_module(".product._sweep", __name__), name)
    raise AttributeError(f"module 'lmaas_jax' has no attribute {name!r}")
