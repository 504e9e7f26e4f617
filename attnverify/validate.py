"""Checks made before any work starts: numbers, seeds, output paths, memory, strict JSON.

Every check raises `InputError` with one line naming the value (the caller passes the name:
the CLI a flag such as ``--scale``, library code a parameter name). Nothing here imports JAX.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from attnverify.errors import InputError

#: Seeds every PRNG the commands use takes without aliasing: JAX's ``PRNGKey`` with 64-bit
#: types off keeps only the low 32 bits (2**32 would repeat seed 0), numpy's refuses negatives.
SEED_MAX = 2**32 - 1
#: The prefix of every temporary file an atomic write makes beside its target
#: (``.attnverify-tmp-PID-NAME...``): an interrupted write is recognised by it and removed.
TMP_PREFIX = ".attnverify-tmp-"
FLOAT64_BYTES = 8


def temporary_owner(name: str) -> int | None:
    """The id of the process that made the temporary file or folder `name` (``TMP_PREFIX`` + pid +
    ``-...``); None for any other name."""
    pid = name[len(TMP_PREFIX):].split("-", 1)[0] if name.startswith(TMP_PREFIX) else ""
    return int(pid) if pid.isdigit() else None


# -- numbers ------------------------------------------------------------------------------------
def number(name: str, value: float, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, allow_inf: bool = False) -> float:
    """`value` if it is a number (not NaN; finite unless `allow_inf`) in [low, high] ((low, high]
    with `low_open`); else an `InputError` naming `name`. A NumPy scalar or a 0-d array (NumPy,
    JAX) counts, as the float it holds."""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        raise InputError(f"{name} must be a number, got {value!r}")
    if getattr(value, "ndim", None) == 0 and hasattr(value, "__float__") and not isinstance(value, numbers.Real):
        value = float(value)  # a 0-d array
    if not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        float(value)
    except OverflowError:  # an int past float's range (10**400): math.isnan would raise
        raise InputError(f"{name} must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise InputError(f"{name} must be a {'number (inf allowed)' if allow_inf else 'finite number'}, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise InputError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise InputError(f"{name} must be <= {high:g}, got {value:g}")
    return float(value)  # a Python float: hashable, JSON, whatever number type was given


#: The most worker processes or CPU devices a command starts (more only exhausts the machine).
MAX_COUNT = 1024


def env_count(variable: str, what: str, high: int = MAX_COUNT) -> int | None:
    """The integer in 1..`high` in ``$variable`` (a count of `what`), or None when it is unset or blank."""
    text = os.environ.get(variable)
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or value > high:
        raise InputError(f"${variable} must be a number of {what} in 1..{high}, got {text!r}")
    return value


def flag(name: str, value: bool) -> bool:
    """True or False; anything else (``"no"``, which Python reads as true, or 0) is an `InputError`."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def count(name: str, value: int, *, low: int = 1, high: int | None = None) -> int:
    """An integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {bound}, got {value}")
    return value


def seed(name: str, value: int) -> int:
    """A seed every PRNG of the project takes as itself: 0..2**32 - 1."""
    return count(name, value, low=0, high=SEED_MAX)


# -- output paths -------------------------------------------------------------------------------
def names_or_all(names: Collection[str], known: Collection[str], *, what: str) -> list[str]:
    """`names`, or every known name when there are none or one is ``all``. A name neither known
    nor ``all`` is refused, beside ``all`` too: a typo is never run over; so is a name given twice
    (as `sweep-eq19` refuses a repeated value: the second would merge silently)."""
    unknown = [n for n in names if n not in known and n != "all"]
    if unknown:
        raise InputError(f"unknown {what} {', '.join(repr(n) for n in unknown)} (known: {', '.join(known)}, all)")
    repeated = [n for n in dict.fromkeys(names) if list(names).count(n) > 1]
    if repeated:
        raise InputError(f"{what} {repeated[0]!r} is named twice (each {what} runs once)")
    if "all" in names and len(names) > 1:  # as a repeat: the names beside it would change nothing
        raise InputError(f"'all' runs every {what}: not with {', '.join(repr(n) for n in names if n != 'all')}")
    return list(known) if not names or "all" in names else list(names)


def nearest_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (the current folder for a relative path)."""
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def _probe_folder(folder: Path, label: str) -> None:
    """Create and remove a file in `folder`: the only sure test that writing there works."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}{os.getpid()}-probe-")
    except OSError as err:
        raise InputError(f"{label}: cannot write in {folder} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def output_file(name: str, path: str | os.PathLike) -> Path:
    """`path` as a file to be written (atomically) later: not empty, not a folder, its folder
    present and writable. Checked now, so a long computation never ends in an unwritable path."""
    text = os.fspath(path)
    if not text.strip():
        raise InputError(f"{name}: the path is empty")
    path = Path(text)
    if text.endswith(os.sep) or path.is_dir():
        raise InputError(f"{name} {text}: is a folder, not a file")
    if path.exists() and not path.is_file():
        raise InputError(f"{name} {text}: exists and is not a regular file")
    _not_a_sweeps_record(name, text)
    label = f"{name} {text}"
    folder = path.parent
    if path.is_symlink():  # written through (`modelfile.atomic_write`): the link's target is what is written
        label += f" (a link to {os.readlink(path)})"
        folder = Path(os.path.realpath(text)).parent
    if not folder.exists():
        above = nearest_existing(folder)
        if above.is_dir():
            raise InputError(f"{label}: folder {folder} does not exist")
    if not folder.is_dir():
        above = nearest_existing(folder)
        raise InputError(f"{label}: {above} is {'a file, not a folder' if above.is_file() else 'not a folder'}")
    _probe_folder(folder, label)
    return path


#: What a sweep keeps in its results folder (`verification.store`): its manifest, its records, its lock.
SWEEP_RECORDS = MANIFEST_NAME, RESULTS_NAME, LOCK_NAME = ("manifest.json", "results.jsonl", ".attnverify.lock")


def _not_a_sweeps_record(name: str, text: str) -> None:
    """Refuse an output that is (through any link) a file a sweep keeps in its results folder:
    writing it would destroy the records of that sweep, finished or still running."""
    real = Path(os.path.realpath(text))
    if real.name in SWEEP_RECORDS and (real.parent / MANIFEST_NAME).is_file():
        raise InputError(f"{name} {text}: is the {real.name} of the sweep results in {real.parent}; "
                         "give the file another name")


def distinct_outputs(outputs: dict[str, str | os.PathLike | None],
                     inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """No output file is an input's file or another output's (the same path, a link to it, or a
    hard link): writing it would silently replace what the command reads or another output.
    Keys are the flags that named the paths; None is a path not given."""
    def same(a, b) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:  # one of them does not exist yet: compare where they would be
            return Path(a).resolve() == Path(b).resolve()

    named = [(flag, os.fspath(path)) for flag, path in outputs.items() if path is not None]
    sources = [(flag, os.fspath(path)) for flag, path in (inputs or {}).items() if path is not None]
    for i, (flag, path) in enumerate(named):
        for other, source in sources:
            if same(path, source):
                raise InputError(f"{flag} {path}: is the file {other} reads; writing it would replace it "
                                 "(choose another name)")
        for other, earlier in named[:i]:
            if same(path, earlier):
                raise InputError(f"{flag} {path}: is also {other}'s file; one would replace the other "
                                 "(choose another name)")


def output_folder(name: str, path: str | os.PathLike) -> Path:
    """`path` as a folder to write into (created later if missing): not empty, not a file, and
    the nearest existing folder above it writable."""
    text = os.fspath(path)
    if not text.strip():
        raise InputError(f"{name}: the path is empty")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} {text}: exists and is not a folder")
    if path.is_symlink() and not path.exists():  # mkdir would say "File exists"
        raise InputError(f"{name} {text}: is a link to {os.readlink(path)}, which does not exist")
    above = nearest_existing(path)
    if not above.is_dir():
        raise InputError(f"{name} {text}: {above} is a file, not a folder")
    _probe_folder(above, f"{name} {text}")
    return path


def os_error(path: str | os.PathLike, err: OSError) -> InputError:
    """A failed read or write as one line (disk full, permissions, a vanished folder)."""
    reason = (err.strerror or os.strerror(err.errno)) if err.errno else str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason += " (nothing was left half-written)"
    return InputError(f"{path}: {reason}")


# -- processes ----------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (this process counts)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no pid at all
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


# -- memory -------------------------------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes of physical memory available now: Linux's MemAvailable (free pages plus the page cache and
    other memory the kernel reclaims on demand), else the free pages, else None when the platform does
    not say. Free pages alone understate it: with the page cache full after a test run, 5.74 GiB were
    free of 23 GiB available, and a training that fits was refused for memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def fits_in_memory(what: str, nbytes: int) -> None:
    """Refuse work whose arrays alone need more than the free memory (a one-line error naming
    `what` and the bytes, instead of an out-of-memory abort minutes later)."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise InputError(f"{what} needs at least {_bytes(nbytes)} of memory ({nbytes} bytes); "
                         f"{_bytes(free)} are available")


