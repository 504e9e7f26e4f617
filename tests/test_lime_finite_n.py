"""Where LIME sits at n samples (`numerics.lime.finite_n`): its first row, the document itself,
still counts at lime's default n when the masks that fix the limit are rare (few words)."""

import json

import jax
import numpy as np
import pytest
from attnverify.numerics import model as nm
from attnverify.numerics.lime import finite_n
from attnverify.numerics.lime.constants import mg_constants
from attnverify.numerics.lime.engine import lime_explain
from attnverify.numerics.lime.limit import beta_limit, masks_from_index
from attnverify.numerics.lime.sampling import kernel_weights, subset_probability
from helpers import lime_case, tokens_of

from attnverify.spec import ModelSpec

SPEC = ModelSpec(max_len=8, d_embed=6, d_att=4, d_out=4, heads=2, vocab_size=30)
RUNS = 96


def test_sigma_is_the_enumerated_kernel_weighted_second_moment():
    # Independent of the alpha constants: E[pi x x^T] summed over every mask with its probability.
    for d, nu in [(2, 0.25), (5, 1.0), (7, 0.1)]:
        z = np.asarray(masks_from_index(np.arange(2**d), d, np.float64))
        weight = np.asarray(subset_probability(d - z.sum(axis=1), d) * kernel_weights(z, nu))
        x = np.hstack([np.ones((2**d, 1)), z])
        np.testing.assert_allclose(finite_n.sigma_matrix(d, nu), (x.T * weight) @ x, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [1000, 5000])
def test_the_centre_at_n_is_where_lime_sits_and_the_limit_is_not(n):
    # Can fail: at d = 2 lime's mean over 96 runs is measured against the centre (within 4 standard
    # errors) and must be far from the limit; a centre without the first row (the document at weight
    # 1) is the limit shrunk by the ridge, and is caught as far from LIME as the limit itself.
    params, doc = lime_case(SPEC, 3, d=2, length=4)
    tokens = tokens_of(doc)
    explanation = lime_explain(params, tokens, SPEC, key=jax.random.PRNGKey(0), n_words=4, n_samples=n, runs=RUNS,
                               nu=0.25, removal="delete")
    mean = explanation.coef.mean(axis=0)
    error = explanation.coef.std(axis=0, ddof=1) / np.sqrt(RUNS)
    limit = beta_limit(params, tokens, SPEC, n_words=4, nu=0.25, removal="delete", method="exact")
    output = float(nm.explained_output(params, nm.embed(params, tokens, SPEC), SPEC))
    centre = finite_n.centre_at_n(limit.intercept, limit.beta, output, nu=0.25, n=n, ridge=1.0)
    assert np.all(np.abs(centre - mean) <= 4 * error), (centre, mean, error)
    assert finite_n.relative_gap(centre, limit.beta) > finite_n.NOTED_GAP
    assert np.any(np.abs(limit.beta - mean) > 100 * error)

    def without_first_row(intercept, beta, *, nu, n, ridge):  # the wrong formula: row 0 left out
        d = beta.size
        gram = (n - 1) * finite_n.sigma_matrix(d, nu) + ridge * np.diag(np.r_[0.0, np.ones(d)])
        return np.linalg.solve(gram, (n - 1) * finite_n.sigma_matrix(d, nu) @ np.r_[intercept, beta])[1:]

    wrong = without_first_row(limit.intercept, limit.beta, nu=0.25, n=n, ridge=1.0)
    assert np.any(np.abs(wrong - mean) > 100 * error)


