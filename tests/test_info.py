"""Wen et al. (docs/theory.md §8.5): the Gumbel-max law (SymPy), plug-in mutual information with
Miller-Madow, the near-tie count, Gumbel-softmax entropy, and the synthetic tasks."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
import sympy as sp
from attnverify.numerics.related import mutual_information as ninfo
from attnverify.numerics.training import synthetic_tasks as tasks
from attnverify.theory.related import info as tinfo
from attnverify.verification import claims as _claims  # noqa: F401
from attnverify.verification.claims import info as ci
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import run_claim
from helpers import draw, judged

from attnverify.errors import InputError
from attnverify.spec import ModelSpec


# -- Gumbel-max, derived -------------------------------------------------------------------------------
def test_gumbel_max_is_softmax_and_a_wrong_law_is_caught():
    assert tinfo.prove_gumbel_max(3)
    assert tinfo.prove_zero_temperature_limit()
    # Can fail: the limit is derived from the softmax; the loser's weight tends to 0, a tie stays at 1/2
    d = sp.Symbol("d", positive=True)
    assert tinfo.zero_temperature_limit(-d) == 0 and tinfo.zero_temperature_limit(sp.Integer(0)) == sp.Rational(1, 2)
    gamma = tinfo.scores(3)
    wrong = sp.exp(2 * gamma[0]) / sum(sp.exp(2 * g) for g in gamma)
    assert sp.simplify(tinfo.gumbel_max_derived(gamma, 0) - wrong) != 0


def test_gumbel_frequencies_and_entropy():
    gamma = jnp.array([0.5, -1.0, 2.0, 0.0])
    noise = ninfo.gumbel_noise(jax.random.PRNGKey(0), 100_000, 4)
    alpha = jax.nn.softmax(gamma)
    z = (ninfo.hard_attention_frequencies(gamma, noise) - alpha) / jnp.sqrt(alpha * (1 - alpha) / 100_000)
    assert float(jnp.max(jnp.abs(z))) < 5  # binomial standard errors
    entropies = [float(ninfo.mean_entropy(ninfo.gumbel_softmax(gamma, noise, t))) for t in ninfo.TEMPERATURES]
    # Can fail: a temperature ignored gave equal entropies, which the former `== sorted(...)` let through. The
    # oracle is SciPy's softmax of (gamma + g) / tau on the same noise, and the entropy rises strictly with tau.
    for tau, entropy in zip(ninfo.TEMPERATURES, entropies, strict=True):
        p = scipy.special.softmax((np.asarray(gamma, np.float64) + np.asarray(noise, np.float64)) / tau, axis=1)
        assert entropy == pytest.approx(np.mean(scipy.stats.entropy(p, axis=1)), rel=1e-4)
    assert np.all(np.diff(entropies) > 0.1) and entropies[0] < 0.1 < np.log(4) - entropies[-1]
    with pytest.raises(InputError, match="tau must be > 0"):
        ninfo.gumbel_softmax(gamma, noise, 0.0)


def test_gumbel_softmax_at_the_smallest_temperatures_is_its_one_hot_limit():
    # Can fail: unshifted, (gamma + g) / 3e-308 overflows to inf wherever |gamma + g| > 5.4 and the
    # softmax is inf - inf = NaN. The limit tau -> 0+ is the one-hot of the argmax (entropy 0), and
    # tau = inf gives the uniform law (entropy log T).
    gamma = jnp.array([10.0, -10.0, 20.0, 0.0])
    noise = ninfo.gumbel_noise(jax.random.PRNGKey(0), 64, 4)
    for tau in (3e-308, 1e-300):
        samples = ninfo.gumbel_softmax(gamma, noise, tau)
        winners = np.argmax(np.asarray(gamma)[None] + np.asarray(noise), axis=1)
        np.testing.assert_array_equal(np.asarray(samples), np.eye(4)[winners])
        assert float(jnp.max(ninfo.softmax_entropy(ninfo.gumbel_logits(gamma, noise, tau)))) == 0.0
    uniform = ninfo.softmax_entropy(ninfo.gumbel_logits(gamma, noise, float("inf")))
    np.testing.assert_allclose(np.asarray(uniform), np.log(4), rtol=1e-15)
    # Below the smallest normal number XLA on CPU computes as if tau were 0 (0 / 0): refused, per dtype.
    with pytest.raises(InputError, match="smallest normal float64"):
        ninfo.gumbel_logits(gamma, noise, 5e-324)
    with pytest.raises(InputError, match="smallest normal float32"):
        ninfo.gumbel_logits(gamma.astype(jnp.float32), noise.astype(jnp.float32), 1e-40)
    assert np.isfinite(np.asarray(ninfo.gumbel_logits(gamma, noise, 1e-40))[:, 0]).all()  # normal in float64


# -- mutual information ---------------------------------------------------------------------------------
def test_exact_mi_of_known_laws():
    assert float(ninfo.exact_mi(jnp.full((3, 2), 1 / 6))) == pytest.approx(0.0, abs=1e-15)
    assert float(ninfo.exact_mi(jnp.eye(2) / 2)) == pytest.approx(np.log(2), abs=1e-15)


def test_miller_madow_removes_the_plugin_bias():
    # Independent X (4 values) and Y (2 values): the true MI is 0 and the plug-in bias is
    # about (4 - 1)(2 - 1) / (2N); the correction removes it (mean over 400 samples of N = 200).
    keys = jax.random.split(jax.random.PRNGKey(0), 400)

    def one(key):
        kx, ky = jax.random.split(key)
        table = ninfo.counts(jax.random.randint(kx, (200,), 0, 4), jax.random.randint(ky, (200,), 0, 2), 4, 2)
        return ninfo.plugin_mi(table, miller_madow=False), ninfo.plugin_mi(table)

    raw, corrected = jax.vmap(one)(keys)
    standard_error = float(jnp.std(raw)) / 20
    assert abs(float(raw.mean()) - 3 / 400) < 4 * standard_error
    assert abs(float(corrected.mean())) < 4 * standard_error


def test_miller_madow_on_a_model_that_predicts_one_class_compares_nothing():
    # Can fail: at --heads 1 the planted model predicts class 1 on all 81 enumerated documents, so every MI and
    # both estimators were exactly 0 on every draw, and the claim read "inconclusive: nothing bounds its mean",
    # as if more draws could help. Those draws are NaN now, with the reason; at SMALL the predictions vary.
    from attnverify.spec import SMALL

    one_head = SMALL.replace(heads=1)
    (lhs, rhs), result = judged(["info.miller_madow"], one_head, *draw(one_head, 0))[0]
    assert bool(jnp.isnan(lhs)) and bool(jnp.isnan(rhs)) and result.verdict == "inconclusive"
    assert result.nonfinite == 1 and "predicts one class on every enumerated document" in result.nonfinite_reason
    (lhs, rhs), _ = judged(["info.miller_madow"], SMALL, *draw(SMALL, 0))[0]
    assert bool(jnp.isfinite(lhs)) and float(lhs) > 0  # the plug-in's error on a model whose MI is not 0


def test_enumeration_and_position_mi():
    docs = ninfo.enumerate_documents([2, 3], 4)
    assert docs.shape == (8, 4) and (docs[:, 0] == 0).all()
    y = jnp.asarray(docs[:, 2] == 3, dtype=jnp.int32)  # the label is the word at position 2
    mi = ninfo.position_mi(jnp.asarray(docs), y, 4, 2, exact=True)
    assert np.allclose(np.asarray(mi), [0.0, np.log(2), 0.0], atol=1e-15)
    with pytest.raises(InputError):
        ninfo.enumerate_documents([2], 1)


def test_pair_agreement_counts():
    alpha = jnp.array([0.50, 0.49, 0.10, 0.01])
    importance = jnp.array([1.0, 2.0, 0.5, 0.1])  # the near tie (0, 1) is ordered the other way
    agree_near, near, agree_far, far = (int(x) for x in ninfo.pair_agreement(alpha, importance, 0.05))
    assert (agree_near, near, agree_far, far) == (0, 1, 5, 5)


# -- synthetic tasks -------------------------------------------------------------------------------------
def test_task_labels_and_bad_tasks():
    spec = ModelSpec(max_len=5, d_embed=4, d_att=2, d_out=2, heads=1, vocab_size=20)
    docs = jnp.array([[0, 12, 2, 13, 14], [0, 3, 3, 7, 15], [0, 12, 11, 13, 14]])
    assert tasks.labels(docs, "needle", spec).tolist() == [1, 0, 0]
    assert tasks.labels(docs, "bag_of_words", spec).tolist() == [0, 1, 0]
    assert tasks.labels(docs, "planted", spec).tolist() == [0, 0, 1]
    drawn = tasks.documents(jax.random.PRNGKey(0), 200, "needle", spec)
    assert 0.3 < float(tasks.labels(drawn, "needle", spec).mean()) < 0.7
    with pytest.raises(InputError, match="unknown synthetic task"):
        tasks.check_task("xor", spec)


def test_the_training_programs_task_index_makes_that_tasks_documents_and_labels():
    # One compiled training program serves every task (`synthetic_tasks._task_data`, a
    # `lax.switch` on the task's index in TASKS). Can fail: a branch out of TASKS' order would
    # train one task on another's documents or labels.
    spec = ModelSpec(max_len=6, d_embed=4, d_att=2, d_out=2, heads=1, vocab_size=20)
    key = jax.random.PRNGKey(3)
    for index, task in enumerate(tasks.TASKS):
        made, y = tasks._task_data(key, jnp.asarray(index, jnp.int32), 64, spec)
        expected = tasks.documents(key, 64, task, spec)
        assert np.array_equal(made, expected) and np.array_equal(y, tasks.labels(expected, task, spec)), task
    needle, _ = tasks._task_data(key, jnp.asarray(0, jnp.int32), 64, spec)
    assert not np.array_equal(needle, tasks.documents(key, 64, "bag_of_words", spec))


@pytest.mark.parametrize("claim_id", ["info.gumbel_entropy_temperature", "info.gumbel_skewed"])
def test_gumbel_claims(claim_id):
    spec = ModelSpec(max_len=6, d_embed=4, d_att=3, d_out=3, heads=2, vocab_size=16)
    result = run_claim(REGISTRY[claim_id], spec, trials=8, progress=False)
    assert result.passed and not result.unexpected


# -- negative controls: a wrong law in a Gumbel claim's build is caught by the claim itself ------------
GUMBEL_SPEC = ModelSpec(max_len=6, d_embed=4, d_att=3, d_out=3, heads=2, vocab_size=16)


def _judged(claim_id):
    """The claim's verdict (`judge_claim`: its every-draw summary against its own tolerance) on one
    fixed draw, through its build's comparison and measure. Scale 8: scores far from constant,
    where a wrong law differs from softmax(gamma) by many standard errors (at scale 1 on this spec
    the scores are nearly equal, every law is nearly uniform, and a wrong one can pass). Without
    the claim's SymPy proof (seconds of integrals; test_gumbel_max_is_softmax_and_a_wrong_law_is_caught)."""
    return judged([claim_id], GUMBEL_SPEC, *draw(GUMBEL_SPEC, 0, scale=8.0))[0][1]


