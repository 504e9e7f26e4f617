"""Each command's checks of its flags, made before any computation (`attnverify.validate` holds
the checks themselves): numbers finite and in range, seeds every PRNG takes, output paths
writable and of the right kind, sizes that fit in memory, parameters inside the float range.

A command calls ``check_<command>(args, ...)`` first; a failure is one `InputError` line naming
the flag, so a long computation never ends in a refusal it could have started with.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from pathlib import Path

from attnverify import validate
from attnverify.errors import InputError, note, warn
from attnverify.spec import ModelSpec

#: `derive lime --d`: SymPy sums d terms at 30 digits per constant, ~0.03 s per unit of d on one
#: core (measured: d = 100 in 7.6 s, d = 400 in 15.7 s, start-up included), so d = 2000 takes about
#: a minute; beyond it the command would run for many minutes to print seven numbers.
MAX_DERIVE_D = 2000
#: Bytes a Python float costs in a list of sweep errors (object + pointer), plus its numpy copy.
ERROR_BYTES = 32 + 8


def _flag(field: str) -> str:
    return f"--{field.replace('_', '-')}"


def _seed(args: argparse.Namespace) -> None:
    if getattr(args, "seed", None) is not None:
        validate.seed("--seed", args.seed)


def check_derive(args: argparse.Namespace) -> None:
    for flag in ("d", "nu"):  # values of LIME's constants: another derivation would ignore them
        if getattr(args, flag) is not None and args.what != "lime":
            raise InputError(f"--{flag} applies to `derive lime`, not `derive {args.what}`")
    printed = [f"--{flag.replace('_', '-')}" for flag in ("latex", "explicit_check") if getattr(args, flag)]
    if printed and args.what != "gradient":  # LIME's constants and Eq. (19) are printed one way only
        raise InputError(f"{', '.join(printed)} applies to `derive gradient`, not `derive {args.what}`")
    sized = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(ModelSpec)
             if getattr(args, f.name, None) is not None] + (["--sizes"] if getattr(args, "sizes", None) else [])
    if sized and args.what == "lime":  # LIME's constants do not depend on the model
        raise InputError(f"{', '.join(sized)} applies to `derive gradient` and `derive eq19`, not `derive lime`")
    if args.what == "lime" and args.nu is not None and args.d is None:  # the symbolic forms have no value of nu
        raise InputError("--nu needs --d: without it `derive lime` prints the constants for every d and nu")
    if args.d is not None:
        validate.count("--d", args.d, low=2, high=MAX_DERIVE_D)
    if args.nu is not None:
        validate.number("--nu", args.nu, low=0, low_open=True, allow_inf=True)


def check_verify(args: argparse.Namespace, spec) -> None:
    """Everything `verify` can check before its sweeps (the float range: `check_scale_in_range`)."""
    check_sweep(spec, trials=args.trials, chunk_size=args.chunk_size, seed=args.seed, scale=args.scale,
                name=lambda field: f"--{field.replace('_', '-')}")
    if args.json is not None:
        validate.output_file("--json", args.json)
    if args.out is not None:
        validate.output_folder("--out", args.out)
        if args.json is not None:
            _not_in_results_folder("--json", args.json, args.out)


def check_sweep(spec, *, trials, chunk_size, seed, scale, name=str) -> None:
    """A sweep's arguments (`verify` and `attnverify.verify`, which name them by `name`): integers
    and a number in range, a block of models and the trials' results that fit in memory."""
    validate.count(name("trials"), trials)
    validate.count(name("chunk_size"), chunk_size)
    validate.seed(name("seed"), seed)
    validate.number(name("scale"), scale, low=0, low_open=True)
    _sweep_block_fits(spec)
    check_trials_fit(trials, name("trials"))


def _sweep_block_fits(spec) -> None:
    """A vectorised sweep block (`verification.blocks.BLOCK` models) fits in memory."""
    from attnverify.verification.blocks import BLOCK

    validate.spec_fits(spec, copies=BLOCK, what="a sweep block")


