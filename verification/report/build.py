"""The verification report, the project's main job: model, claims, figures, one page.

`run_report` (1) loads the model (``--model``, else ``DIR/model.npz`` from an earlier run,
else trains one on the built-in tweet corpus with `numerics.training.train.DEFAULT_SPEC`), (2) runs
every registered claim (or the chosen ones) with `verification.sweep.run_claim` in float64
and float32, in worker processes, one claim family at a time (`verification.workers`), (3) draws
the figures through the `draw_figures` callable it is given (the figures layer sits above this
one, so the caller passes it in), and (4) writes ``DIR/report.md``, ``DIR/report.html``
(self-contained) and ``DIR/results.json``.

A claim or figure that raises is recorded under "Could not run" and the report is still
written; the exit status says so.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attnverify.numerics import modelfile
from attnverify.numerics.training.corpora import DEFAULT_CORPUS
from attnverify.numerics.training.train import DEFAULT_SPEC, TrainConfig, read_metrics, train_and_save
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification import workers
from attnverify.verification.registry import REGISTRY, is_builtin, refuse_untrainable, select
from attnverify.verification.report.render import ReportContent, environment, html_page, markdown
from attnverify.verification.report.sections import summary_lines
from attnverify.verification.sweep import ClaimResult

from attnverify import validate
from attnverify.errors import InputError
from attnverify.preflight import CACHED_MODEL, FIGURES_FOLDER, REPORT_FILES
from attnverify.spec import SMALL, ModelSpec

#: Draws per claim and dtype, and the dtypes swept. "quick" is the default main job (minutes
#: on 2 cores): each claim costs one compilation per dtype, so it sweeps float64 only (the
#: identity checks' dtype); the thm1_hist figure still shows float32.
PRESETS = {"quick": 32, "full": 1000}
DTYPES = {"quick": ("float64",), "full": ("float64", "float32")}
#: The default model's training (docs/theory.md §7 uses 10 epochs at lr 1e-4, batch 16 as well).
DEFAULT_TRAINING = TrainConfig()  # the paper's recipe (its defaults); a test trains less

#: ``draw_figures(names, context_kwargs, out_dir, log, *, after_claims=None, before=None) ->
#: (drawn, failed, notes)`` (`figures.catalog.draw_for_report`): `after_claims` True or False
#: draws only the figures drawn after the claims (they read the claims' results), or only the
#: others, and `before` is what an earlier call drew, merged in. A drawer for a worker process
#: must be picklable.
FigureDrawer = Callable[..., tuple[dict[str, list[Path]], list[str], dict[str, str]]]


@dataclass(frozen=True)
class ReportOptions:
    out_dir: Path
    model: Path | None = None  # None: DIR/model.npz if present, else train on `data`
    data: str = DEFAULT_CORPUS
    claims: tuple[str, ...] = ("all",)
    figures: tuple[str, ...] = ("all",)
    preset: str = "quick"
    trials: int | None = None  # overrides the preset
    seed: int = 0
    claims_spec: ModelSpec = SMALL
    text: str | None = None
    jobs: int | None = None  # worker processes for the claims (None: `workers.default_jobs`)


@dataclass(frozen=True)
class Log:
    """The report's log: one line on stderr, stamped with the seconds since `start` (a
    `time.perf_counter` reading: the machine's monotonic clock, the same in a worker process)."""

    start: float

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f} s] {message}", file=sys.stderr, flush=True)


def obtain_model(options: ReportOptions, log: Callable[[str], None]) -> tuple[modelfile.ModelFile, dict]:
    """The model to explain, and what the report says about it (path, origin, metrics)."""
    path = options.model or options.out_dir / CACHED_MODEL
    if options.model is not None or path.is_file():
        origin = "given" if options.model is not None else "cached from an earlier run"
        log(f"model: loading {path} ({origin})")
    else:
        origin = f"trained now on {options.data}"
        log(f"model: none at {path}; training on {options.data} (T = {DEFAULT_SPEC.max_len}, "
            f"d_embed = {DEFAULT_SPEC.d_embed}, K = {DEFAULT_SPEC.heads} heads, {DEFAULT_TRAINING.epochs} epochs)")
        train_and_save(options.data, path, DEFAULT_SPEC, DEFAULT_TRAINING)
    loaded = modelfile.load(path)
    metrics = read_metrics(path) or {}
    return loaded, {"path": str(path), "origin": origin, "metrics": metrics, "spec": loaded.spec.to_json()}


