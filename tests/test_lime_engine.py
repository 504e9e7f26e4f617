"""The LIME engine: sampler law, kernel, ridge, removal modes and the three evaluation paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics.draws import draw_params
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.lime import ratio_form as lime_ratio
from attnverify.numerics.lime import structured as lime_structured
from attnverify.numerics.lime.document import lime_document, perturb, random_document
from attnverify.numerics.lime.engine import lime_explain
from attnverify.numerics.lime.limit import masks_from_index
from attnverify.numerics.lime.ridge import weighted_ridge
from attnverify.numerics.lime.sampling import cosine_distance, kernel_weights, sample_masks
from attnverify.numerics.lime.structured import aggregate, link
from sklearn.linear_model import Ridge

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

SPEC = ModelSpec(max_len=12, d_embed=8, d_att=4, d_out=5, heads=3, vocab_size=40)


def _doc(seed=0, d=6, length=9, spec=SPEC):
    return random_document(jax.random.PRNGKey(seed), d, length, spec.max_len, spec.vocab_size)


# -- sampler ------------------------------------------------------------------------------------
def test_sampler_law_matches_lime_scheme():
    # s ~ Uniform{1..d}, then a uniform subset: P(z_j = 1) = (d-1)/(2d), P(z_j = z_k = 1) =
    # (d-2)/(3d) (docs/theory.md §5, nu -> oo alphas). Tolerance: 5 binomial standard errors.
    d, n = 6, 40_000
    z = np.asarray(sample_masks(jax.random.PRNGKey(0), n, d))
    assert np.all(z[0] == 1)
    z = z[1:]
    removed = d - z.sum(axis=1)
    counts = np.bincount(removed.astype(int), minlength=d + 1)
    assert counts[0] == 0
    expected = (n - 1) / d
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))
    p1, p2 = (d - 1) / (2 * d), (d - 2) / (3 * d)
    assert np.all(np.abs(z.mean(axis=0) - p1) < 5 * np.sqrt(p1 * (1 - p1) / n))
    pair = (z[:, :, None] * z[:, None, :]).mean(axis=0)[~np.eye(d, dtype=bool)]
    assert np.all(np.abs(pair - p2) < 5 * np.sqrt(p2 * (1 - p2) / n))
    # A Bernoulli(1/2) sampler (Captum's Lime) would be caught by the first moment:
    assert abs(0.5 - p1) > 5 * np.sqrt(p1 * (1 - p1) / n)


def test_subsets_are_uniform_given_their_size():
    # Given s = 1 removed feature, each of the d features is the removed one equally often.
    d, n = 5, 20_000
    z = np.asarray(sample_masks(jax.random.PRNGKey(3), n, d, include_original=False))
    one = z[z.sum(axis=1) == d - 1]
    counts = (1 - one).sum(axis=0)
    expected = len(one) / d
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_kernel_is_lime_cosine_kernel():
    # D = 100 (1 - sqrt(1 - s/d)), D = 100 for the empty row, weight sqrt(exp(-D^2/w^2)).
    d = 7
    z = jnp.array([[1.0] * 7, [1, 1, 0, 1, 0, 1, 1], [0.0] * 7])
    removed = np.array([0, 2, 7])
    distance = 100 * np.asarray(cosine_distance(z))
    np.testing.assert_allclose(distance, 100 * (1 - np.sqrt(1 - removed / d)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(kernel_weights(z, 0.25)),
                               np.sqrt(np.exp(-(distance**2) / 25.0**2)), rtol=1e-14, atol=0)
    assert np.all(np.asarray(kernel_weights(z, float("inf"))) == 1.0)


# -- ridge ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.0, 37.5])
def test_weighted_ridge_equals_sklearn(alpha):
    rng = np.random.default_rng(1)
    z = (rng.random((200, 6)) < 0.6).astype(float)
    y = rng.normal(size=200) + z @ rng.normal(size=6)
    w = rng.random(200)
    fit = weighted_ridge(jnp.asarray(z), jnp.asarray(y), jnp.asarray(w), alpha)
    ref = Ridge(alpha=alpha, fit_intercept=True).fit(z, y, sample_weight=w)
    np.testing.assert_allclose(np.asarray(fit.coef), ref.coef_, rtol=0, atol=1e-10)
    assert abs(float(fit.intercept) - ref.intercept_) < 1e-10
    assert abs(float(fit.score) - ref.score(z, y, sample_weight=w)) < 1e-10
    # A penalty scaled by n (a tempting "fix") is a different estimator, and is caught:
    other = weighted_ridge(jnp.asarray(z), jnp.asarray(y), jnp.asarray(w), alpha * 200)
    assert alpha == 0 or np.max(np.abs(np.asarray(other.coef) - ref.coef_)) > 1e-3


# -- documents and removal ----------------------------------------------------------------------
def test_features_are_distinct_words_in_first_occurrence_order():
    tokens = np.array([0, 7, 9, 7, 1, 11, 1, 1])
    doc, names = lime_document(tokens, words=["b", "c", "b", "oov", "d"])
    assert names == ["b", "c", "oov", "d"]
    assert doc.feature.tolist() == [-1, 0, 1, 0, 2, 3, -1, -1]
    _, positions = lime_document(tokens, words=["b", "c", "b", "oov", "d"], features="positions")
    assert positions == ["b@1", "c@2", "b@3", "oov@4", "d@5"]


def test_delete_shifts_left_and_replace_keeps_positions():
    tokens = np.array([0, 7, 9, 7, 12, 11, 1, 1])
    doc, _ = lime_document(tokens, words=["b", "c", "b", "e", "d"])
    z = jnp.array([0.0, 1, 1, 1])  # remove "b" (both occurrences)
    assert perturb(doc, z, "delete").tolist() == [0, 9, 12, 11, 1, 1, 1, 1]
    assert perturb(doc, z, "replace").tolist() == [0, 1, 9, 1, 12, 11, 1, 1]


# -- the three evaluation paths -------------------------------------------------------------------
@pytest.mark.parametrize("changes", [{}, {"biases": True, "output_link": "sigmoid", "positional": False,
                                      "head_aggregation": "sum"}])
def test_paths_agree_with_the_true_model(changes):
    # Each path is exact: rounding-level agreement (1e-12 relative; measured ~1e-16).
    spec = SPEC.replace(**changes)
    params = draw_params(jax.random.PRNGKey(2), spec, scale=4.0)
    doc = _doc(1, spec=spec)
    z = sample_masks(jax.random.PRNGKey(5), 64, 6)
    for removal in ("delete", "replace"):
        ref = lime_eval.outputs(params, doc, z, spec=spec, removal=removal, path="generic")
        for path in ("structured", "ratio"):
            if path == "ratio" and removal == "delete":
                continue
            data, fn = lime_eval.prepare(params, doc, spec, 6, path)
            got = lime_eval.outputs(data, doc, z, spec=spec, removal=removal, path=path, chunk_size=16)
            assert float(jnp.max(jnp.abs(got - ref))) <= 1e-12 * float(jnp.max(jnp.abs(ref)))
        # Negative control: the other removal mode is a different function (they coincide
        # without positional encoding: the softmax sees the same multiset of tokens).
        if not spec.positional:
            continue
        other = lime_eval.outputs(params, doc, z, spec=spec, removal="replace" if removal == "delete"
                                  else "delete", path="generic")
        assert float(jnp.max(jnp.abs(other - ref))) > 1e-6


def _written_ratio(form, z):
    """(A + z.u) / (B + z.v) per head, evaluated as docs/theory.md §6.5 writes it (the control)."""
    numerator = form.A + jnp.einsum("nj,ijc->nic", z, form.u)
    return numerator / (form.B + z @ form.v.T)[..., None] + form.head_bias


@pytest.mark.parametrize("scale, dtype, seed, one_shift", [
    (30.0, jnp.float64, 3, True),  # UNK outweighs a word: the written form cancels (4e-11)
    (1000.0, jnp.float64, 2, False),  # scores spread beyond exp's range: one shift per mask
    (300.0, jnp.float32, 2, False),
])
def test_the_ratio_path_is_exact_where_attention_saturates(scale, dtype, seed, one_shift):
    # Every one of the 2^6 masks against the true model (the generic path), within the claims'
    # tolerances (lime.ratio_form_exact: 1e-12 in float64, 1e-4 in float32) relative to the
    # largest output. Controls: the written form from the same sums, and the one-shift branch
    # alone where the per-mask one is taken, miss it (or are NaN) on these draws.
    params = draw_params(jax.random.PRNGKey(seed), SPEC, scale=scale, dtype=dtype)
    doc = _doc(1)
    z = masks_from_index(jnp.arange(2**6), 6, dtype)
    truth = lime_eval.outputs(params, doc, z, spec=SPEC, removal="replace", path="generic")
    form = lime_ratio.ratio_form(params, doc, SPEC, 6)
    tolerance = (1e-12 if dtype == jnp.float64 else 1e-4) * float(jnp.max(jnp.abs(truth)))

    def error(heads):
        return float(jnp.max(jnp.abs(link(aggregate(heads, SPEC), SPEC) - truth)))

    assert bool(form.one_shift_is_safe()) == one_shift
    assert error(lime_ratio.heads(form, z)) <= tolerance
    assert not error(_written_ratio(form, z)) <= tolerance  # NaN fails too
    if not one_shift:
        assert not error(lime_ratio._one_shift(form, z, True) + form.head_bias) <= tolerance


def test_the_ratio_paths_two_branches_have_the_same_values_and_derivatives():
    # The extension to real z (docs/theory.md §6.5) is one function, whatever the shift: both
    # branches and the written form agree at init scale 1, where none of them loses precision, in
    # value and in jax.grad, at the mean mask and at binary masks (where the per-mask branch's
    # derivative reads terms the mask does not weight).
    params = draw_params(jax.random.PRNGKey(3), SPEC)
    form = lime_ratio.ratio_form(params, _doc(1), SPEC, 6)
    # On this draw one head scores UNK above every word and [CLS]: at z = 1 its per-mask shift m
    # is below a term the mask does not weight, whose factor exp(g - m) > 1 the derivative reads.
    assert bool(jnp.any(form.unk.top.max(axis=1) > jnp.maximum(form.fixed.top[:, 0], form.word.top.max(axis=1))))
    branches = {"one shift": lambda z: lime_ratio._one_shift(form, z, True) + form.head_bias,
                "per mask": lambda z: lime_ratio._shift_per_mask(form, z, True) + form.head_bias,
                "written": lambda z: _written_ratio(form, z[None])[0]}
    points = [jnp.full(6, 5 / 12), jnp.ones(6), jnp.zeros(6), jnp.array([1.0, 0, 1, 1, 0, 0])]
    for z in points:
        values = {name: jax.value_and_grad(lambda z, f=f: link(aggregate(f(z), SPEC), SPEC))(z)
                  for name, f in branches.items()}
        value, grad = values["written"]
        for name, (v, g) in values.items():
            assert abs(float(v - value)) <= 1e-12 * abs(float(value)), (name, z)
            np.testing.assert_allclose(g, grad, rtol=1e-10, atol=1e-14 * float(jnp.max(jnp.abs(grad))),
                                       err_msg=f"{name} at {z}")
    # Can fail: another function (UNK's weights dropped) is told apart by its gradient here.
    dropped = jax.grad(lambda z: link(aggregate(lime_ratio._shift_per_mask(
        form._replace(unk=form.unk._replace(weight=form.unk.weight * 0)), z, True) + form.head_bias, SPEC), SPEC))
    assert not np.allclose(dropped(points[-1]), grad, rtol=1e-6)


def test_deletion_carries_only_the_positions_that_hold_words():
    # A 5-word document at T = 12: the sums over original positions stop at the word span
    # (6 = [CLS] + 5 words), still exact; a span that cuts off a word is caught.
    params = draw_params(jax.random.PRNGKey(2), SPEC, scale=4.0)
    doc = random_document(jax.random.PRNGKey(4), 4, 5, SPEC.max_len, SPEC.vocab_size)
    assert lime_structured.word_span(doc.feature, multiple=1) == 6
    assert lime_structured.word_span(doc.feature) == SPEC.max_len  # 16 rounds past T = 12
    assert lime_structured.word_span(np.r_[-1, [0] * 20, [-1] * 279]) == 32  # 21 rounds up to 32
    z = sample_masks(jax.random.PRNGKey(5), 64, 4)
    ref = lime_eval.outputs(params, doc, z, spec=SPEC, removal="delete", path="generic")
    data, _ = lime_eval.prepare(params, doc, SPEC, 4, "structured")
    for span, exact in ((6, True), (9, True), (5, False)):
        got = lime_eval.outputs(data, doc, z, spec=SPEC, removal="delete", path="structured", span=span)
        error = float(jnp.max(jnp.abs(got - ref)))
        assert (error <= 1e-12 * float(jnp.max(jnp.abs(ref)))) == exact, (span, error)


def test_structured_path_falls_back_when_weights_underflow():
    # Init scale 300: scores spread by thousands, exp(a - max a) underflows; the structured
    # path must notice (normaliser bound) and use the stable softmax, staying exact.
    params = draw_params(jax.random.PRNGKey(7), SPEC, scale=300.0)
    doc = _doc(3)
    data, _ = lime_eval.prepare(params, doc, SPEC, 6, "structured")
    assert float(lime_structured.normaliser_bound(data, doc.tokens, doc.feature)) < 1e-154
    z = sample_masks(jax.random.PRNGKey(5), 64, 6)
    got = lime_eval.outputs(data, doc, z, spec=SPEC, removal="delete", path="structured", chunk_size=16)
    ref = lime_eval.outputs(params, doc, z, spec=SPEC, removal="delete", path="generic")
    assert np.all(np.isfinite(np.asarray(got)))
    assert float(jnp.max(jnp.abs(got - ref))) <= 1e-12 * float(jnp.max(jnp.abs(ref)))


def test_path_choice_follows_the_spec():
    params = draw_params(jax.random.PRNGKey(0), SPEC)
    assert lime_eval.choose_path(params, SPEC, "replace") == "ratio"
    assert lime_eval.choose_path(params, SPEC, "delete") == "structured"
    assert lime_eval.choose_path(params, SPEC.replace(query="mean"), "delete") == "generic"
    assert lime_eval.choose_path(lambda t: 0.0, SPEC, "delete") == "generic"
    with pytest.raises(InputError, match="not available"):
        lime_eval.choose_path(params, SPEC, "delete", "ratio")


def test_lime_explain_runs_are_independent_and_callable_models_work():
    params = draw_params(jax.random.PRNGKey(0), SPEC, scale=3.0)
    doc = _doc(2)
    tokens = np.asarray(doc.tokens)
    ex = lime_explain(params, tokens, SPEC, key=jax.random.PRNGKey(1), n_samples=300, runs=3)
    assert ex.coef.shape == (3, 6) and ex.path == "structured"
    assert np.std(ex.coef[:, 0]) > 0
    fn = lime_eval.model_function(params, SPEC)
    same = lime_explain(fn, tokens, SPEC, key=jax.random.PRNGKey(1), n_samples=300, runs=3)
    np.testing.assert_allclose(same.coef, ex.coef, rtol=0, atol=1e-12)


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_lime_input_is_one_line_error():
    params = draw_params(jax.random.PRNGKey(0), SPEC)
    tokens = np.asarray(_doc().tokens)
    empty = np.array([0] + [1] * 11)
    key = jax.random.PRNGKey(0)
    with pytest.raises(InputError, match="no words"):
        lime_explain(params, empty, SPEC, key=key, n_words=0)
    with pytest.raises(InputError, match="nu must be > 0"):
        lime_explain(params, tokens, SPEC, key=key, nu=0.0)
    with pytest.raises(InputError, match="singular"):
        lime_explain(params, tokens, SPEC, key=key, n_samples=5, ridge=0.0)
    with pytest.raises(InputError, match="removal"):
        lime_explain(params, tokens, SPEC, key=key, removal="mask")

    def broken(t):
        return jnp.log(-1.0 + 0 * t[0])

    with pytest.raises(InputError, match="NaN or inf"):
        lime_explain(broken, tokens, SPEC, key=key, n_samples=50)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 100])
def test_the_vanishing_weights_check_is_the_kernels_own(d):
    # `every_weight_vanishes` (NumPy, before any work) must say what `shell_weights` computes: at a
    # width where it wrongly said "vanish" a valid explanation would be refused, and vice versa.
    from attnverify.numerics.lime.engine import every_weight_vanishes
    from attnverify.numerics.lime.sampling import shell_weights

    for nu in (0.25, 1e-3, 1e-8, 1e-12, 1e-20, 1e-100, 1e-170, 5e-324, np.inf):
        weights = np.asarray(shell_weights(d, nu))
        assert every_weight_vanishes(d, nu) == (not np.any(weights > 0)), (d, nu, weights[:2])


def test_a_kernel_so_narrow_that_every_weight_vanishes_is_one_line():
    # Can fail: at nu = 1e-20 the original document's weight underflowed too (its cosine distance to
    # itself rounds to ~1e-16), the weights summed to 0 and the fit was 0/0: `explain` stopped with
    # "lime_coef[0][0] is NaN", which does not say why. nu = 0.001 still runs (the original weighs 1).
    params = draw_params(jax.random.PRNGKey(0), SPEC)
    tokens = np.asarray(_doc().tokens)
    key = jax.random.PRNGKey(0)
    with pytest.raises(InputError, match="at kernel width nu = 1e-20 every sample's kernel weight underflows"):
        lime_explain(params, tokens, SPEC, key=key, nu=1e-20, n_samples=50)
    assert np.all(np.isfinite(lime_explain(params, tokens, SPEC, key=key, nu=1e-3, n_samples=50).coef))


# -- numerics.lime.document: random documents draw word ids from 2..V-1; T - 1 words at most (D2, D3)
def test_random_documents_never_use_cls_or_unk_as_a_word_and_reach_the_last_id():
    from attnverify.numerics.lime.document import random_document

    V, T, d, length = 8, 10, 6, 8
    seen = set()
    for seed in range(40):
        doc = random_document(jax.random.PRNGKey(seed), d, length, T, V)
        tokens, feature = np.asarray(doc.tokens), np.asarray(doc.feature)
        words = tokens[feature >= 0]
        assert tokens[0] == 0 and np.all((words >= 2) & (words <= V - 1)), tokens  # CLS = 0, UNK = 1
        assert len(set(words.tolist())) == d
        seen |= set(words.tolist())
    assert seen == set(range(2, V))  # d = 6 of the 6 ids 2..7 each time


def test_a_document_of_t_positions_holds_at_most_t_minus_one_words():
    from attnverify.numerics.lime.document import lime_document

    from attnverify.errors import InputError

    tokens = np.array([0, 5, 6, 7, 8, 9])  # T = 6 positions
    _, names = lime_document(tokens, words=list("abcde"))  # T - 1 = 5 words: fine
    assert names == list("abcde")
    with pytest.raises(InputError, match="at most 5 words"):
        lime_document(tokens, words=list("abcdef"))  # T words: no room for [CLS]