def check_trials_fit(trials: int, name: str = "--trials") -> None:
    """The errors of one claim's `trials` draws fit in memory (`verify` and `report`)."""
    validate.fits_in_memory(f"{name} {trials} (the errors of one claim)", trials * ERROR_BYTES)


def _not_in_results_folder(name: str, path, folder) -> None:
    """Refuse an output file that is the results folder itself, or one of the files the sweep
    keeps in it (`validate.SWEEP_RECORDS`), through links too: found out only when the sweep is
    over, or clobbering the sweep's own records."""
    given = folder
    target, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    if target == folder:
        raise InputError(f"{name} {path}: is the --out folder (the sweep's results go there); "
                         "give the JSON file another name")
    if target.parent == folder and target.name in validate.SWEEP_RECORDS:
        raise InputError(f"{name} {path}: is the sweep's own {target.name} in --out {given}; "
                         "give the JSON file another name")


def check_scale_in_range(spec, *, scale: float, seed: int, dtype: str, claims=(), name=_flag) -> None:
    """Refuse an init scale whose random model leaves the float range (draw 0's logits,
    attention, output or gradient not finite): its sweep would report overflow as a failed
    identity. Only scales above 1 can get there (the embedding is N(0, 1)). Below that range,
    warn when rounding alone may exceed the tolerance of identity claims of `claims`
    (`warn_rounding_floor`). Refuse, too, a scale below 1 whose gradient underflows (draw 0's
    below the square root of the smallest normal float): there both sides of an identity are
    0, and it would PASS with an error of 0."""
    if scale == 1:
        return
    import jax.numpy as jnp

    from attnverify.numerics.draws import sweep_draw
    from attnverify.numerics.modelfile import check_float_range

    params, tokens = sweep_draw(seed, 0, spec, scale=scale, dtype=jnp.dtype(dtype))  # the sweep's draw 0
    check_float_range(params, spec, tokens, f"{name('scale')} {scale:g} ({dtype}, draw 0)", headroom=True,
                      footroom=scale < 1)
    if scale < 1:
        return
    if getattr(spec, "plugin", None) is None:  # a plugin's model has no `scores` of the paper's form
        warn_rounding_floor(spec, params, tokens, scale=scale, dtype=dtype, claims=claims)


#: An identity's tolerance is read as broken by rounding from this fraction of it on.
ROUNDING_MARGIN = 0.1


def warn_rounding_floor(spec, params, tokens, *, scale: float, dtype: str, claims) -> None:
    """Warn when the attention's rounding at this scale reaches `ROUNDING_MARGIN` of an identity
    claim's tolerance (docs/theory.md §10.5, "The rounding floor of attention"): exp(gamma)
    computed from a score gamma rounded to eps relative is off by about eps |gamma| relative, so
    an identity that holds exactly can still fail its tolerance there."""
    import numpy as np

    from attnverify.numerics.modelfile import score_magnitude

    # identities expected to hold here, judged against a rounding tolerance (a count's is 0: exact)
    identities = [c for c in claims if c.expected(spec) and c.summary is None and c.tolerance[dtype] > 0]
    if not identities:
        return
    if spec.scorer != "dot":  # additive and deep scorers: scores bounded by tanh, pre-activations not
        warn(f"--scale {scale:g}: the identities' tolerances are calibrated at scale 1, and the rounding of the "
             f"{spec.scorer} scorer is not estimated: a FAIL of an identity may measure rounding")
        return
    largest = score_magnitude(params, tokens, spec)
    floor = float(np.finfo(dtype).eps) * largest
    reached = [c for c in identities if floor >= ROUNDING_MARGIN * c.tolerance[dtype]]
    if reached:
        named = ", ".join(c.id for c in reached[:3]) + (", ..." if len(reached) > 3 else "")
        warn(f"--scale {scale:g}: the attention scores reach {largest:.3g} (draw 0), so {dtype} rounding alone "
             f"moves the attention by about eps x {largest:.3g} = {floor:.2g} relative, near or above the "
             f"tolerance of {len(reached)} identity claim(s) ({named}; smallest "
             f"{min(c.tolerance[dtype] for c in reached):g}): a FAIL there may measure rounding, not the identity")


