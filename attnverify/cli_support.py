"""What every `attnverify` command shares: the one-line-error parser, the spec flags
(generated from `ModelSpec`, so flags and spec never drift), float64, and atomic JSON output."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from attnverify.errors import InputError
from attnverify.spec import CHOICES, HELP, PAPER, SMALL, ModelSpec


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (exit code 2), without the usage block."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


#: Flags meant to be given again: each occurrence adds (``--claims-module a --claims-module b``) or acts.
_REPEATABLE = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction, argparse._HelpAction,
               argparse._VersionAction)
_ONCE: dict[type, type] = {}  # an action class -> its subclass that refuses a second occurrence
_GIVEN = "_flags_given"  # the namespace's record of the flags seen; `forget_flags_given` removes it


def refuse_repeated_flags(parser: argparse.ArgumentParser) -> None:
    """Make every flag of `parser`'s commands refuse a second occurrence, which argparse would let
    silently replace the first (``explain --text a --text b`` explained b alone; ``--nu 0.1 --nu 0.2``
    swept 0.2 alone). Abbreviated and ``--flag=value`` forms count: the check is in the action,
    which argparse calls once per occurrence, however the flag was spelled."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                refuse_repeated_flags(command)
        elif action.option_strings and not isinstance(action, _REPEATABLE):
            action.__class__ = _given_once(type(action))


def _given_once(kind: type) -> type:
    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault(_GIVEN, {})
        if self.dest in given:
            also = "" if given[self.dest] == option_string else f" (as {given[self.dest]})"
            parser.error(f"argument {option_string}: given twice{also}; give it once"
                         + (", with all its values" if self.nargs in ("+", "*") else ""))
        given[self.dest] = option_string
        kind.__call__(self, parser, namespace, values, option_string)

    return _ONCE.setdefault(kind, type(f"Once{kind.__name__}", (kind,), {"__call__": __call__}))


def forget_flags_given(args: argparse.Namespace) -> argparse.Namespace:
    """`args` without `refuse_repeated_flags`' record."""
    vars(args).pop(_GIVEN, None)
    return args


# -- spec flags, generated from the dataclass so they never drift ---------------------------
def add_spec_arguments(parser: argparse.ArgumentParser, *, sizes: bool = True,
                       title: str = "model spec") -> None:
    group = parser.add_argument_group(title)
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
    spec = base.replace(**changes)
    if getattr(args, "plugin", None):  # a model variant (docs/plugins.md), loaded once per command
        from attnverify.plugins import spec_with_plugin

        spec = spec_with_plugin(args, spec)
    return spec


def enable_x64() -> None:
    # Identity checks run in float64; this must happen before any array exists. Every command
    # and API call that computes starts here, so this is also where a known defect of the
    # installed JAX is reported (numerics.known_defects), where XLA is asked for one CPU
    # device per core (numerics.host_devices: before JAX's import, or it has no effect), and
    # the BLAS under JAX's linear algebra for one thread (numerics.blas_threads).
    from attnverify.numerics.blas_threads import configure_blas_threads
    from attnverify.numerics.host_devices import configure_host_devices

    configure_host_devices()
    configure_blas_threads()
    import jax

    from attnverify.numerics.jax_options import pin_jax_options
    from attnverify.numerics.known_defects import warn_known_defects

    warn_known_defects()

    jax.config.update("jax_enable_x64", True)
    pin_jax_options(jax.config)  # promotion, random numbers and matmul precision as the programs expect
    try:  # the backend starts here rather than at the first array: a bad JAX_PLATFORMS is one line
        jax.devices()
    except RuntimeError as err:
        chosen = os.environ.get("JAX_PLATFORMS")
        setting = f" (JAX_PLATFORMS={chosen!r})" if chosen is not None else ""
        raise InputError(f"JAX could not start its backend{setting}: {str(err).strip().splitlines()[0]}") from None


#: Where `emit` writes: the command's stdout, also while `results_apart` sends everything else to stderr.
_RESULTS: list = []


@contextmanager
def results_apart(on: bool) -> Iterator[None]:
    """With `on` (a command whose stdout is one JSON document: ``--json`` of derive, claims and
    explain), whatever else prints while the command runs (a plugin's or claims module's ``print``,
    in its file or in its methods) goes to stderr, and only `emit` writes to stdout, so that the
    output stays a document `json.load` reads."""
    if not on:
        yield
        return
    _RESULTS.append(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _RESULTS.pop()


def emit(text: str) -> None:
    """Print a command's result to its stdout (see `results_apart`)."""
    print(text, file=_RESULTS[-1] if _RESULTS else sys.stdout)


def write_json(path: str, payload: Any) -> None:
    """Strict JSON (non-finite numbers as null, the reason beside: `validate.dumps`), atomically."""
    from attnverify.numerics.modelfile import atomic_write
    from attnverify.validate import dumps

    text = dumps(payload, indent=2) + "\n"

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    atomic_write(path, write)
