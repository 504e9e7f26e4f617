"""The three computations of Theorem 1 quantities meet: derived (SymPy, compiled), paper, jax.grad."""

import dataclasses
import types

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics import model as nm
from attnverify.numerics import quantities
from attnverify.numerics.compile import compile_expression
from attnverify.theory import derivations
from attnverify.theory import model as symbolic
from attnverify.theory import symbols as S
from attnverify.verification.claims import theorem1 as theorem1_claims
from helpers import draw as _draw
from helpers import judged, theorem1
from hypothesis import given, settings
from hypothesis import strategies as st

from attnverify.spec import ModelSpec

VARIANTS = [
    {},
    {"output_link": "sigmoid"},
    {"output_link": "softmax", "classes": 3},
    {"query": "mean"},
    {"value_nonlinearity": "tanh", "biases": True},
    {"head_aggregation": "sum", "scale_scores": False, "positional": False},
]


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("changes", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_derived_gradient_equals_autodiff(tiny_spec, changes, seed):
    spec = tiny_spec.replace(**changes)
    params, tokens = _draw(spec, seed, scale=5.0)
    assert _rel(*theorem1(spec, params, tokens, "derived", "autodiff")) < 1e-12


# Each example compiles its own programs (~3 s): a few sizes per run, new ones every run.
@settings(max_examples=4, deadline=None)
@given(T=st.integers(2, 9), d_e=st.integers(1, 7), d_att=st.integers(1, 5), d_out=st.integers(1, 5),
       K=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_paper_closed_form_at_word_positions_any_size(T, d_e, d_att, d_out, K, seed):
    spec = ModelSpec(max_len=T, d_embed=d_e, d_att=d_att, d_out=d_out, heads=K, vocab_size=12)
    params, tokens = _draw(spec, seed)
    auto, paper, plus_cls, gxi, auto_gxi = theorem1(spec, params, tokens, "autodiff", "paper", "paper_plus_cls_term",
                                                    "gxi_paper", "autodiff_gxi")
    assert _rel(paper[1:], auto[1:]) < 1e-10
    assert _rel(plus_cls[:1], auto[:1]) < 1e-10
    assert _rel(gxi[1:], auto_gxi[1:]) < 1e-10


def test_paper_closed_form_misses_the_cls_row(tiny_spec):
    params, tokens = _draw(tiny_spec, 3)
    paper, auto = theorem1(tiny_spec, params, tokens, "paper", "autodiff")
    assert _rel(paper[:1], auto[:1]) > 1e-3


@pytest.mark.parametrize("changes", [{"output_link": "sigmoid"}, {"query": "mean"},
                                     {"value_nonlinearity": "tanh"}])
def test_paper_closed_form_fails_under_changed_assumptions(tiny_spec, changes):
    spec = tiny_spec.replace(**changes)
    params, tokens = _draw(spec, 4)
    auto, derived, paper = theorem1(spec, params, tokens, "autodiff", "derived", "paper")
    assert _rel(derived, auto) < 1e-12
    assert _rel(paper[1:], auto[1:]) > 1e-3


def test_float32_stays_float32(tiny_spec):
    params, tokens = _draw(tiny_spec, 0, dtype=jnp.float32)
    out, auto = theorem1(tiny_spec, params, tokens, "derived", "autodiff")
    assert out.dtype == jnp.float32
    assert _rel(out, auto) < 1e-4


def test_large_scores_do_not_overflow(tiny_spec):
    # The compiled softmax uses the gamma^* shift: finite where the maths is finite.
    params, tokens = _draw(tiny_spec, 0, scale=100.0)
    derived, auto = theorem1(tiny_spec, params, tokens, "derived", "autodiff")
    assert bool(jnp.all(jnp.isfinite(derived)))
    assert _rel(derived, auto) < 1e-9


def test_model_is_an_attention_weighted_mean_of_readouts(tiny_spec):
    # docs/theory.md §1.3: f = 1/K sum_i sum_t alpha_t^(i) s_t^(i).
    params, tokens = _draw(tiny_spec, 5)
    e = nm.embed(params, tokens, tiny_spec)
    alpha, s = nm.attention(params, e, tiny_spec), nm.readouts(params, e, tiny_spec)[..., 1]
    np.testing.assert_allclose(float(jnp.mean(jnp.sum(alpha * s, axis=1))),
                               float(nm.explained_output(params, e, tiny_spec)), rtol=1e-13)


@pytest.mark.parametrize("T, d_e", [(4, 6), (9, 7)])
def test_positional_encoding_is_the_sinusoids_of_docs_theory(T, d_e):
    # Every entry against the formula written in NumPy (docs/theory.md §1.1): the first row and
    # column alone do not depend on the base 10000, and every other test reads the PE on both sides.
    pe = np.asarray(nm.positional_encoding(T, d_e, jnp.float64))
    t, c = np.arange(T)[:, None], np.arange(d_e)[None, :]
    angle = t / 10000.0 ** (2 * (c // 2) / d_e)
    np.testing.assert_allclose(pe, np.where(c % 2 == 0, np.sin(angle), np.cos(angle)), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pe[0], np.arange(d_e) % 2)


def test_compiler_handles_multi_index_sums_and_shadowing():
    x = sp.IndexedBase("e")
    expr = sp.Sum(x[S.t, S.k] * sp.Sum(x[S.t, S.k], (S.t, 0, S.T - 1)), (S.t, 0, S.T - 1), (S.k, 0, S.d_e - 1))
    e = jnp.arange(12.0).reshape(4, 3)
    expected = float(jnp.sum(e * e.sum(axis=0)))
    assert float(compile_expression(expr)({"e": e})) == expected


# -- negative controls: a wrong SymPy expression in a Theorem 1 claim's build is caught by the claim --
def _inject(monkeypatch, **wrong):
    """Make the claims' builds compile `derive_gradient(spec)` with the fields in `wrong` replaced
    (each a function of the spec and its true derivation), bypassing `theorem1_quantities`' cache."""
    real = derivations.derive_gradient

    def derive(spec, **kwargs):
        d = real(spec, **kwargs)
        return dataclasses.replace(d, **{name: make(spec, d) for name, make in wrong.items()})

    monkeypatch.setattr(quantities, "derivations", types.SimpleNamespace(derive_gradient=derive))
    monkeypatch.setattr(theorem1_claims, "theorem1_quantities", quantities.theorem1_quantities.__wrapped__)


def _verdict(claim_id, spec, params, tokens):
    return judged([claim_id], spec, params, tokens)[0][1]


def test_a_wrong_sympy_derivation_is_caught_by_thm1_derived(tiny_spec, monkeypatch):
    """Injected: the SymPy gradient of `spec.replace(scale_scores=False)` (scores without the
    1/sqrt(d_att)) as thm1.derived's lhs. The claim's own check must fail on the draw it passes."""
    params, tokens = _draw(tiny_spec, 0, scale=2.0)
    assert _verdict("thm1.derived", tiny_spec, params, tokens).passed
    unscaled = derivations.derive_gradient(tiny_spec.replace(scale_scores=False)).gradient
    _inject(monkeypatch, gradient=lambda spec, d: unscaled)
    result = _verdict("thm1.derived", tiny_spec, params, tokens)
    assert not result.passed and result.verdict == "fail" and result.max_error > 1e-3


def _gxi_without_jacobian(spec, d):
    """G x I_t = 1/K sum_i alpha_t s_t: the gamma_t (s_t - f_i) term of the softmax Jacobian dropped."""
    model, i = symbolic.SymbolicModel(spec), S.i
    return sp.Sum(model.alpha(i, S.tau) * model.readout(i, S.tau), (i, 0, S.K - 1)) / S.K


@pytest.mark.parametrize("wrong", [lambda spec, d: 2 * d.gxi_paper, _gxi_without_jacobian],
                         ids=["doubled", "no_jacobian"])
def test_a_wrong_gxi_closed_form_is_caught_by_thm1_gxi(tiny_spec, monkeypatch, wrong):
    """Injected: the G x I closed form doubled, or with its softmax-Jacobian term dropped, as
    thm1.gxi's lhs. The claim's own check must fail on the draw it passes."""
    params, tokens = _draw(tiny_spec, 0, scale=2.0)
    assert _verdict("thm1.gxi", tiny_spec, params, tokens).passed
    _inject(monkeypatch, gxi_paper=wrong)
    result = _verdict("thm1.gxi", tiny_spec, params, tokens)
    assert not result.passed and result.verdict == "fail" and result.max_error > 1e-3


def test_the_gxi_closed_form_needs_no_biases_and_its_claim_says_so(tiny_spec):
    # Can fail: with biases s_t and gamma_t are not linear in e_t, <e_t, u> != s_t and the G x I form
    # breaks (measured ~0.2); the claim required only the paper's switches, so `verify --biases`
    # reported the paper's formula as an unexpected FAIL instead of "outside its hypotheses".
    from attnverify.verification.registry import REGISTRY

    spec = tiny_spec.replace(biases=True)
    params, tokens = _draw(spec, 0)
    gxi, auto_gxi = theorem1(spec, params, tokens, "gxi_paper", "autodiff_gxi")
    assert _rel(gxi[1:], auto_gxi[1:]) > 1e-3
    assert REGISTRY["thm1.gxi"].expected(spec) is None and REGISTRY["thm1.gxi"].expected(tiny_spec) is True


@pytest.mark.parametrize("link, margin", [("sigmoid", 35.0), ("sigmoid", 90.0), ("softmax", 27.0)])
def test_a_saturated_output_link_keeps_its_gradient(link, margin):
    # Can fail: JAX differentiates sigma as sigma (1 - sigma) and softmax as p (dz_c - sum p dz), which
    # round 1 - p to a multiple of 2^-53: at a margin of 35 the gradient was 5.6 % off (of its largest
    # entry), at 90 it was 0 (the true one ~1e-37), at a softmax margin of 27 3.4e-5 off; no NaN, no warning.
    import jax

    spec = ModelSpec(max_len=5, d_embed=6, d_att=3, d_out=4, heads=2, vocab_size=20, output_link=link)
    params, tokens = _draw(spec, 0)
    e = nm.embed(params, tokens, spec)
    c = spec.explained_class

    def margin_of(params, e):  # sigmoid: z_c; softmax over two classes: z_c - z_other
        z = nm.logits(params, e, spec)
        return z[c] if link == "sigmoid" else z[c] - z[1 - c]

    params = params._replace(W_l=params.W_l * (margin / float(margin_of(params, e))))
    m = float(margin_of(params, e))
    assert abs(m - margin) < 1e-9 * margin
    slope = np.exp(-abs(m)) / (1 + np.exp(-abs(m))) ** 2  # sigma'(m), with no 1 - sigma in it
    truth = slope * jax.grad(margin_of, argnums=1)(params, e)
    got = nm.output_gradient(params, e, spec)
    assert float(jnp.max(jnp.abs(got - truth)) / jnp.max(jnp.abs(truth))) < 1e-12


@pytest.mark.parametrize("size", [1e-158, 1.0, 1e155])
def test_grad_l2_neither_underflows_nor_overflows(size):
    # Can fail: sqrt(sum g^2) gave 0 for a row of 1e-158 (explain printed G-l2 0 beside G-l1 4.8e-158)
    # and would give inf for 1e155. Against math.hypot, which scales; a zero row stays 0.
    import math

    from attnverify.numerics.explanations import l2_norm

    rows = np.array([[3.0, -4.0, 12.0], [0.5, 0.25, -2.0], [0.0, 0.0, 0.0]]) * size
    got = np.asarray(l2_norm(jnp.asarray(rows)))
    want = [math.hypot(*row) for row in rows]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert got[2] == 0
    # a lost gradient stays NaN and an infinite one inf (scaling them gave 0 and NaN)
    lost = np.asarray(l2_norm(jnp.asarray([[1.0, np.nan], [1.0, np.inf]])))
    assert np.isnan(lost[0]) and lost[1] == np.inf
