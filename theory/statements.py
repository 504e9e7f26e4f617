"""The statements being checked, written once, as their sources state them.

These are *not* derivations: each is the formula a paper (or docs/theory.md) asserts, written
in the model's named quantities (alpha, q, v_t, ...). Their constants (1/K, 1/sqrt(d_att))
are the paper's, whatever the spec says, so a changed assumption makes them fail where
they should. `theory.derivations` derives the truth with `sympy.diff` and compares.
"""

from __future__ import annotations

import sympy as sp
from attnverify.theory import symbols as S
from attnverify.theory.model import SymbolicModel


def _value_readout_direction(model: SymbolicModel, i, m) -> sp.Expr:
    """(W_v^(i)T W_l^(i)T)_m: the read-out direction u^(i) of docs/theory.md §1.3."""
    return sp.Sum(S.W_v[i, S.o, m] * S.W_l[i, model.explained, S.o], (S.o, 0, S.d_out - 1))


def _score_direction(model: SymbolicModel, i, m) -> sp.Expr:
    """(W_k^(i)T q^(i))_m, before the 1/sqrt(d_att) factor."""
    return sp.Sum(S.W_k[i, S.a, m] * model.query(i, S.a), (S.a, 0, S.d_att - 1))


def _W_l_v(model: SymbolicModel, i, t) -> sp.Expr:
    """W_l^(i) v_t^(i) for the explained class."""
    return sp.Sum(S.W_l[i, model.explained, S.o] * model.value(i, S.o, t), (S.o, 0, S.d_out - 1))


def theorem1_gradient(model: SymbolicModel, tau=S.tau, m=S.m) -> sp.Expr:
    """Lopardo et al., Theorem 1 (docs/theory.md §3.2): for a word position t,

    nabla_{e_t} f = 1/K sum_i alpha_t^(i) [ W_v^(i)T W_l^(i)T
                    + 1/sqrt(d_att) (W_l^(i) v_t^(i) - sum_s alpha_s^(i) W_l^(i) v_s^(i)) W_k^(i)T q^(i) ].
    """
    i = S.i
    centred = _W_l_v(model, i, tau) - sp.Sum(model.alpha(i, S.s) * _W_l_v(model, i, S.s), (S.s, 0, S.T - 1))
    bracket = _value_readout_direction(model, i, m) + centred * _score_direction(model, i, m) / sp.sqrt(S.d_att)
    return sp.Sum(model.alpha(i, tau) * bracket, (i, 0, S.K - 1)) / S.K


def cls_query_term(model: SymbolicModel, m=S.m) -> sp.Expr:
    """docs/theory.md §3.3: what the closed form omits at t = 0, through q^(i) = W_q^(i) e_0:

    1/K sum_i 1/sqrt(d_att) W_q^(i)T W_k^(i) sum_s alpha_s^(i) (s_s^(i) - f_i) e_s.
    """
    i, s = S.i, S.s
    f_i = sp.Sum(model.alpha(i, S.t) * model.readout(i, S.t), (S.t, 0, S.T - 1))
    W_k_e = sp.Sum(S.W_k[i, S.a, S.k] * S.e[s, S.k], (S.k, 0, S.d_e - 1))
    W_q_T = sp.Sum(S.W_q[i, S.a, m] * W_k_e, (S.a, 0, S.d_att - 1))
    inner = sp.Sum(model.alpha(i, s) * (model.readout(i, s) - f_i) * W_q_T, (s, 0, S.T - 1))
    return sp.Sum(inner, (i, 0, S.K - 1)) / (S.K * sp.sqrt(S.d_att))


def gradient_times_input(model: SymbolicModel, tau=S.tau) -> sp.Expr:
    """docs/theory.md §3.4: G x I_t = 1/K sum_i alpha_t^(i) [ s_t^(i) + gamma_t^(i) (s_t^(i) - f_i) ]."""
    i = S.i
    f_i = sp.Sum(model.alpha(i, S.t) * model.readout(i, S.t), (S.t, 0, S.T - 1))
    s_tau = model.readout(i, tau)
    body = model.alpha(i, tau) * (s_tau + model.score(i, tau) * (s_tau - f_i))
    return sp.Sum(body, (i, 0, S.K - 1)) / S.K


def detached_gradient(model: SymbolicModel, tau=S.tau, m=S.m) -> sp.Expr:
    """A deliberately incomplete formula for tests: Theorem 1 without its softmax-Jacobian
    term, i.e. the gradient with the attention weights held fixed."""
    i = S.i
    return sp.Sum(model.alpha(i, tau) * _value_readout_direction(model, i, m), (i, 0, S.K - 1)) / S.K
