"""Pricing: the seller's side of the LMaaS game, on the robust terms of [`lmaas_jax.lmaas.robust`][].

The exact profit ([`lmaas_jax.seller_profit`][]) and its relaxation, gradient IMP
([`lmaas_jax.imp`][]) with its exact O(M N log N) polish, classic IMP and grid search, the
equilibrium's pin structure and its derivatives ([`lmaas_jax.equilibrium_prices`][],
[`lmaas_jax.sensitivities`][]), and the [`lmaas_jax.PricingSolution`][] they return. The exact
reference solvers (HiGHS MILP, C&CG) are apart, in [`lmaas_jax.reference`][].
"""

from ._classic_imp import classic_imp as classic_imp
from ._equilibrium import (
    PinPattern as PinPattern,
    equilibrium_prices as equilibrium_prices,
    relaxed_equilibrium as relaxed_equilibrium,
    relaxed_equilibrium_prices as relaxed_equilibrium_prices,
)
from ._grid import grid_search as grid_search
from ._imp import GradientIMP as GradientIMP, imp as imp
from ._profit import relaxed_seller_profit as relaxed_seller_profit, seller_profit as seller_profit
from ._sensitivity import Sensitivities as Sensitivities, sensitivities as sensitivities
from ._solution import PricingSolution as PricingSolution, PricingTrace as PricingTrace
