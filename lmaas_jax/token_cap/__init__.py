"""Token caps as the revenue-optimal screening menu (our re-derivation of Zhong, "Token Is All You
Price", arXiv 2510.09859; the paper's body was not available to us).

    from lmaas_jax import token_cap
    menu = token_cap.solve(token_cap.Uniform(0.5, 2.0), token_cap.Exponential(1.0))
    menu.revenue   # about 0.342
"""

from ._laws import (
    Diffusion as Diffusion,
    Exponential as Exponential,
    FromFunctions as FromFunctions,
    GaussianMixture as GaussianMixture,
    ResolutionLaw as ResolutionLaw,
    TypeDistribution as TypeDistribution,
    Uniform as Uniform,
)
from ._solve import (
    Audit as Audit,
    Menu as Menu,
    PostedPrice as PostedPrice,
    audit as audit,
    optimal_caps as optimal_caps,
    posted_price_constant_delay as posted_price_constant_delay,
    solve as solve,
    value_table as value_table,
)
