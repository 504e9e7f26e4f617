"""A stronger equality test for index-level expressions: finite sums may be interchanged.

`theory.calculus.normal_form` never changes the order of nested sums, so
``sum_k e_k sum_i A_i(k)`` and ``sum_i sum_k A_i(k) e_k`` keep different normal forms even
though finite sums commute. `prenex` pulls every sum that sits in a polynomial position
(a factor of a product, a term of a sum) to the front, so each term becomes
``c * Sum_{x1..xn}(product of atoms)``; `canonical` then renames the bound indices by the
lexicographically smallest choice over all their orders. Two expressions whose canonical
prenex forms differ by an expression that expands to zero are equal for every size.

A sum pulled out of a product keeps its indices under new `sp.Dummy` names, so it captures no
symbol of another factor; sums whose limits name each other's indices keep their order (docs/theory.md
§10.6). Renaming uses `subs`, which leaves bound indices of inner sums alone. Sums inside
non-polynomial nodes (``exp``, a denominator) stay atoms, in `calculus.normal_form`: both
sides must build such atoms the same way (they do when both come from
`theory.model.SymbolicModel`). `prove_equal_rational` instead merges the outermost sums of
ratios and cancels their summands.
"""

from __future__ import annotations

import itertools
import re

import sympy as sp
from attnverify.theory.calculus import exact, normal_form, prove_equal

Limit = tuple[sp.Symbol, sp.Expr, sp.Expr]
Term = tuple[tuple[Limit, ...], sp.Expr]  # (bound indices with their ranges, summand)
#: `canonical_parts` names the bound indices _x0, _x1, ...
_CANONICAL_NAME = re.compile(r"_x\d+")


def _bound_afresh(expr: sp.Sum) -> tuple[tuple[Limit, ...], sp.Expr]:
    """The limits (innermost first) and summand of `expr`, each bound index renamed to a new
    `sp.Dummy`: pulled out of a product, it can then capture no symbol of another factor."""
    limits, body = list(expr.limits), expr.function
    # Innermost first: an index is bound in the body and in the bounds of the limits inside it, and
    # an inner index that re-uses an outer one's name is renamed before the outer one is.
    for n in range(len(limits)):
        x = limits[n][0]
        y = sp.Dummy(x.name, **x.assumptions0)
        body = body.subs(x, y, simultaneous=True)
        limits[:n] = [(z, lo.subs(x, y), hi.subs(x, y)) for z, lo, hi in limits[:n]]
        limits[n] = (y, *limits[n][1:])
    return tuple(limits), body


def prenex(expr: sp.Expr) -> list[Term]:
    """`expr` as a list of terms ``(limits, summand)`` with no sum left in a polynomial position."""
    if isinstance(expr, sp.Add):
        return [term for arg in expr.args for term in prenex(arg)]
    if isinstance(expr, sp.Sum):
        outer, function = _bound_afresh(expr)
        return [(limits + outer, body) for limits, body in prenex(function)]
    if isinstance(expr, sp.Mul):  # every bound index is a Dummy of its own: nothing is captured
        products: list[Term] = [((), sp.Integer(1))]
        for factor in expr.args:
            products = [(limits_a + limits_b, body_a * body_b)
                        for (limits_a, body_a), (limits_b, body_b) in itertools.product(products, prenex(factor))]
        return products
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and expr.exp > 0:
        return prenex(sp.Mul(*([expr.base] * int(expr.exp)), evaluate=False))
    return [((), normal_form(expr))]


def canonical_parts(term: Term) -> tuple[sp.Expr, tuple[Limit, ...], sp.Expr]:
    """``(coefficient, limits, summand)`` of one term, bound indices canonically named."""
    limits, body = term
    if not limits:
        return body, (), sp.Integer(1)
    bound = [x for x, _, _ in limits]
    coefficient, summand = body.as_independent(*bound, as_Add=False)
    # Finite sums commute only when no limit depends on another sum's index: else the order stays.
    dependent = any(set(bound) & (lower.free_symbols | upper.free_symbols) for _, lower, upper in limits)
    best = None
    for order in [limits] if dependent else itertools.permutations(limits):
        names = {x: sp.Symbol(f"_x{n}", **x.assumptions0) for n, (x, _, _) in enumerate(order)}
        renamed = summand.subs(names, simultaneous=True)
        new_limits = tuple((names[x], lower.subs(names, simultaneous=True), upper.subs(names, simultaneous=True))
                           for x, lower, upper in order)
        key = sp.srepr((renamed, new_limits))
        if best is None or key < best[0]:
            best = (key, renamed, new_limits)
    _, renamed, new_limits = best
    return coefficient, new_limits, renamed


def canonical(term: Term) -> sp.Expr:
    """One term as ``coefficient * Sum(summand, limits)`` with canonically named indices."""
    coefficient, limits, summand = canonical_parts(term)
    return coefficient * sp.Sum(summand, *limits) if limits else coefficient


def canonical_form(expr: sp.Expr) -> sp.Expr:
    """The canonical prenex form of an index-level expression."""
    return sp.Add(*[canonical(term) for term in prenex(sp.expand(normal_form(expr)))])


def prove_equal_rational(lhs: sp.Expr, rhs: sp.Expr) -> bool:
    """True when lhs = rhs for every size, for summands that are rational functions.

    Only the outermost sums are merged: terms ``c * Sum_x(body)`` over the same range are
    collected into one summand, which must cancel to zero (`sp.together`, `sp.cancel`),
    inner sums acting as atoms. This proves, e.g., an identity between per-head ratios
    summed over the heads. As `sp.cancel` does, it proves equality as rational functions:
    wherever both sides are defined ((x**2 - 1)/(x - 1) = x + 1 except at x = 1).
    """
    lhs, rhs = exact(lhs), exact(rhs)
    if lhs is None or rhs is None:
        return False
    groups: dict[tuple, list[sp.Expr]] = {}
    names: dict[tuple, sp.Dummy] = {}  # the merged sums' index, with their indices' assumptions
    for term in sp.Add.make_args(sp.expand(normal_form(lhs - rhs))):
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.Sum)]
        if len(sums) != 1:
            groups.setdefault((), []).append(term)
            continue
        (outer,) = sums
        x, lower, upper = outer.limits[-1]  # the outermost of a multi-index Sum
        body = sp.Sum(outer.function, *outer.limits[:-1]) if len(outer.limits) > 1 else outer.function
        key = (lower, upper, frozenset(x.assumptions0.items()))
        name = names.setdefault(key, sp.Dummy("x", **x.assumptions0))  # no free symbol is it
        groups.setdefault(key, []).append(term / outer * body.subs(x, name))
    return all(sp.cancel(sp.together(sp.Add(*summands))) == 0 for summands in groups.values())


def prove_equal_interchanged(lhs: sp.Expr, rhs: sp.Expr) -> bool:
    """True when lhs = rhs for every size, allowing finite sums to be interchanged.

    Tries `calculus.prove_equal` first; then compares canonical prenex forms.
    """
    if prove_equal(lhs, rhs):
        return True
    lhs, rhs = exact(lhs), exact(rhs)
    if lhs is None or rhs is None:
        return False
    if any(_CANONICAL_NAME.fullmatch(x.name) for x in lhs.atoms(sp.Symbol) | rhs.atoms(sp.Symbol)):
        return False  # a symbol named as a canonical bound index (free, or bound by a Product) would be captured
    return sp.expand(canonical_form(lhs) - canonical_form(rhs)) == 0