def spec_bytes(spec) -> int:
    """float64 bytes of one model of `spec`: its parameters plus one document's activations
    (embeddings, queries, keys, values, readouts, scores) and their gradient."""
    K, A, O, D, C, V, T = (spec.heads, spec.d_att, spec.d_out, spec.d_embed, spec.classes,
                           spec.vocab_size, spec.max_len)
    scorer = getattr(spec, "scorer", "dot")  # v_score for the additive and deep scorers, U_score for the deep
    params = V * D + K * A * D * 2 + K * O * D + K * C * O + K * (2 * A + O + C) \
        + (K * A if scorer != "dot" else 0) + (K * A * A if scorer == "deep" else 0)
    activations = 2 * T * D + K * T * (2 * A + O + C + 2)
    return FLOAT64_BYTES * (params + activations)


def spec_fits(spec, *, copies: int = 1, what: str = "the model") -> None:
    """`fits_in_memory` for `copies` models of `spec` at once (a sweep holds a block of them)."""
    fits_in_memory(f"{what} (V={spec.vocab_size}, T={spec.max_len}, d_e={spec.d_embed}, "
                   f"K={spec.heads}, d_att={spec.d_att}, d_out={spec.d_out}{f', x{copies}' if copies > 1 else ''})",
                   copies * spec_bytes(spec))


