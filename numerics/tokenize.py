"""Text to token ids: lowercase, split on ``\\W+`` (the `lime` package's split), prefix
[CLS], map unknown words to UNK, truncate or pad with UNK to T (docs/theory.md §1.1, §4).
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

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


def truncation_note(text: str, kept: list[str], max_len: int) -> str | None:
    """What `encode` left out of `text` (None when nothing): a model reads max_len - 1 words."""
    total = len(words(text))
    if total <= len(kept):
        return None
    return (f"the text has {total} words; a model with max_len {max_len} reads the first {len(kept)} "
            "([CLS] is its first token), so the rest are not explained")


def unknown_note(kept: list[str], vocab: list[str]) -> str | None:
    """Which of the kept words the model does not know (None when it knows them all): they read as UNK."""
    known = set(vocab[2:])
    unknown = list(dict.fromkeys(w for w in kept if w not in known))
    if not unknown:
        return None
    shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    if all(w not in known for w in kept):
        return (f"no word of the text is in the model's vocabulary ({shown}): every one reads as UNK, so what is "
                "explained is the model's response to UNK at these positions, not to these words")
    if len(unknown) == 1:
        return f"1 distinct word of the text is not in the model's vocabulary and reads as UNK: {shown}"
    return f"{len(unknown)} distinct words of the text are not in the model's vocabulary and read as UNK: {shown}"


def text_notes(text: str, kept: list[str], vocab: list[str], max_len: int) -> list[str]:
    """What a user should know about how the model reads `text`: truncation and unknown words."""
    return [note for note in (truncation_note(text, kept, max_len), unknown_note(kept, vocab)) if note]


def check_vocab(vocab: list[str]) -> None:
    """Refuse a vocabulary whose words are repeated or could never match a document word: after
    [CLS] and UNK, every entry must be what `words` makes of it (one lowercase word, no space or
    punctuation). A document's "Movie" becomes "movie", so an entry "Movie" would silently be UNK."""
    seen: dict[str, int] = {}
    for j, entry in enumerate(vocab):
        if j < 2 and entry in (CLS_TOKEN, UNK_TOKEN):
            continue
        if entry in (CLS_TOKEN, UNK_TOKEN):
            raise InputError(f"vocabulary: {entry!r} (entry {j}) is reserved for entry "
                             f"{0 if entry == CLS_TOKEN else 1}")
        if words(entry) != [entry]:
            got = words(entry)
            raise InputError(f"vocabulary: entry {j} {entry!r} can never match a document word (documents are "
                             f"lowercased and split on non-word characters: {got if got else 'no word'})")
        if entry in seen:
            raise InputError(f"vocabulary: {entry!r} appears twice (entries {seen[entry]} and {j})")
        seen[entry] = j


def read_vocab(path: str | os.PathLike) -> list[str]:
    """[CLS], UNK, then the whitespace-separated words of the UTF-8 file `path` (checked by
    `check_vocab`; [CLS] and UNK in the file are skipped)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a vocabulary file" if path.is_dir() else "no such vocabulary file"
        raise InputError(f"{path}: {what}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}, line {line})") from None
    vocab = [CLS_TOKEN, UNK_TOKEN] + [w for w in text.split() if w not in (CLS_TOKEN, UNK_TOKEN)]
    try:
        check_vocab(vocab)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return vocab


def builtin_vocab(size: int | None = None) -> list[str]:
    """[CLS], UNK, then the built-in word list (placeholders ``word<j>`` past its end)."""
    words = resources.files("attnverify").joinpath("data/words.txt").read_text().split()
    vocab = [CLS_TOKEN, UNK_TOKEN] + words
    if size is None:
        return vocab
    vocab += [f"word{j}" for j in range(size - len(vocab))]
    return vocab[:size]
