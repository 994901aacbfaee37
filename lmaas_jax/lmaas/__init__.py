"""The LMaaS Stackelberg pricing game (the core of `lmaas_jax`), in three layers:

- [`lmaas_jax.lmaas.scenarios`][]: the data: models, customers, scenario sets, value tables, and
  the seeded market generator;
- [`lmaas_jax.lmaas.robust`][]: robust terms: each customer's robust problem reduced to a value
  rate and usable hours per model, and the exact and relaxed best responses on them;
- [`lmaas_jax.lmaas.pricing`][]: the seller: exact profit, gradient IMP, classic IMP, grid search,
  the equilibrium's structure and derivatives.

The reference solvers (HiGHS MILP, C&CG, brute-force line search) sit apart in `reference/` (they
import scipy; nothing above does) and the experiments E1-E6 in `experiments/`. Every public name is
also at the top level: `lmaas_jax.imp` is `lmaas_jax.lmaas.imp`.
"""

from .pricing import (
    GradientIMP as GradientIMP,
    PinPattern as PinPattern,
    PricingSolution as PricingSolution,
    PricingTrace as PricingTrace,
    Sensitivities as Sensitivities,
    classic_imp as classic_imp,
    equilibrium_prices as equilibrium_prices,
    grid_search as grid_search,
    imp as imp,
    relaxed_equilibrium as relaxed_equilibrium,
    relaxed_equilibrium_prices as relaxed_equilibrium_prices,
    relaxed_seller_profit as relaxed_seller_profit,
    seller_profit as seller_profit,
    sensitivities as sensitivities,
)
from .robust import (
    PlanOutcome as PlanOutcome,
    RelaxedResponse as RelaxedResponse,
    RobustTerms as RobustTerms,
    RSRResponse as RSRResponse,
    nominal_market as nominal_market,
    plan as plan,
    relaxed_rsr as relaxed_rsr,
    robust_terms as robust_terms,
    rsr as rsr,
    worst_case_profit as worst_case_profit,
)
from .scenarios import (
    STRESS_KINDS as STRESS_KINDS,
    AnyMarket as AnyMarket,
    CustomerLimits as CustomerLimits,
    Customers as Customers,
    Market as Market,
    ModelPrices as ModelPrices,
    Models as Models,
    ModelUsers as ModelUsers,
    ValueMarket as ValueMarket,
    family_models as family_models,
    pad_scenarios as pad_scenarios,
    random_market as random_market,
    stack_markets as stack_markets,
    stress_market as stress_market,
    unstack_market as unstack_market,
)


def __getattr__(name):
    # The reference solvers need scipy (HiGHS): loaded on first use, so the JAX core stays free of it.
    if name == "reference":
        import importlib

        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'lmaas_jax.lmaas' has no attribute {name!r}")
