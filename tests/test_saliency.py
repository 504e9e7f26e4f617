"""Bastings & Filippova (docs/theory.md §8.6, checks 34-35): Integrated Gradients three ways, quadrature,
completeness, the wrong-formula control, the tau-based claims, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics import model as nm
from attnverify.numerics.draws import sweep_draw
from attnverify.numerics.explanations import explain
from attnverify.numerics.related import integrated_gradients as ns
from attnverify.verification import claims as _claims  # noqa: F401
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import relative_error, run_claim
from helpers import draw, judged

from attnverify.errors import InputError
from attnverify.spec import SMALL, ModelSpec

SPEC = ModelSpec(max_len=8, d_embed=6, d_att=4, d_out=5, heads=3, vocab_size=30)


def _relative(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


# -- the three IGs agree; the wrong statement does not --------------------------------------------------
@pytest.mark.parametrize("kind", ns.BASELINES)
@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_statement_and_derived_ig_equal_jax_ig(kind, scale):
    params, tokens = draw(SPEC, 1, scale=scale)
    truth = ns.integrated_gradients(params, tokens, SPEC, kind=kind)[1:]
    stated = ns.statement_integrated_gradients(params, tokens, SPEC, kind=kind)[1:]
    derived = ns.derived_integrated_gradients(params, tokens, SPEC, kind=kind)[1:]
    # same nodes on both sides: only float64 rounding separates them
    assert _relative(stated, truth) < 1e-12
    assert _relative(derived, truth) < 1e-12


@pytest.mark.parametrize("kind", ns.BASELINES)
def test_wrong_ig_formula_is_caught(kind):
    params, tokens = draw(SPEC, 2)
    truth = ns.integrated_gradients(params, tokens, SPEC, kind=kind)[1:]
    wrong = ns.statement_integrated_gradients(params, tokens, SPEC, kind=kind, wrong=True)[1:]
    assert _relative(wrong, truth) > 1e-3  # O(0.1) in practice; the tolerance is 1e-10


@pytest.mark.parametrize("kind", ns.BASELINES)
def test_derived_ig_from_another_specs_derivation_is_caught(kind, monkeypatch):
    """Injected: the derived side uses the SymPy derivation for ``scale_scores=False`` (scores not
    divided by sqrt(d_att)) instead of the spec's own. The claim saliency.ig_derived.<kind> must
    pass on the draw with the correct derivation and fail with the wrong one."""
    claim = f"saliency.ig_derived.{kind}"
    params, tokens = draw(SPEC, 2)
    (lhs, rhs), result = judged([claim], SPEC, params, tokens)[0]
    assert result.passed and _relative(lhs, rhs) < 1e-10
    right = ns._derived_gradient
    # a fresh, unjitted copy, so neither jit cache of the correct derived IG is reused or polluted
    monkeypatch.setattr(ns, "derived_integrated_gradients", ns.derived_integrated_gradients.__wrapped__)
    monkeypatch.setattr(ns, "_derived_gradient", lambda spec: right(spec.replace(scale_scores=False)))
    (lhs, rhs), result = judged([claim], SPEC, params, tokens)[0]
    assert _relative(lhs, rhs) > 1e-3 and not result.passed and result.verdict == "fail"


def test_wrong_baseline_is_caught():
    params, tokens = draw(SPEC, 3)
    zero = ns.integrated_gradients(params, tokens, SPEC, kind="zero")
    unk = ns.integrated_gradients(params, tokens, SPEC, kind="unk")
    assert _relative(unk[1:], zero[1:]) > 1e-3


# -- quadrature and completeness --------------------------------------------------------------------------
def test_gauss_legendre_is_exact_to_degree_2n_minus_1_only():
    nodes, weights = ns.gauss_legendre(4)
    exact = [float(jnp.sum(weights * nodes**p)) - 1 / (p + 1) for p in range(8)]
    assert max(abs(x) for x in exact) < 1e-14  # degree <= 7 = 2 * 4 - 1
    assert abs(float(jnp.sum(weights * nodes**8)) - 1 / 9) > 1e-6  # degree 8 is not


@pytest.mark.parametrize("kind", ns.BASELINES)
def test_quadrature_converges(kind):
    """Per baseline (claims saliency.ig_quadrature_converged.*): too few nodes (1, 2, 4) are
    visibly off the 2 ORDER reference, ORDER nodes agree with it to rounding."""
    params, tokens = draw(SPEC, 4, scale=5.0)  # a sharper integrand than at the paper's init
    reference = ns.integrated_gradients(params, tokens, SPEC, kind=kind, order=2 * ns.ORDER)
    errors = [_relative(ns.integrated_gradients(params, tokens, SPEC, kind=kind, order=n), reference)
              for n in (1, 2, 4, ns.ORDER)]
    assert errors[0] > errors[1] > errors[2] and errors[0] > 1e-5  # too few nodes are visibly off
    assert errors[-1] < 1e-12  # the default order is converged to rounding


@pytest.mark.parametrize("kind", ns.BASELINES)
def test_completeness_holds_and_catches_the_wrong_formula(kind):
    params, tokens = draw(SPEC, 4, scale=5.0)
    total, difference = ns.completeness_gap(params, tokens, SPEC, kind=kind)
    assert abs(float(total - difference)) <= 1e-12 * max(1.0, abs(float(difference)))
    # completeness fails for a wrong formula: the truncated integrand's sum misses f(xi) - f(b)
    wrong = ns.statement_integrated_gradients(params, tokens, SPEC, kind=kind, wrong=True)
    assert abs(float(jnp.sum(wrong[1:]) - difference)) > 1e-6


def test_completeness_sets_aside_an_unconverged_quadrature_and_catches_a_wrong_target(monkeypatch):
    """At --scale 10, 64 nodes can miss: on draw 130 of seed 0 (SMALL) the sum of IG misses f(xi) - f(0)
    by 4.7e-3 of it, and 128 nodes differ from 64 by as much. The claim sets that draw aside (NaN, its
    declared reason) instead of failing completeness for the quadrature's error; on draw 0 (converged:
    4e-13) it is judged and passes. A wrong target, f(xi) - f(UNK document) for the zero baseline, is
    caught on draw 0: the quadrature's convergence is decided from the two sums of IG alone."""
    claim = REGISTRY["saliency.ig_completeness.zero"]
    assert claim.nonfinite_reason and "not converged" in claim.nonfinite_reason

    def error(index):
        params, tokens = sweep_draw(0, index, SMALL, scale=10.0, dtype=jnp.float64)
        lhs, rhs = jax.jit(claim.build(SMALL))(params, tokens)
        return float(relative_error(lhs, rhs))

    assert np.isnan(error(130))
    assert error(0) < 1e-12
    right = ns.output_change
    monkeypatch.setattr(ns, "output_change", lambda params, tokens, spec, kind: right(params, tokens, spec, kind="unk"))
    assert error(0) > 0.1  # 2.4: judged, and far above the tolerance 1e-10


