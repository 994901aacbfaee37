"""The test-time compute game and its reverse second-price auction (`lmaas_jax.ttc`).

Our implementation of Artola Velasco, Rontogiannis, Tsirtsis and Gomez-Rodriguez, "Test-Time
Compute Games" (arXiv 2601.21839), as fixed by `docs/models/ttc.md`; the accuracy/token
curves ship with the package (`lmaas_jax/ttc/data/`, see its PROVENANCE.md).
"""

from ._market import (
    BENCHMARKS as BENCHMARKS,
    METHODS as METHODS,
    GameParams as GameParams,
    TTCMarket as TTCMarket,
    exponential_quality as exponential_quality,
    load_market as load_market,
    payoffs as payoffs,
    potential_gain as potential_gain,
    power_quality as power_quality,
    profiles_from_index as profiles_from_index,
    terms as terms,
)
from ._solve import (
    AuctionBids as AuctionBids,
    AuctionOutcome as AuctionOutcome,
    Equilibrium as Equilibrium,
    FirstBest as FirstBest,
    GibbsWelfare as GibbsWelfare,
    MarketOutcome as MarketOutcome,
    auction as auction,
    auction_bids as auction_bids,
    equilibrium as equilibrium,
    first_best as first_best,
    first_best_brute_force as first_best_brute_force,
    gibbs_welfare as gibbs_welfare,
    market_outcome as market_outcome,
    outcome as outcome,
)