#: The flags that name what a command writes (a file, or a folder, which is never a source file).
OUTPUT_FLAGS = ("out", "json", "csv", "figure")


def outputs_spare_sources(args: argparse.Namespace) -> None:
    """No output is the plugin or claims-module file the command reads (`init-model --out` over the
    plugin wrote a model archive in place of its code; `verify --json` over a claims module, JSON)."""
    sources = [("--plugin", args.plugin)] if getattr(args, "plugin", None) else []
    # a claims module named by its path (one named as a dotted module is not a file here)
    sources += [("--claims-module", m) for m in getattr(args, "claims_module", None) or () if Path(m).is_file()]
    outputs = {f"--{flag}": value for flag in OUTPUT_FLAGS
               if isinstance(value := getattr(args, flag, None), str | os.PathLike)}
    for flag, source in sources:
        validate.distinct_outputs(outputs, {flag: source})


def check_init_model(args: argparse.Namespace) -> None:
    _seed(args)
    if getattr(args, "draw", None) is not None:
        validate.count("--draw", args.draw, low=0, high=validate.SEED_MAX)  # folded into the key as a uint32
        if args.vocab:  # a sweep's documents are ids of the built-in vocabulary's size
            raise InputError("--vocab: a sweep's draw is written with the built-in vocabulary, not with --vocab")
    elif getattr(args, "dtype", None) is not None:
        raise InputError("--dtype applies to `init-model --draw` (the sweep's dtype), not to a plain init-model")
    validate.number("--scale", args.scale, low=0, low_open=True)
    validate.output_file("--out", args.out)
    validate.distinct_outputs({"--out": args.out}, {"--vocab": args.vocab})


def check_model_size(spec) -> None:
    """One model of `spec` and its vocabulary (Python strings, ~80 bytes a word) fit in memory."""
    validate.spec_fits(spec)
    validate.fits_in_memory(f"a vocabulary of {spec.vocab_size} words", 80 * spec.vocab_size)


#: `explain`'s LIME flags and the `lime_summary` argument each sets.
EXPLAIN_LIME_FLAGS = {"lime_runs": "runs", "nu": "nu", "removal": "removal", "lime_limit_samples": "limit_samples",
                      "seed": "seed"}


def explain_lime_settings(args: argparse.Namespace) -> dict:
    """The LIME settings `explain` was given (the others are `lime_summary`'s defaults)."""
    return {name: getattr(args, flag) for flag, name in EXPLAIN_LIME_FLAGS.items() if getattr(args, flag) is not None}


def check_explain(args: argparse.Namespace, spec) -> None:
    given = [_flag(flag) for flag in EXPLAIN_LIME_FLAGS if getattr(args, flag) is not None]
    if given and args.lime_samples is None:  # LIME would not run: the flags would change nothing
        raise InputError(f"{', '.join(given)} applies to LIME: add --lime-samples N")
    check_lime_values(seed=args.seed, nu=args.nu, lime_runs=args.lime_runs,
                      lime_limit_samples=args.lime_limit_samples, lime_samples=args.lime_samples)
    if args.lime_samples is not None:
        check_lime_memory(spec, lime_samples=args.lime_samples, runs=args.lime_runs,
                          limit_samples=args.lime_limit_samples)


