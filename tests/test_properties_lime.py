"""Property-based checks of the LIME engine over spec sizes, switches and removal modes (hypothesis).

1. The fast evaluation paths equal the generic path (the true model on every perturbed
   document) on the same LIME samples, to the engine's promised 1e-12 in float64; where a
   spec breaks a path's algebra (docs/theory.md §1.3-1.4) the path refuses with `InputError`.
2. beta^inf by exact enumeration (docs/theory.md §5) equals its Monte-Carlo estimate within a
   Student-t bound on the Monte-Carlo standard error.

Each property carries its "can fail" companion in every example: a deliberately wrong variant
(a perturbed parameter, another model's Monte-Carlo limit) must violate the same bound, run
through the same compiled functions (a separate test would compile every spec again).
Examples are derandomized (a fixed, CI-stable set); `max_examples` keeps the file < ~60 s.
"""

import dataclasses

import jax
import numpy as np
import pytest
from attnverify.numerics.draws import draw_params
from attnverify.numerics.lime.document import REMOVALS, random_document
from attnverify.numerics.lime.engine import lime_explain
from attnverify.numerics.lime.limit import MC_BATCHES, beta_limit
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from scipy import stats

from attnverify.errors import InputError
from attnverify.spec import CHOICES, SWITCHES, ModelSpec

#: The engine's promise for exact paths (lime_eval docstring): rounding of O(T K) sums
#: and one ridge solve on y (<= 5.6e-16 over 40 random trial examples); 1e-12 relative to
#: the fit's scale.
PATH_TOLERANCE = 1e-12
#: Family-wise false-alarm rate of the exact-vs-Monte-Carlo check, per example (Bonferroni
#: over the d coefficients). The standard error comes from MC_BATCHES batch means, so the
#: standardised error is Student-t with MC_BATCHES - 1 degrees of freedom. Over the file's
#: 8 examples, a redraw of the examples would raise a false alarm with probability <= 0.8 %.
FALSE_ALARM = 1e-3
#: Rounding floor of the same check, for coefficients whose Monte-Carlo noise is at rounding
#: level (measured SE down to 1e-17 where f hardly depends on a word): float64 rounding of sums
#: over 2^15 masks and a (d+1)x(d+1) solve; 1e-10 relative to the limit's scale.
LIMIT_ROUNDING = 1e-10
#: Monte-Carlo masks for beta^inf (16 batches of 2^11): under a second per run at these sizes,
#: with an SE small enough that another model's limit lies >= 270 bounds away (and this
#: model's MC within 0.53 of the bound) over 40 random trial examples.
N_MC = 2**15
#: LIME samples per run for the path comparison (the paths see identical samples).
N_SAMPLES = 64
#: Derandomized (a fixed example set, CI-stable) and no shrinking: each example compiles
#: its own spec, so shrinking a failure would take minutes; the failing example is printed.
FIXED = dict(deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate))

_BOOLEAN_SWITCHES = [f.name for f in dataclasses.fields(ModelSpec) if f.name in SWITCHES and f.type == "bool"]


def specs(**fixed) -> st.SearchStrategy[ModelSpec]:
    """Small specs (T 3..10, d_e 1..6, K 1..3, V 4..30) with every switch free, read from
    `spec.SWITCHES`/`CHOICES` so that switches added later are covered too; `fixed` pins a
    field to a value or draws it from a strategy."""
    fields = dict(
        max_len=st.integers(3, 10), d_embed=st.integers(1, 6), d_att=st.integers(1, 4),
        d_out=st.integers(1, 4), heads=st.integers(1, 3), classes=st.integers(2, 3),
        vocab_size=st.integers(4, 30),
        **{name: st.booleans() for name in _BOOLEAN_SWITCHES},
        **{name: st.sampled_from(choices) for name, choices in CHOICES.items()},
    )
    fields.update({k: v if isinstance(v, st.SearchStrategy) else st.just(v) for k, v in fixed.items()})
    return st.fixed_dictionaries(fields).map(lambda kw: ModelSpec(**kw))


#: The switches under which every fast path applies (the paper's; the dot scorer where the spec
#: has a scorer switch). Free switches alone would hit the structured path in 1 example of 12.
PAPER_PATH = {"query": "cls", "value_nonlinearity": "none", **({"scorer": "dot"} if "scorer" in CHOICES else {})}


@st.composite
def documents(draw, spec: ModelSpec, *, max_features: int, min_features: int = 1):
    """(d, length): d distinct words in a document of `length` words that fits T and V."""
    top = min(max_features, spec.max_len - 1, spec.vocab_size - 2)
    d = draw(st.integers(min_features, max(min_features, top)))
    length = draw(st.integers(d, spec.max_len - 1))
    return d, length


def _case(spec: ModelSpec, seed: int, d: int, length: int, scale: float):
    key_params, key_doc = jax.random.split(jax.random.PRNGKey(seed))
    params = draw_params(key_params, spec, scale=scale)
    doc = random_document(key_doc, d, length, spec.max_len, spec.vocab_size)
    return params, np.asarray(doc.tokens)


# -- 1. evaluation paths ------------------------------------------------------------------------------
def path_applies(spec: ModelSpec, removal: str, path: str) -> bool:
    """Where a fast path's algebra holds (docs/theory.md §1.3-1.4), written out here independently of
    the engine's own `unsupported` so that a silent change of either is caught.

    structured: gamma and s split into word part + position part: a constant query, linear
    values and the dot scorer. ratio: a head is a ratio of affine functions of z: a constant
    query and positions kept (removal="replace"); any value map or scorer.
    """
    if path == "structured":
        return spec.query == "cls" and spec.value_nonlinearity == "none" and getattr(spec, "scorer", "dot") == "dot"
    return spec.query == "cls" and removal == "replace"


