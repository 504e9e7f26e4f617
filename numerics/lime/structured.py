"""The paper model on perturbed documents in O(K T) per document (docs/theory.md §1.3-1.4).

With a constant query (``query="cls"``), linear values and the dot scorer, a token w at
position t enters head i through two scalars that each split into a word and a position part:
``gamma = a(w) + b(t)`` and ``s = c(w) + d(t)`` (one s per class). `tables` precomputes
a, c for the whole vocabulary and b, d for the T positions; `output` then evaluates any
token array by gathers and a stable softmax, with no d_e-dimensional work. Tests and the
``lime.structured_equals_model`` claim prove it equal to `numerics.model` to rounding.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from jaxtyping import Array, Float, Int

from attnverify.spec import ModelSpec


class Tables(NamedTuple):
    word_score: Float[Array, "V K"]  # a^(i)(w) = <kappa^(i), omega_w>
    word_readout: Float[Array, "V K C"]  # c^(i)(w) = <u^(i), omega_w>, for the classes the link needs
    position_score: Float[Array, "T K"]  # b^(i)(t) = <kappa^(i), p_t> (+ key-bias term)
    position_readout: Float[Array, "T K C"]  # d^(i)(t) = <u^(i), p_t> (+ value-bias term)
    head_bias: Float[Array, "K C"]  # b_l, or 0
    word_weight: Float[Array, "V K"]  # exp(a - max a): exp(gamma) = word_weight * position_weight
    position_weight: Float[Array, "T K"]  # exp(b - max b)
    word_weighted_readout: Float[Array, "V K C"]  # word_weight * word_readout


def unsupported(spec: ModelSpec) -> str | None:
    """Why the word + position split does not hold for `spec` (None when it does)."""
    if spec.query != "cls":
        return "query='mean' depends on every token, so the query is not constant"
    if spec.value_nonlinearity != "none":
        return "tanh values do not split into a word part plus a position part"
    if spec.scorer != "dot":
        return f"the {spec.scorer} scorer's tanh(q + k_t) does not split into a word part plus a position part"
    return None


def classes(spec: ModelSpec) -> list[int]:
    """The classes whose read-outs the output link needs: all for softmax, else the explained one."""
    return list(range(spec.classes)) if spec.output_link == "softmax" else [spec.explained_class]


@functools.partial(jax.jit, static_argnames=("spec", "T"))
def tables(params: nm.Params, spec: ModelSpec, T: int) -> Tables:
    """The word and position tables of §1.4, from the model's own query and maps."""
    dtype = params.embedding.dtype
    cls_embedding = nm.embed(params, jnp.zeros((T,), jnp.int32), spec)  # only row 0 is used
    q = nm.queries(params, cls_embedding, spec)  # (K, d_att), constant for query="cls"
    kappa = jnp.einsum("iak,ia->ik", params.W_k, q)  # W_k^T q
    W_l = params.W_l[:, classes(spec), :]
    u = jnp.einsum("iok,ico->ick", params.W_v, W_l)  # W_v^T W_l^T, per class
    pe = (
        nm.positional_encoding(T, params.embedding.shape[1], dtype)
        if spec.positional
        else jnp.zeros((T, params.embedding.shape[1]), dtype)
    )
    score_bias = jnp.zeros((kappa.shape[0],), dtype)
    readout_bias = jnp.zeros(u.shape[:2], dtype)
    head_bias = jnp.zeros(u.shape[:2], dtype)
    if spec.biases:
        score_bias = jnp.einsum("ia,ia->i", q, params.b_k)
        readout_bias = jnp.einsum("ico,io->ic", W_l, params.b_v)
        head_bias = params.b_l[:, classes(spec)]
    scale = 1.0 / jnp.sqrt(params.W_k.shape[1]) if spec.scale_scores else 1.0
    word_score = scale * params.embedding @ kappa.T
    position_score = scale * (pe @ kappa.T + score_bias)
    word_readout = jnp.einsum("vk,ick->vic", params.embedding, u)
    word_weight = jnp.exp(word_score - word_score.max(axis=0))
    return Tables(
        word_score=word_score,
        word_readout=word_readout,
        position_score=position_score,
        position_readout=jnp.einsum("tk,ick->tic", pe, u) + readout_bias,
        head_bias=head_bias,
        word_weight=word_weight,
        position_weight=jnp.exp(position_score - position_score.max(axis=0)),
        word_weighted_readout=word_weight[..., None] * word_readout,
    )


def link(logits: Float[Array, "*b C"], spec: ModelSpec) -> Float[Array, "*b"]:
    """The explained output from the class logits (as `numerics.model.explained_output`)."""
    if spec.output_link == "logit":
        return logits[..., spec.explained_class]
    if spec.output_link == "sigmoid":
        return jax.nn.sigmoid(logits[..., spec.explained_class])
    return jax.nn.softmax(logits, axis=-1)[..., spec.explained_class]