def check_lime_values(*, seed, nu, lime_runs, lime_limit_samples, lime_samples, name=_flag) -> None:
    """`explain`'s LIME settings, each None where not given: a seed, a width > 0, counts (the
    command line names them by flag, `attnverify.explain` by argument: `name`)."""
    if seed is not None:
        validate.seed(name("seed"), seed)
    if nu is not None:
        validate.number(name("nu"), nu, low=0, low_open=True, allow_inf=True)
    for field, value in (("lime_runs", lime_runs), ("lime_limit_samples", lime_limit_samples)):
        if value is not None:
            validate.count(name(field), value)
    if lime_samples is not None:
        validate.count(name("lime_samples"), lime_samples, low=2)


def _lime_default(field: str):
    """`lime_summary`'s default for `field` (the checks follow the library's defaults)."""
    import inspect

    from attnverify.numerics.lime.summary import lime_summary

    return inspect.signature(lime_summary).parameters[field].default


def check_lime_memory(spec, *, lime_samples: int, runs: int | None, limit_samples: int | None, name=_flag) -> None:
    """LIME's samples and the limit's Monte-Carlo masks fit in memory for `spec` (runs and
    limit_samples None: `lime_summary`'s defaults)."""
    runs = _lime_default("runs") if runs is None else runs
    limit_samples = _lime_default("limit_samples") if limit_samples is None else limit_samples
    # per run and sample: the mask and perturbed document (T), the model's activations (T x d_e)
    per_sample = 8 * spec.max_len * (2 + spec.d_embed)
    validate.fits_in_memory(f"{name('lime_samples')} {lime_samples} x {name('lime_runs')} {runs}",
                            lime_samples * runs * per_sample)
    validate.fits_in_memory(f"{name('lime_limit_samples')} {limit_samples}", limit_samples * 8 * spec.max_len * 2)


#: Which `related` analyses read each of its flags (another would ignore it).
RELATED_FLAGS = {"epsilon": ("adversarial",), "temperature": ("gumbel",), "head": ("adversarial", "fiber"),
                 "seed": ("adversarial", "gumbel")}


def check_related(args: argparse.Namespace) -> None:
    """One-line errors for bad values, and for a flag the chosen analysis would ignore (a flag left
    out is None: `verification.related.analyse` has the defaults)."""
    _seed(args)
    for flag, analyses in RELATED_FLAGS.items():
        if getattr(args, flag) is not None and args.what not in analyses:
            raise InputError(f"--{flag} applies to `related {' / '.join(analyses)}`, not `related {args.what}`")
    for eps in args.epsilon or ():
        validate.number("--epsilon", eps, low=0, low_open=True)
    for tau in args.temperature or ():
        validate.number("--temperature", tau, low=0, low_open=True, allow_inf=True)
    for flag in ("epsilon", "temperature"):  # one result per value: a repeated value would be one row
        validate.no_repeats(f"--{flag}", getattr(args, flag))


#: The largest learning rate `train` takes: AdamW's step is about lr per weight, and far above 1
#: every weight leaves any useful range (optax's step overflows, with warnings, near 1e300).
MAX_LEARNING_RATE = 1e3


#: The most epochs `train` takes: a count beyond any training (10**20 ran until killed, its ETA 1.9e14 h).
MAX_EPOCHS = 10_000


def check_train(args: argparse.Namespace, spec) -> None:
    _seed(args)
    validate.count("--epochs", args.epochs, high=MAX_EPOCHS)
    validate.count("--batch", args.batch)
    validate.number("--lr", args.lr, low=0, low_open=True, high=MAX_LEARNING_RATE)
    out = validate.output_file("--out", args.out)
    from attnverify.numerics.training.train import metrics_path  # the command imports it anyway

    metrics = validate.output_file("--out (its metrics file)", metrics_path(out))
    from attnverify.numerics.training.corpora import source_file

    validate.distinct_outputs({"--out": out, "--out (its metrics file)": metrics}, {"--data": source_file(args.data)})
    # parameters, AdamW's two moments and the gradient, plus a batch of activations
    validate.spec_fits(spec, copies=4 + args.batch, what="training")


