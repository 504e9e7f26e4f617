"""The three computations of Theorem 1 quantities meet: derived (SymPy, compiled), paper, jax.grad."""

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics import model as nm
from attnverify.numerics.compile import compile_expression
from attnverify.theory import symbols as S
from helpers import draw as _draw
from helpers import theorem1
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


def test_positional_encoding_first_row():
    pe = nm.positional_encoding(4, 6, jnp.float64)
    np.testing.assert_array_equal(np.asarray(pe[0]), [0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(float(pe[3, 0]), np.sin(3.0))


def test_compiler_handles_multi_index_sums_and_shadowing():
    x = sp.IndexedBase("e")
    expr = sp.Sum(x[S.t, S.k] * sp.Sum(x[S.t, S.k], (S.t, 0, S.T - 1)), (S.t, 0, S.T - 1), (S.k, 0, S.d_e - 1))
    e = jnp.arange(12.0).reshape(4, 3)
    expected = float(jnp.sum(e * e.sum(axis=0)))
    assert float(compile_expression(expr)({"e": e})) == expected
