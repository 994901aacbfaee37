"""Token auctions: several LLM agents bid to steer one generated text, token by token.

Our reading of Duetting, Mirrokni, Paes Leme, Xu and Zuo, "Mechanism Design for Large Language
Models" (WWW 2024), from its abstract and public summaries; the formulas are derived here (see
`docs/models/token-auction.md`). Everything is pure JAX: batch with `jax.vmap` over agents'
scenarios, steps or Monte Carlo keys.
"""

from ._generate import Generation as Generation, generate as generate
from ._ngram import Bigram as Bigram
from ._payments import (
    StableSample as StableSample,
    clarke_payments as clarke_payments,
    draw_token as draw_token,
    expected_payment as expected_payment,
    expected_payment_linear as expected_payment_linear,
    kl as kl,
    pull as pull,
    stable_sample_linear as stable_sample_linear,
)
from ._rules import (
    Monotonicity as Monotonicity,
    bid_path as bid_path,
    check_inputs as check_inputs,
    is_monotone as is_monotone,
    linear as linear,
    log_linear as log_linear,
)
