"""Scale-out and reproducibility: device count, chunking, kill + resume, large scales."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from attnverify.verification import claims  # noqa: F401
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import run_claim

_BESIDE = Path(sys.executable).with_name("attnverify")
EXE = str(_BESIDE) if _BESIDE.exists() else "attnverify"
SIZES = ["--max-len", "10", "--d-embed", "8", "--d-att", "4", "--d-out", "4", "--heads", "3"]


def _sweep(out: Path, *extra, devices: int = 1, trials: int = 40, chunk: int = 8) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    args = [EXE, "verify", "thm1.gradient", "--trials", str(trials), "--chunk-size", str(chunk),
            "--out", str(out), "--quiet", *SIZES, *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _errors(out: Path) -> dict[int, list[float]]:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["chunk"]: r["errors"] for r in records}


def _flat(out: Path) -> list[float]:
    chunks = _errors(out)
    return [x for c in sorted(chunks) for x in chunks[c]]


def test_four_devices_give_bit_identical_results(tmp_path):
    # 600 draws = 5 blocks of 128: chunks of 512 spread 4 blocks over 4 devices, chunks of
    # 128 put every block on the single device.
    one, four = tmp_path / "one", tmp_path / "four"
    p1 = _sweep(one, devices=1, trials=600, chunk=128)
    p4 = _sweep(four, devices=4, trials=600, chunk=512)
    assert p1.wait(600) == 0 and p4.wait(600) == 0, p4.stderr.read()
    manifest = json.loads((four / "manifest.json").read_text())
    assert manifest["environment"]["device_count"] == 4
    assert _flat(one) == _flat(four)  # exact float equality, draw by draw


TRIALS_KILL = 128 * 16  # 16 chunks of one block: long enough to be killed mid-sweep


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _sweep(reference, trials=TRIALS_KILL, chunk=8).wait(600) == 0
    proc = _sweep(killed, trials=TRIALS_KILL, chunk=8)
    results = killed / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    before = results.read_text().splitlines()
    n_chunks = TRIALS_KILL // json.loads((killed / "manifest.json").read_text())["chunk_size"]
    assert 3 <= len(before) < n_chunks, "the kill must land mid-sweep"
    resumed = _sweep(killed, "--resume", trials=TRIALS_KILL, chunk=8)
    assert resumed.wait(600) == 0, resumed.stderr.read()
    after = results.read_text().splitlines()
    assert after[: len(before)] == before  # finished chunks kept, not recomputed
    assert sorted(_errors(killed)) == list(range(n_chunks)) and len(after) == n_chunks  # no duplicates
    assert _flat(killed) == _flat(reference)


def test_resume_rejects_a_different_sweep(tmp_path):
    out = tmp_path / "s"
    assert _sweep(out, trials=8).wait(600) == 0
    proc = _sweep(out, "--resume", "--seed", "5", trials=8)
    assert proc.wait(600) == 2 and "seed differs from the first run" in proc.stderr.read()


@pytest.mark.parametrize("scale", [10.0, 100.0])
def test_large_parameter_scales_stay_finite(tiny_spec, scale):
    # Scores grow like scale^2: attention saturates, and exp would overflow without the
    # gamma^* shift. Everything stays finite; the word-position identities keep 1e-10.
    for claim_id in ("thm1.derived", "thm1.gradient", "thm1.cls_term", "thm1.gxi"):
        result = run_claim(REGISTRY[claim_id], tiny_spec, trials=16, scale=scale, progress=False)
        assert np.all(np.isfinite(result.errors)), (claim_id, scale)
        if claim_id in ("thm1.derived", "thm1.gradient"):
            assert result.passed, (claim_id, scale, result.max_error)


@pytest.mark.parametrize("link", ["sigmoid", "softmax"])
def test_saturating_output_links_stay_finite(tiny_spec, link):
    # Without the z^* shift, exp(-z) overflows at this scale and the derived gradient is inf/NaN.
    spec = tiny_spec.replace(output_link=link)
    result = run_claim(REGISTRY["thm1.derived"], spec, trials=16, scale=100.0, progress=False)
    assert np.all(np.isfinite(result.errors))
    moderate = run_claim(REGISTRY["thm1.derived"], spec, trials=16, scale=3.0, progress=False)
    assert moderate.passed, moderate.max_error
