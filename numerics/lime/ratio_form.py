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

**How it is evaluated** (docs/theory.md §10.5). Not as written: B_i + z.v_i adds w~_t in B_i and
takes it away in v_ij for every kept word, which cancels where UNK outweighs the word; and one
softmax shift for every mask underflows a mask whose weighted scores all lie far below the largest
(at ``--scale 10`` the written form was off by 8e-11 in float64 and 4e-4 in float32; at scale 30
it gave NaN). `RatioForm` keeps, per head and feature, the sums with the word and with UNK apart,
each shifted by its own largest score g (`Shifted`); `heads` adds only the terms a mask weights
(z_j times the word's, 1 - z_j times UNK's, and those of [CLS] and padding), each scaled by
exp(g - m): m is the head's largest score where that keeps every binary mask's denominator above
sqrt(tiny), else each mask's own largest weighted score. Nothing is subtracted, and any m gives
the same ratio and the same derivative in z.
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


class Shifted(NamedTuple):
    """Per head and group of positions (a feature's, or the positions no mask touches: [CLS] and
    padding): the largest score g, and the sums of exp(gamma_t - g) and exp(gamma_t - g) s_t."""

    top: Float[Array, "K G"]
    weight: Float[Array, "K G"]
    readout: Float[Array, "K G C"]


class RatioForm(NamedTuple):
    word: Shifted  # positions of feature j holding its word (G = d)
    unk: Shifted  # the same positions holding UNK (G = d)
    fixed: Shifted  # [CLS] and padding, the same in every mask (G = 1)
    head_bias: Float[Array, "K C"]

    def highest(self) -> Float[Array, " K"]:
        """Each head's largest score, over every group."""
        return jnp.maximum(self.fixed.top[:, 0], jnp.maximum(self.word.top.max(axis=1), self.unk.top.max(axis=1)))

    def floor(self) -> Float[Array, " K"]:
        """A score that every binary mask weights at least one term of: [CLS]'s, or for a feature the
        smaller of its word's and UNK's (one of the two is in every mask)."""
        return jnp.maximum(self.fixed.top[:, 0], jnp.minimum(self.word.top, self.unk.top).max(axis=1))

    def one_shift_is_safe(self) -> jnp.ndarray:
        """Whether one shift per head (`highest`) keeps every binary mask's denominator above
        sqrt(tiny): the lowest top score of any mask is within ln(tiny) / 2 of the highest."""
        return jnp.all(self.floor() - self.highest() > 0.5 * jnp.log(jnp.finfo(self.word.weight.dtype).tiny))

    def scaled(self, part: Shifted) -> tuple[Float[Array, "K G"], Float[Array, "K G C"]]:
        """A group's sums of w_t and w_t s_t with one shift for the whole head (`highest`)."""
        scale = jnp.exp(part.top - self.highest()[:, None])
        return scale * part.weight, scale[..., None] * part.readout

    @property
    def A(self) -> Float[Array, "K C"]:
        return self.scaled(self.fixed)[1][:, 0] + self.scaled(self.unk)[1].sum(axis=1)

    @property
    def B(self) -> Float[Array, " K"]:
        return self.scaled(self.fixed)[0][:, 0] + self.scaled(self.unk)[0].sum(axis=1)

    @property
    def u(self) -> Float[Array, "K d C"]:
        return self.scaled(self.word)[1] - self.scaled(self.unk)[1]

    @property
    def v(self) -> Float[Array, "K d"]:
        return self.scaled(self.word)[0] - self.scaled(self.unk)[0]


def unsupported(spec: ModelSpec) -> str | None:
    if spec.query != "cls":
        return "query='mean' changes with the mask, so a head is not a ratio of affine functions"
    return None


def per_position(params: nm.Params, tokens, spec: ModelSpec):
    """(scores gamma (K, T), read-outs s (K, T, C)) of the true model on one token array."""
    e = nm.embed(params, tokens, spec)
    return nm.scores(params, e, spec), nm.readouts(params, e, spec)


def shifted(gamma: Float[Array, "K T"], s: Float[Array, "K T C"], doc: LimeDocument, d: int) -> Shifted:
    """`Shifted` sums of one token array over the d features' positions and, last, the others."""
    segment = jnp.where(doc.feature >= 0, doc.feature, d)
    top = jax.ops.segment_max(gamma.T, segment, num_segments=d + 1).T  # (K, d + 1)
    w = jnp.exp(gamma - top[:, segment])  # at most 1 in each group
    return Shifted(
        top=top,
        weight=jax.ops.segment_sum(w.T, segment, num_segments=d + 1).T,
        readout=jnp.moveaxis(jax.ops.segment_sum(jnp.moveaxis(w[..., None] * s, 1, 0), segment,
                                                 num_segments=d + 1), 0, 1),
    )


