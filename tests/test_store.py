"""The sweep store: a locked folder, records that carry their run, a resume that checks every
record and deletes none (`verification.store`). No sweep runs here: chunks are made-up numbers,
so each case takes milliseconds; `test_faults.py` runs the real CLI."""

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from attnverify.verification.store import (
    LOCK_NAME,
    RESUME_KEYS,
    ChunkStore,
    FolderLock,
    code_version,
    parse_record,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnverify.errors import InputError

TRIALS, WIDTH = 300, 128  # chunks of 128, 128 and 44 draws
MANIFEST = {"spec": {"max_len": 4}, "seed": 1, "dtype": "float64", "scale": 1.0, "trials": TRIALS,
            "chunk_size": WIDTH, "block": 128, "claims": ["a", "b"], "code": "0.1.0+abc", "computation": "c0ffee"}


def chunk_errors(claim: str, chunk: int) -> list[float]:
    """Distinct made-up errors per (claim, chunk), so a mixed-up record shows."""
    start, stop = chunk * WIDTH, min((chunk + 1) * WIDTH, TRIALS)
    return [(ord(claim) * 1000 + d) * 1e-18 for d in range(start, stop)]


def fill(store: ChunkStore, chunks=tuple((c, k) for c in "ab" for k in range(3))) -> None:
    for claim, chunk in chunks:
        start, stop = chunk * WIDTH, min((chunk + 1) * WIDTH, TRIALS)
        store.append(claim, chunk, start, stop, chunk_errors(claim, chunk))


def lines(folder: Path) -> list[bytes]:
    return (folder / "results.jsonl").read_bytes().split(b"\n")


@pytest.fixture
def finished(tmp_path) -> Path:
    """A folder holding a whole sweep of two claims x three chunks, closed."""
    with ChunkStore.open(tmp_path / "s", MANIFEST, resume=False) as store:
        fill(store)
    return tmp_path / "s"


def resume(folder: Path, messages: list[str] | None = None, **changes) -> ChunkStore:
    log = messages.append if messages is not None else (lambda m: None)
    return ChunkStore.open(folder, {**MANIFEST, **changes}, resume=True, log=log)


def everything(store: ChunkStore) -> dict:
    return {key: store.get(*key) for key in ((c, k) for c in "ab" for k in range(3))}


def test_a_finished_sweep_reads_back_whole(finished):
    with resume(finished) as store:
        assert everything(store) == {(c, k): chunk_errors(c, k) for c in "ab" for k in range(3)}
    records = [json.loads(line) for line in lines(finished) if line]
    assert {r["seed"] for r in records} == {1} and {r["size"] for r in records} == {128, 44}
    assert all(r["code"] == MANIFEST["code"] and r["dtype"] == "float64" and len(r["spec"]) == 16 for r in records)
    assert "code" in RESUME_KEYS and "claims" in RESUME_KEYS


def test_a_locked_folder_refuses_a_second_run(tmp_path):
    holder = subprocess.Popen(  # another process holds the lock, as a running sweep does
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from attnverify.verification.store import FolderLock; "
         f"Path({str(tmp_path)!r}).mkdir(exist_ok=True); lock = FolderLock(Path({str(tmp_path)!r})).acquire(); "
         "print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"folder in use by pid {holder.pid}"):
            ChunkStore.open(tmp_path, MANIFEST, resume=False)
        assert not (tmp_path / "manifest.json").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()
    messages = []  # the holder died: its pid is still in the file, and is taken over
    ChunkStore.open(tmp_path, MANIFEST, resume=False, log=messages.append).close()
    assert len(messages) == 1 and f"stale lock of pid {holder.pid} (no longer running)" in messages[0]


def test_the_lock_is_held_until_close_and_within_one_process(tmp_path):
    store = ChunkStore.open(tmp_path, MANIFEST, resume=False)
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(InputError, match=f"in use by pid {os.getpid()}"):
        FolderLock(tmp_path).acquire()
    store.close()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released cleanly: no stale-lock warning next time
    FolderLock(tmp_path).acquire().release()


def test_a_used_folder_needs_resume(finished):
    with pytest.raises(InputError, match="already holds results"):
        ChunkStore.open(finished, MANIFEST, resume=False)


@pytest.mark.parametrize("key, value", [("seed", 0), ("claims", ["a"]), ("claims", ["a", "b", "c"]),
                                        ("code", "0.1.0+def"), ("dtype", "float32"), ("scale", 2.0)])
def test_resume_refuses_another_sweep(finished, key, value):
    with pytest.raises(InputError, match=f"{key} differs from the first run"):
        resume(finished, **{key: value})


@pytest.mark.parametrize("content, message", [
    (b"[]", "not a JSON object"), (b"42", "not a JSON object"), (b"\xff\xfe{}", "not UTF-8"),
    (b'{"seed": ', "not valid JSON"),
])
def test_a_malformed_manifest_is_one_line(finished, content, message):
    (finished / "manifest.json").write_bytes(content)
    with pytest.raises(InputError, match=message):
        resume(finished)


def damage(folder: Path, index: int, line: bytes) -> None:
    old = lines(folder)
    old[index] = line
    (folder / "results.jsonl").write_bytes(b"\n".join(old))


def record(folder: Path, index: int) -> dict:
    return json.loads(lines(folder)[index])


@pytest.mark.parametrize("bad, reason", [
    (b"42", "not a record"),
    (b"{garbage", "not a complete JSON record"),
    (b"\xff\xfe", "not a complete JSON record"),
    ({"errors": None}, "record without errors"),
    ({"errors": "abc"}, "errors must be a list"),
    ({"errors": [0.0, 0.0]}, "holds 2 errors, the chunk has 128 draws"),
    ({"errors": [True] * 128}, "errors must be numbers"),
    ({"size": 2}, "states size 2, the chunk has 128 draws"),
    ({"start": 5}, "must span draws 128..256"),
    ({"chunk": 7}, "chunk 7 is outside 0..2"),
    ({"seed": 0}, "another run's record (seed 0, not 1)"),
    ({"code": "0.0.9+old"}, "another run's record (code"),
    ({"spec": "0" * 16}, "another run's record (spec"),
    ({"claim": "c"}, "claim 'c', which this sweep does not run"),
])
def test_a_bad_record_is_reported_by_line_and_recomputed_alone(finished, bad, reason):
    if isinstance(bad, dict):
        changed = {**record(finished, 1), **bad}
        bad = json.dumps({k: v for k, v in changed.items() if v is not None}).encode()
    damage(finished, 1, bad)
    before = lines(finished)
    messages = []
    with resume(finished, messages) as store:
        assert store.get("a", 1) is None  # line 2 held chunk 1 of claim a: recomputed
        assert {k: v for k, v in everything(store).items() if k != ("a", 1)} == {
            (c, k): chunk_errors(c, k) for c in "ab" for k in range(3) if (c, k) != ("a", 1)}
    assert len(messages) == 1 and "line 2:" in messages[0] and reason in messages[0], messages
    assert lines(finished) == before  # nothing deleted, nothing added


def test_a_corrupt_middle_line_keeps_every_later_record(finished):
    damage(finished, 0, b'{"claim": "a", "chun')
    with resume(finished, []) as store:
        assert sum(v is not None for v in everything(store).values()) == 5  # the old reader kept 0


def test_a_torn_last_line_is_kept_and_the_next_append_starts_a_new_line(finished):
    data = (finished / "results.jsonl").read_bytes()
    torn = data[: -len(lines(finished)[-2]) // 2 - 1]  # the last record, half written
    (finished / "results.jsonl").write_bytes(torn)
    messages = []
    with resume(finished, messages) as store:
        assert store.get("b", 2) is None and "line 6: not a complete JSON record" in messages[0]
        fill(store, [("b", 2)])
    assert (finished / "results.jsonl").read_bytes().startswith(torn + b"\n")
    with resume(finished, messages) as store:
        assert everything(store) == {(c, k): chunk_errors(c, k) for c in "ab" for k in range(3)}


def test_a_record_without_its_newline_is_not_glued_to_the_next(finished):
    data = (finished / "results.jsonl").read_bytes()
    last = lines(finished)[-2]
    (finished / "results.jsonl").write_bytes(data[: -len(last) - 1])  # drop the last record ...
    (finished / "results.jsonl").write_bytes(data[: -len(last) - 2])  # ... and the newline before it
    messages = []
    with resume(finished, messages) as store:
        assert messages == [] and store.get("b", 1) == chunk_errors("b", 1)  # complete, so kept
        fill(store, [("b", 2)])
    with resume(finished, messages) as store:  # the old store glued, then truncated 11 records here
        assert messages == [] and everything(store) == {(c, k): chunk_errors(c, k) for c in "ab" for k in range(3)}


def test_records_of_another_seed_never_enter_a_resume(tmp_path):
    # A folder mixed by two runs before the lock existed: seed 0 and seed 1 records, seed 1 manifest.
    folder = tmp_path / "mixed"
    with ChunkStore.open(folder, {**MANIFEST, "seed": 0}, resume=False) as store:
        fill(store, [("a", 0), ("a", 1)])
    seed0 = (folder / "results.jsonl").read_bytes()
    (folder / "results.jsonl").write_bytes(b"")
    with ChunkStore.open(folder, MANIFEST, resume=False) as store:
        fill(store, [("a", 2)])
    (folder / "results.jsonl").write_bytes(seed0 + (folder / "results.jsonl").read_bytes())
    messages = []
    with resume(folder, messages) as store:
        assert store.get("a", 0) is None and store.get("a", 1) is None and store.get("a", 2) == chunk_errors("a", 2)
    assert "lines 1-2: another run's record (seed 0, not 1)" in messages[0]


def test_non_finite_errors_round_trip_as_strict_json(tmp_path):
    errors = [math.nan, math.inf, -math.inf] + [1e-16] * 125
    with ChunkStore.open(tmp_path, MANIFEST, resume=False) as store:
        store.append("a", 0, 0, 128, errors)
    text = (tmp_path / "results.jsonl").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    with resume(tmp_path) as store:
        got = store.get("a", 0)
    assert math.isnan(got[0]) and got[1:3] == [math.inf, -math.inf] and got[3:] == errors[3:]


def test_a_failed_append_leaves_no_partial_line(finished, monkeypatch):
    before = (finished / "results.jsonl").read_bytes()
    real_write = os.write

    def full_disk(fd, data):  # half the record goes out, then the disk is full
        if len(data) > 100:
            real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with resume(finished) as store:
        monkeypatch.setattr(os, "write", full_disk)
        with pytest.raises(InputError, match="No space left on device"):
            fill(store, [("a", 0)])
        monkeypatch.undo()
    assert (finished / "results.jsonl").read_bytes() == before


def test_code_version_follows_the_claims_source(tmp_path, monkeypatch):
    from attnverify.verification import claims  # noqa: F401
    from attnverify.verification.registry import REGISTRY

    claim = REGISTRY["thm1.gradient"]
    version = code_version([claim])
    assert version.startswith("0.") and "+" in version and version == code_version([claim])
    assert code_version([REGISTRY["thm1.gxi"], claim]) != version  # the ids are part of it
    source = Path(sys.modules[claim.build.__module__].__file__)
    edited = tmp_path / "edited.py"
    edited.write_bytes(source.read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(sys.modules[claim.build.__module__], "__file__", str(edited))
    assert code_version([claim]) != version


def test_code_version_follows_the_helpers_of_a_claims_package(tmp_path, monkeypatch):
    # Can fail: a claims module named by its dotted name was identified by its own file alone, so a
    # resume after an edit of the helper module it imports mixed the two runs' chunks, silently.
    import importlib

    from attnverify.verification.registry import REGISTRY

    package = tmp_path / "mine_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("FACTOR = 1.0\n")
    (package / "claims.py").write_text(
        "import dataclasses\nfrom attnverify.verification import REGISTRY, register\n"
        "from mine_pkg.helpers import FACTOR\n\n"
        "def build(spec):\n    return lambda params, tokens: (FACTOR * params.W_q, params.W_q)\n\n"
        "register(dataclasses.replace(REGISTRY['thm1.gradient'], id='mine.scaled', build=build))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("mine_pkg.claims")
    try:
        version = code_version([REGISTRY["mine.scaled"]])
        (package / "helpers.py").write_text("FACTOR = 2.0\n")
        assert code_version([REGISTRY["mine.scaled"]]) != version
    finally:
        for name in ("mine_pkg", "mine_pkg.claims", "mine_pkg.helpers"):
            sys.modules.pop(name, None)


# -- fuzz: the record parser answers every line with a record or a reason, never an exception --------
VALID = {"claim": "a", "seed": 1, "spec": None, "dtype": "float64", "scale": 1.0, "code": "0.1.0+abc",
         "chunk": 2, "start": 256, "stop": 300, "size": 44, "errors": [1e-16] * 44}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def valid_record() -> dict:
    from attnverify.verification.store import spec_hash

    return {**VALID, "spec": spec_hash(MANIFEST["spec"])}


def test_the_valid_fuzz_seed_parses():
    assert parse_record(json.dumps(valid_record()).encode(), MANIFEST) == ("a", 2, [1e-16] * 44)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_record_parser_bytes(line):
    result = parse_record(line, MANIFEST)
    assert isinstance(result, str | tuple)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), JSON_VALUES)
def test_fuzz_record_parser_fields(key, value):
    record = {**valid_record(), key: value}
    result = parse_record(json.dumps(record).encode(), MANIFEST)
    if isinstance(result, tuple):  # accepted: then it is exactly a record of this sweep's chunk 2
        claim, chunk, errors = result
        assert claim in ("a", "b") and (chunk, len(errors)) == (2, 44) and record["seed"] == 1 and record["size"] == 44
        assert all(isinstance(x, float) for x in errors)
    else:
        assert isinstance(result, str) and result


def test_a_record_with_a_huge_integer_or_a_negative_distance_is_recomputed():
    # Can fail: an error written as a 401-digit integer raised OverflowError (a traceback on --resume), and a
    # negative error of an identity claim was read back as its error, which then passed any tolerance
    huge = {**valid_record(), "errors": [10**400] + [1e-16] * 43}
    assert parse_record(json.dumps(huge).encode(), MANIFEST) == \
        "errors must be floating-point numbers, found an integer of 401 digits"
    negative = json.dumps({**valid_record(), "errors": [-5.0] * 44}).encode()
    assert parse_record(negative, MANIFEST, distances={"a"}) == \
        "a negative error for a (an identity's error is a distance)"
    assert parse_record(negative, MANIFEST, distances={"b"}) == ("a", 2, [-5.0] * 44)  # a statistic may be negative


def test_resume_recomputes_an_identitys_negative_errors(tmp_path, capsys):
    # Can fail: the first run's errors edited to -5 were resumed as a PASS with max error -5
    from attnverify.cli import main

    out = tmp_path / "sw"
    argv = ["verify", "thm1.gradient", "--trials", "4", "--out", str(out), "--quiet",
            "--json", str(tmp_path / "r.json"), "--max-len", "5", "--d-embed", "6", "--d-att", "3", "--d-out", "4",
            "--heads", "2", "--vocab-size", "20"]
    assert main(argv) == 0
    first = json.loads((tmp_path / "r.json").read_text())
    results = out / "results.jsonl"
    record = json.loads(results.read_text())
    results.write_text(json.dumps({**record, "errors": [-5.0] * len(record["errors"])}) + "\n")
    assert main([*argv, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "line 1: a negative error for thm1.gradient (an identity's error is a distance); its chunk is recomputed" \
        in captured.err
    assert json.loads((tmp_path / "r.json").read_text()) == first