def test_quadrature_holds_a_few_nodes_intermediates_at_once_not_all():
    # Can fail: every node's integrand was evaluated at once (vmap), so a sweep block held every node's
    # intermediates: with the deep scorer's derived gradient, 22 GB at 128 nodes and 128 draws. XLA's own
    # account of the compiled program's scratch memory, for 16 draws: 128 nodes must cost about what one batch does.
    spec = SPEC.replace(scorer="deep")
    params, tokens = jax.vmap(lambda i: sweep_draw(0, i, spec, scale=1.0, dtype=jnp.float64))(jnp.arange(16))

    def scratch(order):
        ig = jax.vmap(lambda p, t: ns.derived_integrated_gradients.__wrapped__(p, t, spec, order=order))
        return jax.jit(ig).lower(params, tokens).compile().memory_analysis().temp_size_in_bytes

    assert scratch(128) < 3 * scratch(4)  # 4 nodes: one batch (ns.NODE_BATCH)


def test_cls_and_unk_positions_get_no_ig_from_the_unk_baseline():
    params, tokens = draw(SPEC, 5)
    tokens = tokens.at[2].set(nm.UNK)
    ig = ns.integrated_gradients(params, tokens, SPEC, kind="unk")
    assert float(ig[0]) == 0.0 and float(ig[2]) == 0.0  # e_t = b_t: no path, no attribution


