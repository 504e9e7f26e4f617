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
    return _bits(*threefry2x32(key[0], key[1], *_counters(shape)), bit_width)


def _bits(bits1: UInt32[Array, " ..."], bits2: UInt32[Array, " ..."], bit_width: int) -> Array:
    """One element's `bit_width` random bits from the two words its counter hashes to."""
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


def normal_rows(key: PRNGKeyArray, rows: Array, width: int, dtype) -> Array:
    """Rows `rows` of ``jax.random.normal(unrolled_key(key), (n, width), dtype)``, bit for bit
    and for any table height n above ``max(rows)``, computing only those rows.

    Element (i, j) of the table hashes the counter ``i * width + j`` (the partitionable
    scheme), so a row's bits do not depend on the others. They become a number as in
    `jax.random.normal`: the top mantissa bits under the exponent of 1.0 give a float in
    [1, 2); minus one and scaled onto [nextafter(-1, 0), 1) it is a uniform u, and the normal
    is sqrt(2) erf^-1(u). `tests/test_threefry.py` compares with `jax.random.normal` in both
    dtypes, so a JAX that changed that recipe would be caught."""
    if not jax.config.jax_threefry_partitionable:
        raise NotImplementedError("row draws need jax_threefry_partitionable (JAX's default since 0.5)")
    dtype = np.dtype(dtype)
    finfo = jnp.finfo(dtype)
    if finfo.bits not in (32, 64):
        raise TypeError(f"normal_rows draws float32 or float64, not {dtype}")
    data = jax.random.key_data(unrolled_key(key))
    counters = jnp.asarray(rows, np.uint32)[..., None] * np.uint32(width) + lax.iota(np.uint32, width)
    bits = _bits(*threefry2x32(data[0], data[1], jnp.zeros_like(counters), counters), finfo.bits)
    unsigned = bits.dtype
    mantissa = lax.shift_right_logical(bits, jnp.asarray(finfo.bits - finfo.nmant, unsigned))
    one_to_two = lax.bitcast_convert_type(mantissa | jnp.asarray(np.array(1.0, dtype).view(unsigned)), dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    uniform = lax.max(jnp.asarray(low), (one_to_two - jnp.asarray(1.0, dtype)) * (np.array(1.0, dtype) - low) + low)
    return lax.mul(jnp.asarray(np.sqrt(2), dtype), lax.erf_inv(uniform))


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
