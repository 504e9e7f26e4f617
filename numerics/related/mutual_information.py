"""Wen et al. (2022), measured (docs/theory.md §8.5): mutual information, near ties, Gumbel-softmax.

* Plug-in mutual information between a discrete variable and the prediction, with the
  Miller-Madow correction (each plug-in entropy + (bins with mass - 1) / 2N); and the
  exact MI of a finite joint law, for documents enumerated exhaustively.
  With an injective embedding I(e_t; y) = I(xi_t; y), so token ids stand for hidden states.
* The near-tie test: per document, do pairs of positions ordered by attention agree with
  their order by |leave-one-out|, separately for near ties |alpha_a - alpha_b| < delta?
* Gumbel: hard attention argmax(gamma + g) (Gumbel-max), how often each position wins against
  its law (an exact binomial test), and the Gumbel-softmax sample softmax((gamma + g) / tau),
  with its entropy.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, ndtri
from jaxtyping import Array, Float, Int, PRNGKeyArray

from attnverify.errors import InputError

TEMPERATURES = (0.1, 0.5, 1.0, 2.0)


# -- mutual information ----------------------------------------------------------------------
def _entropy(p: Float[Array, ...]) -> Float[Array, ""]:
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def exact_mi(joint: Float[Array, "X Y"]) -> Float[Array, ""]:
    """I(X; Y) in nats of a joint probability table."""
    joint = joint / joint.sum()
    return _entropy(joint.sum(axis=1)) + _entropy(joint.sum(axis=0)) - _entropy(joint)


def counts(x: Int[Array, " N"], y: Int[Array, " N"], nx: int, ny: int) -> Float[Array, "nx ny"]:
    """The contingency table of two integer samples with values in 0..nx-1, 0..ny-1."""
    return jax.nn.one_hot(x, nx).T @ jax.nn.one_hot(y, ny)


def plugin_mi(table: Float[Array, "X Y"], *, miller_madow: bool = True) -> Float[Array, ""]:
    """The plug-in MI of a contingency table; Miller-Madow corrects each entropy by
    (number of nonzero bins - 1) / (2N), removing the O(1/N) bias."""
    n = table.sum()
    mi = exact_mi(table)
    if not miller_madow:
        return mi
    nonzero = lambda t: jnp.sum(t > 0) - 1  # noqa: E731
    return mi + (nonzero(table.sum(axis=1)) + nonzero(table.sum(axis=0)) - nonzero(table)) / (2 * n)


def enumerate_documents(words: list[int], T: int) -> np.ndarray:
    """Every document [CLS] + (T - 1) words from `words`: len(words)^(T-1) rows."""
    if T < 2:
        raise InputError(f"need T >= 2 positions, got T={T}")
    body = np.array(list(itertools.product(words, repeat=T - 1)), dtype=np.int32)
    return np.concatenate([np.zeros((body.shape[0], 1), np.int32), body], axis=1)


def position_mi(tokens: Int[Array, "N T"], y: Int[Array, " N"], V: int, C: int, *,
                exact: bool = False) -> Float[Array, " T-1"]:
    """I(xi_t; y) for t = 1..T-1: exact for an exhaustive, uniformly weighted list of
    documents; otherwise plug-in with Miller-Madow."""
    def one(column):
        table = counts(column, y, V, C)
        return exact_mi(table) if exact else plugin_mi(table)

    return jax.vmap(one, in_axes=1)(tokens[:, 1:])


# -- near ties -------------------------------------------------------------------------------
def pair_agreement(alpha: Float[Array, " n"], importance: Float[Array, " n"], delta
                   ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Over pairs a < b: (agreeing near ties, near ties, agreeing others, others), where a
    pair agrees when attention and importance order it the same way, and is a near tie
    when |alpha_a - alpha_b| < delta. Pairs tied in importance are left out."""
    a, b = jnp.triu_indices(alpha.shape[0], k=1)
    d_alpha, d_imp = alpha[a] - alpha[b], importance[a] - importance[b]
    counted = d_imp != 0
    agree = counted & (jnp.sign(d_alpha) == jnp.sign(d_imp))
    near = counted & (jnp.abs(d_alpha) < delta)
    far = counted & ~near
    return jnp.sum(agree & near), jnp.sum(near), jnp.sum(agree & far), jnp.sum(far)


# -- Gumbel ------------------------------------------------------------------------------------
def check_temperature(tau, dtype=jnp.float64) -> None:
    """A temperature the logits can be divided by in `dtype`: > 0, and not below the smallest normal
    number, since XLA on CPU computes with subnormal numbers flushed to 0 (tau = 5e-324 gave 0 / 0)."""
    if not isinstance(tau, (int, float)):
        return  # traced: checked where it is a number
    if not tau > 0:
        raise InputError(f"Gumbel-softmax: temperature tau must be > 0, got {tau}")
    tiny = float(jnp.finfo(dtype).tiny)
    if tau < tiny:
        raise InputError(f"Gumbel-softmax: temperature tau must be at least {tiny:g}, the smallest normal "
                         f"{jnp.dtype(dtype).name} (XLA computes smaller numbers as 0), got {tau}")


