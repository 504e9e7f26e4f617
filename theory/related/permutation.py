"""Jain & Wallace's permutation test, in closed form (docs/theory.md §8.1, check 18).

Attention is permuted over m positions, the read-outs staying in place, so the permuted
output is ``rest + sum_t c(pi(t), t)`` with ``c(r, t) = 1/K sum_i alpha_r^(i) s_t^(i)``.
The statements (mean and variance over the m! permutations) are typed once, at index
level with a symbolic m, so `numerics.compile` evaluates them for any m. The derived
moments come from enumerating the m! permutations with SymPy for explicit m.
"""

from __future__ import annotations

import functools
import itertools
import math

import sympy as sp
from attnverify.theory import calculus, memo
from attnverify.theory import symbols as S

M = sp.Symbol("m", integer=True, positive=True)  # permuted positions
C_PERM = sp.IndexedBase("c_perm")  # c(r, t): the output's (r, t) term, r the attention's position
ALPHA_PERM = sp.IndexedBase("alpha_perm")  # alpha^(i)_r on the permuted block [i, r]
S_PERM = sp.IndexedBase("s_perm")  # s^(i)_t on the permuted block [i, t]
A_ONE = sp.IndexedBase("a_one")  # one head's attention on the block, divided by K [r]
S_ONE = sp.IndexedBase("s_one")  # that head's read-outs on the block [t]
r, t, u, v = (sp.Symbol(name, integer=True, nonnegative=True) for name in ("r", "t", "u", "v"))

# Register the new tensors' axes so `numerics.compile` can bind arrays to them.
for _name, _axes in (("c_perm", (M, M)), ("alpha_perm", (S.K, M)), ("s_perm", (S.K, M)),
                     ("a_one", (M,)), ("s_one", (M,))):
    S.AXES.setdefault(_name, _axes)


def _sum(body, *indices):
    return sp.Sum(body, *[(x, 0, M - 1) for x in indices])


def head_contributions(row=r, col=t) -> sp.Expr:
    """c(r, t) = 1/K sum_i alpha_r^(i) s_t^(i) (every head permuted by the same pi)."""
    return sp.Sum(ALPHA_PERM[S.i, row] * S_PERM[S.i, col], (S.i, 0, S.K - 1)) / S.K


# -- statements, typed once ------------------------------------------------------------------------
def hoeffding_statement(c=lambda row, col: C_PERM[row, col]) -> tuple[sp.Expr, sp.Expr]:
    """Heads sharing one permutation (Hoeffding): E - rest = 1/m sum_{r,t} c(r, t) and
    Var = 1/(m-1) sum_{r,t} d(r, t)^2, d(r, t) = c(r, t) - c(r, .) - c(., t) + c(., .) (means)."""
    row_mean = _sum(c(r, u), u) / M
    col_mean = _sum(c(u, t), u) / M
    grand = _sum(c(u, v), u, v) / M**2
    mean = _sum(c(r, t), r, t) / M
    var = _sum((c(r, t) - row_mean - col_mean + grand) ** 2, r, t) / (M - 1)
    return mean, var


def single_head_statement() -> tuple[sp.Expr, sp.Expr]:
    """One head: E - rest = 1/m (sum a)(sum s); Var = 1/(m-1) sum (a_r - mean a)^2 sum (s_t - mean s)^2."""
    a_bar, s_bar = _sum(A_ONE[u], u) / M, _sum(S_ONE[u], u) / M
    mean = _sum(A_ONE[r], r) * _sum(S_ONE[t], t) / M
    var = _sum((A_ONE[r] - a_bar) ** 2, r) * _sum((S_ONE[t] - s_bar) ** 2, t) / (M - 1)
    return mean, var


# -- derived: exact enumeration of the m! permutations ------------------------------------------------
def enumerated_moments(c: sp.Matrix) -> tuple[sp.Expr, sp.Expr]:
    """Mean and variance of sum_t c(pi(t), t) over all permutations pi of 0..m-1."""
    m = c.rows
    values = [sum(c[pi[k], k] for k in range(m)) for pi in itertools.permutations(range(m))]
    n = math.factorial(m)
    mean = sp.expand(sum(values) / n)
    return mean, sp.expand(sum(x**2 for x in values) / n - mean**2)


def explicit(expr: sp.Expr, m: int, K: int | None = None) -> sp.Expr:
    """`expr` at explicit sizes, every sum unrolled."""
    sizes = {M: m} if K is None else {M: m, S.K: K}
    return sp.expand(calculus.explicit(expr, sizes))


# -- proofs ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
@memo.on_disk  # seconds of SymPy: a later run reads it back
def prove_permutation_moments(m: int, K: int = 2) -> dict[str, bool]:
    """Derived (enumeration) = statement at this m, for symbolic entries; the single head
    with c = a s^T, the shared permutation for a generic c and for c built from K heads."""
    if m < 2:
        raise ValueError("the permutation test needs m >= 2 positions")
    generic = sp.Matrix(m, m, lambda row, col: C_PERM[row, col])
    one = sp.Matrix(m, m, lambda row, col: A_ONE[row] * S_ONE[col])
    heads = sp.Matrix(m, m, lambda row, col: explicit(head_contributions(row, col), m, K))
    checks = {
        "single head": (enumerated_moments(one), single_head_statement(), None),
        "shared permutation (Hoeffding)": (enumerated_moments(generic), hoeffding_statement(), None),
        f"shared permutation, c from K = {K} heads": (
            enumerated_moments(heads), hoeffding_statement(head_contributions), K),
    }
    out = {}
    for name, (derived, stated, k) in checks.items():
        out[f"{name}: mean"] = sp.expand(derived[0] - explicit(stated[0], m, k)) == 0
        out[f"{name}: variance"] = sp.expand(derived[1] - explicit(stated[1], m, k)) == 0
    return out
