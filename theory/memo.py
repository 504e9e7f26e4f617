"""SymPy derivations kept on disk between runs, next to the compiled programs.

A derivation is a pure function of its arguments (a `ModelSpec`, sizes, flags) and of the
code of this package, so `on_disk` keys its pickled result by the function's name, the
arguments' ``repr``, the SymPy and Python versions and a digest of every source file of
`attnverify.theory` and `attnverify.spec`: any change to them derives afresh. Results are
only ever read back from the folder the command line chose (`set_derivations_folder`, called with the
persistent compilation cache's folder, `numerics.compilation_cache`); without one, nothing
is stored. An entry that cannot be read, or that is not the entry its name says (truncated,
edited, another entry's content), is derived again and rewritten, after one warning line. Like the compiled
programs beside it, the folder is trusted: only its owner should be able to write to it.

The same store keeps numerical results of the layers above (`numerics.stored_results`: trained
models, study pools, claims' reported numbers, figures' data), under their own digest and suffix.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from attnverify.errors import warn_once
from attnverify.spec import ModelSpec
from attnverify.validate import TMP_PREFIX

SUFFIX = ".sympy.pickle"
_folder: Path | None = None
F = TypeVar("F", bound=Callable[..., Any])


#: This process's results by call (`forget` clears them): a command that derives the same thing
#: twice (a plugin's compile check, then its derivation) derives it once.
_IN_MEMORY: dict = {}


def set_derivations_folder(path: Path | None) -> Path | None:
    """Store derivations in `path` from now on (None: keep none on disk); returns the folder
    used until now."""
    global _folder
    previous, _folder = _folder, path
    return previous


def forget() -> None:
    """Forget the derivations held in memory (e.g. after replacing a statement)."""
    _IN_MEMORY.clear()


@functools.cache
def _code_digest() -> str:
    import sympy as sp

    here = Path(__file__).resolve().parent
    files = sorted(here.rglob("*.py")) + [Path(sys.modules[ModelSpec.__module__].__file__).resolve()]
    digest = hashlib.sha256(f"{sp.__version__} {sys.version}".encode())
    for path in files:
        digest.update(str(path.relative_to(path.parents[1])).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _plain(value: Any) -> bool:
    # A plain spec, scalar or tuple of them has a faithful repr; anything else (a plugin's spec)
    # is not stored.
    if type(value) is tuple:
        return all(map(_plain, value))
    return type(value) is ModelSpec or value is None or type(value) in (bool, int, float, str)


def on_disk(function: F | None = None, *, digest: Callable[[], str] = _code_digest, suffix: str = SUFFIX):
    """`function`, whose results are also kept in the folder of `set_derivations_folder`.

    `digest` names everything the results depend on besides the arguments (by default the code
    of `attnverify.theory`, with the SymPy and Python versions); `suffix` names the kind of
    entry. Another layer passes its own (`numerics.stored_results`: trained weights depend on the
    whole package, the numeric libraries and the machine)."""
    if function is None:
        return functools.partial(on_disk, digest=digest, suffix=suffix)

    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # f(spec) and f(spec, flag=default) are one call
        try:
            memory_key = (function.__module__, function.__qualname__, tuple(bound.arguments.items()))
            if memory_key in _IN_MEMORY:
                return _IN_MEMORY[memory_key]
        except TypeError:  # unhashable arguments: not kept
            memory_key = None
        result = _on_disk(function, args, kwargs, digest, suffix)
        if memory_key is not None:
            _IN_MEMORY[memory_key] = result
        return result

    return wrapper  # type: ignore[return-value]


def _on_disk(function: Callable, args: tuple, kwargs: dict, digest: Callable[[], str], suffix: str) -> Any:
    if _folder is None or not all(map(_plain, (*args, *kwargs.values()))):
        return function(*args, **kwargs)
    call = f"{function.__module__}.{function.__qualname__}{args!r}{sorted(kwargs.items())!r}"
    return kept(function.__name__, call, lambda: function(*args, **kwargs), digest=digest, suffix=suffix)


def kept(name: str, call: str, compute: Callable[[], Any], *, digest: Callable[[], str] = _code_digest,
         suffix: str = SUFFIX) -> Any:
    """``compute()``, kept in the folder of `set_derivations_folder` under `name` and `call` (a
    string naming everything the result depends on besides `digest`), for a caller whose inputs
    are not plain arguments (`on_disk`): it builds `call` itself, e.g. from a digest of arrays."""
    if _folder is None:
        return compute()
    key = hashlib.sha256(f"{ENTRY} {digest()} {call}".encode()).hexdigest()[:32]
    path = _folder / f"{name}-{key}{suffix}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as err:  # a folder in its place, no permission: derive again, and say so once
        data = None
        _unreadable(path, type(err).__name__)
    if data is not None:
        try:
            entry = pickle.loads(data)
        except Exception as err:  # noqa: BLE001 (truncated, or from a broken write)
            _unreadable(path, f"damaged: {type(err).__name__}")
        else:
            if type(entry) is tuple and len(entry) == 3 and all(type(x) is str for x in entry[:2]) \
                    and entry[:2] == (ENTRY, key):
                return entry[2]
            _unreadable(path, "not the entry its name says")
    result = compute()
    _store(path, (ENTRY, key, result))
    return result


#: Each stored entry is (ENTRY, its key, the result): a file whose first two fields are not these
#: (truncated, edited, copied from another entry) is derived again, with one warning line.
ENTRY = "attnverify-kept-1"


def _unreadable(path: Path, reason: str) -> None:
    warn_once(f"unreadable compilation cache entry ({path.name}: {reason}); computing it again", kind="read")


def _store(path: Path, result: Any) -> None:
    try:
        payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-")
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(tmp, path)  # readers see the whole entry or none
    except Exception:  # unpicklable, or the folder went away: derivations still work
        try:
            os.unlink(tmp)
        except (NameError, OSError):
            pass
