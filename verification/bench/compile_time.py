"""Where a first verdict's time goes: compiling versus running, and what the persistent
compilation cache saves.

* `compile_split`: per claim of a group, the seconds spent compiling (tracing, lowering,
  XLA; `verification.blocks.compile_seconds`) and running, with the group's shared program
  and with one program per claim, in this process with the persistent cache off;
* `cold_warm`: wall time of a command in a fresh process with an empty cache folder (cold),
  then in a second fresh process with the same folder (warm).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
from attnverify.numerics import compilation_cache
from attnverify.verification import blocks
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification.registry import select
from attnverify.verification.sweep import draw_errors

from attnverify.spec import SMALL, ModelSpec


def _sweep_seconds(claim, spec: ModelSpec, trials: int, dtype: str) -> tuple[float, float]:
    """(compile s, run s) of one claim's sweep in this process."""
    compiled, start = blocks.compile_seconds(), time.perf_counter()
    draw_errors(claim, spec, trials=trials, dtype=dtype, progress=False)
    wall = time.perf_counter() - start
    compiled = blocks.compile_seconds() - compiled
    return compiled, max(wall - compiled, 0.0)


def compile_split(group: str = "theorem1", spec: ModelSpec = SMALL, *, trials: int = 128,
                  dtype: str = "float64") -> dict:
    """Compile and run seconds per claim of `group`: shared (one program for the group, as
    sweeps run) and separate (one program per claim, the claims' `evaluation` removed).
    SymPy derivations are done before timing; the persistent cache is off meanwhile."""
    chosen = select([group])
    previous = jax.config.jax_compilation_cache_dir
    compilation_cache.configure_cache(None)
    try:
        for claim in chosen:  # derivations and proofs (SymPy) are not compile time
            claim.build(spec)
        rows = []
        blocks.forget_programs()
        jax.clear_caches()
        for claim in chosen:
            c, r = _sweep_seconds(claim, spec, trials, dtype)
            rows.append({"claim": claim.id, "shared_compile_s": c, "shared_run_s": r})
        blocks.forget_programs()
        jax.clear_caches()
        for row, claim in zip(rows, chosen, strict=True):
            c, r = _sweep_seconds(dataclasses.replace(claim, evaluation=None), spec, trials, dtype)
            row.update(separate_compile_s=c, separate_run_s=r)
    finally:
        blocks.forget_programs()
        compilation_cache.configure_cache(Path(previous) if previous else None)
    total = {k: sum(row[k] for row in rows) for k in rows[0] if k != "claim"}
    return {"group": group, "spec": f"T={spec.max_len} K={spec.heads} d_e={spec.d_embed}", "trials": trials,
            "dtype": dtype, "claims": rows, "total": total}


def cold_warm(args: list[str], *, cwd: Path | None = None) -> dict:
    """Wall seconds of ``attnverify ARGS`` in a fresh process with an empty cache folder, then
    again in a fresh process with the same folder; plus the cache's entries and size."""
    folder = Path(tempfile.mkdtemp(prefix="attnverify-bench-xla-"))
    env = dict(os.environ, **{compilation_cache.ENV_VAR: str(folder)})
    exe = [sys.executable, "-m", "attnverify.cli"]
    out: dict = {"command": "attnverify " + " ".join(args)}
    try:
        for run in ("cold", "warm"):
            start = time.perf_counter()
            proc = subprocess.run([*exe, *args], env=env, cwd=cwd, capture_output=True, text=True)
            out[f"{run}_s"] = time.perf_counter() - start
            if proc.returncode not in (0, 1):  # 1: a claim's verdict, still a complete run
                out["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
                break
        found = compilation_cache.cache_info(folder)
        out.update(entries=found.entries, cache_bytes=found.bytes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if "warm_s" in out:
        out["warm_over_cold"] = out["warm_s"] / out["cold_s"]
    return out


def first_verdicts(*, quick: bool = False) -> list[dict]:
    """Cold and warm wall time of ``verify theorem1 --trials 32`` and of the quick report
    (cold: trains its model; warm: the same folder, so the model is reused)."""
    rows = [cold_warm(["verify", "theorem1", "--trials", "32", "--quiet"])]
    if not quick:
        work = Path(tempfile.mkdtemp(prefix="attnverify-bench-report-"))
        try:
            rows.append(cold_warm(["report", "--quick", "--out", str(work / "report")]))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return rows
