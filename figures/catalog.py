"""The figures by name, and drawing any of them into a folder (PNG, PDF and the data)."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from attnverify.figures.common import RUNNING_SENTENCE, FigureContext, save_figure, write_json
from attnverify.figures.presentation import present
from attnverify.numerics import stored_results
from attnverify.numerics.modelfile import written_together
from attnverify.numerics.tokenize import words

from attnverify.errors import InputError, note
from attnverify.preflight import figure_file_names
from attnverify.spec import ModelSpec
from attnverify.validate import entries, missing_folders, names_or_all, remove_added, remove_empty_folders

#: name -> (module, one-line description). Modules are imported on demand.
FIGURES: dict[str, tuple[str, str]] = {
    "architecture": ("architecture", "the model drawn from its spec: [CLS], words, K heads, mean over heads"),
    "fig1": ("fig1", "seven explanation strips of one sentence (alpha, LIME, gradients)"),
    "fig3": ("fig3", "self-attention matrix of each head"),
    "fig4": ("fig4", "LIME over runs (box plots) against Eq. 19, the shell form and the exact limit"),
    "fig5": ("fig5", "gradient: Theorem 1 closed form vs autodiff, and their difference"),
    "eq19_nu": ("eq19_sweeps", "Eq. 19 error against the kernel width nu"),
    "eq19_d": ("eq19_sweeps", "Eq. 19 error against the number of words d"),
    "eq19_n": ("eq19_sweeps", "LIME convergence to beta^infinity and Eq. 19 error against n (log-log slope)"),
    "thm1_hist": ("thm1_hist", "Theorem 1 error histogram, float64 and float32"),
    "jw_permutation": ("jw_permutation", "Jain & Wallace permutation test: median output change vs max attention"),
    "wp_tradeoff": ("wp_tradeoff", "Wiegreffe & Pinter: adversary trade-off vs J&W and seeds; baseline and diagnostic"),
}


def check_names(names: list[str]) -> list[str]:
    """`names`, checked; ``all`` (or none) means every figure (`validate.names_or_all`)."""
    return names_or_all(names, FIGURES, what="figure")


def _module(name: str):
    return importlib.import_module(f"attnverify.figures.{FIGURES[name][0]}")


def make(name: str, ctx: FigureContext, out_dir: str | Path) -> list[Path]:
    """Compute and draw figure `name`; write ``NAME.png``, ``NAME.pdf`` and ``NAME.json``."""
    out_dir = Path(out_dir)
    module = _module(name)
    compute: Callable[..., dict] = getattr(module, f"compute_{name}", None) or module.compute
    draw: Callable[[dict], object] = getattr(module, f"draw_{name}", None) or module.draw
    data = computed(name, compute, ctx)
    with written_together():  # a figure's files: all new or all as they were, never a mix of two runs
        paths = [write_json(out_dir / f"{name}.json", data)]
        writer = getattr(module, "write_table", None)
        if writer is not None:
            paths.append(writer(out_dir / f"{name}.csv", data))
        return save_figure(draw(data), out_dir, name) + paths


def computed(name: str, compute: Callable[[FigureContext], dict], ctx: FigureContext) -> dict:
    """``compute(ctx)``, the figure's data, kept on disk beside the compiled programs
    (`numerics.stored_results`) when the context is the package's own: a warm report or
    ``attnverify figures`` run again draws from it instead of running LIME and training again.
    The key is the figure, every input in `ctx` (the model's arrays and vocabulary, the text, seed,
    preset, sweep spec, and the sweeps' numbers for a figure that reads them) and the package's
    code, libraries and machine."""
    key = _context_key(ctx, sweeps=name in READS_SWEEPS)
    if key is None:
        return compute(ctx)
    return stored_results.kept(f"figure-{name}", f"{name} {key}", lambda: compute(ctx))


def _context_key(ctx: FigureContext, *, sweeps: bool = True) -> str | None:
    """A digest of everything in `ctx` (None: a plugin model or spec, code outside the package);
    the sweeps' numbers only with `sweeps` (the figures of `READS_SWEEPS`)."""
    import jax

    model = ctx.model
    if type(ctx.claims_spec) is not ModelSpec or (model is not None and (
            model.plugin is not None or model.extra or type(model.spec) is not ModelSpec)):
        return None
    digest = hashlib.sha256(repr((ctx.text, ctx.document, ctx.seed, ctx.quick, ctx.claims_spec.to_json())).encode())
    if model is not None:
        digest.update(repr((model.spec.to_json(), model.vocab)).encode())
        for leaf in jax.tree.leaves(model.params):
            array = np.asarray(leaf)
            digest.update(f"{array.dtype} {array.shape}".encode() + array.tobytes())
    for (claim_id, dtype), errors in sorted(ctx.sweeps.items()) if sweeps else ():
        digest.update(f"{claim_id} {dtype}".encode() + np.asarray(errors, dtype=np.float64).tobytes())
    return digest.hexdigest()


def check_inputs(names: list[str], ctx: FigureContext) -> None:
    """What the figures `names` need from `ctx`, checked before any is drawn: a model for those
    of `NEEDS_MODEL`, and text with a word for those that explain `ctx.text` or `ctx.document`."""
    for name in names:
        if name in NEEDS_MODEL:
            ctx.need_model(name)
    check_texts(names, ctx.text, ctx.document, max_len=None if ctx.model is None else ctx.model.spec.max_len)
    if ctx.model is not None:
        check_model_on_texts(names, ctx.model, ctx.text, ctx.document)


def check_model_on_texts(names: list[str], model, text: str, document: str | None) -> None:
    """The model file `model` computes finite logits, attention, output and gradient on each text
    the figures `names` explain (`modelfile.check_float_range`, as `explain` checks its text):
    weights near the float range gave NaN, and fig1 a traceback, fig3 and fig5 figures of nulls
    without a reason, fig4 a "Sigma is singular" that no kernel width mends."""
    from attnverify.numerics.modelfile import check_float_range
    from attnverify.numerics.tokenize import encode

    checked = set()
    for name in names:
        if name in READS_TEXT:
            value = text
        elif name in READS_DOCUMENT:
            from attnverify.figures.fig4 import DOCUMENT

            value = document or DOCUMENT
        else:
            continue
        if value not in checked:
            checked.add(value)
            tokens, _ = encode(value, model.vocab, model.spec.max_len)
            check_float_range(model.params, model.spec, tokens, f"figure {name}: the model on this text")


def check_texts(names: list[str], text: str, document: str | None = None, *, max_len: int | None = None) -> None:
    """Text with a word for the figures of `names` that explain `text`, and two distinct words for
    fig4's `document` (LIME's limit is undefined for one): among the first max_len - 1 words, those
    a model of that window reads, when `max_len` is given."""
    for name in names:
        # fig4 explains `document`, its own default document when that is empty
        value = document if name in READS_DOCUMENT else text if name in READS_TEXT else None
        if value is not None and (value or name in READS_TEXT) and not words(value):
            shown = (f"{value!r}" if value.strip() or not value  # the one-line error would fold the spaces
                     else f"of {len(value)} whitespace character{'s' * (len(value) != 1)}")
            raise InputError(f"figure {name}: the text {shown} has no words "
                             "(after lowercasing and splitting on \\W+)", parameter="text")
        if name in READS_DOCUMENT:
            if max_len is not None and max_len < 3:  # no text can help: say so, not "give two words"
                raise InputError(f"figure {name}: a model of T = {max_len} reads {max_len - 1} word of a text; {name} "
                                 "compares LIME with its large-sample limit, undefined for one word: leave it out")
            from attnverify.figures.fig4 import DOCUMENT

            value = value or DOCUMENT
        read = words(value or "")[: None if max_len is None else max_len - 1]
        if name in READS_DOCUMENT and len(set(read)) < 2:
            window = "" if max_len is None else f" in the model's window of {max_len - 1} words"
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise InputError(f"figure {name}: the text {shown!r} has one distinct word{window}; it compares LIME "
                             "with its large-sample limit, undefined for one word: give at least two",
                             parameter="text")


def text_notes(names: list[str], ctx: FigureContext) -> list[str]:
    """How the model reads a text the user gave (truncation, unknown words), for the figures of
    `names` that explain it (`numerics.tokenize.text_notes`)."""
    from attnverify.numerics.tokenize import encode
    from attnverify.numerics.tokenize import text_notes as notes_of

    readers = [n for n in names if n in READS_TEXT | READS_DOCUMENT]
    if ctx.model is None or not readers or ctx.text == RUNNING_SENTENCE:
        return []
    _, kept = encode(ctx.text, ctx.model.vocab, ctx.model.spec.max_len)
    return [f"{', '.join(readers)}: {note}" for note in notes_of(ctx.text, kept, ctx.model.vocab,
                                                                  ctx.model.spec.max_len)]


def make_all(names: list[str], ctx: FigureContext, out_dir: str | Path,
             *, log: Callable[[str], None] | None = None) -> dict[str, list[Path]]:
    """Every figure in `names` (validated first, so a typo, a missing model or text without a
    word fails before any work). If a figure is refused (`InputError`) after all, a folder this
    call created is removed with what it wrote there: a refusal leaves nothing behind. Interrupted,
    the figures finished so far stay, and a folder this call created is removed if it is empty."""
    names = check_names(names)
    check_inputs(names, ctx)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    made, before = missing_folders(out_dir), entries(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    try:
        for name in names:
            if log:
                log(f"figure {name}: {FIGURES[name][1]}")
            written[name] = make(name, ctx, out_dir)
    except InputError:
        remove_added(before, figure_file_names(names), out_dir)
        remove_empty_folders(made)
        raise
    except BaseException:  # interrupted: the figures finished so far stay, a folder made for none goes
        remove_empty_folders(made)
        raise
    return written


def caption(name: str) -> str:
    """The first paragraph of the figure module's docstring, on one line."""
    doc = (_module(name).__doc__ or FIGURES[name][1]).strip().split("\n\n")[0]
    return " ".join(doc.split())


#: The figures that explain a trained model (`FigureContext.need_model`): refused without one.
NEEDS_MODEL = frozenset({"fig1", "fig3", "fig4", "fig5"})
#: The figures that tokenise `FigureContext.text` (`.document`): refused if it has no word.
READS_TEXT, READS_DOCUMENT = frozenset({"fig1", "fig3", "fig5"}), frozenset({"fig4"})
#: The figures that read the claims' sweep results (`FigureContext.sweeps`).
READS_SWEEPS = frozenset({"thm1_hist"})
#: The figures that draw at random from `FigureContext.seed`, as many draws as `.quick` says,
#: and those that read a model when one is given (the others draw the same without it).
READS_SEED = frozenset({"fig1", "fig4", "eq19_nu", "eq19_d", "eq19_n", "jw_permutation", "thm1_hist"})
READS_MODEL = NEEDS_MODEL | {"architecture", "eq19_nu", "eq19_d", "eq19_n", "jw_permutation"}
#: The figures that train on the synthetic tasks (`numerics.training.synthetic_tasks`) at the
#: claims' spec (`FigureContext.claims_spec`), and those tasks: `wp_tradeoff` reads the `wp`
#: claims' pools, whose models are every task's (`verification.claims.wp.runs`).
TRAINS_ON: dict[str, tuple[str, ...]] = {"jw_permutation": ("needle", "bag_of_words"),
                                         "wp_tradeoff": ("needle", "bag_of_words", "planted")}
#: What `check_flags_read` checks: a flag, and the figures that read it.
READERS = {"--model": READS_MODEL, "--text": READS_TEXT | READS_DOCUMENT, "--seed": READS_SEED, "--quick": READS_SEED}
#: The figures a report draws after its claims; the others are drawn beside the claims
#: (`verification.workers.Beside`). `wp_tradeoff` plots the `wp` claims' stored pools
#: (`verification.claims.wp.pool`) and reads them back after the claims: drawn beside them, it
#: would train the same models and compute the same pools in a second process.
AFTER_CLAIMS = READS_SWEEPS | {"wp_tradeoff"}


def check_flags_read(names: list[str], given: list[str]) -> None:
    """Refuse a flag of `given` (keys of `READERS`) that none of the figures `names` reads: it
    would change nothing (``figures fig5 --seed 3`` draws what ``figures fig5`` draws)."""
    for flag in given:
        if not READERS[flag] & set(names):
            raise InputError(f"{flag}: {', '.join(names)} do{'es' if len(names) == 1 else ''} not read it "
                             f"(read by {', '.join(n for n in FIGURES if n in READERS[flag])})")


def refuse_untrainable(names: list[str], spec: ModelSpec) -> None:
    """An `InputError` naming the first figure of `names` that trains on a synthetic task that
    cannot be built at `spec` (`TRAINS_ON`; the claims' own check: `registry.refuse_untrainable`)."""
    from attnverify.numerics.training.synthetic_tasks import check_task

    for name in names:
        for task in TRAINS_ON.get(name, ()):
            check_task(task, spec, who=f"figure {name}")


def draw_for_report(names: list[str], context: dict, out_dir: str | Path, log: Callable[[str], None], *,
                    after_claims: bool | None = None, before: tuple | None = None,
                    ) -> tuple[dict[str, list[Path]], list[str], dict[str, str]]:
    """The report's figure step: like `make_all`, but a figure that raises is reported, not fatal.
    Returns the files per figure, one line per failed figure, and a caption per drawn figure.
    With `after_claims` True (False), only the figures of (not of) `AFTER_CLAIMS`; `before` is
    what an earlier call returned for the others, merged in (the figures in the order of
    `names`, the failures of the earlier call first)."""
    names = check_names(names)
    ctx = FigureContext(**context)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn, failed = {}, []
    if after_claims is not True:  # once per report
        for line in text_notes(names, ctx):
            log(f"note: {line}")
    for name in names:
        if after_claims is not None and (name in AFTER_CLAIMS) != after_claims:
            continue
        log(f"figure {name}: {FIGURES[name][1]}")
        try:
            drawn[name] = make(name, ctx, out_dir)
        except Exception as err:  # e.g. LIME not available: the rest of the report still matters
            failed.append(f"figure {name}: {type(err).__name__}: {err}")
            log(f"figure {name} could not be drawn: {type(err).__name__}: {err}")
            if not isinstance(err, InputError):  # a refusal says all in one line; a defect needs its trace
                traceback.print_exc(file=sys.stderr)
    notes = {name: present(name, _data(drawn[name]), caption(name)) for name in drawn}
    if before is not None:
        earlier, earlier_failed, earlier_notes = before
        drawn = {name: (drawn | earlier)[name] for name in names if name in drawn or name in earlier}
        notes = {name: (notes | earlier_notes)[name] for name in drawn}
        failed = earlier_failed + failed
    return drawn, failed, notes


def _data(paths: list[Path]) -> dict | None:
    """The figure's data file read back (None when it has none)."""
    found = [p for p in paths if p.suffix == ".json"]
    return json.loads(found[0].read_text()) if found else None


def figures_from_files(names: list[str], out_dir: str | Path, *, model: str | None = None,
                       text: str | None = None, seed: int = 0, quick: bool = False) -> dict[str, list[Path]]:
    """`attnverify figures`: load the model file (if given) and draw `names` into `out_dir`."""
    from attnverify.numerics import modelfile
    from attnverify.numerics.training.train import read_metrics

    names = check_names(names)
    ctx = FigureContext(model=modelfile.load(model) if model else None, seed=seed, quick=quick,
                        model_origin="trained" if model and read_metrics(model) is not None else "given")
    if text is not None:
        ctx.text = ctx.document = text
    written = make_all(names, ctx, out_dir)
    for line in text_notes(names, ctx) if text is not None else ():  # once nothing was refused: one line each
        note(line)
    return written