def check_figures(args: argparse.Namespace) -> None:
    _seed(args)
    if args.out is not None:
        validate.output_folder("--out", args.out)
    if args.text is not None:
        check_drawable("--text", args.text)


def check_report(args: argparse.Namespace, spec) -> None:
    _seed(args)
    if args.trials is not None:
        validate.count("--trials", args.trials)
        check_trials_fit(args.trials)
    if args.jobs is not None:
        validate.count("--jobs", args.jobs, high=validate.MAX_COUNT)  # as $ATTNVERIFY_JOBS
    else:
        from attnverify.verification.workers import default_jobs

        default_jobs()  # a bad $ATTNVERIFY_JOBS fails before any work
    validate.output_folder("--out", args.out)
    _sweep_block_fits(spec)
    if args.text is not None:
        check_drawable("--text", args.text)


def check_report_inputs(args: argparse.Namespace, spec: ModelSpec) -> None:
    """What a report reads, checked before its folder is created or locked (the claims modules
    loaded): the claim ids, the synthetic tasks the claims and figures train on at the claims'
    `spec`, the model (``--model``, else ``--out``'s ``model.npz`` from an earlier run), and
    without either the training data (loaded: it is read in a fraction of a second, and a bad
    source or CSV then fails here, not after the folder is made)."""
    from attnverify.figures.catalog import refuse_untrainable as refuse_untrainable_figures
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.registry import refuse_untrainable, select

    refuse_untrainable(select(list(args.claims)), spec)
    model = Path(args.model) if args.model else Path(args.out) / CACHED_MODEL
    loaded = None
    if args.model or model.is_file():
        from attnverify.numerics import modelfile

        loaded = modelfile.load(model)
        max_len = loaded.spec.max_len
    else:
        from attnverify.numerics.training.corpora import DEFAULT_CORPUS, load_corpus
        from attnverify.numerics.training.train import DEFAULT_SPEC

        load_corpus(DEFAULT_CORPUS if args.data is None else args.data)
        max_len = DEFAULT_SPEC.max_len
    from attnverify.figures.catalog import check_model_on_texts, check_names, check_texts
    from attnverify.figures.common import RUNNING_SENTENCE

    # the report's figures explain --text (fig4 too), else their own sentences: fig4's words within the
    # model's window, whichever text it explains (`check_texts`)
    check_texts(check_names(args.figures), args.text or RUNNING_SENTENCE, args.text, max_len=max_len)
    refuse_untrainable_figures(check_names(args.figures), spec)
    if loaded is not None:
        check_model_on_texts(check_names(args.figures), loaded, args.text or RUNNING_SENTENCE, args.text)


