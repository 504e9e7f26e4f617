"""Singular value decompositions that never reach jaxlib's CPU SVD kernel with a batch.

jaxlib's CPU SVD kernel (LAPACK ``gesdd``) splits a large enough batch of matrices over XLA's
intra-op thread pool and blocks its own pool thread until the pieces are done. When as many such
calls run at once as the pool has threads (on two cores: the two sweep blocks that run side by
side on the two CPU devices), no thread is left to do the pieces and the run hangs at 0 % CPU
(`numerics.known_defects` has the stacks; in jaxlib 0.9.2 the SVD kernels are the only LAPACK
kernels that take the pool). Every sweep applies `jax.vmap` to its claims, which would batch an
SVD inside them. Under `jax.vmap` each function here runs as a loop of single-matrix calls
(`jax.custom_batching.sequential_vmap`), which the kernel does not split: the same LAPACK call on
each matrix as the batched kernel makes, without the pool. Call these, never ``jnp.linalg.svd``
or ``jnp.linalg.lstsq`` (which is an SVD) directly (a test reads the package for them).

LAPACK's SVD with U and V did not return on a matrix holding an infinity (jaxlib 0.9.2: a 3 x 3
``jnp.linalg.svd`` with one ``inf`` was still running when killed at 20 s; with a NaN, or without U
and V, it returns NaN at once). Read-outs near 1e250 overflow a Gram matrix to infinity, and
``related fiber`` hung there past 150 s. A matrix that is not finite is therefore never passed
to LAPACK: the kernel gets zeros and the result is NaN, which the callers report as not finite. A
finite matrix goes through unchanged, so its numbers are bit for bit those of the kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _finite_or_zeros(M: Float[Array, "m n"]) -> tuple[jnp.ndarray, Float[Array, "m n"]]:
    """Whether every entry of M is finite, and M where it is, else zeros (what LAPACK may be given)."""
    finite = jnp.all(jnp.isfinite(M))
    return finite, jnp.where(finite, M, jnp.zeros_like(M))


@jax.custom_batching.sequential_vmap
def singular_values(M: Float[Array, "m n"]) -> Float[Array, " k"]:
    """The singular values of M, largest first (NaN if M is not finite)."""
    finite, M = _finite_or_zeros(M)
    return jnp.where(finite, jnp.linalg.svd(M, compute_uv=False), jnp.nan)


@jax.custom_batching.sequential_vmap
def left_singular_vectors(M: Float[Array, "m n"]) -> Float[Array, "m m"]:
    """U of the full SVD M = U diag(sigma) V^T (m x m), columns in the order of sigma (NaN if M is
    not finite)."""
    finite, M = _finite_or_zeros(M)
    return jnp.where(finite, jnp.linalg.svd(M, full_matrices=True)[0], jnp.nan)


@jax.custom_batching.sequential_vmap
def least_squares(M: Float[Array, "m n"], b: Float[Array, " m"]) -> Float[Array, " n"]:
    """The minimum-norm x minimising |M x - b| (``jnp.linalg.lstsq``'s solution; NaN if M is not
    finite)."""
    finite, M = _finite_or_zeros(M)
    return jnp.where(finite, jnp.linalg.lstsq(M, b)[0], jnp.nan)
