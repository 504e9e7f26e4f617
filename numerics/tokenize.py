"""Text to token ids: lowercase, split on ``\\W+`` (the `lime` package's split), prefix
[CLS], map unknown words to UNK, truncate or pad with UNK to T (THEORY.md §1.1, §4).
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np

from attnverify.errors import InputError

CLS_TOKEN, UNK_TOKEN = "[CLS]", "UNK"
_SPLIT = re.compile(r"\W+", re.UNICODE)


def words(text: str) -> list[str]:
    """The document's words, lowercased, in order (the same split as `lime`)."""
    return [w for w in _SPLIT.split(text.lower()) if w]


def encode(text: str, vocab: list[str], max_len: int) -> tuple[np.ndarray, list[str]]:
    """Token ids (length T, [CLS] first, UNK padding) and the kept words (padding excluded)."""
    kept = words(text)
    if not kept:
        raise InputError("text has no words (after lowercasing and splitting on \\W+)")
    kept = kept[: max_len - 1]
    index = {w: j for j, w in enumerate(vocab)}
    ids = [0] + [index.get(w, 1) for w in kept]
    ids += [1] * (max_len - len(ids))
    return np.asarray(ids, dtype=np.int32), kept


def builtin_vocab(size: int | None = None) -> list[str]:
    """[CLS], UNK, then the built-in word list (placeholders ``word<j>`` past its end)."""
    words = resources.files("attnverify").joinpath("data/words.txt").read_text().split()
    vocab = [CLS_TOKEN, UNK_TOKEN] + words
    if size is None:
        return vocab
    vocab += [f"word{j}" for j in range(size - len(vocab))]
    return vocab[:size]
