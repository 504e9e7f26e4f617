"""Sweeps: run a claim on many random parameter draws with ``jit(vmap(...))``.

Draw ``d`` uses the key ``fold_in(PRNGKey(seed), d)``, so the results do not depend on
the chunk size. Chunks bound memory; a progress bar shows them on stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, fields, replace

import jax
import numpy as np
from attnverify.numerics import stored_results
from attnverify.verification.blocks import (  # noqa: F401 (re-exported)
    BLOCK,
    DTYPES,
    ClaimBlock,
    block_size,
    claim_block,
    model_undefined,
    relative_error,
)
from attnverify.verification.confidence import ALPHA, STATISTICAL_TESTS, takes_tolerance
from attnverify.verification.empirical import EveryDrawAbove, EveryDrawCheck
from attnverify.verification.registry import BUILTIN, REGISTRY, Claim, check_user_claim, is_builtin, user_code
from attnverify.verification.store import ChunkStore
from attnverify.verification.verdicts import decide_verdict, inconclusive_finding
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from attnverify.errors import InputError, UserCodeError, warn
from attnverify.spec import SMALL, SWITCHES, ModelSpec

# BLOCK: draws per vectorised block (see `draw_errors`), part of the results manifest.
# Compiled programs (draws; one measure program per claim or evaluation group) live in `blocks`.


@dataclass
class ClaimResult:
    """One claim swept under one spec. JSON keys are stable: add, never rename."""

    id: str
    statement: str
    dtype: str
    tolerance: float
    trials: int
    max_error: float
    median_error: float
    passed: bool
    finding: str | None
    expected: bool | None = None  # expected PASS (True) / FAIL (False) / no guarantee (None)
    unexpected: bool = False
    proof: str | None = None
    seed: int = 0
    scale: float = 1.0
    quantiles: dict[str, float] = field(default_factory=dict)
    statistics: dict[str, float] = field(default_factory=dict)  # empirical claims' summary
    errors: list[float] = field(default_factory=list, repr=False)
    # The verdict (`verification.verdicts.VERDICTS`): pass, fail (unexpected), expected_fail,
    # hyp_unmet, inconclusive. Left empty it is derived from passed and expected (`decide_verdict`).
    verdict: str = ""
    provenance: str = ""  # the claim's: paper, literature or measured
    refutes: str | None = None  # "paper" / "literature": an expected failure that refutes that source
    nonfinite: int = 0  # NaN / inf draws
    nonfinite_reason: str | None = None  # why the claim allows them (they are then left out)
    # Identity claims and checks of every draw: the draw with the largest number, or the first NaN / inf
    # one (None for a statistical claim, which no single draw decides). `init-model --draw` writes its model.
    worst_draw: int | None = None
    # Statistical claims (`verification.confidence`; None for identity claims, whose max_error
    # is judged against the tolerance): the statistic judged, its estimate, the threshold it is
    # claimed to be above or below, the one-sided confidence bound used (lower for "above",
    # upper for "below") and, when inconclusive, about how many draws would settle it.
    statistic: str | None = None
    estimate: float | None = None
    threshold: float | None = None
    direction: str | None = None
    bound: float | None = None
    draws_needed: int | None = None
    target: str | None = None  # the claim as an inequality, e.g. "mean > 0"
    alpha: float | None = None  # a three-way claim's one-sided level of each bound (docs/theory.md §11.3)
    # False when the verdict did not read the tolerance (a statistical test with a threshold of
    # its own): the JSON then says null rather than a number nothing was compared with.
    tolerance_judged: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        if not self.verdict:
            if self.bound is not None:  # judged by a confidence bound: passed / expected cannot tell
                raise ValueError(f"{self.id}: a statistical result needs its verdict (it may be inconclusive)")
            self.verdict = decide_verdict("holds" if self.passed else "refuted", self.expected,
                                          unexplained_nonfinite=False)

    def to_json(self, *, with_errors: bool = False) -> dict:
        """The record written by ``verify --json`` and the report. A claim judged by a statistic
        against its threshold has no max or median error (null, not a NaN "measured"), and a
        tolerance the verdict never read is null."""
        out = asdict(self)
        if not with_errors:
            out.pop("errors")
        if not out.pop("tolerance_judged"):
            out["tolerance"] = None
        if self.statistic is not None:
            out["max_error"] = out["median_error"] = None
        return out


def verify_records(claims: list[Claim], results: list[ClaimResult], spec: ModelSpec) -> list[dict]:
    """The records of ``verify --json`` (and `attnverify.verify`): each result, with what was
    measured beside it: the spec swept and the claim's group, two sides and source."""
    measured = {"spec": json.loads(spec.to_json())}
    return [{**r.to_json(), **measured, "group": c.group, "lhs": c.lhs, "rhs": c.rhs, "source": c.source}
            for c, r in zip(claims, results, strict=True)]


