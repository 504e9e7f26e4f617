"""The shell form of LIME's limit: its moments, its exact cases, its accuracy, its bad input."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics.draws import draw_params
from attnverify.numerics.lime import eq19_form as lime_eq19
from attnverify.numerics.lime import shell_form as lime_shell
from attnverify.numerics.lime import structured as lime_structured
from attnverify.numerics.lime.document import random_document
from attnverify.numerics.lime.limit import beta_limit, enumerated_gamma, limit_from_gamma
from attnverify.numerics.lime.sampling import sample_masks
from attnverify.theory import mardaoui_garreau as lime_theory
from attnverify.theory.lime_shell import derive_shell
from helpers import small_lime_case

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

SPEC = ModelSpec(max_len=24, d_embed=8, d_att=4, d_out=5, heads=3, vocab_size=40)
D, LENGTH = 6, 14


def _case(seed, spec=SPEC):
    params = draw_params(jax.random.PRNGKey(seed), spec)
    doc = random_document(jax.random.PRNGKey(seed + 50), D, LENGTH, spec.max_len, spec.vocab_size)
    return params, doc


# -- symbolic ------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [3, 5])
def test_shell_moments_equal_counting_subsets(d):
    """E[z_0 | s] and E[z_0 z_1 | s] by listing every k-subset, against the SymPy forms."""
    r = derive_shell()
    assert all(r.checks.values())
    for k in range(d + 1):
        subsets = [set(c) for c in itertools.combinations(range(d), k)]
        mean = sp.Rational(sum(0 in c for c in subsets), len(subsets))
        pair = sp.Rational(sum({0, 1} <= c for c in subsets), len(subsets))
        at = {lime_theory.d: d, lime_theory.s: d - k}
        assert r.mean.subs(at) == mean and sp.simplify(r.pair.subs(at) - pair) == 0


# -- exact cases -----------------------------------------------------------------------------------
def _linear(c0, c):
    def value_and_grad(point, s_rest):
        return jax.value_and_grad(lambda z: c0 + z @ c)(point)

    return value_and_grad


@pytest.mark.parametrize("nu", [0.1, 0.25, float("inf")])
@pytest.mark.parametrize("exact", [(), (4,), (0, 5, 2)])
def test_a_model_linear_in_z_is_recovered_exactly(nu, exact):
    """Exact for every set of features held exactly (their states enumerated, the rest expanded)."""
    c = jax.random.normal(jax.random.PRNGKey(1), (7,), jnp.float64)
    beta = lime_shell.shell_limit(_linear(0.3, c), 7, nu, jnp.float64, jnp.asarray(exact, jnp.int32))
    np.testing.assert_allclose(beta, c, rtol=0, atol=1e-11)


def test_strata_probabilities_equal_counting_subsets():
    d, m = 6, 2
    log_stratum = lime_shell._compiled()["log_stratum"]
    for k in range(d + 1):
        subsets = list(itertools.combinations(range(d), k))
        for state in itertools.product((0, 1), repeat=m):
            count = sum(all((i in c) == bool(x) for i, x in enumerate(state)) for c in subsets)
            a = sum(state)
            if 0 <= k - a <= d - m:
                p = np.exp(log_stratum(jnp.asarray([float(a)]), float(m), float(d - k), float(d)))[0]
                assert abs(p - count / len(subsets)) < 1e-12


def test_a_model_with_one_interaction_needs_the_word_held_exactly():
    """f = z_0 z_1 is not linear: the plain shell form misses LIME's limit, holding z_0 exactly
    makes every stratum linear in the rest, so the result is exact (checked by enumeration)."""
    d, nu = 6, 0.25
    gamma, _ = enumerated_gamma(lambda z: z[:, 0] * z[:, 1], d, nu)
    exact_limit = limit_from_gamma(gamma, d, nu)[1:]

    def value_and_grad(point, s_rest):
        return jax.value_and_grad(lambda z: z[0] * z[1])(point)

    plain = lime_shell.shell_limit(value_and_grad, d, nu, jnp.float64)
    held = lime_shell.shell_limit(value_and_grad, d, nu, jnp.float64, jnp.asarray([0], jnp.int32))
    np.testing.assert_allclose(held, exact_limit, rtol=0, atol=1e-12)
    assert np.max(np.abs(plain - exact_limit)) > 1e-3


def test_a_wrong_covariance_is_caught(monkeypatch):
    """Negative control: dropping the between-feature covariance of the k-subset law (treating
    the mask entries as independent within a shell) breaks the exact linear case."""
    compiled = dict(lime_shell._compiled())
    r = derive_shell()
    s, d = lime_theory.s, lime_theory.d
    from attnverify.theory import lime_shell as theory

    wrong = r.mean * theory.f_s + r.c_same * theory.g_j  # no c_other (G - g_j) term
    compiled["gamma_j"] = sp.lambdify((theory.f_s, theory.g_j, theory.G, s, d), wrong, modules="jax")
    monkeypatch.setattr(lime_shell, "_compiled", lambda: compiled)
    c = jax.random.normal(jax.random.PRNGKey(1), (7,), jnp.float64)
    beta = lime_shell.shell_limit(_linear(0.3, c), 7, 0.25, jnp.float64)
    assert np.max(np.abs(beta - c)) > 1e-3  # (no feature held: every feature goes through c_other)


def test_deletion_extension_is_the_deletion_model_on_binary_masks():
    params, doc = _case(0)
    tab = lime_structured.tables(params, SPEC, SPEC.max_len)
    form = lime_structured.delete_form(tab, doc.tokens, doc.feature, D)
    z = sample_masks(jax.random.PRNGKey(2), 64, D)
    model = lime_structured.delete_outputs(form, tab, z, SPEC)
    sharp = jax.vmap(lime_shell.deletion_extension(form, tab, SPEC, jnp.full((SPEC.max_len,), 1e-3)))(z)
    np.testing.assert_allclose(sharp, model, rtol=0, atol=1e-12)
    # the smoothing the shell form uses does change the values (so the check above can fail)
    smooth = jax.vmap(lime_shell.deletion_extension(form, tab, SPEC, jnp.full((SPEC.max_len,), 1.0)))(z)
    assert np.max(np.abs(smooth - model)) > 1e-4


# -- accuracy ------------------------------------------------------------------------------------
#: d = 16 features over 24 words: the shell form holds 4 words exactly and expands the other 12 (at d = 6
#: only 2 would be approximated). The registry's thm2.shell_gain_* claims do this at the paper's widths.
GAIN_SPEC = ModelSpec(max_len=25, d_embed=16, d_att=8, d_out=8, heads=3, vocab_size=60)
GAIN_D, GAIN_LENGTH = 16, 24


@pytest.mark.parametrize("removal", ["replace", "delete"])
def test_shell_form_is_five_times_closer_to_the_exact_limit_than_eq19(removal):
    ratios = []
    for seed in range(3):
        params = draw_params(jax.random.PRNGKey(seed), GAIN_SPEC)
        doc = random_document(jax.random.PRNGKey(seed + 50), GAIN_D, GAIN_LENGTH, GAIN_SPEC.max_len,
                              GAIN_SPEC.vocab_size)
        tokens = np.asarray(doc.tokens)
        exact = beta_limit(params, tokens, GAIN_SPEC, n_words=GAIN_LENGTH, removal=removal, method="exact").beta
        assert exact.shape == (GAIN_D,)
        shell = lime_shell.shell_approximation(params, tokens, GAIN_SPEC, n_words=GAIN_LENGTH, removal=removal)
        eq19 = lime_eq19.eq19_approximation(params, tokens, GAIN_SPEC, n_words=GAIN_LENGTH)
        ratios.append(np.linalg.norm(shell - exact) / np.linalg.norm(eq19 - exact))
    assert np.median(ratios) < 0.2, ratios


@pytest.mark.parametrize(("removal", "switch"), [("replace", {"query": "mean"}), ("delete", {"scorer": "additive"})])
def test_shell_gain_claims_are_not_computed_where_no_fast_evaluation_serves_the_spec(removal, switch):
    # Can fail: with --query mean the replacement claims evaluated the whole model of the paper's widths on 2^16
    # masks per draw (77 GB at once: `verify --query mean` stopped with "out of memory"), and with --scorer additive
    # the deletion claims took over ten minutes for 32 draws. Both specs are outside the claims' hypotheses.
    from attnverify.numerics.draws import sweep_draw
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.registry import REGISTRY

    from attnverify.spec import SMALL

    spec = SMALL.replace(**switch)
    claim = REGISTRY[f"thm2.shell_gain_{removal}.scale1"]
    assert not spec.satisfies(dict(claim.requires))
    params, tokens = sweep_draw(0, 0, spec, scale=1.0, dtype=jnp.float64)
    shell, eq19 = jax.jit(claim.build(spec))(params, tokens)
    assert np.isnan(shell) and np.isnan(eq19)  # reported "Not computed outside its hypotheses"


# -- bad input -----------------------------------------------------------------------------------
def test_shell_form_bad_input():
    params, doc = _case(0)
    tokens = np.asarray(doc.tokens)
    with pytest.raises(InputError, match="shell form: query=.mean. changes with the mask"):
        lime_shell.shell_approximation(draw_params(jax.random.PRNGKey(0), SPEC.replace(query="mean")), tokens,
                                       SPEC.replace(query="mean"), n_words=LENGTH)
    with pytest.raises(InputError, match="deletion extension needs the word"):
        spec = SPEC.replace(value_nonlinearity="tanh")
        lime_shell.shell_approximation(draw_params(jax.random.PRNGKey(0), spec), tokens, spec, n_words=LENGTH,
                                       removal="delete")
    with pytest.raises(InputError, match="nu must be > 0"):
        lime_shell.shell_approximation(params, tokens, SPEC, n_words=LENGTH, nu=0.0)
    with pytest.raises(InputError, match="d = 1"):
        lime_shell.shell_approximation(params, tokens, SPEC, words=["a"] * LENGTH)


def test_position_widths_are_the_removed_counts_variance_plus_the_floor_squared():
    # docs/theory.md §6.5: w_t^2 = Var(P_t | s) + 0.5^2. The variance by enumerating every subset of
    # s of the d features (P_t moves back by the removed features' occurrences up to t).
    import types

    feature = [0, 1, 0, 2, 3, 1]  # the word positions' features, d = 4
    d = 4
    occurrences = np.array([[sum(f == j for f in feature[: t + 1]) for t in range(len(feature))] for j in range(d)],
                           float)
    form = types.SimpleNamespace(occurrences=jnp.asarray(occurrences))
    for s in range(d + 1):
        removed = np.array([occurrences[list(subset)].sum(axis=0) for subset in itertools.combinations(range(d), s)])
        widths = np.asarray(lime_shell.position_widths(form, jnp.asarray(float(s)), float(d)))
        np.testing.assert_allclose(widths**2, removed.var(axis=0) + 0.5**2, rtol=1e-12, atol=1e-12)


# -- theory.lime_shell: the within-shell variance of a linear statistic (kills LS1) ---------------
def test_shell_variance_of_a_linear_statistic_is_the_enumerated_one():
    import sympy as sp
    from attnverify.theory import lime_shell as ls
    from attnverify.theory import mardaoui_garreau as mg

    variance = sp.lambdify((ls.sum_c, ls.sum_c2, mg.s, mg.d), ls.derive_shell().variance)
    rng = np.random.default_rng(0)
    for d in (2, 3, 5, 6):
        c = rng.standard_normal(d)
        for s in range(1, d + 1):  # s removed, a uniform (d - s)-subset kept
            stats = [c[list(kept)].sum() for kept in itertools.combinations(range(d), d - s)]
            want = np.var(stats)  # population variance over the equally likely subsets
            got = variance(c.sum(), (c**2).sum(), s, d)
            assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (d, s, got, want)


# -- numerics.lime.shell_form at small d, where the default 4 held words exceed d - 2 (kills SF4) ---
def _kernel_np(s, d, nu):
    """lime's kernel sqrt(exp(-D^2 / w^2)), D = 100 (1 - cos), w = 100 nu, written from lime's code."""
    cos = np.sqrt(d - s) / np.sqrt(d)
    return np.sqrt(np.exp(-((100 * (1 - cos)) ** 2) / (100 * nu) ** 2))


def _enumerated_limit(params, tokens, spec, length, nu):
    """beta^inf by NumPy: all 2^d masks, P(z) = 1/(d C(d, s)), Sigma and Gamma summed, np.linalg.solve."""
    from attnverify.numerics.lime import evaluation as lime_eval
    from attnverify.numerics.lime.document import lime_document

    doc, names = lime_document(tokens, n_words=length)
    d = len(names)
    z = np.array([m for m in itertools.product((0.0, 1.0), repeat=d) if 0.0 in m])
    s = d - z.sum(1)
    w = _kernel_np(s, d, nu) / (d * np.array([math.comb(d, int(k)) for k in s]))
    f = np.asarray(lime_eval.outputs(params, doc, jnp.asarray(z), spec=spec, removal="replace", path="generic"))
    x = np.hstack([np.ones((len(z), 1)), z])
    return np.linalg.solve((x.T * w) @ x, (x.T * w) @ f)[1:]


@pytest.mark.parametrize("d", [3, 4, 5])
def test_shell_form_with_the_default_held_words_is_a_number_at_small_d(d):
    from attnverify.numerics.lime.shell_form import shell_approximation

    spec, params, tokens, length = small_lime_case(d=d, length=d + 1, seed=1)
    got = np.asarray(shell_approximation(params, tokens, spec, nu=0.25, n_words=length))  # default exact_words = 4
    assert np.all(np.isfinite(got)), got
    want = _enumerated_limit(params, tokens, spec, length, 0.25)
    assert np.linalg.norm(got - want) <= 0.02 * np.linalg.norm(want), (got, want)  # measured: < 7e-4


@pytest.mark.parametrize("max_len", [3, 4])
def test_the_shell_claim_holds_on_documents_of_two_or_three_words_and_still_catches_a_wrong_form(
        max_len, monkeypatch):
    # Can fail: at d = 3 the claim held two of the three features exactly, and the one expanded feature's pair
    # moments were 0/0: every draw NaN, FAIL (UNEXPECTED). At d = 2 Sigma's entries reach 5,970 (at most 41 from
    # d = 4 on), and a right shell form was 6.5e-10 off against the tolerance of 1e-10 (FAIL, unexpected).
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
    from attnverify.verification.registry import REGISTRY
    from attnverify.verification.sweep import run_claim
    from helpers import draw, judged

    from attnverify.spec import SMALL

    spec = SMALL.replace(max_len=max_len, d_embed=1)
    assert run_claim(REGISTRY["thm2.shell_linear_exact"], spec, trials=32, progress=False).verdict == "pass"
    # the error's unit (max |sigma| / 41 at d <= 3) does not hide a wrong form: no between-feature covariance
    compiled = dict(lime_shell._compiled())
    r = derive_shell()
    from attnverify.theory import lime_shell as theory

    wrong = r.mean * theory.f_s + r.c_same * theory.g_j
    compiled["gamma_j"] = sp.lambdify((theory.f_s, theory.g_j, theory.G, lime_theory.s, lime_theory.d), wrong,
                                      modules="jax")
    monkeypatch.setattr(lime_shell, "_compiled", lambda: compiled)
    (_, result), = judged(["thm2.shell_linear_exact"], spec, *draw(spec, 0))
    assert result.verdict == "fail" and result.max_error > 1e-6, result
