"""Compile index-level SymPy expressions to JAX without unrolling the sums.

`sympy.lambdify` would unroll ``Sum`` over ``range(T)`` at trace time and needs explicit
sizes (THEORY.md §10). Here every sub-expression is evaluated to an array whose axes are
named by the free index symbols it depends on; a ``Sum`` over a product becomes one
`jnp.einsum` that contracts the summed index, so the compiled code is a handful of
vectorised reductions whatever T is. The result is an ordinary jnp function: it can be
jitted, vmapped and differentiated.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax.numpy as jnp
import sympy as sp
from attnverify.theory import symbols as S

_ELEMENTWISE: dict[type, Callable] = {
    sp.exp: jnp.exp,
    sp.log: jnp.log,
    sp.tanh: jnp.tanh,
    sp.Abs: jnp.abs,
}


@dataclass(frozen=True)
class _Tensor:
    """An array together with the index symbol that names each of its axes."""

    value: jnp.ndarray
    axes: tuple[sp.Symbol, ...]

    def aligned(self, axes: tuple[sp.Symbol, ...]) -> jnp.ndarray:
        """The value with its axes put in the order of `axes`, size 1 where absent."""
        own = [x for x in axes if x in self.axes]
        value = jnp.transpose(self.value, [self.axes.index(x) for x in own])
        return jnp.reshape(value, [value.shape[own.index(x)] if x in own else 1 for x in axes])


def _union(tensors: list[_Tensor]) -> tuple[sp.Symbol, ...]:
    axes: list[sp.Symbol] = []
    for tensor in tensors:
        axes.extend(x for x in tensor.axes if x not in axes)
    return tuple(axes)


def _einsum(tensors: list[_Tensor], keep: tuple[sp.Symbol, ...]) -> _Tensor:
    axes = _union(tensors)
    if len(axes) > len(string.ascii_letters):
        raise ValueError("too many index symbols in one product")
    letter = dict(zip(axes, string.ascii_letters, strict=False))
    inputs = ",".join("".join(letter[x] for x in t.axes) for t in tensors)
    output = "".join(letter[x] for x in keep)
    value = jnp.einsum(f"{inputs}->{output}", *[t.value for t in tensors], optimize=True)
    return _Tensor(value, keep)


class Evaluator:
    """Evaluates an index-level SymPy expression on named arrays, sums as `jnp.einsum`.

    arrays: ``{IndexedBase name: array}``; sizes: ``{size symbol: int}`` for the summation
    limits (T, K, ...). Free indices of the expression get their range from ``ranges``
    (``{index symbol: length}``, set by the caller). Calling it returns a tensor whose
    ``aligned(indices)`` gives the value with its axes in the order asked for.
    """

    def __init__(self, arrays: Mapping[str, jnp.ndarray], sizes: Mapping[sp.Symbol, int]):
        self.arrays = arrays
        self.sizes = dict(sizes)
        self.ranges: dict[sp.Symbol, int] = {}

    def scalar(self, expr: sp.Expr) -> int:
        value = expr.subs(self.sizes)
        if not value.is_Integer:
            raise ValueError(f"cannot resolve size {expr}")
        return int(value)

    def __call__(self, expr: sp.Expr) -> _Tensor:
        if isinstance(expr, sp.Sum):
            return self.sum(expr)
        if isinstance(expr, sp.Indexed):
            return self.indexed(expr)
        if expr.is_Number or expr.is_NumberSymbol:
            return _Tensor(jnp.asarray(float(expr)), ())
        if isinstance(expr, sp.Symbol):
            if str(expr) in self.arrays:  # a scalar tensor, e.g. the logit shift z^*
                return _Tensor(self.arrays[str(expr)], ())
            if expr in self.ranges:
                return _Tensor(jnp.arange(self.ranges[expr]), (expr,))
            if expr in self.sizes:
                return _Tensor(jnp.asarray(float(self.sizes[expr])), ())
            raise ValueError(f"unbound symbol {expr}")
        if isinstance(expr, sp.KroneckerDelta):
            left, right = (self(arg) for arg in expr.args)
            axes = _union([left, right])
            return _Tensor(jnp.where(left.aligned(axes) == right.aligned(axes), 1.0, 0.0), axes)
        if isinstance(expr, sp.Add):
            terms = [self(arg) for arg in expr.args]
            axes = _union(terms)
            total = terms[0].aligned(axes)
            for term in terms[1:]:
                total = total + term.aligned(axes)
            return _Tensor(total, axes)
        if isinstance(expr, sp.Mul):
            factors = [self(arg) for arg in expr.args]
            return _einsum(factors, _union(factors))
        if isinstance(expr, sp.Pow):
            base, exponent = self(expr.base), self(expr.exp)
            axes = _union([base, exponent])
            return _Tensor(base.aligned(axes) ** exponent.aligned(axes), axes)
        if type(expr) in _ELEMENTWISE:
            (arg,) = expr.args
            inner = self(arg)
            return _Tensor(_ELEMENTWISE[type(expr)](inner.value), inner.axes)
        raise ValueError(f"no JAX translation for {type(expr).__name__}: {expr}")

    def indexed(self, expr: sp.Indexed) -> _Tensor:
        name = str(expr.base)
        if name not in self.arrays:
            raise ValueError(f"no array bound to {name}")
        value = self.arrays[name]
        axes: list[sp.Symbol] = []
        index: list = []
        for idx in expr.indices:
            if idx.is_Integer:
                index.append(int(idx))
            elif isinstance(idx, sp.Symbol) and idx in self.ranges and idx not in axes:
                index.append(slice(None))
                axes.append(idx)
            else:
                raise ValueError(f"unsupported index {idx} in {expr}")
        return _Tensor(value[tuple(index)], tuple(axes))

    def sum(self, expr: sp.Sum) -> _Tensor:
        """Sum over one or several indices: one einsum contracting all of them."""
        body, bound = expr.function, []
        for x, lower, upper in expr.limits:
            if lower != 0:
                raise ValueError(f"sums must start at 0: {expr}")
            if x in self.ranges:  # an inner sum re-binds an outer index: rename it
                fresh = sp.Dummy(str(x), integer=True, nonnegative=True)
                x, body = fresh, body.xreplace({x: fresh})
            self.ranges[x] = self.scalar(upper) + 1
            bound.append(x)
        try:
            factors = [self(f) for f in sp.Mul.make_args(body)]
            sizes = {x: self.ranges[x] for x in bound}
        finally:
            for x in bound:
                del self.ranges[x]
        keep = tuple(a for a in _union(factors) if a not in bound)
        result = _einsum(factors, keep)
        copies = 1  # indices the summand does not depend on contribute n identical terms
        for x in bound:
            if not any(x in f.axes for f in factors):
                copies *= sizes[x]
        return _Tensor(result.value * copies, keep) if copies != 1 else result


def compile_expression(
    expr: sp.Expr,
    free: tuple[sp.Symbol, ...] = (),
) -> Callable[[Mapping[str, jnp.ndarray]], jnp.ndarray]:
    """A jnp function of the parameter arrays that evaluates `expr`.

    `free` lists the expression's free index symbols; the returned array has one axis
    per free index, in that order (e.g. ``(S.tau, S.m)`` gives a ``(T, d_e)`` gradient).
    The function takes ``{tensor name: array}`` (names as in `theory.symbols`, e.g.
    ``"W_q"``); sizes are read from the arrays' shapes.
    """

    def evaluate(arrays: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        sizes: dict[sp.Symbol, int] = {}
        for name, array in arrays.items():
            for size, n in zip(S.AXES[name], array.shape, strict=True):
                if sizes.setdefault(size, n) != n:
                    raise ValueError(f"inconsistent size {size}: {sizes[size]} vs {n}")
        evaluator = Evaluator(arrays, sizes)
        for x in free:
            evaluator.ranges[x] = evaluator.scalar(S.FREE_SIZES[x])
        result = evaluator(expr)
        shape = [evaluator.ranges[x] for x in free]
        return jnp.broadcast_to(result.aligned(free), shape)

    return evaluate
