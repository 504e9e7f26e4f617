"""Sweep programs traced once and kept on disk (`jax.export`), so a warm run neither builds,
traces nor lowers them.

JAX's persistent cache (`numerics.compilation_cache`) saves XLA's compilation, but its key is the
lowered program, so a warm run still builds every claim (reads a derivation back, trains a
synthetic model again, computes a study's pool), traces it and lowers it: for
``verify theorem1`` that was most of a warm run. Here a sweep program (`verification.blocks`:
the draw program; an evaluation group's measure program) is exported per argument shapes with
`jax.export` and stored next to the compiled programs; a later run with the same key reads it
back and calls it, and XLA's cache supplies the executable.

**Results do not change.** A program always runs through its export, ``jax.jit(exported.call)``:
just traced, read back, or with the cache off, the cold, warm and off runs compile the same
StableHLO. (A program `jax.export` cannot serialise runs as a plain `jax.jit`, every time.)

**The key** is everything the trace depends on: the program's own key (which programs, the
spec, dtype, scale) and argument shapes; a digest of every file of the installed `attnverify`
package; the versions of Python, JAX, jaxlib, NumPy, SymPy and optax; the JAX flags that change
a trace; the options given to XLA (``$XLA_FLAGS``, `xla_flags`); and the machine (CPU model and
features, backend), since constants computed while tracing (a trained model's weights) are part
of the program, and another CPU or another XLA option may round them differently. So only
programs made of the package's own code may be given a key: the sweep's (`verification.blocks`)
gives none to a user's claim or a plugin model, which are code outside the package, traced
afresh in every run.

Programs are read back only from the folder the command line chose (`set_programs_folder`,
called with the compilation cache's folder); in-process callers (tests, notebooks, which may
replace a statement) trace afresh. Like the compiled programs beside them, the folder is
trusted: only its owner should be able to write to it. An entry that cannot be read is traced
again and rewritten, after one warning line.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from attnverify.errors import InputError, warn_once

# JAX is imported where a program is made, not here: the command line sets the folder before
# it knows whether it will compile anything (`numerics.compilation_cache.configure_cache`).

SUFFIX = ".jaxexport"
#: JAX flags that change what a function traces to.
TRACE_FLAGS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
               "jax_default_matmul_precision", "jax_numpy_rank_promotion", "jax_numpy_dtype_promotion")
#: The package's layers, each a folder whose files the digest covers.
LAYERS = ("attnverify", "attnverify.numerics", "attnverify.theory", "attnverify.verification", "attnverify.figures")
_folder: Path | None = None


def set_programs_folder(path: Path | None) -> Path | None:
    """Store traced programs in `path` from now on (None: none on disk); returns the folder used until now."""
    global _folder
    previous, _folder = _folder, path
    return previous


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _machine() -> str:
    """The CPU model and features (Linux), else what `platform` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(dict.fromkeys(wanted)) or f"{platform.machine()} {platform.processor()}"


def xla_flags() -> str:
    """The options given to XLA's compiler in ``$XLA_FLAGS``, sorted, but for the CPU device count
    (`numerics.host_devices`: results are bit-identical for any count, tests/test_scale_out.py).
    Another option (an optimisation level, say) may round a trained model's weights differently."""
    from attnverify.numerics.host_devices import FLAG

    return " ".join(sorted(f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=")[0] != FLAG))


@functools.cache
def environment_digest() -> str:
    """The digest of everything but the program's own key (see the module docstring)."""
    files = []
    for layer in LAYERS:  # the installed package's folders (found, not imported)
        folder = Path(next(iter(importlib.util.find_spec(layer).submodule_search_locations))).resolve()
        files += [(f"{layer}/{p.relative_to(folder)}", p) for p in folder.rglob("*")
                  if p.is_file() and p.suffix in (".py", ".txt")]
    digest = hashlib.sha256()
    for name, path in sorted(files):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    import jax

    versions = [sys.version] + [_version(p) for p in ("jax", "jaxlib", "numpy", "sympy", "optax")]
    flags = [f"{name}={getattr(jax.config, name, None)!r}" for name in TRACE_FLAGS]
    device = jax.devices()[0]
    for part in (*versions, *flags, xla_flags(), device.platform, device.device_kind, _machine()):
        digest.update(str(part).encode() + b"\0")
    return digest.hexdigest()


class StoredProgram:
    """``jax.jit(function)``, run through its export, where ``function = make()`` is built only
    when a program must be traced. With `key` (a string naming the program) and a folder set,
    the export of each argument shapes is stored, and read back by later runs."""

    def __init__(self, name: str, make: Callable[[], Callable], key: str | None):
        self.name, self._make, self._key = name, make, key
        self._function: Callable | None = None
        self._by_shapes: dict = {}

    def _traced(self) -> Callable:
        import jax

        if self._function is None:
            self._function = jax.jit(self._make())
        return self._function

    def _program(self, args: tuple) -> Callable:
        import jax

        leaves, tree = jax.tree.flatten(args)
        shapes = (str(tree), tuple((tuple(x.shape), str(x.dtype)) for x in leaves))
        if shapes not in self._by_shapes:
            self._by_shapes[shapes] = self._load_or_export(args, shapes)
        return self._by_shapes[shapes]

    def _load_or_export(self, args: tuple, shapes) -> Callable:
        import jax
        import jax.export

        path = None
        if self._key is not None and _folder is not None:
            key = hashlib.sha256(f"{environment_digest()} {self._key} {shapes}".encode()).hexdigest()[:32]
            path = _folder / f"{self.name}-{key}{SUFFIX}"
            try:
                payload = path.read_bytes()
            except OSError:
                payload = None
            if payload is not None:
                try:
                    exported = jax.export.deserialize(bytearray(payload))
                    if b"lapack_" in payload:
                        _initialise_lapack()
                    return jax.jit(exported.call)
                except Exception as err:  # truncated or corrupt: trace again, and rewrite it
                    warn_once(f"unreadable compilation cache entry (traced program {path.name}: "
                              f"{type(err).__name__}); tracing again", kind="read")
        structs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
        try:
            exported = jax.export.export(self._traced())(*structs)
        except InputError:  # a user's code refused while it was traced: tracing it again would run it twice
            raise
        except Exception:  # not serialisable (e.g. a host callback): a plain jit, in every run
            return self._traced()
        if path is not None:
            try:
                payload = exported.serialize()
            except Exception:  # e.g. an effect serialisation does not support: traced in every run
                payload = None
            if payload is not None:
                from attnverify.numerics.modelfile import atomic_write

                try:  # readers see the whole entry or none
                    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))
                except InputError:  # the folder went away or is full: the sweep goes on without it
                    pass
        return jax.jit(exported.call)

    def __call__(self, *args):
        return self._program(args)(*args)

    def lower(self, *args):
        return self._program(args).lower(*args)


@functools.cache
def _initialise_lapack() -> None:
    """Make jaxlib's CPU LAPACK kernels callable before a program read back calls them.

    jaxlib finds its LAPACK routines (SciPy's) when a linear-algebra operation is *lowered*; a
    program read back from its export is never lowered from JAX operations, so without this its
    first LAPACK call (an SVD, an LU solve) jumps through a null pointer and the process dies
    (SIGSEGV). Lowering one tiny LU does what JAX's own lowering does, through the public API."""
    import jax
    import numpy as np

    jax.jit(jax.lax.linalg.lu).lower(np.zeros((1, 1), np.float32))