def run_claims(options: ReportOptions, log: Callable[[str], None],
               beside: workers.Beside | None = None) -> tuple[list[ClaimResult], list[str]]:
    """Every chosen claim in the preset's dtypes, in worker processes when there are several
    (`verification.workers`, with `beside` in one of them); results in the order the claims
    were chosen."""
    chosen = select(list(options.claims))
    trials = options.trials or PRESETS[options.preset]
    dtypes = DTYPES[options.preset]
    jobs = options.jobs or workers.default_jobs()
    count = workers.worker_count(chosen, options.claims_spec, jobs)
    if count:
        log(f"claims: {len(chosen)} in {len(workers.families(chosen))} families, on {count} worker processes"
            + (", the figures beside them" if beside is not None else ""))
    outcomes = {}
    for outcome in workers.sweep_claims(chosen, options.claims_spec, dtypes=dtypes, trials=trials,
                                        seed=options.seed, jobs=jobs, beside=beside):
        workers.log_outcome(outcome, log)
        outcomes[outcome.claim_id, outcome.dtype] = outcome
    ordered = [outcomes[claim.id, dtype] for claim in chosen for dtype in dtypes]
    results = [o.result for o in ordered if o.error is None]
    errors = [f"claim {o.claim_id} ({o.dtype}): {o.error}" for o in ordered if o.error is not None]
    return results, errors


def run_report(options: ReportOptions, draw_figures: FigureDrawer | None = None) -> tuple[dict[str, Path], int]:
    """Run the main job; returns the written files and the exit status (0: everything as expected,
    1: an unexpected PASS/FAIL, or a claim or figure that could not run)."""
    log = Log(time.perf_counter())

    if options.preset not in PRESETS:
        raise InputError(f"unknown preset {options.preset!r} (use {', '.join(PRESETS)})")
    if options.trials is not None and options.trials < 1:
        raise InputError(f"trials must be >= 1, got {options.trials}", parameter="trials")
    if options.out_dir.exists() and not options.out_dir.is_dir():
        raise InputError(f"{options.out_dir}: exists and is not a folder")
    # an unknown claim name, or a spec its synthetic tasks cannot be built at, fails before any work
    refuse_untrainable(select(list(options.claims)), options.claims_spec)
    options.out_dir.mkdir(parents=True, exist_ok=True)

    loaded, model_info = obtain_model(options, log)
    trained = model_info["origin"] != "given" or bool(model_info["metrics"])  # a training record beside it
    context: dict[str, Any] = dict(model=loaded, model_origin="trained" if trained else "given", seed=options.seed,
                                   quick=options.preset == "quick", claims_spec=options.claims_spec)
    if options.text:
        context["text"] = context["document"] = options.text
    figures_dir = options.out_dir / FIGURES_FOLDER
    # With worker processes, the figures that do not read the claims' results are drawn in one
    # of them while the claims run, the others after the claims, here (`workers.Beside`,
    # `figures.catalog.AFTER_CLAIMS`). Without workers, or if that worker failed, all of them here.
    beside = None if draw_figures is None else workers.Beside(
        functools.partial(draw_figures, after_claims=False), (list(options.figures), context, figures_dir, log))
    results, errors = run_claims(options, log, beside)

    figure_files: dict[str, Path] = {}
    notes: dict[str, str] = {}
    if draw_figures is not None:
        context["sweeps"] = {(r.id, r.dtype): r.errors for r in results}
        if beside.ran and beside.error is None:
            drawn, failed, notes = draw_figures(list(options.figures), context, figures_dir, log,
                                                after_claims=True, before=beside.result)
        else:
            if beside.error is not None:
                log(f"figures: the worker process could not draw them ({beside.error}); drawing them here")
            drawn, failed, notes = draw_figures(list(options.figures), context, figures_dir, log)
        errors += failed
        figure_files = {name: next(p for p in paths if p.suffix == ".png") for name, paths in drawn.items()}

    content = ReportContent(
        title="attnverify: verification report (Lopardo, Precioso & Garreau, ICML 2024)",
        results=results,
        claims={c.id: {"group": c.group, "source": c.source, "tolerance_reason": c.tolerance_reason,
                       "holds": c.holds, "provenance": c.provenance, "asserted_by": c.asserted_by, "lhs": c.lhs,
                       "user": not is_builtin(c)}
                for c in REGISTRY.values() if any(r.id == c.id for r in results)},
        model={**model_info, "claims_spec": options.claims_spec.to_json()},  # Model used compares the two
        figures=figure_files,
        figure_notes=notes,
        environment=environment(seed=options.seed, dtypes=DTYPES[options.preset],
                                spec_json=options.claims_spec.to_json()),
        errors=errors,
    )
    written = {name: options.out_dir / name for name in REPORT_FILES}
    payload = {"summary": summary_lines(results, content.claims, errors, notes),
               "results": [r.to_json() for r in results], "errors": errors, "model": model_info,
               "environment": content.environment,
               "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}}
    modelfile.atomic_write(written["report.md"], lambda tmp: Path(tmp).write_text(markdown(content)))
    modelfile.atomic_write(written["report.html"], lambda tmp: Path(tmp).write_text(html_page(content)))
    # Strict JSON, as every JSON file the package writes: a non-finite number (an identity claim whose
    # draw overflowed, say) is null with the reason beside it (`validate.dumps`).
    modelfile.atomic_write(written["results.json"],
                           lambda tmp: Path(tmp).write_text(validate.dumps(payload, indent=2) + "\n"))
    log(f"wrote {', '.join(str(p) for p in written.values())}")
    status = 1 if errors or any(r.unexpected for r in results) else 0
    return written, status
