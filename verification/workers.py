"""The report's claims swept side by side in worker processes, so that a cold report uses every core.

A cold report's claims are largely work on one core: SymPy derivations, and tracing and lowering
in Python, between XLA compilations. On 2 cores one process used 1.44 of them (docs/benchmarks.md:
285 s of wall time, 411 s of CPU). `sweep_claims` hands the claims to `jobs` worker processes,
one claim family (`Claim.group`) at a time, largest first: claims that share a compiled program
(`verification.blocks`), a trained model or a study's pool stay in one process. Two workers
took 229 s for the same claims.

Each worker is a fresh interpreter (``spawn``: JAX's runtime threads do not survive a ``fork``)
started as the command line starts: the caller's XLA flags (so the same compilation cache keys),
float64, and the caller's compilation cache and stores (or none, after ``--no-cache``).

**Results do not change.** A claim's sweep depends only on the claim, the spec, the trials, the
seed and the dtype (each draw's key comes from the seed and the draw's index), and a worker
compiles the programs the calling process would. Outcomes arrive as families finish; the
caller puts them in the order the claims were chosen.

Only built-in claims on a plain `ModelSpec` go to workers. A user's claim, or a plugin's
spec, is code outside the package (as for `numerics.stored_programs`) and runs in the calling
process, as does everything when ``jobs`` is 1 or there is one family. Ctrl-C is the calling
process's (workers ignore SIGINT): it stops the workers and is raised as usual. A worker that
dies (out of memory, killed) makes the claims of its family "could not run", with the reason.

Other work can run in a worker beside the claims (`Beside`): the report draws its figures there,
except those that read the claims' results, so that they do not wait for the claims.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from attnverify.numerics import host_devices
from attnverify.verification.registry import REGISTRY, Claim, is_builtin
from attnverify.verification.sweep import ClaimResult, run_claim
from attnverify.verification.table import measured_text, no_error_measured, nonfinite_text

from attnverify.errors import InputError
from attnverify.spec import ModelSpec
from attnverify.validate import env_count

#: Environment variable: the report's worker processes (1: every claim in the calling process).
ENV_VAR = "ATTNVERIFY_JOBS"


@dataclass(frozen=True)
class Outcome:
    """One claim swept in one dtype: its result, or why it could not run (`error`, with `trace`)."""

    claim_id: str
    dtype: str
    result: ClaimResult | None = None
    error: str | None = None
    trace: str = ""
    pid: int = 0  # the process that swept it


def default_jobs() -> int:
    """``$ATTNVERIFY_JOBS`` (a positive integer), else one worker per core."""
    return env_count(ENV_VAR, "worker processes") or host_devices.host_device_count()


def families(chosen: list[Claim]) -> dict[str, list[Claim]]:
    """The chosen claims by `Claim.group`, in the order the groups first appear."""
    out: dict[str, list[Claim]] = {}
    for claim in chosen:
        out.setdefault(claim.group, []).append(claim)
    return out


def worker_count(chosen: list[Claim], spec: ModelSpec, jobs: int) -> int:
    """The worker processes `sweep_claims` starts: 0 when it sweeps in the calling process."""
    if jobs < 2 or type(spec) is not ModelSpec or not all(map(is_builtin, chosen)):
        return 0
    count = min(jobs, len(families(chosen)))
    return count if count > 1 else 0


@dataclass
class Beside:
    """Work for a worker process beside the claims (the report's figures): ``fn(*args)``,
    picklable, submitted before the families, so that it starts at once. After the sweep,
    `result` holds what it returned, or `error` why it could not run; `ran` says whether a
    worker ran it (not when the claims ran in the calling process: the caller does it then)."""

    fn: Callable[..., Any]
    args: tuple
    result: Any = None
    error: str | None = None
    ran: bool = False


def sweep_claims(chosen: list[Claim], spec: ModelSpec, *, dtypes: tuple[str, ...], trials: int, seed: int,
                 jobs: int, beside: Beside | None = None) -> Iterator[Outcome]:
    """Every claim of `chosen` in every dtype, as `Outcome`s: claim-major within a family, and
    a family's as soon as it is done (in the calling process: in the order of `chosen`). With
    workers, `beside` runs in one of them as well."""
    count = worker_count(chosen, spec, jobs)
    if not count:
        for claim in chosen:
            for dtype in dtypes:
                yield _sweep_one(claim, spec, dtype, trials, seed)
        return
    from attnverify.numerics.compilation_cache import _current_dir

    folder = _current_dir()
    # The pool's queues start multiprocessing's resource tracker, which unlinks their semaphores
    # if the command leaves without doing it (os._exit after Ctrl-C: attnverify.cli), and then
    # warns of a "leak" it has just cleaned up. Its warnings are off; the workers' are not.
    quiet, os.environ["PYTHONWARNINGS"] = os.environ.get("PYTHONWARNINGS"), "ignore:resource_tracker:UserWarning"
    try:
        pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker,
                                   initargs=(None if folder is None else str(folder), os.getpid()))
    finally:
        if quiet is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = quiet
    try:
        futures: dict[Future, list[Claim] | None] = {}
        if beside is not None:
            futures[pool.submit(beside.fn, *beside.args)] = None
        # Largest families first, so that the last one to finish is a small one.
        for family in sorted(families(chosen).values(), key=len, reverse=True):
            futures[pool.submit(_sweep_family, [c.id for c in family], spec, dtypes, trials, seed)] = family
        for future in as_completed(futures):
            if futures[future] is None:
                _finish_beside(future, beside)
            else:
                yield from family_outcomes(future, futures[future], dtypes)
    except BaseException:  # an interrupt, or the caller stopped reading: stop the workers now
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


def family_outcomes(future: Future, family: list[Claim], dtypes: tuple[str, ...]) -> list[Outcome]:
    """A finished family's outcomes; every claim of it "could not run" if its worker died."""
    try:
        return future.result()
    except BrokenProcessPool as err:
        why = f"RuntimeError: its worker process died ({err or 'killed'})"
        return [Outcome(c.id, dtype, error=why) for c in family for dtype in dtypes]


def _finish_beside(future: Future, beside: Beside) -> None:
    beside.ran = True
    try:
        beside.result = future.result()
    except BrokenProcessPool as err:
        beside.error = f"RuntimeError: its worker process died ({err or 'killed'})"
    except Exception as err:
        beside.error = f"{type(err).__name__}: {err}"


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down at once: its workers, busy or not, are terminated."""
    workers = multiprocessing.active_children()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=10)
    pool.shutdown(wait=True)


def _start_worker(folder: str | None, parent: int) -> None:
    """A worker's start-up, as the command line's: float64, the JAX options the programs are written
    for (`numerics.jax_options`), and the same cache folder and stores (None: none). Its XLA flags
    are the calling process's, device count included: XLA's cache key holds them, so a worker's
    programs are the ones a later `verify` or report reads back. (The command has already said what
    there was to say about the installed JAX and the user's options.)

    Without the pinned options a worker kept the environment's: under
    ``JAX_NUMPY_RANK_PROMOTION=raise``, which the command said it did not use, every claim and
    figure in a worker failed; and with JAX's default matrix-product precision, a worker's stored
    results and programs had another key than the calling process's, so a report computed the
    `wp` pools again after its claims to draw `wp_tradeoff` (30 s)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the calling process's to handle
    _ends_with(parent)
    from pathlib import Path

    import jax
    from attnverify.numerics.compilation_cache import configure_cache
    from attnverify.numerics.jax_options import set_pinned

    jax.config.update("jax_enable_x64", True)
    set_pinned(jax.config)
    configure_cache(None if folder is None else Path(folder))
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)


def _ends_with(parent: int) -> None:
    """End this worker once `parent`, the command that started it, is gone. A command killed with
    SIGKILL cannot stop its workers: they went on, unlocked, writing the killed run's figures into
    a folder that the next report had taken over, and then waited forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="attnverify-parent-watch", daemon=True).start()


def _sweep_family(claim_ids: list[str], spec: ModelSpec, dtypes: tuple[str, ...], trials: int,
                  seed: int) -> list[Outcome]:
    return [_sweep_one(REGISTRY[claim_id], spec, dtype, trials, seed) for claim_id in claim_ids for dtype in dtypes]


def _sweep_one(claim: Claim, spec: ModelSpec, dtype: str, trials: int, seed: int) -> Outcome:
    try:
        result = run_claim(claim, spec, trials=trials, seed=seed, dtype=dtype, progress=False)
    except InputError as err:  # a user's claim that cannot run (`registry.user_code`): its one line says it all
        return Outcome(claim.id, dtype, error=str(err), pid=os.getpid())
    except Exception as err:  # one broken claim must not sink the others
        return Outcome(claim.id, dtype, error=f"{type(err).__name__}: {err}", trace=traceback.format_exc(),
                       pid=os.getpid())
    return Outcome(claim.id, dtype, result=result, pid=os.getpid())


def log_outcome(outcome: Outcome, log: Callable[[str], None]) -> None:
    """The log line of one outcome (and, for an error, its traceback on stderr)."""
    if outcome.error is not None:
        log(f"claim {outcome.claim_id} ({outcome.dtype}) could not run: {outcome.error}")
        print(outcome.trace, end="", file=sys.stderr)
        return
    result = outcome.result
    # As the table shows it: a statistic with both bounds, and the NaN/inf draws whenever there are any.
    if result.statistic is not None:
        measured = f"{result.statistic} {measured_text(result)}"
    elif no_error_measured(result):
        measured = measured_text(result)
    else:
        measured = f"max error {result.max_error:.2e}{nonfinite_text(result)}"
    log(f"claim {outcome.claim_id:32s} {outcome.dtype}: {result.verdict} ({measured}"
        f"{', UNEXPECTED' if result.unexpected else ''})")