def aggregate(heads: Float[Array, "*b K C"], spec: ModelSpec) -> Float[Array, "*b C"]:
    return heads.mean(axis=-2) if spec.head_aggregation == "mean" else heads.sum(axis=-2)


def reduced_link(logits: Float[Array, "*b C"], spec: ModelSpec) -> Float[Array, "*b"]:
    """`link` on logits that hold only the classes of `classes(spec)`."""
    if spec.output_link == "softmax":
        return link(logits, spec)
    value = logits[..., 0]
    return value if spec.output_link == "logit" else jax.nn.sigmoid(value)


def head_outputs(tab: Tables, tokens: Int[Array, " T"]) -> Float[Array, "K C"]:
    """f_i for one token array: gathers, then softmax over positions (stable)."""
    gamma = tab.word_score[tokens] + tab.position_score  # (T, K)
    s = tab.word_readout[tokens] + tab.position_readout  # (T, K, C)
    alpha = jax.nn.softmax(gamma, axis=0)
    return jnp.einsum("ti,tic->ic", alpha, s) + tab.head_bias


def output(tab: Tables, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, ""]:
    """The explained output f of one token array (stable softmax)."""
    return reduced_link(aggregate(head_outputs(tab, tokens), spec), spec)


def normaliser_bound(tab: Tables, tokens: Int[Array, " T"], feature: Int[Array, " T"]) -> jnp.ndarray:
    """A lower bound, valid for every perturbation of the document (both removal modes), of
    the softmax normalisers computed with `word_weight * position_weight`: the [CLS] term
    plus, at every other position, the smallest word weight the position can hold.

    When it is far from underflow (see `numerics.lime.evaluation.outputs`) the exp-free paths
    are exact to rounding for every mask; otherwise the caller uses the stable softmax.
    """
    candidates = jnp.where((feature >= 0)[:, None], tab.word_weight[tokens], jnp.inf)
    smallest = jnp.minimum(candidates.min(axis=0), tab.word_weight[nm.UNK])  # (K,)
    pw = tab.position_weight
    bound = tab.word_weight[tokens[0]] * pw[0] + smallest * pw[1:].sum(axis=0)
    return bound.min()


def outputs_fast(tab: Tables, tokens: Int[Array, "n T"], spec: ModelSpec) -> jnp.ndarray:
    """f for a batch of token arrays without any exp: exp(a + b) = word_weight * position_weight
    (weights <= 1; valid when `normaliser_bound` is far from underflow)."""
    V, K, C = tab.word_weighted_readout.shape
    # Two flat row gathers (measured fastest on CPU); tokens are valid ids, so "clip" is exact.
    w = jnp.take(tab.word_weight, tokens, axis=0, mode="clip")  # (n, T, K)
    wc = jnp.take(tab.word_weighted_readout.reshape(V, K * C), tokens, axis=0, mode="clip").reshape(w.shape + (C,))
    pw = tab.position_weight  # (T, K)
    normaliser = jnp.sum(w * pw, axis=1)  # (n, K)
    numerator = jnp.sum(pw[..., None] * (wc + w[..., None] * tab.position_readout), axis=1)  # (n, K, C)
    heads = numerator / normaliser[..., None] + tab.head_bias
    return reduced_link(aggregate(heads, spec), spec)


class DeleteForm(NamedTuple):
    """Deletion without building token arrays: the word at original position t keeps its word
    part and moves to p_t = (kept words up to t); UNK fills positions L' + 1 .. T - 1. The
    original positions t run over 0..S-1 (S, the span, at most T: `delete_form`), the new
    positions p over all T."""

    occurrences: Float[Array, "d S"]  # O[j, t] = occurrences of feature j at positions <= t (float32)
    feature: Int[Array, " S"]  # feature of word position t (0 elsewhere, where `is_word` is False)
    is_word: Array  # (S,) bool
    word_weight: Float[Array, "S K"]  # exp(a(w_t)) at original word positions (0 elsewhere)
    word_weighted_readout: Float[Array, "S K C"]  # exp(a(w_t)) c(w_t)
    position_weight: Float[Array, "T1 K"]  # exp(b(p)), p = 0..T-1, then a zero row (removed words)
    position_weighted_readout: Float[Array, "T1 K C"]  # exp(b(p)) d(p), then a zero row
    tail_weight: Float[Array, "T1 K"]  # sum_{p >= q} exp(a(UNK) + b(p)), q = 0..T
    tail_numerator: Float[Array, "T1 K C"]  # the same times s = c(UNK) + d(p)
    cls_weight: Float[Array, " K"]
    cls_numerator: Float[Array, "K C"]


