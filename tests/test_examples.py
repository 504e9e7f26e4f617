"""The example plugins (examples/) through derive and verify, with their verdicts asserted,
and the notebook-style script run as a user runs it (docs/plugins.md)."""

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.quantities import theorem1_quantities

import attnverify
from attnverify.spec import ModelSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Small sizes, all distinct, d_out < d_e: coordinates m >= d_out exist (the residual example).
TINY = ModelSpec(max_len=5, d_embed=6, d_att=3, d_out=4, heads=2, vocab_size=20)
TRIALS = 4

#: What derive proves for each example: the forward is the paper's; Theorem 1 (t >= 1) in
#: the model's own quantities.
DERIVE = {
    "identity": ("proved", "proved for all sizes"),
    "temperature": ("not proved", "not proved"),
    "layernorm_keys": ("not proved", "not proved"),
    "residual_value": ("not proved", "not proved"),
    # A bias added to the score does not depend on e: Theorem 1 holds in the model's alpha.
    "score_bias": ("not proved", "proved for all sizes"),
}
#: The Theorem 1 verdicts of each example. Where the forward is not proved the paper's, the
#: statements that assume the paper's model are hyp_unmet (or pass, where they still hold);
#: never fail. The negative control assumes what Theorem 1 does (outside it, catching it would
#: tell nothing), so it is hyp_unmet under every example but the identity.
VERIFY = {
    "temperature": {"thm1.derived": "pass", "thm1.gradient": "hyp_unmet", "thm1.gradient_cls_row": "hyp_unmet",
                    "thm1.cls_term": "hyp_unmet", "thm1.control_no_jacobian": "hyp_unmet",
                    "temperature.theorem1": "pass"},
    "layernorm_keys": {"thm1.derived": "pass", "thm1.gradient": "hyp_unmet",
                       "thm1.control_no_jacobian": "hyp_unmet"},
    "residual_value": {"thm1.derived": "pass", "thm1.gradient": "hyp_unmet", "thm1.cls_term": "hyp_unmet",
                       "thm1.control_no_jacobian": "hyp_unmet"},
    "score_bias": {"thm1.derived": "pass", "thm1.gradient": "pass", "thm1.cls_term": "pass",
                   "thm1.gradient_cls_row": "hyp_unmet", "thm1.control_no_jacobian": "hyp_unmet"},
}


@pytest.fixture(scope="module", params=sorted(DERIVE))
def example(request):
    name = request.param
    derived = attnverify.derive(plugin=EXAMPLES / f"{name}.py", spec=TINY)
    return name, derived


def test_every_example_has_a_readme_paragraph():
    readme = (EXAMPLES / "README.md").read_text()
    for name in [*DERIVE, "notebook"]:
        assert f"`{name}.py`" in readme, name


def test_derive_reports_what_is_proved(example):
    name, derived = example
    forward, theorem1 = DERIVE[name]
    assert derived.records["plugin"]["forward_is_papers"] == forward
    assert derived.proofs["theorem1 (t >= 1)"] == theorem1
    assert f"forward = the paper's model: {forward}" in repr(derived)


def test_derived_gradient_is_jax_grad_of_the_compiled_forward_everywhere(example):
    # Every position and every embedding coordinate (m >= d_out included), float64, 1e-12.
    name, derived = example
    spec = derived.derivation.spec
    q = theorem1_quantities(spec)
    both = jax.jit(lambda p, x: (q["derived"](p, x), q["autodiff"](p, x)))
    for seed in (0, 1):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        got, truth = both(draw_params(k1, spec, scale=3.0), draw_document(k2, spec))
        assert got.shape == truth.shape == (TINY.max_len, TINY.d_embed)
        scale = float(jnp.max(jnp.abs(truth)))
        assert scale > 0 and float(jnp.max(jnp.abs(got - truth))) <= 1e-12 * scale
        assert float(jnp.min(jnp.max(jnp.abs(truth), axis=0))) > 1e-9 * scale  # no coordinate is trivially 0