def draw_mesh() -> Mesh:
    """A 1-d mesh over every device (every host's, after `jax.distributed.initialize()`)."""
    return Mesh(np.asarray(jax.devices()), ("draws",))


def effective_chunk_size(chunk_size: int) -> int:
    """`chunk_size` rounded up to a multiple of BLOCK (whole blocks)."""
    return -(-chunk_size // BLOCK) * BLOCK


def draw_errors(
    claim: Claim,
    spec: ModelSpec,
    *,
    trials: int,
    seed: int = 0,
    dtype: str = "float64",
    scale: float = 1.0,
    chunk_size: int = 256,
    progress: bool = True,
    store: ChunkStore | None = None,
) -> np.ndarray:
    """The relative error of `claim` on draws 0..trials-1, as a float64 numpy array.

    Draws go in chunks of `chunk_size` (rounded up to BLOCK). A chunk's blocks of BLOCK
    draws are spread round-robin over the mesh's devices, each block one call of the same
    compiled ``jit(vmap)`` executable, dispatched asynchronously so devices run in parallel.
    (An SPMD-partitioned program changes float64 rounding in the last bit for a few draws;
    one executable per block keeps results bit-identical for any chunk size or device
    count.) With several processes, each computes the blocks of its own devices and the
    chunk is all-gathered. With a `store`, finished chunks are read back, not recomputed,
    and new ones are appended as they finish.
    """
    check_sweep_arguments(trials=trials, chunk_size=chunk_size, scale=scale, dtype=dtype)
    chunk = effective_chunk_size(chunk_size)
    if store is not None:  # the folder's manifest must describe this very sweep
        store.check_sweep(claim.id, spec=json.loads(spec.to_json()), seed=seed, dtype=dtype, scale=scale,
                          trials=trials, chunk_size=chunk)
    block = None  # compiled on the first chunk not in the store (a finished sweep compiles nothing)
    devices = list(draw_mesh().devices.flat)
    errors = []

    def finish(number: int, start: int, stop: int, values: list) -> None:
        if store is not None:
            store.append(claim.id, number, start, stop, values)
        errors.append(np.asarray(values, dtype=np.float64))
        bar.update(stop - start)

    # One chunk is dispatched ahead: its blocks start on the devices while the chunk before is
    # read back and stored, so the devices do not wait at each chunk's end. Chunks are still
    # finished (stored, counted) in order.
    # The bar (`finish` updates it) is taken off the line whatever ends the sweep: an error has its own line.
    with tqdm(total=trials, desc=claim.id, unit="draw", disable=not progress, file=sys.stderr, leave=False) as bar:
        ahead = None  # (number, start, stop, the chunk's pending blocks)
        for number, start in enumerate(range(0, trials, chunk)):
            stop = min(start + chunk, trials)
            cached = store.get(claim.id, number) if store is not None else None
            if cached is not None:
                if ahead is not None:
                    finish(*ahead[:3], _collect_chunk(ahead[3])[: ahead[2] - ahead[1]].tolist())
                    ahead = None
                errors.append(np.asarray(cached, dtype=np.float64))
                bar.update(stop - start)
                continue
            if block is None:
                block = claim_block(claim, spec, seed=seed, dtype=dtype, scale=scale)
            submitted = (number, start, stop, _submit_chunk(block, devices, start, chunk, block_size(trials)))
            if ahead is not None:
                finish(*ahead[:3], _collect_chunk(ahead[3])[: ahead[2] - ahead[1]].tolist())
            ahead = submitted
        if ahead is not None:
            finish(*ahead[:3], _collect_chunk(ahead[3])[: ahead[2] - ahead[1]].tolist())
    return np.concatenate(errors)


def _submit_chunk(block: ClaimBlock, devices: list, start: int, chunk: int, size: int = BLOCK) -> tuple:
    """Dispatch draws start..start+chunk-1 in blocks of `size` draws (BLOCK, or one smaller
    block for a short sweep): block b runs on device b mod len(devices). Returns what
    `_collect_chunk` reads back."""
    n_blocks = chunk // BLOCK if size == BLOCK else 1
    mine = {b: devices[b % len(devices)] for b in range(n_blocks)}
    mine = {b: d for b, d in mine.items() if d.process_index == jax.process_index()}
    return n_blocks, size, {b: block.submit(start + b * size, device, size) for b, device in mine.items()}


def _collect_chunk(submitted: tuple) -> np.ndarray:
    """The errors of a chunk `_submit_chunk` dispatched, in draw order (waits for its blocks)."""
    n_blocks, size, pending = submitted
    out = np.zeros((n_blocks, size), dtype=np.float64)
    for b, value in pending.items():
        out[b] = np.asarray(value, dtype=np.float64)
    if jax.process_count() > 1:
        # Other processes' blocks are zeros here: the sum over processes is exact.
        out = np.asarray(multihost_utils.process_allgather(out)).sum(axis=0)
    return out.reshape(-1)


def check_sweep_arguments(*, trials: int, chunk_size: int, scale: float, dtype: str) -> None:
    if trials < 1:
        raise InputError(f"trials must be >= 1, got {trials}", parameter="trials")
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}", parameter="chunk_size")
    if not (scale > 0 and np.isfinite(scale)):
        raise InputError(f"scale must be a positive number, got {scale}", parameter="scale")
    if not isinstance(dtype, str) or dtype not in DTYPES:  # a list is unhashable
        raise InputError(f"dtype must be float64 or float32, got {dtype!r}", parameter="dtype")


