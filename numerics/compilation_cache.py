"""The persistent compilation cache: compiled XLA programs kept on disk between runs.

A sweep's time on CPU is mostly XLA compiling (seconds per program, milliseconds per
block run), so a second run of the same claims loads its programs instead. The cache
lives at ``$ATTNVERIFY_CACHE_DIR`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/attnverify/xla``
(`cache_location`). It is JAX's own persistent cache (``jax_compilation_cache_dir``): an entry's
key hashes the program, the compile options, the backend and the JAX version, and a hit
loads the very executable a fresh compile produced, so the cache changes how long a run
takes, never what it computes.

* An unusable location (not a folder, not writable) means compiling without the cache,
  after one warning line (`configure_cache`); the ``cache`` command reports it as an error.
* An unreadable entry (corrupt, truncated, from a broken write) means recompiling after one
  warning line per process; such an entry is removed so that the next run writes it afresh.

JAX is imported only where it already is: before that, `configure_cache` sets JAX's environment
variables, so a command that never compiles never pays for importing it.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from attnverify.theory import memo

from attnverify.errors import warn_once
from attnverify.validate import TMP_PREFIX, is_utf8, nearest_existing

ENV_VAR = "ATTNVERIFY_CACHE_DIR"
#: Every program that takes longer than this to compile is written (XLA CPU programs take
#: 0.1 s to tens of seconds; below this, reading an entry costs about what compiling does).
MIN_COMPILE_SECONDS = 0.05
#: The cache's size limit: the least recently used entries go beyond it. A limit also makes JAX
#: lock the folder for each read and write (filelock), so that runs sharing the cache (two
#: commands, the test suite's processes) never read an entry another is still writing.
MAX_BYTES = 4 * 2**30
#: JAX names its entries ``<module>-<hash>-cache`` (plus ``-atime`` files when it evicts).
ENTRY_SUFFIX, ATIME_SUFFIX = "-cache", "-atime"
#: JAX's lock on the folder, while a size limit is set: left in place (a running process may hold it).
JAX_LOCK_FILE = ".lockfile"
_JAX_READ_ERROR = "Error reading persistent compilation cache entry for '"
_JAX_WRITE_ERROR = "Error writing persistent compilation cache entry for '"


class CacheLocationError(OSError):
    """The cache location cannot hold a cache (a file, or a folder that cannot be written)."""


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    exists: bool
    entries: int  # compiled programs
    bytes: int  # every file's
    derivations: int = 0  # SymPy derivations
    traced: int = 0  # traced sweep programs (`numerics.stored_programs`)
    results: int = 0  # trained models, study pools, claim contexts (`numerics.stored_results`)


def cache_location() -> Path:
    """``$ATTNVERIFY_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/attnverify/xla``. A relative
    ``$XDG_CACHE_HOME`` is ignored, as the XDG specification asks (it would give every working
    folder a cache of its own)."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        return Path(chosen).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", "")).expanduser()
    return (base if base.is_absolute() else Path.home() / ".cache") / "attnverify" / "xla"