@functools.partial(jax.jit, static_argnames=("spec", "d"))
def ratio_form(params: nm.Params, doc: LimeDocument, spec: ModelSpec, d: int) -> RatioForm:
    """The shifted sums of every head for the document (requires ``query="cls"``)."""
    word = shifted(*per_position(params, doc.tokens, spec), doc, d)
    unk = shifted(*per_position(params, all_removed(doc), spec), doc, d)
    features, others = (lambda x: x[:, :d]), (lambda x: x[:, d:])  # the last group: [CLS] and padding
    bias = params.b_l if spec.biases else jnp.zeros(word.readout.shape[::2], word.readout.dtype)
    return RatioForm(word=jax.tree.map(features, word), unk=jax.tree.map(features, unk),
                     fixed=jax.tree.map(others, word), head_bias=bias)


def heads(form: RatioForm, z: Float[Array, "*b d"]) -> Float[Array, "*b K C"]:
    """f_i for masks z (binary for the exact model; any real z for its extension), as the
    weighted terms' sums (no term subtracted): with one shift per head where that leaves every
    binary mask's denominator above sqrt(tiny), else with one shift per mask."""
    safe = form.one_shift_is_safe()
    return jax.lax.cond(safe, _one_shift, _shift_per_mask, form, z, safe) + form.head_bias


def _one_shift(form: RatioForm, z: Float[Array, "*b d"], safe) -> Float[Array, "*b K C"]:
    """One shift per head: the sums are scaled once, and the masks contract with them directly
    (no per-mask exponential, and no (masks, K, d) array: the fast branch, hence not written
    through `_shift_per_mask` with a constant m)."""
    (word_w, word_s), (unk_w, unk_s), (fixed_w, fixed_s) = map(form.scaled, (form.word, form.unk, form.fixed))
    numerator = fixed_s[:, 0] + jnp.einsum("...j,ijc->...ic", z, word_s) + jnp.einsum("...j,ijc->...ic", 1 - z, unk_s)
    denominator = fixed_w[:, 0] + jnp.einsum("...j,ij->...i", z, word_w) + jnp.einsum("...j,ij->...i", 1 - z, unk_w)
    # Under vmap both branches run; where this one is not `safe` its denominator may underflow to 0,
    # and 1 in its place keeps that unused value, and its derivative, finite (never NaN).
    return numerator / jnp.where(safe, denominator, 1)[..., None]


def _shift_per_mask(form: RatioForm, z: Float[Array, "*b d"], _safe) -> Float[Array, "*b K C"]:
    z = z[..., None, :]  # (*b, 1, d): the same mask for every head
    # m: the largest score among the terms the mask weights ([CLS] always; a word where z_j != 0,
    # UNK where z_j != 1). Any m gives the same ratio; this one keeps every weighted term <= 1.
    m = jax.lax.stop_gradient(jnp.maximum(
        form.fixed.top[:, 0],
        jnp.maximum(jnp.max(jnp.where(z != 0, form.word.top, -jnp.inf), axis=-1),
                    jnp.max(jnp.where(z != 1, form.unk.top, -jnp.inf), axis=-1))))  # (*b, K)
    # A term the mask does not weight may score above m: its factor is capped (the value multiplies
    # it by 0; only a derivative at a binary mask reads it).
    cap = 0.5 * jnp.log(jnp.finfo(form.word.weight.dtype).max)
    on = z * jnp.exp(jnp.minimum(form.word.top - m[..., None], cap))
    off = (1 - z) * jnp.exp(jnp.minimum(form.unk.top - m[..., None], cap))
    fixed = jnp.exp(form.fixed.top[:, 0] - m)  # (*b, K), at most 1
    numerator = (fixed[..., None] * form.fixed.readout[:, 0] + jnp.einsum("...ij,ijc->...ic", on, form.word.readout)
                 + jnp.einsum("...ij,ijc->...ic", off, form.unk.readout))
    denominator = (fixed * form.fixed.weight[:, 0] + jnp.einsum("...ij,ij->...i", on, form.word.weight)
                   + jnp.einsum("...ij,ij->...i", off, form.unk.weight))
    return numerator / denominator[..., None]


def output(form: RatioForm, z: Float[Array, "*b d"], spec: ModelSpec) -> Float[Array, "*b"]:
    """The explained output for masks z."""
    return link(aggregate(heads(form, z), spec), spec)
