"""Loading a plugin file (a model variant) or a claims module, with one-line errors.

A plugin is a Python file that defines ``class Model(SymbolicModel)`` and may register
claims (``docs/plugins.md``). It is trusted code that the user chose to run, like a
notebook: loading executes it. Every problem is an `InputError` naming the file and the
reason: the file is missing or unreadable, has a syntax error, raises while it runs,
defines no ``Model``, a ``Model`` that is not a `SymbolicModel`, a quantity that is not a
SymPy expression, a parameter with an unknown size, an expression the compiler cannot
compile, or a claim id that clashes with a built-in claim.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import os
import re
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attnverify.errors import InputError, describe, first_line
from attnverify.numerics.jax_options import kept_while
from attnverify.spec import ModelSpec

_REGISTRY = "attnverify.verification.registry"


def _registry_snapshot() -> dict:
    module = sys.modules.get(_REGISTRY)
    return dict(module.REGISTRY) if module is not None else {}


def _origins_snapshot() -> dict:
    module = sys.modules.get(_REGISTRY)
    return dict(module._ORIGIN) if module is not None else {}


def _registered_since(before: dict) -> tuple[str, ...]:
    module = sys.modules.get(_REGISTRY)
    if module is None:
        return ()
    # The built-in claims load on the first registration: they are nobody's own.
    return tuple(cid for cid, claim in module.REGISTRY.items()
                 if before.get(cid) is not claim and cid not in module.BUILTIN)


@contextmanager
def _folder_searched(path: Path) -> Iterator[None]:
    """The file's folder first on ``sys.path`` while it runs, as when Python runs a script: a plugin
    or claims file may import a helper module beside it (``from base import ...``)."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:  # the file took it off itself
            pass


@contextmanager
def _registers_only_if_loaded(before: dict) -> Iterator[None]:
    """A plugin file or claims module that fails while it loads changes no registration: the claims
    it registered before failing are taken out again, and those it replaced or unregistered are put
    back with their origins, so that a later command in the same process (a notebook's next cell)
    runs what it ran before."""
    origins = _origins_snapshot()
    try:
        yield
    except BaseException:
        module = sys.modules.get(_REGISTRY)
        if module is not None:  # in the order they had (built-ins loaded meanwhile are kept)
            loaded = {cid: c for cid, c in module.REGISTRY.items() if cid in module.BUILTIN and cid not in before}
            module.REGISTRY.clear()
            module.REGISTRY.update({**before, **loaded})
            for cid in [c for c in module._ORIGIN if c not in module.REGISTRY]:
                del module._ORIGIN[cid]
            module._ORIGIN.update({cid: origins[cid] for cid in before if cid in origins})
        raise


