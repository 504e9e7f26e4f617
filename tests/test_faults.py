"""Faults end to end: bad input, unwritable paths, sizes too big for memory, full disks, two
sweeps into one folder, interrupted sweeps, damaged results folders. Each ends in the right
result or one ``attnverify: error:`` line with exit code 2: no traceback, no partial file, no
mixed results.

Pure validation runs `attnverify.cli.main` in this process (no JAX start-up per case); only
signals and a second concurrent process need subprocesses. Sizes are tiny throughout.
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, cli

from attnverify.cli import main

_BESIDE = Path(sys.executable).with_name("attnverify")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("attnverify")
TINY = ["--max-len", "4", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "2"]
MODEL = ["--max-len", "8", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "2", "--vocab-size", "40"]
SWEEP = ["verify", "thm1.gradient", "--trials", "256", "--chunk-size", "128", "--quiet", *TINY]
TEXT = "attention based explanations are popular"


def temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob(".attnverify-tmp-*"))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.npz"
    assert main(["init-model", "--out", str(path), *MODEL]) == 0
    return path


@pytest.fixture(scope="module")
def huge_weights(model) -> Path:
    """A model whose finite weights (~1e299) overflow every product: explanations would be NaN."""
    with np.load(model) as data:
        content = dict(data)
    for name in ("W_q", "W_k", "W_v", "W_l"):
        content[name] = content[name] / np.abs(content[name]).max() * 1e299
    path = model.with_name("huge.npz")
    np.savez(path, **content)
    return path


# -- bad input, refused before any work: one line, exit 2, nothing written -----------------------
def validation_cases(tmp: Path, model: Path, huge: Path) -> list[tuple[list, str]]:
    folder, file = tmp / "a-folder", tmp / "a-file"
    folder.mkdir(exist_ok=True)
    file.write_text("x")
    (tmp / "v_bin.txt").write_bytes(b"good words \xff\xfe bad")
    (tmp / "v_dup.txt").write_text("alpha beta alpha")
    (tmp / "v_up.txt").write_text("alpha Beta")
    (tmp / "v_few.txt").write_text("alpha beta gamma")
    out = tmp / "new.npz"
    # links written through (atomic_write replaces the target): one into a missing folder, one under a file
    dangling, under_file = tmp / "dangling.json", tmp / "m2.metrics.json"
    for link, target in ((dangling, tmp / "nodir" / "x"), (under_file, file / "x")):
        if not link.is_symlink():
            link.symlink_to(target)
    return [
        # output paths that are folders, empty, unwritable or under a file: refused before the work
        (["init-model", "--out", folder, *MODEL], "is a folder, not a file"),
        (["init-model", "--out", "", *MODEL], "the path is empty"),
        (["init-model", "--out", "/proc/x.npz", *MODEL], "cannot write in /proc"),
        (["init-model", "--out", file / "x.npz", *MODEL], "is a file, not a folder"),
        # an output over the plugin or claims module the command reads (before: replaced, exit 0)
        (["init-model", "--out", file, "--plugin", file, *MODEL], f"--out {file}: is the file --plugin reads"),
        ([*SWEEP, "--plugin", file, "--json", file], f"--json {file}: is the file --plugin reads"),
        (["verify", "my.claim", "--claims-module", file, "--json", file], "is the file --claims-module reads"),
        # before: refused only once written, after the sweep, the run or the training (its model file left)
        ([*SWEEP, "--json", dangling], f"--json {dangling} (a link to {tmp / 'nodir' / 'x'}): folder"),
        (["sweep-eq19", "--csv", dangling, "--quiet"], "(a link to"),
        (["bench", "scaling", "--quick", "--json", dangling], "(a link to"),
        (["train", "--data", "synthetic:64", "--out", tmp / "m2.npz", "--quiet", *MODEL],
         f"--out (its metrics file) {under_file} (a link to {file / 'x'}): {file} is a file, not a folder"),
        ([*SWEEP, "--json", folder], "--json"),
        ([*SWEEP, "--json", "/proc/x.json"], "cannot write in /proc"),
        ([*SWEEP, "--out", file], "exists and is not a folder"),
        ([*SWEEP, "--out", "/proc/sweep"], "cannot write in /proc"),
        (["train", "--data", "synthetic:64", "--out", folder, "--quiet", *MODEL], "is a folder, not a file"),
        (["figures", "fig5", "--model", model, "--out", "/proc/figs"], "cannot write in /proc"),
        (["report", "--out", "/proc/report", "--model", model, "--claims", "thm1.gradient", *TINY], "/proc"),
        (["report", "--out", file, "--model", model, *TINY], "exists and is not a folder"),
        (["sweep-eq19", "--csv", folder, "--quiet"], "is a folder, not a file"),
        (["bench", "--json", "/proc/b.json"], "cannot write in /proc"),
        # numbers: finite and in range, checked before anything is computed or written
        (["init-model", "--out", out, "--scale", "nan", *MODEL], "--scale must be a finite number"),
        (["init-model", "--out", out, "--scale", "inf", *MODEL], "--scale must be a finite number"),
        (["init-model", "--out", out, "--scale", "1e300", *MODEL], "outside float range"),
        # finite, but a product of two overflows: written, then refused by every command
        (["init-model", "--out", out, "--scale", "1e100", "--sizes", "small"], "a product of two would leave"),
        (["init-model", "--out", out, "--seed", "-1", *MODEL], "--seed must be in 0..4294967295"),
        (["init-model", "--out", out, "--draw", "-1", *MODEL], "--draw must be in 0..4294967295"),
        (["init-model", "--out", out, "--dtype", "float32", *MODEL], "--dtype applies to `init-model --draw`"),
        (["init-model", "--out", out, "--draw", "0", "--vocab", tmp / "v_few.txt"], "--vocab: a sweep's draw"),
        (["train", "--data", "synthetic:64", "--out", out, "--lr", "inf", "--quiet", *MODEL], "--lr"),
        (["train", "--data", "synthetic:64", "--out", out, "--epochs", "0", "--quiet", *MODEL], "--epochs"),
        (["train", "--data", "synthetic:64", "--out", out, "--epochs", str(10**20), "--quiet", *MODEL],
         "--epochs must be in 1..10000"),
        ([*SWEEP, "--scale", "1e300"], "outside float range"),
        # the model's compiled program (the one the sweep runs) gives NaN at draw 0; computed operation
        # by operation the logits were finite (5.97e197), and every draw of the sweep was NaN
        ([*SWEEP, "--scale", "1e100"], "the logits are NaN, outside the float64 range"),
        ([*SWEEP, "--scale", "1e15", "--dtype", "float32"], "outside the float32 range"),
        # an underflowing gradient: both sides of every identity 0, each PASS with an error of 0
        ([*SWEEP, "--scale", "1e-300"], "products of such numbers underflow to 0"),
        (["sweep-eq19", "--d", "3", "--draws", "1", "--scale", "1e-300", "--quiet"], "underflow to 0"),
        # written before, and `explain` then printed every explanation as exactly 0 (the truth ~1e-400)
        (["init-model", "--out", out, "--scale", "1e-200", "--sizes", "small"], "underflow to 0"),
        (["train", "--data", "synthetic:64", "--out", out, "--lr", "1e300", "--quiet", *MODEL], "--lr must be <= 1000"),
        ([*SWEEP, "--seed", str(2**64)], "--seed must be in 0..4294967295"),
        (["report", "--out", tmp / "r", "--model", model, "--jobs", str(10**9), *TINY], "--jobs must be in 1..1024"),
        (["explain", "--model", model, "--text", TEXT, "--lime-samples", "50", "--nu", "nan"], "--nu"),
        (["related", "adversarial", "--model", model, "--text", TEXT, "--epsilon", "nan"], "--epsilon"),
        # a flag the analysis would ignore (the user believed it applied)
        (["related", "gumbel", "--model", model, "--text", TEXT, "--epsilon", "0.1"],
         "--epsilon applies to `related adversarial`, not `related gumbel`"),
        (["related", "protocol", "--model", model, "--text", TEXT, "--head", "1"], "--head applies to"),
        (["related", "fiber", "--model", model, "--text", TEXT, "--seed", "5"],
         "--seed applies to `related adversarial / gumbel`, not `related fiber`"),
        (["related", "protocol", "--model", model, "--text", "movie"], "needs at least 2 words"),
        # a spec size the grid replaces at every point (the table showed the grid's, silently)
        (["sweep-eq19", "--d", "5", "--T", "20", "--max-len", "30", "--quiet"], "--max-len: the grid's --T sets"),
        (["sweep-eq19", "--d", "5", "--K", "2", "--heads", "3", "--quiet"], "--heads: the grid's --K sets"),
        # --no-cache where nothing reads it: `cache clear` cleared the cache all the same; `bench cache` ignored it
        (["cache", "clear", "--no-cache"], "--no-cache: `cache clear` reads or empties the cache folder"),
        (["bench", "cache", "--quick", "--no-cache"], "--no-cache: bench cache measures with compilation caches"),
        # a subnormal temperature is 0 to XLA: "entropy_by_temperature.5e-324 is NaN" after the work, before
        (["related", "gumbel", "--model", model, "--text", TEXT, "--temperature", "5e-324"],
         "tau must be at least 2.22507e-308, the smallest normal float64"),
        (["derive", "lime", "--d", "10000"], "--d must be in 2..2000"),
        (["sweep-eq19", "--words-per-feature", "nan", "--quiet"], "--words-per-feature"),
        # sizes whose arrays cannot fit: refused with the bytes they need, not an abort
        (["init-model", "--out", out, "--vocab-size", str(10**11)], "needs at least"),
        (["init-model", "--out", out, "--d-embed", str(10**10)], "needs at least"),
        ([*SWEEP[:-len(TINY)], *TINY[2:], "--max-len", str(10**7)], "needs at least"),
        (["explain", "--model", model, "--text", TEXT, "--lime-samples", str(10**12)], "--lime-samples"),
        # models whose outputs leave the float range; vocabularies that cannot match
        (["explain", "--model", huge, "--text", TEXT, "--json"], "outside float range"),
        (["related", "adversarial", "--model", huge, "--text", TEXT], "outside float range"),
        # the figures and a report's figures too (before: fig1 a traceback, fig3 and fig5 nulls with exit 0,
        # fig4 "Sigma is numerically singular ... use a wider kernel")
        *[(["figures", name, "--model", huge, "--out", tmp / "figs", "--text", TEXT],
           f"figure {name}: the model on this text: the logits are NaN") for name in ("fig1", "fig3", "fig4", "fig5")],
        (["report", "--out", tmp / "r", "--model", huge, "--claims", "thm1.gradient", "--figures", "fig5", *TINY],
         "figure fig5: the model on this text: the logits are NaN"),
        (["init-model", "--out", out, "--vocab", tmp / "v_bin.txt", "--vocab-size", "4"], "not UTF-8"),
        (["init-model", "--out", out, "--vocab", tmp / "v_dup.txt"], "appears twice"),
        (["init-model", "--out", out, "--vocab", tmp], "is a folder, not a vocabulary file"),
        # a pipe or a device is not "missing" (before: "no such model file", "no such file", "no such claims module")
        (["explain", "--model", "/dev/zero", "--text", TEXT], "/dev/zero: is not a regular file"),
        (["claims", "--plugin", "/dev/null"], "/dev/null: is not a regular file"),
        (["claims", "--claims-module", "/dev/null"], "/dev/null: is not a regular file"),
        (["init-model", "--out", out, "--vocab", tmp / "v_up.txt"], "can never match"),
        (["figures", "fig5", "--model", model, "--out", tmp / "figs", "--text", "a $x^ b"], "cannot be drawn"),
        # a byte that is not UTF-8 (as Python reads argv): matplotlib's 70-line traceback
        (["figures", "fig5", "--model", model, "--out", tmp / "figs", "--text", "based \udcff b"],
         "--text: is not UTF-8 text, which cannot be drawn"),
        # a text without a word for a report's figure: a traceback and exit 1 after the claims, before
        (["report", "--out", tmp / "r", "--model", model, "--claims", "thm1.gradient", "--figures", "fig1",
          "--text", "!!!", *TINY], "figure fig1: the text '!!!' has no words"),
        # a vocabulary too small for the synthetic tasks: "synthetic tasks need vocab_size >= 11", naming no flag,
        # when the first claim that trains was built, after the claims before it had run and written their results
        (["verify", "theorem1", "info.miller_madow", "--vocab-size", "8", "--trials", "8", "--quiet", "--out",
          tmp / "o"], "claim info.miller_madow: the synthetic tasks (task 'planted', which claims of the groups"),
        # blank: the one-line error folded its spaces and echoed it as ' '
        (["figures", "fig5", "--model", model, "--out", tmp / "figs", "--text", "   "],
         "figure fig5: the text of 3 whitespace characters has no words"),
        # fig4 compares LIME with its limit, undefined for one word: a traceback and exit 1 in a report
        (["report", "--out", tmp / "r", "--model", model, "--claims", "thm1.gradient", "--figures", "fig4",
          "--text", "good good", *TINY], "figure fig4: the text 'good good' has one distinct word"),
        (["figures", "fig4", "--model", model, "--out", tmp / "figs", "--text", "good"], "has one distinct word"),
        # ... within the model's window (8 tokens: [CLS] and 7 words), not the text's
        (["report", "--out", tmp / "r", "--model", model, "--claims", "thm1.gradient", "--figures", "fig4",
          "--text", "good " * 7 + "bad", *TINY], "has one distinct word in the model's window of 7 words"),
        # flags that changed nothing: what was drawn, trained on or compared was the same without them
        (["figures", "fig5", "--model", model, "--out", tmp / "figs", "--seed", "3"], "--seed: fig5 does not read it"),
        (["figures", "eq19_nu", "--out", tmp / "figs", "--text", "a b"], "--text: eq19_nu does not read it"),
        (["figures", "thm1_hist", "--out", tmp / "figs", "--model", model], "--model: thm1_hist does not read it"),
        (["figures", "--list", "fig1"], "--list lists every figure and draws none: not with figure names"),
        (["figures", "fig5", "architecture", "--model", model, "--out", tmp / "figs", "--quick"],
         "--quick: fig5, architecture do not read it"),
        (["report", "--out", tmp / "r", "--model", model, "--claims", "thm1.gradient", "--figures", "eq19_nu",
          "--text", "a b", *TINY], "--text: eq19_nu does not read it"),
        (["report", "--out", tmp / "r", "--model", model, "--data", "synthetic:64", *TINY],
         "--data is the corpus a report trains on when it has no model: not with --model"),
        (["related", "adversarial", "--model", model, "--text", TEXT, "--epsilon", "0.01", "0.010"],
         "--epsilon 0.01 is given twice"),
        (["train", "--data", "synthetic:", "--out", out, "--quiet", *MODEL], "synthetic:N needs an integer N"),
        (["explain", "--model", "", "--text", TEXT], "the model path is empty"),
        (["explain", "--model", tmp, "--text", TEXT], "is a folder, not a model file"),
        (["explain", "--model", model, "--text", TEXT, "--lime-samples", "50", "--lime-limit-samples", "99"],
         "--lime-limit-samples: the limit at d = 5 is enumerated exactly (32 masks)"),
        (["sweep-eq19", "--d", "3", "--mc-samples", "99", "--quiet", *MODEL],
         "--mc-samples: every d of the grid is enumerated exactly"),
        # a ZeroDivisionError traceback: 16 batches of 0 masks
        (["sweep-eq19", "--d", "20", "--T", "24", "--removal", "replace", "--mc-samples", "5", "--quiet", *MODEL[2:]],
         "--mc-samples: the Monte-Carlo limit at d = 20 needs at least 336 samples"),
        # a traceback: SymPy's Float could not format an exponent of 600 digits
        (["derive", "lime", "--nu", "1e-300", "--d", "3"], "(alpha_0 far below 1e-308, sigma_0 far above 1e+308)"),
        (["sweep-eq19", "--nu", "0.25", "0.25", "--quiet", *MODEL], "--nu 0.25 is given twice"),
        (["sweep-eq19", "--d", "3", "--scale", "1e300", "--quiet", *MODEL], "--scale 1e+300 (float64, draw 0)"),
        # a size the user never gave, named as the one at fault
        (["init-model", "--out", out, "--vocab", tmp / "v_few.txt", "--sizes", "small"],
         "--sizes small (a vocabulary of 64; pass --vocab-size) exceeds the 5 entries"),
        # a typo beside `all` ran everything and exited 0
        (["verify", "all", "nosuch", "--quiet"], "unknown claim or group 'nosuch'"),
        (["bench", "all", "nosuch", "--quick"], "unknown benchmark 'nosuch'"),
        (["figures", "all", "nosuch", "--out", tmp / "figs"], "unknown figure 'nosuch'"),
        (["figures", "all", "fig5", "--out", tmp / "figs"], "'all' runs every figure: not with 'fig5'"),
        (["bench", "all", "theorem1", "--quick"], "'all' runs every benchmark: not with 'theorem1'"),
    ]


def test_bad_input_is_refused_before_any_work(tmp_path, capsys, model, huge_weights):
    failures = []
    for argv, fragment in validation_cases(tmp_path, model, huge_weights):
        made = sorted(tmp_path.rglob("*"))
        code, _, err = cli(capsys, *argv)
        try:
            assert_one_line_error(code, err, fragment)
            assert sorted(tmp_path.rglob("*")) == made, "a file or folder was left behind"
        except AssertionError as failure:
            failures.append(f"{' '.join(map(str, argv))}: {failure}")
    assert not failures, "\n".join(failures)
    assert not temporaries(tmp_path)


def test_lime_claims_on_a_spec_of_one_distinct_word_name_the_flags_that_made_it(capsys):
    # Can fail: the refusal was LIME's own, "LIME: d = 1: every LIME sample removes the only word, ...", which
    # named neither the claims nor the flag (--vocab-size 3: one word besides [CLS] and UNK).
    code, _, err = cli(capsys, "verify", "lime.sigma_inverse", "--trials", "2", "--vocab-size", "3", "--quiet")
    assert_one_line_error(code, err, "the LIME claims' documents have d = min(6, T - 1, V - 2) = 1 distinct word at "
                                     "--max-len 16, --vocab-size 3")


def test_a_figure_no_text_can_feed_is_refused_before_the_claims(tmp_path, capsys):
    # Can fail: with a model that reads one word (T = 2) a report checked fig4's words only for a --text it
    # was given: without one, its claims ran, then fig4 "could not be drawn" and the report exited 1.
    model = tmp_path / "t2.npz"
    assert main(["init-model", "--out", str(model), "--max-len", "2", *MODEL[2:]]) == 0
    capsys.readouterr()
    made = sorted(tmp_path.rglob("*"))
    for argv in (["report", "--model", model, "--claims", "thm1.gradient", "--trials", "2", "--out", tmp_path / "r",
                  "--figures", "fig4", "fig5"],
                 ["figures", "fig4", "--model", model, "--out", tmp_path / "figs"]):
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, "figure fig4: a model of T = 2 reads 1 word of a text")
        assert sorted(tmp_path.rglob("*")) == made


@pytest.mark.parametrize("argv, message", [
    # argparse kept the last: b was explained alone, 0.2 swept alone, the model drawn with biases off
    (["explain", "--model", "m.npz", "--text", "a", "--tex=b"], "explain: error: argument --text: given twice; "
                                                                 "give it once"),
    (["sweep-eq19", "--nu", "0.1", "--nu", "0.2"], "sweep-eq19: error: argument --nu: given twice; give it once, "
                                                   "with all its values"),
    (["verify", "--biases", "--no-biases"], "verify: error: argument --no-biases: given twice (as --biases); "
                                            "give it once"),
    (["report", "--out", "r", "--no-cache", "--no-cache"], "report: error: argument --no-cache: given twice; "
                                                          "give it once"),
])
def test_a_flag_given_twice_is_refused(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err == f"attnverify {message}\n" and not any(tmp_path.iterdir()), err


# -- finite results, strict JSON -------------------------------------------------------------------
def test_json_output_is_strict_with_the_reason_beside_each_null(tmp_path):
    from attnverify.cli_support import write_json

    path = tmp_path / "r.json"
    write_json(str(path), [{"max_error": float("inf"), "quantiles": {"p50": float("nan"), "p90": 1.0},
                            "errors": [0.5, float("-inf")]}])
    text = path.read_text()
    data = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON token {token}"))
    assert data[0]["max_error"] is None and data[0]["max_error_non_finite"] == "+inf"
    assert data[0]["quantiles"] == {"p50": None, "p50_non_finite": "NaN", "p90": 1.0}
    assert data[0]["errors"] == [0.5, None] and data[0]["errors_non_finite"].startswith("[1] -inf")


def test_a_non_finite_result_names_the_quantity():
    from attnverify.errors import InputError
    from attnverify.validate import require_finite

    require_finite({"logit": 1.0, "grad": [0.0, 2.0]}, "explain")
    with pytest.raises(InputError, match=r"explain: grad\[1\] is NaN"):
        require_finite({"logit": 1.0, "grad": [0.0, float("nan")]}, "explain")


def test_every_accepted_seed_works_and_seeds_do_not_alias(tmp_path, capsys):
    paths = {seed: tmp_path / f"s{seed}.npz" for seed in (0, 2**32 - 1)}
    for seed, path in paths.items():
        assert cli(capsys, "init-model", "--out", path, "--seed", seed, *MODEL)[0] == 0
    with np.load(paths[0]) as a, np.load(paths[2**32 - 1]) as b:
        assert not np.array_equal(a["W_q"], b["W_q"])
    assert_one_line_error(*cli(capsys, "init-model", "--out", tmp_path / "x.npz", "--seed", 2**32, *MODEL)[::2],
                          "--seed must be in 0..4294967295")


# -- files: no partial file, whatever stops the write ------------------------------------------------
@contextmanager
def file_size_limit(limit: int):
    """Writes past `limit` bytes fail (EFBIG) as on a full disk; this process only, restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_leaves_no_partial_file(tmp_path, capsys):
    out = tmp_path / "model.npz"
    with file_size_limit(4096):
        code, _, err = cli(capsys, "init-model", "--out", out, "--no-cache")  # the paper's sizes: megabytes
    assert_one_line_error(code, err, "nothing was left half-written")
    assert not out.exists() and not temporaries(tmp_path)