def gumbel_noise(key: PRNGKeyArray, n: int, T: int, dtype=jnp.float64) -> Float[Array, "n T"]:
    return jax.random.gumbel(key, (n, T), dtype)


def hard_attention_counts(gamma: Float[Array, " T"], noise: Float[Array, "n T"]) -> Float[Array, " T"]:
    """How often each t is argmax_t (gamma_t + g_t) over the n samples: whole numbers, exact in
    gamma's dtype (n <= 2^24 in float32)."""
    winners = jnp.argmax(gamma[None] + noise, axis=1)
    return jax.nn.one_hot(winners, gamma.shape[0], dtype=gamma.dtype).sum(axis=0)


def hard_attention_frequencies(gamma: Float[Array, " T"], noise: Float[Array, "n T"]) -> Float[Array, " T"]:
    """Empirical law of argmax_t (gamma_t + g_t) (Gumbel-max: it should be softmax(gamma))."""
    return hard_attention_counts(gamma, noise) / noise.shape[0]


def binomial_z(count: Float[Array, ...], n: int, p: Float[Array, ...]) -> Float[Array, ...]:
    """The exact binomial test of `count` successes in `n` trials of probability `p`, on the
    normal scale: z = Phi^-1(1 - q) >= 0, with q the smaller of the tails P(X >= count) and
    P(X <= count) (regularised incomplete beta functions), 0 where q >= 1/2. For any `p`,
    P(z > c) <= 2 Phi(-c): the tails are exact, so a rare event is not c standard errors away
    where n p is small (count 1 at n p = 0.0095 is z = 2.35, where (count - n p) / sd is 10.2)."""
    count, p = jnp.asarray(count), jnp.asarray(p, jnp.result_type(count))
    upper = jnp.where(count > 0, betainc(jnp.maximum(count, 1), n - count + 1, p), 1.0)
    lower = jnp.where(count < n, betainc(jnp.maximum(n - count, 1), count + 1, 1 - p), 1.0)
    return jnp.maximum(-ndtri(jnp.minimum(jnp.minimum(upper, lower), 0.5)), 0.0)


def gumbel_softmax(gamma: Float[Array, " T"], noise: Float[Array, "n T"], tau) -> Float[Array, "n T"]:
    """Gumbel-softmax samples softmax((gamma + g) / tau)."""
    return jax.nn.softmax(gumbel_logits(gamma, noise, tau), axis=1)


def gumbel_logits(gamma: Float[Array, " T"], noise: Float[Array, "n T"], tau) -> Float[Array, "n T"]:
    """The logits (gamma + g) / tau of Gumbel-softmax samples (their entropy: `softmax_entropy`), each
    sample shifted by its largest logit: (gamma + g - max_t (gamma_t + g_t)) / tau. The shift leaves
    the softmax unchanged, and the largest logit is then 0 at any tau > 0. Unshifted, at tau = 3e-308
    every |gamma_t + g_t| > 5.4 overflowed to inf and the softmax was inf - inf = NaN; shifted, the
    logits are 0 and -inf there, the one-hot limit tau -> 0+ (entropy 0)."""
    perturbed = gamma[None] + noise
    check_temperature(tau, perturbed.dtype)
    return (perturbed - jnp.max(perturbed, axis=1, keepdims=True)) / tau


def mean_entropy(samples: Float[Array, "n T"]) -> Float[Array, ""]:
    """The mean per-sample entropy (nats)."""
    return jnp.mean(jax.vmap(_entropy)(samples))


def softmax_entropy(logits: Float[Array, "... T"]) -> Float[Array, ...]:
    """The entropy (nats) of softmax(logits) over the last axis, from the logits: with m their max,
    H = sum_t alpha_t (m - gamma_t) + log1p(sum_{t != argmax} exp(gamma_t - m)). From the
    probabilities, the top term -alpha log alpha ~ delta is lost once 1 - alpha nears 2^-53: at
    1 - max alpha = 2.7e-16 the entropy was 0.5 % off, at 5.4e-19 2.3 % (no NaN)."""
    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
    top = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=bool)
    rest = jnp.sum(jnp.where(top, 0.0, jnp.exp(shifted)), axis=-1)
    alpha = jax.nn.softmax(logits, axis=-1)
    return jnp.sum(jnp.where(alpha > 0, alpha * -shifted, 0.0), axis=-1) + jnp.log1p(rest)  # a -inf logit: 0
