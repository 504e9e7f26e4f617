"""The persistent compilation cache: results identical cold, warm, corrupt and off; its
location and bad locations; ``attnverify cache info`` / ``clear``."""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import jax.export
import numpy as np
import pytest
from attnverify.numerics import compilation_cache

from attnverify.cli import main

_BESIDE = Path(sys.executable).with_name("attnverify")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("attnverify")
TINY = ["--max-len", "8", "--d-embed", "6", "--d-att", "4", "--d-out", "5", "--heads", "3", "--vocab-size", "30"]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache folder of the test's own; the session's cache is in use again afterwards."""
    session = Path(os.environ[compilation_cache.ENV_VAR])
    folder = tmp_path / "xla"
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(folder))
    yield folder
    compilation_cache.configure_cache(session)


def _sweep(cache: Path, out: Path, *extra: str, claims: str = "theorem1", trials: int = 3) -> tuple[dict, str]:
    """Per-draw results (exact JSON floats) of `verify CLAIMS` in a fresh process, and its stderr."""
    env = dict(os.environ, **{compilation_cache.ENV_VAR: str(cache)}, JAX_LOG_COMPILES="1")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command's own default, not the test session's
    proc = subprocess.run([EXE, "verify", claims, "--trials", str(trials), "--quiet", "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    return {r["claim"]: r["errors"] for r in records}, proc.stderr


def test_results_are_identical_with_the_cache_cold_warm_corrupt_and_off(tmp_path):
    cache = tmp_path / "xla"
    cold, log = _sweep(cache, tmp_path / "cold")
    assert len(cold) == 6 and all(len(v) == 3 for v in cold.values())
    assert "transforming measures" in log and "transforming draw" in log  # traced, the first time
    written = compilation_cache.cache_entries(cache)
    derived = compilation_cache.derivation_entries(cache)
    traced = compilation_cache.traced_entries(cache)
    assert written and derived and len(traced) == 2, "the cold run stored no program or derivation"
    assert (cache / ".lockfile").exists()  # JAX locks the folder (a size limit is set): runs can share it

    warm, log = _sweep(cache, tmp_path / "warm")
    assert warm == cold
    # Read back, not traced (stored_programs), and loaded, not compiled (XLA's cache).
    assert "transforming measures" not in log and "transforming draw" not in log
    assert "Persistent compilation cache hit for 'jit_call'" in log
    # No C++ log line from loading (on CPUs whose LLVM target has +prefer-no-gather, XLA logs a
    # false "could lead to SIGILL" error for every entry it loads): the user's stderr stays clean.
    assert not re.search(r"^[IWEF]\d{4} ", log, re.M), log[:2000]

    for entry in written + derived + traced:  # garbage in every entry: recompiled after one warning line, never a crash
        entry.write_bytes(b"not an XLA executable")
    corrupt, log = _sweep(cache, tmp_path / "corrupt")
    assert corrupt == cold
    warnings = [line for line in log.splitlines() if line.startswith("attnverify: warning:")]
    assert len(warnings) == 1 and "unreadable compilation cache entry" in warnings[0], log
    assert "Traceback" not in log and "transforming measures" in log
    healed = compilation_cache.cache_entries(cache)
    assert healed and all(zlib.decompress(p.read_bytes()) for p in healed)  # rewritten, readable again
    assert all(pickle.loads(p.read_bytes()) for p in compilation_cache.derivation_entries(cache))
    assert all(jax.export.deserialize(bytearray(p.read_bytes())) for p in compilation_cache.traced_entries(cache))

    compilation_cache.clear_cache(cache)
    off, log = _sweep(cache, tmp_path / "off", "--no-cache")
    assert off == cold
    assert compilation_cache.cache_entries(cache) == [] and "Persistent compilation cache hit" not in log
    assert compilation_cache.derivation_entries(cache) == [] and compilation_cache.traced_entries(cache) == []


def test_a_kept_entry_that_is_not_the_one_its_name_says_is_computed_again(tmp_path, capsys, monkeypatch):
    # Can fail: an entry holding a valid pickle of something else (edited, or another entry's file copied over it)
    # was returned as the result: a claim's proof came out a dict ("proof returned dict, not a sentence")
    from attnverify.theory import memo

    from attnverify import errors

    monkeypatch.setattr(errors, "WARNED", set())
    previous = memo.set_derivations_folder(tmp_path)
    try:
        assert memo.kept("answer", "call", lambda: "derived") == "derived"
        (entry,) = tmp_path.glob("answer-*")
        for content, reason in ((pickle.dumps({"not": "this entry"}), "not the entry its name says"),
                                # a tuple whose first field is an array: comparing it raised ValueError
                                (pickle.dumps((np.arange(3), "x", 1)), "not the entry its name says"),
                                (entry.read_bytes()[:9], "damaged: UnpicklingError")):
            entry.write_bytes(content)
            errors.WARNED.clear()
            assert memo.kept("answer", "call", lambda: "derived again") == "derived again"
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"unreadable compilation cache entry ({entry.name}: {reason})" in err
            assert memo.kept("answer", "call", lambda: "not called") == "derived again"  # rewritten: read back
    finally:
        memo.set_derivations_folder(previous)


def test_a_program_with_lapack_calls_read_back_runs_and_gives_the_same_numbers(tmp_path):
    # Can fail: jaxlib finds its LAPACK routines only when it lowers a linear-algebra operation, and
    # a warm run lowers none (its programs are read back, traced): without the initialisation in
    # `numerics.stored_programs`, the lime group's LU solve crashed the process (SIGSEGV).
    cache = tmp_path / "xla"
    cold, _ = _sweep(cache, tmp_path / "cold", claims="lime", trials=2)
    warm, log = _sweep(cache, tmp_path / "warm", claims="lime", trials=2)
    assert "transforming measures" not in log  # read back, not traced
    assert warm == cold


def test_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "mine"))
    assert compilation_cache.cache_location() == tmp_path / "mine"
    monkeypatch.delenv(compilation_cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.cache_location() == tmp_path / "xdg" / "attnverify" / "xla"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compilation_cache.cache_location() == tmp_path / "home" / ".cache" / "attnverify" / "xla"
    for ignored in ("", "relative/cache"):  # XDG: a relative path is invalid and ignored
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert compilation_cache.cache_location() == tmp_path / "home" / ".cache" / "attnverify" / "xla"


def test_cache_info_and_clear(own_cache, capsys):
    assert main(["cache", "info"]) == 0
    assert "does not exist yet" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0  # a missing folder: a clean message, nothing else
    out = capsys.readouterr()
    assert out.out.startswith("nothing to clear") and out.err == ""

    own_cache.mkdir()
    for name in (f"jit_a-{'1' * 64}-cache", f"jit_b-{'2' * 64}-cache"):
        (own_cache / name).write_bytes(b"x" * 1000)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "entries: 2 compiled programs, 0 derivations, 0 traced programs, 0 stored results" in out
    assert "size: 2.0 KiB" in out
    assert main(["cache", "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert compilation_cache.cache_entries(own_cache) == [] and own_cache.is_dir()


def test_cache_clear_counts_one_entry_in_the_singular(own_cache, capsys):
    # Can fail: it printed "kept 1 other entries".
    own_cache.mkdir()
    (own_cache / f"jit_a-{'0123456789abcdef' * 4}-cache").write_text("x")
    (own_cache / "notes.txt").write_text("x")
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 entry from" in out and "kept 1 other entry there, which the cache did not write" in out


def test_cache_clear_removes_only_what_the_cache_wrote(own_cache, capsys):
    # Can fail: `cache clear` removed every file in the folder, so a cache location pointed at a
    # folder of the user's (ATTNVERIFY_CACHE_DIR=$HOME, say) lost the user's files.
    own_cache.mkdir()
    key, short = "0123456789abcdef" * 4, "0123456789abcdef" * 2
    cache = [f"jit_a-{key}-cache", f"jit_a-{key}-atime", f"derive-{short}.sympy.pickle", f"{short}.jaxexport",
             f"figure-fig1-{short}.result.pickle", ".attnverify-tmp-99-x"]
    mine = ["notes.txt", "model.npz", "results-cache.txt", "pip-cache", "my-notes.sympy.pickle", ".lockfile"]
    for name in cache + mine:
        (own_cache / name).write_text("x")
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 4 entries" in out and "kept 5 other entries there, which the cache did not write" in out
    assert sorted(p.name for p in own_cache.iterdir()) == sorted(mine)
    assert main(["cache", "info"]) == 0 and "size: 0 B" in capsys.readouterr().out  # the user's files: not counted


def test_a_blank_cache_location_is_warned_of_and_makes_no_folder(own_cache, capsys, monkeypatch, tmp_path):
    # Can fail: ATTNVERIFY_CACHE_DIR=" " made a folder named " " in the working folder and cached there.
    monkeypatch.setenv(compilation_cache.ENV_VAR, " ")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["spec", "--max-len", "8"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["attnverify: warning: compilation cache folder ' ' is blank; compiling without it"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_cache_location_that_is_a_file(own_cache, capsys):
    own_cache.write_text("not a folder")
    for action in ("info", "clear"):
        assert main(["cache", action]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("attnverify: error: ") and "is a file" in err[0]
    assert own_cache.read_text() == "not a folder"  # clear never touches a file
    # Any other command runs without the cache, after one warning line.
    assert main(["spec", "--max-len", "8"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"attnverify: warning: compilation cache {own_cache} is a file, not a folder; "
                   "compiling without it"]
    import jax

    assert not jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir is None


def test_an_unwritable_cache_location_falls_back_to_no_cache(own_cache, capsys, monkeypatch):
    blocker = own_cache.parent / "blocker"
    blocker.write_text("")
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(blocker / "xla"))  # cannot be created
    assert main(["spec", "--max-len", "8"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attnverify: warning: cannot create compilation cache folder")
    # `cache info` reports the location as unusable (it said "does not exist yet", exit 0), creating nothing.
    assert main(["cache", "info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"attnverify: error: cannot create compilation cache folder {blocker / 'xla'}: {blocker} is a file"]
    assert not (blocker / "xla").exists()


def test_a_cache_location_that_is_not_utf8_falls_back_to_no_cache(own_cache, capsys, monkeypatch):
    # Can fail: a byte that is not UTF-8 in $ATTNVERIFY_CACHE_DIR (or $XDG_CACHE_HOME) reached JAX's
    # option bindings, and every command ended in a 36-line TypeError.
    bad = str(own_cache.parent / "xla\udcff")  # as Python reads the byte 0xff from the environment
    monkeypatch.setenv(compilation_cache.ENV_VAR, bad)
    assert main(["spec", "--max-len", "8"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"attnverify: warning: compilation cache folder {bad!r} is not UTF-8 text; compiling without it"]


def test_a_cache_under_a_folder_that_cannot_be_searched_falls_back_to_no_cache(own_cache, capsys, monkeypatch):
    # Can fail: under a chmod-000 parent Path.exists raised PermissionError, and every command stopped
    # with "error: ...: Permission denied" (exit 2) instead of compiling without the cache. The
    # permission is simulated: the tests may run as root, whom chmod does not stop.
    hidden = own_cache.parent / "locked" / "xla"
    real_exists = Path.exists

    def exists(path, *args, **kwargs):
        if path == hidden:
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(hidden))
    assert main(["spec", "--max-len", "8"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"attnverify: warning: cannot reach compilation cache folder {hidden}: Permission denied; "
                   "compiling without it"]


def test_no_cache_turns_the_cache_off_and_it_comes_back(own_cache, capsys):
    import jax

    assert main(["spec", "--no-cache"]) == 0
    assert not jax.config.jax_enable_compilation_cache
    assert main(["spec"]) == 0
    assert jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir == str(own_cache)
    assert capsys.readouterr().err == ""


def test_every_command_takes_no_cache():
    import argparse

    from attnverify.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "cache" in commands and len(commands) > 5
    for name, sub in commands.items():
        assert any("--no-cache" in action.option_strings for action in sub._actions), name