def test_the_centre_reaches_the_limit_as_n_grows_and_with_more_words():
    # d = 2 at nu = 0.25: the all-removed mask weighs e^-8 / 2 per sample, so n must exceed ~1e4.
    beta, intercept, output = np.array([0.3, -0.2]), 0.1, 0.9
    gaps = [finite_n.relative_gap(finite_n.centre_at_n(intercept, beta, output, nu=0.25, n=n, ridge=0.0), beta)
            for n in (10**3, 10**4, 10**5, 10**6)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.1 > gaps[-1]
    wide = np.linspace(-0.3, 0.3, 10)
    assert finite_n.relative_gap(finite_n.centre_at_n(0.1, wide, 0.9, nu=0.25, n=5000, ridge=0.0), wide) < 0.01
    # a kernel so narrow that every perturbed sample's weight underflows: only the first row counts,
    # and the ridge holds LIME's coefficients at 0 (as lime's are, about 1e-305: docs/cli.md)
    assert float(mg_constants(2, 0.001).alpha[0]) == 0.0
    np.testing.assert_array_equal(finite_n.centre_at_n(intercept, beta, output, nu=0.001, n=5000, ridge=1.0), 0.0)


def test_explain_says_when_lime_at_its_n_sits_far_from_the_limit(tmp_path, capsys):
    from helpers import cli

    tiny = ["--max-len", "8", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "1", "--vocab-size", "12"]
    model = tmp_path / "m.npz"
    assert cli(capsys, "init-model", "--out", model, *tiny)[0] == 0
    code, out, err = cli(capsys, "explain", "--model", model, "--text", "the a", "--lime-samples", "5000")
    assert code == 0 and err == ""
    assert "note: at n = 5000, LIME's coefficients are centred" in out and "away from the limit" in out
    code, out, _ = cli(capsys, "explain", "--model", model, "--text", "the a", "--lime-samples", "5000", "--json")
    result = json.loads(out)
    assert len(result["lime_centre"]) == 2 and result["lime_centre_gap"] > finite_n.NOTED_GAP
    assert set(result["lime_centre_gap_causes"]) == {"first_sample", "ridge"}
    # every word unknown and replaced in place: the output does not move, the limit is rounding noise
    code, out, _ = cli(capsys, "explain", "--model", model, "--text", "qqq www zzz", "--lime-samples", "500",
                       "--removal", "replace", "--json")
    result = json.loads(out)
    assert result["lime_centre_gap"] is None and result["lime_centre_reason"] == (
        "the limit is rounding noise next to the output")
    code, out, _ = cli(capsys, "explain", "--model", model, "--text", "the a an of to and", "--lime-samples", "5000")
    assert code == 0 and "note: at n" not in out  # six words: the limit's masks are common enough


def test_the_two_causes_are_separated_and_each_alone_is_what_it_says():
    # Can fail: the note blamed the first sample alone; at d = 2 and n = 5000 lime's ridge (1 against
    # the all-removed masks' expected total weight (n - 1) e^-8 / 2 = 0.84) is most of the gap.
    beta, intercept, output = np.array([0.0037, 0.00076]), 0.001, 0.0055
    centre = finite_n.causes(intercept, beta, output, nu=0.25, n=5000, ridge=1.0)
    assert centre.ridge > 10 * centre.first_sample and centre.gap > finite_n.NOTED_GAP
    # each cause alone is the centre with the other switched off, and neither gives the limit itself
    alone = finite_n.causes(intercept, beta, output, nu=0.25, n=5000, ridge=0.0)
    assert alone.ridge == pytest.approx(0.0, abs=1e-12) and alone.gap == alone.first_sample
    np.testing.assert_allclose(centre.coef, finite_n.centre_at_n(intercept, beta, output, nu=0.25, n=5000,
                                                                 ridge=1.0))
    assert finite_n.causes(intercept, np.array([1e-18, -2e-18]), output, nu=0.25, n=5000,
                           ridge=1.0) == "the limit is rounding noise next to the output"


def test_the_convergence_rate_claim_holds_at_n_to_the_minus_half_and_refutes_n_to_the_minus_third():
    # Can fail: the claim passed every draw whose slope was within 0.2 of -1/2 (relative error 0.4),
    # so an n^(-1/3) rate (slope -0.33) passed too. It now bounds the mean slope within -1/2 +- 0.1:
    # the slopes measured, and the same slopes scaled by 2/3 (an n^(-1/3) rate), judged by the claim.
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.registry import REGISTRY
    from attnverify.verification.sweep import judge_claim, run_claim

    claim = REGISTRY["lime.convergence_rate"]
    result = run_claim(claim, SPEC, trials=32, progress=False)
    slopes = np.asarray(result.errors)
    assert result.verdict == "pass" and abs(slopes.mean() + 0.5) < 0.05, slopes.mean()
    third = judge_claim(claim, SPEC, slopes * 2 / 3, trials=32)
    assert third.verdict == "fail" and third.unexpected and third.statistics["lower"] > 0.1, third.statistics


# -- numerics.lime.finite_n.relative_gap: measured against the limit, not the centre (kills F3) ------
def test_relative_gap_is_relative_to_the_limit():
    from attnverify.numerics.lime.finite_n import relative_gap

    limit, centre = np.array([3.0, 4.0]), np.array([6.0, 8.0])  # ||limit|| = 5, ||centre - limit|| = 5
    assert relative_gap(centre, limit) == pytest.approx(1.0, rel=1e-15)
    assert relative_gap(limit, centre) == pytest.approx(0.5, rel=1e-15)


def test_a_gap_whose_norms_overflow_is_not_finite_without_numpys_warnings():
    # Can fail: NumPy warned of an overflow in the norm and an invalid division, on stderr, before
    # `explain --lime-samples` refused the number in its one line (a model whose output is near 1e305).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not np.isfinite(finite_n.relative_gap(np.array([1e300, -1e300]), np.array([2e300, 1e300])))
