"""The Python API for notebooks: `derive`, `verify` and `explain`, as the CLI runs them.

Each returns a result object whose ``records`` are the records of the command's JSON
output (`to_json()` returns them) and whose `repr` is the command's text output. A model
variant is given as ``plugin=``: a plugin file's path, or a `SymbolicModel` subclass
defined in the notebook itself (``docs/plugins.md``). Claims registered in a notebook cell
(`attnverify.verification.register`) run like built-in ones; re-running the cell replaces
them. Bad input raises `attnverify.InputError` with the CLI's one-line message.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import operator
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from attnverify import validate
from attnverify.errors import InputError, out_of_memory
from attnverify.spec import PAPER, SMALL, SWITCHES, ModelSpec, check_types, refuse_unknown_fields

__all__ = ["DeriveResult", "ExplainResult", "VerifyResult", "derive", "explain", "verify"]


# -- results ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, repr=False)
class _Result:
    records: Any  # what the command's JSON output holds
    text: str  # what the command prints

    def to_json(self) -> Any:
        return self.records

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the text as it is
        printer.text(self.text)


@dataclasses.dataclass(frozen=True, repr=False)
class DeriveResult(_Result):
    """`derive`: ``records`` as ``attnverify derive gradient --json``; ``derivation`` the
    `theory.derivations.GradientDerivation` (SymPy expressions)."""

    derivation: Any = None

    @property
    def proofs(self) -> dict[str, str]:
        """``{comparison: "proved for all sizes" | "not proved" | ...}``."""
        return {name: p["status"] for name, p in self.records["proofs"].items()}


@dataclasses.dataclass(frozen=True, repr=False)
class VerifyResult(_Result):
    """`verify`: ``records`` as ``attnverify verify --json`` (one per claim); ``results``
    the `verification.sweep.ClaimResult` objects."""

    results: tuple = ()

    @property
    def verdicts(self) -> dict[str, str]:
        """``{claim id: pass | fail | expected_fail | hyp_unmet | inconclusive}``."""
        return {r["id"]: r["verdict"] for r in self.records}


@dataclasses.dataclass(frozen=True, repr=False)
class ExplainResult(_Result):
    """`explain`: ``records`` as ``attnverify explain --json``."""


# -- inputs ----------------------------------------------------------------------------------
def _spec(spec: ModelSpec | None, default: ModelSpec, changes: dict[str, Any]) -> ModelSpec:
    spec = default if spec is None else spec
    if not isinstance(spec, ModelSpec):
        raise InputError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    refuse_unknown_fields(type(spec), changes)  # before check_types, which reads each name's field
    check_types(changes)
    return spec.replace(**changes)


def _with_plugin(plugin: Any, spec: ModelSpec) -> ModelSpec:
    """`spec` carrying `plugin`: a file path, a `Plugin`, or a `SymbolicModel` subclass."""
    if plugin is None:
        return spec
    from attnverify.plugins import check_compiles, load_plugin
    from attnverify.theory.model import SymbolicModel
    from attnverify.theory.plugin import Plugin, check_model, plugin_spec

    base = getattr(spec, "base", spec)
    if isinstance(plugin, (str, Path)):
        plugin = load_plugin(plugin, base)
    elif isinstance(plugin, type) and issubclass(plugin, SymbolicModel):
        check_model(plugin, base)
        plugin = Plugin(name=plugin.__name__, model=plugin)
        check_compiles(plugin_spec(plugin, base))
    elif not isinstance(plugin, Plugin):
        raise InputError(f"plugin must be a file path or a SymbolicModel subclass, got {type(plugin).__name__}")
    return plugin_spec(plugin, base)


def _names(claims: str | Iterable[str], what: str = "claims", *, empty: bool = False) -> list[str]:
    """One name or an iterable of names (none only where `empty`); anything else is a one-line
    `InputError`."""
    names = [claims] if isinstance(claims, str) else list(claims) if isinstance(claims, Iterable) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise InputError(f"{what} must be a name or a list of names, got {claims!r}")
    if not names and not empty:  # [] ran every claim, as "all" does: a list that lost its names, most likely
        raise InputError(f"{what}: an empty list names nothing (give 'all' for every claim)")
    return names


# -- derive ----------------------------------------------------------------------------------
def _as_int(value: Any) -> Any:
    """`value`, or the Python int a NumPy or JAX integer (a scalar, a 0-d array) holds: a count
    computed in NumPy (``trials=np.int64(8)``, ``max_len=len_array.max()``) is that count, as a
    NumPy float is the float it holds (`verify`'s scale). Anything else is left to the checks."""
    if isinstance(value, int) or isinstance(value, str | bytes) or not hasattr(type(value), "__index__"):
        return value
    try:
        return operator.index(value)
    except TypeError:  # an array of several numbers: the checks refuse it, naming the parameter
        return value


def _as_the_command_line(function):
    """`function` taking its arguments and refusing what it cannot do as the command line does: a
    NumPy or JAX integer argument is the int it holds (`_as_int`), and running out of memory is an
    `InputError` (the command line's one line; XLA's allocator raises its own error, with a stack of
    JAX frames)."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        args = tuple(map(_as_int, args))
        kwargs = {name: _as_int(value) for name, value in kwargs.items()}
        try:
            return function(*args, **kwargs)
        except MemoryError:
            raise InputError("out of memory (use smaller sizes)") from None
        except Exception as err:
            if out_of_memory(err):
                raise InputError("out of memory (use smaller sizes)") from None
            raise

    return call


@_as_the_command_line
def derive(what: str = "gradient", *, plugin: Any = None, spec: ModelSpec | None = None,
           explicit_check: bool = False, **changes: Any) -> DeriveResult:
    """``attnverify derive gradient``: nabla_{e_t} f by `sympy.diff` of the model's output, and
    the paper's statements proved (or not) against it. `changes` are spec fields
    (e.g. ``output_link="sigmoid"``) applied to `spec` (default: the paper's model)."""
    from attnverify.plugins import check_compiles, derivation_lines, derivation_payload
    from attnverify.theory.derivations import derive_gradient
    from attnverify.theory.display import derivation_text

    if what != "gradient":
        raise InputError(f"derive: only 'gradient' has a Python API (got {what!r}); "
                         "`attnverify derive lime|eq19` prints the others")
    spec = _spec(spec, PAPER, changes)  # types first, as everywhere
    sizes = sorted(set(changes) - set(SWITCHES))
    if sizes:  # as the command line, which has no size flags for derive
        raise InputError(f"derive: {', '.join(sizes)}: the derivation holds for every size; only the switches "
                         f"change it ({', '.join(SWITCHES)})")
    spec = _with_plugin(plugin, spec)
    derivation = derive_gradient(spec, explicit_check=validate.flag("explicit_check", explicit_check))
    text = derivation_text(derivation)
    if getattr(spec, "plugin", None) is not None:
        check_compiles(spec, derived=True)
        first, rest = text.split("\n", 1)
        text = "\n".join([first, *derivation_lines(spec), rest])
    return DeriveResult(records=derivation_payload(derivation), text=text, derivation=derivation)


# -- verify ----------------------------------------------------------------------------------
@_as_the_command_line
def verify(claims: str | Sequence[str] = "all", *, plugin: Any = None, spec: ModelSpec | None = None,
           claims_module: str | Sequence[str] = (), trials: int = 64, seed: int = 0, dtype: str = "float64",
           scale: float = 1.0, chunk_size: int = 256, progress: bool = False, **changes: Any) -> VerifyResult:
    """``attnverify verify``: sweep the claims (ids or groups; default all, under a plugin
    the claims that run on it) over `trials` random draws of the model of `spec` (default:
    the small sweep sizes). Float64 needs ``jax_enable_x64``: it is switched on here, before
    any array is made, as the CLI does, with the few JAX options the programs are written for
    (`numerics.jax_options`: promotion, random numbers, matmul precision). The claims a
    `claims_module` registers stay registered in this process, as an imported module stays
    imported: a later ``verify("all")`` runs them too (`verification.registry.unregister` takes
    one out)."""
    from attnverify.cli_support import enable_x64

    enable_x64()
    from attnverify import preflight
    from attnverify.plugins import select_claims
    from attnverify.verification.sweep import check_sweep_arguments, run_claim, verify_records
    from attnverify.verification.table import claims_table

    spec = _with_plugin(plugin, _spec(spec, SMALL, changes))
    # as the command line (`preflight.check_verify`): types, sizes that fit, the float range
    preflight.check_sweep(spec, trials=trials, chunk_size=chunk_size, seed=seed, scale=scale)
    scale = float(scale)  # checked above: a NumPy or JAX scalar, a Fraction, as the float it holds
    check_sweep_arguments(trials=trials, chunk_size=chunk_size, scale=scale, dtype=dtype)
    validate.flag("progress", progress)
    chosen = select_claims(_names(claims), spec, _names(claims_module, "claims_module", empty=True))
    preflight.check_scale_in_range(spec, scale=scale, seed=seed, dtype=dtype, claims=chosen, name=str)
    results = tuple(run_claim(c, spec, trials=trials, seed=seed, dtype=dtype, scale=scale, chunk_size=chunk_size,
                              progress=progress) for c in chosen)
    text = (f"spec: {spec.to_json()}\n{trials} draws per claim, seed {seed}, init scale {scale:g}\n\n"
            + claims_table(list(results)))
    records = json.loads(validate.dumps(verify_records(chosen, list(results), spec)))  # as the CLI writes them
    return VerifyResult(records=records, text=text, results=results)


# -- explain ---------------------------------------------------------------------------------
@_as_the_command_line
def explain(text: str, *, model: str | Path | None = None, plugin: Any = None, spec: ModelSpec | None = None,
            seed: int = 0, lime_samples: int | None = None, lime_runs: int = 1, nu: float = 0.25,
            removal: str = "delete", lime_limit_samples: int | None = None, **changes: Any) -> ExplainResult:
    """``attnverify explain``: attention, gradient and (with `lime_samples`) LIME explanations
    of `text`. The model is the model file `model`, or, without one, a random model of
    `spec` (default: the small sizes) drawn with `seed` over the built-in vocabulary."""
    from attnverify.cli_support import enable_x64

    enable_x64()
    import jax

    from attnverify import preflight
    from attnverify.numerics import modelfile
    from attnverify.numerics.draws import draw_params
    from attnverify.numerics.tokenize import builtin_vocab, encode, text_notes

    # as the command line (`preflight.check_explain`: the values now, the memory once the spec is known)
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    if nu is None:  # as the command line: not given, LIME's default width
        nu = inspect.signature(explain).parameters["nu"].default
    preflight.check_lime_values(seed=seed, nu=nu, lime_runs=lime_runs, lime_limit_samples=lime_limit_samples,
                                lime_samples=lime_samples, name=str)
    nu = float(nu)  # checked above: a Python float, as the CLI's
    if removal not in ("delete", "replace"):
        raise InputError(f"removal must be delete or replace, got {removal!r}")
    if lime_samples is None:  # as the command line: a LIME setting without LIME is a mistake, not a no-op
        defaults = inspect.signature(explain).parameters
        given = [name for name, value in (("lime_runs", lime_runs), ("nu", nu), ("removal", removal),
                                          ("lime_limit_samples", lime_limit_samples))
                 if value != defaults[name].default]
        if given:
            raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to LIME: "
                             "give lime_samples too")
    if model is not None:
        if not isinstance(model, str | os.PathLike) or isinstance(model, bytes):
            raise InputError(f"model must be a model file's path, got {type(model).__name__}")
        if changes or spec is not None:
            raise InputError("explain: a model file brings its own spec (give model, or spec, not both)")
        if plugin is not None:
            from attnverify.numerics.plugin_model import load_model
            from attnverify.theory.plugin import plugin_spec

            probe = _with_plugin(plugin, PAPER)
            loaded = load_model(model, lambda stored: plugin_spec(probe.plugin, stored))
        else:
            loaded = modelfile.load(model)
        spec, params, vocab = loaded.spec, loaded.params, loaded.vocab
    else:
        spec = _with_plugin(plugin, _spec(spec, SMALL, changes))
        validate.spec_fits(spec)  # as `init-model`: sizes that do not fit are refused before any draw
        vocab = builtin_vocab(spec.vocab_size)
        params = draw_params(jax.random.PRNGKey(seed), spec)
    if getattr(spec, "plugin", None) is not None:
        from attnverify.numerics.plugin_explanations import explain as explain_fn
        from attnverify.numerics.plugin_explanations import lime_summary
    else:
        from attnverify.numerics.explanations import explain as explain_fn
        from attnverify.numerics.lime.summary import lime_summary
    limit_samples = {} if lime_limit_samples is None else {"limit_samples": lime_limit_samples}  # else the default
    if lime_samples is not None:
        preflight.check_lime_memory(spec, lime_samples=lime_samples, runs=lime_runs,
                                    limit_samples=lime_limit_samples, name=str)
    tokens, kept = encode(text, vocab, spec.max_len)
    if lime_samples is not None and lime_limit_samples is not None:  # as `explain --lime-limit-samples`
        from attnverify.numerics.lime.evaluation import choose_path

        path = "generic" if getattr(spec, "plugin", None) is not None else choose_path(params, spec, removal)
        preflight.check_limit_samples(lime_limit_samples, len(dict.fromkeys(kept)), path, "lime_limit_samples")
    modelfile.check_float_range(params, spec, tokens, "the model on this text")
    result = {"tokens": kept, **explain_fn(params, tokens, spec, len(kept))}
    if lime_samples is not None:
        result.update(lime_summary(params, tokens, kept, spec, n_samples=lime_samples, runs=lime_runs, nu=nu,
                                   removal=removal, seed=seed, output=result["logit"], **limit_samples))
    validate.require_finite({k: v for k, v in result.items() if k != "lime_settings"}, "explain")  # as the CLI
    from attnverify.numerics.explanations import explain_text

    notes = [f"note: {note}" for note in text_notes(text, kept, vocab, spec.max_len)]  # the command line's stderr
    return ExplainResult(records=result, text="\n".join([*notes, explain_text(result, spec,
                                                                               lime_samples=lime_samples)]))
