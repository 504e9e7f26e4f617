"""A rounding bound for a compiled expression: how far its floating-point value can be from
the exact value of the same expression on the same input arrays (docs/theory.md §10.5).

`compile_expression` evaluates a statement with the float operations it is written in. Some
statements are ill-conditioned in that form where attention saturates: Jain & Wallace's
leave-one-out form divides by ``1 - alpha_t``, which float64 knows only to about ``eps``
absolutely, so as ``alpha_t -> 1`` its value loses every digit, while the true model computes the
same number stably. A failure there says nothing about the formula. `compile_with_rounding_bound`
evaluates the expression together with a bound on its rounding error (a running error
analysis, in the sense of Wilkinson and Higham): each node's bound follows from its operands'
values and bounds and from the rounding of its own operation,

* a sum or product of ``N`` terms of ``m`` factors (one ``einsum``):
  ``einsum(|x| + e) - einsum(|x|) + 2 gamma(N + m) einsum(|x| + e)``, with
  ``gamma(k) = k u / (1 - k u)`` and ``u`` the unit roundoff (any order of summation);
* ``x ** n``: the exact worst case over ``|x - x^| <= e`` (``(|x| - e) ** n - |x| ** n`` for
  ``n < 0``, infinite when ``e >= |x|``), plus ``gamma(2 |n| + 1)`` of the result;
* ``exp``: ``|exp(x)| (expm1(e) + c u)``; ``log``: ``-log1p(-e / |x|) + c u |log x|``; tanh, sin and cos
  are 1-Lipschitz; sinh and cosh have slope ``cosh(|x| + e)``; ``c`` is the function's error in
  units of ``u`` (`FUNCTION_ROUNDING`: four times or more what was measured on XLA's CPU functions
  against mpmath);
* ``Abs``, ``Max``, ``Min``: the operands' largest bound; ``sign`` and ``Heaviside``: their jump
  where the bound reaches the operand;
* input arrays, integers and indices: exact (0); other numbers: their rounding, ``u |c|``.

Conditions (of ``Piecewise``, deltas between float values) are taken as computed: a branch is
not bounded against its neighbour's. The bound is an upper bound up to the rounding of its own
evaluation (relative ``O(u)`` of the bound itself). Tests compare it with the float32 evaluation's
distance from the float64 one, which it must cover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
from attnverify.numerics.compile import (
    CompileError,
    Evaluator,
    Prepared,
    Tensor,
    contract,
    elementwise_functions,
    relation_functions,
    union_axes,
)

from attnverify.lazy import lazy_module

sp = lazy_module("sympy")

#: A function's error in units of the unit roundoff u (2**-53 in float64), with a margin of four
#: or more over the largest measured on XLA's CPU functions against mpmath (float64 and float32:
#: exp 2.0 u, 4.9 u in float32 near overflow, log 1.8, sin and cos 1.9, tanh 7.0, sinh and cosh 25,
#: x**(1/3) 4.1). Measured on CPU: a GPU whose float32 matmuls default to TF32 rounds them far more.
FUNCTION_ROUNDING = {"exp": 20, "log": 8, "sin": 8, "cos": 8, "tanh": 32, "sinh": 128, "cosh": 128, "pow": 20}


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error of k roundings (k u < 1)."""
    return k * u / (1 - k * u) if k * u < 1 else float("inf")


def unit_roundoff(dtype) -> tuple[float, float]:
    """(u, tiny) of a float dtype: the relative error of one rounding, and the most an underflow
    (flushed to zero) can lose."""
    info = jnp.finfo(dtype)
    return float(info.eps) / 2, float(info.tiny)


def _abs(t: Tensor) -> Tensor:
    return Tensor(jnp.abs(t.value), t.axes)


def _plus(a: Tensor, b: Tensor | None) -> Tensor:
    if b is None:
        return a
    axes = union_axes([a, b])
    return Tensor(a.aligned(axes) + b.aligned(axes), axes)


