"""LIME's neighbourhood for text: the masks z and their kernel weights (docs/theory.md §4).

Row 0 is the original document (z = 1). Every other row draws s ~ Uniform{1..d}, then a
uniform s-subset of features to remove, by selection sampling: O(d) per row and no sort at
all (lime itself draws a permutation per row). The weight is lime's ``sqrt(exp(-D^2 / w^2))``
with ``D = 100 * cosine distance`` to the all-ones vector and ``w = 100 nu``; it depends on a
binary mask only through s, its number of removed features (`shell_weights`: one per shell).
The random numbers are `jax.random`'s, hashed by the unrolled Threefry (`numerics.threefry`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from attnverify.numerics.threefry import unrolled_key
from jaxtyping import Array, Float, PRNGKeyArray


@functools.partial(jax.jit, static_argnames=("n", "d", "include_original", "dtype"))
def sample_masks(
    key: PRNGKeyArray, n: int, d: int, *, include_original: bool = True, dtype=jnp.float64
) -> Float[Array, "n d"]:
    """n binary masks over d features (1 = kept). With `include_original`, row 0 is all ones
    (as in `lime`); without it, every row is a random draw (for Monte-Carlo limits).

    Each row draws s ~ Uniform{1..d}, then removes a uniform s-subset by selection sampling
    (Knuth's Algorithm S): feature j is removed with probability (still to remove) / (d - j),
    which yields every s-subset with probability 1 / binomial(d, s). One scan over the d
    features, vectorised over rows: O(n d), no sort.
    """
    draws = n - 1 if include_original else n
    key_size, key_subset = jax.random.split(unrolled_key(key))
    removed = jax.random.randint(key_size, (draws,), 1, d + 1)
    uniform = jax.random.uniform(key_subset, (d, draws), dtype=jnp.result_type(float))

    def step(remaining, feature):
        j, u = feature
        take = u * (d - j) < remaining  # P = remaining / (d - j)
        return remaining - take, take

    _, taken = jax.lax.scan(step, removed, (jnp.arange(d), uniform))
    masks = jnp.logical_not(taken).T.astype(dtype)
    if include_original:
        masks = jnp.concatenate([jnp.ones((1, d), dtype), masks])
    return masks


def _kernel(kept: Array, squared_norm: Array, d: int, nu, xp=jnp) -> Array:
    """lime's kernel of masks with `kept` ones and squared norm `squared_norm` (d features):
    D = 100 * cosine distance to the all-ones vector (1 for the all-zero mask, sklearn's
    convention: a zero vector stays unnormalised), pi = exp(-D^2 / (2 w^2)), w = 100 nu. `xp`:
    the array module (`jax.numpy`, or `numpy` for a check on the host before any compilation)."""
    norm = xp.sqrt(squared_norm) * xp.sqrt(xp.asarray(d, kept.dtype))
    similarity = xp.where(kept > 0, kept / xp.where(kept > 0, norm, 1.0), 0.0)
    distance = 100.0 * (1.0 - similarity)
    width = 100.0 * xp.asarray(nu, kept.dtype)
    return xp.exp(-(distance**2) / (2.0 * width**2))


def cosine_distance(z: Float[Array, "n d"]) -> Float[Array, " n"]:
    """Cosine distance of each row to the all-ones vector; 1 for the all-zero row (sklearn's
    convention: a zero vector stays unnormalised)."""
    d = z.shape[-1]
    kept = jnp.sum(z, axis=-1)
    norm = jnp.sqrt(jnp.sum(z * z, axis=-1)) * jnp.sqrt(jnp.asarray(d, z.dtype))
    similarity = jnp.where(kept > 0, kept / jnp.where(kept > 0, norm, 1.0), 0.0)
    return 1.0 - similarity


def kernel_weights(z: Float[Array, "n d"], nu: float) -> Float[Array, " n"]:
    """pi = exp(-D^2 / (2 w^2)), D = 100 * cosine distance, w = 100 nu (nu = inf: all ones)."""
    return _kernel(jnp.sum(z, axis=-1), jnp.sum(z * z, axis=-1), z.shape[-1], nu)


def shell_weights(d: int, nu: float, dtype=jnp.float64, xp=jnp) -> Float[Array, " d1"]:
    """pi(s), s = 0..d: the kernel weight of every binary mask with s of its d features removed,
    bit for bit the `kernel_weights` of such a mask (its sum and squared norm are both d - s).
    With ``xp=numpy`` the same formula runs in NumPy (no compilation)."""
    kept = xp.arange(d, -1, -1).astype(dtype)
    return _kernel(kept, kept, d, nu, xp)


def subset_probability(removed: Float[Array, " m"], d: int) -> Float[Array, " m"]:
    """P(z) of one mask with `removed` features removed: 1 / (d * binomial(d, s)) for s >= 1,
    0 for s = 0 (the original row has probability 0 in the large-sample limit). In the dtype of
    `removed` when it is floating (a float32 sweep rounds in float32), else in float64."""
    s = jnp.asarray(removed)
    s = s if jnp.issubdtype(s.dtype, jnp.floating) else s.astype(jnp.result_type(float))
    log_binomial = (
        jax.scipy.special.gammaln(d + 1.0) - jax.scipy.special.gammaln(s + 1.0)
        - jax.scipy.special.gammaln(d - s + 1.0)
    )
    return jnp.where(s > 0, jnp.exp(-log_binomial) / d, 0.0)