def _lime(params, tokens, spec, length, removal, path, seed):
    # Same key, n and d on every path: lime's sampler draws identical masks and kernel weights.
    return lime_explain(params, tokens, spec, key=jax.random.PRNGKey(seed + 1), n_words=length,
                        n_samples=N_SAMPLES, runs=1, removal=removal, path=path)


def fit_error(got, ref) -> float:
    """max |coef/intercept difference| relative to the reference fit's scale (its largest
    |coefficient| or |intercept|: the size of the outputs the ridge was fitted to)."""
    scale = max(np.max(np.abs(ref.coef)), np.max(np.abs(ref.intercept)), 1e-300)
    return max(np.max(np.abs(got.coef - ref.coef)), np.max(np.abs(got.intercept - ref.intercept))) / scale


def _scaled_values(params, factor: float):
    """The same model with every value map W_v multiplied by `factor` (a wrong parameter)."""
    return params._replace(W_v=params.W_v * factor)


path_cases = dict(spec=st.one_of(specs(**PAPER_PATH), specs()), seed=st.integers(0, 2**20),
                  removal=st.sampled_from(REMOVALS), scale=st.sampled_from([0.3, 1.0, 4.0]), data=st.data())


@settings(max_examples=10, **FIXED)
@given(**path_cases)
def test_lime_fast_paths_equal_generic_path_or_refuse_and_catch_a_wrong_parameter(spec, seed, removal, scale,
                                                                                   data):
    d, length = data.draw(documents(spec, max_features=6))
    params, tokens = _case(spec, seed, d, length, scale)
    paths = [p for p in ("structured", "ratio") if path_applies(spec, removal, p)]
    for path in [p for p in ("structured", "ratio") if p not in paths]:
        with pytest.raises(InputError, match="not available"):
            _lime(params, tokens, spec, length, removal, path, seed)
    generic = _lime(params, tokens, spec, length, removal, "generic", seed) if paths else None
    for path in paths:
        fast = _lime(params, tokens, spec, length, removal, path, seed)
        assert fast.path == path
        error = fit_error(fast, generic)
        assert error <= PATH_TOLERANCE, (spec, removal, path, error)
        # Can fail (same example, same compiled path): the path on a model whose W_v is 1 %
        # off violates the bound. The effect is smallest where biases dominate the output
        # (scale 0.3, softmax link): >= 3.6e-8 of the fit's scale over 40 random trial examples.
        wrong = _lime(_scaled_values(params, 1.01), tokens, spec, length, removal, path, seed)
        assert fit_error(wrong, generic) > PATH_TOLERANCE, (spec, removal, path, "wrong W_v not caught")


# -- 2. exact enumeration vs Monte Carlo -------------------------------------------------------------
def z_bound(d: int) -> float:
    """Two-sided Student-t quantile (MC_BATCHES - 1 dof) at FALSE_ALARM / d per coefficient."""
    return float(stats.t.ppf(1 - FALSE_ALARM / (2 * d), df=MC_BATCHES - 1))


def limit_bound(exact, mc, d: int) -> np.ndarray:
    """Per-coefficient bound on |MC - exact|: z_bound(d) standard errors plus the rounding floor."""
    assert np.all(np.isfinite(mc.stderr)) and np.all(mc.stderr >= 0)
    return z_bound(d) * mc.stderr + LIMIT_ROUNDING * max(np.max(np.abs(exact.beta)), abs(exact.intercept))


def _exact_limit(params, tokens, spec, length, removal, nu):
    return beta_limit(params, tokens, spec, n_words=length, removal=removal, nu=nu, method="exact")


def _monte_carlo_limit(params, tokens, spec, length, removal, nu, seed):
    return beta_limit(params, tokens, spec, n_words=length, removal=removal, nu=nu, method="monte_carlo",
                      n_mc=N_MC, key=jax.random.PRNGKey(seed + 2), chunk_size=N_MC // MC_BATCHES)


# d >= 3: at d = 2 the three possible masks fix the fit and Monte Carlo has no noise at all.
limit_cases = dict(spec=specs(max_len=st.integers(4, 10), vocab_size=st.integers(5, 30)),
                   seed=st.integers(0, 2**20), removal=st.sampled_from(REMOVALS),
                   scale=st.sampled_from([0.3, 1.0, 4.0]), nu=st.sampled_from([0.25, 1.0]), data=st.data())


@settings(max_examples=8, **FIXED)
@given(**limit_cases)
def test_exact_limit_equals_monte_carlo_within_its_standard_error_and_not_another_models(spec, seed, removal,
                                                                                         scale, nu, data):
    d, length = data.draw(documents(spec, max_features=4, min_features=3))
    params, tokens = _case(spec, seed, d, length, scale)
    exact = _exact_limit(params, tokens, spec, length, removal, nu)
    mc = _monte_carlo_limit(params, tokens, spec, length, removal, nu, seed)
    assert exact.method == "exact" and mc.method == "monte_carlo" and exact.path == mc.path
    error = np.abs(mc.beta - exact.beta)
    assert np.all(error <= limit_bound(exact, mc, d)), (spec, removal, nu, error / limit_bound(exact, mc, d))
    # Can fail (same example, same compiled functions): the Monte-Carlo limit of another draw
    # of the same spec lies outside the bound around this model's exact limit.
    other = draw_params(jax.random.PRNGKey(seed + 3), spec, scale=scale)
    mc_other = _monte_carlo_limit(other, tokens, spec, length, removal, nu, seed)
    assert np.any(np.abs(mc_other.beta - exact.beta) > limit_bound(exact, mc_other, d)), (spec, "not caught")