def test_a_command_started_with_its_output_streams_closed_still_runs(tmp_path):
    # Can fail: started with stderr closed (`2>&-`), `verify` raised at its first progress bar
    # (Python's sys.stderr is None then) and ended with exit code 1 and no word anywhere.
    out = tmp_path / "results.json"
    proc = subprocess.run(["sh", "-c", 'exec "$0" "$@" >&- 2>&-', EXE, "verify", "thm1.gradient", "--trials", "1",
                           "--json", str(out)], timeout=300)
    assert proc.returncode == 0 and [r["verdict"] for r in json.loads(out.read_text())] == ["pass"]


def test_a_full_disk_during_a_sweep_keeps_whole_records_only(tmp_path, capsys):
    folder = tmp_path / "sweep"
    with file_size_limit(2048):  # the manifest fits, the first record (~3 KB) does not
        code, _, err = cli(capsys, *SWEEP, "--out", folder, "--no-cache")  # no compilation-cache writes either
    assert_one_line_error(code, err, "results.jsonl")
    assert (folder / "manifest.json").is_file() and (folder / "results.jsonl").read_bytes() == b""
    assert cli(capsys, *SWEEP, "--out", folder, "--resume")[0] == 0  # and the sweep can go on


def test_files_written_together_are_all_new_or_all_as_they_were(tmp_path):
    # Can fail: each file was renamed as soon as it was written, so a run stopped between two of
    # them left one file of the new run beside the others of the old one.
    from attnverify.numerics.modelfile import atomic_write, written_together

    paths = [tmp_path / "a.json", tmp_path / "b.png"]
    for path in paths:
        path.write_text("old")
    with pytest.raises(KeyboardInterrupt), written_together():
        atomic_write(paths[0], lambda tmp: Path(tmp).write_text("new"))
        assert paths[0].read_text() == "old"  # not renamed yet
        raise KeyboardInterrupt  # stopped before the second file
    assert [p.read_text() for p in paths] == ["old", "old"] and not temporaries(tmp_path)
    with written_together():
        for path in paths:
            atomic_write(path, lambda tmp: Path(tmp).write_text("new"))
    assert [p.read_text() for p in paths] == ["new", "new"] and not temporaries(tmp_path)


