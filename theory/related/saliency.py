"""Bastings & Filippova (2020): Integrated Gradients for the §1 model, as docs/theory.md §8.6 states it.

The straight path moves every word position from a baseline b_t to e_t with `[CLS]` fixed
(b_0 = e_0), so the query q^(i) = W_q^(i) e_0 stays constant and each token's two scalars are
affine in lambda: gamma_t(lambda) = gamma^b_t + lambda (gamma_t - gamma^b_t), and the same for
s_t. docs/theory.md §8.6 then writes IG_t as a one-dimensional integral over lambda of

    1/K sum_i alpha_t^(i)(lambda) [(s_t^(i) - s^b(i)_t)
                                   + (gamma_t^(i) - gamma^b(i)_t) (s_t^(i)(lambda) - f_i(lambda))].

`ig_integrand_statement` is that integrand, typed once (the statement being checked; the
integral over lambda is taken by quadrature in `numerics.related.integrated_gradients`). Its constants (1/K, the
constant query) are the paper's whatever the spec says. `ig_integrand_without_score_term` is a
deliberately wrong variant for the negative controls.

This module never imports JAX.
"""

from __future__ import annotations

import sympy as sp
from attnverify.theory import symbols as S
from attnverify.theory.model import SymbolicModel

#: Baseline embeddings b[t, k] (row 0 is e_0: `[CLS]` does not move along the path).
E_BASE = sp.IndexedBase("e_b")
#: The path parameter lambda in [0, 1] (a scalar bound at each quadrature node).
LAMBDA = sp.Symbol("lambda", real=True)

# Register the new tensors' axes so `numerics.compile` can bind arrays to them.
S.AXES.setdefault("e_b", (S.T, S.d_e))
S.AXES.setdefault("lambda", ())


def at_baseline(expr: sp.Expr, t: sp.Expr) -> sp.Expr:
    """`expr` with the embedding of position t replaced by the baseline's (the [CLS] query's
    e[0, k] is left alone: the query is constant along the path)."""
    return expr.replace(
        lambda x: isinstance(x, sp.Indexed) and x.base == S.e and x.indices[0] == t,
        lambda x: E_BASE[x.indices],
    )


def _path(quantity: sp.Expr, t: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(quantity at lambda, quantity at e minus at the baseline) for an affine per-token scalar."""
    base = at_baseline(quantity, t)
    return base + LAMBDA * (quantity - base), quantity - base


def _path_alpha_and_f(model: SymbolicModel, i: sp.Expr) -> tuple:
    """alpha_t^(i)(lambda) as a function of t, and f_i(lambda) = sum_t alpha_t(lambda) s_t(lambda).

    The softmax is written with exp(gamma(lambda) - gamma^*), gamma^* any per-head constant
    (it cancels; numerics binds it to keep exp finite on the whole path)."""
    def weight(t):
        return sp.exp(_path(model.score(i, t), t)[0] - S.gamma_shift[i])

    normaliser = sp.Sum(weight(S.s), (S.s, 0, S.T - 1))
    f_i = sp.Sum(weight(S.t) * _path(model.readout(i, S.t), S.t)[0], (S.t, 0, S.T - 1)) / normaliser
    return (lambda t: weight(t) / normaliser), f_i


def ig_integrand_statement(model: SymbolicModel, tau: sp.Expr = S.tau) -> sp.Expr:
    """docs/theory.md §8.6: the integrand of IG_tau at lambda, for a word position tau >= 1:

    1/K sum_i alpha_tau(lambda) [(s_tau - s^b_tau) + (gamma_tau - gamma^b_tau)(s_tau(lambda) - f_i(lambda))].
    """
    i = S.i
    alpha, f_i = _path_alpha_and_f(model, i)
    s_lambda, s_step = _path(model.readout(i, tau), tau)
    _, gamma_step = _path(model.score(i, tau), tau)
    body = alpha(tau) * (s_step + gamma_step * (s_lambda - f_i))
    return sp.Sum(body, (i, 0, S.K - 1)) / S.K


def ig_integrand_without_score_term(model: SymbolicModel, tau: sp.Expr = S.tau) -> sp.Expr:
    """A deliberately wrong integrand for the negative controls: §8.6 with its
    (gamma - gamma^b)(s(lambda) - f_i(lambda)) term dropped (the attention path ignored)."""
    i = S.i
    alpha, _ = _path_alpha_and_f(model, i)
    _, s_step = _path(model.readout(i, tau), tau)
    return sp.Sum(alpha(tau) * s_step, (i, 0, S.K - 1)) / S.K
