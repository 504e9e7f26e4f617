"""Plugins: loading a model variant, its one-line errors, the compiler's new nodes, decided
hypotheses, the model file, and the registry's replacement semantics (docs/plugins.md)."""

import dataclasses
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics import model as nm
from attnverify.numerics import plugin_model as pm
from attnverify.numerics.compile import CompileError, compile_expression, unsupported
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.theory import SymbolicModel
from attnverify.theory import symbols as S
from attnverify.theory.plugin import Plugin, logit_shift_exponents, plugin_spec
from attnverify.verification import REGISTRY, register, select, unregister
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)

from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.plugins import load_plugin
from attnverify.spec import ModelSpec

TINY = ModelSpec(max_len=5, d_embed=6, d_att=3, d_out=4, heads=2, vocab_size=20)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCORE = "    def score(self, i, t):\n"


def plugin_file(tmp_path, body: str, name: str = "variant.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def one_line_error(capsys, argv, *texts):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attnverify: error: "), err
    assert all(t in err[0] for t in texts), err[0]
    return err[0]


# -- bad plugin files: one line naming the file and the reason, exit 2, no output file --------
HEADER = "from attnverify.theory import SymbolicModel, symbols\nimport sympy as sp\n"
BAD = {
    # The prover refuses a Float, so "not proved" would read as "alpha is not weight / normaliser"
    "float_in_alpha": ("class Model(SymbolicModel):\n"
                       "    def weight(self, i, t):\n        return 1 / (1 + sp.exp(-0.5 * self.score(i, t)))\n"
                       "    def normaliser(self, i):\n        return sp.Integer(1)\n"
                       "    def alpha(self, i, t):\n        return 1 / (1 + sp.exp(-0.5 * self.score(i, t)))\n",
                       "Model.alpha or weight / normaliser holds a floating-point number"),
    "missing": (None, "no such file"),
    "syntax": ("class Model(SymbolicModel)\n    pass\n", "syntax error at line"),
    "no_model": ("class Other(SymbolicModel):\n    pass\n", "defines no Model"),
    "not_symbolic": ("class Model:\n    pass\n", "Model is not a subclass of attnverify.theory.SymbolicModel"),
    "not_expr": ("class Model(SymbolicModel):\n" + SCORE + "        return 1.5\n",
                 "Model.score returned float, not a SymPy expression"),
    "raises": ("class Model(SymbolicModel):\n" + SCORE + "        return undefined_name\n",
               "Model.score raised NameError"),
    "unknown_size": ("class Model(SymbolicModel):\n" + SCORE +
                     "        b = self.parameter('b', (symbols.K, sp.Symbol('L')))\n"
                     "        return super().score(i, t) + b[i, t]\n", "unknown size L"),
    "uncompilable": ("class Model(SymbolicModel):\n" + SCORE + "        return sp.erf(super().score(i, t))\n",
                     "cannot be compiled to JAX: erf"),
    # Accepted by `derive` and `init-model`, these crashed `verify` and `explain` with a CompileError traceback.
    "unbound_symbol": ("class Model(SymbolicModel):\n" + SCORE +
                       "        return super().score(i, t) + sp.Symbol('zz')\n",
                       "the model cannot be evaluated: unbound symbol zz"),
    "wrong_index_count": ("class Model(SymbolicModel):\n" + SCORE +
                          "        b = self.parameter('b', (symbols.K,))\n"
                          "        return super().score(i, t) + b[i, t]\n",
                          "the model cannot be evaluated: b[i, t] has 2 indices, the array b has 1 axes"),
    # SymPy's Sum moves the Piecewise out of itself, condition and all: t and s would be free.
    "piecewise_on_a_summed_index": ("class Model(SymbolicModel):\n    def weight(self, i, t):\n"
                                    "        return sp.Piecewise((super().weight(i, t), t < 5), (0, True))\n",
                                    "the forward (Model.output) has the free index s, t"),
    # Every gradient 0, both sides of thm1.derived 0 on every draw: it passed, vacuously.
    "constant_output": ("class Model(SymbolicModel):\n    def output(self):\n        return sp.Integer(1)\n",
                        "Model.output does not depend on the token embeddings e (it is 1)"),
    # A value of 0: the forward still holds e (in its attention) but is Sum(0, ...): PASS with error 0.
    "zero_value": ("class Model(SymbolicModel):\n    def value(self, i, o, t):\n        return sp.Integer(0)\n",
                   "Model.output does not depend on the token embeddings e"),
    # Sigmoid attention written as alpha alone: the forward (weight / normaliser) would not change.
    "alpha_alone": ("class Model(SymbolicModel):\n    def alpha(self, i, t):\n"
                    "        return 1 / (1 + sp.exp(-self.score(i, t)))\n", "Model.alpha is not weight / normaliser"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plugin_is_one_line_naming_the_file(tmp_path, capsys, case):
    body, reason = BAD[case]
    path = tmp_path / "variant.py" if body is None else plugin_file(tmp_path, HEADER + body)
    out = tmp_path / "model.npz"
    for argv in (["derive", "gradient", "--plugin", str(path)],
                 ["init-model", "--plugin", str(path), "--out", str(out), "--max-len", "5", "--d-embed", "6"]):
        line = one_line_error(capsys, argv, str(path), reason)
        assert "Traceback" not in line
    assert not out.exists() and not list(tmp_path.glob(".attnverify*"))


@pytest.mark.parametrize("raised, shown", [("MemoryError()", "MemoryError (line 3)"),
                                           ("ValueError('\\n  the reason')", "ValueError (line 3): the reason")])
def test_an_error_raised_by_the_file_is_named_with_what_it_says(tmp_path, capsys, raised, shown):
    # Can fail: an error that says nothing ended its line in "MemoryError (line 3): ", and one whose
    # message starts with a blank line showed that blank line as its reason.
    path = plugin_file(tmp_path, HEADER + f"raise {raised}\n")
    for flag in ("--plugin", "--claims-module"):
        assert one_line_error(capsys, ["claims", flag, str(path)]) == f"attnverify: error: {path}: {shown}"


def test_a_claims_module_named_as_a_module_that_raises_is_named_with_what_it_says(tmp_path, monkeypatch):
    # Can fail: imported by its dotted name (not its path), an error that says nothing ended in "MemoryError: ".
    from attnverify.plugins import load_claims_module

    (tmp_path / "says_nothing_claims.py").write_text("raise MemoryError()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError) as caught:
        load_claims_module("says_nothing_claims")
    assert str(caught.value) == "says_nothing_claims: MemoryError"


def test_plugin_claim_clashing_with_a_builtin_id(tmp_path, capsys):
    path = plugin_file(tmp_path, HEADER + textwrap.dedent("""
        from attnverify.verification import Claim, register
        register(Claim(id="thm1.gradient", group="mine", statement="mine", source="mine", lhs="l", rhs="r",
                       build=lambda spec: None, tolerance={"float64": 1e-10, "float32": 1e-4},
                       tolerance_reason="r", provenance="measured"))
        class Model(SymbolicModel):
            pass
    """))
    one_line_error(capsys, ["derive", "gradient", "--plugin", str(path)], str(path),
                   "'thm1.gradient' clashes with a built-in claim")


def test_registering_again_replaces_a_user_claim_not_a_builtin():
    from attnverify.verification.registry import BUILTIN

    mine = dataclasses.replace(REGISTRY["thm1.derived"], id="mine.derived")
    register(mine)
    again = dataclasses.replace(mine, statement="re-run cell")
    register(again)  # a re-run notebook cell: replaced, not an error
    assert REGISTRY["mine.derived"] is again and "mine.derived" not in BUILTIN
    with pytest.raises(InputError, match="clashes with a built-in claim"):
        register(dataclasses.replace(mine, id="thm1.gradient"))
    assert REGISTRY["thm1.gradient"].id == "thm1.gradient" and "thm1.gradient" in BUILTIN
    unregister("mine.derived")


def test_unregister_takes_a_users_claim_out_and_frees_its_id():
    # Can fail: a claims module's claim stayed in the registry for good (a later verify("all") ran it), and its
    # id could not be registered from another module.
    mine = dataclasses.replace(REGISTRY["thm1.derived"], id="mine.unregistered")
    register(mine)
    assert "mine.unregistered" in [c.id for c in select(["all"])]
    other = {"__name__": "another_cell", "register": register, "claim": dataclasses.replace(mine, statement="x")}
    with pytest.raises(InputError, match="already registered by .* or unregister it first"):
        exec("register(claim)", other)  # noqa: S102
    assert unregister("mine.unregistered") is mine
    assert "mine.unregistered" not in [c.id for c in select(["all"])]
    exec("register(claim)", other)  # noqa: S102  (the id is free)
    assert REGISTRY["mine.unregistered"].statement == "x"
    unregister("mine.unregistered")
    with pytest.raises(InputError, match="built in"):
        unregister("thm1.gradient")
    with pytest.raises(InputError, match="no user claim 'mine.unregistered'"):
        unregister("mine.unregistered")
    assert "thm1.gradient" in REGISTRY
    # in a fresh process, before anything filled the registry, a built-in claim is still named as built in
    proc = subprocess.run([sys.executable, "-c", "from attnverify.verification import unregister\n"
                           "try:\n    unregister('thm1.gradient')\nexcept Exception as err:\n    print(err)"],
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "claim thm1.gradient is built in: it cannot be unregistered", proc.stderr


# -- declarations --------------------------------------------------------------------------------
class _Biased(SymbolicModel):
    def score(self, i, t):
        b = self.parameter("b_pos", (S.K, S.T), init="uniform", scale=3.0)
        return super().score(i, t) + b[i, t] * self.constant("gain", 0.5)


def test_declarations_reach_draws_and_the_model_file(tmp_path):
    spec = plugin_spec(Plugin("biased", _Biased), TINY)
    params = draw_params(jax.random.PRNGKey(0), spec)
    assert params.extra["b_pos"].shape == (TINY.heads, TINY.max_len)
    assert float(params.extra["gain"]) == 0.5
    assert 0 < float(jnp.max(jnp.abs(params.extra["b_pos"]))) <= 0.3  # U(-0.1 * 3, 0.1 * 3)
    # The built-in arrays of a draw are those of the plain spec's draw of the same key.
    plain = draw_params(jax.random.PRNGKey(0), TINY)
    assert all(np.array_equal(a, b) for a, b in zip(params.base, plain, strict=True) if a is not None)
    path = tmp_path / "m.npz"
    vocab = ["[CLS]", "UNK"] + [f"w{j}" for j in range(TINY.vocab_size - 2)]
    pm.save_model(path, spec, params, vocab)
    loaded = pm.load_model(path, lambda stored: plugin_spec(spec.plugin, stored))
    assert np.array_equal(loaded.params.extra["b_pos"], params.extra["b_pos"])
    with pytest.raises(InputError, match="a plugin model's file"):
        from attnverify.numerics import modelfile

        modelfile.load(path)
    other = plugin_spec(Plugin("plain", SymbolicModel), TINY)  # declares nothing: b_pos is unexpected
    with pytest.raises(InputError, match="neither the model's nor one the plugin declares"):
        pm.load_model(path, lambda stored: plugin_spec(other.plugin, stored))


def test_declaring_a_parameter_twice_differently_is_refused():
    class Twice(SymbolicModel):
        def score(self, i, t):
            self.parameter("b", (S.K, S.T))
            return super().score(i, t) + self.parameter("b", (S.K, S.d_e))[i, t]

    with pytest.raises(InputError, match="declared twice differently"):
        Twice(TINY).output()


def test_a_constant_may_be_a_numpy_scalar_but_must_be_finite():
    # Can fail: np.float32(2.0) was refused as "not a finite number"; 10**400 raised OverflowError.
    model = SymbolicModel(TINY)
    assert model.constant("temp", np.float32(2.0)).is_positive
    assert model.constant("temp", 2.0) == model.constant("temp", np.float64(2.0))  # the same declaration
    assert model.constant("shift", np.int64(-3)).is_real and model.declared_constants["shift"].value == -3.0
    assert type(model.declared_constants["temp"].value) is float
    for value, said in ((np.float32("inf"), "must be a finite number, got inf"),
                        (np.float64("nan"), "must be a finite number, got nan"),
                        (np.bool_(True), "must be a number, got np.True_"), (True, "must be a number, got True"),
                        (10**400, "must be a finite number, got an integer of 401 digits"),
                        ("2.0", "must be a number, got '2.0'")):
        with pytest.raises(InputError, match=re.escape(f"constant bad: value {said}")):
            model.constant("bad", value)
    # a parameter's init scale the same way (np.float32(0.5) was refused; True taken as 1)
    model.parameter("w_s", (S.K,), scale=np.float32(0.5))
    assert model.declared_parameters["w_s"].scale == 0.5
    for value, said in ((np.float32("inf"), "must be a finite number, got inf"), (-1.0, "must be >= 0, got -1"),
                        (True, "must be a number, got True"), ("0.5", "must be a number, got '0.5'")):
        with pytest.raises(InputError, match=re.escape(f"parameter w_bad: scale {said}")):
            model.parameter("w_bad", (S.K,), scale=value)


def test_a_constant_beyond_float32_is_checked_without_numpys_warnings(tmp_path, capsys):
    # Can fail: `derive` and `claims` check a plugin's model in float32 (64-bit mode off there), and a
    # constant of 1e39 printed four lines of NumPy's "overflow encountered in cast" before their output.
    path = tmp_path / "c39.py"
    path.write_text("from attnverify.theory import SymbolicModel\n"
                    "class Model(SymbolicModel):\n"
                    "    def score(self, i, t):\n"
                    "        return super().score(i, t) * self.constant('temp', 1e39)\n")
    import warnings

    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["claims", "--plugin", str(path)]) == 0
    assert capsys.readouterr().err == ""


# -- the compiled forward is the true model ---------------------------------------------------------
@pytest.mark.parametrize("changes", [{}, {"output_link": "softmax", "classes": 3, "biases": True},
                                     {"scorer": "additive", "query": "mean", "value_nonlinearity": "tanh"}])
def test_compiled_forward_equals_the_hand_written_model(changes):
    spec = TINY.replace(**changes)
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    params, tokens = draw_params(k1, spec, scale=4.0), draw_document(k2, spec)
    e = nm.embed(params, tokens, spec)
    other = spec.replace(query="cls" if spec.query == "mean" else "mean")

    @jax.jit
    def both(params, e):
        return {"f": (nm.explained_output(params, e, spec), pm.explained_output(params, e, spec)),
                "g": (nm.output_gradient(params, e, spec), pm.output_gradient(params, e, spec)),
                "alpha": (nm.attention(params, e, spec), pm.attention(params, e, spec)),
                "other": pm.explained_output(params, e, other)}

    out = both(params, e)
    (f_hand, f_compiled), (g_hand, g_compiled) = out["f"], out["g"]
    assert abs(float(f_compiled - f_hand)) <= 1e-12 * abs(float(f_hand))
    assert float(jnp.max(jnp.abs(g_compiled - g_hand)) / jnp.max(jnp.abs(g_hand))) <= 1e-12
    np.testing.assert_allclose(*out["alpha"], rtol=1e-12)
    # ... and a changed model is told apart: the mean query is not the [CLS] query.
    assert abs(float(out["other"] - f_hand)) > 1e-6 * abs(float(f_hand))


#: Plugins whose forward depends on the softmax shift gamma^*: (the plugin's methods, its weights
#: and normaliser as written, by hand, from exp(score) and the declared arrays).
SHIFTED = {
    # a null slot of score 0 relative to exp(score - gamma^*), i.e. of score gamma^*
    "null_slot": ("    def normaliser(self, i):\n        return super().normaliser(i) + sp.Integer(1)\n",
                  lambda w, extra: (w, jnp.sum(w, axis=1) + 1.0)),
    # a floor on the weights, relative to the largest (a one-draw numerical check missed it: small scores)
    "floor": ("    def weight(self, i, t):\n        return sp.Max(super().weight(i, t), sp.Float(0.05))\n",
              lambda w, extra: (jnp.maximum(w, 0.05), jnp.sum(jnp.maximum(w, 0.05), axis=1))),
    # an attention sink whose drawn value is 0 (init "zeros"), so a draw cannot show it
    "sink": ("    def normaliser(self, i):\n        sink = self.parameter('sink', (symbols.K,), init='zeros')\n"
             "        return super().normaliser(i) + sink[i]\n",
             lambda w, extra: (w, jnp.sum(w, axis=1) + extra["sink"])),
}


@pytest.mark.parametrize("name", sorted(SHIFTED))
def test_a_forward_not_proved_free_of_the_shift_is_the_model_it_writes(tmp_path, name):
    """The derivation holds gamma^* constant; bound to the moving max_t gamma_t, the forward and
    its jax.grad were another model's (a null slot: 141 % off finite differences), and both sides
    of every check agreed on it. Not proved free of the shift, a forward gets it at 0."""
    body, written_parts = SHIFTED[name]
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + body)
    spec = plugin_spec(load_plugin(path, TINY), TINY)
    params = pm.draw_plugin_params(jax.random.PRNGKey(1), spec, scale=10.0)  # scores far apart
    if name == "sink":
        params = params._replace(extra={"sink": jnp.asarray([0.5, 2.0])})
    e = pm.embed(params, draw_document(jax.random.PRNGKey(2), TINY), spec)
    base = params.base

    def written(e):  # the model the file writes, by hand
        q, k = jnp.einsum("iak,k->ia", base.W_q, e[0]), jnp.einsum("iak,tk->ita", base.W_k, e)
        v = jnp.einsum("iok,tk->ito", base.W_v, e)
        w, normaliser = written_parts(jnp.exp(jnp.einsum("ia,ita->it", q, k) / jnp.sqrt(TINY.d_att)), params.extra)
        s = jnp.einsum("io,ito->it", base.W_l[:, TINY.explained_class], v)
        return jnp.mean(jnp.sum(w * s, axis=1) / normaliser)

    assert not pm.compiled_model(spec).shifts_cancel
    f, g = pm.explained_output(params, e, spec), pm.output_gradient(params, e, spec)
    assert abs(float(f - written(e))) <= 1e-12 * abs(float(written(e)))
    assert float(jnp.max(jnp.abs(g - jax.grad(written)(e))) / jnp.max(jnp.abs(g))) <= 1e-10


def test_the_shift_is_proved_free_where_it_cancels():
    from attnverify.theory.plugin import shifts_cancel

    for link in ({}, {"output_link": "sigmoid", "biases": True}, {"output_link": "softmax", "classes": 3}):
        spec = plugin_spec(load_plugin(EXAMPLES / "temperature.py", TINY.replace(**link)), TINY.replace(**link))
        assert shifts_cancel(spec), link


#: A temperature written in the weight, where the shift subtracts from the scaled score: the
#: scores' max as gamma^* left exp(max score (1 / temp - 1)) = e^354 or more in float64. Each: the
#: weight's body, and by hand its softmax's logits and live positions from the scores g (K, T) and
#: the plugin's parameters.
HOT_WEIGHT = {
    "over_temp": ("        return sp.exp(self.score(i, t) / self.constant('temp', 0.0005) - symbols.gamma_shift[i])\n",
                  lambda g, extra: (2000 * g, None)),
    "power": ("        return sp.exp(self.score(i, t) - symbols.gamma_shift[i]) ** 2000\n",  # rate 2000
              lambda g, extra: (2000 * g, None)),
    "learned": ("        hot = self.parameter('hot', (symbols.K,), init='ones')\n"  # rate 1, E_0 = 2000 hot score
                "        return sp.exp(2000 * hot[i] * self.score(i, t) - symbols.gamma_shift[i])\n",
                lambda g, extra: (2000 * extra["hot"][:, None] * g, None)),
    "negative_rate": ("        return sp.exp(-2000 * (self.score(i, t) - symbols.gamma_shift[i]))\n",  # rate -2000
                      lambda g, extra: (-2000 * g, None)),
    # a rate per head, of either sign (set below): compiled, and the min or the max by its sign
    "signed_rates": ("        hot = self.parameter('hot', (symbols.K,))\n"
                     "        return sp.exp(2000 * hot[i] * (self.score(i, t) - symbols.gamma_shift[i]))\n",
                     lambda g, extra: (2000 * extra["hot"][:, None] * g, None)),
    # a window: the shift is taken over the live positions (over all, every live weight underflowed)
    "window": ("        return sp.Heaviside(1 - t, 1) * sp.exp(self.score(i, t) / self.constant('temp', 0.0005)"
               " - symbols.gamma_shift[i])\n",
               lambda g, extra: (2000 * g, jnp.arange(g.shape[1]) <= 1)),
}


@pytest.mark.parametrize("name", sorted(HOT_WEIGHT))
def test_a_weight_that_scales_its_score_is_shifted_by_its_own_exponent(tmp_path, name):
    """Can fail: gamma^* was the scores' max whatever the weight's exponent, so a temperature of
    0.002 written in `weight` overflowed the normaliser's square in the backward pass: explain's
    gradients were off by up to 500x (grad_l1; here 356x), with no NaN, and thm1.derived passed on them."""
    body, logits = HOT_WEIGHT[name]
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def weight(self, i, t):\n" + body)
    spec = plugin_spec(load_plugin(path, TINY), TINY)
    params = pm.draw_plugin_params(jax.random.PRNGKey(3), spec, scale=4.0)
    if name == "signed_rates":  # one head of each sign
        params = params._replace(extra={"hot": jnp.asarray([1.0, -0.7])})
    tokens = draw_document(jax.random.PRNGKey(4), TINY)
    e, base = pm.embed(params, tokens, spec), params.base

    def written(e):  # the softmax by hand: jax.nn.softmax shifts by its own max (over `where`)
        q, k = jnp.einsum("iak,k->ia", base.W_q, e[0]), jnp.einsum("iak,tk->ita", base.W_k, e)
        z, live = logits(jnp.einsum("ia,ita->it", q, k) / jnp.sqrt(TINY.d_att), params.extra)
        alpha = jax.nn.softmax(z, axis=1, where=live) if live is not None else jax.nn.softmax(z, axis=1)
        alpha = jnp.where(live, alpha, 0) if live is not None else alpha
        s = jnp.einsum("io,ito->it", base.W_l[:, TINY.explained_class], jnp.einsum("iok,tk->ito", base.W_v, e))
        return jnp.mean(jnp.sum(alpha * s, axis=1))

    assert pm.compiled_model(spec).shifts_cancel
    f, g, truth = pm.explained_output(params, e, spec), pm.output_gradient(params, e, spec), jax.grad(written)(e)
    assert abs(float(f - written(e))) <= 1e-12 * abs(float(written(e)))
    assert float(jnp.max(jnp.abs(g - truth)) / jnp.max(jnp.abs(truth))) <= 1e-10
    derived = pm.plugin_theorem1_quantities(spec)["derived"](params, tokens)
    assert float(jnp.max(jnp.abs(derived - truth)) / jnp.max(jnp.abs(truth))) <= 1e-10


#: Outputs that scale the logits z by 1 / temp, written with z^*. Each: the output's body and temp. At
#: temp = 0.0004 the logits' max as z^* left exp(max z (1 / temp - 1)), up to e^{362} here, whose square
#: overflowed in the backward pass; at 0.00005 the spread of z / temp (540) does the same if the min of a
#: negative rate's E_0 / r is taken for its max.
SOFTMAX_OVER_TEMP = ("        return sp.exp(z / temp {sign} symbols.logit_shift) / sp.Sum(\n"
                     "            sp.exp(self.logit(symbols.c) / temp {sign} symbols.logit_shift),\n"
                     "            (symbols.c, 0, symbols.C - 1))\n")
HOT_OUTPUT = {"softmax": (SOFTMAX_OVER_TEMP.format(sign="-"), 0.0004),
              "negative_rate": (SOFTMAX_OVER_TEMP.format(sign="+"), 0.00005)}  # rate -1: z^* at the min


@pytest.mark.parametrize("name", sorted(HOT_OUTPUT))
def test_an_output_that_scales_its_logits_is_shifted_by_its_own_exponent(tmp_path, name):
    """Can fail: z^* was the logits' max whatever the output's exponents, so a softmax of z / 0.0004
    written in `output` gave gradients 94-100 % off jax.grad of the same function written by hand
    (and 218 where the true gradient is 0), with no NaN."""
    body, temp = HOT_OUTPUT[name]
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def output(self):\n"
                       f"        z, temp = self.logit(), self.constant('temp', {temp})\n" + body)
    spec = plugin_spec(load_plugin(path, TINY), TINY)
    assert pm.compiled_model(spec).shifts_cancel and pm.compiled_model(spec).logit_exponents is not None
    params = pm.draw_plugin_params(jax.random.PRNGKey(0), spec, scale=4.0)
    e = pm.embed(params, draw_document(jax.random.PRNGKey(10), TINY), spec)

    def written(e):  # jax.nn.softmax shifts by its own max
        return jax.nn.softmax(nm.logits(params.base, e, TINY) / temp)[TINY.explained_class]

    f, g, truth = pm.explained_output(params, e, spec), pm.output_gradient(params, e, spec), jax.grad(written)(e)
    assert 0 < float(written(e)) < 1e-20  # the first draw's z is not saturated in float64, nor its gradient
    assert abs(float(f - written(e))) <= 1e-10 * abs(float(written(e)))
    assert float(jnp.max(jnp.abs(g - truth)) / jnp.max(jnp.abs(truth))) <= 1e-10


@pytest.mark.parametrize("exponent", [250.0, 500.0])
def test_a_weight_too_large_to_square_gives_a_nan_gradient_not_a_wrong_one(tmp_path, exponent):
    """Can fail: a weight written without gamma^*, exp(score / temp), whose largest exponent is 500
    (e^500 fits in float64, its square does not) gave gradients 239x off jax.grad of the same softmax
    written with jax.nn.softmax, without a NaN (the quotient rule's b^2 overflowed), and thm1.derived
    passed on them. The forward stays exact; the gradient is NaN there, and exact at 250."""
    params = pm.draw_plugin_params(jax.random.PRNGKey(3), TINY, scale=4.0)
    tokens = draw_document(jax.random.PRNGKey(4), TINY)
    e = pm.embed(params, tokens, TINY)
    temp = float(jnp.max(nm.scores(params.base, e, TINY))) / exponent
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def weight(self, i, t):\n"
                       f"        return sp.exp(self.score(i, t) / self.constant('temp', {temp!r}))\n")
    spec = plugin_spec(load_plugin(path, TINY), TINY)
    params = pm.draw_plugin_params(jax.random.PRNGKey(3), spec, scale=4.0)
    base = params.base

    def written(e):
        alpha = jax.nn.softmax(nm.scores(base, e, TINY) / temp, axis=1)
        s = jnp.einsum("io,ito->it", base.W_l[:, TINY.explained_class], jnp.einsum("iok,tk->ito", base.W_v, e))
        return jnp.mean(jnp.sum(alpha * s, axis=1))

    f, g, truth = pm.explained_output(params, e, spec), pm.output_gradient(params, e, spec), jax.grad(written)(e)
    assert abs(float(f - written(e))) <= 1e-12 * abs(float(written(e)))
    if exponent < 354:  # e^(2 x 250) fits: nothing lost, nothing flagged
        assert float(jnp.max(jnp.abs(g - truth)) / jnp.max(jnp.abs(truth))) <= 1e-10
    else:
        assert bool(jnp.all(jnp.isnan(g))), g


