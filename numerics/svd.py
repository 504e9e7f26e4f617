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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


@jax.custom_batching.sequential_vmap
def singular_values(M: Float[Array, "m n"]) -> Float[Array, " k"]:
    """The singular values of M, largest first."""
    return jnp.linalg.svd(M, compute_uv=False)


@jax.custom_batching.sequential_vmap
def left_singular_vectors(M: Float[Array, "m n"]) -> Float[Array, "m m"]:
    """U of the full SVD M = U diag(sigma) V^T (m x m), columns in the order of sigma."""
    return jnp.linalg.svd(M, full_matrices=True)[0]


@jax.custom_batching.sequential_vmap
def least_squares(M: Float[Array, "m n"], b: Float[Array, " m"]) -> Float[Array, " n"]:
    """The minimum-norm x minimising |M x - b| (``jnp.linalg.lstsq``'s solution)."""
    return jnp.linalg.lstsq(M, b)[0]