def test_gumbel_max_z_check_rejects_a_wrong_law(monkeypatch):
    """Injected: the argmax frequencies of gamma * 2 + g, whose law is softmax(2 gamma) (the wrong
    law of test_gumbel_max_is_softmax_and_a_wrong_law_is_caught). The claim's numeric z-check
    against alpha = softmax(gamma) must exceed its 5.5 standard errors; the true law stays within."""
    from scipy.stats import norm

    result = _judged("info.gumbel_max")
    assert result.passed and result.estimate <= result.threshold
    # the threshold is the tolerance's own statement: P(|z| > Z) of a standard normal about 4e-8
    assert 3e-8 <= 2 * norm.sf(result.threshold) <= 4e-8
    counts = ci.hard_attention_counts
    for factor in (2.0, 1.1):  # softmax(1.1 gamma) too: a law 10 % off in its scores (max |z| 7.7)
        monkeypatch.setattr(ci, "hard_attention_counts",
                            lambda gamma, noise, factor=factor: counts(factor * gamma, noise))
        result = _judged("info.gumbel_max")
        assert result.estimate > result.threshold and not result.passed and result.verdict == "fail", factor


@pytest.mark.parametrize("index", [193, 727])  # draws of verify --scale 10: alpha_t = 1; one win at n alpha_t = 0.0095
def test_gumbel_max_z_is_a_number_where_attention_saturates(index):
    """Can fail: at --scale 10 with 1000 draws the claim failed a true law. On draw 193 alpha_t = 1 in
    float64: its variance, floored at tiny and divided by n, was subnormal, which XLA on CPU flushes
    to 0 (NaN), and the jitted mean of 20,000 wins is 1 - 1e-16 (|z| 4.5e139). On draw 727 a position
    of alpha_t = 4.7e-7 won once, a 1 % event that the normal approximation put at |z| = 10.2."""
    from attnverify.numerics.draws import sweep_draw

    from attnverify.spec import SMALL

    params, tokens = sweep_draw(0, index, SMALL, scale=10.0, dtype=jnp.float64)
    _, alpha = ci._scores_and_alpha(params, tokens, SMALL)
    assert float(jnp.max(alpha)) > 0.999  # saturated
    z, limit = jax.jit(ci._gumbel_max(SMALL))(params, tokens)
    assert np.isfinite(float(z)) and float(z) <= float(limit)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_binomial_z_is_the_exact_binomial_test_on_the_normal_scale(dtype):
    """Oracle: SciPy's binomial tails. Can fail: a normal approximation (count - n p) / sd is 10.2
    standard errors for one success at n p = 0.0095, and undefined at p = 1."""
    n = 20_000
    cases = [(1, 4.7297e-7), (24, 8.6142e-4), (19974, 0.99905), (0, 0.5), (10_000, 0.5), (10_300, 0.5),
             (9_700, 0.5), (n, 1.0), (n - 1, 1.0), (0, 0.0), (3, 1e-5)]
    k, p = (np.array(c, float) for c in zip(*cases, strict=True))
    q = np.minimum(scipy.stats.binom.sf(k - 1, n, p), scipy.stats.binom.cdf(k, n, p))
    expected = np.maximum(scipy.stats.norm.isf(np.minimum(q, 0.5)), 0.0)
    got = np.asarray(ninfo.binomial_z(jnp.asarray(k, dtype), n, jnp.asarray(p, dtype)), float)
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(got), finite) and expected[8] == np.inf  # n - 1 wins of a sure thing
    close = dict(rtol=1e-9, atol=1e-9) if dtype == jnp.float64 else dict(rtol=0.02, atol=0.02)
    np.testing.assert_allclose(got[finite], expected[finite], **close)
    assert 2.3 < got[0] < 2.4 and (1 - n * p[0]) / np.sqrt(n * p[0] * (1 - p[0])) > 10


