"""Two advertisers' language models bid to steer one ad text (lmaas_jax.token_auction).

Each advertiser is a tiny bigram model trained on its own slogans; the linear rule with the stable
sampler writes one text token by token, and the winner of each token pays its critical bid. As the
bid ratio moves, the text moves from one advertiser's words to the other's. Then the report's
section: expected payments (closed form, Myerson integral, Monte Carlo) and monotonicity.

    python examples/token_auction_ads.py    # prints texts, writes lmaas-out/token-auction/
"""

import jax
import jax.numpy as jnp

from lmaas_jax import token_auction as ta
from lmaas_jax.experiments import advertisers, token_auction_report

coffee, tea = advertisers()  # ta.Bigram.from_text(slogans, vocabulary) each
prompt = coffee.encode("start")

print("bid ratio coffee:tea -> generated ad (12 words) | words won by coffee | payments per word")
for coffee_bid in (0.1, 0.5, 1.0, 2.0, 10.0):
    out = ta.generate(
        [coffee, tea], jnp.asarray([coffee_bid, 1.0]), prompt, key=jax.random.PRNGKey(0), max_tokens=12
    )
    pay = out.total / 12
    won = float(jnp.mean(out.winners == 0))
    text = coffee.decode(out.tokens)
    print(f"{coffee_bid:5.1f} : 1   {text:72s} | {won:4.0%} | coffee {pay[0]:.3f}, tea {pay[1]:.3f}")

tables = token_auction_report("lmaas-out/token-auction")  # the same section as in `lmaas-jax run`
print("Wrote lmaas-out/token-auction/token_auction.png and its tables")