def delete_form(
    tab: Tables, tokens: Int[Array, " T"], feature: Int[Array, " T"], d: int, span: int | None = None
) -> DeleteForm:
    """Per-document precomputation for `delete_outputs`: O(T K + d T).

    span: how many original positions to carry (static; default T). Every word must lie
    before it (`word_span`): the positions after the last word hold no word, contribute
    nothing to the sums over t (their weights are 0) and are left out, so a short document
    costs O(K span) per sample, not O(K T). The new positions p keep all T.
    """
    cls_token = tokens[0]
    tokens, feature = tokens[:span], feature[:span]
    is_word = feature >= 0
    ww = jnp.where(is_word[:, None], tab.word_weight[tokens], 0.0)
    wc = jnp.where(is_word[:, None, None], tab.word_weighted_readout[tokens], 0.0)
    pw = tab.position_weight
    pwd = pw[..., None] * tab.position_readout
    unk_w, unk_wc = tab.word_weight[nm.UNK], tab.word_weighted_readout[nm.UNK]
    tail_terms_w = pw * unk_w
    tail_terms_n = pw[..., None] * unk_wc + pwd * unk_w[:, None]

    def suffix(x):
        return jnp.concatenate([jnp.cumsum(x[::-1], axis=0)[::-1], jnp.zeros_like(x[:1])])

    def zero_row(x):
        return jnp.concatenate([x, jnp.zeros_like(x[:1])])

    membership = feature[None, :] == jnp.arange(d)[:, None]
    cls_w, cls_wc = tab.word_weight[cls_token], tab.word_weighted_readout[cls_token]
    return DeleteForm(
        occurrences=jnp.cumsum(membership, axis=1).astype(jnp.float32),
        feature=jnp.where(is_word, feature, 0), is_word=is_word,
        word_weight=ww, word_weighted_readout=wc,
        position_weight=zero_row(pw), position_weighted_readout=zero_row(pwd),
        tail_weight=suffix(tail_terms_w), tail_numerator=suffix(tail_terms_n),
        cls_weight=cls_w * pw[0], cls_numerator=cls_wc * pw[0][:, None] + pwd[0] * cls_w[:, None],
    )


def word_span(feature, multiple: int = 16) -> int:
    """The `span` of `delete_form` for a document (host-side): one past its last word position,
    rounded up to a multiple of `multiple` (so documents of similar length share one compiled
    program) and at most T."""
    feature = np.asarray(feature)
    words = np.nonzero(feature >= 0)[0]
    last = int(words[-1]) if words.size else 0
    return min(feature.shape[0], -(-(last + 1) // multiple) * multiple)


def delete_outputs(form: DeleteForm, tab: Tables, z: Float[Array, "n d"], spec: ModelSpec) -> jnp.ndarray:
    """f for binary masks z under deletion (valid when `normaliser_bound` is far from underflow).

    Per sample: the new position of every word, p_t = z @ O (kept words up to t: one float32
    matmul, exact for integer counts below 2^24, and much faster than a cumulative sum on
    CPU); removed words point at the tables' zero row; two gathers of position weights and
    the UNK tail from suffix sums: O(K span) per sample (`delete_form`), no scatter.
    """
    C = form.word_weighted_readout.shape[-1]
    T = form.position_weight.shape[0] - 1  # the zero row
    position = jnp.matmul(z.astype(jnp.float32), form.occurrences, precision=jax.lax.Precision.HIGHEST)
    position = (position + 0.5).astype(jnp.int32)  # (n, S): p_t if word t is kept
    kept = position[:, -1]  # L', the number of kept words
    keep = (jnp.take(z, form.feature, axis=1) > 0.5) & form.is_word
    index = jnp.where(keep, position, T)  # removed words and [CLS]/padding read the zero row
    # All C + 1 sums over t (normaliser, numerator of each class) in one variadic reduce of
    # (n, T, K) terms: XLA's CPU backend then fuses the gathers and products into the
    # reduction loop instead of materialising (n, T, K) temporaries (paper sizes: 9.9 -> 8.6 ms).
    g = jnp.take(form.position_weight, index, axis=0, mode="clip")  # (n, T, K)
    terms = [form.word_weight * g]
    for c in range(C):
        gd = jnp.take(form.position_weighted_readout[:, :, c], index, axis=0, mode="clip")
        terms.append(form.word_weighted_readout[:, :, c] * g + form.word_weight * gd)
    zero = jnp.zeros((), g.dtype)
    sums = jax.lax.reduce(tuple(terms), (zero,) * len(terms),
                          lambda x, y: tuple(a + b for a, b in zip(x, y, strict=True)), (1,))
    normaliser = sums[0] + jnp.take(form.tail_weight, kept + 1, axis=0) + form.cls_weight
    numerator = jnp.stack(sums[1:], axis=-1)  # (n, K, C)
    numerator = numerator + jnp.take(form.tail_numerator, kept + 1, axis=0) + form.cls_numerator
    heads = numerator / normaliser[..., None] + tab.head_bias
    return reduced_link(aggregate(heads, spec), spec)