def test_a_step_of_the_output_is_refused_where_gradients_are_compared(tmp_path, capsys):
    # Can fail: sign(f) has the gradient 0 wherever it exists; thm1.derived passed with an error of 0.
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def output(self):\n"
                       "        return sp.sign(super().output())\n")
    for argv in (["derive", "gradient", "--plugin", str(path)],
                 ["verify", "thm1.derived", "--plugin", str(path), "--trials", "4", "--max-len", "5"]):
        one_line_error(capsys, argv, str(path), "the gradient of Model.output is 0 wherever it exists")


def test_a_misspelt_override_is_warned_of(tmp_path, capsys):
    # Can fail: `scroe` overrode nothing, the plugin was the paper's model, and every verdict was the paper's.
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def scroe(self, i, t):\n"
                       "        return 2 * super().score(i, t)\n    def _own_helper(self):\n        return 1\n")
    load_plugin(path, TINY)
    err = capsys.readouterr().err
    assert "Model.scroe overrides nothing" in err and "did you mean score?" in err and "_own_helper" not in err
    typo = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    nonfinite_reasn = 'log of z < 0'\n",
                       "typo.py")
    load_plugin(typo, TINY)
    assert "Model.nonfinite_reasn overrides nothing" in capsys.readouterr().err


def test_the_gradient_is_nan_where_the_output_is_undefined(tmp_path):
    # Can fail: jax.grad of log(f) is a finite f'/f at f < 0, where the model is undefined; thm1.derived
    # passed counting those draws. Where f > 0 the gradient is f'/f, compared with jax.grad written here.
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def output(self):\n"
                       "        return sp.log(super().output())\n")
    spec = plugin_spec(load_plugin(path, TINY), TINY)
    signs = set()
    for seed in range(8):
        params = pm.draw_plugin_params(jax.random.PRNGKey(seed), spec)
        e = pm.embed(params, draw_document(jax.random.PRNGKey(100 + seed), TINY), spec)
        z = nm.explained_output(params.base, e, TINY)
        g = pm.output_gradient(params, e, spec)
        if float(z) > 0:
            truth = jax.grad(lambda x, base=params.base: jnp.log(nm.explained_output(base, x, TINY)))(e)
            assert float(jnp.max(jnp.abs(g - truth)) / jnp.max(jnp.abs(truth))) <= 1e-12
        else:
            assert bool(jnp.all(jnp.isnan(g))) and bool(jnp.isnan(pm.explained_output(params, e, spec)))
        signs.add(float(z) > 0)
    assert signs == {True, False}  # both cases were met