def check_sweep_eq19(args: argparse.Namespace) -> None:
    """Also sets ``args.d`` where it was not given: the default numbers of words that fit the grid."""
    _seed(args)
    for nu in args.nu:
        validate.number("--nu", nu, low=0, low_open=True, allow_inf=True)
    for d in args.d or ():
        validate.count("--d", d, low=2)
    for name in ("T", "K"):
        for value in getattr(args, name) or ():
            validate.count(f"--{name}", value)
    for grid, size in (("T", "max_len"), ("K", "heads")):  # the grid's values replace the spec's: one was ignored
        if getattr(args, grid) and getattr(args, size) is not None:
            flag = "--" + size.replace("_", "-")
            raise InputError(f"{flag}: the grid's --{grid} sets the spec's {size} at each point, so {flag} would be "
                             f"ignored; give one of them")
    from attnverify.cli_support import spec_from_args
    from attnverify.spec import SMALL
    from attnverify.verification.lime_sweep import DEFAULT_DS, default_ds, largest_d

    spec = spec_from_args(args, SMALL)
    Ts = args.T or [spec.max_len]
    if args.d is None:
        args.d = default_ds(spec, Ts)
        if not args.d:
            raise InputError(f"--d: none of the defaults {' '.join(map(str, DEFAULT_DS))} fits T = {min(Ts)} "
                             f"(at most {largest_d(min(Ts), spec)} distinct words); give --d")
    for T in Ts:
        too_many = [d for d in args.d if d > largest_d(T, spec)]
        if too_many:
            raise InputError(f"--d {too_many[0]}: a document of T = {T} tokens and a vocabulary of {spec.vocab_size} "
                             f"holds at most {largest_d(T, spec)} distinct words (T - 1 after [CLS], the vocabulary "
                             "but [CLS] and UNK)")
    for scale in args.scale:
        validate.number("--scale", scale, low=0, low_open=True)
    for flag in ("nu", "d", "T", "K", "scale", "removal"):  # one row per grid point: a repeat merges silently
        validate.no_repeats(f"--{flag}", getattr(args, flag))
    validate.count("--draws", args.draws)
    validate.number("--words-per-feature", args.words_per_feature, low=0, low_open=True)
    if args.mc_samples is not None:
        validate.count("--mc-samples", args.mc_samples)
    validate.count("--lime-samples", args.lime_samples, low=2)
    for T in Ts:
        for K in args.K or [spec.heads]:
            validate.spec_fits(spec.replace(max_len=T, heads=K), copies=args.draws, what="the grid's models")
    longest = max([*(args.T or ()), spec.max_len, *args.d])
    words = f"on documents of {longest} words (--d, --T)"  # a huge --d is as likely the cause as the samples
    if args.mc_samples is not None:
        _check_mc_samples_used(spec, args)
        validate.fits_in_memory(f"--mc-samples {args.mc_samples} {words}", args.mc_samples * 8 * longest * 2)
    validate.fits_in_memory(f"--lime-samples {args.lime_samples} {words}", args.lime_samples * 8 * longest * 2)
    for flag in ("json", "csv"):
        if getattr(args, flag) is not None:
            validate.output_file(f"--{flag}", getattr(args, flag))
    validate.distinct_outputs({"--json": args.json, "--csv": args.csv})


def _check_mc_samples_used(spec, args: argparse.Namespace) -> None:
    """`sweep-eq19 --mc-samples` changes nothing when every d of the grid is enumerated exactly."""
    from attnverify.numerics.lime import evaluation as lime_eval
    from attnverify.verification.lime_sweep import MAX_EXACT_D

    largest = {removal: MAX_EXACT_D[lime_eval.fastest_path(True, spec, removal)] for removal in args.removal}
    if all(d <= largest[removal] for d in args.d for removal in args.removal):
        limits = ", ".join(f"d <= {largest[r]} with {r}" for r in args.removal)
        raise InputError(f"--mc-samples: every d of the grid is enumerated exactly ({limits}), so no Monte-Carlo "
                         "sample is drawn")
    from attnverify.numerics.lime.limit import check_mc_samples

    check_mc_samples(args.mc_samples, max(d for d in args.d if any(d > largest[r] for r in args.removal)),
                     "--mc-samples: ")


def check_sweep_scales(spec, args: argparse.Namespace) -> None:
    """Refuse an init scale whose random models leave the float range, as `verify` does
    (`check_scale_in_range`, draw 0 of each grid size): the sweep would compare overflow."""
    for T in args.T or [spec.max_len]:
        for K in args.K or [spec.heads]:
            for scale in args.scale:
                check_scale_in_range(spec.replace(max_len=T, heads=K), scale=scale, seed=args.seed, dtype="float64")


def check_explain_limit_samples(args: argparse.Namespace, d: int, path: str) -> None:
    """`explain --lime-limit-samples`: see `check_limit_samples`."""
    if args.lime_limit_samples is not None:
        check_limit_samples(args.lime_limit_samples, d, path)


