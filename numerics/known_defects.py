"""Releases of JAX's runtime with a known defect that can stop a run, and the one-line warning.

**jaxlib 0.10.0 to 0.11.0: batched linear algebra can hang on CPU.** In these releases a batched
LAPACK call (SVD, least squares, LU, Cholesky, ...) splits its batch over XLA's intra-op thread
pool and blocks its own thread until the pieces are done. When a compiled program runs as many
such calls at once as the pool has threads (one per core), every thread of the pool waits for
work that no thread is left to do, and the run hangs at 0 % CPU. On a 2-core machine two
independent calls suffice: the support-necessity claim compares two trained models, each with
a batched least-squares solve, and with jaxlib 0.10.2 it hung in about one run in ten (native
stacks: both pool threads in ``jax::ParallelBatchMap`` under ``lapack_dgesdd_ffi``). From 0.11.1
open-source builds leave that path out, so the package's requirements exclude 0.10.* and 0.11.0
(pyproject.toml). `warn_known_defects` says so when a forced install has one of them anyway.

**jaxlib 0.9.2: the SVD alone.** Its SVD kernels are the only LAPACK kernels that take the pool
(``nm`` of ``jaxlib/cpu/_lapack.so``), and they do the same: ``verify identifiability --scale 10
--trials 1000`` hung at 0 % CPU within two minutes, both pool threads in
``jax::SingularValueDecomposition`` under ``lapack_dgesdd_ffi`` (a claim's two sweep blocks, one
on each CPU device), and a batch of 128 SVDs of 64 x 64 matrices on each of the two devices hangs
within a minute. The
package's SVDs therefore go through `numerics.svd`, which under `jax.vmap` calls the kernel one
matrix at a time (the same stress test then runs 100 rounds).
"""

from __future__ import annotations

import re
from importlib import metadata

from attnverify.errors import warn

#: [first affected, first fixed) releases of jaxlib with the blocking LAPACK batch path.
LAPACK_POOL_DEADLOCK = ((0, 10, 0), (0, 11, 1))
_warned = False


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "0.10.2" -> (0, 10, 2); "0.9.0.1" -> (0, 9, 0, 1)."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def known_defect(jaxlib_version: str) -> str | None:
    """Why this jaxlib release can stop a run, or None."""
    first, fixed = LAPACK_POOL_DEADLOCK
    if first <= release(jaxlib_version) < fixed:
        return (f"jaxlib {jaxlib_version} can hang on CPU when a program runs several batched "
                "linear-algebra calls at once; install jax and jaxlib 0.9.2 or >= 0.11.1 "
                "(pip install -e . picks a safe release)")
    return None


def installed_jaxlib() -> str | None:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def warn_known_defects() -> None:
    """One warning line on stderr, once per process, if the installed jaxlib has a known defect."""
    global _warned
    version = installed_jaxlib()
    reason = known_defect(version) if version else None
    if reason and not _warned:
        _warned = True
        warn(reason)