def _line_in(path: Path, err: BaseException) -> str:
    """" (line N)" for the innermost frame of `err` that lies in `path`."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    return f" (line {frames[-1].lineno})" if frames else ""


def _check_named(name: str) -> None:
    """One error for an empty plugin path or claims-module name, from the API as from a file."""
    if str(name).strip() in ("", "."):  # Path("") is "."
        raise InputError("the plugin or claims-module path is empty")


def _execute(path: Path, module_name: str) -> tuple[types.ModuleType, tuple[str, ...]]:
    """Run the file as a fresh module; return it and the claim ids it registered."""
    _check_named(path)
    if not path.is_file():
        kind = ("is a folder, not a file" if path.is_dir() else
                "is not a regular file" if path.exists() else "no such file")  # a pipe would block the read
        raise InputError(f"{path}: {kind}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read it ({type(err).__name__})") from None
    try:
        code = compile(text, str(path), "exec")
    except SyntaxError as err:
        raise InputError(f"{path}: syntax error at line {err.lineno}: {err.msg}") from None
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    before = _registry_snapshot()
    _forget_helpers_in(path.resolve().parent)
    imported = set(sys.modules)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up
    # kept_while: the JAX options the programs need, checked once the file has run
    with _helpers_forgotten_if_failed(path, imported, module_name), _registers_only_if_loaded(before), \
            _folder_searched(path), kept_while(str(path)):
        try:
            exec(code, module.__dict__)  # noqa: S102 (a plugin is trusted code the user chose to run)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
        except SystemExit as err:  # sys.exit in user code: not the command's exit (KeyboardInterrupt stays one)
            raise InputError(f"{path}: {_exit_message(err, _line_in(path, err))}") from None
        except Exception as err:  # noqa: BLE001 (user code: any error becomes one line)
            message = first_line(err)  # a MemoryError says nothing: its type alone, not "MemoryError:"
            raise InputError(f"{path}: {type(err).__name__}{_line_in(path, err)}{': ' if message else ''}{message}") \
                from None
    helpers = _helpers_imported(path, set(sys.modules) - imported - {module_name})
    _HELPERS[str(path.resolve())] = helpers
    module.__dict__["__digest__"] = _digest(path, helpers.values())
    return module, _registered_since(before)


@contextmanager
def _helpers_forgotten_if_failed(path: Path, imported: set[str], module_name: str) -> Iterator[None]:
    """A file that fails while it runs leaves neither itself nor the helper modules it imported from
    its folder in ``sys.modules``: a kept helper was not run again when the mended file was loaded,
    so the claims it registers, taken out with the failed file's, were gone without a word."""
    try:
        yield
    except BaseException:
        for name in [module_name, *_helpers_imported(path, set(sys.modules) - imported - {module_name})]:
            sys.modules.pop(name, None)
        raise


#: The helper modules each user file (by resolved path) imported from its own folder while it ran:
#: module name -> file.
_HELPERS: dict[str, dict[str, Path]] = {}


def _forget_helpers_in(folder: Path) -> None:
    """Take every helper module a user file imported from `folder` (or below) out of
    `sys.modules`, whichever file imported it first: the next file run imports them afresh (a
    notebook may have edited one), and so counts them as its own helpers. Two plugins beside one
    shared helper each count it; before, only the first did, and the second's digest missed an
    edit of it."""
    for helpers in _HELPERS.values():
        for name, file in helpers.items():
            if file.is_relative_to(folder):
                sys.modules.pop(name, None)


def _helpers_imported(path: Path, names: set[str]) -> dict[str, Path]:
    """Of the modules first imported while the file at `path` ran (`names`), those whose file lies
    in its folder or below (``from base import ...``, `_folder_searched`), by module name."""
    folder = path.resolve().parent
    helpers = {}
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file or name.split(".")[0] == "attnverify":  # the package's own modules, loaded lazily
            continue
        file = Path(file).resolve()
        # Python's own library and installed packages (a Python or a virtual environment inside the
        # folder) are libraries, not helpers: never hashed, never imported afresh
        if file.is_relative_to(folder) and not {"site-packages", "dist-packages"} & set(file.parts) \
                and not any(file.is_relative_to(library) for library in _libraries()):
            helpers[name] = file
    return helpers


@functools.cache
def _libraries() -> tuple[Path, ...]:
    """The folders of Python's standard library and installed packages, and its prefixes."""
    import sysconfig

    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return tuple(Path(p).resolve() for p in paths if p)


def _digest(path: Path, helpers) -> str:
    """SHA-256 of a user file and of the helper files it imported from its folder (sorted): what
    identifies its code, in a run's manifest and a model file. A helper that cannot be read now
    counts as changed."""
    digest = hashlib.sha256(path.read_bytes())
    for helper in sorted(helpers):
        try:
            digest.update(b"\0" + str(helper).encode() + b"\0" + helper.read_bytes())
        except OSError:
            digest.update(b"\0unreadable")
    return digest.hexdigest()


def _exit_message(err: SystemExit, where: str = "") -> str:
    """What a `SystemExit` raised by a plugin or claims module says, on one line."""
    if isinstance(err.code, str):
        said = err.code.splitlines()[0] if err.code else ""
        return f"SystemExit{where}: {said} (a plugin or claims module must not exit)"
    code = 0 if err.code is None else err.code
    return f"SystemExit{where}: it called sys.exit({code}) (a plugin or claims module must not exit)"