def check_limit_samples(n: int, d: int, path: str, name: str = "--lime-limit-samples") -> None:
    """A Monte-Carlo sample size for LIME's limit, given for a text of d distinct words: refused
    (one-line `InputError`) where the limit is enumerated or undefined, so that it would change
    nothing, and where it is too small for the Monte-Carlo limit's batches."""
    from attnverify.numerics.lime.limit import check_mc_samples, is_enumerated

    if d < 2:
        raise InputError(f"{name}: the limit is undefined at d = {d}, so no sample is drawn")
    if is_enumerated(d, path):
        raise InputError(f"{name}: the limit at d = {d} is enumerated exactly ({2**d} masks), so no "
                         "Monte-Carlo sample is drawn")
    check_mc_samples(n, d, f"{name}: ")


def check_bench(args: argparse.Namespace) -> None:
    from attnverify.verification.bench.tables import KNOWN

    chosen = set(KNOWN) if not args.which or "all" in args.which else set(args.which)
    if args.no_cache and chosen <= {"cache", "compile"}:  # each sets up caches of its own: ignored, silently
        raise InputError(f"--no-cache: bench {' and '.join(sorted(chosen))} measure{'s' if len(chosen) == 1 else ''} "
                         "with compilation caches of their own (cold, warm, off); it would change nothing")
    for flag in ("json", "figure"):
        if getattr(args, flag) is not None:
            validate.output_file(f"--{flag}", getattr(args, flag))
    if args.figure and not args.figure.endswith((".png", ".pdf")):
        raise InputError(f"--figure {args.figure} must end in .png or .pdf")
    validate.distinct_outputs({"--json": args.json, "--figure": args.figure})
    if args.figure and args.which and "all" not in args.which:
        from attnverify.figures.bench_scaling import PLOTTED  # matplotlib: only when a figure is asked for

        if not set(args.which) & set(PLOTTED):
            raise InputError(f"--figure plots the {', '.join(PLOTTED)} benchmarks: add one of them "
                             f"(asked for: {' '.join(args.which)})")


def check_drawable(name: str, text: str) -> None:
    """Text a figure shows must be plain: matplotlib reads ``$...$`` as mathtext (an unpaired or
    malformed one fails only when the figure is saved) and cannot draw control characters."""
    if "$" in text:
        raise InputError(f"{name}: '$' cannot be drawn (matplotlib reads $...$ as mathematics); remove it")
    bad = next((c for c in text if ord(c) < 32 and c not in "\t\n"), None)
    if bad is not None:
        raise InputError(f"{name}: contains the control character {bad!r}, which cannot be drawn")
    if not validate.is_utf8(text):
        raise InputError(f"{name}: is not UTF-8 text, which cannot be drawn")


