"""The true model in JAX, built from the same `ModelSpec` as the SymPy expression.

Array layout (also the model file's, see `numerics.modelfile`):
``embedding (V, d_e)``, ``W_q, W_k (K, d_att, d_e)``, ``W_v (K, d_out, d_e)``,
``W_l (K, C, d_out)``, optional biases ``b_q, b_k (K, d_att)``, ``b_v (K, d_out)``,
``b_l (K, C)``, and the scorer's parameters ``v_score (K, d_att)`` (additive and deep
scorers) and ``U_score (K, d_att, d_att)`` (deep scorer only). A document is an int array
of T token ids, position 0 being [CLS].
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.export
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from attnverify.spec import ModelSpec

CLS, UNK = 0, 1  # reserved vocabulary indices


class Params(NamedTuple):
    embedding: Float[Array, "V d_e"]
    W_q: Float[Array, "K d_att d_e"]
    W_k: Float[Array, "K d_att d_e"]
    W_v: Float[Array, "K d_out d_e"]
    W_l: Float[Array, "K C d_out"]
    b_q: Float[Array, "K d_att"] | None = None
    b_k: Float[Array, "K d_att"] | None = None
    b_v: Float[Array, "K d_out"] | None = None
    b_l: Float[Array, "K C"] | None = None
    v_score: Float[Array, "K d_att"] | None = None  # additive and deep scorers
    U_score: Float[Array, "K d_att d_att"] | None = None  # deep scorer: [i, b, a]


# A sweep's programs take and return Params; `jax.export` stores them with this name
# (`numerics.stored_programs`).
jax.export.register_namedtuple_serialization(Params, serialized_name="attnverify.Params")


def positional_encoding(T: int, d_e: int, dtype=jnp.float32) -> Float[Array, "T d_e"]:
    """Sinusoidal PE: p_{t,2k} = sin(t / 10000^(2k/d_e)), p_{t,2k+1} = cos(same)."""
    position = jnp.arange(T, dtype=dtype)[:, None]
    pair = jnp.arange(0, d_e, 2, dtype=dtype)
    angle = position / jnp.power(10000.0, pair / d_e)
    pe = jnp.zeros((T, d_e), dtype)
    pe = pe.at[:, 0::2].set(jnp.sin(angle))
    return pe.at[:, 1::2].set(jnp.cos(angle[:, : d_e // 2]))


def embed(params: Params, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, "T d_e"]:
    """e_t = omega_{xi_t} + p_t (the PE only when `spec.positional`)."""
    e = params.embedding[tokens]
    if spec.positional:
        e = e + positional_encoding(tokens.shape[0], e.shape[1], e.dtype)
    return e


def queries(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K d_att"]:
    source = e[0] if spec.query == "cls" else e.mean(axis=0)
    q = jnp.einsum("iak,k->ia", params.W_q, source)
    return q + params.b_q if spec.biases else q


def keys(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K T d_att"]:
    key = jnp.einsum("iak,tk->ita", params.W_k, e)
    return key + params.b_k[:, None, :] if spec.biases else key


def score_function(params: Params, q: Float[Array, "K d_att"], k: Float[Array, "K T d_att"],
                   spec: ModelSpec) -> Float[Array, "K T"]:
    """gamma_t^(i) from one query q^(i) and the keys k_t^(i), by `spec.scorer`:

    * dot (paper): <q^(i), k_t^(i)>, divided by sqrt(d_att) when `spec.scale_scores`;
    * additive (Bahdanau): sum_a v_a^(i) tanh(q_a^(i) + k_{t,a}^(i));
    * deep (MLP): sum_b v_b^(i) tanh(sum_a U_{b,a}^(i) tanh(q_a^(i) + k_{t,a}^(i))).

    `scale_scores` applies to the dot scorer only.
    """
    if spec.scorer == "dot":
        gamma = jnp.einsum("ia,ita->it", q, k)
        return gamma / jnp.sqrt(params.W_k.shape[1]) if spec.scale_scores else gamma
    hidden = jnp.tanh(q[:, None, :] + k)  # (K, T, d_att)
    if spec.scorer == "deep":
        hidden = jnp.tanh(jnp.einsum("iba,ita->itb", params.U_score, hidden))
    return jnp.einsum("ia,ita->it", params.v_score, hidden)


def scores(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K T"]:
    """gamma_t^(i) of the [CLS] (or mean) query against every key (`score_function`)."""
    return score_function(params, queries(params, e, spec), keys(params, e, spec), spec)


def attention(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K T"]:
    """alpha^(i) = softmax over all T positions (stable: jax.nn.softmax subtracts the max)."""
    return jax.nn.softmax(scores(params, e, spec), axis=-1)


def self_attention(
    params: Params, e: Float[Array, "T d_e"], spec: ModelSpec
) -> Float[Array, "K T T"]:
    """Full self-attention (rows: queries W_q e_u). Only the [CLS] row reaches the output."""
    q = jnp.einsum("iak,uk->iua", params.W_q, e)
    if spec.biases:
        q = q + params.b_q[:, None, :]
    k = keys(params, e, spec)
    logits = jax.vmap(lambda q_u: score_function(params, q_u, k, spec), in_axes=1, out_axes=1)(q)
    return jax.nn.softmax(logits, axis=-1)


def values(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K T d_out"]:
    v = jnp.einsum("iok,tk->ito", params.W_v, e)
    if spec.biases:
        v = v + params.b_v[:, None, :]
    return jnp.tanh(v) if spec.value_nonlinearity == "tanh" else v


def readouts(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K T C"]:
    """s_t^(i) = W_l^(i) v_t^(i), one value per class."""
    return jnp.einsum("ico,ito->itc", params.W_l, values(params, e, spec))


def head_outputs(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "K C"]:
    """f_i = sum_t alpha_t^(i) s_t^(i) (+ b_l)."""
    out = jnp.einsum("it,itc->ic", attention(params, e, spec), readouts(params, e, spec))
    return out + params.b_l if spec.biases else out


def logits(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, " C"]:
    heads = head_outputs(params, e, spec)
    return heads.mean(axis=0) if spec.head_aggregation == "mean" else heads.sum(axis=0)


def logit_shift(z: Float[Array, " C"], spec: ModelSpec) -> Float[Array, ""]:
    """Where the SymPy forward's output link puts z^* (a constant that cancels: docs/theory.md §10.3)
    so that exp never overflows: max(0, z) for the sigmoid, the logits' max for the softmax."""
    return jnp.maximum(0.0, z[spec.explained_class]) if spec.output_link == "sigmoid" else jnp.max(z)