def test_a_model_that_declares_where_it_is_undefined_has_those_draws_left_out_and_named(tmp_path, capsys):
    # Without the declaration a NaN draw fails the claim; with it a draw where the model's output is NaN is
    # counted, named and left out. A NaN where the model is a number is the claim's own: it still fails (it was
    # excused too, whatever made it NaN). A claim's own reason comes first; a reason that is no one-line
    # sentence is refused.
    from attnverify.numerics.draws import sweep_draw
    from attnverify.verification.sweep import judge_claim, model_undefined, run_claim

    body = "class Model(SymbolicModel):\n{}    def output(self):\n        return sp.log(super().output())\n"
    plain = plugin_spec(load_plugin(plugin_file(tmp_path, HEADER + body.format(""), "plain.py"), TINY), TINY)
    declared = plugin_spec(load_plugin(plugin_file(tmp_path, HEADER + body.format(
        "    nonfinite_reason = 'log of a logit <= 0'\n"), "declared.py"), TINY), TINY)
    # where log(f) is undefined, computed here from the paper's model on each sweep draw: f <= 0; over more
    # than one block of draws (BLOCK = 128), as the sweep computes them
    params, tokens = jax.vmap(lambda d: sweep_draw(0, d, declared, scale=1.0, dtype=jnp.float64))(jnp.arange(130))
    f = jax.vmap(lambda p, x: nm.explained_output(p.base, nm.embed(p.base, x, TINY), TINY))(params, tokens)
    assert np.array_equal(model_undefined(declared, trials=130, seed=0, dtype="float64", scale=1.0), f <= 0)
    undefined = np.asarray(f[:8] <= 0)
    assert 0 < undefined.sum() < 8  # both kinds of draw are met
    errors = np.where(undefined, np.nan, 1e-15)
    claim = REGISTRY["thm1.derived"]
    assert judge_claim(claim, plain, errors, trials=8).verdict == "fail"
    result = judge_claim(claim, declared, errors, trials=8)
    n = int(undefined.sum())
    assert result.verdict == "pass" and result.nonfinite == n
    assert result.finding == f"{n} of 8 draws NaN/inf, not judged (declared: declared's model: log of a logit <= 0)."
    # the sweep itself: the derived gradient is NaN exactly where the model is undefined
    swept = run_claim(claim, declared, trials=8, progress=False)
    assert swept.verdict == "pass" and np.array_equal(np.isnan(swept.errors), undefined)
    # a NaN on a draw where the model is a number is not covered by the model's reason
    first = int(np.flatnonzero(~undefined)[0])
    own_nan = errors.copy()
    own_nan[first] = np.nan
    result = judge_claim(claim, declared, own_nan, trials=8)
    assert result.verdict == "fail" and result.worst_draw == first, result
    assert result.finding.startswith(f"{n + 1} of 8 draws are NaN/inf, 1 of them where the output of plugin "
                                     f"declared's model is a number (first: draw {first}): what the model "
                                     "declares (log of a logit <= 0) covers the draws where it is undefined")
    own = dataclasses.replace(claim, nonfinite_reason="the claim's own")
    assert "declared: the claim's own" in judge_claim(own, declared, errors, trials=8).finding
    # a user's claim (here a copy of the built-in one) states its own reason: its NaN may be its own code's
    assert judge_claim(dataclasses.replace(claim), declared, errors, trials=8).verdict == "fail"
    bad = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    nonfinite_reason = 3\n", "bad.py")
    one_line_error(capsys, ["derive", "gradient", "--plugin", str(bad)], "Model.nonfinite_reason must be a sentence")


