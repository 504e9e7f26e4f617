"""Theorem 2 / Eq. (19): the SymPy chain, the 2/3 special case, the improved closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.lime import eq19_form as lime_eq19
from attnverify.numerics.lime import fixed_normaliser as lime_fixed
from attnverify.numerics.lime import ratio_form as lime_ratio
from attnverify.numerics.lime.document import lime_document, random_document
from attnverify.numerics.lime.limit import beta_limit
from attnverify.numerics.lime.structured import aggregate, link
from attnverify.theory import eq19 as theory
from attnverify.theory import mardaoui_garreau as mg
from attnverify.theory import memo
from attnverify.theory.calculus import prove_equal
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import relative_error

from attnverify.spec import PAPER, ModelSpec

SPEC = ModelSpec(max_len=12, d_embed=8, d_att=4, d_out=5, heads=3, vocab_size=40)
D, LENGTH = 6, 9


def _case(seed, scale=1.0, spec=SPEC):
    params = draw_params(jax.random.PRNGKey(seed), spec, scale=scale)
    doc = random_document(jax.random.PRNGKey(seed + 50), D, LENGTH, spec.max_len, spec.vocab_size)
    return params, np.asarray(doc.tokens)


# -- symbolic ------------------------------------------------------------------------------------
def test_paper_route_applies_independence_to_gamma_only_and_lands_on_three_halves():
    derivation = theory.derive_eq19(PAPER)
    assert derivation.proved and not derivation.unmet and derivation.coefficient == sp.Rational(3, 2)
    coefficients = {st.name: st.coefficient for st in derivation.steps if st.coefficient is not None}
    assert coefficients["MG, exact"] == 1  # exact for additive f: no 3/2 yet
    a0, a1, a2 = mg.alpha_sym[:3]
    kappa = coefficients["independence in Gamma only"]  # the step that changes it, Sigma^-1 left exact
    assert sp.simplify(kappa - a1 * (a0 - a1) / (a0 * (a1 - a2))) == 0
    d = theory.D
    assert sp.simplify(coefficients["wide kernel"] - sp.Rational(3, 2) * (d - 1) / d) == 0
    assert coefficients["large d"] == sp.Rational(3, 2)


def test_consistent_route_applies_independence_to_sigma_and_gamma_and_keeps_coefficient_one():
    derivation = theory.derive_eq19(PAPER, route="consistent")
    coefficients = [st.coefficient for st in derivation.steps if st.coefficient is not None]
    assert coefficients == [1, 1, 1, 1] and derivation.coefficient == 1
    assert "Sigma and Gamma" in derivation.steps[4].name
    assert not derivation.proved  # it does not end on Eq. (19) ...
    assert prove_equal(sp.Rational(3, 2) * derivation.derived, derivation.statement, theory.RANGES)  # ... on 2/3 of it
    # the independence moment in both Sigma and Gamma: beta = c exactly (LIME recovers additive f)
    independent = theory.independent_moment()
    beta = theory.additive_beta(independent, independent)
    assert sp.simplify(beta - theory.c_j) == 0
    assert sp.simplify(theory.additive_beta(independent) - theory.c_j) != 0  # Gamma only: not c


def test_a_wrong_constant_or_a_changed_spec_is_not_proved():
    derivation = theory.derive_eq19(PAPER)
    assert not prove_equal(derivation.derived, sp.Rational(2, 3) * derivation.statement, theory.RANGES)
    summed = theory.derive_eq19(PAPER.replace(head_aggregation="sum"))
    assert not summed.proved and "head_aggregation" in summed.unmet
    assert "query" in theory.derive_eq19(PAPER.replace(query="mean")).unmet
    with pytest.raises(ValueError, match="route"):
        theory.derive_eq19(PAPER, route="independent")


def _eq19_with(constant):
    """Eq. (19) as the module types it, with `constant` in place of the paper's 3/2."""
    typed = theory.eq19_statement

    def statement():
        return typed() * constant / sp.Rational(3, 2)

    return statement


