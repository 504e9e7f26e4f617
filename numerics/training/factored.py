"""The model's class logits with its maps folded first, for training (docs/theory.md §1.4).

With the [CLS] query, linear values and the dot scorer, head i sees a token only through
linear functions of its embedding: ``gamma_t = <kappa, e_t> (+ <q, b_k>)`` with
``kappa = W_k^T q``, and ``f_i = W_l (W_v sum_t alpha_t e_t + b_v) (+ b_l)`` as the
attention weights sum to 1. Folding ``kappa`` and pooling the embeddings first costs
2 K d_e multiply-adds per token instead of K (d_att + d_out) d_e for the keys and values of
`numerics.model` (about 30x fewer at the paper's widths): the same function, and with
`jax.grad` the same gradient, up to float rounding. Other specs use `numerics.model.logits`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from jaxtyping import Array, Float, Int

from attnverify.spec import ModelSpec


def foldable(spec: ModelSpec) -> bool:
    """Whether every head's score and read-out are linear in the token's embedding."""
    return spec.query == "cls" and spec.value_nonlinearity == "none" and spec.scorer == "dot"


def factored_logits(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, " C"]:
    """`numerics.model.logits` of one document, computed with W_k^T q folded and the
    attention-weighted embedding pooled before W_v (`foldable` specs only)."""
    e = nm.embed(params, tokens, spec)
    q = nm.queries(params, e, spec)  # (K, d_att), from e_0
    kappa = jnp.einsum("iak,ia->ik", params.W_k, q)
    gamma = jnp.einsum("ik,tk->it", kappa, e)
    if spec.biases:
        gamma = gamma + jnp.einsum("ia,ia->i", q, params.b_k)[:, None]
    if spec.scale_scores:
        gamma = gamma / jnp.sqrt(params.W_k.shape[1])
    pooled = jnp.einsum("it,tk->ik", jax.nn.softmax(gamma, axis=-1), e)  # sum_t alpha_t e_t
    v = jnp.einsum("iok,ik->io", params.W_v, pooled)
    if spec.biases:
        v = v + params.b_v
    heads = jnp.einsum("ico,io->ic", params.W_l, v)
    if spec.biases:
        heads = heads + params.b_l
    return heads.mean(axis=0) if spec.head_aggregation == "mean" else heads.sum(axis=0)


def logits(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, " C"]:
    """The class logits of one document: `factored_logits` when the spec allows it."""
    if foldable(spec):
        return factored_logits(params, tokens, spec)
    return nm.logits(params, nm.embed(params, tokens, spec), spec)