def test_integrated_gradients_undefined_at_the_baseline_is_null_with_its_reason():
    # Can fail: a plugin's model undefined at the all-UNK baseline (ReLU-normalised attention with every
    # score <= 0: 0/0) made `explain` refuse the whole text, attention and gradients too.
    from attnverify.numerics.related.integrated_gradients import ORDER, refined

    calls = []
    ig, nodes, reason = refined(lambda order: calls.append(order) or np.ones(3), float("nan"))
    assert ig is None and nodes == ORDER and "f(e) - f(b) is not finite" in reason and not calls
    ig, nodes, reason = refined(lambda order: np.array([1.0, np.nan, 0.0]), 1.0)
    assert ig is None and "NaN or infinite on the straight path" in reason
    ig, nodes, reason = refined(lambda order: np.array([0.25, 0.75]), 1.0)
    assert reason is None and list(ig) == [0.25, 0.75]


@pytest.mark.parametrize("link", ["softmax", "sigmoid"])
def test_the_built_in_links_exponents_give_the_logits_max(link):
    # Can fail: read from the output as a plugin's would be, the exponents of the built-in links put z^* where
    # the numerics put it for them: max_c z_c (softmax), max(0, z) (sigmoid).
    spec = TINY.replace(output_link=link)
    parts = logit_shift_exponents(spec)
    z = SymbolicModel(spec).logit()
    got = {(sp.simplify(base - z) == 0, base == 0, rate, tuple(ranges)) for base, rate, ranges in parts}
    want = {(True, False, 1, ()), (False, False, 1, (S.c,))} if link == "softmax" else {(True, False, 1, ()),
                                                                                        (False, True, 1, ())}
    assert got == want, parts