def run_claim(claim: Claim, spec: ModelSpec, *, trials: int, seed: int = 0, dtype: str = "float64",
              scale: float = 1.0, chunk_size: int = 256, progress: bool = True,
              store: ChunkStore | None = None) -> ClaimResult:
    """Sweep `claim` and give its verdict (`verification.verdicts`).

    Identity claims (and per-draw checks with an "error" summary) hold iff the error is within
    the tolerance; statistical claims (a `verification.confidence` test as summary) are judged by
    a confidence bound and may be inconclusive. NaN / inf draws are counted; unless the claim
    declares why they are legitimate (`Claim.nonfinite_reason`), they make the verdict FAIL.
    A user's claim whose code fails (its build, comparison, measure, summary, context or proof
    raises, or its fields cannot work) is a one-line `InputError` naming it (`registry.user_code`).
    """
    if not is_builtin(claim):
        check_user_claim(claim)  # before any draw: a tolerance that is no number fails now
    errors = draw_errors(claim, spec, trials=trials, seed=seed, dtype=dtype, scale=scale,
                         chunk_size=min(chunk_size, trials), progress=progress, store=store)
    return judge_claim(claim, spec, errors, trials=trials, seed=seed, dtype=dtype, scale=scale)


def _with_the_models_reason(claim: Claim, spec: ModelSpec, errors: np.ndarray, *, seed: int, dtype: str,
                            scale: float) -> tuple[Claim, np.ndarray | None]:
    """`claim`, or, for a built-in claim run on a plugin's model that declares where it is undefined
    (``Model.nonfinite_reason``, docs/plugins.md), a copy that declares that reason for its NaN draws,
    provided the model's output is NaN or infinite on each of them (`blocks.model_undefined`). A NaN
    draw where the model is a number is the claim's own (a derived gradient NaN where the model and
    `jax.grad` are finite): the reason does not cover it, and the claim is returned as it is, with
    those draws (else None). A user's claim states its own reason (`Claim.nonfinite_reason`)."""
    plugin = getattr(spec, "plugin", None)
    reason = getattr(getattr(plugin, "model", None), "nonfinite_reason", None)
    if reason is None or claim.nonfinite_reason is not None or not is_builtin(claim):
        return claim, None
    nonfinite = ~np.isfinite(errors)
    if nonfinite.any():
        uncovered = np.flatnonzero(nonfinite & ~model_undefined(spec, trials=errors.size, seed=seed, dtype=dtype,
                                                                 scale=scale))
        if uncovered.size:
            return claim, uncovered
    return replace(claim, nonfinite_reason=f"{plugin.name}'s model: {reason}"), None


