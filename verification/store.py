"""Append-only sweep results with a manifest and a lock, so that a sweep can resume and two
sweeps can never mix.

A results folder holds ``manifest.json`` (spec, seed, dtype, scale, trials, chunk size, the
claims, the code version, library versions, device count), ``results.jsonl`` (one JSON record
per finished chunk, written and fsync'ed as soon as the chunk is done) and ``.attnverify.lock``.

* **Lock.** A run holds an exclusive ``flock`` on the lock file, with its pid written in it, for
  as long as the store is open: a second run into the folder is refused ("folder in use by pid
  N"). The kernel drops the lock when its process dies, however it dies; a pid left in the file
  by a dead run is reported and the lock taken over.
* **Records carry their run.** Each record states its claim, seed, spec hash, dtype, scale, code
  version, chunk index, start, stop and size next to its errors. Non-finite errors are stored as
  the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``: every line is strict JSON.
* **Resume checks everything.** The manifest must match the new run in `RESUME_KEYS` (the
  claim list and code version included). Every record is checked against the manifest: a
  corrupt line (torn by a kill, edited, wrong size, a negative error of an identity claim) or a
  record of another run is reported with its line number and its chunk recomputed; no line is
  ever deleted, and appends always start on a new line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from attnverify.numerics.modelfile import atomic_write

from attnverify.errors import InputError, warn
from attnverify.validate import (
    LOCK_NAME,
    MANIFEST_NAME,
    RESULTS_NAME,
    missing_folders,
    os_error,
    pid_alive,
    remove_empty_folders,
    shortened,
)

#: Manifest entries that must match for `--resume` to continue a sweep.
RESUME_KEYS = ("spec", "seed", "dtype", "scale", "trials", "chunk_size", "block", "claims", "code", "computation")
#: A record's identity fields: each must equal the run's (`ChunkStore.identity`).
IDENTITY = ("seed", "spec", "dtype", "scale", "code")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def environment() -> dict:
    """Versions, platform and devices: recorded with every result."""
    import jax

    versions = {}
    for name in ("attnverify", "jax", "jaxlib", "sympy", "numpy", "optax"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
    }


def code_version(claims: Iterable) -> str:
    """``PACKAGE_VERSION+HASH``: the package version and a hash of the source of the modules
    that define `claims` (their ids included; a plugin or claims file with the helper modules it
    imported from its folder, `plugins._digest`), so results of edited claims are never reused."""
    import attnverify

    digest = hashlib.sha256()
    files, user_files = set(), {}
    for claim in sorted(claims, key=lambda c: c.id):  # the same claims in another order: the same code
        digest.update(claim.id.encode())
        build = getattr(claim.build, "func", claim.build)  # a functools.partial's function
        module = sys.modules.get(getattr(build, "__module__", "") or "")
        if module is not None and getattr(module, "__digest__", None):  # a user's file, with its helpers
            user_files[module.__file__] = module.__digest__
        elif module is not None and getattr(module, "__file__", None):
            files.add(module.__file__)
            files.update(_package_sources(module))
    for path in sorted(files):
        digest.update(Path(path).read_bytes())
    for path in sorted(user_files):
        digest.update(user_files[path].encode())
    return f"{attnverify.__version__}+{digest.hexdigest()[:12]}"


def _package_sources(module) -> set[str]:
    """The source files of the top-level package of a user's claims module named by its dotted name
    (``mypkg.claims``): a helper module beside it (``mypkg.helpers``) is part of its code, and an
    edited one is another code version (a resume had mixed its chunks with the first run's). This
    package's own modules are in `computation_digest`."""
    top = module.__name__.split(".")[0]
    package = sys.modules.get(top)
    if "." not in module.__name__ or top == "attnverify" or package is None:
        return set()
    return {str(p) for folder in getattr(package, "__path__", []) for p in sorted(Path(folder).rglob("*.py"))}


def computation_digest() -> str:
    """What else decides a sweep's bits (`numerics.stored_programs.environment_digest`): the whole
    package's source, the libraries' versions, JAX's tracing options, ``$XLA_FLAGS`` but for the
    device count, and the machine. A resumed sweep must match it: its chunks under fast-math XLA
    flags, or after an edit of the draws, were silently mixed with the first run's."""
    from attnverify.numerics.stored_programs import environment_digest

    return environment_digest()[:16]


def spec_hash(spec: dict) -> str:
    """A short hash of a spec (as its JSON dict): what a record states instead of the whole spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


# -- the lock ------------------------------------------------------------------------------------
class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/.attnverify.lock`` holding this process's pid."""

    def __init__(self, folder: Path, log: Callable[[str], None] = warn):
        self.path = Path(folder) / LOCK_NAME
        self.log = log
        self._handle = None
        #: Whether `acquire` created the lock file (a refused command removes it: `release(discard=True)`).
        self.created = False
        #: What the lock file held before `acquire` (a dead run's pid): a refused command puts it back.
        self._previous = ""

    def acquire(self) -> FolderLock:
        while True:
            handle, created = self._open()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_pid(handle)
                handle.close()
                who = f"pid {owner}" if owner is not None else "another process"
                raise InputError(f"{self.path.parent}: folder in use by {who} (a sweep, a report or a figures run "
                                 f"is writing there; wait for it, or choose another folder)") from None
            except OSError as err:
                handle.close()
                raise os_error(self.path, err) from None
            if self._still_linked(handle):
                break
            # A refused run removed the file (`release(discard=True)`) between our open and our
            # flock: the lock we hold is on a file nobody else will open. Take the lock afresh.
            handle.close()
        self.created = created
        try:
            handle.seek(0)
            self._previous = handle.read(4096)  # a pid and a newline: anything longer is not ours
        except (OSError, UnicodeDecodeError):
            self._previous = ""
        previous = _read_pid(handle)
        if previous is not None and previous != os.getpid():
            state = "no longer running" if not pid_alive(previous) else "running but not holding the lock"
            self.log(f"{self.path.parent}: taking over the stale lock of pid {previous} ({state})")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def _open(self):
        """The lock file, opened for reading and writing, and whether this call created it."""
        try:
            try:
                return open(self.path, "x+"), True
            except FileExistsError:
                return open(self.path, "a+"), False
        except OSError as err:
            raise os_error(self.path, err) from None

    def _still_linked(self, handle) -> bool:
        try:
            mine, there = os.fstat(handle.fileno()), os.stat(self.path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def release(self, *, discard: bool = False) -> None:
        """Unlock, leaving an empty lock file; with `discard` (a refused command, which must
        leave nothing behind), the lock file is removed instead if this lock created it, and
        otherwise given back what it held before (a dead run's pid)."""
        if self._handle is None:
            return
        removed = False
        if discard and self.created:
            try:
                os.unlink(self.path)  # while still locked: a waiting run re-opens (`acquire`)
                removed = True
            except OSError:
                pass
        if not removed:
            try:
                self._handle.seek(0)
                self._handle.truncate()  # an empty lock file: released cleanly
                if discard:
                    self._handle.write(self._previous)
                self._handle.flush()
            except OSError:
                pass
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def _read_pid(handle) -> int | None:
    try:
        handle.seek(0)
        text = handle.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


# -- records -------------------------------------------------------------------------------------
def encode_errors(errors: Iterable[float]) -> list:
    """Errors as strict-JSON values: non-finite ones as "NaN", "Infinity" or "-Infinity"."""
    out = []
    for x in errors:
        x = float(x)
        out.append(x if math.isfinite(x) else ("NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")))
    return out


def parse_record(line: bytes, manifest: dict, distances: Iterable[str] = ()) -> tuple[str, int, list[float]] | str:
    """``(claim, chunk, errors)`` of one results line that belongs to the sweep of `manifest`,
    else a one-line reason (never an exception): the record is then recomputed, not trusted. The
    errors of the claims in `distances` (identities: an error is a distance) must not be negative."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        return "not a complete JSON record (torn by a kill, or edited)"
    if not isinstance(record, dict):
        return f"not a record (a JSON {type(record).__name__})"
    missing = [k for k in ("claim", "chunk", "start", "stop", "size", "errors", *IDENTITY) if k not in record]
    if missing:
        return f"record without {', '.join(missing)}"
    identity = run_identity(manifest)
    foreign = [k for k in IDENTITY if record[k] != identity[k] or type(record[k]) is not type(identity[k])]
    if foreign:
        return "another run's record (" + ", ".join(
            f"{k} {_short(record[k])}, not {_short(identity[k])}" for k in foreign) + ")"
    claim, chunk, start, stop, size, errors = (record[k] for k in ("claim", "chunk", "start", "stop", "size", "errors"))
    if claim not in manifest["claims"]:
        return f"a record of claim {_short(claim)}, which this sweep does not run"
    trials, width = manifest["trials"], manifest["chunk_size"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (chunk, start, stop, size)):
        return "chunk, start, stop and size must be integers"
    if not 0 <= chunk < -(-trials // width):
        return f"chunk {chunk} is outside 0..{-(-trials // width) - 1}"
    if (start, stop) != (chunk * width, min((chunk + 1) * width, trials)):
        return f"chunk {chunk} must span draws {chunk * width}..{min((chunk + 1) * width, trials)}, not {start}..{stop}"
    if not isinstance(errors, list):
        return f"errors must be a list, not a JSON {type(errors).__name__}"
    if size != stop - start:
        return f"states size {size}, the chunk has {stop - start} draws"
    if len(errors) != size:
        return f"holds {len(errors)} errors, the chunk has {size} draws"
    values = []
    for x in errors:
        if isinstance(x, bool) or not isinstance(x, int | float | str) or (isinstance(x, str) and x not in _NON_FINITE):
            return f"errors must be numbers, found {_short(x)}"
        try:
            values.append(_NON_FINITE[x] if isinstance(x, str) else float(x))
        except OverflowError:  # an integer of hundreds of digits
            return f"errors must be floating-point numbers, found an integer of {len(str(x))} digits"
    if claim in distances and any(v < 0 for v in values):
        return f"a negative error for {claim} (an identity's error is a distance)"
    return claim, chunk, values


def run_identity(manifest: dict) -> dict:
    """What every record of the sweep of `manifest` states about its run."""
    return {"seed": manifest["seed"], "spec": spec_hash(manifest["spec"]), "dtype": manifest["dtype"],
            "scale": manifest["scale"], "code": manifest["code"]}


def _compared(key: str, value):
    """What must match on resume: a spec's plugin by its code (sha256), not by the path it was given by
    (the same file named from another folder, or by its absolute path, is the same plugin)."""
    if key == "spec" and isinstance(value, dict) and isinstance(value.get("plugin"), dict):
        return {**value, "plugin": {k: v for k, v in value["plugin"].items() if k != "file"}}
    return value


def _difference(key: str, then, now) -> str:
    """What changed in a manifest entry, for a refused `--resume`: a spec's changed fields (a
    plugin's file or code by name), another entry's two values."""
    if key == "claims" and isinstance(then, list) and isinstance(now, list) and sorted(then) == sorted(now):
        return f"the same claims in another order: give them as the first run did, {' '.join(then)}"
    if key == "spec" and isinstance(then, dict) and isinstance(now, dict):
        fields = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
        parts = []
        for field_name in fields:
            a, b = then.get(field_name), now.get(field_name)
            if field_name == "plugin" and isinstance(a, dict) and isinstance(b, dict):
                if a.get("sha256") != b.get("sha256"):
                    files = (f"{shortened(str(a.get('file')))} then, {shortened(str(b.get('file')))} now; "
                             if a.get("file") != b.get("file") else "")
                    parts.append(f"plugin sha256 {str(a.get('sha256'))[:12]} then, {str(b.get('sha256'))[:12]} now "
                                 f"({files}the plugin or a helper module it imports changed)")
                parts += [f"plugin {k}: {_short(a.get(k))} then, {_short(b.get(k))} now"
                          for k in sorted(a.keys() | b.keys()) if k not in ("file", "sha256") and a.get(k) != b.get(k)]
            else:
                parts.append(f"{field_name}: {_short(a)} then, {_short(b)} now")
        return "spec: " + ", ".join(parts) if parts else "spec"
    if key == "computation":
        return ("computation: the package's source, a library's version, a JAX option, $XLA_FLAGS or the machine "
                "changed")
    return f"{key}: {_short(then)} then, {_short(now)} now"


def _short(value) -> str:
    return shortened(json.dumps(value) if not isinstance(value, str) else repr(value))


# -- the store -----------------------------------------------------------------------------------
@dataclass
class ChunkStore:
    """The results folder of one sweep (see the module docstring). Close it (or use it as a
    context manager) to release the folder's lock."""

    folder: Path
    manifest: dict
    done: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    lock: FolderLock | None = None
    log: Callable[[str], None] = warn
    #: What `open` made for this run: the folders (deepest first), and the files it created (the
    #: manifest and the results file of a sweep it started where there were none).
    made: list[Path] = field(default_factory=list)
    created: tuple[str, ...] = ()
    #: The claims whose errors are distances (identities): a negative one read back is refused.
    distances: frozenset[str] = frozenset()

    @classmethod
    def open(cls, folder: str | os.PathLike, manifest: dict, *, resume: bool,
             log: Callable[[str], None] = warn, distances: Iterable[str] = ()) -> ChunkStore:
        absent = [k for k in RESUME_KEYS if k not in manifest]
        if absent:
            raise ValueError(f"a sweep manifest needs {', '.join(absent)}")
        folder = Path(folder)
        if not os.fspath(folder).strip():
            raise InputError("the results folder path is empty")
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder}: exists and is not a folder")
        if resume and (folder / MANIFEST_NAME).exists() and not (folder / MANIFEST_NAME).is_file():
            raise InputError(f"{folder / MANIFEST_NAME}: is not a regular file, so it cannot be resumed")
        if resume and not (folder / MANIFEST_NAME).is_file():
            raise InputError(f"{folder}: nothing to resume (no {MANIFEST_NAME})")
        made = missing_folders(folder)  # the folders this run creates, deepest first
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(folder, err) from None
        try:
            lock = FolderLock(folder, log).acquire()
        except BaseException:
            if made:
                _remove_folder(folder, made)
            raise
        created = () if resume else tuple(n for n in (MANIFEST_NAME, RESULTS_NAME) if not (folder / n).exists())
        try:
            store = (cls._resume(folder, manifest, log, frozenset(distances)) if resume
                     else cls._start(folder, manifest, log))
        except BaseException as err:
            # A refusal leaves the folder as it was: no lock file this run created, and no
            # folder (nor the files this run began in it) if the folder is this run's.
            refused = isinstance(err, InputError)
            if refused and made:
                _remove_folder(folder, made, (MANIFEST_NAME, RESULTS_NAME), lock=lock)
            else:
                lock.release(discard=refused)
            raise
        store.lock, store.made, store.created = lock, made, created
        return store

    @classmethod
    def _start(cls, folder: Path, manifest: dict, log) -> ChunkStore:
        results = folder / RESULTS_NAME
        if results.exists() and results.stat().st_size > 0:
            raise InputError(f"{folder} already holds results: add --resume to continue them, or choose another "
                             "folder")
        manifest = {**manifest, "environment": environment()}
        atomic_write(folder / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
        try:
            results.touch()
        except OSError as err:
            raise os_error(results, err) from None
        return cls(folder, manifest, log=log)

    @classmethod
    def _resume(cls, folder: Path, manifest: dict, log, distances: frozenset[str] = frozenset()) -> ChunkStore:
        previous = read_manifest(folder / MANIFEST_NAME)
        changed = [k for k in RESUME_KEYS if _compared(k, previous.get(k)) != _compared(k, manifest.get(k))]
        if changed:
            shown = [_difference(k, previous.get(k), manifest.get(k)) for k in changed if k != "block"]
            raise InputError(f"cannot resume {folder}: {', '.join(changed)} "
                             f"{'differs' if len(changed) == 1 else 'differ'} from the first run"
                             + (f" ({'; '.join(shown)})" if shown else ""))
        store = cls(folder, previous, log=log, distances=distances)
        store._read(folder / RESULTS_NAME)
        return store

    def _read(self, results: Path) -> None:
        """Load the records that belong to this sweep; report every line that does not."""
        if not results.exists():
            results.touch()
            return
        if not results.is_file():  # a FIFO blocked the read for good; a folder cannot be appended to
            raise InputError(f"{results}: is not a regular file, so the sweep's records cannot be read back")
        try:
            data = results.read_bytes()
        except OSError as err:
            raise os_error(results, err) from None
        problems: dict[str, list[int]] = {}
        first_line: dict[tuple[str, int], int] = {}
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            parsed = parse_record(line, self.manifest, self.distances)
            if isinstance(parsed, str):
                problems.setdefault(parsed, []).append(number)
                continue
            claim, chunk, errors = parsed
            if (claim, chunk) in self.done:
                if not _same(self.done[(claim, chunk)], errors):
                    problems.setdefault(f"repeats chunk {chunk} of {claim} (line {first_line[(claim, chunk)]}) "
                                        "with different errors; the first is kept", []).append(number)
                continue
            self.done[(claim, chunk)] = errors
            first_line[(claim, chunk)] = number
        for reason, lines in problems.items():
            where = f"line {lines[0]}" if len(lines) == 1 else f"lines {_ranges(lines)}"
            self.log(f"{results} {where}: {reason}; {'its chunk is' if len(lines) == 1 else 'their chunks are'} "
                     "recomputed (the line is kept)")
        if data and not data.endswith(b"\n"):  # a torn or newline-less last line: appends start afresh
            self._write(results, b"\n")

    def check_sweep(self, claim: str, *, spec: dict, seed: int, dtype: str, scale: float, trials: int,
                    chunk_size: int) -> None:
        """Refuse to serve a sweep other than the manifest's (a caller's mistake, never silent)."""
        wanted = {"spec": spec, "seed": seed, "dtype": dtype, "scale": scale, "trials": trials,
                  "chunk_size": chunk_size}
        changed = [k for k, v in wanted.items() if _compared(k, self.manifest.get(k)) != _compared(k, v)]
        if changed or claim not in self.manifest["claims"]:
            what = ", ".join(changed) if changed else f"claim {claim} (not in its claim list)"
            raise InputError(f"the results folder {self.folder} holds another sweep: {what} "
                             f"{'differs' if len(changed) <= 1 else 'differ'}")

    def get(self, claim: str, chunk: int) -> list[float] | None:
        return self.done.get((claim, chunk))

    def append(self, claim: str, chunk: int, start: int, stop: int, errors: list[float]) -> None:
        """Write one finished chunk's record (fsync'ed); a failed write leaves no partial line."""
        if len(errors) != stop - start:
            raise ValueError(f"chunk {chunk}: {len(errors)} errors for draws {start}..{stop}")
        record = {"claim": claim, **run_identity(self.manifest), "chunk": chunk, "start": start, "stop": stop,
                  "size": stop - start, "errors": encode_errors(errors)}
        self._write(self.folder / RESULTS_NAME, (json.dumps(record, allow_nan=False) + "\n").encode())
        self.done[(claim, chunk)] = [float(x) for x in errors]

    def _write(self, path: Path, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as err:
            raise os_error(path, err) from None
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as err:
                try:
                    os.ftruncate(fd, size)  # we hold the lock: only our partial line goes
                except OSError:
                    pass
                raise os_error(path, err) from None
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def refused(self) -> None:
        """Close after a refusal during the sweep (a user's claim whose code fails when traced):
        a sweep that recorded nothing takes back the files and folders this run created, and the
        lock; one with results keeps them, to resume."""
        if self.lock is None:
            return
        if self.created and not self.done:
            _remove_folder(self.folder, self.made, self.created, lock=self.lock)
            self.lock = None
        else:
            self.close()

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove_folder(folder: Path, folders: list[Path], names: Iterable[str] = (), *,
                   lock: FolderLock | None = None) -> None:
    """Remove the `folders` this run created (`folder`'s `names` first, then its lock), quietly:
    the error that made the run give up is what the user sees."""
    for name in names:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError:
            pass
    if lock is not None:
        lock.release(discard=True)
    remove_empty_folders(folders)


def read_manifest(path: Path) -> dict:
    """The manifest of a results folder, or a one-line `InputError` saying what is wrong with it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise os_error(path, err) from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (not a manifest this program wrote)") from None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(f"{path} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: not a JSON object (a JSON {type(manifest).__name__})")
    return manifest


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def _ranges(numbers: list[int]) -> str:
    spans, start = [], numbers[0]
    for prev, cur in zip(numbers, [*numbers[1:], None], strict=True):
        if cur != prev + 1:
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(spans[:6]) + (f" and {len(spans) - 6} more" if len(spans) > 6 else "")
