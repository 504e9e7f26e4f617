"""Adversarial attention (Jain & Wallace 2019; docs/theory.md §8.1): their optimiser and the exact optimum.

One head's attention alpha moves, the others stay fixed. With a binary model the output
p = softmax(z)[c] = sigma(z_c - z_other) is sigma of an affine function of alpha, so the
feasible set {alpha in simplex : |p(alpha) - p_hat| <= eps} is the simplex cut by a slab
L <= alpha^T s <= U (s: the head's read-out difference). JSD(., alpha_hat) is convex, so
its maximum over that polytope is at a vertex: a simplex vertex e_t inside the slab, or a
point of an edge [e_a, e_b] on a face of the slab. `exact_max_jsd` enumerates them all.

`jw_optimiser` is J&W's search: k = 5 candidates parameterised by log alpha (softmax-normalised,
started at log(1/T) + 3 N(0, 1)), Adam (amsgrad, lr 0.01) for 500 steps on
-sum_i JSD(alpha_i, alpha_hat) + 500 sum_i ReLU(|dp_i| - 0.01) - 1/(k(k-1)) sum_{i<j} JSD(alpha_i, alpha_j)
(docs/theory.md §8.1's objective; logs floored at 1e-10 as in their code), then selected at eps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics.related.jain_wallace import jsd, logits_from, probability
from jaxtyping import Array, Float, PRNGKeyArray

from attnverify.errors import InputError
from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

optax = lazy_module("optax")  # loaded on first use: `attnverify.lazy`

#: J&W's code defaults.
CANDIDATES, STEPS, LEARNING_RATE, HINGE_EPSILON, HINGE_WEIGHT, LOG_FLOOR = 5, 500, 0.01, 0.01, 500.0, 1e-10


def check_epsilon(epsilon) -> None:
    if isinstance(epsilon, (int, float)) and not epsilon > 0:
        raise InputError(f"adversarial attention: epsilon must be > 0, got {epsilon}")


def check_binary(spec: ModelSpec) -> None:
    if spec.classes != 2:
        raise InputError(f"adversarial attention needs a binary model (classes=2), got classes={spec.classes}")


class Slab(NamedTuple):
    """The head's attention alpha_hat, read-out difference s, and the output p(alpha) =
    sigma(offset + weight * alpha^T s), with p_hat = p(alpha_hat)."""

    alpha_hat: Float[Array, " T"]
    s: Float[Array, " T"]
    offset: Float[Array, ""]
    weight: float
    p_hat: Float[Array, ""]

    def probability(self, alpha: Float[Array, "... T"]) -> Float[Array, ...]:
        return jax.nn.sigmoid(self.offset + self.weight * alpha @ self.s)

    def bounds(self, epsilon) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """L, U with |p(alpha) - p_hat| <= eps iff L <= alpha^T s <= U (+-inf when clipped)."""
        low, high = self.p_hat - epsilon, self.p_hat + epsilon
        logit_low = jnp.where(low > 0, jnp.log(low) - jnp.log1p(-low), -jnp.inf)
        logit_high = jnp.where(high < 1, jnp.log(high) - jnp.log1p(-high), jnp.inf)
        return (logit_low - self.offset) / self.weight, (logit_high - self.offset) / self.weight


def head_slab(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec, head: int = 0) -> Slab:
    """The affine dependence of the binary output on head `head`'s attention."""
    check_binary(spec)
    alpha = nm.attention(params, e, spec)
    s = nm.readouts(params, e, spec)
    c = spec.explained_class
    diff = s[head, :, c] - s[head, :, 1 - c]
    weight = 1.0 / spec.heads if spec.head_aggregation == "mean" else 1.0
    z = logits_from(params, spec, alpha, s)
    offset = (z[c] - z[1 - c]) - weight * alpha[head] @ diff
    return Slab(alpha[head], diff, offset, weight, probability(z, spec))


class ExactOptimum(NamedTuple):
    jsd: Float[Array, ""]  # the eps-max JSD
    vertex: Float[Array, " T"]  # an attention vector attaining it


