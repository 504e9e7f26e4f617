"""LIME's weighted Gram Z^T W Z by integer co-occurrence counts of bit-packed masks (docs/theory.md §4).

lime's kernel weight depends on a binary mask only through its shell s, the number of
removed features (`sampling.shell_weights`). So, with Z_s the rows of shell s,

    Z^T W Z = sum_s pi(s) Z_s^T Z_s,   (Z_s^T Z_s)[j, k] = #{rows of shell s keeping j and k},

and every Z_s^T Z_s is a matrix of integer counts. Packing each shell's rows into 64-bit
words (bit r of word (s, k, j) = z_j of the shell's row 64 k + r), a count is a sum of
``popcount(word_j & word_k)``: 64 rows per operation, exact, against one row per
floating-point multiply-add in the float64 matmul. The counts are exact integers and each
is multiplied by pi(s) once, so the result equals the matmul to rounding (~1e-15 relative).

`weighted_gram` packs when that is cheaper than the matmul (n large against the number of
words; `packing_pays`), every shell fits its words and 64-bit integers exist (JAX's x64
mode, which every command turns on); otherwise it is the plain matmul.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int, UInt64

WORD = 64  # rows per packed word
#: One 64-bit AND + popcount + accumulate costs about as much as this many float64
#: multiply-adds of the matmul on CPU (measured at d = 100..200, n = 5000).
POPCOUNT_COST = 5
UNROLL = 8  # shells per loop step (one fused elementwise update of the d x d counts)


def shells(z: Float[Array, "n d"]) -> Int[Array, " n"]:
    """s, the number of removed features of each binary mask (exact: a sum of zeros and ones)."""
    return (z.shape[1] - jnp.sum(z, axis=1)).astype(jnp.int32)


def words_per_shell(n: int, d: int) -> int:
    """Words of 64 rows given to each of the d + 1 shells: a shell holds Binomial(n, 1 / d)
    rows (lime's s ~ Uniform{1..d}), so about mean + 6 standard deviations; a sample that
    overflows (probability < 1e-8 at n = 5000, d = 200) falls back to the matmul."""
    mean = n / max(d, 1)
    return max(1, math.ceil((mean + 6.0 * math.sqrt(mean) + 6.0) / WORD))


def packing_pays(n: int, d: int) -> bool:
    """Whether the packed Gram is cheaper than the matmul: (d + 1) K words cost about
    POPCOUNT_COST multiply-adds each, against n for the matmul; below d = 32 the packing
    itself (a sort and a scatter of the n rows) costs more than the small matmul."""
    return d >= 32 and (d + 1) * words_per_shell(n, d) * POPCOUNT_COST < n


def _shell_order(shell: Int[Array, " n"], n_shells: int) -> Int[Array, " n"]:
    """The stable order of the rows by shell: one sort of ``shell * 2^b + row`` when it fits
    in int32 (a single-key sort is several times faster than `argsort` on CPU)."""
    n = shell.shape[0]
    bits = max(1, (n - 1).bit_length())
    if n_shells << bits >= 2**31:
        return jnp.argsort(shell, stable=True)
    keys = jnp.sort((shell << bits) | jnp.arange(n, dtype=jnp.int32))
    return keys & ((1 << bits) - 1)


def pack(z: Float[Array, "n d"], shell: Int[Array, " n"], words: int) -> tuple[UInt64[Array, "s k d"], Array]:
    """Bit r of ``packed[s, k, j]`` = z_j of the (64 k + r)-th row of shell s (rows in order),
    for s = 0..d; and whether every shell fit its `words` words (else some rows are missing)."""
    n, d = z.shape
    n_shells = d + 1
    order = _shell_order(shell, n_shells)
    sizes = jnp.bincount(shell, length=n_shells)
    start = (jnp.cumsum(sizes) - sizes).astype(jnp.int32)
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32) - start[shell[order]],
                                                 unique_indices=True)
    slot = shell * words + rank // WORD
    bit = (rank % WORD).astype(jnp.uint64)
    rows = z.astype(jnp.uint64) << bit[:, None]
    packed = jnp.zeros((n_shells * words, d), jnp.uint64).at[slot].add(rows, mode="drop")
    return packed.reshape(n_shells, words, d), jnp.max(sizes) <= words * WORD


def _column_blocks(d: int) -> list[tuple[slice, slice]]:
    """The upper-triangular blocks (rows a, columns b >= a) of the symmetric d x d counts, in
    bands of about 64 features: only these are computed (about 2/3 of the work at d = 200)."""
    bands = min(4, max(1, round(d / 64)))
    edges = [round(b * d / bands) for b in range(bands + 1)]
    return [(slice(edges[a], edges[a + 1]), slice(edges[b], edges[b + 1]))
            for a in range(bands) for b in range(a, bands)]


def packed_gram(packed: UInt64[Array, "s k d"], shell_weight: Float[Array, " s"]) -> Float[Array, "d d"]:
    """sum_s pi(s) C_s, C_s[j, k] = sum over the shell's words of popcount(word_j & word_k)
    (exact integers), in the dtype of `shell_weight`."""
    n_shells, words, d = packed.shape
    steps = -(-n_shells // UNROLL)
    pad = steps * UNROLL - n_shells
    packed = jnp.concatenate([packed, jnp.zeros((pad, words, d), packed.dtype)]).reshape(steps, UNROLL, words, d)
    weight = jnp.concatenate([shell_weight, jnp.zeros((pad,), shell_weight.dtype)]).reshape(steps, UNROLL)
    blocks = _column_blocks(d)

    def step(i, grams):
        shell_words, w = packed[i], weight[i]
        out = []
        for (rows, cols), gram in zip(blocks, grams, strict=True):
            for u in range(UNROLL):  # one fused update: UNROLL shells' counts, each scaled once
                count = sum(lax.population_count(shell_words[u, k, rows][:, None] & shell_words[u, k, cols][None, :])
                            .astype(jnp.int32) for k in range(words))
                gram = gram + w[u] * count.astype(gram.dtype)
            out.append(gram)
        return tuple(out)

    init = tuple(jnp.zeros((r.stop - r.start, c.stop - c.start), shell_weight.dtype) for r, c in blocks)
    grams = lax.fori_loop(0, steps, step, init)
    full = jnp.zeros((d, d), shell_weight.dtype)
    for (rows, cols), gram in zip(blocks, grams, strict=True):
        full = full.at[rows, cols].set(gram).at[cols, rows].set(gram.T)
    return full


def matmul_gram(z: Float[Array, "n d"], weights: Float[Array, " n"]) -> Float[Array, "d d"]:
    """Z^T W Z as one matmul (features x samples times samples x features)."""
    return (z.T * weights) @ z


def weighted_gram(
    z: Float[Array, "n d"], shell: Int[Array, " n"], shell_weight: Float[Array, " d1"]
) -> Float[Array, "d d"]:
    """sum_i pi(s_i) z_i z_i^T for binary masks z of shells `shell` (s = 0..d): packed
    integer counts when that pays (`packing_pays`) and every shell fits, else the matmul."""
    n, d = z.shape
    weights = shell_weight[shell].astype(z.dtype)
    if not packing_pays(n, d) or not jax.config.jax_enable_x64:  # 64-bit words need x64
        return matmul_gram(z, weights)
    packed, fits = pack(z, shell, words_per_shell(n, d))
    return lax.cond(fits, lambda: packed_gram(packed, shell_weight.astype(z.dtype)),
                    lambda: matmul_gram(z, weights))

