"""Temperature-scaled scores: gamma_t = <q, k_t> / (sqrt(d_att) * temperature).

The plugin also states, and registers as a claim, what Theorem 1 becomes: the softmax-Jacobian
term is divided by the temperature.
"""

import sympy as sp
from attnverify.numerics import autodiff_gradient, compiled_quantity
from attnverify.theory import SymbolicModel, symbols
from attnverify.verification import Claim, register

TEMPERATURE = 2.0


class Model(SymbolicModel):
    def score(self, i, t):
        temperature = self.constant("temperature", TEMPERATURE)
        return super().score(i, t) / temperature


def theorem1_with_temperature(model, tau=symbols.tau, m=symbols.m):
    """1/K sum_i alpha_tau [W_v^T W_l^T + (W_l v_tau - sum_s alpha_s W_l v_s) W_k^T q / (sqrt(d_att) T)]_m."""
    i, s, o, a, c = symbols.i, symbols.s, symbols.o, symbols.a, model.explained
    temperature = model.constant("temperature", TEMPERATURE)

    def W_l_v(t):
        return sp.Sum(symbols.W_l[i, c, o] * model.value(i, o, t), (o, 0, symbols.d_out - 1))

    centred = W_l_v(tau) - sp.Sum(model.alpha(i, s) * W_l_v(s), (s, 0, symbols.T - 1))
    readout = sp.Sum(symbols.W_v[i, o, m] * symbols.W_l[i, c, o], (o, 0, symbols.d_out - 1))
    direction = sp.Sum(symbols.W_k[i, a, m] * model.query(i, a), (a, 0, symbols.d_att - 1))
    bracket = readout + centred * direction / (sp.sqrt(symbols.d_att) * temperature)
    return sp.Sum(model.alpha(i, tau) * bracket, (i, 0, symbols.K - 1)) / symbols.K


def _build(spec):
    stated = compiled_quantity(spec, theorem1_with_temperature(SymbolicModel(spec)))
    truth = autodiff_gradient(spec)
    return lambda params, tokens: (stated(params, tokens)[1:], truth(params, tokens)[1:])


register(Claim(
    id="temperature.theorem1",
    group="temperature",
    statement="Theorem 1 with the Jacobian term divided by the temperature equals the true gradient (t >= 1)",
    source="examples/temperature.py",
    lhs="the temperature form, compiled",
    rhs="jax.grad of the compiled forward",
    build=_build,
    tolerance={"float64": 1e-10, "float32": 1e-4},
    tolerance_reason="relative rounding of O(T*d_e) sums, as the Theorem 1 claims",
    provenance="measured",
))