def test_a_wrongly_typed_eq19_is_caught_symbolically_and_by_the_claim(monkeypatch):
    # The chain never reads the statement, so typing Eq. (19) with 1 instead of 3/2 must make the
    # proof fail and the registry claim (chain from jax.grad of the true model vs the compiled
    # statement) fail on every draw, while the correct statement passes on the same draws.
    claim = REGISTRY["thm2.chain_equals_statement"]
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    params, tokens = draw_params(k1, SPEC, scale=2.0), draw_document(k2, SPEC)

    def error():
        return float(relative_error(*claim.build(SPEC)(params, tokens)))

    assert error() <= claim.tolerance["float64"] and theory.derive_eq19(SPEC).proved
    monkeypatch.setattr(theory, "eq19_statement", _eq19_with(sp.Integer(1)))
    memo.forget()  # derive afresh with the replaced statement
    assert not theory.derive_eq19(SPEC).proved
    assert abs(error() - 0.5) < 1e-9  # (3/2 c - c) / c, whatever the draw


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


@pytest.mark.parametrize("changes", [{}, {"biases": True, "output_link": "sigmoid", "head_aggregation": "sum"}])
def test_fixed_normaliser_gradient_equals_the_sympy_coefficient(changes):
    # Step 3 of the chain two ways: sympy.diff of the index expression, compiled, and jax.grad of the
    # true model with its normaliser fixed (numerics.lime.fixed_normaliser); at z = 1 for the sigmoid.
    spec = SPEC.replace(**changes)
    params, tokens = _case(8, scale=2.0, spec=spec)
    doc, names = lime_document(tokens, n_words=LENGTH)
    by_jax = lime_fixed.chain_coefficients(params, doc, spec, len(names))
    by_sympy = lime_eq19.additive_part(lime_eq19.quantities(params, doc, spec, len(names)), spec, len(names))
    np.testing.assert_allclose(np.asarray(by_jax), np.asarray(by_sympy), rtol=1e-11, atol=1e-15)
    # the frozen normaliser matters: the true model's own gradient at z = 1 is another vector
    form = lime_ratio.ratio_form(params, doc, spec, len(names))
    true = jax.grad(lambda z: link(aggregate(lime_ratio.heads(form, z), spec), spec))(jnp.ones(len(names)))
    assert np.max(np.abs(np.asarray(true - by_jax))) > 1e-3 * np.max(np.abs(np.asarray(by_jax)))


@pytest.mark.parametrize("nu", [0.25, float("inf")])
def test_consistent_chain_is_the_exact_limit_when_scores_are_equal(nu):
    # W_k = 0: the normaliser does not move, f is additive, and the consistent route (coefficient 1)
    # is LIME's exact limit for every nu; the paper's route (3/2) is off by half of it.
    params, tokens = _case(3, scale=2.0)
    params = params._replace(W_k=jnp.zeros_like(params.W_k))
    doc, names = lime_document(tokens, n_words=LENGTH)
    exact = beta_limit(params, tokens, SPEC, n_words=LENGTH, removal="replace", nu=nu, method="exact").beta
    c = np.asarray(lime_fixed.chain_coefficients(params, doc, SPEC, len(names)))
    routes = {r: float(theory.derive_eq19(SPEC, r).coefficient) * c for r in theory.ROUTES}
    np.testing.assert_allclose(routes["consistent"], exact, rtol=0, atol=1e-10 * np.max(np.abs(exact)))
    np.testing.assert_allclose(routes["paper"], 1.5 * exact, rtol=0, atol=1e-10 * np.max(np.abs(exact)))


@pytest.mark.parametrize("changes", [{}, {"biases": True, "output_link": "sigmoid", "positional": False,
                                      "head_aggregation": "sum"}])
def test_improved_form_sympy_equals_autodiff(changes):
    spec = SPEC.replace(**changes)
    params, tokens = _case(5, scale=2.0, spec=spec)
    doc, names = lime_document(tokens, n_words=LENGTH)
    derived = lime_eq19.improved_approximation(params, tokens, spec, n_words=LENGTH, nu=0.25)
    autodiff = lime_eq19.improved_autodiff(params, doc, spec, len(names), 0.25)
    np.testing.assert_allclose(derived, np.asarray(autodiff), rtol=1e-11, atol=1e-16)