@pytest.mark.parametrize("body", [
    SCORE + "        return sp.Abs(super().score(i, t))\n",  # SymPy's d|a| has re(a), im(a) unless a is real
    "    def weight(self, i, t):\n        return sp.Heaviside(3 - t, 1) * super().weight(i, t)\n",  # t < 4
    "    def alpha(self, i, t):\n        return self.weight(i, t) / self.normaliser(i)\n",  # alpha as the forward's
    # steps of a value (ReLU): their derivative was left as Derivative(sign) or DiracDelta, and refused
    "    def value(self, i, o, t):\n        v = super().value(i, o, t)\n        return v * (1 + sp.sign(v)) / 2\n",
    "    def value(self, i, o, t):\n        v = super().value(i, o, t)\n        return v * sp.Heaviside(v)\n",
], ids=["abs", "heaviside_window", "alpha_as_the_forwards", "sign_gate", "heaviside_gate"])
def test_what_the_refusals_advise_derives_and_compiles_to_the_true_gradient(tmp_path, body):
    """An absolute value, a window on positions written with Heaviside (as the refusal of a
    Piecewise advises), and an alpha that is the forward's own: the SymPy gradient compiles and
    equals jax.grad of the compiled forward."""
    spec = plugin_spec(load_plugin(plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + body), TINY), TINY)
    quantities = pm.plugin_theorem1_quantities(spec)
    params = pm.draw_plugin_params(jax.random.PRNGKey(4), spec, scale=3.0)
    tokens = draw_document(jax.random.PRNGKey(5), TINY)
    derived, autodiff = quantities["derived"](params, tokens), quantities["autodiff"](params, tokens)
    assert float(jnp.max(jnp.abs(derived - autodiff)) / jnp.max(jnp.abs(autodiff))) <= 1e-12


