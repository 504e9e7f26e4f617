"""Differentiation and the normal form of index-level expressions.

`gradient` is plain `sympy.diff` with respect to an entry ``e[tau, m]``: SymPy produces
``KroneckerDelta`` factors inside the sums, which `normal_form` eliminates. The normal
form applies only sound rewriting rules for finite sums (``docs/theory.md §10``,
"Soundness rules of the prover"); a sum is read as SymPy reads it (``Sum.doit``):

* linearity: ``Sum(a + b) = Sum(a) + Sum(b)`` and factors free of the index move out;
  ``Sum_{x=a}^{b} 1 = b - a + 1``.
* delta elimination: ``Sum_{x=a}^{b} delta(x, y) g(x) = g(y)`` only when ``a <= y <= b``
  is *proved*, both limits, from what is known about y (rule R1 below); 0 when y is proved
  outside the range. When neither is proved, the sum is left as it is (renamed), so a
  comparison that needs the range condition is not proved. A delta
  is eliminated only when one argument *is* the bound index x and the other (y) is an
  integer free of x; any other delta stays inside its sum.
* alpha-renaming: a bound index is renamed after its range and nesting height, so two
  equal sums become the same SymPy object. The new name is fresh: it occurs nowhere in
  the summand or the limits (rule R2), so renaming never captures a free symbol.
* substitution (``g(y)`` above) renames any inner bound index that occurs in y first,
  so y is never captured by an inner sum (rule R2 again; SymPy's ``subs`` would).
* any other binder (a ``Product``, an ``Integral``, a ``Lambda``, any node in which a symbol free
  in its arguments is not free: ``LaplaceTransform(f, w, s)`` binds w) is an opaque atom: nothing
  inside it is normalised, and no delta is eliminated by substituting into it.

R1, what is known about an index: its SymPy assumptions (every index here is
``integer, nonnegative``, so ``y >= 0`` is known, never an upper limit); the limits of
every enclosing sum that binds it; and declared ranges of free indices, a mapping
``index -> (lo, hi)`` meaning ``lo <= index <= hi``. The declared ranges are
`declared_ranges()`: ``[0, size - 1]`` for each entry of `symbols.FREE_SIZES` (``tau``
in ``[0, T - 1]``, ``m`` in ``[0, d_e - 1]``: a free index of a gradient names an entry
of ``e``), which a caller extends or overrides with the ``ranges`` argument of
`normal_form` and `prove_equal`. An inequality ``p >= 0`` is proved when SymPy's
assumptions decide it, or when a lower bound of p, obtained by replacing each index of
a linear p by the end of its range that makes p smallest, is decided ``>= 0``. An index
whose range is unknown has no upper bound, so no delta over a bounded sum is eliminated
on its account. Inside a sum over x, the range of the outer x is forgotten, and so is every
range that names it (it would be read as a bound by the inner x).

Two expressions whose normal forms differ by an expression that expands to zero are
equal for every size (and every value of the free indices in their declared ranges):
that is what `prove_equal` checks, in exact arithmetic, wherever both sides are defined. It
answers False ("not proved") whenever a rule does not apply, and for an input that SymPy may
already have changed while building it (`exact`: a Float, a sum whose range breaks its index's
assumptions) or that holds an infinity; it never answers True for a false identity.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import sympy as sp
from attnverify.theory import sum_symbols  # noqa: F401  (a Sum's free symbols, memoised)
from attnverify.theory import symbols as S
from sympy.concrete.expr_with_limits import ExprWithLimits

_INDEX_NAMES = {S.T: "t", S.d_e: "k", S.d_att: "a", S.d_out: "o", S.K: "i", S.C: "c"}

#: ``lo <= index <= hi``, per index symbol (both ends included).
Range = tuple[sp.Expr, sp.Expr]
Ranges = Mapping[sp.Symbol, Range]


def declared_ranges() -> dict[sp.Symbol, Range]:
    """The declared ranges of free indices: ``[0, size - 1]`` for each entry of
    `symbols.FREE_SIZES` (read at each call, so an entry added there counts). Any other
    index's range is passed by the derivation that knows it (the ``ranges`` argument), so
    no symbol is given a range because of its name alone (eq19's ``j``: `eq19.RANGES`)."""
    return {x: (sp.Integer(0), size - 1) for x, size in S.FREE_SIZES.items()}


def _known(ranges: Ranges | None) -> dict[sp.Symbol, Range]:
    given = {x: (sp.sympify(lo), sp.sympify(hi)) for x, (lo, hi) in (ranges or {}).items()}
    return {**declared_ranges(), **given}


def _bound(expr: sp.Expr, scope: Ranges, upper: bool, depth: int = 0) -> sp.Expr | None:
    """An upper (or lower) bound of `expr` over the ranges of `scope`, free of the indices
    of `scope`, or None when `expr` is not linear in them (rule R1)."""
    expr = sp.sympify(expr)
    if not expr.free_symbols & scope.keys():
        return expr
    if isinstance(expr, sp.Symbol):
        if depth > 16:  # ranges that refer to each other in a cycle
            return None
        lo, hi = scope[expr]
        return _bound(hi if upper else lo, scope, upper, depth + 1)
    if isinstance(expr, sp.Add):
        parts = [_bound(arg, scope, upper, depth) for arg in expr.args]
        return None if any(p is None for p in parts) else sp.Add(*parts)
    if isinstance(expr, sp.Mul):
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Number and coeff != 0 and coeff != 1:
            part = _bound(rest, scope, upper if coeff > 0 else not upper, depth)
            return None if part is None else coeff * part
    return None


def _sign(p: sp.Expr, scope: Ranges) -> bool | None:
    """True when ``p >= 0`` is proved, False when ``p < 0`` is proved, None otherwise."""
    p = sp.expand(p)
    if p.is_nonnegative:
        return True
    if p.is_negative:
        return False
    lo = _bound(p, scope, upper=False)
    if lo is not None and sp.expand(lo).is_nonnegative:
        return True
    hi = _bound(p, scope, upper=True)
    if hi is not None and sp.expand(hi).is_negative:
        return False
    return None


def _condition(p: sp.Expr, stated: sp.Expr, scope: Ranges) -> sp.Expr:
    """``p >= 0`` as a condition: true or false when decided, else `stated` (readable)."""
    sign = _sign(p, scope)
    return stated if sign is None else sp.true if sign else sp.false


def _height(expr: sp.Expr) -> int:
    """Nesting depth of `Sum` nodes inside `expr` (0 when there is none)."""
    if isinstance(expr, sp.Sum):
        return 1 + _height(expr.function)
    return max((_height(arg) for arg in expr.args), default=0)


def _fresh(stem: str, taken: set[sp.Symbol], like: sp.Symbol | None = None) -> sp.Symbol:
    """``stem``, or ``stem_1``, ``stem_2``, ...: the first name no symbol of `taken` has."""
    names = {s.name for s in taken}
    name, n = stem, 0
    while name in names:
        n += 1
        name = f"{stem}_{n}"
    assumptions = like.assumptions0 if like is not None else dict(integer=True, nonnegative=True)
    return sp.Symbol(name, **assumptions)


def _bound_symbol(x: sp.Symbol, upper: sp.Expr, height: int, taken: set[sp.Symbol]) -> sp.Symbol:
    """The canonical name of the bound index x, never one of `taken` (rule R2), with x's own
    assumptions (SymPy re-evaluates ``Abs``, ``Max`` or a condition under the new name's)."""
    stem = _INDEX_NAMES.get(upper + 1, "j")
    return _fresh(f"{stem}_{height}", taken, like=x)


#: Node types that bind no variable; any other node is checked by `_binds`. (An `Idx`'s free symbol is
#: itself, its argument a plain Symbol: read by `_binds`, it would seem to bind that Symbol.)
_PLAIN = (sp.Atom, sp.Add, sp.Mul, sp.Pow, sp.Indexed, sp.IndexedBase, sp.Idx, sp.KroneckerDelta, sp.Piecewise,
          sp.Max, sp.Min, sp.Abs, sp.sign, sp.Heaviside, sp.DiracDelta, sp.exp, sp.log, sp.tanh, sp.Tuple,
          sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction,
          sp.functions.elementary.piecewise.ExprCondPair)


def _binds(expr: sp.Basic) -> set[sp.Symbol]:
    """The symbols `expr` binds: free in one of its arguments, not free in it. This finds binders the
    rules never heard of (SymPy's ``LaplaceTransform(f, w, s)`` binds w), but not one whose variable is
    also free in another argument: the known binders are listed in `_opaque` for that."""
    if isinstance(expr, _PLAIN) or not expr.args:
        return set()
    inner = set().union(*(arg.free_symbols for arg in expr.args if isinstance(arg, sp.Basic)))
    return inner - expr.free_symbols


def _opaque(expr: sp.Basic) -> bool:
    """A binder other than `Sum` (a `Product`, an `Integral`, a `Lambda`, an integral transform,
    ...) or a `Derivative`, or a `Sum` whose range breaks its index's assumptions: the rules are
    stated for sums whose indices are what their assumptions say, so nothing is normalised or
    substituted inside one."""
    if isinstance(expr, sp.Sum):  # a sum the rules leave alone is left alone by substitution too
        return not all(_range_implies_assumptions(x, lower, upper, {}) for x, lower, upper in expr.limits)
    return isinstance(expr, (ExprWithLimits, sp.Lambda, sp.Derivative, sp.Subs, sp.Limit, sp.Order)) \
        or bool(_binds(expr))


def _has_opaque(expr: sp.Basic) -> bool:
    return any(_opaque(node) for node in sp.preorder_traversal(expr))


def _substitute(expr: sp.Expr, x: sp.Symbol, value: sp.Expr) -> sp.Expr:
    """``expr`` with the free occurrences of x replaced by `value`, renaming first every
    inner bound index that occurs in `value` (capture-avoiding; SymPy's ``subs`` is not)."""
    if x not in expr.free_symbols:
        return expr
    if isinstance(expr, sp.Sum):  # SymPy flattens Sum(Sum(f, L0), L1) into Sum(f, L0, L1)
        body, limits = _substitute_scope(expr.function, list(expr.limits), x, value)
        return sp.Sum(body, *limits)
    if not expr.has(sp.Sum):
        return expr.xreplace({x: value})
    return expr.func(*[_substitute(arg, x, value) for arg in expr.args])


def _substitute_scope(body: sp.Expr, limits: list[tuple], x: sp.Symbol, value: sp.Expr) -> tuple[sp.Expr, list]:
    """`_substitute` into ``Sum(body, *limits)`` (limits innermost first), one limit at a time
    from the outermost: its bounds are outside its own scope; its index shadows x, or is
    renamed first when it occurs in `value`."""
    if not limits:
        return _substitute(body, x, value), []
    *inner, (y, lower, upper) = limits
    lower, upper = _substitute(lower, x, value), _substitute(upper, x, value)
    if y == x:  # x is shadowed in the body and the inner limits
        return body, [*inner, (y, lower, upper)]
    if y in value.free_symbols:
        taken = body.atoms(sp.Symbol) | value.free_symbols | {x}
        for limit in inner:
            taken |= set().union(*(part.atoms(sp.Symbol) for part in limit))
        fresh = _fresh(y.name, taken, like=y)
        body = body.xreplace({y: fresh})
        inner = [tuple(part.xreplace({y: fresh}) for part in limit) for limit in inner]
        y = fresh
    body, inner = _substitute_scope(body, inner, x, value)
    return body, [*inner, (y, lower, upper)]


def _delta_partner(delta: sp.KroneckerDelta, x: sp.Symbol) -> sp.Expr | None:
    """y when `delta` is delta(x, y) with y an integer free of x, else None."""
    if len(delta.args) != 2:
        return None
    first, second = delta.args
    y = second if first == x else first if second == x else None
    if y is None or x in y.free_symbols or y.is_integer is not True:
        return None
    return y


def _delta_inside(y: sp.Expr, lower: sp.Expr, upper: sp.Expr, scope: Ranges) -> bool | None:
    """Sum_{x=lower}^{upper} delta(x, y) g(x), y an integer, read as ``Sum.doit`` reads it (rule
    R1): True when ``lower <= y <= upper`` is proved (the sum is g(y)); False when y is proved
    outside, for a reversed range (upper < lower - 1, Karr's convention: -g(y) when
    upper < y < lower) too (the sum is 0); None when undecided: the sum is left as it is.

    (An undecided sum was once written ``Piecewise((g(y), lower <= y <= upper), ...)``; SymPy's
    ``piecewise_fold``, run whenever a Sum is built, pulls such a Piecewise out of an inner sum
    whose index its condition names, and that index escapes its sum.)
    """
    inside = sp.And(_condition(y - lower, sp.Ge(y, lower), scope),
                    _condition(upper - y, sp.Le(y, upper), scope))
    if inside == sp.true:
        return True
    if inside != sp.false:
        return None
    if _sign(upper - lower + 1, scope) is not True:  # the range may be reversed
        reversed_ = sp.And(_condition(y - upper - 1, sp.Gt(y, upper), scope),
                           _condition(lower - 1 - y, sp.Lt(y, lower), scope))
        if reversed_ != sp.false:
            return None
    return False


def _sum_of(body: sp.Expr, x: sp.Symbol, lower: sp.Expr, upper: sp.Expr, scope: Ranges) -> sp.Expr:
    """Sum_{x=lower}^{upper} body, `body` in normal form; `scope`: ranges known outside."""
    terms = []
    for term in sp.Add.make_args(sp.expand_mul(body)):
        inside, outside = [], []
        for factor in sp.Mul.make_args(term):
            (inside if x in factor.free_symbols else outside).append(factor)
        coefficient = sp.Mul(*outside)
        deltas = [
            (f, y) for f in inside if isinstance(f, sp.KroneckerDelta)
            for y in [_delta_partner(f, x)] if y is not None
        ]
        if deltas and not _has_opaque(sp.Mul(*inside)):  # never substitute into a Product, ...
            delta, y = deltas[0]
            decided = _delta_inside(y, lower, upper, scope)
            if decided is not None:
                rest = sp.Mul(*[f for f in inside if f is not delta])
                terms.append(coefficient * _normal(_substitute(rest, x, y), scope) if decided else sp.Integer(0))
                continue
        summand = sp.Mul(*inside)
        if summand == 1:
            terms.append(coefficient * (upper - lower + 1))
            continue
        taken = (summand.atoms(sp.Symbol) | lower.free_symbols | upper.free_symbols) - {x}
        bound = _bound_symbol(x, upper, _height(summand) + 1, taken)
        terms.append(coefficient * sp.Sum(summand.xreplace({x: bound}), (bound, lower, upper)))
    return sp.Add(*terms)


def _inside(scope: Ranges, x: sp.Symbol, lower: sp.Expr, upper: sp.Expr) -> dict[sp.Symbol, Range]:
    """What is known inside Sum_{x=lower}^{upper}: x in [lower, upper] when that range is
    proved not reversed (a reversed one runs over [upper + 1, lower - 1]); else nothing
    about x (an outer x is shadowed either way)."""
    # x is re-bound: its outer range, and every range that names the outer x, no longer apply
    known = {y: r for y, r in scope.items() if y != x and x not in r[0].free_symbols | r[1].free_symbols}
    if _sign(upper - lower + 1, scope) is True and x not in lower.free_symbols | upper.free_symbols:
        known[x] = (lower, upper)  # (a limit naming x names the outer x: no range for the inner one)
    return known


def _range_implies_assumptions(x: sp.Symbol, lower: sp.Expr, upper: sp.Expr, scope: Ranges) -> bool:
    """Whether every value Sum_{x=lower}^{upper} gives x (lower..upper, or upper+1..lower-1
    when reversed) has x's assumptions: the rules trust them (``x >= 0`` is known for an
    index), so a sum that breaks them (x nonnegative summed from -T) is left as it is."""
    if not (lower.is_integer and upper.is_integer):
        return False  # x would run over lower, lower + 1, ...: no rule is stated for such a sum
    if _sign(lower - 1, scope) is True and _sign(upper, scope) is True:
        implied = sp.Dummy(integer=True, positive=True).assumptions0
    elif _sign(lower, scope) is True and _sign(upper + 1, scope) is True:
        implied = sp.Dummy(integer=True, nonnegative=True).assumptions0
    else:
        implied = sp.Dummy(integer=True).assumptions0
    implied = {**implied, "commutative": True}
    return all(implied.get(name) == value for name, value in x.assumptions0.items())


def _normal(expr: sp.Expr, scope: Ranges) -> sp.Expr:
    """The normal form of `expr` where `scope` is known (memoised: `_normal_in`)."""
    if not expr.args:
        return expr
    return _normal_in(expr, frozenset(scope.items()))


@functools.lru_cache(maxsize=1 << 15)
def _normal_in(expr: sp.Expr, scope: frozenset) -> sp.Expr:
    """`_normal` of `expr` under the ranges `scope` (as items). A pure function of its two
    arguments, so a derivation's repeated subexpressions (a plugin's mean and variance of the
    keys occur in every score) are normalised once, across the calls of one derivation."""
    return _normal_uncached(expr, dict(scope))


def _normal_uncached(expr: sp.Expr, scope: Ranges) -> sp.Expr:
    if expr.is_commutative is False:  # the rules move factors freely: not for A * B != B * A
        return expr
    if isinstance(expr, sp.Sum):
        limits = [tuple(limit) for limit in expr.limits]  # innermost first
        scopes = [scope]  # scopes[n]: what is known outside limit n (outermost first here)
        for x, lower, upper in reversed(limits):
            if not _range_implies_assumptions(x, lower, upper, scopes[-1]):
                return expr  # an atom: its index's assumptions may be false inside it
            scopes.append(_inside(scopes[-1], x, lower, upper))
        body = _normal(expr.function, scopes[-1])
        for n, (x, lower, upper) in enumerate(limits):
            body = _sum_of(body, x, lower, upper, scopes[len(limits) - 1 - n])
        return body
    if isinstance(expr, sp.Indexed) or not expr.args or _opaque(expr):
        return expr
    return expr.func(*[_normal(arg, scope) for arg in expr.args])


def normal_form(expr: sp.Expr, ranges: Ranges | None = None) -> sp.Expr:
    """The canonical form of an index-level expression (see the module docstring).

    `ranges` (``index -> (lo, hi)``) adds to, or overrides, `declared_ranges()`: what is
    known about the free indices of `expr`. A delta over an index whose range is not
    known is not eliminated but kept as an explicit range condition.
    """
    return _normal(sp.sympify(expr), _known(ranges))


def gradient(expr: sp.Expr, tau: sp.Symbol = S.tau, m: sp.Symbol = S.m) -> sp.Expr:
    """d expr / d e[tau, m] by `sympy.diff`, in normal form (deltas eliminated), steps
    (sign, Heaviside) differentiated as 0 wherever their derivative exists.

    ``e[tau, m]`` is an entry of e, so tau and m range over e's axes (``symbols.AXES``).
    """
    axes = dict(zip((tau, m), S.AXES["e"], strict=True))
    ranges = {x: (sp.Integer(0), size - 1) for x, size in axes.items() if isinstance(x, sp.Symbol)}
    # Every quantity of the model is real, which SymPy does not know of an Indexed entry: |a| is
    # max(a, -a), whose derivative it writes with Heaviside, where that of Abs has re(a) and im(a).
    real = expr.replace(sp.Abs, lambda arg: sp.Max(arg, -arg))
    # sign and Heaviside are steps: their derivative is 0 wherever it exists (as jax.grad takes
    # it), so sign(a) is written H(a) - H(-a) (equal at 0 too, H(0) = 1/2) and every DiracDelta
    # that diff writes, a term that lives only where a step's argument is exactly 0, is dropped.
    real = real.replace(sp.sign, lambda arg: sp.Heaviside(arg) - sp.Heaviside(-arg))
    derivative = sp.diff(real, S.e[tau, m])
    if not expr.has(sp.DiracDelta):  # one in the input is the caller's, and its derivative too
        derivative = derivative.replace(lambda x: isinstance(x, sp.DiracDelta), lambda x: sp.Integer(0))
    return normal_form(derivative, ranges)


def at_word_position(expr: sp.Expr, tau: sp.Symbol = S.tau) -> sp.Expr:
    """Specialise a gradient to a word position, tau >= 1 (so delta(0, tau) = 0)."""
    return normal_form(expr.replace(
        lambda x: isinstance(x, sp.KroneckerDelta) and set(x.args) == {sp.Integer(0), tau},
        lambda x: sp.Integer(0),
    ), {tau: (sp.Integer(1), S.T - 1)})


def at_cls_position(expr: sp.Expr, tau: sp.Symbol = S.tau) -> sp.Expr:
    """Specialise a gradient to the [CLS] position, tau = 0."""
    return normal_form(expr.subs(tau, 0))


def prove_equal(lhs: sp.Expr, rhs: sp.Expr, ranges: Ranges | None = None) -> bool:
    """True when lhs - rhs normalises and expands to exactly zero: equal for every size and
    every value of the free indices in their ranges (`normal_form`'s `ranges`), wherever both
    sides are defined. False means "not proved", never "disproved"; so is any input that `exact`
    refuses (a Float, an infinity, a sum whose range breaks its index's assumptions)."""
    lhs, rhs = exact(lhs, ranges), exact(rhs, ranges)
    if lhs is None or rhs is None:
        return False
    return sp.expand(normal_form(lhs, ranges) - normal_form(rhs, ranges)) == 0


def exact(expr: sp.Expr, ranges: Ranges | None = None) -> sp.Expr | None:
    """`expr` ready to be compared, or None when the rules do not apply to it.

    The prover sees an expression as SymPy built it, and SymPy evaluates while it builds: it
    rounds Float arithmetic (``x * (1 + Float(1e-20))`` is built as ``x * 1.0``), and it
    simplifies a summand under its index's assumptions (``Abs(j)`` is built as ``j`` for a
    nonnegative j, even inside a sum from -1). Neither can be undone afterwards, so an
    expression that holds a Float, or a sum whose range gives its index a value its assumptions
    exclude (`_range_implies_assumptions`, under `ranges` and the enclosing sums' limits), is
    refused: write numbers as ``sympy.Rational`` or declare them (`SymbolicModel.constant`). An
    infinite limit or value is refused too: the rules are for finite sums, and linearity does not
    hold for divergent ones. So is a sum whose limits are not proved integers (a plain symbol may be
    infinite, and from 1/2 an index runs over 1/2, 3/2, ...), an expression with a factor that does
    not commute (the rules move factors), and a binder other than a sum whose variable carries an
    assumption (``Subs(Abs(x), x, -1)`` for a positive x is built as ``Subs(x, x, -1)``)."""
    expr = sp.sympify(expr)
    if expr.has(sp.oo, -sp.oo, sp.zoo, sp.nan) or expr.atoms(sp.Float):
        return None
    if not _commutative(expr):  # the rules move factors freely
        return None
    known = _known(ranges)
    free = expr.free_symbols
    # a declared range that breaks its index's assumptions (a nonnegative j said to run over -3..-1)
    if not all(_range_implies_assumptions(x, lo, hi, {}) for x, (lo, hi) in known.items() if x in free):
        return None
    return expr if _assumptions_hold(expr, frozenset(known.items())) else None


#: The assumptions of a symbol declared with none.
_NO_ASSUMPTION = {"commutative": True}


def _commutative(expr: sp.Basic) -> bool:
    """Whether every node of `expr` commutes (no ``Symbol(..., commutative=False)`` anywhere)."""
    return all(node.is_commutative is not False for node in sp.preorder_traversal(expr))


@functools.lru_cache(maxsize=1 << 14)
def _assumptions_hold(expr: sp.Basic, scope: frozenset) -> bool:
    """Whether every sum in `expr` gives its index only values its assumptions allow, where the
    ranges `scope` (as items) are known; an enclosing sum's limits are known inside it."""
    if not isinstance(expr, sp.Basic) or not any(
            isinstance(node, ExprWithLimits) or _binds(node) for node in sp.preorder_traversal(expr)):
        return True
    if isinstance(expr, ExprWithLimits) and not isinstance(expr, sp.Sum):
        # Another binder (a Product, an Integral) is an atom to the rules, but SymPy simplified its
        # body under its variable's assumptions all the same: a Product's index is checked as a
        # sum's; any other binder's variable may carry no assumption a range could break.
        if isinstance(expr, sp.Product):
            return _assumptions_hold(sp.Sum(expr.function, *expr.limits), scope)
        return all(limit[0].assumptions0 == _NO_ASSUMPTION for limit in expr.limits) and \
            all(_assumptions_hold(arg, scope) for arg in expr.args)
    if not isinstance(expr, sp.Sum):
        # Any other binder (a Subs, an integral transform) runs its variable over values no range
        # states: it may carry no assumption (Subs(|x|, x, -1) for a positive x is built as Subs(x, ...)).
        if any(x.assumptions0 != _NO_ASSUMPTION for x in _binds(expr)):
            return False
        return all(_assumptions_hold(arg, scope) for arg in expr.args)
    known = dict(scope)
    for x, lower, upper in reversed(expr.limits):  # outermost first
        outer = frozenset(known.items())
        if not (_assumptions_hold(lower, outer) and _assumptions_hold(upper, outer)
                and _range_implies_assumptions(x, lower, upper, known)):
            return False
        known = _inside(known, x, lower, upper)
    return _assumptions_hold(expr.function, frozenset(known.items()))


def explicit(expr: sp.Expr, sizes: dict[sp.Symbol, int]) -> sp.Expr:
    """Substitute explicit sizes and unroll every sum into scalar terms."""
    return unroll(expr.subs(sizes))


def unroll(expr: sp.Expr) -> sp.Expr:
    """Every Sum with integer limits written out as the Add of its terms (exact; Karr's
    convention for a reversed range, as `Sum.doit`). ``Sum.doit`` gives the same value but first
    looks for a closed form (partial fractions of the summand: seconds per sum); a Sum whose
    limits are not integers, or whose summand holds another binder (a Product, a Limit), is left to it."""
    if not isinstance(expr, sp.Basic) or not expr.args:
        return expr
    if not isinstance(expr, sp.Sum):
        return expr.func(*[unroll(arg) for arg in expr.args])
    body = unroll(expr.function)
    limits = list(expr.limits)
    for n, (x, lower, upper) in enumerate(limits):  # innermost first: an outer index stays free until its turn
        lower, upper = unroll(lower), unroll(upper)
        if not (lower.is_Integer and upper.is_Integer) or _has_opaque(body):  # xreplace would enter a binder
            return sp.Sum(body, (x, lower, upper), *limits[n + 1:]).doit()
        # Karr: Sum_{x=a}^{b} f = -Sum_{x=b+1}^{a-1} f for a reversed range (b < a - 1)
        sign, terms = (1, range(int(lower), int(upper) + 1)) if upper >= lower - 1 else \
            (-1, range(int(upper) + 1, int(lower)))
        body = sign * sp.Add(*[body.xreplace({x: sp.Integer(k)}) for k in terms])
    return body
