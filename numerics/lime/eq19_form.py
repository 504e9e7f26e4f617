"""Eq. (19), its SymPy derivation and the improved closed form, compiled to JAX.

The index-level expressions of `theory.eq19` are evaluated with the einsum compiler of
`numerics.compile` on arrays read from the true model (`numerics.model`) of the spec:
attention and read-outs in the original document and in the all-UNK document. So a
changed assumption (no positional encoding, mean query, sigmoid link, ...) reaches the
approximation through the model, while the statement keeps the paper's constants.

Public functions take ``(params, tokens, spec)`` like the rest of the package and return
one value per LIME feature, aligned with `lime_document`'s feature order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.compile import Evaluator
from attnverify.numerics.lime import ratio_form as lime_ratio
from attnverify.numerics.lime.constants import mean_mask
from attnverify.numerics.lime.document import LimeDocument, all_removed, lime_document
from attnverify.numerics.lime.structured import aggregate, link
from jaxtyping import Array, Float

from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

# SymPy's side, loaded when an expression is first evaluated (`attnverify.lazy`).
sp = lazy_module("sympy")
theory = lazy_module("attnverify.theory.eq19")
S = lazy_module("attnverify.theory.symbols")

Arrays = dict[str, jnp.ndarray]


def quantities(params: nm.Params, doc: LimeDocument, spec: ModelSpec, d: int) -> Arrays:
    """The arrays the expressions of `theory.eq19` are written in, for one document.

    alpha, s: attention and explained-class read-out in the document (K, T); alpha~, s~: in
    the all-UNK document; w, w~: the unnormalised weights exp(gamma - shift); P: (d, T)
    feature membership; b: head bias of the explained class (K,).
    """
    c = spec.explained_class
    gamma, s = lime_ratio.per_position(params, doc.tokens, spec)
    gamma_t, s_t = lime_ratio.per_position(params, all_removed(doc), spec)
    shift = jax.lax.stop_gradient(jnp.maximum(gamma.max(axis=1), gamma_t.max(axis=1)))[:, None]
    P = (doc.feature[None, :] == jnp.arange(d)[:, None]).astype(s.dtype)
    bias = params.b_l[:, c] if spec.biases else jnp.zeros((gamma.shape[0],), s.dtype)
    return {
        "alpha": jax.nn.softmax(gamma, axis=1), "alpha~": jax.nn.softmax(gamma_t, axis=1),
        "s": s[..., c], "s~": s_t[..., c],
        "w": jnp.exp(gamma - shift), "w~": jnp.exp(gamma_t - shift), "P": P, "b": bias,
    }


def evaluate(expr: sp.Expr, arrays: Arrays, d: int) -> Float[Array, " d"]:
    """An index-level expression with free feature index j, on the given arrays.

    A mask z left in the expression (a non-additive link, e.g. sigmoid, makes the chain's
    coefficient depend on z) is set to 1: the coefficient at the original document.
    """
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == theory.z, lambda e: sp.Integer(1))
    K, T = arrays["alpha"].shape
    evaluator = Evaluator(arrays, {S.K: K, S.T: T, theory.D: d})
    evaluator.ranges[theory.j] = d
    return jnp.broadcast_to(evaluator(expr).aligned((theory.j,)), (d,))


def statement(arrays: Arrays, d: int) -> Float[Array, " d"]:
    """Eq. (19) as the paper states it (3/2, 1/K), compiled."""
    return evaluate(theory.eq19_statement(), arrays, d)


def derived(arrays: Arrays, spec: ModelSpec, d: int) -> Float[Array, " d"]:
    """The end of the SymPy chain of `theory.eq19.derive_eq19` for `spec`, compiled."""
    return evaluate(theory.derive_eq19(spec).derived, arrays, d)


def additive_part(arrays: Arrays, spec: ModelSpec, d: int) -> Float[Array, " d"]:
    """Step 3 of the chain, c_j (the exact limit under the fixed-normaliser model)."""
    coefficients = next(st for st in theory.derive_eq19(spec).steps if st.name == "coefficients")
    return evaluate(coefficients.expression, arrays, d)


def improved(arrays: Arrays, spec: ModelSpec, d: int, nu: float) -> Float[Array, " d"]:
    """The improved closed form (first order at the mean mask), compiled from SymPy."""
    form = theory.derive_improved(spec).derived
    if form is None:
        raise ValueError(theory.derive_improved(spec).note)
    zbar = mean_mask(d, nu, dtype=arrays["w"].dtype)
    return evaluate(form, {**arrays, "zbar": jnp.reshape(zbar, (1,))}, d)


def improved_autodiff(params: nm.Params, doc: LimeDocument, spec: ModelSpec, d: int, nu: float):
    """The same quantity by `jax.grad` of the ratio form's continuous extension at zbar."""
    form = lime_ratio.ratio_form(params, doc, spec, d)
    zbar = mean_mask(d, nu, dtype=form.B.dtype)
    return jax.grad(lambda z: link(aggregate(lime_ratio.heads(form, z), spec), spec))(
        jnp.full((d,), zbar, form.B.dtype)
    )


# -- convenience wrappers on token arrays -----------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("spec", "d", "which"))
def _approximations(params, doc, nu, *, spec, d, which):
    arrays = quantities(params, doc, spec, d)
    if which == "statement":
        return statement(arrays, d)
    if which == "improved":
        return improved(arrays, spec, d, nu)
    return improved_autodiff(params, doc, spec, d, nu)


def eq19_approximation(
    params: nm.Params, tokens, spec: ModelSpec, *, words: list[str] | None = None,
    n_words: int | None = None, features: str = "words",
) -> np.ndarray:
    """Eq. (19) for every LIME feature of the document: array (d,), `lime_document` order."""
    doc, names = lime_document(tokens, words=words, n_words=n_words, features=features)
    return np.asarray(_approximations(params, doc, 0.0, spec=spec, d=len(names), which="statement"))


def improved_approximation(
    params: nm.Params, tokens, spec: ModelSpec, *, nu: float = 0.25, words: list[str] | None = None,
    n_words: int | None = None, features: str = "words",
) -> np.ndarray:
    """The improved closed form for every feature (SymPy-derived; `jax.grad` of the same
    extension for the softmax link, where no SymPy form is derived). Needs query="cls"."""
    doc, names = lime_document(tokens, words=words, n_words=n_words, features=features)
    which = "improved" if theory.derive_improved(spec).derived is not None else "autodiff"
    if lime_ratio.unsupported(spec):
        raise ValueError(lime_ratio.unsupported(spec))
    return np.asarray(_approximations(params, doc, nu, spec=spec, d=len(names), which=which))
