"""Theorem 2 / Eq. (19): the SymPy chain, the 2/3 special case, the improved closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics.draws import draw_params
from attnverify.numerics.lime import eq19_form as lime_eq19
from attnverify.numerics.lime.document import lime_document, random_document
from attnverify.numerics.lime.limit import beta_limit
from attnverify.theory import eq19 as theory
from attnverify.theory.calculus import prove_equal

from attnverify.spec import PAPER, ModelSpec

SPEC = ModelSpec(max_len=12, d_embed=8, d_att=4, d_out=5, heads=3, vocab_size=40)
D, LENGTH = 6, 9


def _case(seed, scale=1.0, spec=SPEC):
    params = draw_params(jax.random.PRNGKey(seed), spec, scale=scale)
    doc = random_document(jax.random.PRNGKey(seed + 50), D, LENGTH, spec.max_len, spec.vocab_size)
    return params, np.asarray(doc.tokens)


# -- symbolic ------------------------------------------------------------------------------------
def test_chain_lands_on_the_statement_and_step5_introduces_three_halves():
    derivation = theory.derive_eq19(PAPER)
    assert derivation.proved and not derivation.unmet
    coefficients = {st.name: st.coefficient for st in derivation.steps if st.coefficient is not None}
    assert coefficients["MG, exact"] == 1  # exact for additive f: no 3/2 yet
    assert sp.simplify(coefficients["independence"] - 1) != 0  # the step that changes it
    d = theory.D
    assert sp.simplify(coefficients["wide kernel"] - sp.Rational(3, 2) * (d - 1) / d) == 0
    assert coefficients["large d"] == sp.Rational(3, 2)


def test_a_wrong_constant_or_a_changed_spec_is_not_proved():
    derivation = theory.derive_eq19(PAPER)
    assert not prove_equal(derivation.derived, sp.Rational(2, 3) * derivation.statement)
    summed = theory.derive_eq19(PAPER.replace(head_aggregation="sum"))
    assert not summed.proved and "head_aggregation" in summed.unmet
    assert "query" in theory.derive_eq19(PAPER.replace(query="mean")).unmet


def test_equal_score_case_is_two_thirds_of_eq19_symbolically():
    case = theory.equal_score_case(PAPER)
    assert case["proved"] and case["ratio"] == sp.Rational(3, 2)


# -- numeric ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("nu", [0.1, 0.25, float("inf")])
def test_equal_score_case_numerically(nu):
    # W_k = 0: every score is 0, UNK included; exact limit (enumeration) = 2/3 Eq. (19).
    params, tokens = _case(3, scale=2.0)
    params = params._replace(W_k=jnp.zeros_like(params.W_k))
    exact = beta_limit(params, tokens, SPEC, n_words=LENGTH, removal="replace", nu=nu, method="exact").beta
    eq19 = lime_eq19.eq19_approximation(params, tokens, SPEC, n_words=LENGTH)
    # Rounding of 2^6-term enumerations times sigma: 1e-10 relative.
    np.testing.assert_allclose(exact, 2 / 3 * eq19, rtol=0, atol=1e-10 * np.max(np.abs(eq19)))
    assert np.max(np.abs(exact - eq19)) > 0.1 * np.max(np.abs(eq19))  # Eq. (19) itself is off by 3/2


def test_compiled_statement_matches_the_attention_weights():
    # The compiled index-level statement against the formula evaluated directly from the
    # model's attention in the document and in the all-UNK document.
    from attnverify.numerics import model as nm

    params, tokens = _case(4, scale=2.0)
    doc, names = lime_document(tokens, n_words=LENGTH)
    alpha = nm.attention(params, nm.embed(params, doc.tokens, SPEC), SPEC)
    unk = jnp.where(doc.feature >= 0, 1, doc.tokens)
    alpha_t = nm.attention(params, nm.embed(params, unk, SPEC), SPEC)
    s = nm.readouts(params, nm.embed(params, doc.tokens, SPEC), SPEC)[..., 1]
    s_t = nm.readouts(params, nm.embed(params, unk, SPEC), SPEC)[..., 1]
    term = np.asarray((alpha * s - alpha_t * s_t).mean(axis=0))
    direct = 1.5 * np.array([term[np.asarray(doc.feature) == j].sum() for j in range(len(names))])
    got = lime_eq19.eq19_approximation(params, tokens, SPEC, n_words=LENGTH)
    np.testing.assert_allclose(got, direct, rtol=1e-12, atol=1e-15)
    arrays = lime_eq19.quantities(params, doc, SPEC, len(names))
    np.testing.assert_allclose(np.asarray(lime_eq19.derived(arrays, SPEC, len(names))), got, rtol=1e-12)


@pytest.mark.parametrize("changes", [{}, {"biases": True, "output_link": "sigmoid", "positional": False,
                                      "head_aggregation": "sum"}])
def test_improved_form_sympy_equals_autodiff(changes):
    spec = SPEC.replace(**changes)
    params, tokens = _case(5, scale=2.0, spec=spec)
    doc, names = lime_document(tokens, n_words=LENGTH)
    derived = lime_eq19.improved_approximation(params, tokens, spec, n_words=LENGTH, nu=0.25)
    autodiff = lime_eq19.improved_autodiff(params, doc, spec, len(names), 0.25)
    np.testing.assert_allclose(derived, np.asarray(autodiff), rtol=1e-11, atol=1e-16)


def test_improved_form_beats_eq19_at_the_paper_init():
    # Five random models (paper init), replace mode, exact limits: the improved form's relative
    # L2 error is >= 5x smaller than Eq. (19)'s in the median (measured: ~25x).
    ratios = []
    for seed in range(5):
        params, tokens = _case(10 + seed)
        exact = beta_limit(params, tokens, SPEC, n_words=LENGTH, removal="replace", method="exact").beta
        eq19 = lime_eq19.eq19_approximation(params, tokens, SPEC, n_words=LENGTH)
        improved = lime_eq19.improved_approximation(params, tokens, SPEC, n_words=LENGTH)
        ratios.append(np.linalg.norm(eq19 - exact) / np.linalg.norm(improved - exact))
    assert np.median(ratios) >= 5, ratios


def test_mean_query_has_no_ratio_form_but_eq19_and_the_limit_still_compute():
    spec = SPEC.replace(query="mean")
    params, tokens = _case(6, spec=spec)
    exact = beta_limit(params, tokens, spec, n_words=LENGTH, removal="replace", method="exact")
    assert exact.path == "generic" and np.all(np.isfinite(exact.beta))
    assert np.all(np.isfinite(lime_eq19.eq19_approximation(params, tokens, spec, n_words=LENGTH)))
    with pytest.raises(ValueError, match="query"):
        lime_eq19.improved_approximation(params, tokens, spec, n_words=LENGTH)