def _module_name(path: Path, prefix: str) -> str:
    stem = re.sub(r"\W", "_", path.stem) or "plugin"
    return f"{prefix}_{stem}_{hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:8]}"  # any bytes


def load_plugin(path: str | Path, spec: ModelSpec | None = None, *, compile_check: bool = True):
    """The `theory.plugin.Plugin` of a plugin file, checked (see the module docstring).

    The model is built under `spec` (default: the paper's) to check it; with
    `compile_check`, its forward, scores, attention and logits are checked to compile
    (`numerics.compile.unsupported`, nothing traced).
    """
    from attnverify.spec import PAPER
    from attnverify.theory.model import SymbolicModel
    from attnverify.theory.plugin import Plugin

    path = Path(path)
    cached = _cached(path)
    if cached is not None:  # the same file, unchanged: the same plugin (caches stay warm)
        _check_loaded(path, cached, spec or PAPER, compile_check)
        return cached
    # A file refused after it ran (no Model, a model that does not build or compile) changes no
    # registration either: its claims would otherwise run, unowned, under any spec.
    with _registers_only_if_loaded(_registry_snapshot()):
        module, claims = _execute(path, _module_name(path, "attnverify_plugin"))
        model = module.__dict__.get("Model")
        if model is None:
            raise InputError(f"{path}: defines no Model (a subclass of attnverify.theory.SymbolicModel)")
        if not (isinstance(model, type) and issubclass(model, SymbolicModel)):
            raise InputError(f"{path}: Model is not a subclass of attnverify.theory.SymbolicModel")
        plugin = Plugin(name=path.stem, model=model, path=str(path), digest=module.__digest__, claims=claims)
        _check_loaded(path, plugin, spec or PAPER, compile_check)
    _LOADED[(str(path.resolve()), plugin.path)] = plugin
    registry = sys.modules[_REGISTRY].REGISTRY if claims else {}
    _OWNED.update({cid: (str(path.resolve()), str(path), registry[cid]) for cid in claims})
    return plugin


def _check_loaded(path: Path, plugin, spec: ModelSpec, compile_check: bool) -> None:
    """Build `plugin`'s model under `spec` (and, with `compile_check`, check that it compiles), one
    line naming the file for what fails. The model's methods run here: 64-bit mode turned off there
    is the file's (`kept_while`)."""
    from attnverify.theory.plugin import check_model, plugin_spec

    with kept_while(str(path)):
        try:
            check_model(plugin.model, spec)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
        if compile_check:
            check_compiles(plugin_spec(plugin, spec))


#: The claims a plugin file registered, by id (and the file: resolved, as given; and the claim, so
#: that an id unregistered and then registered from elsewhere is not the plugin's): they run under
#: that plugin only.
_OWNED: dict[str, tuple[str, str, object]] = {}


def _owned_by(claim) -> tuple[str, str] | None:
    """The plugin file (resolved, as given) that registered `claim`, or None."""
    owned = _OWNED.get(claim.id)
    return owned[:2] if owned is not None and owned[2] is claim else None


def _owner(spec: ModelSpec) -> str | None:
    plugin = getattr(spec, "plugin", None)
    return str(Path(plugin.path).resolve()) if plugin is not None and plugin.path else None


#: Plugins loaded in this process, by (resolved file, path as given).
_LOADED: dict[tuple[str, str], object] = {}


def _cached(path: Path):
    """The plugin loaded from `path` before, when the file is unchanged (same SHA-256) and
    the claims it registered are still registered as it left them; else None."""
    try:
        plugin = _LOADED.get((str(path.resolve()), str(path)))
        if plugin is None or _digest(path, _HELPERS.get(str(path.resolve()), {}).values()) != plugin.digest:
            return None
    except OSError:
        return None
    registry = sys.modules.get(_REGISTRY)
    if plugin.claims and (registry is None or any(cid not in registry.REGISTRY for cid in plugin.claims)):
        return None
    return plugin


