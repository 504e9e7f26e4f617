"""LIME's view of a document: its features (distinct words) and the two removal modes.

A document is the model's token array (length T: [CLS], the words at positions 1..L, UNK
padding) together with ``feature[t]``, the index (0..d-1) of the distinct word at word
position t, and -1 at [CLS] and padding. Features are numbered in order of first
occurrence, as `lime`'s ``IndexedString`` numbers them (docs/theory.md §4).

Removal of a set of features (``z_j = 0``) gives a new token array:

* ``"replace"`` — every occurrence is replaced in place by UNK; positions are kept (the
  setting of the paper's theory; lime ``bow=False, mask_string='UNK'`` on texts without
  repeated words).
* ``"delete"`` — every occurrence is deleted; the later words shift left and UNK padding
  fills the end (lime's default ``bow=True``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.model import CLS, UNK
from jaxtyping import Array, Bool, Float, Int

from attnverify.errors import InputError

REMOVALS = ("delete", "replace")


class LimeDocument(NamedTuple):
    tokens: Int[Array, " T"]  # [CLS], words, UNK padding
    feature: Int[Array, " T"]  # feature of each word position, -1 elsewhere


def lime_document(
    tokens,
    *,
    words: list[str] | None = None,
    n_words: int | None = None,
    features: str = "words",
) -> tuple[LimeDocument, list[str]]:
    """The document and its feature names (the d distinct words, first occurrence first).

    tokens: length-T ids, [CLS] first. words: the word strings at positions 1..L (as
    returned by `numerics.tokenize.encode`); two different out-of-vocabulary words are two
    features, as in `lime`. Without `words`, features are distinct token ids among the first
    `n_words` positions (default: up to the last non-UNK token) and are named by their id.
    features: "words" (one feature per distinct word, lime's ``bow=True``) or "positions"
    (one per occurrence, named ``word@t``, lime's ``bow=False``).
    """
    if features not in ("words", "positions"):
        raise InputError(f"features must be 'words' or 'positions', got {features!r}")
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.shape[0] < 2:
        raise InputError("tokens must be a 1-d array of length T >= 2")
    if int(tokens[0]) != CLS:
        raise InputError("tokens must start with [CLS] (id 0)")
    T = tokens.shape[0]
    if words is not None:
        n_words = len(words)
        names = [str(w) for w in words]
    else:
        if n_words is None:
            nonpad = np.nonzero(tokens[1:] != UNK)[0]
            n_words = int(nonpad[-1]) + 1 if nonpad.size else 0
        names = [str(int(x)) for x in tokens[1 : 1 + n_words]]
    if not 0 <= n_words <= T - 1:
        raise InputError(f"a document of T = {T} positions holds at most {T - 1} words, got {n_words}")
    if features == "positions":
        names = [f"{name}@{t}" for t, name in enumerate(names, start=1)]
    order: dict[str, int] = {}
    feature = np.full(T, -1, dtype=np.int32)
    for t, name in enumerate(names, start=1):
        feature[t] = order.setdefault(name, len(order))
    if words is None and np.any(tokens[1 + n_words :] != UNK):
        raise InputError("positions after the words must be UNK padding")
    return LimeDocument(jnp.asarray(tokens, dtype=jnp.int32), jnp.asarray(feature)), list(order)


def is_word(doc: LimeDocument) -> Bool[Array, " T"]:
    return doc.feature >= 0


def kept_positions(doc: LimeDocument, z: Float[Array, " d"]) -> Bool[Array, " T"]:
    """True at word positions whose feature is kept (z_j = 1); False elsewhere."""
    kept = jnp.take(z, jnp.maximum(doc.feature, 0)) > 0.5
    return is_word(doc) & kept


def perturb(doc: LimeDocument, z: Float[Array, " d"], removal: str) -> Int[Array, " T"]:
    """The token array after removing the features with z_j = 0 (O(T), jit/vmap friendly)."""
    keep = kept_positions(doc, z)
    if removal == "replace":
        return jnp.where(is_word(doc) & ~keep, UNK, doc.tokens)
    if removal == "delete":
        T = doc.tokens.shape[0]
        position = jnp.cumsum(keep)  # kept word -> 1, 2, ... in order
        # Everything else goes to its own scratch slot T + t: unique in-bounds indices, the
        # fastest scatter on CPU. [CLS] (t = 0) is never a word, so it lands at T.
        target = jnp.where(keep, position, T + jnp.arange(T))
        out = jnp.full((2 * T,), UNK, dtype=doc.tokens.dtype)
        out = out.at[target].set(doc.tokens, unique_indices=True, mode="promise_in_bounds")
        return out[:T].at[0].set(doc.tokens[0])
    raise InputError(f"removal must be one of {', '.join(REMOVALS)}, got {removal!r}")


def all_removed(doc: LimeDocument) -> Int[Array, " T"]:
    """The all-UNK document: [CLS] then UNK everywhere (both removal modes agree)."""
    return jnp.where(is_word(doc), UNK, doc.tokens)


def check_removal(removal: str) -> None:
    if removal not in REMOVALS:
        raise InputError(f"removal must be one of {', '.join(REMOVALS)}, got {removal!r}")


@functools.partial(jax.jit, static_argnames=("d", "length", "T", "vocab_size"))
def random_document(key, d: int, length: int, T: int, vocab_size: int) -> LimeDocument:
    """A random document of `length` words over d distinct word ids (traceable; for sweeps).

    Positions 1..d hold features 0..d-1 (so features are numbered by first occurrence, as
    `lime_document` numbers them), positions d+1..length random features, the rest UNK
    padding. Word ids are d distinct ids drawn from 2..V-1 ([CLS] and UNK excluded).
    """
    if not 1 <= d <= min(length, vocab_size - 2) or length > T - 1:
        raise InputError(f"need 1 <= d <= min(length, V - 2) and length <= T - 1; got d={d}, "
                         f"length={length}, T={T}, V={vocab_size}")
    key_ids, key_rest = jax.random.split(key)
    ids = 2 + jax.random.permutation(key_ids, vocab_size - 2)[:d]
    rest = jax.random.randint(key_rest, (length - d,), 0, d)
    words = jnp.concatenate([jnp.arange(d), rest])
    feature = jnp.concatenate([jnp.array([-1]), words, jnp.full((T - 1 - length,), -1)]).astype(jnp.int32)
    tokens = jnp.where(feature >= 0, ids[jnp.maximum(feature, 0)], UNK).at[0].set(CLS)
    return LimeDocument(tokens.astype(jnp.int32), feature)
