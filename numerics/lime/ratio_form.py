"""In-place replacement makes each head a ratio of two affine functions of the mask z.

With a constant query, a word position t of feature j holds either its word (z_j = 1:
weight w_t = exp(gamma_t), read-out s_t) or UNK (z_j = 0: w~_t, s~_t), and for binary z
``w_t(z) s_t(z) = z_j w_t s_t + (1 - z_j) w~_t s~_t`` exactly. Summing over positions
(`theory.eq19`, step "ratio form"):

    f_i(z) = (A_i + sum_j z_j u_ij) / (B_i + sum_j z_j v_ij) + b_l,
    A_i = sum_t w~_t s~_t,  B_i = sum_t w~_t,
    u_ij = sum_{t in P_j} (w_t s_t - w~_t s~_t),  v_ij = sum_{t in P_j} (w_t - w~_t),

where the tilde quantities are those of the all-UNK document. This is exact on binary
masks, for any value map (tanh included), and costs O(K d) per mask: the fast path of the
exact limit in ``replace`` mode and the object the improved closed form linearises.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics.lime.document import LimeDocument, all_removed
from attnverify.numerics.lime.structured import aggregate, link
from jaxtyping import Array, Float

from attnverify.spec import ModelSpec


class RatioForm(NamedTuple):
    A: Float[Array, "K C"]
    B: Float[Array, " K"]
    u: Float[Array, "K d C"]
    v: Float[Array, "K d"]
    head_bias: Float[Array, "K C"]


def unsupported(spec: ModelSpec) -> str | None:
    if spec.query != "cls":
        return "query='mean' changes with the mask, so a head is not a ratio of affine functions"
    return None


def feature_sum(values: Float[Array, " T *rest"], doc: LimeDocument, d: int) -> Float[Array, " d *rest"]:
    """Sum of `values` over the positions of each feature (P_j); [CLS] and padding dropped."""
    segment = jnp.where(doc.feature >= 0, doc.feature, d)
    return jax.ops.segment_sum(values, segment, num_segments=d + 1)[:d]


def per_position(params: nm.Params, tokens, spec: ModelSpec):
    """(scores gamma (K, T), read-outs s (K, T, C)) of the true model on one token array."""
    e = nm.embed(params, tokens, spec)
    return nm.scores(params, e, spec), nm.readouts(params, e, spec)


@functools.partial(jax.jit, static_argnames=("spec", "d"))
def ratio_form(params: nm.Params, doc: LimeDocument, spec: ModelSpec, d: int) -> RatioForm:
    """A, B, u, v of every head for the document (requires ``query="cls"``)."""
    gamma, s = per_position(params, doc.tokens, spec)
    gamma_t, s_t = per_position(params, all_removed(doc), spec)
    shift = jax.lax.stop_gradient(jnp.maximum(gamma.max(axis=1), gamma_t.max(axis=1)))[:, None]
    w, w_t = jnp.exp(gamma - shift), jnp.exp(gamma_t - shift)  # (K, T), all <= 1
    u = feature_sum(jnp.moveaxis(w[..., None] * s - w_t[..., None] * s_t, 1, 0), doc, d)
    v = feature_sum((w - w_t).T, doc, d)
    bias = params.b_l if spec.biases else jnp.zeros(s.shape[::2], s.dtype)
    return RatioForm(
        A=jnp.einsum("it,itc->ic", w_t, s_t),
        B=w_t.sum(axis=1),
        u=jnp.moveaxis(u, 0, 1),
        v=v.T,
        head_bias=bias,
    )


def heads(form: RatioForm, z: Float[Array, "*b d"]) -> Float[Array, "*b K C"]:
    """f_i for masks z (binary for the exact model; any real z for its extension)."""
    numerator = form.A + jnp.einsum("...j,ijc->...ic", z, form.u)
    denominator = form.B + jnp.einsum("...j,ij->...i", z, form.v)
    return numerator / denominator[..., None] + form.head_bias


def output(form: RatioForm, z: Float[Array, "*b d"], spec: ModelSpec) -> Float[Array, "*b"]:
    """The explained output for masks z."""
    return link(aggregate(heads(form, z), spec), spec)