# -- hypotheses decided by proof ----------------------------------------------------------------------
class Same(SymbolicModel):
    """The paper's score, overridden: proved the paper's model."""

    def score(self, i, t):
        return super().score(i, t)


class Hotter(SymbolicModel):
    """A temperature of 2: not the paper's model."""

    def score(self, i, t):
        return super().score(i, t) / 2


def test_hypotheses_hold_only_when_the_forward_is_proved_the_papers():
    from attnverify.verification.registry import PAPER_HYPOTHESES, REGISTRY

    claim = REGISTRY["thm1.gradient"]
    same, hotter = plugin_spec(Plugin("same", Same), TINY), plugin_spec(Plugin("hotter", Hotter), TINY)
    assert same.satisfies(PAPER_HYPOTHESES) and claim.expected(same) is True and claim.unmet(same) == {}
    assert not hotter.satisfies(PAPER_HYPOTHESES) and claim.expected(hotter) is None
    assert set(claim.unmet(hotter)) == set(PAPER_HYPOTHESES)
    assert hotter.satisfies({})  # no hypothesis: nothing to prove
    # A plugin on a spec whose switches differ from the paper's is proved to be that spec's model.
    summed = plugin_spec(Plugin("same", Same), TINY.replace(head_aggregation="sum"))
    assert not summed.satisfies(PAPER_HYPOTHESES) and summed.satisfies({"head_aggregation": "sum"})


def test_the_papers_forward_in_other_quantities_does_not_meet_the_papers_hypotheses():
    # The 1/sqrt(d_att) moved into the query: the paper's forward (proved), but the statements are
    # written in the model's own query, which they then scale twice. Judged on the forward alone,
    # Theorem 1 came out an unexpected FAIL and thm1.gradient_cls_row "refutes the paper".
    from attnverify.theory.plugin import forward_proof, unequal_quantities
    from attnverify.verification.registry import PAPER_HYPOTHESES, REGISTRY

    class ScaledQuery(SymbolicModel):
        def query(self, i, a):
            return super().query(i, a) / sp.sqrt(S.d_att)

        def score(self, i, t):
            return sp.Sum(self.query(i, S.a) * self.key(i, S.a, t), (S.a, 0, S.d_att - 1))

    spec = plugin_spec(Plugin("scaled_query", ScaledQuery), TINY)
    assert forward_proof(spec) == "proved" and unequal_quantities(spec, TINY) == ("query",)
    assert not spec.satisfies(PAPER_HYPOTHESES) and REGISTRY["thm1.gradient"].expected(spec) is None
    from attnverify.theory.derivations import derive_gradient

    from attnverify.plugins import derivation_payload  # what derive --json says of it

    plugin = derivation_payload(derive_gradient(spec))["plugin"]
    assert plugin["forward_is_papers"] == "proved" and plugin["quantities_not_papers"] == ["query"]


# -- the compiler: what the SymPy layer writes over index sums --------------------------------------
x = sp.IndexedBase("e")


def _compile(expr, free=(S.tau,)):
    return compile_expression(expr, free)