def judge_claim(claim: Claim, spec: ModelSpec, errors: np.ndarray, *, trials: int, seed: int = 0,
                dtype: str = "float64", scale: float = 1.0) -> ClaimResult:
    """The verdict of `claim` on its per-draw numbers `errors` (the second half of `run_claim`)."""
    errors = np.asarray(errors, dtype=np.float64)
    if claim.summary is None and not is_builtin(claim) and np.any(errors < 0):  # NaN compares False
        raise UserCodeError(f"claim {claim.id!r}: its measure returned a negative error ({np.min(errors):.3g}): an "
                            "error is a distance, >= 0 (a signed quantity needs a summary: verification.empirical)")
    claim, uncovered = _with_the_models_reason(claim, spec, errors, seed=seed, dtype=dtype, scale=scale)
    tolerance = claim.tolerance[dtype]
    finite_mask = np.isfinite(errors)
    nonfinite = int(errors.size - finite_mask.sum())
    allowed = claim.nonfinite_reason is not None
    kept = errors[finite_mask] if allowed else errors
    statistics: dict[str, float] = {}
    judgement, every = None, {}
    tolerance_judged = True
    undefined = False  # a summary's number NaN on finite draws: nothing was judged
    if isinstance(claim.summary, STATISTICAL_TESTS):  # a statistical claim: three-way
        tolerance_judged = takes_tolerance(claim.summary)
        judgement = claim.summary.judge(errors, tolerance if tolerance_judged else None, dtype=dtype)
        statistics = {name: float(value) for name, value in judgement.numbers.items()}
        outcome = judgement.outcome
        max_error = median_error = float("nan")  # no "error": see statistic, estimate, bound
    elif isinstance(claim.summary, EveryDrawCheck):  # a statistic of every draw against its threshold
        check = claim.summary
        with user_code(claim, "summary", check):
            value, numbers = check.judge(kept, tolerance) if kept.size else (float("nan"), {})
        statistics = {name: float(v) for name, v in numbers.items()}
        max_error = median_error = float("nan")  # no "error": see statistic, estimate, threshold
        outcome = ("holds" if value <= check.limit(tolerance) else "refuted") if kept.size else "inconclusive"
        undefined = bool(kept.size) and bool(np.isfinite(kept).all()) and np.isnan(value)
        every = dict(statistic=check.statistic, estimate=value, threshold=check.limit(tolerance),
                     direction="below", target=check.target(tolerance))
    else:
        if claim.summary is not None:  # a per-draw check: its "error" against the tolerance
            max_error = float("nan")
            if kept.size:  # every draw's NaN declared legitimate: nothing to summarise
                with user_code(claim, "summary", claim.summary):
                    statistics = {name: float(value) for name, value in claim.summary(kept).items()}
                    max_error = statistics["error"]
        else:  # over the finite draws: NaN / inf draws are counted apart, and fail the claim unless declared
            max_error = float(np.max(errors[finite_mask])) if finite_mask.any() else float("inf")
        median_error = float(np.median(errors[finite_mask])) if finite_mask.any() else float("nan")
        # Every draw's NaN declared legitimate: nothing was checked.
        outcome = ("holds" if bool(np.isfinite(max_error)) and max_error <= tolerance else "refuted") \
            if kept.size else "inconclusive"
        undefined = claim.summary is not None and bool(kept.size) and bool(np.isfinite(kept).all()) \
            and np.isnan(max_error)
    if claim.context is not None:  # reported numbers, not judged (never the "error" entry)
        with user_code(claim, "context", claim.context):
            statistics.update({k: v for k, v in _context(claim, spec).items() if k != "error"})
    expected = claim.expected(spec)
    unexplained = (nonfinite > 0 and not allowed) or undefined
    verdict = decide_verdict(outcome, expected, unexplained_nonfinite=unexplained)
    passed = outcome == "holds" and not unexplained
    refutes = claim.asserted_by if verdict == "expected_fail" else None
    finding = _finding(claim, spec, verdict, judgement, statistics, max_error=max_error, median_error=median_error,
                       tolerance=tolerance, nonfinite=nonfinite, draws=errors.size, every=every, uncovered=uncovered)
    if undefined and verdict == "fail":  # neither a pass nor a caught failure: NaN is never read as a number
        finding = (f"Its summary gave NaN on {kept.size} finite draws: nothing was judged, and a NaN is neither a "
                   "pass nor a failure caught.")
    worst_draw = None
    # an identity, or a check of every draw (its statistic is their largest, or for `EveryDrawAbove` their
    # least): one draw decides it. An undeclared NaN / inf draw is the worst; declared ones are left out.
    if claim.summary is None or isinstance(claim.summary, (EveryDrawCheck, EveryDrawAbove)):
        if uncovered is not None:  # the NaN draws a plugin model's reason does not cover
            bad = uncovered
        else:
            bad = np.flatnonzero(~finite_mask) if not allowed else np.array([], int)
        if bad.size:
            worst_draw = int(bad[0])
        elif finite_mask.any():
            worst_draw = (claim.summary.worst(errors) if isinstance(claim.summary, EveryDrawAbove)
                          else int(np.argmax(np.where(finite_mask, errors, -np.inf))))
    if verdict == "fail" and scale != 1.0:
        finding = _off_scale(claim, finding, scale)
    if verdict == "fail" and claim.id in BUILTIN and (claim.summary is not None
                                                     or (not claim.holds and claim.provenance == "measured")):
        finding = _off_spec(claim, finding, spec)  # a statistic, or a measured failure; not an identity
    if verdict == "fail" and worst_draw is not None:  # the draw to inspect (`init-model --draw`)
        finding = f"{_ended(finding)} Worst: draw {worst_draw} (seed {seed})."
    proof = None
    if claim.proof is not None:
        with user_code(claim, "proof", claim.proof):
            proof = _proof(claim, spec)
        if proof is not None and not isinstance(proof, str):  # None: no proof to report
            raise UserCodeError(f"claim {claim.id!r}: proof returned {type(proof).__name__}, not a sentence (str)")
        if proof is not None and not (proof.strip() and proof.isprintable()):  # a table row's cell, as the statement
            raise UserCodeError(f"claim {claim.id!r}: proof returned {proof!r}, not a sentence on one line")
    shown = errors[finite_mask]
    qs = {f"p{q}": float(np.quantile(shown, q / 100)) if shown.size else float("nan") for q in (10, 50, 90, 99)}
    stat = every
    if judgement is not None:
        stat = dict(statistic=judgement.statistic, estimate=judgement.estimate, threshold=judgement.threshold,
                    direction=judgement.direction, bound=judgement.bound, draws_needed=judgement.draws_needed,
                    target=judgement.target, alpha=ALPHA)
    return ClaimResult(
        id=claim.id, statement=claim.statement, dtype=dtype, tolerance=tolerance, trials=trials,
        max_error=max_error, median_error=median_error, passed=passed,
        finding=finding, expected=expected, unexpected=verdict == "fail",
        proof=proof, seed=seed, scale=scale, quantiles=qs, errors=errors.tolist(), statistics=statistics,
        verdict=verdict, provenance=claim.provenance, refutes=refutes, nonfinite=nonfinite,
        nonfinite_reason=claim.nonfinite_reason, tolerance_judged=tolerance_judged, worst_draw=worst_draw, **stat,
    )


