"""A refused command leaves nothing behind: one line on stderr, exit 2, and no output folder,
file or ``.attnverify.lock`` it created (a folder that existed is left as it was). Each input is
checked before the first output is made: a missing model before any figure is drawn, a report's
model, data and claims before its folder is created and locked, ``--json`` against ``--out``
before the sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import assert_one_line_error, cli

from attnverify.cli import main
from attnverify.errors import InputError

TINY = ["--max-len", "6", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "1", "--vocab-size", "12"]
VERIFY = ["verify", "thm1.gradient", "--trials", "2", "--quiet", *TINY]
REPORT = ["report", "--claims", "thm1.gradient", "--figures", "architecture", "--trials", "2", *TINY]


def tree(folder: Path) -> list[str]:
    """Every path under `folder` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.npz"
    assert main(["init-model", "--out", str(path), *TINY]) == 0
    return path


# -- figures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("names", [["architecture", "fig1"], ["--all", "--quick"], ["fig1"], ["fig5"]])
def test_figures_without_a_needed_model_draw_nothing(tmp_path, capsys, names):
    code, _, err = cli(capsys, "figures", *names, "--out", tmp_path / "figs")
    assert_one_line_error(code, err, "needs a model file")
    assert tree(tmp_path) == []


@pytest.mark.parametrize("text", ["", "!!! ..."])
def test_figures_with_text_without_a_word_draw_nothing(tmp_path, capsys, model, text):
    code, _, err = cli(capsys, "figures", "architecture", "fig5", "--model", model, "--out", tmp_path / "figs",
                       "--text", text)
    assert_one_line_error(code, err, "has no words")
    assert tree(tmp_path) == []


def test_a_refused_figure_leaves_an_existing_folder_as_it_was(tmp_path, capsys):
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "mine.txt").write_text("kept")
    code, _, err = cli(capsys, "figures", "architecture", "fig3", "--out", figs)
    assert_one_line_error(code, err, "figure fig3 needs a model file")
    assert tree(tmp_path) == ["figs", "figs/mine.txt"]


def test_figures_into_a_folder_another_run_is_writing_are_refused(tmp_path, capsys):
    # Can fail: `figures --out` took no lock, so two runs (two models, say) mixed their figures in
    # one folder. Another run holds the lock here (this process, through another open file).
    from attnverify.verification.store import LOCK_NAME, FolderLock

    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "mine.txt").write_text("kept")
    other = FolderLock(figs).acquire()
    try:
        code, _, err = cli(capsys, "figures", "architecture", "--out", figs)
        assert_one_line_error(code, err, f"folder in use by pid {os.getpid()}")
        assert tree(tmp_path) == ["figs", f"figs/{LOCK_NAME}", "figs/mine.txt"]
    finally:
        other.release()
    assert cli(capsys, "figures", "architecture", "--out", figs)[0] == 0  # the folder free again: drawn
    assert (figs / "architecture.png").is_file() and (figs / LOCK_NAME).read_text() == ""


@pytest.mark.parametrize("existing", [False, True])
def test_make_all_removes_what_it_drew_when_a_figure_is_refused(tmp_path, monkeypatch, existing):
    """The last line of defence: a figure refused while drawing takes what this call drew, and the
    folder if this call made it; a folder that existed keeps what it held."""
    from attnverify.figures import catalog
    from attnverify.figures.common import FigureContext

    from attnverify.errors import InputError

    real = catalog.make

    def make(name, ctx, out_dir):
        if name == "eq19_nu":
            raise InputError("refused while drawing")
        return real(name, ctx, out_dir)

    monkeypatch.setattr(catalog, "make", make)
    figs = tmp_path / "a" / "figs"
    if existing:
        figs.mkdir(parents=True)
        (figs / "mine.txt").write_text("kept")
    before = tree(tmp_path)
    with pytest.raises(InputError, match="refused while drawing"):
        catalog.make_all(["architecture", "eq19_nu"], FigureContext(), figs)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("drawn_first", [False, True])
def test_an_interrupted_make_all_keeps_finished_figures_and_no_empty_folder(tmp_path, monkeypatch, drawn_first):
    # Can fail: Ctrl-C while the first figure was drawn left the empty folder it had made.
    from attnverify.figures import catalog
    from attnverify.figures.common import FigureContext

    real = catalog.make

    def make(name, ctx, out_dir):
        if name == "eq19_nu":
            raise KeyboardInterrupt
        return real(name, ctx, out_dir)

    monkeypatch.setattr(catalog, "make", make)
    figs = tmp_path / "a" / "figs"
    with pytest.raises(KeyboardInterrupt):
        catalog.make_all(["architecture", "eq19_nu"] if drawn_first else ["eq19_nu"], FigureContext(), figs)
    if drawn_first:
        assert sorted(p.name for p in figs.iterdir()) == [f"architecture{s}" for s in (".json", ".pdf", ".png")]
    else:
        assert tree(tmp_path) == []


