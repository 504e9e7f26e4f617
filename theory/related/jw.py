"""Jain & Wallace (2019) on the §1 model: gradient importance and leave-one-out, derived.

Statements (docs/theory.md §8.1, "Closed forms for the §1 model") are typed once, in the
model's named quantities; the derived forms come from `sympy.diff` of a model whose
attention is held fixed (`DetachedModel`) and from the forward expression of a document
with a token deleted (`DeletedModel`) or replaced by UNK (`ReplacedModel`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp
from attnverify.theory import symbols as S
from attnverify.theory.calculus import at_word_position, gradient, normal_form, prove_equal
from attnverify.theory.derivations import derive_gradient
from attnverify.theory.model import SymbolicModel
from attnverify.theory.related.sums import prove_equal_interchanged, prove_equal_rational

from attnverify.spec import ModelSpec

#: Attention held fixed (J&W detach it before taking gradients): alpha_fixed[i, t].
ALPHA_FIXED = sp.IndexedBase("alpha_fixed")
#: Indicator of the positions P_j of the replaced word: z_unk[t] in {0, 1}.
Z = sp.IndexedBase("z_unk")
#: Embedding of UNK at position t (omega_UNK + p_t): e_unk[t, k].
E_UNK = sp.IndexedBase("e_unk")

# Register the new tensors' axes so `numerics.compile` can bind arrays to them.
S.AXES.setdefault("z_unk", (S.T,))
S.AXES.setdefault("e_unk", (S.T, S.d_e))


class DetachedModel(SymbolicModel):
    """The model with the attention weights replaced by constants alpha_fixed[i, t]."""

    def weight(self, i, t):
        return ALPHA_FIXED[i, t]

    def normaliser(self, i):
        return sp.Integer(1)


class DeletedModel(SymbolicModel):
    """The document with position `tau` deleted, other positions keeping their e_t
    (no re-indexing under the positional encoding); exact for the [CLS] query."""

    def __init__(self, spec: ModelSpec, tau: sp.Expr = S.tau):
        super().__init__(spec)
        self.tau = tau

    def weight(self, i, t):
        return (1 - sp.KroneckerDelta(t, self.tau)) * super().weight(i, t)


def _on_unk(expr: sp.Expr, t: sp.Expr) -> sp.Expr:
    """`expr` with the embedding of position t (not the [CLS] query's) replaced by UNK's."""
    return expr.replace(
        lambda x: isinstance(x, sp.Indexed) and x.base == S.e and x.indices[0] == t,
        lambda x: E_UNK[x.indices],
    )


class ReplacedModel(SymbolicModel):
    """The document with every position t where z_unk[t] = 1 replaced in place by UNK.

    A position is either its token or UNK, so each per-position quantity is the mixture
    (1 - z_t) x(e_t) + z_t x(e_unk_t); `binary` then imposes z_t^2 = z_t.
    """

    def weight(self, i, t):
        own = super().weight(i, t)
        return (1 - Z[t]) * own + Z[t] * _on_unk(own, t)

    def readout(self, i, t, c=None):
        own = super().readout(i, t, c)
        return (1 - Z[t]) * own + Z[t] * _on_unk(own, t)


def binary(expr: sp.Expr) -> sp.Expr:
    """Impose z_t in {0, 1}: z_t^n = z_t for n >= 1."""
    expr = sp.expand(normal_form(expr))
    return expr.replace(
        lambda x: x.is_Pow and isinstance(x.base, sp.Indexed) and x.base.base == Z
        and x.exp.is_Integer and x.exp > 1,
        lambda x: x.base,
    )


def with_alpha(expr: sp.Expr, model: SymbolicModel) -> sp.Expr:
    """Evaluate a detached expression at the model's own attention (alpha_fixed -> alpha)."""
    return expr.replace(
        lambda x: isinstance(x, sp.Indexed) and x.base == ALPHA_FIXED,
        lambda x: model.alpha(*x.indices),
    )


# -- statements (docs/theory.md §8.1), typed once ----------------------------------------------
def _f_i(model: SymbolicModel, i) -> sp.Expr:
    return sp.Sum(model.alpha(i, S.t) * model.readout(i, S.t), (S.t, 0, S.T - 1))


def detached_gxi_statement(model: SymbolicModel, tau=S.tau) -> sp.Expr:
    """Detached G x I_t = 1/K sum_i alpha_t^(i) s_t^(i): the token's additive contribution."""
    return sp.Sum(model.alpha(S.i, tau) * model.readout(S.i, tau), (S.i, 0, S.K - 1)) / S.K


def jacobian_term_statement(model: SymbolicModel, tau=S.tau, m=S.m) -> sp.Expr:
    """Full minus detached gradient: 1/K sum_i alpha_t^(i) (s_t^(i) - f_i) kappa^(i)_m,
    with kappa^(i) = W_k^(i)T q^(i) / sqrt(d_att)."""
    i = S.i
    kappa = sp.Sum(S.W_k[i, S.a, m] * model.query(i, S.a), (S.a, 0, S.d_att - 1)) / sp.sqrt(S.d_att)
    body = model.alpha(i, tau) * (model.readout(i, tau) - _f_i(model, i)) * kappa
    return sp.Sum(body, (i, 0, S.K - 1)) / S.K


def loo_deletion_statement(model: SymbolicModel, tau=S.tau) -> sp.Expr:
    """f(xi) - f(xi_{-t}) = 1/K sum_i alpha_t^(i) (s_t^(i) - f_i) / (1 - alpha_t^(i))."""
    i = S.i
    a = model.alpha(i, tau)
    return sp.Sum(a * (model.readout(i, tau) - _f_i(model, i)) / (1 - a), (i, 0, S.K - 1)) / S.K


def unk_replacement_statement(model: SymbolicModel) -> sp.Expr:
    """f - f^(j -> UNK) = 1/K sum_i [sum_{P_j} g_t (s_t - f_i) - g~_t (s~_t - f_i)]
    / (G - sum_{P_j} g_t + sum_{P_j} g~_t), with g = exp(gamma), tildes for UNK."""
    i, t = S.i, S.t
    g, s, f = model.weight(i, t), model.readout(i, t), _f_i(model, i)
    g_unk, s_unk = _on_unk(g, t), _on_unk(s, t)
    numerator = sp.Sum(Z[t] * (g * (s - f) - g_unk * (s_unk - f)), (t, 0, S.T - 1))
    denominator = model.normaliser(i) - sp.Sum(Z[t] * g, (t, 0, S.T - 1)) + sp.Sum(
        Z[t] * g_unk, (t, 0, S.T - 1))
    return sp.Sum(numerator / denominator, (i, 0, S.K - 1)) / S.K


# -- derivations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class JWDerivation:
    """Derived forms (free indices tau, m) and whether each equals its statement."""

    spec: ModelSpec
    detached_gradient: sp.Expr  # d f / d e[tau, m] with alpha fixed, at alpha (tau >= 1)
    detached_gxi: sp.Expr  # sum_m e[tau, m] * detached_gradient
    jacobian_term: sp.Expr  # full - detached gradient (tau >= 1)
    loo_deletion: sp.Expr  # f - f_{-tau}
    unk_replacement: sp.Expr  # f - f^(z -> UNK), with z binary
    proofs: dict[str, bool | None]  # None: the derivation does not model this spec


def derive_jw(spec: ModelSpec) -> JWDerivation:
    """Derive the §8.1 closed forms for `spec` and prove each equal to its statement.

    Sizes stay symbolic, so the derivation depends only on the switches: it is cached per
    switch setting (the sizes are set to the paper's before the cache is consulted)."""
    paper = ModelSpec()
    return _derive_jw(spec.replace(max_len=paper.max_len, d_embed=paper.d_embed, d_att=paper.d_att,
                                   d_out=paper.d_out, heads=paper.heads, vocab_size=paper.vocab_size))


@functools.lru_cache(maxsize=16)
def _derive_jw(spec: ModelSpec) -> JWDerivation:
    model, detached = SymbolicModel(spec), DetachedModel(spec)
    detached_word = at_word_position(gradient(detached.output()))
    detached_grad = normal_form(with_alpha(detached_word, model))
    detached_gxi = normal_form(sp.Sum(S.e[S.tau, S.m] * detached_grad, (S.m, 0, S.d_e - 1)))
    jacobian = normal_form(derive_gradient(spec).word - detached_grad)
    loo = normal_form(model.output() - DeletedModel(spec).output())
    unk = binary(model.output() - ReplacedModel(spec).output())
    # DeletedModel / ReplacedModel keep the query q = W_q e_0; with the mean query the
    # deleted or replaced token would also move q, so those two proofs do not apply.
    cls_query = spec.query == "cls"
    proofs = {
        "detached G x I = alpha_t s_t / K": prove_equal_interchanged(
            detached_gxi, detached_gxi_statement(model)),
        "full - detached gradient = Jacobian term": prove_equal(
            jacobian, jacobian_term_statement(model)),
        "LOO by deletion (no re-indexing)":
            prove_equal_rational(loo, loo_deletion_statement(model)) if cls_query else None,
        "in-place UNK replacement":
            prove_equal_rational(unk, binary(unk_replacement_statement(model))) if cls_query else None,
    }
    return JWDerivation(spec, detached_grad, detached_gxi, jacobian, loo, unk, proofs)