def check_compiles(spec: ModelSpec, *, derived: bool = False) -> None:
    """One-line `InputError` (naming the plugin file) when the model of `spec` (with
    `derived`: also its derived gradient and the statements compared with it) contains a
    node the compiler cannot translate."""
    from attnverify.numerics.compile import unsupported
    from attnverify.theory import symbols as S
    from attnverify.theory.model import SymbolicModel

    model = SymbolicModel(spec)
    exprs = {"the forward (Model.output)": model.output(), "Model.score": model.score(S.i, S.t),
             "Model.alpha": model.alpha(S.i, S.t), "Model.logit": model.logit(S.c)}
    if derived:
        from attnverify.theory.derivations import derive_gradient

        d = derive_gradient(spec)
        if d.gradient == 0:  # e.g. a step of the output (sign, floor): its derivative is 0 where it exists
            raise InputError(f"{_origin(spec)}: the gradient of Model.output is 0 wherever it exists (SymPy "
                             "derives 0), so every comparison of gradients would hold vacuously")
        exprs.update({"the derived gradient": d.gradient, "Theorem 1 in the model's quantities": d.paper,
                      "the query-path term": d.cls_term, "the G x I closed form": d.gxi_paper})
    for what, expr in exprs.items():
        node = unsupported(expr)
        if node is not None:
            raise InputError(f"{_origin(spec)}: {what} cannot be compiled to JAX: {node}")
    if getattr(spec, "plugin", None) is not None:
        _check_evaluates(spec)


