"""The `attnverify` commands: each parses nothing, calls one library function and prints or
writes its result (`attnverify.cli` builds the parser and maps subcommands here)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from attnverify import plugins, preflight, validate
from attnverify.cli_support import emit, enable_x64, spec_from_args, write_json
from attnverify.errors import InputError, UserCodeError, note, warn
from attnverify.spec import PAPER, SMALL


# -- derive ---------------------------------------------------------------------------------
def cmd_derive(args: argparse.Namespace) -> int:
    from attnverify.theory.display import derivation_json, derivation_text

    preflight.check_derive(args)
    if args.plugin and args.what != "gradient":
        raise InputError(f"--plugin applies to `derive gradient`, not `derive {args.what}`")
    spec = spec_from_args(args, PAPER)
    if args.what == "gradient":
        from attnverify.theory.derivations import derive_gradient

        derivation = derive_gradient(spec, explicit_check=args.explicit_check)
        if args.plugin:  # a model variant: its derived gradient and statements must compile too
            plugins.check_compiles(spec, derived=True)
        if args.json:
            emit(validate.dumps(plugins.derivation_payload(derivation) if args.plugin
                                else derivation_json(derivation), indent=2))
        else:
            text = derivation_text(derivation, latex=args.latex)
            if args.plugin:
                first, rest = text.split("\n", 1)
                text = "\n".join([first, *plugins.derivation_lines(spec), rest])
            print(text)
        return 0
    if args.what in ("lime", "eq19"):
        from attnverify.theory import lime_display

        if args.what == "lime":
            derivation = lime_display.lime_derivation(args.d, 0.25 if args.nu is None else args.nu)
            text, payload = lime_display.lime_text, lime_display.lime_json
        else:
            derivation, text, payload = spec, lime_display.eq19_text, lime_display.eq19_json
        emit(validate.dumps(payload(derivation), indent=2, default=str) if args.json else text(derivation))
        return 0
    raise InputError(f"unknown derivation {args.what!r}")


# -- verify ---------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.store import ChunkStore, code_version, computation_digest
    from attnverify.verification.sweep import (
        BLOCK,
        effective_chunk_size,
        run_claim,
        verify_records,
    )
    from attnverify.verification.table import claims_table
    from attnverify.verification.verdicts import parse_verdicts

    spec = spec_from_args(args, SMALL)
    chosen = plugins.select_claims(args.claims, spec, args.claims_module)
    preflight.check_verify(args, spec)
    try:
        only = parse_verdicts(args.only) if args.only is not None else None
    except InputError as err:
        raise InputError(f"--only: {err}") from None
    store = None
    if args.out:
        manifest = {"spec": json.loads(spec.to_json()), "seed": args.seed, "dtype": args.dtype,
                    "scale": args.scale, "trials": args.trials,
                    "chunk_size": effective_chunk_size(min(args.chunk_size, args.trials)), "block": BLOCK,
                    "claims": [c.id for c in chosen], "code": code_version(chosen),
                    "computation": computation_digest()}
    elif args.resume:
        raise InputError("--resume needs --out DIR (the folder of the interrupted sweep)")
    preflight.check_scale_in_range(spec, scale=args.scale, seed=args.seed, dtype=args.dtype, claims=chosen)
    if args.out:  # locked until the sweep ends: a second run into the folder is refused
        store = ChunkStore.open(args.out, manifest, resume=args.resume,
                                distances=[c.id for c in chosen if c.summary is None])
    try:
        results = [
            run_claim(c, spec, trials=args.trials, seed=args.seed, dtype=args.dtype, scale=args.scale,
                      chunk_size=args.chunk_size, progress=not args.quiet, store=store)
            for c in chosen
        ]
    except UserCodeError:  # a user's claim refused once run: a sweep that recorded nothing leaves nothing
        if store is not None:
            store.refused()
        raise
    finally:
        if store is not None:
            store.close()
    print(f"spec: {spec.to_json()}\n{args.trials} draws per claim, seed {args.seed}, "
          f"init scale {args.scale:g}\n")
    print(claims_table(results, only=only))
    if args.json:
        write_json(args.json, verify_records(chosen, results, spec))
    return 1 if any(r.verdict == "fail" for r in results) else 0  # inconclusive is listed, not a failure


def cmd_claims(args: argparse.Namespace) -> int:
    from attnverify.verification import claims as _claims  # noqa: F401
    from attnverify.verification.registry import REGISTRY

    if args.plugin:  # its claims register as it loads
        plugins.load_plugin(args.plugin)
    for module in args.claims_module:
        plugins.load_claims_module(module)
    if args.json:
        fields = ("id", "group", "statement", "source", "provenance", "lhs", "rhs", "holds", "asserted_by",
                  "tolerance", "tolerance_reason", "requires")
        records = [{name: getattr(claim, name) for name in fields} for claim in REGISTRY.values()]
        emit(validate.dumps([{**r, "tolerance": dict(r["tolerance"]), "requires": dict(r["requires"])}
                             for r in records], indent=2, ensure_ascii=False))
        return 0
    for claim in REGISTRY.values():
        source = f"; the {claim.asserted_by} asserts it holds" if claim.asserted_by else ""
        holds = f"  [expected to FAIL; {claim.provenance}{source}]" if not claim.holds else ""
        print(f"{claim.id:28s} {claim.group:12s} {claim.statement}{holds}")
    return 0


# -- models ---------------------------------------------------------------------------------
def cmd_init_model(args: argparse.Namespace) -> int:
    enable_x64()
    import jax

    from attnverify.numerics import modelfile
    from attnverify.numerics.draws import draw_params
    from attnverify.numerics.tokenize import builtin_vocab, read_vocab

    preflight.check_init_model(args)
    vocab = read_vocab(args.vocab) if args.vocab else None
    default = PAPER.replace(vocab_size=len(vocab) if vocab else len(builtin_vocab()))
    spec = spec_from_args(args, SMALL if args.draw is not None else default)  # a draw: verify's defaults
    preflight.check_model_size(spec)  # before a vocabulary of that size is built
    vocab = (vocab or builtin_vocab(spec.vocab_size))[: spec.vocab_size]
    if len(vocab) != spec.vocab_size:
        asked = (f"--vocab-size {spec.vocab_size}" if args.vocab_size is not None
                 else f"--sizes {args.sizes} (a vocabulary of {spec.vocab_size}; pass --vocab-size)")
        raise InputError(f"{asked} exceeds the {len(vocab)} entries of {args.vocab} "
                         f"([CLS], UNK and its {len(vocab) - 2} words)")
    tokens = None
    if args.draw is not None:  # draw I of a sweep: its parameters and its document, as `verify` draws them
        from attnverify.numerics.draws import sweep_draw

        params, tokens = sweep_draw(args.seed, args.draw, spec, scale=args.scale,
                                    dtype=jax.numpy.dtype(args.dtype or "float64"))
        params = jax.tree.map(lambda x: x.astype(jax.numpy.float64), params)  # float32 numbers are float64 ones
    else:
        params = draw_params(jax.random.PRNGKey(args.seed), spec, scale=args.scale)
    if args.scale != 1 or args.plugin:  # a model every other command would reject (outside the float range, or a
        # plugin's model undefined: a division by a constant 0, a log of a negative number)
        # with headroom, as `verify` checks its draws: a product of two must not overflow either
        # (at --scale 1e100 the model was written, and explain refused it); with footroom, as `verify` too: at
        # --scale 1e-200 the gradient underflowed, and explain printed every explanation as exactly 0
        modelfile.check_float_range(params, spec, [j % spec.vocab_size for j in range(spec.max_len)],
                                    f"--scale {args.scale:g}" if args.scale != 1 else "the drawn model",
                                    headroom=True, footroom=args.scale < 1)
    if args.plugin:  # the plugin's declared arrays and its description go into the file too
        from attnverify.numerics.plugin_model import save_model

        save_model(args.out, spec, params, vocab)
    else:
        modelfile.save(args.out, spec, params, vocab)
    print(f"wrote {args.out}: {spec.to_json()}")
    if tokens is not None:  # UNK's entry is read as an unknown word by `explain --text`, i.e. as UNK again
        print(f"draw {args.draw} (seed {args.seed}) document: {' '.join(vocab[int(i)] for i in tokens[1:])}")
    return 0


def _note_text(text: str, kept: list[str], vocab: list[str], max_len: int) -> None:
    from attnverify.numerics.tokenize import text_notes

    for line in text_notes(text, kept, vocab, max_len):
        note(line)


def cmd_explain(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.numerics import modelfile
    from attnverify.numerics.explanations import explain
    from attnverify.numerics.tokenize import encode

    if args.plugin:  # the plugin's compiled forward; LIME through the generic path
        from attnverify.numerics.plugin_explanations import explain, lime_summary  # noqa: F811

        loaded = plugins.load_plugin_model(args.model, args)
    else:
        from attnverify.numerics.lime.summary import lime_summary

        loaded = modelfile.load(args.model)
    preflight.check_explain(args, loaded.spec)
    tokens, kept = encode(args.text, loaded.vocab, loaded.spec.max_len)
    modelfile.check_float_range(loaded.params, loaded.spec, tokens, f"{args.model} on this text")
    if args.lime_samples is not None:
        from attnverify.numerics.lime.evaluation import choose_path

        path = "generic" if args.plugin else choose_path(loaded.params, loaded.spec, args.removal or "delete")
        preflight.check_explain_limit_samples(args, len(dict.fromkeys(kept)), path)
    result = {"tokens": kept, **explain(loaded.params, tokens, loaded.spec, len(kept))}
    if args.lime_samples is not None:
        result.update(lime_summary(loaded.params, tokens, kept, loaded.spec, n_samples=args.lime_samples,
                                   output=result["logit"], **preflight.explain_lime_settings(args)))
    # the results must be finite; the settings are what was asked (--nu inf: written as null, "+inf" beside)
    validate.require_finite({k: v for k, v in result.items() if k != "lime_settings"}, "explain")
    if args.json:
        emit(validate.dumps(result, indent=2))
    else:
        from attnverify.numerics.explanations import explain_text

        print(explain_text(result, loaded.spec, lime_samples=args.lime_samples), flush=True)
    _note_text(args.text, kept, loaded.vocab, loaded.spec.max_len)  # after the result: one line each
    return 0


# -- train, figures, report ----------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from attnverify.numerics.training.corpora import DEFAULT_CORPUS
    from attnverify.numerics.training.train import DEFAULT_SPEC, TrainConfig, metrics_path, train_and_save

    spec = spec_from_args(args, DEFAULT_SPEC)
    args.data = DEFAULT_CORPUS if args.data is None else args.data
    preflight.check_train(args, spec)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch=args.batch, seed=args.seed)
    result = train_and_save(args.data, args.out, spec, config,
                            progress=not args.quiet)
    acc = result.metrics["accuracy"]
    print(f"wrote {args.out} and {metrics_path(args.out)}: test accuracy {acc['test']:.4f} "
          f"(validation {acc['validation']:.4f}, best epoch {result.metrics['best_epoch']}, "
          f"{result.metrics['seconds']:.0f} s)", flush=True)
    if result.spec.vocab_size < spec.vocab_size:  # `train`: the train split's words, fewer if it has fewer
        note(f"the vocabulary has {result.spec.vocab_size} entries, not {spec.vocab_size}: "
             f"[CLS], UNK and every word of the train split ({result.spec.vocab_size - 2})")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.figures.catalog import FIGURES, check_flags_read, check_names, figures_from_files

    given = [flag for flag in ("--model", "--text", "--seed") if getattr(args, flag[2:]) is not None]
    given += ["--quick"] if args.quick else []
    if args.list:
        others = [*(["figure names"] if args.names else []), *(["--all"] if args.all else []), *given,
                  *(["--out"] if args.out else [])]
        if others:
            raise InputError(f"--list lists every figure and draws none: not with {', '.join(others)}")
        for name, (_, description) in FIGURES.items():
            print(f"{name:10s} {description}")
        return 0
    if not args.all and not args.names:
        raise InputError("name the figures to draw (see --list) or pass --all")
    if args.all and args.names:
        raise InputError(f"--all draws every figure: not with figure names ({' '.join(args.names)})")
    if not args.out:
        raise InputError("--out DIR is required (the folder the figures go to)")
    preflight.check_figures(args)
    names = ["all"] if args.all else args.names
    check_flags_read(check_names(names), given)
    from attnverify.verification.store import FolderLock

    made = validate.missing_folders(Path(args.out))  # deepest first
    lock = FolderLock(preflight.make_folder("--out", args.out))
    try:
        lock.acquire()  # one run per folder at a time: two would mix their figures
    except BaseException:
        validate.remove_empty_folders(made)
        raise
    try:
        written = figures_from_files(names, args.out, model=args.model, text=args.text,
                                     seed=0 if args.seed is None else args.seed, quick=args.quick)
    except BaseException:  # refused (nothing drawn stays) or interrupted (the finished figures stay)
        lock.release(discard=True)
        validate.remove_empty_folders(made)
        raise
    lock.release(discard=lock.created)  # no lock file left beside the figures, unless one was there before
    for name, paths in written.items():
        print(f"{name}: {', '.join(str(p) for p in paths)}")
    return 0


def _note_cached_model(cached: Path, data: str) -> None:
    """A report reuses the model an earlier run trained into its folder: warn when `data` is not
    the corpus that model was trained on (its metrics file says which), since it goes unused."""
    from attnverify.numerics.training.train import read_metrics

    if not cached.is_file():
        return
    source = (read_metrics(cached) or {}).get("source")
    if source != data:
        warn(f"--data {data}: not used; the report explains the model cached in {cached}"
             f"{f', trained on {source}' if source else ''} (remove it to train on --data)")


def cmd_report(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.figures.catalog import check_flags_read, check_names, draw_for_report
    from attnverify.verification.report.build import ReportOptions, run_report

    names = check_names(args.figures)  # a misspelt figure fails before the claims run
    if args.text is not None:  # as `figures`: a text without a word fails now, not as a figure's traceback
        check_flags_read(names, ["--text"])  # its words: `preflight.check_report_inputs`, in the model's window
    if args.data is not None and args.model is not None:
        raise InputError("--data is the corpus a report trains on when it has no model: not with --model")
    if args.data is not None:
        _note_cached_model(Path(args.out) / preflight.CACHED_MODEL, args.data)
    for module in args.claims_module:  # the user's claims run like the built-in ones
        plugins.load_claims_module(module)
    preflight.check_report(args, spec_from_args(args, SMALL))
    # claims, synthetic tasks, model, data: refused before the folder exists
    preflight.check_report_inputs(args, spec_from_args(args, SMALL))
    options = ReportOptions(
        out_dir=Path(args.out), model=Path(args.model) if args.model else None,
        **({} if args.data is None else {"data": args.data}),
        claims=tuple(args.claims), figures=tuple(args.figures), preset="full" if args.full else "quick",
        trials=args.trials, seed=args.seed, claims_spec=spec_from_args(args, SMALL), text=args.text,
        jobs=args.jobs,
    )
    from attnverify.figures.catalog import FIGURES
    from attnverify.numerics.training.train import metrics_path
    from attnverify.verification.store import FolderLock

    made = validate.missing_folders(options.out_dir)  # deepest first
    lock = FolderLock(preflight.make_folder("--out", options.out_dir))
    try:
        lock.acquire()  # one report per folder at a time
    except BaseException:
        validate.remove_empty_folders(made)
        raise
    folders = (options.out_dir, options.out_dir / preflight.FIGURES_FOLDER)  # where a report writes, its names
    own = {*preflight.REPORT_FILES, preflight.FIGURES_FOLDER, preflight.CACHED_MODEL,
           metrics_path(preflight.CACHED_MODEL).name, *preflight.figure_file_names(FIGURES)}
    earlier = preflight.EarlierReport(options.out_dir, list(FIGURES))
    earlier.recover()  # what an interrupted run set aside and could not put back: part of the folder as it was
    before = validate.entries(*folders)
    try:
        earlier.set_aside()
        written, status = run_report(options, draw_figures=draw_for_report)
    except BaseException:  # refused, interrupted or a bug: the folder as it was, with no lock and no folder it made
        earlier.restore()
        validate.remove_added(before, own, *folders)
        lock.release(discard=True)
        validate.remove_empty_folders(made)
        raise
    finally:
        lock.release()
    earlier.discard()
    print(f"report: {written['report.html']} and {written['report.md']}")
    return status


def cmd_bench(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.verification.bench.tables import run_benchmarks

    preflight.check_bench(args)  # fail before minutes of benchmarks, not after
    results, text = run_benchmarks(args.which, quick=args.quick)
    print(text)
    if args.json:
        write_json(args.json, results)
    if args.figure:
        from attnverify.figures.bench_scaling import save

        print(f"wrote {save(results, args.figure)}")
    return 0


def cmd_sweep_eq19(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.verification.lime_sweep import grid, run_sweep, sweep_table, write_results

    preflight.check_sweep_eq19(args)
    spec = spec_from_args(args, SMALL)
    preflight.check_sweep_scales(spec, args)
    points = grid(args.nu, args.d, args.T or [spec.max_len], args.K or [spec.heads], args.scale, args.removal)
    result = run_sweep(points, spec, draws=args.draws, seed=args.seed, progress=not args.quiet,
                       words_per_feature=args.words_per_feature, n_mc=args.mc_samples or 2**18,
                       n_lime=args.lime_samples)
    print(sweep_table(result["rows"]))
    write_results(result, json_path=args.json, csv_path=args.csv)
    return 0


def cmd_related(args: argparse.Namespace) -> int:
    enable_x64()
    from attnverify.numerics import modelfile
    from attnverify.numerics.tokenize import encode
    from attnverify.verification.related import analyse

    preflight.check_related(args)
    loaded = modelfile.load(args.model)
    tokens, kept = encode(args.text, loaded.vocab, loaded.spec.max_len)
    modelfile.check_float_range(loaded.params, loaded.spec, tokens, f"{args.model} on this text")
    given = {"epsilons": args.epsilon, "temperatures": args.temperature, "head": args.head,
             "seed": args.seed}  # None: the default
    result = analyse(args.what, loaded, args.text,
                     **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None})
    validate.require_finite(result, f"related {args.what}")
    _note_text(args.text, kept, loaded.vocab, loaded.spec.max_len)  # once nothing can be refused: one line each
    print(validate.dumps(result, indent=2))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    spec = spec_from_args(args, PAPER)
    print(json.dumps(dataclasses.asdict(spec), indent=2))
    return 0


# -- the persistent compilation cache -------------------------------------------------------
def apply_cache_option(args: argparse.Namespace) -> None:
    """Every command but ``cache`` compiles through the persistent cache unless ``--no-cache``
    (an unusable cache folder: one warning line, then no cache)."""
    from attnverify.numerics import compilation_cache

    if args.command != "cache":
        compilation_cache.configure_cache(None if args.no_cache else compilation_cache.cache_location())


def _entries(count: int, kind: str = "") -> str:
    """"1 entry", "3 other entries"."""
    return " ".join(filter(None, (str(count), kind, "entry" if count == 1 else "entries")))


def cmd_cache(args: argparse.Namespace) -> int:
    from attnverify.numerics import compilation_cache

    if args.no_cache:  # `cache clear --no-cache` cleared the cache all the same
        raise InputError(f"--no-cache: `cache {args.action}` reads or empties the cache folder and compiles "
                         "nothing; leave it out")
    path = compilation_cache.cache_location()
    try:
        if args.action == "info":
            found = compilation_cache.cache_info(path)
            state = "" if found.exists else " (does not exist yet)"
            print(f"location: {path}{state}\nentries: {found.entries} compiled programs, "
                  f"{found.derivations} derivations, {found.traced} traced programs, "
                  f"{found.results} stored results\nsize: {_size(found.bytes)}")
        else:
            if not path.exists():
                print(f"nothing to clear: {path} does not exist")
                return 0
            removed, others = compilation_cache.clear_cache(path)
            print(f"removed {_entries(removed)} from {path}")
            if others:
                shown = ", ".join(p.name for p in others[:3]) + (", ..." if len(others) > 3 else "")
                print(f"kept {_entries(len(others), 'other')} there, which the cache did not write ({shown})")
    except compilation_cache.CacheLocationError as err:
        raise InputError(str(err)) from None
    except OSError as err:
        raise InputError(f"compilation cache {path}: {err.strerror or err}") from None
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