def _stored(claim: Claim, spec: ModelSpec) -> bool:
    """The package's own claim on a plain spec: what it computes may be kept on disk."""
    return is_builtin(claim) and type(spec) is ModelSpec


def _context(claim: Claim, spec: ModelSpec) -> dict[str, float]:
    """`claim.context(spec)`: a built-in claim's on a plain spec is computed once and kept on disk
    (`numerics.stored_results`; it may train models or evaluate a thousand documents)."""
    if _stored(claim, spec):
        return _builtin_context(claim.id, spec)
    return {k: float(v) for k, v in claim.context(spec).items()}


@stored_results.on_disk
def _builtin_context(claim_id: str, spec: ModelSpec) -> dict[str, float]:
    return {k: float(v) for k, v in REGISTRY[claim_id].context(spec).items()}


def _proof(claim: Claim, spec: ModelSpec) -> str:
    """`claim.proof(spec)`, kept on disk like `_context` (a SymPy proof may take seconds)."""
    return _builtin_proof(claim.id, spec) if _stored(claim, spec) else claim.proof(spec)


@stored_results.on_disk
def _builtin_proof(claim_id: str, spec: ModelSpec) -> str:
    return REGISTRY[claim_id].proof(spec)


def _off_scale(claim: Claim, finding: str, scale: float) -> str:
    """An unexpected verdict's finding at `--scale` != 1: expectations are set at the paper's init."""
    if scale < 1.0 and claim.holds is False and finding.endswith(REVIEW):
        return (f"{finding[:-len(REVIEW)]}Drawn at --scale {scale:g}: what makes it fail at the paper's init "
                "(scale 1) may shrink with the parameters; review the expectation at --scale 1.")
    return f"{_ended(finding)} Drawn at --scale {scale:g}; the expectation is set at the paper's init (scale 1)."