@pytest.mark.parametrize("name", ["relu", "sqrt_of_sum", "piecewise_range", "delta", "offset_sum", "heaviside"])
def test_compiler_nodes_against_numpy(name):
    e = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    E = np.asarray(e)
    t, k = S.t, S.k
    cases = {
        "relu": (sp.Sum(sp.Max(0, x[S.tau, k]), (k, 0, S.d_e - 1)), np.maximum(E, 0).sum(1)),
        "sqrt_of_sum": (sp.sqrt(sp.Sum(x[S.tau, k] ** 2, (k, 0, S.d_e - 1)) + 1),
                        np.sqrt((E ** 2).sum(1) + 1)),
        "piecewise_range": (sp.Piecewise((x[S.tau, 2], S.tau <= 1), (0, True)),
                            np.where(np.arange(5) <= 1, E[:, 2], 0)),
        "delta": (sp.Sum(sp.KroneckerDelta(t, S.tau) * x[t, 0], (t, 0, S.T - 1)), E[:, 0]),
        "offset_sum": (sp.Sum(x[t, 1], (t, S.tau, S.T - 1)), np.cumsum(E[::-1, 1])[::-1]),
        "heaviside": (sp.Heaviside(x[S.tau, 0]) * x[S.tau, 1], np.heaviside(E[:, 0], 0.5) * E[:, 1]),
    }
    expr, expected = cases[name]
    got = np.asarray(_compile(expr)({"e": e}))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    # A wrong translation is caught: the same check against a perturbed expectation fails.
    assert not np.allclose(got, expected + 1e-3)


def test_read_outside_an_axis_is_nan_unless_a_condition_rules_it_out():
    # e has d_e = 3 columns; m ranges over 5 (a d_out > d_e would read past the axis).
    e = jnp.arange(15.0).reshape(5, 3)
    unguarded = compile_expression(x[0, S.m], (S.m,), ranges={S.m: S.T})({"e": e})
    assert np.isnan(np.asarray(unguarded)[3:]).all() and np.asarray(unguarded)[:3].tolist() == [0, 1, 2]
    guarded = compile_expression(sp.Piecewise((x[0, S.m], S.m <= S.d_e - 1), (0, True)), (S.m,),
                                 ranges={S.m: S.T})({"e": e})
    assert np.asarray(guarded).tolist() == [0, 1, 2, 0, 0]


@pytest.mark.parametrize("expr,node", [(sp.erf(x[0, 0]), "erf"), (sp.Integral(x[0, 0], (S.t, 0, 1)), "Integral"),
                                       (sp.Derivative(sp.Function("g")(x[0, 0]), x[0, 0]), "Derivative")])
def test_compiler_refuses_other_nodes_naming_them(expr, node):
    assert unsupported(expr).startswith(node)
    with pytest.raises(CompileError, match=f"cannot compile {node}"):
        compile_expression(expr)


def test_load_plugin_returns_a_checked_plugin(tmp_path):
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + SCORE
                       + "        return super().score(i, t) * self.constant('gain', 2.0)\n")
    plugin = load_plugin(path, TINY)
    assert plugin.name == "variant" and plugin.path == str(path) and len(plugin.digest) == 64
    assert isinstance(SymbolicModel(plugin_spec(plugin, TINY)), plugin.model)


CLAIMS_MODULE = """
from attnverify.numerics import autodiff_gradient
from attnverify.verification import Claim, register

def build(spec):
    g = autodiff_gradient(spec)
    return lambda params, tokens: (g(params, tokens)[1:], g(params, tokens)[1:])

register(Claim(id="mine.self", group="mine", statement="the gradient equals itself", source="test",
               lhs="jax.grad", rhs="jax.grad", build=build, tolerance={"float64": 0.0, "float32": 0.0},
               tolerance_reason="the same computation twice", provenance="measured"))
"""


def test_claims_module_runs_in_verify_and_is_listed(tmp_path, capsys):
    module = plugin_file(tmp_path, CLAIMS_MODULE, "my_claims.py")
    out = tmp_path / "r.json"
    flags = ["--max-len", "5", "--d-embed", "6", "--d-att", "3", "--d-out", "4", "--heads", "2"]
    assert main(["claims", "--claims-module", str(module)]) == 0
    assert "mine.self" in capsys.readouterr().out
    assert main(["verify", "mine", "--claims-module", str(module), "--trials", "4", "--quiet",
                 "--json", str(out), *flags]) == 0
    import json

    (record,) = json.loads(out.read_text())
    assert record["id"] == "mine.self" and record["verdict"] == "pass"
    one_line_error(capsys, ["verify", "mine", "--claims-module", "no_such_module_xyz"],
                   "no_such_module_xyz: no such claims module")


def test_a_plugin_file_given_as_a_claims_module_is_named_so(capsys):
    # Can fail: its claims ran without the plugin's model and failed with "unbound symbol temperature"
    # (`verify`), or landed under "Could not run" with exit 1 (`report`); its claims are not left registered.
    path = EXAMPLES / "temperature.py"
    said = one_line_error(capsys, ["verify", "temperature", "--claims-module", str(path), "--trials", "2"],
                          "defines Model, a plugin's model")
    assert said.endswith(f"give the file with --plugin {path}")
    assert not [claim_id for claim_id in REGISTRY if claim_id.startswith("temperature.")]


def test_a_plugins_claims_run_under_that_plugin_only():
    from pathlib import Path

    from attnverify.plugins import select_claims

    path = Path(__file__).resolve().parent.parent / "examples" / "temperature.py"
    spec = plugin_spec(load_plugin(path, TINY), TINY)
    assert [c.id for c in select_claims(["temperature"], spec)] == ["temperature.theorem1"]
    assert "temperature.theorem1" not in [c.id for c in select_claims(["all"], TINY)]
    with pytest.raises(InputError, match="belongs to the plugin"):
        select_claims(["temperature.theorem1"], TINY)
    with pytest.raises(InputError, match="does not run on a plugin model"):
        select_claims(["lime"], spec)
    # an id the plugin registered, unregistered and registered here, is this module's claim, not the plugin's
    register(dataclasses.replace(unregister("temperature.theorem1"), id="temperature.theorem1"))
    assert [c.id for c in select_claims(["temperature.theorem1"], TINY)] == ["temperature.theorem1"]
    unregister("temperature.theorem1")


def test_a_model_file_of_another_version_of_the_plugin_is_warned_of(tmp_path, capsys):
    # Can fail: a model file made with `temperature = 2.0` was explained, after the plugin file was
    # edited to 3.0, with the file's stored 2.0 and not a word (the stored SHA-256 was never read).
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + SCORE +
                       "        return super().score(i, t) / self.constant('temperature', 2.0)\n")
    model = tmp_path / "model.npz"
    sizes = ["--max-len", "5", "--d-embed", "6", "--vocab-size", "12"]
    assert main(["init-model", "--plugin", str(path), "--out", str(model), *sizes]) == 0
    explain = ["explain", "--model", str(model), "--plugin", str(path), "--text", "the a", "--json"]
    capsys.readouterr()
    assert main(explain) == 0
    first = capsys.readouterr()
    assert first.err == ""
    path.write_text(path.read_text().replace("2.0", "3.0"))
    assert main(explain) == 0
    again = capsys.readouterr()
    err = again.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"attnverify: warning: {model}: written by another version of {path}")
    assert again.out == first.out  # the file's constant, as the warning says


