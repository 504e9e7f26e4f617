"""The report's claims in worker processes (`verification.workers`): the same results as in one
process, in the same order; what stays in the calling process; a dead worker; bad counts; Ctrl-C."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification import workers
from attnverify.verification.registry import REGISTRY, select
from attnverify.verification.report import build as report

from attnverify.cli import main

#: Two families, cheap claims: one worker each.
CLAIMS = ("thm1.derived", "thm1.gxi", "identifiability.fiber_dimension", "identifiability.fiber_moves")


def worker_state() -> tuple[int, dict, str]:
    """What a worker computes under: its pid, JAX's pinned options, and the key of its stored results."""
    import jax
    from attnverify.numerics.jax_options import PINNED
    from attnverify.numerics.stored_programs import environment_digest

    return os.getpid(), {option: getattr(jax.config, option) for option in PINNED}, environment_digest()


def test_workers_give_the_results_of_one_process_in_the_same_order(tmp_path, tiny_spec, monkeypatch):
    # Can fail: the workers inherit the user's environment, and a worker that kept an option this
    # process pinned (`numerics.jax_options`) failed every claim under this one, or stored its results
    # under another key (JAX's default matrix-product precision), which the report could not read back.
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")
    options = report.ReportOptions(out_dir=tmp_path, claims=CLAIMS, claims_spec=tiny_spec, trials=4)
    chosen = select(list(CLAIMS))
    assert workers.worker_count(chosen, tiny_spec, 2) == 2
    pids = set()
    logged = []

    def log(message):
        logged.append(message)

    original = workers.sweep_claims

    def recording(*args, **kwargs):
        for outcome in original(*args, **kwargs):
            pids.add(outcome.pid)
            yield outcome

    beside = workers.Beside(worker_state, ())  # work beside the claims: here, what it ran under
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workers, "sweep_claims", recording)
        parallel, errors = report.run_claims(dataclasses.replace(options, jobs=2), log, beside)
        assert not errors and len(pids) == 2 and os.getpid() not in pids  # two other processes swept them
        assert "on 2 worker processes, the figures beside them" in logged[0]
        assert beside.ran and beside.error is None and beside.result[0] in pids
        assert beside.result[1:] == worker_state()[1:]  # this process's options (tests/conftest.py)
        pids.clear()
        serial, errors = report.run_claims(dataclasses.replace(options, jobs=1), log)
        assert not errors and pids == {os.getpid()}
    assert [r.id for r in parallel] == list(CLAIMS)  # the chosen order, whatever finished first
    assert [r.to_json() for r in parallel] == [r.to_json() for r in serial]  # bit for bit (exact JSON floats)


def test_what_stays_in_the_calling_process(tiny_spec):
    chosen = select(list(CLAIMS))
    assert workers.worker_count(chosen, tiny_spec, 1) == 0  # asked for none
    assert workers.worker_count(chosen[:2], tiny_spec, 4) == 0  # one family: nothing to share out
    assert workers.worker_count(chosen, tiny_spec, 8) == 2  # at most one worker per family
    copy = dataclasses.replace(REGISTRY["thm1.gxi"], statement="a user's variant")
    assert workers.worker_count([*chosen, copy], tiny_spec, 2) == 0  # code outside the package

    class PluginSpec(type(tiny_spec)):
        pass

    plugin = PluginSpec(**dataclasses.asdict(tiny_spec))
    assert workers.worker_count(chosen, plugin, 2) == 0


def test_a_worker_that_died_makes_its_familys_claims_could_not_run():
    family = select(["thm1.derived", "thm1.gxi"])
    future = Future()
    future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
    outcomes = workers.family_outcomes(future, family, ("float64", "float32"))
    assert [(o.claim_id, o.dtype) for o in outcomes] == [(c.id, d) for c in family for d in ("float64", "float32")]
    assert all(o.result is None and "worker process died" in o.error for o in outcomes)


