"""Theorem 1 derived: the gradient of the explained output with respect to e_t.

`derive_gradient(spec)` differentiates the spec's forward expression with `sympy.diff`
and compares the result with the paper's statement (`theory.statements`) in two ways:
symbolically for every size (normal forms differ by zero, `calculus.prove_equal`) and,
as a second check, at explicit small sizes that tell every size symbol apart, every sum
run as a loop over random parameters at 50 digits (`Unrolled`, `_explicit_equal`;
``docs/theory.md §10``).
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass, field

import mpmath
import sympy as sp
from attnverify.theory import memo, statements
from attnverify.theory import symbols as S
from attnverify.theory.calculus import (
    at_cls_position,
    at_word_position,
    gradient,
    normal_form,
    prove_equal,
)
from attnverify.theory.model import SymbolicModel

from attnverify.spec import ModelSpec

#: Explicit sizes of the second check. All distinct and >= 2, so that no size can stand in
#: for another (at d_att = 1 a dropped 1/sqrt(d_att) goes unseen, at d_out = d_e a sum over
#: the wrong axis); d_e > d_out, so that coordinates m >= d_out are checked too.
EXPLICIT_SIZES = {S.T: 3, S.d_e: 5, S.d_att: 2, S.d_out: 4, S.K: 6, S.C: 7}
#: Precision (decimal digits) and number of random parameter draws of the second check.
EXPLICIT_DIGITS = 50
EXPLICIT_DRAWS = 2


@dataclass(frozen=True)
class Proof:
    """Outcome of comparing a derived expression with a statement."""

    name: str
    general: bool  # equal for every size (symbolic sizes)
    explicit: bool | None = None  # equal at EXPLICIT_SIZES (`_explicit_equal`; None: not run or undecided)

    @property
    def status(self) -> str:
        if self.general:
            return "proved for all sizes"
        if self.explicit:
            return "equal at explicit sizes only"
        if self.explicit is False:
            return "disproved at explicit sizes"
        return "not proved"


@dataclass(frozen=True)
class GradientDerivation:
    """Everything `derive gradient` prints, for one spec."""

    spec: ModelSpec
    output: sp.Expr  # f(e), the forward expression
    gradient: sp.Expr  # d f / d e[tau, m], all positions (free: tau, m)
    word: sp.Expr  # the same at a word position, tau >= 1
    cls: sp.Expr  # the same at tau = 0
    gxi: sp.Expr  # sum_m e[tau, m] d f / d e[tau, m] at a word position (free: tau)
    paper: sp.Expr  # Theorem 1 as stated (free: tau, m)
    cls_term: sp.Expr  # docs/theory.md §3.3 query-path term (free: m)
    gxi_paper: sp.Expr  # the G x I closed form as stated (free: tau)
    proofs: dict[str, Proof] = field(default_factory=dict)


#: The most terms of sums one `Unrolled` evaluator runs: 4x the 25,089 of the built-in model's
#: derivation with its explicit checks, about 7 s at 14,000 terms a second (a cos and a parameter
#: entry per term, 50 digits). A plugin's sum over 2**25 values ran for minutes before, in the
#: counterexample search that precedes each proof; past this, that comparison is not decided.
MAX_UNROLLED_TERMS = 100_000


class TooLargeToUnroll(ValueError):
    """An expression whose sums have more terms than `MAX_UNROLLED_TERMS` at the explicit sizes."""


class Unrolled:
    """The value of an index-level expression at explicit sizes and random parameters.

    Every sum runs as a loop (read as ``Sum.doit`` reads it, reversed ranges included),
    in `mpmath` at `digits` decimal digits; every tensor entry and free scalar gets its own
    random value, the same wherever it occurs. Nothing passes through `normal_form`: this
    is the second, independent check of `derive_gradient`. An entry read outside its
    axis (``symbols.AXES``) raises IndexError: such an expression is wrong at these sizes;
    sums of more than `MAX_UNROLLED_TERMS` terms in all raise `TooLargeToUnroll` (a
    ValueError: the comparison is then not decided).
    """

    def __init__(self, sizes: dict[sp.Symbol, int], seed: int = 0, digits: int = EXPLICIT_DIGITS,
                 positive_scalars: bool = False):
        self.sizes = {size: int(n) for size, n in sizes.items()}
        self.positive_scalars = positive_scalars  # free scalars (a plugin's constants) drawn > 0
        self.ctx = mpmath.MPContext()
        self.ctx.dps = digits
        self._rng = random.Random(seed)
        self._values: dict = {}
        self._memo: dict = {}
        self._free: dict = {}
        self._terms = 0  # terms of sums run so far (`MAX_UNROLLED_TERMS`)

    def __call__(self, expr: sp.Expr, env: dict[sp.Symbol, int] | None = None):
        return self._eval(sp.sympify(expr), dict(env or {}))

    def _value(self, key):
        if key not in self._values:
            self._values[key] = self.ctx.mpf(self._rng.gauss(0.0, 1.0))
        return self._values[key]

    def _eval(self, expr, env):
        if expr.is_Integer:
            return int(expr)
        if expr.is_Rational:
            return self.ctx.mpf(expr.p) / expr.q
        if expr.is_Number or isinstance(expr, sp.NumberSymbol):
            return self.ctx.mpf(str(sp.N(expr, self.ctx.dps + 10)))
        if isinstance(expr, sp.Symbol):
            if expr in env:
                return env[expr]
            if expr in self.sizes:
                return self.sizes[expr]
            if expr.is_integer:
                raise ValueError(f"index {expr} has no value")
            value = self._value(expr)
            return abs(value) if self.positive_scalars else value
        if isinstance(expr, sp.Indexed):
            name = str(expr.base.label)
            index = tuple(int(self._eval(i, env)) for i in expr.indices)
            axes = S.AXES.get(name)
            if axes is not None:
                for n, size in zip(index, axes, strict=True):
                    if not 0 <= n < self._eval(size, env):
                        raise IndexError(f"{name}{list(index)} outside its axes {axes}")
            return self._value((name, index))
        if isinstance(expr, (sp.Sum, sp.Function, sp.Piecewise)):
            free = self._free.get(expr)
            if free is None:
                free = self._free[expr] = tuple(sorted(expr.free_symbols, key=str))
            key = (expr, tuple(env.get(x) for x in free))
            if key not in self._memo:
                self._memo[key] = self._node(expr, env)
            return self._memo[key]
        return self._node(expr, env)

    def _node(self, expr, env):
        ctx = self.ctx
        if isinstance(expr, sp.Add):
            return ctx.fsum(self._eval(arg, env) for arg in expr.args)
        if isinstance(expr, sp.Mul):
            return ctx.fprod(self._eval(arg, env) for arg in expr.args)
        if isinstance(expr, sp.Pow):
            base = self._eval(expr.base, env)
            if expr.exp.is_Integer:
                return ctx.mpf(base) ** int(expr.exp)
            return ctx.power(base, self._eval(expr.exp, env))
        if isinstance(expr, sp.Sum):
            return self._sum(expr.function, list(expr.limits), env)
        if isinstance(expr, sp.KroneckerDelta) and len(expr.args) == 2:
            first, second = (self._eval(arg, env) for arg in expr.args)
            return 1 if first == second else 0
        if isinstance(expr, sp.Piecewise):
            for value, condition in expr.args:
                if self._truth(condition, env):
                    return self._eval(value, env)
            raise ValueError(f"no piece of {expr} applies")
        functions = {sp.exp: ctx.exp, sp.tanh: ctx.tanh, sp.log: ctx.log, sp.sinh: ctx.sinh, sp.cosh: ctx.cosh,
                     sp.sin: ctx.sin, sp.cos: ctx.cos, sp.Abs: abs, sp.sign: ctx.sign}
        if expr.func in functions:
            return functions[expr.func](self._eval(expr.args[0], env))
        # A plugin's ReLU and its derivative (docs/plugins.md); SymPy's Heaviside(0) is 1/2.
        if isinstance(expr, (sp.Max, sp.Min)):
            values = [self._eval(arg, env) for arg in expr.args]
            return max(values) if isinstance(expr, sp.Max) else min(values)
        if isinstance(expr, sp.Heaviside):
            x = self._eval(expr.args[0], env)
            at_zero = self._eval(expr.args[1], env) if len(expr.args) > 1 else ctx.mpf(1) / 2
            return 1 if x > 0 else 0 if x < 0 else at_zero
        raise NotImplementedError(f"cannot evaluate {expr.func}")

    def _sum(self, body, limits, env):
        if not limits:
            return self._eval(body, env)
        *inner, (x, lower, upper) = limits  # the outermost limit comes last
        lo, hi = int(self._eval(lower, env)), int(self._eval(upper, env))
        sign = 1
        if hi < lo - 1:  # Karr's convention, as Sum.doit
            lo, hi, sign = hi + 1, lo - 1, -1
        self._terms += max(0, hi - lo + 1)
        if self._terms > MAX_UNROLLED_TERMS:
            raise TooLargeToUnroll(f"more than {MAX_UNROLLED_TERMS:,} terms of sums to unroll (the sum over {x} runs "
                                   f"over {hi - lo + 1:,} values)")
        terms = [self._sum(body, inner, {**env, x: v}) for v in range(lo, hi + 1)]
        return sign * self.ctx.fsum(terms)

    def _truth(self, condition, env) -> bool:
        if condition in (sp.true, sp.false):
            return bool(condition)
        if isinstance(condition, sp.And):
            return all(self._truth(c, env) for c in condition.args)
        if isinstance(condition, sp.Or):
            return any(self._truth(c, env) for c in condition.args)
        if isinstance(condition, sp.Not):
            return not self._truth(condition.args[0], env)
        compare = {sp.Ge: lambda a, b: a >= b, sp.Gt: lambda a, b: a > b, sp.Le: lambda a, b: a <= b,
                   sp.Lt: lambda a, b: a < b, sp.Eq: lambda a, b: a == b, sp.Ne: lambda a, b: a != b}
        if condition.func in compare:
            return compare[condition.func](*(self._eval(arg, env) for arg in condition.args))
        raise NotImplementedError(f"cannot decide {condition}")


def _explicit_equal(lhs: sp.Expr, rhs: sp.Expr, points: list[dict]) -> bool | None:
    """lhs = rhs at `EXPLICIT_SIZES`, at each point (values of the free indices), for
    `EXPLICIT_DRAWS` random parameter draws (`Unrolled`, no `normal_form`).

    True: equal to within 10^-(digits - 15) relative at every point; False: a difference
    above 10^-(digits / 2) relative at one (a counterexample), or an entry read outside
    its axis; None: neither (not decided), also when a side cannot be evaluated as a real
    number there (a square root of a negative value, a division by zero).
    """
    decided = True
    for seed in range(EXPLICIT_DRAWS):
        unrolled = Unrolled(EXPLICIT_SIZES, seed)
        ctx = unrolled.ctx
        for point in points:
            try:
                left, right = unrolled(lhs, point), unrolled(rhs, point)
            except IndexError:
                return False
            except (ArithmeticError, TypeError, ValueError):
                return None
            if not all(isinstance(v, (int, type(ctx.mpf(0)))) for v in (left, right)):
                return None  # complex (or otherwise not real): no real counterexample
            scale = max(1, abs(left), abs(right))
            difference = abs(left - right) / scale
            if difference > ctx.mpf(10) ** (-EXPLICIT_DIGITS // 2):
                return False
            if difference > ctx.mpf(10) ** (15 - EXPLICIT_DIGITS):
                decided = None
    return decided


#: Digits of the counterexample search that precedes each proof (`_differs`).
QUICK_DIGITS = 30


def _differs(unrolled: Unrolled, lhs: sp.Expr, rhs: sp.Expr, point: dict) -> bool:
    """True when lhs and rhs, evaluated by `unrolled` at `point`, are real numbers that differ
    by more than 10^-(digits / 2) relative: a counterexample. False when they agree or when
    either side cannot be evaluated as a real number there (nothing is shown)."""
    ctx = unrolled.ctx
    try:
        left, right = unrolled(lhs, point), unrolled(rhs, point)
    except IndexError:
        return True  # an entry read outside its axis: wrong at these sizes
    except (ArithmeticError, TypeError, ValueError, NotImplementedError):
        return False
    real = type(ctx.mpf(0))
    if not all(isinstance(v, (int, real)) for v in (left, right)):
        return False
    return abs(left - right) / max(1, abs(left), abs(right)) > ctx.mpf(10) ** (-(ctx.dps // 2))


def _grid(**ranges: range) -> list[dict]:
    """Every point of a grid of free-index values: ``_grid(tau=range(1, 3), m=range(5))``."""
    symbols = [getattr(S, name) for name in ranges]
    return [dict(zip(symbols, values, strict=True)) for values in itertools.product(*ranges.values())]


@functools.lru_cache(maxsize=32)
@memo.on_disk  # seconds of SymPy: a later run reads it back (`theory.memo`)
def derive_gradient(spec: ModelSpec, *, explicit_check: bool = False) -> GradientDerivation:
    """Derive nabla_{e_t} f for `spec` with SymPy and compare with the paper's statements.

    With `explicit_check`, each comparison is repeated at `EXPLICIT_SIZES`, at every value
    of its free indices, every sum run as a loop over random parameters (`Unrolled`, a few
    seconds): the check that does not rely on `normal_form`.
    """
    model = SymbolicModel(spec)
    output = model.output()
    grad = gradient(output)
    word = at_word_position(grad)
    cls = at_cls_position(grad)
    gxi = normal_form(sp.Sum(S.e[S.tau, S.m] * word, (S.m, 0, S.d_e - 1)))
    paper = statements.theorem1_gradient(model)
    cls_term = statements.cls_query_term(model)
    gxi_paper = statements.gradient_times_input(model)
    paper_at_cls = paper.subs(S.tau, 0)

    words = range(1, EXPLICIT_SIZES[S.T])  # every word position
    coordinates = range(EXPLICIT_SIZES[S.d_e])  # every embedding coordinate, m >= d_out too
    comparisons = {
        "theorem1 (t >= 1)": (word, paper, _grid(tau=words, m=coordinates)),
        "theorem1 at [CLS] (t = 0)": (cls, paper_at_cls, _grid(m=coordinates)),
        "theorem1 + query-path term at [CLS]": (cls, paper_at_cls + cls_term, _grid(m=coordinates)),
        "gradient x input (t >= 1)": (gxi, gxi_paper, _grid(tau=words)),
    }
    proofs = {}
    # A counterexample first (docs/theory.md §10.6, R5): a statement that differs from the
    # derivation at one explicit point cannot be proved, so `normal_form` (most of a plugin's
    # derivation time) runs only for the statements that survive it. Sound: it can only withhold
    # a proof. One evaluator for all four, so that the subexpressions they share are evaluated once.
    quick = Unrolled(EXPLICIT_SIZES, seed=0, digits=QUICK_DIGITS, positive_scalars=True)
    for name, (lhs, rhs, points) in comparisons.items():
        counterexample = _differs(quick, lhs, rhs, points[0])
        general = not counterexample and prove_equal(lhs, rhs)
        exact = _explicit_equal(lhs, rhs, points) if explicit_check else None
        proofs[name] = Proof(name, general, exact)
    return GradientDerivation(
        spec, output, grad, word, cls, gxi, paper, cls_term, gxi_paper, proofs
    )
