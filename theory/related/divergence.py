"""Jensen-Shannon divergence at a vertex of the simplex (docs/theory.md §8.1, check 21).

The derived value is JSD(e_t, alpha_hat) computed from the definition with SymPy (with
0 log 0 = 0 and sum_u alpha_hat_u = 1); the statement is the closed form, typed once.
Its derivative in alpha_hat_t, derived with `sympy.diff`, is negative, and its limit at
alpha_hat_t -> 0+ is ln 2: the vertex value stays strictly below ln 2.
"""

from __future__ import annotations

import functools

import sympy as sp

A = sp.Symbol("alpha_hat_t", positive=True)


def _plogp_over(p: sp.Expr, m: sp.Expr) -> sp.Expr:
    """p ln(p / m), with the convention 0 ln 0 = 0."""
    return sp.Integer(0) if p == 0 else p * sp.log(p / m)


def jsd(p: list, q: list) -> sp.Expr:
    """JSD(p, q) = KL(p || m) / 2 + KL(q || m) / 2 with m = (p + q) / 2 (natural log)."""
    mix = [(x + y) / 2 for x, y in zip(p, q, strict=True)]
    return (sum(_plogp_over(x, w) for x, w in zip(p, mix, strict=True))
            + sum(_plogp_over(y, w) for y, w in zip(q, mix, strict=True))) / 2


def vertex_jsd_statement(a: sp.Expr = A) -> sp.Expr:
    """JSD(e_t, alpha_hat) = 1/2 ln(2/(1 + a)) + 1/2 [(1 - a) ln 2 + a ln(2a/(1 + a))], a = alpha_hat_t."""
    return (sp.log(2 / (1 + a)) + (1 - a) * sp.log(2) + a * sp.log(2 * a / (1 + a))) / 2


@functools.lru_cache(maxsize=8)
def derive_vertex_jsd(T: int, t: int = 0) -> sp.Expr:
    """JSD(e_t, alpha_hat) from the definition, for T positions, in terms of a = alpha_hat_t."""
    if not 0 <= t < T or T < 2:
        raise ValueError(f"need 0 <= t < T and T >= 2, got t={t}, T={T}")
    others = [sp.Symbol(f"alpha_hat_{u}", positive=True) for u in range(T) if u != t]
    alpha_hat = others[:t] + [A] + others[t:]
    vertex = [sp.Integer(1 if u == t else 0) for u in range(T)]
    value = sp.expand_log(jsd(vertex, alpha_hat), force=True)
    # The probability constraint: the other entries sum to 1 - a.
    return sp.expand(value.subs(others[-1], 1 - A - sum(others[:-1])))


@functools.lru_cache(maxsize=8)
def prove_vertex_jsd(T: int) -> dict[str, bool]:
    """The closed form equals the definition at every vertex; it decreases in a; -> ln 2."""
    stated = sp.expand(sp.expand_log(vertex_jsd_statement(), force=True))
    equal = all(sp.simplify(derive_vertex_jsd(T, t) - stated) == 0 for t in range(T))
    slope = sp.simplify(sp.diff(vertex_jsd_statement(), A))
    # slope = ln(a / (1 + a)) / 2, and 0 < a / (1 + a) < 1 for a > 0.
    decreasing = sp.simplify(slope - sp.log(A / (1 + A)) / 2) == 0
    limit = sp.limit(vertex_jsd_statement(), A, 0, "+")
    return {
        "closed form = definition at every vertex": bool(equal),
        "d/da = ln(a/(1+a))/2 < 0": bool(decreasing),
        "limit a -> 0+ is ln 2": sp.simplify(limit - sp.log(2)) == 0,
    }