# -- finite results and strict JSON ---------------------------------------------------------------
def is_utf8(text: str) -> bool:
    """Whether `text` can be written as UTF-8: a byte that is not (in argv, the environment or a
    path) reaches Python as a lone surrogate, which JAX's bindings and matplotlib answer with a
    traceback."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shortened(text: str, width: int = 40) -> str:
    """`text`, cut to `width` characters with "..." when longer (a value quoted in a one-line message)."""
    return text if len(text) <= width else text[: width - 3] + "..."


def _non_finite(value: float) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
    return None


def first_non_finite(payload: Any, where: str = "") -> tuple[str, str] | None:
    """``(path, 'NaN' | '+inf' | '-inf')`` of the first non-finite float in `payload`, else None."""
    reason = _non_finite(payload)
    if reason:
        return where or "value", reason
    if isinstance(payload, dict):
        items = payload.items()
    elif isinstance(payload, list | tuple):
        items = ((f"[{j}]", v) for j, v in enumerate(payload))
    else:
        return None
    for key, value in items:
        key = str(key)
        found = first_non_finite(value, f"{where}{key}" if key.startswith("[") or not where else f"{where}.{key}")
        if found:
            return found
    return None


def require_finite(payload: Any, what: str) -> None:
    """Raise `InputError` naming the first non-finite quantity of `what`'s results."""
    found = first_non_finite(payload)
    if found:
        raise InputError(f"{what}: {found[0]} is {found[1]} (the results are not finite)")


def strict(payload: Any) -> Any:
    """`payload` with every non-finite float replaced by None, and, beside each dict entry that
    held one (or a list holding some), ``KEY_non_finite`` saying which and where."""
    if isinstance(payload, dict):
        out = {}
        for key, value in payload.items():
            out[key] = strict(value)
            reasons = _reasons(value)
            if reasons:
                out[f"{key}_non_finite"] = reasons
        return out
    if isinstance(payload, list | tuple):
        return [strict(v) for v in payload]
    return None if _non_finite(payload) else payload


def _reasons(value: Any) -> str | None:
    reason = _non_finite(value)
    if reason:
        return reason
    if isinstance(value, list | tuple):
        bad = [(j, _non_finite(v)) for j, v in enumerate(value) if _non_finite(v)]
        if bad:
            shown = ", ".join(f"[{j}] {r}" for j, r in bad[:5])
            return f"{shown}{f' and {len(bad) - 5} more' if len(bad) > 5 else ''} (written as null)"
    return None


def dumps(payload: Any, **kwargs) -> str:
    """Strict JSON (no NaN or Infinity tokens): non-finite floats become null, reason beside."""
    return json_dumps(strict(payload), **kwargs)


def json_dumps(payload: Any, **kwargs) -> str:
    import json

    return json.dumps(payload, allow_nan=False, **kwargs)


def no_repeats(flag: str, values) -> None:
    """One result per value: a value given twice would be one row, silently."""
    values = list(values or ())
    repeated = next((v for j, v in enumerate(values) if v in values[:j]), None)
    if repeated is not None:
        shown = f"{repeated:g}" if isinstance(repeated, float) else str(repeated)
        raise InputError(f"{flag} {shown} is given twice")


# -- what a refused command made ----------------------------------------------------------------
def missing_folders(folder) -> list[Path]:
    """`folder` and those of its parents that do not exist (deepest first): what making it creates."""
    missing = []
    for path in (Path(folder), *Path(folder).parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def remove_empty_folders(folders) -> None:
    """Remove the folders a refused command created (deepest first, `missing_folders`), each only
    if it is empty: nothing of anyone else's is removed."""
    for folder in folders:
        try:
            Path(folder).rmdir()
        except OSError:
            return


def entries(*folders) -> set[Path]:
    """What each of `folders` holds now (its own entries, hidden ones too; none for a folder that
    does not exist): the state a command refused later must return them to (`remove_added`)."""
    found: set[Path] = set()
    for folder in map(Path, folders):
        try:
            found.update(folder.iterdir())
        except OSError:
            pass
    return found


def remove_added(before: set[Path], names: Collection[str], *folders) -> None:
    """Remove what a refused command added to `folders` since `before` (`entries` of the same
    folders) under one of its own `names` (its outputs, the subfolders it makes, and the
    temporaries of `modelfile.atomic_write`, ``.attnverify-tmp-*``): its files, then the folders
    among them left empty. Quietly: what cannot be removed stays. Nothing that was there before,
    and nothing by another name (a file someone else saved there meanwhile), is touched."""
    added = [path for path in entries(*folders) - before
             if path.name in names or path.name.startswith(TMP_PREFIX)]
    for path in sorted(added, key=lambda p: len(p.parts), reverse=True):
        try:
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:
            pass
