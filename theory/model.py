"""The model's forward expression in SymPy, built from a `ModelSpec`.

Each method returns the index-level expression of one named quantity of THEORY.md §1:
the query q^(i), score gamma_t^(i) (dot, additive or deep scorer), value v_t^(i), read-out
s_t^(i), attention alpha_t^(i), head output f_i, class logits and the explained output f.
Switches of the spec change the expression; nothing downstream is typed in by hand.
"""

from __future__ import annotations

import sympy as sp
from attnverify.theory import symbols as S

from attnverify.spec import ModelSpec


class SymbolicModel:
    """Index-level SymPy expressions for the model of `spec` (sizes stay symbolic)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.explained = sp.Integer(spec.explained_class)

    # -- per-head, per-position quantities ---------------------------------------------
    def query(self, i: sp.Expr, a: sp.Expr) -> sp.Expr:
        """q_a^(i): from the [CLS] embedding e_0 (paper) or the mean embedding."""
        if self.spec.query == "cls":
            source = S.e[0, S.k]
        else:
            source = sp.Sum(S.e[S.r, S.k], (S.r, 0, S.T - 1)) / S.T
        q = sp.Sum(S.W_q[i, a, S.k] * source, (S.k, 0, S.d_e - 1))
        return q + S.b_q[i, a] if self.spec.biases else q

    def key(self, i: sp.Expr, a: sp.Expr, t: sp.Expr) -> sp.Expr:
        key = sp.Sum(S.W_k[i, a, S.k] * S.e[t, S.k], (S.k, 0, S.d_e - 1))
        return key + S.b_k[i, a] if self.spec.biases else key

    def score(self, i: sp.Expr, t: sp.Expr) -> sp.Expr:
        """gamma_t^(i), by the spec's scorer (THEORY.md §1.2, §8.5):

        * dot (paper): <q^(i), k_t^(i)>, divided by sqrt(d_att) when scaling is on;
        * additive: sum_a v_a^(i) tanh(q_a^(i) + k_{t,a}^(i));
        * deep: sum_h v_h^(i) tanh(sum_a U_{h,a}^(i) tanh(q_a^(i) + k_{t,a}^(i))).
        """
        if self.spec.scorer == "dot":
            dot = sp.Sum(self.query(i, S.a) * self.key(i, S.a, t), (S.a, 0, S.d_att - 1))
            return dot / sp.sqrt(S.d_att) if self.spec.scale_scores else dot
        if self.spec.scorer == "additive":
            hidden = sp.tanh(self.query(i, S.a) + self.key(i, S.a, t))
            return sp.Sum(S.v_score[i, S.a] * hidden, (S.a, 0, S.d_att - 1))
        inner = sp.Sum(S.U_score[i, S.h, S.a] * sp.tanh(self.query(i, S.a) + self.key(i, S.a, t)),
                       (S.a, 0, S.d_att - 1))
        return sp.Sum(S.v_score[i, S.h] * sp.tanh(inner), (S.h, 0, S.d_att - 1))

    def value(self, i: sp.Expr, o: sp.Expr, t: sp.Expr) -> sp.Expr:
        v = sp.Sum(S.W_v[i, o, S.k] * S.e[t, S.k], (S.k, 0, S.d_e - 1))
        if self.spec.biases:
            v = v + S.b_v[i, o]
        return sp.tanh(v) if self.spec.value_nonlinearity == "tanh" else v

    def readout(self, i: sp.Expr, t: sp.Expr, c: sp.Expr | None = None) -> sp.Expr:
        """s_t^(i) = W_l^(i) v_t^(i) for class c (default: the explained class)."""
        c = self.explained if c is None else c
        return sp.Sum(S.W_l[i, c, S.o] * self.value(i, S.o, t), (S.o, 0, S.d_out - 1))

    def weight(self, i: sp.Expr, t: sp.Expr) -> sp.Expr:
        """Unnormalised attention exp(gamma_t - gamma^*): the shift cancels in alpha."""
        return sp.exp(self.score(i, t) - S.gamma_shift[i])

    def normaliser(self, i: sp.Expr) -> sp.Expr:
        return sp.Sum(self.weight(i, S.s), (S.s, 0, S.T - 1))

    def alpha(self, i: sp.Expr, t: sp.Expr) -> sp.Expr:
        """alpha_t^(i): softmax over all T positions ([CLS], words and padding)."""
        return self.weight(i, t) / self.normaliser(i)

    def head_output(self, i: sp.Expr, c: sp.Expr | None = None) -> sp.Expr:
        """f_i = W_l^(i) sum_t alpha_t^(i) v_t^(i) (+ b_l)."""
        pooled = sp.Sum(self.weight(i, S.t) * self.readout(i, S.t, c), (S.t, 0, S.T - 1))
        out = pooled / self.normaliser(i)
        if self.spec.biases:
            out = out + S.b_l[i, self.explained if c is None else c]
        return out

    # -- the output ----------------------------------------------------------------------
    def logit(self, c: sp.Expr | None = None) -> sp.Expr:
        total = sp.Sum(self.head_output(S.i, c), (S.i, 0, S.K - 1))
        return total / S.K if self.spec.head_aggregation == "mean" else total

    def output(self) -> sp.Expr:
        """The explained output f(e): raw logit, its sigmoid, or the softmax probability."""
        z = self.logit()
        if self.spec.output_link == "logit":
            return z
        shift = S.logit_shift  # cancels exactly; keeps exp from overflowing
        if self.spec.output_link == "sigmoid":
            # sigma(z) = 1 / (1 + exp(-z)) = exp(z - z*) / (exp(-z*) + exp(z - z*))
            return sp.exp(z - shift) / (sp.exp(-shift) + sp.exp(z - shift))
        return sp.exp(z - shift) / sp.Sum(sp.exp(self.logit(S.c) - shift), (S.c, 0, S.C - 1))