def make_folder(name: str, path) -> Path:
    """Create the output folder `path` (and its parents); one line if that fails."""
    path = validate.output_folder(name, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise validate.os_error(path, err) from None
    return path


#: What a report writes into its folder (besides ``figures/NAME.*`` and the cached model.npz).
REPORT_FILES = ("report.md", "report.html", "results.json")
#: Inside a report's folder: the model it trains when given none (read back by a later run), and
#: the folder of its figures.
CACHED_MODEL, FIGURES_FOLDER = "model.npz", "figures"
FIGURE_SUFFIXES = (".png", ".pdf", ".json", ".csv")


def figure_file_names(names) -> set[str]:
    """The file names the figures `names` are written under (the drawing in each format, and its
    data file), whatever the folder."""
    return {f"{name}{suffix}" for name in names for suffix in FIGURE_SUFFIXES}


#: The hidden folder an earlier report is set aside in, by the pid of the run that set it aside.
EARLIER_REPORT = "{prefix}{pid}-earlier-report"
#: Its name's suffix once the run's own report is written, while it is being removed.
DISCARDED = "-discarded"


class EarlierReport:
    """An earlier report's files in a report folder (its pages, and every figure file by a known
    figure name), set aside while a new report is written, so that it never shows an earlier run's
    figures beside its own and a failed run never loses the report that was there.

    `set_aside` moves them into one hidden folder beside them (`EARLIER_REPORT`); `discard` removes
    them once the new report is written; `restore` puts back whatever that folder holds, over any new
    file of the same name, when the report is refused or interrupted. A run that could not restore
    them (killed by SIGKILL, or leaving at once on a second Ctrl-C) leaves the folder behind; the next
    report into the same folder puts those files back first (`recover`). Other files, and the cached
    ``model.npz``, are never moved."""

    def __init__(self, folder: Path, figure_names: list[str]):
        self.folder = Path(folder)
        self.aside = self.folder / EARLIER_REPORT.format(prefix=validate.TMP_PREFIX, pid=os.getpid())
        names = [Path(name) for name in REPORT_FILES]
        names += [Path(FIGURES_FOLDER) / name for name in sorted(figure_file_names(figure_names))]
        self.names = names
        self.count = 0

    def recover(self) -> int:
        """Put back the files of an earlier report that a run which is gone set aside and never restored,
        over the files of the same name that run wrote (a run that finished renamed its stash before
        removing it: `discard`); says on stderr how many. Call it holding the folder's lock."""
        count = 0
        aside = EARLIER_REPORT.format(prefix="", pid="")  # the name's end, "-earlier-report"
        for stash in sorted(self.folder.glob(EARLIER_REPORT.format(prefix=validate.TMP_PREFIX, pid="*") + "*")):
            pid = validate.temporary_owner(stash.name)
            if not (stash.is_dir() and pid is not None and (pid == os.getpid() or not validate.pid_alive(pid))):
                continue
            if stash.name.endswith(aside + DISCARDED):  # its run had written its report: the earlier one goes
                shutil.rmtree(stash, ignore_errors=True)
            elif stash.name.endswith(aside):
                # The run never finished, so a file of the same name is its part-written report's (a
                # figure beside the earlier pages): the earlier report is the folder as it was.
                count += _move_back(stash, self.folder, overwrite=True)
        if count:
            note(f"put back {count} file{'' if count == 1 else 's'} of an earlier report that an "
                 f"interrupted run had set aside in {self.folder}")
        return count

    def set_aside(self) -> EarlierReport:
        """Move the earlier report's files aside (quietly: a refusal's stderr stays one line)."""
        for name in self.names:
            if not (self.folder / name).is_file():
                continue
            try:
                (self.aside / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.folder / name, self.aside / name)
            except OSError as err:
                self.restore()
                raise validate.os_error(self.folder / name, err) from None
            self.count += 1
        return self

    def discard(self) -> None:
        """Remove the earlier report (the new one is written); says on stderr how many files it had.
        The hidden folder is renamed first, in one step, so that a run killed while removing it leaves
        a folder the next report removes (`recover`), never one it would put back over this report."""
        if self.aside.is_dir():
            doomed = self.aside.with_name(self.aside.name + DISCARDED)
            try:
                os.replace(self.aside, doomed)
            except OSError:
                doomed = self.aside
            shutil.rmtree(doomed, ignore_errors=True)
        if self.count:
            note(f"{self.folder} held an earlier report; its {self.count} files were removed "
                 "(this report takes its place)")

    def restore(self) -> None:
        """Put back whatever the hidden folder holds, quietly: a file that cannot be put back stays there."""
        if self.aside.is_dir():
            _move_back(self.aside, self.folder, overwrite=True)


def _move_back(stash: Path, folder: Path, *, overwrite: bool) -> int:
    """Move every file under `stash` to the same place under `folder` (over a file there only when
    `overwrite`); then remove `stash` if nothing is left in it. Returns how many files moved."""
    moved = 0
    for path in sorted(p for p in stash.rglob("*") if p.is_file()):
        target = folder / path.relative_to(stash)
        if target.exists() and not overwrite:
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved += 1
        except OSError:
            continue
    for sub in sorted((p for p in stash.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        validate.remove_empty_folders([sub])
    validate.remove_empty_folders([stash])
    return moved