def exact_max_jsd(slab: Slab, epsilon) -> ExactOptimum:
    """max JSD(alpha, alpha_hat) over {alpha in simplex : |p(alpha) - p_hat| <= eps}, by
    enumerating the O(T^2) vertices of the polytope (alpha_hat itself is feasible)."""
    check_epsilon(epsilon)
    low, high = slab.bounds(epsilon)
    T = slab.s.shape[0]
    eye = jnp.eye(T, dtype=slab.s.dtype)
    # Simplex vertices inside the slab.
    inside = (slab.s >= low) & (slab.s <= high)
    # Edge points lambda e_a + (1 - lambda) e_b on a face alpha^T s = c, c in {L, U}.
    a, b = jnp.triu_indices(T, k=1)
    faces = jnp.stack([low, high])
    gap = slab.s[a] - slab.s[b]
    safe_gap = jnp.where(gap == 0, 1.0, gap)
    lam = (faces[:, None] - slab.s[b][None, :]) / safe_gap[None, :]  # (2, pairs)
    on_edge = jnp.isfinite(faces)[:, None] & (gap != 0)[None, :] & (lam >= 0) & (lam <= 1)
    lam = jnp.where(on_edge, lam, 0.0)
    edge_points = lam[..., None] * eye[a][None] + (1 - lam[..., None]) * eye[b][None]
    points = jnp.concatenate([eye, edge_points.reshape(-1, T), slab.alpha_hat[None]], axis=0)
    valid = jnp.concatenate([inside, on_edge.reshape(-1), jnp.array([True])])
    values = jnp.where(valid, jsd(points, slab.alpha_hat[None]), -jnp.inf)
    best = jnp.argmax(values)
    return ExactOptimum(values[best], points[best])


class Search(NamedTuple):
    candidates: Float[Array, "k T"]  # the optimiser's attention vectors
    jsd: Float[Array, " k"]  # JSD(candidate, alpha_hat), exact (no floor)
    delta_p: Float[Array, " k"]  # |p(candidate) - p_hat|, by the true model


def jw_optimiser(key: PRNGKeyArray, params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec,
                 head: int = 0, *, k: int = CANDIDATES, steps: int = STEPS, learning_rate: float = LEARNING_RATE,
                 hinge_epsilon: float = HINGE_EPSILON) -> Search:
    """J&W's adversarial search for head `head` (the other heads fixed)."""
    check_binary(spec)
    check_epsilon(hinge_epsilon)
    alpha = nm.attention(params, e, spec)
    s = nm.readouts(params, e, spec)
    alpha_hat = alpha[head]
    T = alpha_hat.shape[0]

    def p_of(candidate):  # the true model's output with head `head` replaced
        return probability(logits_from(params, spec, alpha.at[head].set(candidate), s), spec)

    p_hat = p_of(alpha_hat)
    pairs = jnp.triu_indices(k, k=1)

    def loss(theta):
        candidates = jax.nn.softmax(theta, axis=-1)
        divergence = jsd(candidates, alpha_hat[None], floor=LOG_FLOOR)
        hinge = jax.nn.relu(jnp.abs(jax.vmap(p_of)(candidates) - p_hat) - hinge_epsilon)
        diversity = jsd(candidates[pairs[0]], candidates[pairs[1]], floor=LOG_FLOOR)
        return -divergence.sum() + HINGE_WEIGHT * hinge.sum() - diversity.sum() / (k * (k - 1))

    theta = jnp.log(1.0 / T) + 3.0 * jax.random.normal(key, (k, T), alpha_hat.dtype)
    optimiser = optax.amsgrad(learning_rate)

    def step(carry, _):
        theta, state = carry
        updates, state = optimiser.update(jax.grad(loss)(theta), state, theta)
        return (optax.apply_updates(theta, updates), state), None

    (theta, _), _ = jax.lax.scan(step, (theta, optimiser.init(theta)), None, length=steps)
    candidates = jax.nn.softmax(theta, axis=-1)
    return Search(candidates, jsd(candidates, alpha_hat[None]),
                  jnp.abs(jax.vmap(p_of)(candidates) - p_hat))


def selected_max_jsd(search: Search, epsilon) -> Float[Array, ""]:
    """J&W's eps-max JSD: the largest JSD among candidates with |dp| <= eps (0 if none)."""
    check_epsilon(epsilon)
    return jnp.max(jnp.where(search.delta_p <= epsilon, search.jsd, 0.0))
