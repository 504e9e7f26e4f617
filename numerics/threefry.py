"""JAX's default PRNG, Threefry-2x32, with its 20 rounds unrolled, as a `jax.random` key type.

`jax.random`'s default keys hash with Threefry-2x32 (Salmon et al., SC 2011). On CPU, JAX
lowers that hash as a 5-step loop, which XLA cannot fuse with the code that turns bits
into numbers: every step writes its two arrays to memory. The same hash written out as 20
plain rounds fuses into one pass, so a sweep's random draws cost about half as much, and
the numbers are the same bit for bit (uint32 arithmetic is exact): `unrolled_key(key)`
gives a key that `jax.random.uniform`, `normal`, `randint`, `split` and `fold_in` use
exactly as they use the default key, only through this implementation
(`jax.extend.random.define_prng_impl`, JAX's extension point for key types).

The bits follow JAX's "partitionable" Threefry scheme (`jax_threefry_partitionable`, on
by default since JAX 0.5): element i of a draw hashes the 64-bit counter i. Under the
older scheme `unrolled_key` returns the default key unchanged, so the draws never differ
from `jax.random`'s.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.random import define_prng_impl, threefry_prng_impl
from jaxtyping import Array, PRNGKeyArray, UInt32

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32's rotation constants
PARITY = np.uint32(0x1BD11BDA)  # Threefish's key-schedule parity constant


def threefry2x32(k1, k2, x1, x2, rotations=ROTATIONS) -> tuple[UInt32[Array, " ..."], UInt32[Array, " ..."]]:
    """Threefry-2x32 (20 rounds) of the counter pairs (x1, x2) under the key (k1, k2), unrolled."""
    ks = (k1, k2, k1 ^ k2 ^ PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for group in range(5):
        for r in rotations[group % 2]:
            x1 = x1 + x2
            x2 = x1 ^ ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r)))
        x1 = x1 + ks[(group + 1) % 3]
        x2 = x2 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x1, x2


def _counters(shape: tuple[int, ...]) -> tuple[UInt32[Array, " ..."], UInt32[Array, " ..."]]:
    """The 64-bit row-major index of every element of `shape`, as (high, low) uint32 words."""
    size = math.prod(shape)
    if size > 2**32:
        raise NotImplementedError("draws of more than 2**32 numbers from one key")
    low = lax.iota(np.uint32, size).reshape(shape)
    return jnp.zeros(shape, np.uint32), low


def _random_bits(key: UInt32[Array, " 2"], bit_width: int, shape: tuple[int, ...]) -> Array:
    bits1, bits2 = threefry2x32(key[0], key[1], *_counters(shape))
    if bit_width == 64:
        return (bits1.astype(np.uint64) << np.uint64(32)) | bits2.astype(np.uint64)
    if bit_width == 32:
        return bits1 ^ bits2
    return (bits1 ^ bits2).astype(np.dtype(f"uint{bit_width}"))


def _split(key: UInt32[Array, " 2"], shape: tuple[int, ...]) -> UInt32[Array, "... 2"]:
    return jnp.stack(threefry2x32(key[0], key[1], *_counters(shape)), axis=-1)


def _fold_in(key: UInt32[Array, " 2"], data) -> UInt32[Array, " 2"]:
    data = jnp.asarray(data, np.uint32)
    return jnp.stack(threefry2x32(key[0], key[1], jnp.zeros_like(data), data))


UNROLLED = define_prng_impl(
    key_shape=(2,), seed=threefry_prng_impl.seed, split=_split, random_bits=_random_bits,
    fold_in=_fold_in, name="threefry2x32_unrolled", tag="fry_u",
)


def unrolled_key(key: PRNGKeyArray) -> PRNGKeyArray:
    """`key` (a raw ``uint32[2]`` key or a typed default key) as a key of the unrolled
    implementation; `key` itself under the older, non-partitionable bits or another PRNG."""
    if not jax.config.jax_threefry_partitionable:
        return key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != threefry_prng_impl.name:
            return key
        key = jax.random.key_data(key)
    return jax.random.wrap_key_data(key, impl=UNROLLED)
