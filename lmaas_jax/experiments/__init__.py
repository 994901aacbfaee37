"""The main job's experiments: the LMaaS game's E1-E7, the test-time compute game, token auctions and
token caps; tables, figures and the one `lmaas-jax run` report.

Imports pandas and matplotlib; the JAX core never imports this package.
"""

from ..product._run import run_experiments as run_experiments
from ..product.experiments._competition import (
    e7_competition as e7_competition,
    e7_report as e7_report,
    e7_section as e7_section,
)
from ..product.experiments._tables import (
    e1_robustness as e1_robustness,
    e1_summary as e1_summary,
    e2_seller as e2_seller,
    e3_sensitivity as e3_sensitivity,
    e4_convergence as e4_convergence,
    e5_scale as e5_scale,
    market_batch as market_batch,
    timed as timed,
)
from ..product.experiments._token_auction import (
    advertisers as advertisers,
    token_auction_report as token_auction_report,
    token_auction_section as token_auction_section,
)
from ..product.experiments._token_cap import (
    token_cap_report as token_cap_report,
    token_cap_section as token_cap_section,
)
from ..product.experiments._ttc import ttc_report as ttc_report, ttc_section as ttc_section