@pytest.mark.parametrize("claim_id", ["info.gumbel_entropy_temperature", "info.gumbel_skewed"])
def test_gumbel_entropy_claims_reject_an_inverted_temperature(claim_id, monkeypatch):
    """Injected: Gumbel-softmax logits (gamma + g) * tau instead of / tau (the temperature
    inverted). Entropy then falls as tau rises, and tau < 1 flattens the samples above softmax
    attention's entropy: the claim's largest violation must exceed its tolerance."""
    result = _judged(claim_id)
    assert result.passed and result.estimate <= result.threshold
    logits = ci.gumbel_logits
    monkeypatch.setattr(ci, "gumbel_logits", lambda gamma, noise, tau: logits(gamma, noise, 1 / tau))
    result = _judged(claim_id)
    assert result.estimate > result.threshold + 1e-3 and not result.passed and result.verdict == "fail"


def test_the_mi_claim_tests_additive_attention_whatever_the_specs_scorer(monkeypatch):
    # Wen et al.'s claim 2 is about additive attention. Can fail: the claim trained a model of the
    # swept spec's scorer (dot by default), testing what the paper does not state.
    trained = []

    def record(spec, task, **_):
        trained.append(spec.scorer)
        raise RuntimeError("recorded")

    monkeypatch.setattr(ci, "trained_model", record)
    for scorer in ("dot", "deep"):
        with pytest.raises(RuntimeError, match="recorded"):
            REGISTRY["info.mi_attention_planted"].build(ModelSpec(scorer=scorer))
    assert trained == ["additive", "additive"]