def test_a_signal_during_the_renames_is_held_until_they_are_done(default_signals):
    # Can fail: a Ctrl-C between two renames of `written_together` split the files of one figure.
    from attnverify.interrupts import signals_held

    reached = False
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # Python would run the handler here, at the next instruction
            reached = True
        time.sleep(1)  # the held signal is sent again as the block ends
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_figure_stopped_while_drawn_leaves_the_earlier_run_s_files(tmp_path, capsys, monkeypatch):
    # Can fail: a figure's data file was renamed into place before the figure was drawn, so a
    # run stopped while drawing left the new data beside the earlier run's images.
    from attnverify.figures import architecture

    out = tmp_path / "figs"
    assert cli(capsys, "figures", "architecture", "--out", out)[0] == 0
    before = {p.name: p.stat().st_ino for p in out.iterdir()}

    def stopped(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(architecture, "draw", stopped)
    assert cli(capsys, "figures", "architecture", "--out", out)[0] == 130
    assert {p.name: p.stat().st_ino for p in out.iterdir()} == before


def test_a_write_stopped_by_a_signal_leaves_no_temporary(tmp_path):
    from attnverify.numerics.modelfile import atomic_write

    def interrupted(tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt  # what SIGINT, and SIGTERM under the CLI, raise

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.json", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_write_through_a_symbolic_link_replaces_its_target_and_keeps_the_link(tmp_path):
    # Can fail: the rename replaced the link itself with a file, leaving its target as it was (and,
    # run as root with --json /dev/stdout redirected to a file, replaced /dev/stdout).
    from attnverify.numerics.modelfile import atomic_write

    from attnverify.errors import InputError

    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target.name)
    atomic_write(link, lambda tmp: Path(tmp).write_text("new"))
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made.json")
    atomic_write(dangling, lambda tmp: Path(tmp).write_text("made"))
    assert dangling.is_symlink() and (tmp_path / "made.json").read_text() == "made"
    to_folder = tmp_path / "folder.json"
    to_folder.symlink_to(tmp_path)
    with pytest.raises(InputError, match="which is not a regular file"):
        atomic_write(to_folder, lambda tmp: Path(tmp).write_text("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.json", "folder.json", "link.json", "made.json",
                                                          "target.json"]


def test_a_swallowed_ctrl_c_is_delivered_again(default_signals):
    # JAX swallows a KeyboardInterrupt in a bare `except:` or a gc callback; a Ctrl-C must still stop
    # the command (it used to run to its end and exit 0).
    from attnverify.interrupts import Interrupts

    swallowed, stopped = 0, False
    with Interrupts() as interrupts:
        try:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                deadline = time.time() + 30
                while time.time() < deadline:  # the handler raises here, whichever thread got the signal ...
                    time.sleep(0.01)
            except:  # noqa: E722  (... and a library swallows it)
                swallowed += 1
            deadline = time.time() + 10
            while time.time() < deadline:
                time.sleep(0.01)
        except KeyboardInterrupt:
            stopped = True
            interrupts.acknowledge()
    assert swallowed == 1 and stopped and interrupts.received == signal.SIGINT


HUNG = """
import ctypes, signal
from attnverify.interrupts import Interrupts
with Interrupts():
    # The signal reaches another thread (as when JAX's threads run) and the main thread waits in a
    # call that does not return to Python, as in a hung compiled program (numerics/known_defects.py).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    print("waiting", flush=True)
    ctypes.CDLL(None).poll(None, 0, 120000)
print("returned", flush=True)
"""


def _wait_until_blocked_in_poll(pid: int, timeout: float = 20.0) -> None:
    """Waits until the process's main thread sleeps in the kernel's poll (Linux: /proc/PID/wchan)."""
    wchan = Path(f"/proc/{pid}/wchan")
    if not wchan.exists():
        pytest.skip("needs Linux's /proc/PID/wchan to know when the main thread is blocked")
    deadline, seen = time.monotonic() + timeout, set()
    while "poll" not in (where := wchan.read_text()):
        seen.add(where)
        if time.monotonic() > deadline:
            if seen <= {"0", ""}:  # a kernel that hides wait channels
                pytest.skip("this kernel does not show where a thread waits (/proc/PID/wchan)")
            pytest.fail(f"the main thread never blocked in poll; it waited in {sorted(seen)}")
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_command_whose_main_thread_never_returns(signum, default_signals):
    # Before the watcher thread, the signal's handler never ran and the process waited the full 120 s.
    from attnverify.interrupts import GRACE_S

    proc = subprocess.Popen([sys.executable, "-c", HUNG], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "waiting\n"
    # Signal only once the main thread is inside poll(2): signalled between the print and the call
    # (a loaded machine), the main thread still runs Python and stops for the signal at once, and
    # the watcher is never exercised (CI saw exit 1 after 0.02 s).
    _wait_until_blocked_in_poll(proc.pid)
    start = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=100)
    waited = time.monotonic() - start
    assert proc.returncode == 128 + signum and "returned" not in out
    assert GRACE_S - 0.5 <= waited < 90, waited  # not the poll's 120 s (a loaded machine may take longer than 5 s)
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert err.splitlines() == [f"attnverify: {word} (the running computation did not stop within "
                                f"{GRACE_S:g} s; leaving without it)"], err


def test_temporaries_of_killed_writers_are_swept_up(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".attnverify-tmp-{dead.stdout.strip()}-m.npz.abc123.npz"  # left by a SIGKILL
    live = tmp_path / f".attnverify-tmp-{os.getppid()}-m.npz.def456.npz"  # a running writer's
    stale.write_bytes(b"\0" * 1000)
    live.write_bytes(b"\0" * 1000)
    assert cli(capsys, "init-model", "--out", tmp_path / "m.npz", *MODEL)[0] == 0
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("case", ["vocab", "data", "data-metrics", "json-csv", "json-figure", "linked"])
def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path, capsys, monkeypatch, case):
    # Can fail: `init-model --vocab v.txt --out v.txt` replaced the word list with the model, `train
    # --data csv:d.csv --out d.csv` the training data, and `--json s.json --csv s.json` one output by the other.
    monkeypatch.chdir(tmp_path)
    Path("v.txt").write_text(" ".join(f"w{j}" for j in range(40)))
    Path("d.csv").write_text("text,label\nw1 w2,0\nw3 w4,1\n")
    Path("d.metrics.json").write_text("text,label\nw1 w2,0\nw3 w4,1\n")  # a CSV by an unlucky name
    os.link("v.txt", "hard.txt")
    small = [*MODEL[:-2], "--vocab-size", "12"]
    args, fragment = {
        "vocab": (["init-model", *small, "--vocab", "v.txt", "--out", "./v.txt"],
                  "--out ./v.txt: is the file --vocab reads"),
        "linked": (["init-model", *small, "--vocab", "v.txt", "--out", "hard.txt"], "is the file --vocab reads"),
        "data": (["train", *small, "--data", "csv:d.csv", "--out", "d.csv"], "--out d.csv: is the file --data reads"),
        "data-metrics": (["train", *small, "--data", "csv:d.metrics.json", "--out", "d"],
                         "--out (its metrics file) d.metrics.json: is the file --data reads"),
        "json-csv": (["sweep-eq19", *small, "--d", "2", "--json", "s.json", "--csv", "s.json"],
                     "--csv s.json: is also --json's file"),
        "json-figure": (["bench", "--quick", "scaling", "--json", "b.png", "--figure", "b.png"],
                        "--figure b.png: is also --json's file"),
    }[case]
    before = sorted(os.listdir())
    code, _, err = cli(capsys, *args)
    assert_one_line_error(code, err, fragment)
    assert sorted(os.listdir()) == before and Path("v.txt").read_text().startswith("w0")


def test_bench_refuses_a_figure_of_benchmarks_it_cannot_plot_before_running_them(tmp_path, capsys):
    code, _, err = cli(capsys, "bench", "--quick", "theorem1", "--json", tmp_path / "b.json", "--figure",
                       tmp_path / "b.png")
    assert_one_line_error(code, err, "--figure plots the scaling, devices, lime benchmarks")
    assert list(tmp_path.iterdir()) == []


def test_a_reused_report_folder_sets_the_earlier_report_aside_and_can_put_it_back(tmp_path, capsys):
    from attnverify.preflight import EarlierReport

    (tmp_path / "figures").mkdir()
    old = [tmp_path / "report.html", tmp_path / "figures" / "fig3.png", tmp_path / "figures" / "fig3.json"]
    kept = [tmp_path / "model.npz", tmp_path / "notes.txt", tmp_path / "figures" / "mine.png"]
    for path in old + kept:
        path.write_text("earlier run")
    earlier = EarlierReport(tmp_path, ["fig1", "fig3"]).set_aside()
    assert all(p.exists() for p in kept) and not any(p.exists() for p in old)
    (tmp_path / "report.html").write_text("new run")  # the new report's, half-written
    earlier.restore()
    assert all(p.read_text() == "earlier run" for p in old + kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "model.npz", "notes.txt", "report.html"]

    earlier = EarlierReport(tmp_path, ["fig1", "fig3"]).set_aside()
    earlier.discard()  # the new report is written: the earlier one goes, hidden folder and all
    assert "held an earlier report; its 3 files were removed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "model.npz", "notes.txt"]
    assert all(p.exists() for p in kept)


def test_an_earlier_report_a_killed_run_set_aside_is_put_back_by_the_next(tmp_path, capsys):
    # Can fail: a run killed while the earlier report was set aside left it hidden for good; and,
    # put back beside the killed run's figure of the same name, the folder showed the earlier pages
    # with the killed run's figure (the earlier figure stayed hidden, through every later report).
    from attnverify.preflight import EarlierReport

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stash = tmp_path / f".attnverify-tmp-{dead.stdout.strip()}-earlier-report"
    (stash / "figures").mkdir(parents=True)
    (stash / "report.html").write_text("earlier")
    (stash / "figures" / "fig3.png").write_text("earlier")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig3.png").write_text("killed run's")
    assert EarlierReport(tmp_path, ["fig3"]).recover() == 2
    assert (tmp_path / "report.html").read_text() == "earlier"
    assert (tmp_path / "figures" / "fig3.png").read_text() == "earlier"
    assert "put back 2 files of an earlier report" in capsys.readouterr().err
    assert not stash.exists()


def test_an_earlier_report_a_finished_run_was_removing_is_not_put_back(tmp_path, capsys):
    # Can fail (with the stash put back over same-named files): a run killed while it removed the
    # earlier report, its own report written, would have had the earlier figures put back over its own.
    from attnverify.preflight import EarlierReport

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig3.png").write_text("new")
    (tmp_path / "report.html").write_text("new")
    earlier = EarlierReport(tmp_path, ["fig3"])
    earlier.aside.mkdir()
    (earlier.aside / "report.html").write_text("earlier")
    doomed = earlier.aside.with_name(earlier.aside.name + "-discarded")
    os.replace(earlier.aside, doomed)  # as `discard` leaves it when killed before removing it
    assert EarlierReport(tmp_path, ["fig3"]).recover() == 0
    assert (tmp_path / "report.html").read_text() == "new" and not doomed.exists()


# -- the results folder: locked, checked on resume ---------------------------------------------------
def test_a_second_sweep_into_a_busy_folder_is_refused(tmp_path, capsys, default_signals):
    folder = tmp_path / "D"
    first = subprocess.Popen([EXE, *SWEEP[:3], "16384", *SWEEP[4:], "--seed", "0", "--out", folder],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            lock = folder / ".attnverify.lock"
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.01)
        code, _, err = cli(capsys, *SWEEP, "--seed", "1", "--out", folder)
        assert_one_line_error(code, err, f"folder in use by pid {first.pid}")
        results = folder / "results.jsonl"
        while time.time() < deadline and first.poll() is None:  # the first run goes on, undisturbed
            if results.exists() and results.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.01)
    finally:
        first.send_signal(signal.SIGINT)
        status = first.wait(120)
    err = first.stderr.read()  # Ctrl-C: exit 130, not a crash (SIGSEGV, -11) in JAX's teardown
    assert status == 130 and err.strip().splitlines()[-1] == "attnverify: interrupted" and "Traceback" not in err
    assert not temporaries(tmp_path) and (folder / ".attnverify.lock").read_text() == ""
    manifest = json.loads((folder / "manifest.json").read_text())
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert manifest["seed"] == 0 and len(records) >= 2 and {r["seed"] for r in records} == {0}


# SIGINT (Ctrl-C, exit 130) is sent in the test above; SIGTERM takes the same path (exit 143).
@pytest.mark.parametrize("sig, status, word", [(signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_sweep_exits_cleanly_and_resumes_exactly(tmp_path, capsys, sig, status, word,
                                                              default_signals):
    folder, trials = tmp_path / "D", 128 * 200
    proc = subprocess.Popen([EXE, *SWEEP[:3], str(trials), *SWEEP[4:], "--out", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = folder / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    assert proc.wait(120) == status  # not -11: no crash while JAX's threads are torn down
    err = proc.stderr.read()
    assert err.strip().splitlines()[-1] == f"attnverify: {word}" and "Traceback" not in err
    assert not temporaries(tmp_path) and (folder / ".attnverify.lock").read_text() == ""
    kept = results.read_bytes().split(b"\n")[:-1]
    assert 2 <= len(kept) < trials // 128, "the signal must land mid-sweep"
    assert cli(capsys, *SWEEP[:3], str(trials), *SWEEP[4:], "--out", folder, "--resume")[0] == 0
    after = results.read_bytes().split(b"\n")[:-1]
    assert after[: len(kept)] == kept and len(after) == trials // 128  # finished chunks kept, none twice


def sweep_json(capsys, folder: Path, *extra) -> list[dict]:
    out = folder.with_suffix(".json")
    code, _, err = cli(capsys, "verify", "thm1.gradient", "thm1.gxi", *SWEEP[2:], "--out", folder,
                       "--json", out, *extra)
    assert code == 0, err
    return [{k: r[k] for k in ("id", "max_error", "median_error", "quantiles")} for r in json.loads(out.read_text())]


def test_resume_gives_exactly_the_fresh_results_whatever_the_folder_holds(tmp_path, capsys):
    seed0, seed1 = tmp_path / "seed0", tmp_path / "seed1"
    fresh0, fresh1 = sweep_json(capsys, seed0), sweep_json(capsys, seed1, "--seed", "1")
    assert fresh0 != fresh1
    lines0 = (seed0 / "results.jsonl").read_bytes().split(b"\n")[:-1]
    lines1 = (seed1 / "results.jsonl").read_bytes().split(b"\n")[:-1]
    cases = {  # name: (manifest from, results.jsonl content, expected warnings)
        "two runs mixed (the old race)": (seed1, [lines0[0], lines1[0], lines0[1], lines0[2], lines1[3]], 1),
        "a line 42 and a 2-error record": (seed1, [b"42", lines1[0], json.dumps(
            {**json.loads(lines1[1]), "errors": [0.0, 0.0]}).encode(), lines1[2]], 2),
        "a corrupt middle line, a torn last line": (seed1, [lines1[0], b"{garbage", lines1[2], lines1[3][:40]], 1),
    }
    for name, (source, content, n_warnings) in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        shutil.copy(source / "manifest.json", folder)
        torn = not content[-1].endswith(b"}")
        (folder / "results.jsonl").write_bytes(b"\n".join(content) + (b"" if torn else b"\n"))
        before = (folder / "results.jsonl").read_bytes()
        out = folder.with_suffix(".json")
        code, _, err = cli(capsys, "verify", "thm1.gradient", "thm1.gxi", *SWEEP[2:], "--out", folder, "--json", out,
                           "--seed", "1", "--resume")
        assert code == 0, err
        assert [{k: r[k] for k in fresh1[0]} for r in json.loads(out.read_text())] == fresh1, name
        warnings = [line for line in err.splitlines() if line.startswith("attnverify: warning: ")]
        assert len(warnings) == n_warnings and all("(the line is kept)" in w for w in warnings), err
        after = (folder / "results.jsonl").read_bytes()
        assert after.startswith(before), f"{name}: a line was deleted"
        assert sweep_json(capsys, folder, "--seed", "1", "--resume") == fresh1, name  # and again
        assert after == (folder / "results.jsonl").read_bytes(), f"{name}: the second resume recomputed"
    code, _, err = cli(capsys, *SWEEP, "--out", seed0, "--resume")  # another claim list
    assert_one_line_error(code, err, "claims, code differ from the first run")


@pytest.mark.parametrize("manifest, fragment", [(b"[]", "not a JSON object"), (b"\xff{", "not UTF-8"),
                                                (b"{", "not valid JSON")])
def test_a_damaged_manifest_is_one_line(tmp_path, capsys, manifest, fragment):
    (tmp_path / "manifest.json").write_bytes(manifest)
    assert_one_line_error(*cli(capsys, *SWEEP, "--out", tmp_path, "--resume")[::2], fragment)


def test_model_file_damage_is_one_line(tmp_path, capsys, model):
    extra = tmp_path / "extra.npz"
    shutil.copy(model, extra)
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr("notes.txt", "hello")
    assert_one_line_error(*cli(capsys, "explain", "--model", extra, "--text", TEXT)[::2], "not a .npy array")


def test_logits_too_large_to_multiply_are_refused_with_their_size():
    # Can fail: finite logits above sqrt(max float) pass a finiteness check, and a claim multiplying
    # two of them overflows; `headroom` refuses them and says how large they are. Only the read-out
    # is scaled, so the attention stays finite and the logits are the first quantity too large.
    import jax
    from attnverify.numerics.draws import draw_document, draw_params
    from attnverify.numerics.modelfile import check_float_range

    from attnverify.errors import InputError
    from attnverify.spec import ModelSpec

    spec = ModelSpec(max_len=4, d_embed=4, d_att=2, d_out=2, heads=2, vocab_size=16)
    params = draw_params(jax.random.PRNGKey(0), spec)
    tokens = draw_document(jax.random.PRNGKey(1), spec)
    check_float_range(params, spec, tokens, "small", headroom=True)  # nothing to refuse
    huge = params._replace(W_l=params.W_l * 1e170)
    check_float_range(huge, spec, tokens, "huge")  # finite: without headroom it passes
    with pytest.raises(InputError, match=r"huge: the logits reach .*e\+1[5-9]\d, above 1.34e\+154: a product of two"):
        check_float_range(huge, spec, tokens, "huge", headroom=True)


def test_a_gradient_too_small_to_multiply_is_refused_with_its_size():
    # Can fail: at --scale 1e-300 the gradient underflowed to 0 on both sides of every identity, and
    # each PASSed with an error of 0; `footroom` refuses a gradient below sqrt(smallest normal).
    import jax
    from attnverify.numerics.draws import draw_document, draw_params
    from attnverify.numerics.modelfile import check_float_range

    from attnverify.errors import InputError
    from attnverify.spec import ModelSpec

    spec = ModelSpec(max_len=4, d_embed=4, d_att=2, d_out=2, heads=2, vocab_size=16)
    params = draw_params(jax.random.PRNGKey(0), spec)
    tokens = draw_document(jax.random.PRNGKey(1), spec)
    check_float_range(params, spec, tokens, "small", footroom=True)  # nothing to refuse
    tiny = params._replace(W_l=params.W_l * 1e-160)
    check_float_range(tiny, spec, tokens, "tiny")  # finite: without footroom it passes
    with pytest.raises(InputError, match=r"tiny: the gradient of the explained output is at most .*e-16\d, "
                                         r"below 1.49e-154: products of such numbers underflow"):
        check_float_range(tiny, spec, tokens, "tiny", footroom=True)


def test_xla_running_out_of_memory_is_one_line_not_a_traceback(tmp_path, capsys, model, monkeypatch):
    # Can fail: a model of T = 200,000 passed the size checks (one document's activations) and
    # `explain` died in XLA's allocator with a JaxRuntimeError traceback and exit code 1.
    from jax.errors import JaxRuntimeError

    def exhausted(args):  # what XLA raised (its message shortened)
        raise JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 52582465664 bytes.")

    monkeypatch.setattr("attnverify.cli.cmd_explain", exhausted)
    code, _, err = cli(capsys, "explain", "--model", model, "--text", TEXT)
    assert_one_line_error(code, err, "out of memory (use smaller sizes)")


def test_a_plugin_parameter_too_large_for_memory_is_refused_before_it_is_drawn(tmp_path, capsys):
    # Can fail: a declared size of 10**10 aborted XLA's allocator (SIGABRT, a C++ stack trace).
    plugin = tmp_path / "huge.py"
    plugin.write_text("from attnverify.theory import SymbolicModel, symbols\n"
                      "class Model(SymbolicModel):\n"
                      "    def score(self, i, t):\n"
                      "        b = self.parameter('b', (symbols.K, 10**10))\n"
                      "        return super().score(i, t) + b[i, 0]\n")
    code, _, err = cli(capsys, "init-model", "--plugin", plugin, "--out", tmp_path / "o.npz", *MODEL)
    # ... and names the file (it did not when the draw was checked while the plugin loaded: derive)
    assert_one_line_error(code, err,
                          f"{plugin}: one draw of the plugin's parameters (b (2, 10000000000)) needs at least")
    assert not (tmp_path / "o.npz").exists()
    code, _, err = cli(capsys, "derive", "gradient", "--plugin", plugin)  # the paper's K
    assert_one_line_error(code, err, f"{plugin}: one draw of the plugin's parameters (b (")


def test_resume_with_the_same_claims_in_another_order_says_so(tmp_path, capsys):
    # Can fail: the refusal read "claims, code differ" (the code's hash followed the order), with both
    # lists cut short, though nothing but the order had changed.
    folder = tmp_path / "run"
    first = ["verify", "thm1.gradient", "thm1.derived", "--trials", "4", "--quiet", *TINY, "--out", folder]
    assert cli(capsys, *first)[0] == 0
    code, _, err = cli(capsys, "verify", "thm1.derived", "thm1.gradient", *first[3:], "--resume")
    assert_one_line_error(code, err, "claims differs from the first run (the same claims in another order: give "
                                     "them as the first run did, thm1.gradient thm1.derived)")
    assert "code" not in err


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="Linux's /proc/meminfo")
def test_memory_checks_count_the_memory_the_kernel_can_reclaim(monkeypatch):
    # Can fail: the checks counted free pages only, so with the page cache full after a test run, 5.74 GiB were
    # "free" of 23 GiB available and a training that fits was refused for memory (the suite failed on it).
    from attnverify import validate

    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert abs(validate.available_memory() - int(fields["MemAvailable"].split()[0]) * 1024) < 2**28  # moves a bit
    # where the platform has no MemAvailable: the free pages, as before
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: (_ for _ in ()).throw(OSError("no"))
                        if path == "/proc/meminfo" else real_open(path, *a, **k))
    assert validate.available_memory() == os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
