"""Two advertisers' language models bid to steer one ad text (lmaas_jax.token_auction).

Each advertiser is a tiny bigram model trained on its own slogans; the linear rule with the stable
sampler writes one text token by token, and the winner of each token pays its critical bid. As the
bid ratio moves, the text moves from one advertiser's words to the other's. Also draws expected
payment per token against the bid: closed form, the Myerson integral and Monte Carlo.

    python examples/token_auction_ads.py          # prints texts, writes lmaas-out/token-auction-payment.png
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lmaas_jax import token_auction as ta  # noqa: E402

VOCAB = tuple(
    "start fresh coffee tea brewed green every morning calm energy bold smooth leaves beans "
    "for your day .".split()
)
COFFEE = (
    "start fresh coffee brewed bold every morning . start bold beans for your day . "
    "fresh coffee energy every morning"
)
TEA = (
    "start green tea leaves calm every morning . start calm green tea for your day . "
    "fresh tea leaves smooth calm"
)

coffee = ta.Bigram.from_text(COFFEE, VOCAB)
tea = ta.Bigram.from_text(TEA, VOCAB)
prompt = coffee.encode("start")

print("bid ratio coffee:tea -> generated ad (12 words) | words won by coffee | payments per word")
for coffee_bid in (0.1, 0.5, 1.0, 2.0, 10.0):
    bids = jnp.asarray([coffee_bid, 1.0])
    out = ta.generate([coffee, tea], bids, prompt, jax.random.PRNGKey(0), 12)
    pay = out.total / 12
    won = float(jnp.mean(out.winners == 0))
    text = coffee.decode(out.tokens)
    print(f"{coffee_bid:5.1f} : 1   {text:72s} | {won:4.0%} | coffee {pay[0]:.3f}, tea {pay[1]:.3f}")

# Expected payment of agent 0 per token versus its bid (the other bids 1.0 in total).
dists = jnp.stack([coffee.table[0], tea.table[0]])
grid = jnp.linspace(0.05, 5.0, 40)
closed = jax.vmap(lambda b: ta.expected_payment_linear(jnp.stack([b, 1.0]))[0])(grid)
myerson = jax.vmap(lambda b: ta.expected_payment(ta.linear, dists, jnp.stack([b, 1.0]))[0])(grid[::4])
keys = jax.random.split(jax.random.PRNGKey(1), 4000)
mc = jax.vmap(
    lambda b: jnp.mean(
        jax.vmap(lambda k: ta.stable_sample_linear(k, dists, jnp.stack([b, 1.0])).payments[0])(keys)
    )
)(grid[2::4])

fig, ax = plt.subplots(figsize=(6, 4.2))
ax.plot(grid, closed, label="closed form B (ln(1 + b/B) - b/(b + B))")
ax.plot(grid[::4], myerson, "o", mfc="none", label="Myerson integral b g(b) - int g")
ax.plot(grid[2::4], mc, "x", label="Monte Carlo, stable sampler (4000 draws)")
ax.plot(grid, grid, "k:", lw=0.8, label="the bid (payments never exceed it)")
ax.set_xlabel("agent's bid b ($ per token); others' bids B = 1")
ax.set_ylabel("expected payment per token ($)")
ax.set_ylim(0, 1.2)
ax.set_title("Token auction (linear rule): expected payment vs bid")
ax.legend(fontsize=8)
out = Path("lmaas-out")
out.mkdir(exist_ok=True)
fig.tight_layout()
fig.savefig(out / "token-auction-payment.png", dpi=120)
print(f"Wrote {out / 'token-auction-payment.png'}")
