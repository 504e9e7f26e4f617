"""PRNG keys taken from a whole token array: one stream of randomness per sweep draw.

A claim's comparison receives the draw's parameters and a document (`draws.draw_document`, made
from the draw index's own key). Claims that need more randomness (a LIME document with a fixed
number of features, masks, task documents, a model of other sizes) take it from `token_key`,
which folds every token, in order, into a key: two draws get the same key only when their whole
documents are equal. (A key from the token *sum*, as before, repeated for about a fifth of
1000 draws: sums of 15 ids cluster.)
"""

from __future__ import annotations

import jax
from jaxtyping import Array, Int, PRNGKeyArray


def token_key(tokens: Int[Array, " T"], stream: int) -> PRNGKeyArray:
    """``fold_in(... fold_in(PRNGKey(stream), tokens[0]) ..., tokens[T-1])`` (traceable, vmappable)."""
    key, _ = jax.lax.scan(lambda k, t: (jax.random.fold_in(k, t), None), jax.random.PRNGKey(stream), tokens)
    return key