def _check_evaluates(spec: ModelSpec) -> None:
    """One-line `InputError` when the plugin model's basic quantities (`numerics.modelfile.
    range_quantities`: logits, attention, output and its gradient) cannot be evaluated on a model of
    `spec`'s shapes: a symbol bound to no array, size or index, or a parameter read with another
    number of indices than it was declared with. Traced abstractly (`jax.eval_shape`): nothing is
    drawn or compiled."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from attnverify.numerics.compile import CompileError
    from attnverify.numerics.jax_options import pin_jax_options
    from attnverify.numerics.modelfile import range_quantities
    from attnverify.numerics.plugin_model import draw_plugin_params

    # `derive` and `claims` set no options of their own: the environment's (nothing is computed here,
    # so a NaN check cannot stop anything)
    pin_jax_options(jax.config, computing=bool(jax.config.jax_enable_x64))
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32  # `derive` runs without x64
    tokens = jnp.zeros((spec.max_len,), jnp.int32)
    try:  # shapes only: a constant above float32's range (1e39 without x64) printed NumPy's cast warnings
        with np.errstate(over="ignore", invalid="ignore"):
            jax.eval_shape(lambda key: range_quantities(draw_plugin_params(key, spec, dtype=dtype), tokens, spec),
                           jax.random.PRNGKey(0))
    except CompileError as err:
        raise InputError(f"{_origin(spec)}: the model cannot be evaluated: {err}") from None
    except InputError as err:  # e.g. parameters too large to draw
        raise InputError(f"{_origin(spec)}: {err}") from None


def _origin(spec: ModelSpec) -> str:
    plugin = getattr(spec, "plugin", None)
    return plugin.path or plugin.name if plugin is not None else "the model"


def load_claims_module(name: str) -> tuple[str, ...]:
    """Import a module of claims, by file path (``my_claims.py``) or dotted module name, and
    return the ids it registered (a re-import replaces them)."""
    _check_named(name)
    path = Path(name)
    if name.endswith(".py") or path.is_file() or (path.exists() and not path.is_dir()):  # a pipe: refused there
        with _registers_only_if_loaded(_registry_snapshot()):
            module, claims = _execute(path, _module_name(path, "attnverify_claims"))
            model = module.__dict__.get("Model")  # defined here (not imported): a plugin file, whose claims
            if isinstance(model, type) and model.__module__ == module.__name__:  # read the plugin's symbols
                raise InputError(f"{path}: defines Model, a plugin's model, which a claims module does not load "
                                 f"(its claims would run without that model): give the file with --plugin {path}")
        return claims
    before = _registry_snapshot()
    with _registers_only_if_loaded(before), kept_while(name):
        try:
            if name in sys.modules:
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                raise InputError(f"{name}: no such claims module (give a .py file or an importable module "
                                 "name)") from None
            raise InputError(f"{name}: ModuleNotFoundError: {err}") from None
        except InputError as err:
            raise InputError(f"{name}: {err}") from None
        except SystemExit as err:
            raise InputError(f"{name}: {_exit_message(err)}") from None
        except Exception as err:  # noqa: BLE001
            raise InputError(f"{name}: {describe(err)}") from None
    return _registered_since(before)


# -- command-line helpers ----------------------------------------------------------------------
def spec_with_plugin(args, spec: ModelSpec) -> ModelSpec:
    """`spec` carrying the plugin of ``args.plugin`` (loaded once per command), or `spec`."""
    path = getattr(args, "plugin", None)
    if not path:
        return spec
    from attnverify.theory.plugin import plugin_spec

    plugin = args.__dict__.get("_loaded_plugin")
    if plugin is None:
        plugin = args.__dict__["_loaded_plugin"] = load_plugin(path, spec)
    return plugin_spec(plugin, spec)


#: Groups of built-in claims whose computations take any model (a plugin's too).
PLUGIN_GROUPS = ("theorem1",)


def supports_plugins(claim) -> bool:
    """True for the claims that run on a plugin model: the groups of `PLUGIN_GROUPS` and
    every user claim (their build receives the plugin spec)."""
    from attnverify.verification.registry import BUILTIN

    return claim.group in PLUGIN_GROUPS or claim.id not in BUILTIN


def select_claims(names: list[str], spec: ModelSpec, claims_modules: list[str] | tuple = ()) -> list:
    """The claims `names` select (`verification.registry.select`) after importing the
    claims modules. Claims a plugin file registered run under that plugin only. Under a
    plugin spec, "all" means the claims that run on a plugin model (`supports_plugins`);
    naming another is an `InputError`; the derived gradient and the statements must compile; and the
    synthetic tasks the claims train on must fit the spec (`registry.refuse_untrainable`)."""
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.registry import refuse_untrainable, select

    for module in claims_modules or ():
        load_claims_module(module)
    chosen = select(names)
    owner = _owner(spec)
    elsewhere = [c for c in chosen if (_owned_by(c) or (owner,))[0] != owner]  # another plugin's claims
    if elsewhere and names and "all" not in names:
        raise InputError(f"claim {elsewhere[0].id} belongs to the plugin {_owned_by(elsewhere[0])[1]}: "
                         "run it with that plugin")
    chosen = [c for c in chosen if c not in elsewhere]
    plugin = getattr(spec, "plugin", None)
    if plugin is None:
        refuse_untrainable(chosen, spec)
        return chosen
    if names and "all" not in names:
        refused = [c.id for c in chosen if not supports_plugins(c)]
        if refused:
            raise InputError(f"claim {refused[0]} does not run on a plugin model (those that do: the groups "
                             f"{', '.join(PLUGIN_GROUPS)} and your own claims)")
    else:
        chosen = [c for c in chosen if supports_plugins(c)]
    if any(c.group in PLUGIN_GROUPS for c in chosen):
        check_compiles(spec, derived=True)
    refuse_untrainable(chosen, spec)
    return chosen


def derivation_lines(spec: ModelSpec) -> list[str]:
    """What `derive` adds for a plugin model: the file, what it overrides and declares, and
    whether its forward is proved to be the paper's (which decides the paper's hypotheses)."""
    import sympy as sp

    from attnverify.theory.model import SymbolicModel
    from attnverify.theory.plugin import forward_proof, overridden, paper_switches, unequal_quantities

    plugin = spec.plugin
    model = SymbolicModel(spec)
    parameters, constants = model.declarations()
    declared = [f"parameter {p.name} {tuple(str(a) for a in p.shape)} init={p.init}" for p in parameters.values()]
    declared += [f"constant {c.name} = {c.value:g}" for c in constants.values()]
    proof = forward_proof(spec)
    unequal = unequal_quantities(spec, paper_switches(spec)) if proof == "proved" else ()
    caveat = (" (statements that assume the paper's model: hypotheses unmet)" if proof != "proved" else
              f", but not its {', '.join(unequal)}, which the statements are written in (hypotheses unmet)"
              if unequal else "")
    floats = ", ".join(f"{float(x):g}" for x in sorted(model.output().atoms(sp.Float))[:3])
    return [
        f"plugin: {plugin.path or plugin.name} (Model overrides: {', '.join(overridden(plugin.model)) or 'nothing'}; "
        f"declares: {', '.join(declared) or 'nothing'})",
        f"forward = the paper's model: {proof}{caveat}",
        *([f"note: the forward holds floating-point numbers ({floats}), so nothing with it is proved "
           "for all sizes (SymPy rounds Float arithmetic as it builds): write them as sympy.Rational, or declare "
           "them with self.constant"] if floats else []),
    ]


def derivation_payload(derivation) -> dict:
    """`theory.display.derivation_json` of a plugin model's derivation, with ``plugin``."""
    import dataclasses
    import json

    from attnverify.theory.display import derivation_json

    spec = derivation.spec
    plugin = getattr(spec, "plugin", None)
    if plugin is None:
        return derivation_json(derivation)

    from attnverify.theory.model import SymbolicModel
    from attnverify.theory.plugin import forward_proof, overridden, paper_switches, unequal_quantities

    payload = derivation_json(dataclasses.replace(derivation, spec=spec.base))
    model = SymbolicModel(spec)
    parameters, constants = model.declarations()
    payload["spec"] = json.loads(spec.to_json())
    payload["plugin"] = {
        **plugin.describe(),
        "overrides": overridden(plugin.model),
        "parameters": {n: {"shape": [str(a) for a in p.shape], "init": p.init, "scale": p.scale}
                       for n, p in parameters.items()},
        "constants": {n: c.value for n, c in constants.items()},
        "forward_is_papers": forward_proof(spec),
        # the paper's hypotheses need these too: a quantity the statements name, not proved the paper's
        "quantities_not_papers": list(unequal_quantities(spec, paper_switches(spec))),
    }
    return payload