# -- report ------------------------------------------------------------------------------------
def report_cases(model: Path) -> list[tuple[list, str]]:
    return [
        (["--model", "nope.npz"], "no such model file"),
        (["--model", "garbage.npz"], "not a readable .npz model file"),
        (["--data", "foo:bar"], "unknown data source 'foo:bar'"),
        (["--data", "csv:/nope.csv"], "csv:/nope.csv: no such file"),
        (["--model", model, "--claims", "nosuch"], "unknown claim or group 'nosuch'"),
        (["--model", model, "--trials", str(10**18)], "of memory"),
        # a claim's synthetic task at a vocabulary too small for it: each claim that trains "could not run"
        (["--model", model, "--claims", "info", "--vocab-size", "8"], "claim info.mi_attention_planted: the synthetic"),
        # ... and a figure's: "figure wp_tradeoff could not be drawn", after the claims
        (["--model", model, "--figures", "wp_tradeoff", "--vocab-size", "8"], "figure wp_tradeoff: the synthetic"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_a_refused_report_creates_no_folder_and_no_lock(tmp_path, capsys, model, case):
    Path("garbage.npz").write_bytes(b"not a zip file")
    extra, fragment = report_cases(model)[case]
    before = tree(tmp_path)
    base = list(REPORT)
    # a flag is given once: the case's value replaces REPORT's
    for flag in set(extra) & {"--claims", "--figures", "--trials", "--vocab-size"}:
        del base[base.index(flag):base.index(flag) + 2]
    code, _, err = cli(capsys, *base, "--out", "rep", *extra)
    assert_one_line_error(code, err, fragment)
    assert tree(tmp_path) == before  # no rep/, no rep/.attnverify.lock


def test_a_refused_report_leaves_an_existing_folder_as_it_was(tmp_path, capsys):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, *REPORT, "--out", rep, "--model", "nope.npz")
    assert_one_line_error(code, err, "no such model file")
    assert tree(tmp_path) == ["rep", "rep/notes.txt"]


def test_a_cached_model_of_an_earlier_report_is_checked_before_the_lock(tmp_path, capsys):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "model.npz").write_bytes(b"garbage")
    code, _, err = cli(capsys, *REPORT, "--out", rep)
    assert_one_line_error(code, err, "model.npz: not a readable .npz model file")
    assert tree(tmp_path) == ["rep", "rep/model.npz"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_report_refused_after_the_lock_takes_back_what_it_wrote(tmp_path, capsys, monkeypatch, model, existing):
    """A refusal the checks before the lock cannot foresee (a full disk, say) while the report
    writes: the files and folders it added go, and a folder that existed keeps what it held."""
    from attnverify.verification.report import build

    from attnverify.errors import InputError

    def refused_midway(options, draw_figures=None):
        (options.out_dir / "figures").mkdir(exist_ok=True)
        (options.out_dir / "figures" / "architecture.png").write_bytes(b"png")
        (options.out_dir / "report.md").write_text("half")
        if existing:  # someone else's, saved there meanwhile: not the report's to remove
            (options.out_dir / "theirs.txt").write_text("kept")
        raise InputError(f"{options.out_dir}: no space left on device")

    monkeypatch.setattr(build, "run_report", refused_midway)
    rep = tmp_path / "rep"
    if existing:
        (rep / "figures").mkdir(parents=True)
        (rep / "figures" / "mine.png").write_bytes(b"mine")
    before = tree(tmp_path)
    code, _, err = cli(capsys, *REPORT, "--out", rep, "--model", model)
    assert_one_line_error(code, err, "no space left on device")
    assert tree(tmp_path) == sorted(before + (["rep/theirs.txt"] if existing else []))


@pytest.mark.parametrize("failure", [InputError, KeyboardInterrupt])
def test_a_report_that_fails_midway_puts_the_earlier_report_back(tmp_path, capsys, monkeypatch, model, failure):
    """Rerun into the folder of an earlier report and refused (or interrupted) while writing: the
    earlier report is there again, byte for byte, with none of the new run's files beside it."""
    from attnverify.verification.report import build

    rep = tmp_path / "rep"
    (rep / "figures").mkdir(parents=True)
    earlier = {"report.html": "<p>earlier", "results.json": "{}", "figures/architecture.png": "earlier png",
               "figures/mine.png": "mine", "model.npz": "not read: --model is given"}
    for name, text in earlier.items():
        (rep / name).write_text(text)

    def fails_midway(options, draw_figures=None):
        (options.out_dir / "figures" / "architecture.png").write_bytes(b"new png")
        (options.out_dir / "figures" / "architecture.json").write_text("{}")
        (options.out_dir / "report.md").write_text("half")
        raise failure("no space left on device")

    monkeypatch.setattr(build, "run_report", fails_midway)
    code, _, err = cli(capsys, *REPORT, "--out", rep, "--model", model)
    if failure is InputError:
        assert_one_line_error(code, err, "no space left on device")
    else:
        assert code == 130
    assert {str(p.relative_to(rep)): p.read_text() for p in rep.rglob("*") if p.is_file()} == earlier
    assert tree(rep) == sorted([*earlier, "figures"])  # no hidden folder, no lock


def test_a_refusal_gives_a_dead_runs_lock_file_back_as_it_was(tmp_path):
    from attnverify.verification.store import LOCK_NAME, FolderLock

    (tmp_path / LOCK_NAME).write_text("999999999\n")  # a dead run's pid
    lock = FolderLock(tmp_path, log=lambda message: None).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    lock.release(discard=True)
    assert (tmp_path / LOCK_NAME).read_text() == "999999999\n"


# -- verify --out ------------------------------------------------------------------------------
BROKEN_CLAIMS = """
from attnverify.verification import Claim, register
from attnverify.verification.empirical import mean_above

KW = dict(group="mine", statement="s", source="x", lhs="l", rhs="r", tolerance_reason="r", provenance="measured")


def raises(spec):
    raise RuntimeError("boom in build")


def one_number_each(spec):
    return lambda params, tokens: (params.embedding[0, :5], 0.0)


register(Claim(id="mine.raises", build=raises, tolerance={"float64": 1e-12, "float32": 1e-5}, **KW))
register(Claim(id="mine.vector", build=one_number_each, measure=lambda lhs, rhs: lhs - rhs,
               summary=mean_above(0.0), tolerance={"float64": 0.0, "float32": 0.0}, **KW))
register(Claim(id="mine.none", build=one_number_each, measure=lambda lhs, rhs: None,
               summary=mean_above(0.0), tolerance={"float64": 0.0, "float32": 0.0}, **KW))
"""


@pytest.mark.parametrize("claim, fragment", [("mine.raises", "build raised RuntimeError: boom in build"),
                                             ("mine.vector", "measure returned an array of shape (4,) per draw"),
                                             ("mine.none", "claim 'mine.none': measure raised ValueError")])
@pytest.mark.parametrize("existing", [False, True])
def test_a_users_claim_refused_while_traced_leaves_no_sweep_behind(tmp_path, capsys, claim, fragment, existing):
    """Its code runs only once the sweep has begun (the store is open): a sweep that recorded
    nothing takes back its manifest, results file, lock and folder (it left all four)."""
    module = tmp_path / "broken.py"
    module.write_text(BROKEN_CLAIMS)
    folder = tmp_path / "d"
    if existing:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    code, _, err = cli(capsys, *VERIFY[:1], claim, *VERIFY[2:], "--claims-module", module, "--out", folder)
    assert_one_line_error(code, err, fragment)
    assert tree(tmp_path) == before
@pytest.mark.parametrize("setup, fragment", [
    (lambda d: (d / "manifest.json").mkdir(), "manifest.json: is a folder, not a file"),
    (lambda d: (d / "results.jsonl").write_text("{}\n"), "already holds results"),
])
def test_a_refused_sweep_leaves_no_lock_in_the_users_folder(tmp_path, capsys, setup, fragment):
    folder = tmp_path / "d"
    folder.mkdir()
    setup(folder)
    before = tree(tmp_path)
    code, _, err = cli(capsys, *VERIFY, "--out", folder)
    assert_one_line_error(code, err, fragment)
    assert tree(tmp_path) == before


def test_a_refused_sweep_into_a_new_folder_removes_it(tmp_path, monkeypatch):
    """A refusal once the store has made its folder (here: the manifest cannot be written)."""
    from attnverify.verification import store as store_module
    from attnverify.verification.store import RESUME_KEYS, ChunkStore

    from attnverify.errors import InputError

    def refuse(path, write):
        raise InputError(f"{path}: refused")

    monkeypatch.setattr(store_module, "atomic_write", refuse)
    monkeypatch.setattr(store_module, "environment", lambda: {})
    with pytest.raises(InputError, match="refused"):
        ChunkStore.open(tmp_path / "a" / "b", {k: 0 for k in RESUME_KEYS}, resume=False)
    assert tree(tmp_path) == []


def test_a_lock_removed_by_a_refusal_is_not_held_by_a_stale_handle(tmp_path):
    """A run that opened the lock file just before a refused run removed it must not lock the
    removed file (two runs would then both "hold" the folder): it takes the lock afresh."""
    from attnverify.verification.store import LOCK_NAME, FolderLock

    first = FolderLock(tmp_path).acquire()
    stale = open(tmp_path / LOCK_NAME, "a+")  # a second run's open, before the first run's refusal
    first.release(discard=True)
    assert not (tmp_path / LOCK_NAME).exists()
    second = FolderLock(tmp_path)
    real_open = FolderLock._open
    calls = []

    def reopen():  # acquire's first open is that earlier handle, the next a real one
        calls.append(1)
        return (stale, False) if len(calls) == 1 else real_open(second)

    second._open = reopen
    second.acquire()
    try:
        assert len(calls) == 2 and (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        second.release()


@pytest.mark.parametrize("json_name, existing", [("d", False), ("d/results.jsonl", True), ("d/manifest.json", True)])
def test_json_into_the_results_folder_is_refused_up_front(tmp_path, capsys, json_name, existing):
    if existing:
        (tmp_path / "d").mkdir()
    before = tree(tmp_path)
    code, out, err = cli(capsys, *VERIFY, "--json", json_name, "--out", "d")
    assert_one_line_error(code, err, f"--json {json_name}: is ")
    assert out == "" and tree(tmp_path) == before  # refused before the sweep (it prints its table)


def test_json_onto_a_sweeps_records_is_refused_through_a_link_or_in_another_sweeps_folder(tmp_path, capsys):
    # Can fail: the check compared paths as written, so `--out d --json link/results.jsonl` (link -> d)
    # replaced the sweep's records with the JSON report; and a --json into another sweep's folder,
    # running or finished, replaced its records (214 of a running sweep's chunks lost).
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to("d")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text("{}")
    (tmp_path / "other" / "results.jsonl").write_text("")
    before = tree(tmp_path)
    code, out, err = cli(capsys, *VERIFY, "--json", "link/results.jsonl", "--out", "d")
    assert_one_line_error(code, err, "--json link/results.jsonl: is the sweep's own results.jsonl in --out d")
    code, out, err = cli(capsys, *VERIFY, "--json", "other/results.jsonl")
    assert_one_line_error(code, err, "--json other/results.jsonl: is the results.jsonl of the sweep results in ")
    assert out == "" and tree(tmp_path) == before


def test_resume_under_other_xla_options_or_edited_package_code_is_refused(tmp_path, capsys, monkeypatch):
    # Can fail: the manifest recorded only the claims' own modules, so a sweep resumed under
    # --xla_cpu_enable_fast_math=true (or after an edit of the draws) mixed its chunks with the first
    # run's, silently: a table equal to neither run.
    from attnverify.numerics.stored_programs import environment_digest

    code, _, err = cli(capsys, *VERIFY, "--out", "s")
    assert code == 0, err
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    environment_digest.cache_clear()
    try:
        before = tree(tmp_path)
        code, out, err = cli(capsys, *VERIFY, "--out", "s", "--resume")
    finally:
        monkeypatch.delenv("XLA_FLAGS")
        environment_digest.cache_clear()
    assert_one_line_error(code, err, "computation differs from the first run (computation: the package's source, ")
    assert tree(tmp_path) == before


def test_an_out_folder_that_is_a_dangling_link_is_named_so(tmp_path, capsys):
    # Can fail: the link was followed to create the folder, and the error read "d: File exists".
    (tmp_path / "d").symlink_to(tmp_path / "gone" / "x")
    code, _, err = cli(capsys, *VERIFY, "--out", "d")
    assert_one_line_error(code, err, f"--out d: is a link to {tmp_path / 'gone' / 'x'}, which does not exist")


@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_resume_refuses_records_or_a_manifest_that_are_not_files(tmp_path, capsys, what):
    # Can fail: a FIFO named results.jsonl blocked `--resume` for good; a folder named manifest.json
    # read as "nothing to resume (no manifest.json)".
    code, _, err = cli(capsys, *VERIFY, "--out", "s")
    assert code == 0, err
    if what == "fifo":
        (tmp_path / "s" / "results.jsonl").unlink()
        os.mkfifo(tmp_path / "s" / "results.jsonl")
        said = "results.jsonl: is not a regular file, so the sweep's records cannot be read back"
    else:
        (tmp_path / "s" / "manifest.json").unlink()
        (tmp_path / "s" / "manifest.json").mkdir()
        said = "manifest.json: is not a regular file, so it cannot be resumed"
    code, _, err = cli(capsys, *VERIFY, "--out", "s", "--resume")
    assert_one_line_error(code, err, said)