def test_a_wrong_improved_form_is_caught_by_the_claim(monkeypatch):
    """thm2.improved_derived compares the SymPy-derived improved form with jax.grad of the ratio
    form at the mean mask (nu = 0.25). Two wrong forms fed to its comparison must exceed its
    tolerance on a draw where the derived one passes: the form at nu = oo (the wide kernel's mean
    mask, the nu that Eq. (19) takes) and the form off by 1 %."""
    claim = REGISTRY["thm2.improved_derived"]
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    params, tokens = draw_params(k1, SPEC, scale=2.0), draw_document(k2, SPEC)
    right = lime_eq19.improved
    forms = {
        "derived": right,
        "nu = oo": lambda arrays, spec, d, nu: right(arrays, spec, d, float("inf")),
        "1.01 x": lambda arrays, spec, d, nu: 1.01 * right(arrays, spec, d, nu),
    }

    @jax.jit  # the claim's comparison with each form, traced into one program
    def errors(params, tokens):
        out = {}
        for name, form in forms.items():
            with monkeypatch.context() as patch:
                patch.setattr(lime_eq19, "improved", form)
                out[name] = relative_error(*claim.build(SPEC)(params, tokens))
        return out

    errors = {name: float(value) for name, value in errors(params, tokens).items()}
    assert errors.pop("derived") <= claim.tolerance["float64"]
    assert all(value > 1e-3 for value in errors.values()), errors  # >= 1e7 x the tolerance


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


def test_the_slope_studys_scalar_model_gives_two_thirds_of_eq19_when_every_score_is_equal():
    # bench/eq19_slope_study.py (docs/theory.md §6.3) builds its own f and Eq. (19). Where every
    # score is equal, UNK's included, the exact limit is 2/3 of Eq. (19) (§6.3, derived); a study
    # whose f or Eq. (19) were wired wrongly would show another slope. Can fail: with UNK scored
    # apart, the limit is no longer 2/3 of Eq. (19).
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "bench" / "eq19_slope_study.py"
    module_spec = importlib.util.spec_from_file_location("eq19_slope_study", path)
    study = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(study)
    read_outs = jax.random.normal(jax.random.PRNGKey(3), (study.D,))
    for unk_score, nu in ((0.0, 0.25), (0.0, float("inf")), (-4.0, 0.25)):
        beta, eq19 = map(np.asarray, study.scalar_limit(jnp.zeros(study.D), read_outs, unk_score, nu))
        equal = np.allclose(beta, 2 / 3 * eq19, rtol=1e-10, atol=1e-14)
        assert equal == (unk_score == 0.0), (unk_score, nu, beta / eq19)


# -- theory.eq19: every non-logit link is an unmet assumption of the chain (kills E1) --------------
@pytest.mark.parametrize("link", ["sigmoid", "softmax"])
def test_eq19_names_every_output_link_but_the_raw_logit_as_unmet(link):
    from attnverify.theory.eq19 import spec_assumptions

    from attnverify.spec import PAPER

    # sigmoid and softmax of an additive logit are not additive in z (e.g. softmax over 2 classes is
    # sigmoid of the logit difference), so step 2's additivity fails for both
    assert "output_link" not in spec_assumptions(PAPER)
    assert "output_link" in spec_assumptions(PAPER.replace(output_link=link))


# -- theory.eq19.equal_score_case: its proof fails when LIME does not recover an additive f (kills E4)
def test_equal_score_case_is_not_proved_when_lime_does_not_recover_an_additive_function(monkeypatch):
    from attnverify.theory import eq19

    from attnverify.spec import PAPER

    eq19.equal_score_case.cache_clear()
    try:
        assert eq19.equal_score_case(PAPER)["proved"] is True
        eq19.equal_score_case.cache_clear()
        # a wrong step 4 (LIME returning 2 c_j on an additive f): the 2/3 no longer follows from it
        monkeypatch.setattr(eq19, "additive_beta", lambda *a, **k: 2 * eq19.c_j)
        assert eq19.equal_score_case(PAPER)["proved"] is False
    finally:
        eq19.equal_score_case.cache_clear()
