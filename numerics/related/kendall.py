"""Kendall's tau-b with its two-sided p-value, in JAX, as `scipy.stats.kendalltau` computes them.

Jain & Wallace compare importance rankings per instance with `scipy.stats.kendalltau`
(docs/theory.md §8.1). This is the same statistic, jittable and vmappable:

* tau-b = (concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y)), n0 = n(n-1)/2;
* p-value, scipy's ``method='auto'``: exact (the null law of the number of discordant
  pairs, i.e. inversions of a random permutation) when neither input has ties and
  n <= 33 or min(dis, n0 - dis) <= 1; otherwise the normal approximation with scipy's
  tie-corrected variance.

Also Fagin et al.'s top-k Kendall distance K^(p) (Jain & Wallace's secondary metric).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

EXACT_MAX_N = 33  # scipy's threshold for the exact p-value


@functools.lru_cache(maxsize=64)
def inversion_cdf(n: int) -> np.ndarray:
    """P(I <= c) for c = 0..n(n-1)/2, I the number of inversions of a uniform permutation.

    The recursion of scipy's ``_kendall_p_exact`` (Mahonian numbers), normalised at each
    step so that large n cannot overflow.
    """
    total = n * (n - 1) // 2
    mass = np.zeros(total + 1)
    mass[0] = 1.0
    for j in range(2, n + 1):  # inserting element j adds 0..j-1 inversions
        cumulative = np.cumsum(mass)
        shifted = np.concatenate([np.zeros(j), cumulative[:-j]])
        mass = (cumulative - shifted) / j
    return np.cumsum(mass)


def _tie_sums(v: Float[Array, " n"]) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Over the groups of tied values with sizes c: sum c(c-1)/2, c(c-1)(c-2), c(c-1)(2c+5)."""
    count = jnp.sum(v[:, None] == v[None, :], axis=1).astype(jnp.result_type(v.dtype, jnp.float32))
    # Each group of size c is visited c times: divide each element's share by c.
    return (jnp.sum((count - 1) / 2), jnp.sum((count - 1) * (count - 2)),
            jnp.sum((count - 1) * (2 * count + 5)))


def kendall_tau_b(x: Float[Array, " n"], y: Float[Array, " n"]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Kendall's tau-b and the two-sided p-value of scipy.stats.kendalltau (method='auto').

    Returns NaN for both when x or y is constant (as scipy does). n is static.
    """
    n = x.shape[0]
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    upper = jnp.triu(jnp.ones((n, n), bool), k=1)
    sx = jnp.sign(x[:, None] - x[None, :])
    sy = jnp.sign(y[:, None] - y[None, :])
    total = n * (n - 1) / 2
    con_minus_dis = jnp.sum(jnp.where(upper, sx * sy, 0)).astype(dtype)
    dis = jnp.sum(upper & (sx * sy < 0)).astype(dtype)
    xtie, x0, x1 = _tie_sums(x)
    ytie, y0, y1 = _tie_sums(y)
    degenerate = (xtie == total) | (ytie == total)
    tau = con_minus_dis / jnp.sqrt((total - xtie) * (total - ytie))
    tau = jnp.clip(tau, -1.0, 1.0)

    # Exact: P(I <= c) with c = min(concordant, discordant), doubled, capped at 1.
    cdf = jnp.asarray(inversion_cdf(n), dtype)
    c = jnp.minimum(dis, total - dis).astype(jnp.int32)
    p_exact = jnp.clip(2 * cdf[c], 0.0, 1.0)
    # Asymptotic: con - dis is approximately normal with scipy's tie-corrected variance.
    m = n * (n - 1.0)
    var = (m * (2 * n + 5) - x1 - y1) / 18 + 2 * xtie * ytie / m
    if n > 2:
        var = var + x0 * y0 / (9 * m * (n - 2))
    z = con_minus_dis / jnp.sqrt(var)
    p_normal = 2 * jax.scipy.stats.norm.sf(jnp.abs(z))
    no_ties = (xtie == 0) & (ytie == 0)
    use_exact = no_ties & ((n <= EXACT_MAX_N) | (jnp.minimum(dis, total - dis) <= 1))
    p = jnp.where(use_exact, p_exact, p_normal)
    nan = jnp.asarray(jnp.nan, dtype)
    return jnp.where(degenerate, nan, tau), jnp.where(degenerate, nan, p)


def kendall_top_k(x: Float[Array, " n"], y: Float[Array, " n"], k: int, p: float = 0.5) -> jnp.ndarray:
    """Fagin, Kumar & Sivakumar's K^(p) distance between the top-k lists of x and y,
    divided by its maximum k^2 + p k (k - 1) (disjoint lists): 0 same order, 1 disjoint.

    Over the pairs {a, b} of items in either top-k list: penalty 1 if both lists rank
    the pair and disagree, or if only one list holds each (a in one, b in the other);
    when one list holds both and the other holds one, penalty 1 if the other's one is
    the first list's lower-ranked item; p when one list holds both and the other neither.
    """
    n = x.shape[0]
    rank_x = jnp.argsort(jnp.argsort(-x))  # 0 = largest
    rank_y = jnp.argsort(jnp.argsort(-y))
    in_x, in_y = rank_x < k, rank_y < k
    a, b = jnp.triu_indices(n, k=1)
    both_x, both_y = in_x[a] & in_x[b], in_y[a] & in_y[b]
    relevant = (in_x[a] | in_y[a]) & (in_x[b] | in_y[b]) | both_x | both_y
    before_x = rank_x[a] < rank_x[b]
    before_y = rank_y[a] < rank_y[b]
    case1 = both_x & both_y
    penalty1 = before_x != before_y
    # case 2: both in x's list, exactly one in y's (or vice versa): y's "one" is ranked
    # above the other by y; a penalty when x ranked it below.
    case2_x = both_x & (in_y[a] != in_y[b])
    penalty2_x = (in_y[a] & ~before_x) | (in_y[b] & before_x)
    case2_y = both_y & (in_x[a] != in_x[b])
    penalty2_y = (in_x[a] & ~before_y) | (in_x[b] & before_y)
    case3 = (in_x[a] & ~in_y[a] & in_y[b] & ~in_x[b]) | (in_x[b] & ~in_y[b] & in_y[a] & ~in_x[a])
    case4 = (both_x & ~in_y[a] & ~in_y[b]) | (both_y & ~in_x[a] & ~in_x[b])
    unit = (relevant & ((case1 & penalty1) | (case2_x & penalty2_x) | (case2_y & penalty2_y) | case3))
    distance = jnp.sum(unit) + p * jnp.sum(relevant & case4)
    return distance / (k * k + p * k * (k - 1))