class BoundedEvaluator(Evaluator):
    """`Evaluator` that also bounds each node's rounding error: `error(expr)` is a tensor of
    absolute bounds (None where the node is exact)."""

    def __init__(self, arrays: Mapping[str, jnp.ndarray], sizes: Mapping):
        super().__init__(arrays, sizes)
        floating = [jnp.result_type(a) for a in arrays.values() if jnp.issubdtype(jnp.result_type(a), jnp.floating)]
        # The coarsest input precision (float32 inputs beside float64 ones round like float32).
        units = [unit_roundoff(dtype) for dtype in floating] or [unit_roundoff(jnp.result_type(float))]
        self.u, self.tiny = max(units)
        self._errors: dict = {}

    def error(self, expr: sp.Expr) -> Tensor | None:
        key = self.key(expr)
        if key not in self._errors:
            bound = self._error(expr)  # a bound that is not a number (inf - inf, 0 * inf) bounds nothing
            self._errors[key] = None if bound is None else Tensor(
                jnp.where(jnp.isnan(bound.value), jnp.inf, bound.value), bound.axes)
        return self._errors[key]

    def _error(self, expr: sp.Expr) -> Tensor | None:
        if isinstance(expr, sp.Sum):
            return self._summed(expr)
        value = self(expr)
        if isinstance(expr, (sp.Indexed, sp.Symbol)) or expr in (sp.true, sp.false):
            return None
        if expr.is_Number or expr.is_NumberSymbol:  # exact when float32 holds it (integers to 2^24, 1/2, ...)
            exact = expr.is_Rational and abs(expr) <= 2 ** 24 and sp.Rational(float(np.float32(float(expr)))) == expr
            return None if exact else Tensor(self.u * jnp.abs(value.value) + self.tiny, ())
        if isinstance(expr, (sp.KroneckerDelta, *relation_functions(), sp.And, sp.Or, sp.Not)):
            return None  # conditions are taken as computed (module docstring)
        if isinstance(expr, sp.Add):
            return self._added(expr)
        if isinstance(expr, sp.Mul):
            factors = [self(arg) for arg in expr.args]
            return self._product(factors, [self.error(arg) for arg in expr.args], value.axes, terms=1)
        if isinstance(expr, sp.Pow):
            return self._power(expr, value)
        if isinstance(expr, (sp.Max, sp.Min)):
            return self._largest([self.error(arg) for arg in expr.args])
        if isinstance(expr, sp.Heaviside) or type(expr) is sp.sign:
            inner, bound = self(expr.args[0]), self.error(expr.args[0])
            if bound is None:
                return None
            jump = 1.0 if isinstance(expr, sp.Heaviside) else 2.0
            axes = union_axes([inner, bound])
            return Tensor(jnp.where(jnp.abs(inner.aligned(axes)) > bound.aligned(axes), 0.0, jump), axes)
        if isinstance(expr, sp.Piecewise):
            return self._piecewise(expr)
        if type(expr) in elementwise_functions():
            return self._function(expr, value)
        raise CompileError(f"no rounding rule for {type(expr).__name__}")  # every node compile.py evaluates has one

    def _added(self, expr: sp.Add) -> Tensor:
        terms = [self(arg) for arg in expr.args]
        total = Tensor(jnp.abs(terms[0].value), terms[0].axes)
        for term in terms[1:]:
            total = _plus(total, _abs(term))
        bound = Tensor(gamma(len(terms) - 1, self.u) * total.value + (len(terms) - 1) * self.tiny, total.axes)
        for arg in expr.args:
            bound = _plus(bound, self.error(arg))
        return bound

    def _product(self, factors: list[Tensor], errors: list, keep: tuple, *, terms: int) -> Tensor:
        """A sum of `terms` products of `factors` (one einsum): the operands' errors carried
        through exactly (``einsum(|x| + e) - einsum(|x|)``) and the einsum's own rounding."""
        magnitudes = [_abs(f) for f in factors]
        widened = [m if e is None else _plus(m, e) for m, e in zip(magnitudes, errors, strict=True)]
        upper = contract(widened, keep)
        carried = 0.0 if all(e is None for e in errors) else upper.value - contract(magnitudes, keep).value
        # Its own rounding, plus that of computing `carried` as a difference of two roundings of it.
        own = 3 * gamma(terms + len(factors), self.u) * upper.value + 2 * (terms + len(factors)) * self.tiny
        return Tensor(carried + own, keep)

    def _summed(self, expr: sp.Sum) -> Tensor:
        summand = self.summand(expr, self.error)
        bound = self._product(summand.factors + summand.masks, summand.visited + [None] * len(summand.masks),
                              summand.keep, terms=summand.terms)
        if summand.copies != 1:  # the sum times the number of identical copies: one more rounding
            bound = Tensor(bound.value * summand.copies * (1 + self.u)
                            + self.u * jnp.abs(self(expr).aligned(summand.keep)) + self.tiny, summand.keep)
        return bound

    def _power(self, expr: sp.Pow, value: Tensor) -> Tensor | None:
        base, bound = self(expr.base), self.error(expr.base)
        exponent = expr.exp
        if exponent.is_Integer:
            n = int(exponent)
            if n == 0:
                return None
            magnitude = jnp.abs(base.value)
            own = gamma(2 * abs(n) + 1, self.u) * jnp.abs(value.value) + (2 * abs(n) + 1) * self.tiny
            if bound is None:
                return Tensor(own, base.axes)
            e = bound.aligned(base.axes)
            if n > 0:
                carried = (magnitude + e) ** n - magnitude ** n
            else:
                carried = jnp.where(e < magnitude, jnp.maximum(magnitude - e, 0.0) ** n - magnitude ** n, jnp.inf)
            return Tensor(carried + own, base.axes)
        power, power_bound = self(exponent), self.error(exponent)
        axes = union_axes([base, power, value])
        b, y, v = base.aligned(axes), power.aligned(axes), jnp.abs(value.aligned(axes))
        magnitude = jnp.abs(b)
        carried = jnp.zeros_like(v)
        if bound is not None:
            e = bound.aligned(axes)
            carried = jnp.maximum(jnp.abs((magnitude + e) ** y - magnitude ** y),
                                  jnp.abs(jnp.maximum(magnitude - e, 0.0) ** y - magnitude ** y))
        if power_bound is not None:  # b ** (y + d) = b ** y * b ** d
            carried = carried + (v + carried) * jnp.expm1(jnp.abs(jnp.log(magnitude)) * power_bound.aligned(axes))
        return Tensor(carried + FUNCTION_ROUNDING["pow"] * self.u * (v + carried) + self.tiny, axes)

    def _function(self, expr: sp.Expr, value: Tensor) -> Tensor | None:
        name = type(expr).__name__
        inner, bound = self(expr.args[0]), self.error(expr.args[0])
        v = jnp.abs(value.value)
        units = FUNCTION_ROUNDING.get(name, 0)  # Abs: exact
        own = units * self.u * v + (self.tiny if units else 0.0)
        if bound is None:
            return Tensor(own, value.axes) if name != "Abs" else None
        e, x = bound.aligned(value.axes), inner.aligned(value.axes)
        if name == "exp":  # exp(x) lies in exp(x^) * [exp(-e), exp(e)]
            return Tensor(v * jnp.expm1(e) + own * jnp.exp(e), value.axes)
        if name == "log":  # |log x - log x^| <= -log(1 - e / |x^|)
            ratio = e / jnp.abs(x)
            carried = jnp.where(ratio < 1, -jnp.log1p(-ratio), jnp.inf)
        elif name in ("sinh", "cosh"):
            carried = jnp.cosh(jnp.abs(x) + e) * e
        else:  # Abs, tanh, sin, cos: 1-Lipschitz
            carried = e
        return Tensor(carried + own, value.axes)

    def _largest(self, errors: list) -> Tensor | None:
        present = [e for e in errors if e is not None]
        if not present:
            return None
        axes = union_axes(present)
        total = present[0].aligned(axes)
        for e in present[1:]:
            total = jnp.maximum(total, e.aligned(axes))
        return Tensor(total, axes)

    def _piecewise(self, expr: sp.Piecewise) -> Tensor | None:
        pieces = [(self.error(value), self(condition)) for value, condition in expr.args]
        if all(e is None for e, _ in pieces):
            return None
        axes = union_axes([t for e, c in pieces for t in (e, c) if t is not None])
        result = jnp.asarray(0.0)
        for bound, condition in reversed(pieces):
            inside = 0.0 if bound is None else bound.aligned(axes)
            result = jnp.where(condition.aligned(axes), inside, result)
        return Tensor(result, axes)


def compile_with_rounding_bound(
    expr: sp.Expr,
    free: tuple = (),
    *,
    axes: Mapping[str, tuple] | None = None,
    ranges: Mapping | None = None,
) -> Callable[[Mapping[str, jnp.ndarray]], tuple[jnp.ndarray, jnp.ndarray]]:
    """Like `compile_expression`, but the function returns ``(value, bound)``: the value exactly as
    `compile_expression` computes it, and a bound on its distance from the exact value of `expr`
    on the same arrays (module docstring), both with one axis per free index."""
    prepared = Prepared.of(expr, free, axes=axes, ranges=ranges)

    def evaluate(arrays: Mapping[str, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
        evaluator = prepared.evaluator(BoundedEvaluator, arrays)
        value = evaluator(prepared.expr)
        bound = evaluator.error(prepared.expr)
        if bound is None:
            bound = Tensor(jnp.zeros((), value.value.dtype), ())
        return prepared.output(evaluator, value), prepared.output(evaluator, bound)

    return evaluate
