"""A notebook session as a script: a model variant defined in a cell, derived, a claim of
one's own registered (and re-registered, as a re-run cell does), verified, and explained,
through the Python API (`attnverify.derive`, `attnverify.verify`, `attnverify.explain`).

Run it with ``python examples/notebook.py``; each result prints as the CLI would.
"""

import sympy as sp
from attnverify.numerics import autodiff_gradient, compiled_quantity
from attnverify.theory import SymbolicModel, symbols
from attnverify.verification import Claim, register

import attnverify

SIZES = dict(max_len=6, d_embed=8, d_att=4, d_out=4, heads=2, vocab_size=40)


# %% Cell 1: ReLU values, v_t = max(0, W_v e_t).
class ReluValues(SymbolicModel):
    def value(self, i, o, t):
        return sp.Max(0, super().value(i, o, t))


# %% Cell 2: derive. Theorem 1 is not proved for this model (the read-out direction is gated).
derivation = attnverify.derive(plugin=ReluValues)
print(derivation)


# %% Cell 3: what Theorem 1 becomes: W_v^T W_l^T gated by 1[(W_v e_t)_o > 0], typed once.
def gated_theorem1(model, tau=symbols.tau, m=symbols.m):
    i, s, o, a, k, c = symbols.i, symbols.s, symbols.o, symbols.a, symbols.k, model.explained
    pre = sp.Sum(symbols.W_v[i, o, k] * symbols.e[tau, k], (k, 0, symbols.d_e - 1))
    gated = sp.Sum(symbols.W_v[i, o, m] * symbols.W_l[i, c, o] * sp.Heaviside(pre), (o, 0, symbols.d_out - 1))

    def s_(t):
        return model.readout(i, t)

    centred = s_(tau) - sp.Sum(model.alpha(i, s) * s_(s), (s, 0, symbols.T - 1))
    direction = sp.Sum(symbols.W_k[i, a, m] * model.query(i, a), (a, 0, symbols.d_att - 1))
    bracket = gated + centred * direction / sp.sqrt(symbols.d_att)
    return sp.Sum(model.alpha(i, tau) * bracket, (i, 0, symbols.K - 1)) / symbols.K


def build(spec):
    stated, truth = compiled_quantity(spec, gated_theorem1(SymbolicModel(spec))), autodiff_gradient(spec)
    return lambda params, tokens: (stated(params, tokens)[1:], truth(params, tokens)[1:])


def relu_claim(statement):
    return Claim(id="relu.theorem1", group="relu", statement=statement, source="examples/notebook.py",
                 lhs="the gated closed form, compiled", rhs="jax.grad of the compiled forward", build=build,
                 tolerance={"float64": 1e-10, "float32": 1e-4}, tolerance_reason="as the Theorem 1 claims",
                 provenance="measured")


register(relu_claim("Theorem 1 with a ReLU-gated read-out direction (t >= 1)"))
# Re-running the cell registers the same id again: it replaces the claim (no error).
register(relu_claim("Theorem 1 with the read-out direction gated by the ReLU (t >= 1)"))

# %% Cell 4: verify the Theorem 1 group and the new claim on the variant.
report = attnverify.verify(["theorem1", "relu"], plugin=ReluValues, trials=8, **SIZES)
print(report)
print(report.verdicts)

# %% Cell 5: explain a random model of the variant: attention, gradients, Integrated Gradients
# (add lime_samples=N for LIME, which runs on the generic path: any JAX callable).
explanation = attnverify.explain("attention is not popular", plugin=ReluValues, **SIZES)
print(explanation)