#: How an unexpected PASS's finding ends (at scale 1).
REVIEW = "Review the expectation."


def _ended(finding: str) -> str:
    """`finding` as a sentence that another can follow: a claim's own finding may end without a full stop."""
    return finding if finding.rstrip().endswith((".", "!", "?")) else f"{finding.rstrip()}."


def _off_spec(claim: Claim, finding: str, spec: ModelSpec) -> str:
    """An unexpected verdict of a built-in statistic (whatever its expectation's source), or of a built-in
    statement measured here to fail, swept on a spec whose switches differ from the paper's model, or whose
    sizes or explained class differ from verify's defaults (SMALL), beyond the claim's own hypotheses: the
    expectation is set for the paper's model at those defaults, so the finding says what changed. (A derived
    identity holds on every spec that meets its hypotheses: its unexpected FAIL gets no such note; a
    user's claim states its own expectation, for the user's model.)"""
    changed = {name: value for name, value in spec.deviations().items() if name not in claim.requires}
    # heads=1 changes what some statistics compare: with one head, alpha_t |s_t| is detached G x I itself; the
    # explained class is set there too
    resized = {f.name: getattr(spec, f.name) for f in fields(ModelSpec)
               if f.name not in SWITCHES and f.name not in claim.requires
               and getattr(spec, f.name) != getattr(SMALL, f.name)}
    if not changed and not resized:
        return finding
    swept = ", ".join(f"{name}={value}" for name, value in sorted({**changed, **resized}.items()))
    at = " at verify's defaults (--sizes small)" if resized else ""
    return f"{_ended(finding)} Swept with {swept}; the expectation is set for the paper's model{at}."


def _unmet_text(claim: Claim, spec: ModelSpec) -> str:
    """The hypotheses `spec` does not meet, in parentheses: each value against the assumed one; a
    plugin whose model is not proved to be the assumed one named once, with the switches assumed."""
    unmet = claim.unmet(spec)
    plugin = sorted({v for v in unmet.values() if isinstance(v, str) and v.startswith("plugin ")})
    values = {k: v for k, v in unmet.items() if v not in plugin}
    parts = []
    if values:
        parts.append(f"{', '.join(f'{k}={v}' for k, v in values.items())}; "
                     f"the statement assumes {', '.join(f'{k}={claim.requires[k]}' for k in values)}")
    for name in plugin:
        assumed = [k for k, v in unmet.items() if v == name]
        parts.append(f"{name}: its model is not proved to be the one the statement assumes, "
                     f"{', '.join(f'{k}={claim.requires[k]}' for k in assumed)}")
    return f"({'; '.join(parts)})"


def _counts_draws(claim: Claim, statistics: dict[str, float], nonfinite: int) -> bool:
    """A claim about every draw (`EveryDrawAbove`) whose share was taken over its finite draws
    only (no NaN / inf draw, or all of them declared): its finding counts the draws that fall short."""
    return isinstance(claim.summary, EveryDrawAbove) and "fraction" in statistics and (
        nonfinite == 0 or claim.nonfinite_reason is not None)