def test_resume_refuses_the_results_of_a_plugin_whose_helper_module_changed(tmp_path, capsys, monkeypatch):
    # Can fail: a plugin read its temperature from a helper module beside it; after the helper was
    # edited, `--resume` read back the first run's errors (the run was identified by the plugin file
    # alone), where a fresh run failed.
    (tmp_path / "temperature_of_run.py").write_text("TEMP = 1.0\n")
    path = plugin_file(tmp_path, "from temperature_of_run import TEMP\n" + HEADER + "class Model(SymbolicModel):\n"
                       + SCORE + "        return super().score(i, t) / self.constant('temp', TEMP)\n", name="hot.py")
    sizes = ["--max-len", "5", "--d-embed", "6", "--d-att", "3", "--d-out", "4", "--heads", "2", "--vocab-size", "20"]
    argv = ["verify", "thm1.gradient", "--plugin", str(path), "--trials", "4", "--quiet", "--out",
            str(tmp_path / "run"), *sizes]
    assert main(argv) == 0
    capsys.readouterr()
    # the same file named another way (relative, from its folder) is the same plugin: resumed (it was refused)
    monkeypatch.chdir(tmp_path)
    assert main([*argv[:3], "hot.py", *argv[4:], "--resume"]) == 0
    (tmp_path / "temperature_of_run.py").write_text("TEMP = 0.2\n")
    one_line_error(capsys, [*argv, "--resume"], "spec differs from the first run", "plugin sha256",
                   "the plugin or a helper module it imports changed")


def test_a_hypothesis_unmet_names_the_switch_and_the_plugin_apart():
    # Can fail: under the identity plugin, --output-link sigmoid was reported as every switch being
    # "plugin identity"; under a temperature plugin, as six switches each set to the plugin.
    from attnverify.verification.registry import REGISTRY
    from attnverify.verification.sweep import _unmet_text

    claim = REGISTRY["thm1.gradient"]
    sigmoid = TINY.replace(output_link="sigmoid")
    assert claim.unmet(plugin_spec(Plugin("same", Same), sigmoid)) == {"output_link": "sigmoid"}
    assert _unmet_text(claim, plugin_spec(Plugin("same", Same), sigmoid)) == \
        "(output_link=sigmoid; the statement assumes output_link=logit)"
    text = _unmet_text(claim, plugin_spec(Plugin("hotter", Hotter), sigmoid))
    assert text.startswith("(output_link=sigmoid; the statement assumes output_link=logit; plugin hotter: its model "
                           "is not proved to be the one the statement assumes, ") and text.count("plugin hotter") == 1
    assert "output_link=logit" not in text.split("plugin hotter")[1]


def test_derive_says_why_a_forward_with_a_float_is_not_proved(tmp_path, capsys):
    # Can fail: a score * 0.5 made every comparison "not proved" (the prover refuses a Float), with no word why.
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + SCORE
                       + "        return super().score(i, t) * 0.5\n", name="half.py")
    assert main(["derive", "gradient", "--plugin", str(path)]) == 0
    assert "note: the forward holds floating-point numbers (0.5), so nothing with it is proved for all sizes" \
        in capsys.readouterr().out


def test_two_plugins_sharing_a_helper_each_count_its_edits(tmp_path):
    # Can fail: the second plugin beside a helper the first had imported found it in sys.modules, did not count
    # it as its own, and after the helper was edited was served from memory, with the old digest.
    (tmp_path / "shared_temperature.py").write_text("TEMP = 1.0\n")
    body = "from shared_temperature import TEMP\n" + HEADER + "class Model(SymbolicModel):\n" + SCORE \
        + "        return super().score(i, t) / self.constant('temp', TEMP)\n"
    first, second = plugin_file(tmp_path, body, name="first.py"), plugin_file(tmp_path, "# the other\n" + body,
                                                                              name="second.py")
    first_before = load_plugin(first, TINY, compile_check=False)
    before = load_plugin(second, TINY, compile_check=False)
    (tmp_path / "shared_temperature.py").write_text("TEMP = 0.2\n")
    after = load_plugin(second, TINY, compile_check=False)
    assert after is not before and after.digest != before.digest
    assert load_plugin(first, TINY, compile_check=False).digest != first_before.digest


def test_init_model_refuses_a_plugin_model_undefined_at_its_draw(tmp_path, capsys):
    # Can fail: a score divided by a constant 0 was written to a model file (exit 0) that every later command refused
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + SCORE
                       + "        return super().score(i, t) / self.constant('cc', 0.0)\n", name="zero.py")
    out = tmp_path / "z.npz"
    one_line_error(capsys, ["init-model", "--plugin", str(path), "--out", str(out), "--max-len", "5", "--d-embed", "6"],
                   "the drawn model: the logits are NaN: the plugin's model is undefined there")
    assert not out.exists()


def test_a_sum_over_too_many_values_to_hold_is_refused_in_one_line(tmp_path, capsys):
    # Can fail: a sum up to 10**9 was compiled into arrays of 10**9 values (16 GB: the process was killed); 2**25
    # here. The forward only needs an einsum axis of that length; the derived gradient holds the index's values.
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n" + SCORE
                       + "        return sp.Sum(super().score(i, t), (symbols.s, 0, 2**25)) / 2**25\n", name="long.py")
    out = tmp_path / "run"
    one_line_error(capsys, ["verify", "thm1.derived", "--plugin", str(path), "--trials", "2", "--quiet", "--out",
                            str(out), "--max-len", "5", "--d-embed", "6", "--d-att", "3", "--d-out", "4", "--heads",
                            "2", "--vocab-size", "20"],
                   "runs up to 33554432, and its values would be held as an array of 33554433 (more than 16777216")
    assert not out.exists()


def test_explain_names_a_plugins_own_output(tmp_path):
    # Can fail: a plugin whose output was tanh(logit) was explained as "explained output (logit, ...)".
    from attnverify.numerics.explanations import NAMES, explain_text

    result = {"logit": 0.25, "tokens": ["w"], **{name: [0.0] for name in NAMES}}
    path = plugin_file(tmp_path, HEADER + "class Model(SymbolicModel):\n    def output(self):\n"
                       "        return sp.tanh(self.logit())\n", name="tanh_link.py")
    text = explain_text(result, plugin_spec(load_plugin(path, TINY), TINY), lime_samples=None)
    assert text.startswith("explained output (tanh_link's Model.output, class 1): +0.25"), text
    same = plugin_spec(load_plugin(EXAMPLES / "temperature.py", TINY), TINY)  # the link's output
    assert explain_text(result, same, lime_samples=None).startswith("explained output (logit, class 1)")
