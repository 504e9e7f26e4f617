"""Step 2 of the Eq. (19) chain on the true model: the softmax normaliser held fixed (docs/theory.md §6).

Kept words contribute alpha_t s_t as in the original document, removed ones alpha~_t s~_t as in
the all-UNK document, both read off `numerics.model` (its attention and read-outs, every class):

    f~(z) = link(agg_i sum_t [Z_t alpha_t^(i) s_t^(i) + (1 - Z_t) alpha~_t^(i) s~_t^(i)] + b^(i)),

with Z_t = z_j at a position holding feature j and 0 at [CLS] and padding. Its gradient by
`jax.grad` is the chain's c_j, computed without the SymPy index expressions: the Eq. (19)
claims compare kappa c_j (kappa from `theory.eq19`) with the statement as typed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics.lime.document import LimeDocument, all_removed, is_word
from attnverify.numerics.lime.structured import aggregate, link
from jaxtyping import Array, Float

from attnverify.spec import ModelSpec


def fixed_normaliser_output(params: nm.Params, doc: LimeDocument, spec: ModelSpec, d: int):
    """z (d,) -> f~(z), the model with each head's attention frozen per word (see the module)."""
    kept_doc, removed_doc = nm.embed(params, doc.tokens, spec), nm.embed(params, all_removed(doc), spec)
    kept = nm.attention(params, kept_doc, spec)[..., None] * nm.readouts(params, kept_doc, spec)  # (K, T, C)
    removed = nm.attention(params, removed_doc, spec)[..., None] * nm.readouts(params, removed_doc, spec)
    membership = (doc.feature[None, :] == jnp.arange(d)[:, None]) & is_word(doc)[None, :]  # (d, T)

    def f(z: Float[Array, " d"]) -> Float[Array, ""]:
        Z = z @ membership.astype(z.dtype)  # (T,): 1 where the word is kept, 0 at [CLS] / padding
        heads = jnp.einsum("t,itc->ic", Z, kept) + jnp.einsum("t,itc->ic", 1 - Z, removed)
        if spec.biases:
            heads = heads + params.b_l
        return link(aggregate(heads, spec), spec)

    return f


def chain_coefficients(params: nm.Params, doc: LimeDocument, spec: ModelSpec, d: int) -> Float[Array, " d"]:
    """c_j = d f~ / d z_j at the original document (z = 1), by `jax.grad` (exact for the logit link,
    where f~ is additive; elsewhere the coefficient at z = 1, as `eq19_form.evaluate` takes it)."""
    f = fixed_normaliser_output(params, doc, spec, d)
    return jax.grad(f)(jnp.ones((d,), params.embedding.dtype))