def _not_empty(what: str):
    """An argument's type: an empty value (``--plugin "$UNSET"``) is an error naming `what` to
    give, never a run without the plugin or the claims."""

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"empty: give {what}")
        return text

    return check


def add_plugin_arguments(parser, *, plugin: bool = True, claims: bool = False) -> None:
    """The ``--plugin FILE`` and ``--claims-module MODULE`` flags of a command."""
    if plugin:
        parser.add_argument("--plugin", metavar="FILE", type=_not_empty("a plugin file"),
                            help="a model variant: a Python file defining class Model(SymbolicModel) "
                            "(trusted code, run like a notebook; see docs/plugins.md)")
    if claims:
        parser.add_argument("--claims-module", metavar="MODULE", action="append", default=[],
                            type=_not_empty("a .py file or an importable module name"),
                            help="a .py file or importable module that registers claims (repeatable)")


def load_plugin_model(model_path: str | Path, args):
    """The model file at `model_path` read for the plugin of ``args.plugin``: its spec a
    plugin spec, its params `numerics.plugin_model.PluginParams`."""
    from attnverify.numerics.plugin_model import load_model
    from attnverify.theory.plugin import plugin_spec

    plugin = args.__dict__.get("_loaded_plugin")
    if plugin is None:
        plugin = args.__dict__["_loaded_plugin"] = load_plugin(args.plugin)
    return load_model(model_path, lambda stored: plugin_spec(plugin, stored))