def _finding(claim: Claim, spec: ModelSpec, verdict: str, judgement, statistics: dict[str, float], *,
             max_error: float, median_error: float, tolerance: float, nonfinite: int, draws: int,
             every: dict, uncovered: np.ndarray | None = None) -> str | None:
    """The line reported under the table (None for a plain PASS; a PASS that left draws out says
    why). `every`: an `EveryDrawCheck`'s statistic, estimate and target (empty for other claims).
    `uncovered`: NaN draws where a plugin's model that declares where it is undefined is a number.
    A claim's own finding may quote ``max_error``, ``median_error``, ``draws`` and its statistics."""
    if verdict == "pass":
        if nonfinite and claim.nonfinite_reason:
            return f"{nonfinite} of {draws} draws NaN/inf, not judged (declared: {claim.nonfinite_reason})."
        return None
    if verdict == "fail" and nonfinite and claim.nonfinite_reason is None:
        plugin = getattr(spec, "plugin", None)
        if uncovered is not None:
            return (f"{nonfinite} of {draws} draws are NaN/inf, {uncovered.size} of them where the output of plugin "
                    f"{plugin.name}'s model is a number (first: draw {uncovered[0]}): what the model declares "
                    f"({plugin.model.nonfinite_reason}) covers the draws where it is undefined, not these, where a "
                    "side of the comparison is NaN (a formula undefined where the model is not, or a gradient lost "
                    "to overflow).")
        where = (f" The model of plugin {plugin.name} may be undefined on these draws (a log or square root of a "
                 "negative number, 0/0) or overflow there." if plugin is not None else "")
        return (f"{nonfinite} of {draws} draws are NaN/inf: a draw that cannot be computed is no evidence, and "
                f"the claim declares no reason for them (Claim.nonfinite_reason).{where}")
    if verdict == "inconclusive":
        if judgement is None or (nonfinite == draws and claim.nonfinite_reason is not None):
            # every draw set aside for the declared reason: the reason says why, not "too few draws"
            return f"Inconclusive: no finite draw ({nonfinite} NaN/inf, allowed: {claim.nonfinite_reason})."
        return inconclusive_finding(judgement)
    if judgement is not None:
        side, value = judgement.deciding
        shown = f"{judgement.target}: estimate {judgement.estimate:.4g}, {side} bound {value:.4g}"
    elif every:
        shown = f"{every['target']}: {every['statistic']} {every['estimate']:.4g}"
    elif _counts_draws(claim, statistics, nonfinite):  # its "error" is 1 - the share of draws above
        judged = draws - nonfinite
        below = round((1 - statistics["fraction"]) * judged)
        shown = (f"{below} of {judged} draws are not above {claim.summary.threshold:.4g} (the least "
                 f"{statistics['min']:.4g})")
    else:
        shown = f"max error {max_error:.3g}"
    if verdict == "hyp_unmet":
        where = _unmet_text(claim, spec)
        if nonfinite and claim.nonfinite_reason is None:
            if nonfinite == draws:
                return f"Not computed outside its hypotheses {where}: all {draws} draws are NaN/inf."
            return (f"Fails outside its hypotheses {where}: {nonfinite} of {draws} draws are NaN/inf, "
                    f"and on the others {shown}.")
        return f"Fails outside its hypotheses {where}: {shown}."
    if verdict == "fail" and claim.holds is False:
        return f"Holds although expected to fail (expectation: {claim.provenance}): {shown}. {REVIEW}"
    if claim.finding:
        try:
            return claim.finding.format(**{**statistics, "max_error": max_error, "median_error": median_error,
                                           "draws": draws})
        except (KeyError, ValueError, IndexError, AttributeError) as err:  # it quotes what was not measured
            if claim.id not in BUILTIN:  # (a built-in's context, left out); a user's typo is said
                warn(f"claim {claim.id}: its finding does not format ({type(err).__name__}: {err}; it may name "
                     f"max_error, median_error, draws and {', '.join(sorted(statistics)) or 'no statistic'}): the "
                     "generic one is shown")
    # the generic finding: a refutation is a bug where the claim is claimed to hold, and what was
    # expected where it is claimed not to (Claim.holds False: verdict expected_fail)
    said = f"as expected ({claim.provenance})" if claim.holds is False else "where it is claimed to hold"
    if judgement is not None:
        return f"{'Refuted' if claim.holds is False else 'REFUTED'} {said}: {shown}."
    fails = "Fails" if claim.holds is False else "FAILS"
    if every:
        return f"{fails} {said}: {every['statistic']} {every['estimate']:.4g} > {every['threshold']:.4g}."
    if _counts_draws(claim, statistics, nonfinite):
        return f"{fails} {said}: {shown}."
    return f"{fails} {said}: max error {max_error:.3g} > {tolerance:g}."