def test_residual_keeps_the_range_condition_on_the_embedding_axis():
    # v_t = W_v e_t + e_t[:d_out]: d f / d e[t, m] gains W_l[i, c, m] only for m < d_out. The
    # derivation keeps that condition (the sum Sum_{o < d_out} delta(m, o) W_l[i, c, o] stays a
    # sum: docs/theory.md §10.6, R1); dropping it (an unsound delta elimination) reads W_l past
    # its axis at m >= d_out, which the compiled check shows as NaN there: caught.
    from attnverify.numerics import compiled_quantity

    derived = attnverify.derive(plugin=EXAMPLES / "residual_value.py", spec=TINY)
    gradient, spec = derived.derivation.gradient, derived.derivation.spec

    def delta_of(s):
        return next((f for f in sp.Mul.make_args(s.function) if isinstance(f, sp.KroneckerDelta)), None)

    kept = [s for s in gradient.atoms(sp.Sum) if len(s.limits) == 1 and delta_of(s) is not None]
    assert kept

    def eliminated(s):  # Sum_o delta(m, o) g(o) -> g(m), its range condition dropped
        (o, _, _), delta = s.limits[0], delta_of(s)
        return (s.function / delta).subs(o, delta.args[0] if delta.args[1] == o else delta.args[1])

    unsound = gradient.xreplace({s: eliminated(s) for s in kept})
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    params, tokens = draw_params(k1, spec), draw_document(k2, spec)
    sound = np.asarray(compiled_quantity(spec, gradient)(params, tokens))
    wrong = np.asarray(compiled_quantity(spec, unsound)(params, tokens))
    assert np.isfinite(sound).all()
    assert np.isnan(wrong[:, TINY.d_out:]).all() and np.isfinite(wrong[:, : TINY.d_out]).all()


def test_layer_norm_forward_is_a_layer_norm():
    # The compiled forward of layernorm_keys against the same model written by hand in JAX.
    from attnverify.numerics import model as nm
    from attnverify.numerics import plugin_model as pm
    from attnverify.theory.plugin import plugin_spec

    from attnverify.plugins import load_plugin

    spec = plugin_spec(load_plugin(EXAMPLES / "layernorm_keys.py", TINY), TINY)
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    params, tokens = draw_params(k1, spec, scale=5.0), draw_document(k2, spec)
    base, e = params.base, pm.embed(params, tokens, spec)

    def by_hand(e):
        raw = jnp.einsum("iak,tk->ita", base.W_k, e)
        mean, var = raw.mean(-1, keepdims=True), raw.var(-1, keepdims=True)
        keys = (raw - mean) / jnp.sqrt(var + params.extra["eps"])
        q = jnp.einsum("iak,k->ia", base.W_q, e[0])
        alpha = jax.nn.softmax(jnp.einsum("ia,ita->it", q, keys) / jnp.sqrt(TINY.d_att), axis=-1)
        return jnp.mean(jnp.einsum("it,it->i", alpha, nm.readouts(base, e, pm.base_spec(spec))[..., 1]))

    assert float(pm.explained_output(params, e, spec)) == pytest.approx(float(by_hand(e)), rel=1e-12)
    np.testing.assert_allclose(pm.output_gradient(params, e, spec), jax.grad(by_hand)(e), rtol=1e-10, atol=1e-14)
    # Without the normalisation the output differs: the check can fail.
    assert float(pm.explained_output(base, e, TINY)) != pytest.approx(float(by_hand(e)), rel=1e-6)


@pytest.mark.parametrize("name", sorted(VERIFY))
def test_verify_verdicts(name):
    result = attnverify.verify(["theorem1", *(["temperature"] if name == "temperature" else [])],
                               plugin=EXAMPLES / f"{name}.py", spec=TINY, trials=TRIALS)
    verdicts = result.verdicts
    assert "fail" not in verdicts.values(), result
    for claim, verdict in VERIFY[name].items():
        assert verdicts[claim] == verdict, (claim, result)


def test_a_plugin_that_changes_nothing_reproduces_every_theorem1_verdict():
    plugin = attnverify.verify("theorem1", plugin=EXAMPLES / "identity.py", spec=TINY, trials=TRIALS)
    builtin = attnverify.verify("theorem1", spec=TINY, trials=TRIALS)
    assert plugin.verdicts == builtin.verdicts
    assert {r["id"]: r["proof"] for r in plugin.records} == {r["id"]: r["proof"] for r in builtin.records}
    # Same draws, same model: the errors agree to rounding (compiled forward vs hand-written model).
    for mine, theirs in zip(plugin.records, builtin.records, strict=True):
        assert mine["max_error"] == pytest.approx(theirs["max_error"], rel=1e-6, abs=1e-14)


def test_notebook_script_runs(capsys):
    runpy.run_path(str(EXAMPLES / "notebook.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "'relu.theorem1': 'pass'" in out and "'thm1.gradient': 'hyp_unmet'" in out
    assert "'fail'" not in out
    assert "grad_x_input" in out and "popular" in out
