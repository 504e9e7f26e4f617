"""Symbolic checks of Theorem 1: the derivation (sympy.diff) against the paper's statement."""

import pytest
import sympy as sp
from attnverify.theory import statements
from attnverify.theory import symbols as S
from attnverify.theory.calculus import at_word_position, gradient, normal_form, prove_equal
from attnverify.theory.derivations import derive_gradient
from attnverify.theory.model import SymbolicModel

from attnverify.spec import PAPER


def test_theorem1_proved_for_all_sizes():
    proofs = derive_gradient(PAPER).proofs
    assert proofs["theorem1 (t >= 1)"].general
    assert proofs["theorem1 + query-path term at [CLS]"].general


def test_theorem1_is_not_the_gradient_at_cls():
    assert not derive_gradient(PAPER).proofs["theorem1 at [CLS] (t = 0)"].general


def test_dropped_jacobian_term_is_caught():
    model = SymbolicModel(PAPER)
    word = at_word_position(gradient(model.output()))
    assert not prove_equal(word, statements.detached_gradient(model))


def test_a_wrong_constant_is_caught():
    model = SymbolicModel(PAPER)
    word = at_word_position(gradient(model.output()))
    assert not prove_equal(word, 2 * statements.theorem1_gradient(model))


@pytest.mark.parametrize(
    "changes",
    [{"output_link": "sigmoid"}, {"query": "mean"}, {"value_nonlinearity": "tanh"},
     {"scale_scores": False}, {"head_aggregation": "sum"}],
)
def test_changed_assumption_changes_the_derivation(changes):
    variant = PAPER.replace(**changes)
    d_paper, d_variant = derive_gradient(PAPER), derive_gradient(variant)
    assert not prove_equal(d_variant.word, d_paper.word)
    assert not d_variant.proofs["theorem1 (t >= 1)"].general


def test_biases_keep_theorem1_true():
    # A key bias cancels in softmax; value and query biases are inside v_t and q.
    assert derive_gradient(PAPER.replace(biases=True)).proofs["theorem1 (t >= 1)"].general


def test_explicit_sizes_agree_with_the_general_proof():
    # The second, unrolled check: no reliance on normal_form's rewriting rules.
    d = derive_gradient(PAPER, explicit_check=True)
    assert d.proofs["theorem1 (t >= 1)"].explicit is True
    assert d.proofs["theorem1 at [CLS] (t = 0)"].explicit is False
    assert d.proofs["theorem1 + query-path term at [CLS]"].explicit is True
    assert d.proofs["gradient x input (t >= 1)"].explicit is True


def test_normal_form_eliminates_deltas_and_renames_bound_indices():
    x = sp.IndexedBase("x")
    expr = sp.Sum(sp.KroneckerDelta(S.t, S.tau) * x[S.t], (S.t, 0, S.T - 1))
    assert normal_form(expr) == x[S.tau]
    a = sp.Sum(x[S.t] * x[S.t], (S.t, 0, S.T - 1))
    b = sp.Sum(x[S.s] * x[S.s], (S.s, 0, S.T - 1))
    assert normal_form(a) == normal_form(b)
    linear = sp.Sum(2 * x[S.t] + 1, (S.t, 0, S.T - 1))
    assert prove_equal(linear, 2 * sp.Sum(x[S.s], (S.s, 0, S.T - 1)) + S.T)
    assert not prove_equal(linear, 2 * sp.Sum(x[S.s], (S.s, 0, S.T - 1)) + S.T - 1)


def test_the_softmax_derivative_of_docs_theory_3_1_is_derived_for_all_T_and_a_wrong_one_is_caught():
    # docs/theory.md §3.1 (checklist 2): d alpha_t / d gamma_u = alpha_t (delta_tu - alpha_u), and
    # the rows of that Jacobian sum to 0. Derived by sympy.diff from the model's own softmax (its
    # scores replaced by free symbols g), for symbolic T; the lemma was covered only through Theorem 1.
    g = sp.IndexedBase("g")
    u = sp.Symbol("u", integer=True, nonnegative=True)

    class FreeScores(SymbolicModel):
        def score(self, i, t):
            return g[i, t]

    model = FreeScores(PAPER)
    alpha_t, alpha_u = model.alpha(S.i, S.t), model.alpha(S.i, u)
    jacobian = sp.diff(alpha_t, g[S.i, u])
    ranges = {S.t: (sp.Integer(0), S.T - 1), u: (sp.Integer(0), S.T - 1)}
    assert prove_equal(jacobian, alpha_t * (sp.KroneckerDelta(S.t, u) - alpha_u), ranges)
    assert prove_equal(sp.Sum(jacobian, (u, 0, S.T - 1)), sp.Integer(0), {S.t: ranges[S.t]})
    # Can fail: the diagonal alone, or the outer product with the wrong sign, is not proved.
    assert not prove_equal(jacobian, alpha_t * sp.KroneckerDelta(S.t, u), ranges)
    assert not prove_equal(jacobian, alpha_t * (sp.KroneckerDelta(S.t, u) + alpha_u), ranges)