@pytest.mark.parametrize("gap", [5.0, 36.0, 42.0])
def test_the_entropy_of_peaked_attention_keeps_its_digits(gap):
    # Can fail: from the probabilities, -alpha log alpha of the top position (~ 1 - alpha) is lost once
    # 1 - alpha nears 2^-53: `related gumbel` printed 1.0104e-14 for 1.0157e-14 (0.5 %), 2.3 % further out.
    # Against mpmath at 50 digits; the probabilities' own entropy agrees where nothing saturates.
    import mpmath

    gamma = jnp.asarray([0.0, -gap, -gap - 1.0, -gap - 3.0])
    mpmath.mp.dps = 50
    weights = [mpmath.exp(mpmath.mpf(float(g))) for g in gamma]
    total = sum(weights)
    truth = float(-sum(w / total * mpmath.log(w / total) for w in weights))
    assert abs(float(ninfo.softmax_entropy(gamma)) - truth) <= 1e-13 * truth
    if gap == 5.0:
        assert abs(float(ninfo.mean_entropy(jax.nn.softmax(gamma)[None])) - truth) <= 1e-13 * truth
        # a position of weight 0 (a -inf logit) adds nothing: 0 * inf was NaN
        with_zero = jnp.concatenate([gamma, jnp.asarray([-jnp.inf])])
        assert abs(float(ninfo.softmax_entropy(with_zero)) - truth) <= 1e-13 * truth