def explained_output(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, ""]:
    """The explained scalar: class logit (paper), its sigmoid, or the softmax probability."""
    return output_from_logits(logits(params, e, spec), spec)


def output_from_logits(z: Float[Array, " C"], spec: ModelSpec) -> Float[Array, ""]:
    """The spec's output link applied to the logits z: z_c, sigma(z_c) or softmax(z)_c."""
    if spec.output_link == "logit":
        return z[spec.explained_class]
    if spec.output_link == "sigmoid":
        return sigmoid(z[spec.explained_class])
    return softmax_probability(z, spec.explained_class)


@jax.custom_jvp
def sigmoid(z: jnp.ndarray) -> jnp.ndarray:
    """sigma(z), with the derivative sigma(z) sigma(-z). JAX's sigma (1 - sigma) rounds 1 - sigma to a
    multiple of 2^-53 near 1: at z = 35 the gradient was 5.6-8.5 % off, at z = 90 it was 0 (the true
    one 1e-37), without a NaN."""
    return jax.nn.sigmoid(z)


@sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (z,), (tangent,) = primals, tangents
    return jax.nn.sigmoid(z), jax.nn.sigmoid(z) * jax.nn.sigmoid(-z) * tangent


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def softmax_probability(z: jnp.ndarray, c: int) -> jnp.ndarray:
    """softmax(z)_c, with the derivative p_c sum_{c' != c} p_{c'} (dz_c - dz_{c'}): JAX's
    p_c (dz_c - sum p dz) cancels as p_c nears 1 (up to 1.2 % off an entry at z_c - z_other = 27). The others' weights
    are summed without p_c, so that reverse mode does not bring the cancellation back."""
    return jax.nn.softmax(z)[c]


@softmax_probability.defjvp
def _softmax_probability_jvp(c, primals, tangents):
    (z,), (tangent,) = primals, tangents
    p = jax.nn.softmax(z)
    others = p.at[c].set(0)
    return p[c], p[c] * (tangent[c] * jnp.sum(others) - jnp.sum(others * tangent))


def output_gradient(params: Params, e: Float[Array, "T d_e"], spec: ModelSpec) -> Float[Array, "T d_e"]:
    """nabla_{e_t} f for every position t, by `jax.grad` of the true model."""
    return jax.grad(explained_output, argnums=1)(params, e, spec)
