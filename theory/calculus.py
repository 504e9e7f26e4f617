"""Differentiation and the normal form of index-level expressions.

`gradient` is plain `sympy.diff` with respect to an entry ``e[tau, m]``: SymPy produces
``KroneckerDelta`` factors inside the sums, which `normal_form` eliminates. The normal
form applies only sound rewriting rules for finite sums:

* linearity: ``Sum(a + b) = Sum(a) + Sum(b)`` and factors free of the index move out;
* delta elimination: ``Sum_x(delta(x, y) g(x)) = g(y)``, valid because every free index
  lies in the summation range (``0 <= tau < T``, ``0 <= m < d_e``);
* alpha-renaming: a bound index is renamed after its range and nesting height, so two
  equal sums become the same SymPy object.

Two expressions whose normal forms differ by an expression that expands to zero are
equal for every size: that is what `prove_equal` checks.
"""

from __future__ import annotations

import sympy as sp
from attnverify.theory import symbols as S

_INDEX_NAMES = {S.T: "t", S.d_e: "k", S.d_att: "a", S.d_out: "o", S.K: "i", S.C: "c"}


def _height(expr: sp.Expr) -> int:
    """Nesting depth of `Sum` nodes inside `expr` (0 when there is none)."""
    if isinstance(expr, sp.Sum):
        return 1 + _height(expr.function)
    return max((_height(arg) for arg in expr.args), default=0)


def _bound_symbol(upper: sp.Expr, height: int) -> sp.Symbol:
    size = upper + 1
    stem = _INDEX_NAMES.get(size, "j")
    return sp.Symbol(f"{stem}_{height}", integer=True, nonnegative=True)


def _sum_of(body: sp.Expr, x: sp.Symbol, lower: sp.Expr, upper: sp.Expr) -> sp.Expr:
    terms = []
    for term in sp.Add.make_args(sp.expand_mul(body)):
        inside, outside = [], []
        for factor in sp.Mul.make_args(term):
            (inside if x in factor.free_symbols else outside).append(factor)
        coefficient = sp.Mul(*outside)
        deltas = [
            f for f in inside if isinstance(f, sp.KroneckerDelta) and x in f.free_symbols
        ]
        if deltas:
            delta = deltas[0]
            other = delta.args[1] if delta.args[0] == x else delta.args[0]
            if x in other.free_symbols:
                raise ValueError(f"cannot eliminate {delta}")
            rest = sp.Mul(*[f for f in inside if f is not delta])
            terms.append(coefficient * normal_form(rest.subs(x, other)))
            continue
        summand = sp.Mul(*inside)
        if summand == 1:
            terms.append(coefficient * (upper - lower + 1))
            continue
        bound = _bound_symbol(upper, _height(summand) + 1)
        terms.append(coefficient * sp.Sum(summand.xreplace({x: bound}), (bound, lower, upper)))
    return sp.Add(*terms)


def normal_form(expr: sp.Expr) -> sp.Expr:
    """The canonical form of an index-level expression (see the module docstring)."""
    if isinstance(expr, sp.Sum):
        body = normal_form(expr.function)
        for x, lower, upper in expr.limits:
            body = _sum_of(body, x, lower, upper)
        return body
    if isinstance(expr, sp.Indexed) or not expr.args:
        return expr
    return expr.func(*[normal_form(arg) for arg in expr.args])


def gradient(expr: sp.Expr, tau: sp.Symbol = S.tau, m: sp.Symbol = S.m) -> sp.Expr:
    """d expr / d e[tau, m] by `sympy.diff`, in normal form (deltas eliminated)."""
    return normal_form(sp.diff(expr, S.e[tau, m]))


def at_word_position(expr: sp.Expr, tau: sp.Symbol = S.tau) -> sp.Expr:
    """Specialise a gradient to a word position, tau >= 1 (so delta(0, tau) = 0)."""
    return normal_form(expr.replace(
        lambda x: isinstance(x, sp.KroneckerDelta) and set(x.args) == {sp.Integer(0), tau},
        lambda x: sp.Integer(0),
    ))


def at_cls_position(expr: sp.Expr, tau: sp.Symbol = S.tau) -> sp.Expr:
    """Specialise a gradient to the [CLS] position, tau = 0."""
    return normal_form(expr.subs(tau, 0))


def prove_equal(lhs: sp.Expr, rhs: sp.Expr) -> bool:
    """True when lhs - rhs normalises and expands to exactly zero (for all sizes)."""
    return sp.expand(normal_form(lhs) - normal_form(rhs)) == 0


def explicit(expr: sp.Expr, sizes: dict[sp.Symbol, int]) -> sp.Expr:
    """Substitute explicit sizes and unroll every sum into scalar terms."""
    return expr.subs(sizes).doit()
