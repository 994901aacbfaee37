"""`lmaas-jax token-auction`: two advertisers' language models bid to steer one ad text.

Each advertiser is a tiny bigram model trained on its own slogans; the linear rule with the stable
sampler writes the text token by token, and each token's winner pays its critical bid. The report
shows the texts as the bid ratio moves, expected payments against the bid (closed form, Myerson
integral, Monte Carlo), and why the log-linear rule has no such payments (it is not monotone).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ... import token_auction as ta
from .._output import markdown_table, plt, save_figure, write_table

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
# The spec's counterexample: an agent's distribution against the others' mix.
AGENT, OTHERS = (0.6, 0.3, 0.1), (0.1, 0.3, 0.6)


def advertisers() -> tuple[ta.Bigram, ta.Bigram]:
    """The two bundled advertisers (coffee, tea) as bigram next-token models."""
    return ta.Bigram.from_text(COFFEE, VOCAB), ta.Bigram.from_text(TEA, VOCAB)


def token_auction_report(
    out: str | Path, *, words: int = 12, draws: int = 20000, key=None
) -> dict[str, pd.DataFrame]:
    """Write `token_auction_texts`, `token_auction_payments` and `token_auction_monotonicity` (CSV and
    Parquet) and `token_auction.png` to `out`; return the three tables.

    - texts: for coffee:tea bid ratios 0.1 to 10, the generated ad (`words` tokens, linear rule,
      stable sampler), the share of tokens coffee won and each side's payment per token;
    - payments: agent 0's expected payment per token against its bid (the other bids 1): the closed
      form, the Myerson integral and a Monte Carlo mean over `draws` stable samples with its
      standard error;
    - monotonicity: the middle token's probability as the agent's weight goes from 0 to 1, under the
      linear rule (monotone) and the log-linear rule (it rises and falls back: not monotone).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(0) if key is None else key
    k_text, k_mc = jax.random.split(key)
    coffee, tea = advertisers()
    prompt = coffee.encode("start")
    rows = []
    for coffee_bid in (0.1, 0.5, 1.0, 2.0, 10.0):
        g = ta.generate([coffee, tea], jnp.asarray([coffee_bid, 1.0]), prompt, key=k_text, max_tokens=words)
        pay = np.asarray(g.total) / words
        rows.append(
            dict(
                coffee_bid=coffee_bid,
                tea_bid=1.0,
                text=coffee.decode(g.tokens),
                coffee_share=float(jnp.mean(g.winners == 0)),
                coffee_pays_per_token=float(pay[0]),
                tea_pays_per_token=float(pay[1]),
            )
        )
    texts = pd.DataFrame(rows)

    dists = jnp.stack([coffee.table[0], tea.table[0]])
    grid = jnp.linspace(0.05, 5.0, 12)
    both = jax.vmap(lambda b: jnp.stack([b, jnp.ones_like(b)]))(grid)
    closed = jax.vmap(lambda bids: ta.expected_payment_linear(bids)[0])(both)
    myerson = jax.vmap(lambda bids: ta.expected_payment(ta.linear, dists, bids)[0])(both)
    keys = jax.random.split(k_mc, draws)
    samples = jax.vmap(
        lambda bids: jax.vmap(lambda k: ta.stable_sample_linear(k, dists, bids).payments[0])(keys)
    )(both)
    payments = pd.DataFrame(
        dict(
            bid=np.asarray(grid),
            closed_form=np.asarray(closed),
            myerson=np.asarray(myerson),
            monte_carlo=np.asarray(samples.mean(axis=1)),
            monte_carlo_se=np.asarray(samples.std(axis=1)) / np.sqrt(draws),
            largest_payment=np.asarray(samples.max(axis=1)),
        )
    )

    pair = jnp.asarray([AGENT, OTHERS])
    lam = jnp.linspace(0.0, 1.0, 21)
    middle = {
        name: np.asarray(jax.vmap(lambda x, rule=rule: rule(pair, jnp.stack([x, 1.0 - x]))[1])(lam))
        for name, rule in (("linear", ta.linear), ("log_linear", ta.log_linear))
    }
    monotonicity = pd.DataFrame(dict(weight=np.asarray(lam), **middle))

    for name, table in (("texts", texts), ("payments", payments), ("monotonicity", monotonicity)):
        write_table(table, out, f"token_auction_{name}")

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(payments["bid"], payments["closed_form"], label="closed form B (ln(1 + b/B) - b/(b + B))")
    a.plot(payments["bid"], payments["myerson"], "o", mfc="none", label="Myerson integral b g(b) - int g")
    a.errorbar(
        payments["bid"],
        payments["monte_carlo"],
        yerr=2 * payments["monte_carlo_se"],
        fmt="x",
        label=f"Monte Carlo, stable sampler ({draws} draws, 2 s.e.)",
    )
    a.set_xlabel("agent's bid b ($ per token); others' bids B = 1")
    a.set_ylabel("expected payment per token ($)")
    ratio = float((payments["largest_payment"] / payments["bid"]).max())
    a.set_title(f"linear rule: expected payment vs bid (largest payment / bid: {ratio:.3f})")
    a.legend(fontsize=7)
    b.axhline(AGENT[1], color="0.6", lw=6, alpha=0.5, label=f"the agent's own p = {AGENT[1]}")
    b.plot(monotonicity["weight"], monotonicity["linear"], "--", label="linear (monotone: stays at p)")
    b.plot(monotonicity["weight"], monotonicity["log_linear"], label="log-linear (not monotone)")
    b.set_xlabel("the agent's weight lambda = b_i / sum b")
    b.set_ylabel("aggregate probability of the middle token")
    b.set_title(f"p_i = {AGENT} against {OTHERS}")
    b.legend(fontsize=7)
    fig.suptitle("Token auctions: payments of the stable sampler, and monotonicity of the rules")
    save_figure(fig, out / "token_auction.png")
    return dict(texts=texts, payments=payments, monotonicity=monotonicity)


def token_auction_section(tables: dict[str, pd.DataFrame]) -> str:
    """The report's token-auction section (markdown) from [`token_auction_report`][]'s tables."""
    p, m, t = tables["payments"], tables["monotonicity"], tables["texts"]
    z = np.abs(p["monte_carlo"] - p["closed_form"]) / p["monte_carlo_se"]
    lines = [
        "## Token auctions: advertisers' LLMs bid to steer one text",
        "",
        "Two bigram advertisers (coffee, tea); the linear rule with the stable sampler writes the ad "
        "and each token's winner pays its critical bid (our reading of Duetting et al., "
        "`docs/models/token-auction.md`).",
        "",
        f"- Expected payment per token: the closed form and the Myerson integral agree to "
        f"{np.max(np.abs(p['myerson'] - p['closed_form'])):.1g}; the Monte Carlo mean lies within "
        f"{z.max():.1f} standard errors of them at every bid; the largest single payment is "
        f"{(p['largest_payment'] / p['bid']).max():.3f} of the bid (never above it).",
        f"- Monotonicity, on the counterexample p_i = {AGENT} against {OTHERS}: as the agent's weight "
        f"goes 0 -> 1 the linear rule keeps the middle token at {m['linear'].iloc[0]:.2f}, the agent's own "
        "probability, never moving it away from p_i; the log-linear rule moves it from "
        f"{m['log_linear'].iloc[0]:.2f} up to {m['log_linear'].max():.3f}, away from p_i, and back to "
        f"{m['log_linear'].iloc[-1]:.2f}: not monotone, so it "
        "has no second-price payments.",
        "",
        "![token auction](token_auction.png)",
        "",
        markdown_table(t),
        "",
    ]
    return "\n".join(lines)