# -- importances and the exact identities behind check 34 ----------------------------------------------
def test_one_head_alpha_abs_s_is_detached_gxi_magnitude():
    spec = SPEC.replace(heads=1)
    params, tokens = draw(spec, 6)
    imp = ns.importances(params, tokens, spec)
    np.testing.assert_allclose(imp["alpha_abs_s"], jnp.abs(imp["gxi_detached"]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(imp["alpha_avg_abs_s"], imp["alpha_abs_s"], rtol=1e-12, atol=1e-15)
    assert ns.agreement(imp)["alpha_abs_s"] > ns.agreement(imp)["alpha"] - 1e-12


def test_occlusion_is_the_in_place_unk_difference():
    params, tokens = draw(SPEC, 7)
    occ = ns.occlusion(params, tokens, SPEC)
    t = 3
    e = nm.embed(params, tokens, SPEC)
    other = nm.embed(params, tokens.at[t].set(nm.UNK), SPEC)
    expected = nm.explained_output(params, e, SPEC) - nm.explained_output(params, other, SPEC)
    assert abs(float(occ[t - 1] - expected)) < 1e-15


def test_planting_scales_the_chosen_rows_only():
    params, tokens = draw(SPEC, 8)
    planted = ns.plant(params, tokens, 2, 4.0)
    rows = set(np.asarray(tokens[1:3]).tolist())
    for w in range(SPEC.vocab_size):
        factor = 4.0 if w in rows else 1.0
        np.testing.assert_allclose(planted.embedding[w], factor * params.embedding[w], rtol=1e-15)
    # Can fail: a word at two of the planted positions is scaled 4x, not 4 x 4 (one factor per occurrence)
    repeated = tokens.at[2].set(tokens[1])
    planted = ns.plant(params, repeated, 3, 4.0)
    np.testing.assert_allclose(planted.embedding[int(tokens[1])], 4.0 * params.embedding[int(tokens[1])], rtol=1e-15)
    assert planted.embedding.dtype == params.embedding.dtype


# -- claims at small trials --------------------------------------------------------------------------------
@pytest.mark.parametrize("claim_id, passes", [
    ("saliency.control_ig_no_score_term", False),
    ("saliency.tau_gap", True),
    ("saliency.sensitivity_diverges", False),
])
def test_claims_pass_and_fail_as_expected(claim_id, passes):
    result = run_claim(REGISTRY[claim_id], SPEC, trials=32, progress=False)
    assert result.passed is passes
    assert not result.unexpected


def test_the_statement_fails_outside_its_hypothesis():
    # The §8.6 formula assumes the [CLS] query: with the mean query the query moves along the path.
    spec = SPEC.replace(query="mean")
    assert REGISTRY["saliency.ig_statement.zero"].expected(spec) is None
    params, tokens = draw(spec, 11)
    truth = ns.integrated_gradients(params, tokens, spec, kind="zero")[1:]
    stated = ns.statement_integrated_gradients(params, tokens, spec, kind="zero")[1:]
    assert _relative(stated, truth) > 1e-6


# -- bad input and the explain JSON ------------------------------------------------------------------------
@pytest.mark.parametrize("order", [0, -3, 2.5, True])
def test_non_positive_or_non_integer_order_is_refused(order):
    with pytest.raises(InputError, match="quadrature order"):
        ns.gauss_legendre(order)


def test_unknown_baseline_is_refused():
    params, tokens = draw(SPEC, 9)
    with pytest.raises(InputError, match="unknown IG baseline 'mean'"):
        ns.integrated_gradients(params, tokens, SPEC, kind="mean")


def test_explain_reports_ig_aligned_with_the_words():
    params, tokens = draw(SPEC, 10)
    out = explain(params, tokens, SPEC, 5)
    assert out["ig_baseline"] == "unk" and len(out["ig"]) == len(out["grad_x_input"]) == 5
    ig = ns.integrated_gradients(params, tokens, SPEC, kind="unk")
    np.testing.assert_allclose(out["ig"], np.asarray(ig[1:6]), rtol=1e-12)
    assert out["ig_nodes"] == ns.ORDER and "ig_reason" not in out  # at the paper's init 64 nodes suffice


def test_explain_refines_ig_until_it_is_complete_or_says_it_did_not_converge(monkeypatch):
    # Can fail: explain's IG used 64 nodes whatever the model; at init scale 30 attention sharpens along the
    # path, and on this draw IG was 40 % off (its sum off f(e) - f(b)), with no warning. Against 2048 nodes.
    import jax
    from attnverify.numerics.draws import draw_document, draw_params

    from attnverify.spec import SMALL

    params = draw_params(jax.random.PRNGKey(2), SMALL, scale=30.0)
    tokens = draw_document(jax.random.PRNGKey(102), SMALL)
    reference = np.asarray(ns.integrated_gradients(params, tokens, SMALL, kind="unk", order=2048))[1:11]
    coarse = np.asarray(ns.integrated_gradients(params, tokens, SMALL, kind="unk"))[1:11]
    assert np.max(np.abs(coarse - reference)) > 0.1 * np.max(np.abs(reference))  # 64 nodes are not enough here
    out = explain(params, tokens, SMALL, 10)
    assert out["ig_nodes"] > ns.ORDER and "ig_reason" not in out
    np.testing.assert_allclose(out["ig"], reference, atol=1e-8 * np.max(np.abs(reference)))
    monkeypatch.setattr(ns, "MAX_ORDER", 128)  # not enough: no number, and why
    out = explain(params, tokens, SMALL, 10)
    assert out["ig"] is None and out["ig_reason"].startswith(
        "Integrated Gradients did not converge: with 128 Gauss-Legendre nodes their sum misses f(e) - f(b) by ")


@pytest.mark.parametrize("name", ["alpha_abs_s", "alpha_avg_abs_s"])
def test_a_closure_claim_declares_the_range_its_number_lies_in(name):
    # Can fail: without a declared range, draws that all give one number are inconclusive
    # (docs/theory.md §11.3); with one too narrow, a real draw is refused. A closure's number is
    # (T - A) - share (S - A) for mean tau-b T, S, A in [-1, 1]: its extremes are at the cube's corners.
    from attnverify.verification.claims.saliency import CLOSURE_SHARE

    corners = [(t - a) - CLOSURE_SHARE * (s - a) for t in (-1, 1) for s in (-1, 1) for a in (-1, 1)]
    summary = REGISTRY[f"saliency.tau_closure.{name}"].summary
    assert summary.support == (min(corners), max(corners))
    assert summary.judge(np.full(32, 1.0)).outcome == "holds"  # without a range: inconclusive
    assert summary.judge(np.full(32, -1.0)).outcome == "refuted"


# -- mutation testing, round 4: each test below fails on a mutant the file's other tests let through --


# Can fail (a mutant the other tests let through): tau-b of the signed importances
def test_saliency_tau_ranks_magnitudes_not_signed_values():
    from scipy.stats import kendalltau

    x = np.array([0.3, -2.0, 0.1, -0.5, 1.2])
    y = np.array([-0.2, 1.5, -0.05, 0.4, -1.0])
    assert float(ns.tau(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(
        kendalltau(np.abs(x), np.abs(y)).statistic, abs=1e-12)
    assert float(ns.tau(jnp.asarray(x), jnp.asarray(-x))) == pytest.approx(1.0, abs=1e-12)  # same magnitudes


# Can fail (a mutant the other tests let through): a method paired with itself in the saliency mean
def test_agreement_is_the_mean_tau_over_distinct_pairs_and_over_the_saliency_methods():
    from scipy.stats import kendalltau

    params, tokens = draw(SPEC, 3)
    imp = ns.importances(params, tokens, SPEC)
    out = ns.agreement(imp)

    def tau(a, b):
        return kendalltau(np.abs(np.asarray(imp[a])), np.abs(np.asarray(imp[b]))).statistic

    methods = ns.SALIENCY
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    assert len(pairs) == len(methods) * (len(methods) - 1) // 2
    assert float(out["saliency"]) == pytest.approx(np.mean([tau(a, b) for a, b in pairs]), abs=1e-12)
    for name in ns.ATTENTION:
        assert float(out[name]) == pytest.approx(np.mean([tau(name, m) for m in methods]), abs=1e-12)


# Can fail (a mutant the other tests let through): alpha-avg |s-avg| read as alpha-avg x mean |s|
def test_the_two_multi_head_readings_of_alpha_abs_s_are_as_defined():
    """importances' docstring: alpha_abs_s = 1/K sum_i alpha_t^(i) |s_t^(i)|, alpha_avg_abs_s =
    alpha-avg_t |s-avg_t| with s-avg_t = 1/K sum_i s_t^(i); the other test has one head, where they agree."""
    params, tokens = draw(SPEC, 9)
    imp = ns.importances(params, tokens, SPEC)
    e = nm.embed(params, tokens, SPEC)
    alpha = np.asarray(nm.attention(params, e, SPEC))
    s = np.asarray(nm.readouts(params, e, SPEC))[:, :, SPEC.explained_class]
    assert np.max(np.abs(s).mean(axis=0) - np.abs(s.mean(axis=0))) > 1e-3  # heads disagree in sign somewhere
    np.testing.assert_allclose(imp["alpha_avg_abs_s"], (alpha.mean(axis=0) * np.abs(s.mean(axis=0)))[1:],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(imp["alpha_abs_s"], (alpha * np.abs(s)).mean(axis=0)[1:], rtol=1e-12, atol=1e-15)