def test_work_beside_the_claims_that_failed_says_why():
    for exception, why in [(BrokenProcessPool("terminated abruptly"), "RuntimeError: its worker process died"),
                           (ValueError("no such figure"), "ValueError: no such figure")]:
        future, beside = Future(), workers.Beside(print, ())
        future.set_exception(exception)
        workers._finish_beside(future, beside)
        assert beside.ran and beside.result is None and beside.error.startswith(why)


def test_a_report_with_workers_draws_its_figures_beside_the_claims(tmp_path, tiny_spec, capfd):
    # The figures that do not read the claims' results are drawn in a worker while the claims
    # run; thm1_hist reads them and is drawn after, here. The report lists them in the order asked.
    import jax
    from attnverify.figures.catalog import draw_for_report
    from attnverify.numerics import modelfile
    from attnverify.numerics.draws import draw_params

    model = tmp_path / "tiny.npz"
    vocab = ["[CLS]", "UNK"] + [f"w{j}" for j in range(tiny_spec.vocab_size - 2)]
    modelfile.save(model, tiny_spec, draw_params(jax.random.PRNGKey(1), tiny_spec), vocab)
    options = report.ReportOptions(out_dir=tmp_path / "out", model=model, claims=CLAIMS, claims_spec=tiny_spec,
                                   trials=4, jobs=2, figures=("thm1_hist", "architecture"))
    written, status = report.run_report(options, draw_figures=draw_for_report)
    assert status == 0
    log = capfd.readouterr().err
    assert "the figures beside them" in log
    assert log.index("figure architecture") < log.index("figure thm1_hist")  # drawn beside, then after
    md = written["report.md"].read_text()
    assert md.index("figures/thm1_hist.png") < md.index("figures/architecture.png")
    assert {p.name for p in (tmp_path / "out" / "figures").glob("*.png")} == {"thm1_hist.png", "architecture.png"}


@pytest.mark.parametrize("argv, env, message", [
    (["--jobs", "0"], {}, "--jobs must be in 1..1024, got 0"),
    ([], {workers.ENV_VAR: "two"}, "$ATTNVERIFY_JOBS must be a number of worker processes in 1..1024, got 'two'"),
])
def test_a_bad_worker_count_is_a_one_line_error(tmp_path, capsys, monkeypatch, argv, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = main(["report", "--out", str(tmp_path / "out"), "--claims", "theorem1", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [f"attnverify: error: {message}"]
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl_c", "sigkill"])
def test_ctrl_c_or_a_kill_stops_the_workers_and_leaves_no_process(how, tmp_path, default_signals):
    # Can fail (SIGKILL): the command could not stop its workers, which went on writing the killed
    # run's figures into its folder, unlocked, and then waited forever.
    exe = Path(sys.executable).with_name("attnverify")
    env = dict(os.environ, **{workers.ENV_VAR: "2"}, ATTNVERIFY_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen([str(exe), "report", "--out", str(tmp_path / "out"), "--figures", "architecture",
                             "--claims", "theorem1", "identifiability", "--trials", "4", "--max-len", "8",
                             "--d-embed", "6", "--d-att", "4", "--d-out", "5", "--heads", "3", "--vocab-size", "30",
                             "--data", "synthetic:64"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def children() -> list[str]:
        return subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()

    deadline = time.monotonic() + 120
    while len(children()) < 3 and proc.poll() is None and time.monotonic() < deadline:  # 2 workers, 1 tracker
        time.sleep(0.2)
    started = children()
    assert proc.poll() is None and len(started) >= 2, "the workers never started"
    time.sleep(1.0)  # the workers are importing or sweeping
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    if how == signal.SIGINT:
        assert proc.returncode == 130, err[-2000:]
        assert err.strip().splitlines()[-1] == "attnverify: interrupted"  # nothing after it (no leak warning)
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL, err[-2000:]

    def running(pid: str) -> bool:  # a zombie (State: Z) is over, only not yet reaped
        try:
            return "\tZ" not in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False

    deadline = time.monotonic() + 10  # the resource tracker leaves when it sees the command gone
    while any(map(running, started)) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = {pid: Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:200] for pid in started if running(pid)}
    assert not alive, f"processes left running: {alive}"
    assert not (tmp_path / "out" / "report.md").exists()
