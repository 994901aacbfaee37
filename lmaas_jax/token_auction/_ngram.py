"""Tiny bigram language models: stand-in "advertiser" LLMs for examples and tests."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


class Bigram(eqx.Module):
    """A bigram model over a word vocabulary: P(next word | last word), add-`smoothing` counts.

    Callable as a next-token function of [`lmaas_jax.token_auction.generate`][]:
    `model(tokens, length)` is the distribution after `tokens[length - 1]`.

    **Fields:** `table` shape `(vocab, vocab)` (rows sum to 1); `vocab` the words (static).
    """

    table: Float[Array, "vocab vocab"]
    vocab: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def from_text(cls, text: str, vocab: tuple[str, ...], smoothing: float = 0.05) -> Bigram:
        """Count word bigrams of `text` (lower-cased, split on spaces; unknown words skipped).

        A word never followed by another (with `smoothing = 0`) gets a uniform next word.
        """
        index = {w: i for i, w in enumerate(vocab)}
        ids = [index[w] for w in text.lower().split() if w in index]
        counts = np.full((len(vocab), len(vocab)), float(smoothing))
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            counts[a, b] += 1.0
        total = counts.sum(axis=1, keepdims=True)
        table = np.where(total > 0, counts / np.where(total > 0, total, 1.0), 1.0 / len(vocab))
        return cls(table=jnp.asarray(table), vocab=tuple(vocab))  # unseen words: uniform next word

    def __call__(self, tokens: Int[Array, " length"], length: Int[Array, ""]) -> Float[Array, " vocab"]:
        return self.table[tokens[length - 1]]

    def encode(self, text: str) -> Int[Array, " words"]:
        index = {w: i for i, w in enumerate(self.vocab)}
        return jnp.asarray([index[w] for w in text.lower().split()], jnp.int32)

    def decode(self, tokens) -> str:
        return " ".join(self.vocab[int(t)] for t in np.asarray(tokens))
