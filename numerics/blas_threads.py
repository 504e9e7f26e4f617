"""One BLAS thread under XLA.

On CPU, jaxlib's LAPACK calls (`jnp.linalg.solve`, `eigh`, ...) run in scipy's OpenBLAS. After
each call its idle worker threads busy-wait, and so take the cores from the next XLA program: a
LIME explanation's evaluation right after its ridge solve ran in 19.5 ms instead of 11.3 ms
(median, d = 196, two cores; docs/benchmarks.md). Our matrices are at most a few hundred wide,
and the main job takes the same time with one BLAS thread as with two.

OpenBLAS reads ``$OPENBLAS_NUM_THREADS`` when its library loads, which is at JAX's first
linear-algebra call, so setting it when a command starts is early enough. A count the user set
is kept. A process that loaded scipy's linear algebra earlier (a notebook that imported
scikit-learn) keeps the count it loaded with. Nothing here imports JAX or scipy.
"""

from __future__ import annotations

import os

ENV_VAR = "OPENBLAS_NUM_THREADS"


def configure_blas_threads() -> bool:
    """Ask OpenBLAS for one thread unless ``$OPENBLAS_NUM_THREADS`` is set. Returns whether it
    was set here."""
    if ENV_VAR in os.environ:
        return False
    os.environ[ENV_VAR] = "1"
    return True