def check_cache_location(path: Path, *, create: bool) -> None:
    """Raise `CacheLocationError` (one line) unless `path` is, or can become, a writable folder."""
    if not is_utf8(str(path)):  # JAX takes the folder as UTF-8 text
        raise CacheLocationError(f"compilation cache folder {str(path)!r} is not UTF-8 text")
    if not str(path).strip():  # `$ATTNVERIFY_CACHE_DIR=" "` would make a folder named " " here
        raise CacheLocationError(f"compilation cache folder {str(path)!r} is blank")
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError as err:  # e.g. a parent folder that cannot be searched: Path.exists raises EACCES
        raise CacheLocationError(f"cannot reach compilation cache folder {path}: {err.strerror or err}") from None
    if is_file:
        raise CacheLocationError(f"compilation cache {path} is a file, not a folder")
    if not create:
        _check_creatable(path)
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheLocationError(f"cannot create compilation cache folder {path}: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheLocationError(f"compilation cache folder {path} is not writable")


def _check_creatable(path: Path) -> None:
    """Raise `CacheLocationError` when a missing `path` could never be made: its nearest existing
    ancestor is a file, or a folder this process cannot write to (what `mkdir` would refuse)."""
    try:
        above = nearest_existing(path)
    except OSError as err:
        raise CacheLocationError(f"cannot reach compilation cache folder {path}: {err.strerror or err}") from None
    if above == path:
        return
    if not above.is_dir():
        raise CacheLocationError(f"cannot create compilation cache folder {path}: {above} is a file")
    if not os.access(above, os.W_OK | os.X_OK):
        raise CacheLocationError(f"cannot create compilation cache folder {path}: {above} is not writable")


def configure_cache(path: Path | None) -> Path | None:
    """Use the cache at `path` from now on (None: compile without a cache), for compiled
    programs and for SymPy derivations (`theory.memo`). Returns the folder in use, or None
    when `path` is unusable (after a one-line warning)."""
    if path is not None:
        try:
            check_cache_location(path, create=True)
        except CacheLocationError as err:
            warn_once(f"{err}; compiling without it", kind=str(err))
            path = None
    # XLA's C++ log lines off (unless the user chose a level). Each program loaded from the cache
    # logs noise: jaxlib 0.9 a warning ("Assume version compatibility"), and on CPUs whose LLVM
    # target carries the tuning attributes +prefer-no-gather/+prefer-no-scatter (AMD Zen 4, some
    # Xeons) an error claiming the entry "could lead to SIGILL", though it was compiled on this
    # very machine and loads and runs correctly (openxla/xla#44565). XLA's real errors reach us as
    # Python exceptions. Read when jaxlib starts, so it matters before JAX's import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    settings = {
        "jax_compilation_cache_dir": None if path is None else str(path),
        "jax_enable_compilation_cache": path is not None,
        "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_SECONDS,
        "jax_persistent_cache_min_entry_size_bytes": -1,  # every size (-1: no minimum)
        "jax_compilation_cache_max_size": MAX_BYTES if path is not None else -1,  # needs filelock
    }
    if "jax" in sys.modules:
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        if any(getattr(jax.config, name) != value for name, value in settings.items()):
            for name, value in settings.items():
                jax.config.update(name, value)
            compilation_cache.reset_cache()  # JAX opens its cache once per process otherwise
    else:  # read by JAX when it is imported
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name.upper(), None)
            else:
                os.environ[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    _install_warning_filter()
    memo.set_derivations_folder(path)
    from attnverify.numerics import stored_programs

    stored_programs.set_programs_folder(path)
    return path


def _entries(path: Path, suffix: str) -> list[Path]:
    return sorted(p for p in path.glob("*" + suffix) if p.is_file() and _is_ours(p.name)) if path.is_dir() else []


def cache_entries(path: Path) -> list[Path]:
    """The compiled programs stored at `path` (JAX's entries)."""
    return _entries(path, ENTRY_SUFFIX)


def derivation_entries(path: Path) -> list[Path]:
    """The SymPy derivations stored at `path` (`theory.memo`)."""
    return _entries(path, memo.SUFFIX)


def traced_entries(path: Path) -> list[Path]:
    """The traced sweep programs stored at `path` (`numerics.stored_programs`)."""
    from attnverify.numerics import stored_programs

    return _entries(path, stored_programs.SUFFIX)


def result_entries(path: Path) -> list[Path]:
    """The results stored at `path` (`numerics.stored_results`: trained models, study pools, claim
    contexts and proofs, figures' data)."""
    from attnverify.numerics import stored_results

    return _entries(path, stored_results.SUFFIX)


def cache_info(path: Path) -> CacheInfo:
    """How many entries the cache at `path` holds and their total size (raises
    `CacheLocationError` when `path` is a file)."""
    check_cache_location(path, create=False)
    if not path.is_dir():
        return CacheInfo(path, False, 0, 0)
    found = cache_entries(path)
    size = sum(p.stat().st_size for p in owned_files(path))  # the cache's own files, not a user's beside them
    return CacheInfo(path, True, len(found), size, len(derivation_entries(path)), len(traced_entries(path)),
                     len(result_entries(path)))


@functools.lru_cache(maxsize=1)
def _entry_name() -> re.Pattern:
    from attnverify.numerics import stored_programs, stored_results

    suffixes = "|".join(re.escape(s) for s in (memo.SUFFIX, stored_programs.SUFFIX, stored_results.SUFFIX))
    return re.compile(rf"(-[0-9a-f]{{64}}-(cache|atime)|(^|-)[0-9a-f]{{32}}({suffixes}))$")


def _is_ours(name: str) -> bool:
    """Whether a file name is one the cache writes: JAX's entries and their ``-atime`` companions
    (``<module>-<64 hex>-cache``), the stores' entries (``<name>-<32 hex><suffix>``) and the
    temporaries of their atomic writes; never a user's ``notes-cache`` or ``model.npz``."""
    return name.startswith(TMP_PREFIX) or bool(_entry_name().search(name))


def owned_files(path: Path) -> list[Path]:
    """The files at `path` that the cache wrote (`_is_ours`)."""
    return sorted(p for p in path.iterdir() if (p.is_file() or p.is_symlink()) and _is_ours(p.name)) \
        if path.is_dir() else []


def clear_cache(path: Path) -> tuple[int, list[Path]]:
    """Remove the cache's files at `path` (`owned_files`); returns how many entries (compiled
    programs, derivations, traced programs and stored results) it held, and the files it left
    because the cache did not write them. The folder itself stays (it may be one the user made).
    A missing folder holds nothing."""
    check_cache_location(path, create=False)
    if not path.is_dir():
        return 0, []
    count = sum(len(entries(path)) for entries in (cache_entries, derivation_entries, traced_entries,
                                                    result_entries))
    owned = owned_files(path)
    for item in owned:
        item.unlink(missing_ok=True)
    others = sorted(p for p in path.iterdir() if p not in owned and p.name != JAX_LOCK_FILE)
    return count, others


def remove_unreadable_entries(path: Path, module: str) -> int:
    """Delete the entries of `module` at `path` that do not decompress (JAX never overwrites
    an existing entry, so a corrupt one would otherwise be recompiled on every run)."""
    removed = 0
    for entry in path.glob(f"{module}-*{ENTRY_SUFFIX}") if path.is_dir() else []:
        try:
            zlib.decompress(entry.read_bytes())
        except (zlib.error, OSError):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


# -- one-line warnings ----------------------------------------------------------------------
_FILTER_INSTALLED = False


def _install_warning_filter() -> None:
    """Turn JAX's two-line cache read/write warnings into one line each (once per process)."""
    global _FILTER_INSTALLED
    if _FILTER_INSTALLED:
        return
    _FILTER_INSTALLED = True
    previous = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text.startswith(_JAX_READ_ERROR):
            module = text[len(_JAX_READ_ERROR):].split("'", 1)[0]
            cache = _current_dir()
            if cache is not None:
                remove_unreadable_entries(cache, module)
            reason = text.split("': ", 1)[-1]
            warn_once(f"unreadable compilation cache entry ({reason[:120]}); recompiling", kind="read")
        elif text.startswith(_JAX_WRITE_ERROR):
            reason = text.split("': ", 1)[-1]
            warn_once(f"cannot write to the compilation cache ({reason[:120]}); continuing without", kind="write")
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def _current_dir() -> Path | None:
    import jax

    value = jax.config.jax_compilation_cache_dir
    return Path(value) if value else None
