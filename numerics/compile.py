"""Compile index-level SymPy expressions to JAX without unrolling the sums.

`sympy.lambdify` would unroll ``Sum`` over ``range(T)`` at trace time and needs explicit
sizes (``docs/theory.md §10``). Here every sub-expression is evaluated to an array whose
axes are named by the free index symbols it depends on; a ``Sum`` over a product becomes
one `jnp.einsum` that contracts the summed index, so the compiled code is a handful of
vectorised reductions whatever T is. The result is an ordinary jnp function: it can be
jitted, vmapped and differentiated.

What compiles (anything the SymPy layer writes over the model's index sums): sums over
integer ranges (limits may depend on outer indices: the range becomes a mask), products,
powers and square roots, ``exp``, ``log``, ``tanh`` (and ``sinh``, ``cosh``, ``sin``,
``cos``), ``Abs``, ``sign``, ``Heaviside``, ``Max``/``Min`` (ReLU), ``Piecewise`` with
conditions built from relations, ``And``, ``Or`` and ``Not`` (range conditions), and
``KroneckerDelta``. An entry is read at any integer expression of the indices; a read
outside an array's axis gives NaN, so an unguarded one cannot pass unseen (a ``Piecewise``
branch that its condition rules out is never selected). Anything else is refused before
tracing by a `CompileError` that names the node (`unsupported`).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from attnverify.errors import UserCodeError
from attnverify.lazy import lazy_module
from attnverify.validate import shortened

sp = lazy_module("sympy")
S = lazy_module("attnverify.theory.symbols")


@functools.cache
def elementwise_functions() -> dict[type, Callable]:
    """SymPy function -> jnp function. The tables are built on first use, so importing this
    module loads no SymPy (`attnverify.lazy`)."""
    return {
        sp.exp: jnp.exp,
        sp.log: jnp.log,
        sp.tanh: jnp.tanh,
        sp.sinh: jnp.sinh,
        sp.cosh: jnp.cosh,
        sp.sin: jnp.sin,
        sp.cos: jnp.cos,
        sp.Abs: jnp.abs,
        sp.sign: jnp.sign,
    }


@functools.cache
def relation_functions() -> dict[type, Callable]:
    return {
        sp.StrictLessThan: lambda a, b: a < b,
        sp.LessThan: lambda a, b: a <= b,
        sp.StrictGreaterThan: lambda a, b: a > b,
        sp.GreaterThan: lambda a, b: a >= b,
        sp.Equality: lambda a, b: a == b,
        sp.Unequality: lambda a, b: a != b,
    }


@functools.cache
def _connectives() -> dict[type, Callable]:
    return {
        sp.And: lambda xs: _reduce(np.logical_and, jnp.logical_and, xs),
        sp.Or: lambda xs: _reduce(np.logical_or, jnp.logical_or, xs),
    }


def _reduce(np_op, jnp_op, values):
    total = values[0]
    for value in values[1:]:
        both_static = isinstance(total, np.ndarray) and isinstance(value, np.ndarray)
        total = (np_op if both_static else jnp_op)(total, value)
    return total


#: The most values of a summation index the compiled program holds as an array (for a mask, a
#: condition on the index, or the index in a formula): a user's Sum up to 10**9 with such a use would
#: need gigabytes per array. A sum that only sets an einsum axis builds no such array, at any size.
MAX_RANGE = 2**24


class CompileError(UserCodeError):
    """An expression the compiler cannot translate (one line, naming the node). Only a user's
    expression (a plugin's model, and what SymPy derives from it) can fail to compile: found while
    a sweep traces it, it is refused as the user's code is (`errors.UserCodeError`), in one line."""


def _describe(node: sp.Basic) -> str:
    text = sp.sstr(node)
    return f"{type(node).__name__} ({shortened(text, 80)})"


def unsupported(expr: sp.Basic) -> str | None:
    """The first node of `expr` that the compiler cannot translate, in one line (its type
    and a short rendering); None when every node is supported. Nothing is traced."""
    stack = [sp.sympify(expr)]
    while stack:
        node = stack.pop()
        if isinstance(node, (sp.Symbol, sp.Number, sp.NumberSymbol, sp.Dummy)) or node in (sp.true, sp.false):
            continue
        if isinstance(node, sp.Indexed):
            stack.extend(node.indices)
        elif isinstance(node, sp.Sum):
            stack.append(node.function)
            stack.extend(bound for limit in node.limits for bound in limit[1:])
        elif isinstance(node, sp.Piecewise):
            for value, condition in node.args:
                stack.extend((value, condition))
        elif isinstance(node, sp.Heaviside):
            stack.append(node.args[0])
        elif isinstance(node, (sp.Add, sp.Mul, sp.Pow, sp.KroneckerDelta, sp.Max, sp.Min, sp.Not,
                               *elementwise_functions(), *relation_functions(), *_connectives())):
            stack.extend(node.args)
        else:
            return _describe(node)
    return None


def check_compilable(expr: sp.Basic) -> None:
    """Raise a one-line `CompileError` naming the first node `expr` cannot compile."""
    node = unsupported(expr)
    if node is not None:
        raise CompileError(f"cannot compile {node}: no JAX translation for this node")


@dataclass(frozen=True)
class Tensor:
    """An array together with the index symbol that names each of its axes."""

    value: jnp.ndarray
    axes: tuple[sp.Symbol, ...]

    def aligned(self, axes: tuple[sp.Symbol, ...]) -> jnp.ndarray:
        """The value with its axes put in the order of `axes`, size 1 where absent."""
        own = [x for x in axes if x in self.axes]
        value = jnp.transpose(self.value, [self.axes.index(x) for x in own])
        return jnp.reshape(value, [value.shape[own.index(x)] if x in own else 1 for x in axes])


@dataclass(frozen=True)
class _Static:
    """An integer or boolean numpy array (indices, limits, conditions on indices), axes named."""

    value: np.ndarray
    axes: tuple[sp.Symbol, ...]

    def aligned(self, axes: tuple[sp.Symbol, ...]) -> np.ndarray:
        own = [x for x in axes if x in self.axes]
        value = np.transpose(self.value, [self.axes.index(x) for x in own])
        return np.reshape(value, [value.shape[own.index(x)] if x in own else 1 for x in axes])


def union_axes(tensors) -> tuple[sp.Symbol, ...]:
    axes: list[sp.Symbol] = []
    for tensor in tensors:
        axes.extend(x for x in tensor.axes if x not in axes)
    return tuple(axes)


def contract(tensors: list[Tensor], keep: tuple[sp.Symbol, ...]) -> Tensor:
    axes = union_axes(tensors)
    if len(axes) > len(string.ascii_letters):
        raise CompileError("too many index symbols in one product")
    letter = dict(zip(axes, string.ascii_letters, strict=False))
    inputs = ",".join("".join(letter[x] for x in t.axes) for t in tensors)
    output = "".join(letter[x] for x in keep)
    value = jnp.einsum(f"{inputs}->{output}", *[t.value for t in tensors], optimize=True)
    return Tensor(value, keep)


class Evaluator:
    """Evaluates an index-level SymPy expression on named arrays, sums as `jnp.einsum`.

    arrays: ``{IndexedBase name: array}``; sizes: ``{size symbol: int}`` for the summation
    limits (T, K, ...). Free indices of the expression get their range from ``ranges``
    (``{index symbol: length}``, set by the caller). Calling it returns a tensor whose
    ``aligned(indices)`` gives the value with its axes in the order asked for. Common
    subexpressions are evaluated once (memoised per expression and index ranges).
    """

    def __init__(self, arrays: Mapping[str, jnp.ndarray], sizes: Mapping[sp.Symbol, int]):
        self.arrays = arrays
        self.sizes = dict(sizes)
        self.ranges: dict[sp.Symbol, int] = {}
        self._memo: dict = {}
        self._free: dict = {}

    def scalar(self, expr: sp.Expr) -> int:
        value = sp.sympify(expr).subs(self.sizes)
        if not value.is_Integer:
            raise CompileError(f"cannot resolve size {expr}")
        return int(value)

    def values_of(self, index: sp.Symbol) -> np.ndarray:
        """The values 0..n-1 of a bound index, as an array (for a mask, a condition, or the index
        itself in a formula). A sum whose range only sets an einsum axis needs none of them."""
        n = self.ranges[index]
        if n > MAX_RANGE:
            raise CompileError(f"the sum over {index} runs up to {n - 1}, and its values would be held as an array "
                               f"of {n} (more than {MAX_RANGE}, 2**24)")
        return np.arange(n)

    # -- integer and boolean expressions of the indices, evaluated statically ------------------
    def static(self, expr: sp.Basic) -> _Static | None:
        """`expr` as a numpy array over its index axes when it is an integer (or boolean)
        expression of indices and sizes only; None otherwise."""
        if isinstance(expr, sp.Integer):
            return _Static(np.asarray(int(expr)), ())
        if expr in (sp.true, sp.false):
            return _Static(np.asarray(bool(expr)), ())
        if isinstance(expr, sp.Symbol):
            if expr in self.ranges:
                return _Static(self.values_of(expr), (expr,))
            if expr in self.sizes:
                return _Static(np.asarray(int(self.sizes[expr])), ())
            return None
        if isinstance(expr, (sp.Add, sp.Mul, sp.Max, sp.Min, *relation_functions(), *_connectives(), sp.Not,
                             sp.KroneckerDelta)):
            parts = [self.static(arg) for arg in expr.args]
            if any(p is None for p in parts):
                return None
            axes = union_axes(parts)
            values = [p.aligned(axes) for p in parts]
            if isinstance(expr, sp.Add):
                return _Static(sum(values[1:], values[0]), axes)
            if isinstance(expr, sp.Mul):
                return _Static(np.prod(np.broadcast_arrays(*values), axis=0), axes)
            if isinstance(expr, sp.Max):
                return _Static(np.maximum.reduce(np.broadcast_arrays(*values)), axes)
            if isinstance(expr, sp.Min):
                return _Static(np.minimum.reduce(np.broadcast_arrays(*values)), axes)
            if isinstance(expr, sp.Not):
                return _Static(np.logical_not(values[0]), axes)
            if isinstance(expr, sp.KroneckerDelta):
                return _Static(values[0] == values[1], axes)
            if type(expr) in relation_functions():
                return _Static(np.asarray(relation_functions()[type(expr)](*values)), axes)
            return _Static(np.asarray(_connectives()[type(expr)](values)), axes)
        return None

    def _index(self, expr: sp.Expr) -> _Static:
        found = self.static(expr)
        if found is None or found.value.dtype == bool:
            raise CompileError(f"index {expr} is not an integer expression of the indices and sizes")
        return found

    # -- values ---------------------------------------------------------------------------------
    def key(self, expr: sp.Expr) -> tuple:
        """What a node's value depends on: the node and the current ranges of its free symbols."""
        free = self._free.get(expr)
        if free is None:
            free = self._free[expr] = tuple(sorted(expr.free_symbols, key=str))
        return (expr, tuple((x, self.ranges.get(x)) for x in free))

    def __call__(self, expr: sp.Expr) -> Tensor:
        key = self.key(expr)
        if key not in self._memo:
            self._memo[key] = self._evaluate(expr)
        return self._memo[key]

    def _evaluate(self, expr: sp.Expr) -> Tensor:
        if isinstance(expr, sp.Sum):
            return self.sum(expr)
        if isinstance(expr, sp.Indexed):
            return self.indexed(expr)
        if expr in (sp.true, sp.false):
            return Tensor(jnp.asarray(bool(expr)), ())
        if expr.is_Number or expr.is_NumberSymbol:
            return Tensor(jnp.asarray(float(expr)), ())
        if isinstance(expr, sp.Symbol):
            if str(expr) in self.arrays:  # a scalar tensor, e.g. the logit shift z^* or a constant
                return Tensor(self.arrays[str(expr)], ())
            if expr in self.ranges:
                return Tensor(jnp.asarray(self.values_of(expr)), (expr,))
            if expr in self.sizes:
                return Tensor(jnp.asarray(float(self.sizes[expr])), ())
            raise CompileError(f"unbound symbol {expr} (no array, size or index range for it)")
        if isinstance(expr, (sp.KroneckerDelta, *relation_functions(), *_connectives(), sp.Not)):
            return self.condition(expr)
        if isinstance(expr, sp.Add):
            terms = [self(arg) for arg in expr.args]
            axes = union_axes(terms)
            total = terms[0].aligned(axes)
            for term in terms[1:]:
                total = total + term.aligned(axes)
            return Tensor(total, axes)
        if isinstance(expr, sp.Mul):
            factors = [self(arg) for arg in expr.args]
            return contract(factors, union_axes(factors))
        if isinstance(expr, sp.Pow):
            base, exponent = self(expr.base), expr.exp
            if exponent.is_Integer:
                return Tensor(base.value ** int(exponent), base.axes)
            exp = self(exponent)
            axes = union_axes([base, exp])
            return Tensor(base.aligned(axes) ** exp.aligned(axes), axes)
        if isinstance(expr, (sp.Max, sp.Min)):
            parts = [self(arg) for arg in expr.args]
            axes = union_axes(parts)
            op = jnp.maximum if isinstance(expr, sp.Max) else jnp.minimum
            total = parts[0].aligned(axes)
            for part in parts[1:]:
                total = op(total, part.aligned(axes))
            return Tensor(total, axes)
        if isinstance(expr, sp.Heaviside):
            inner = self(expr.args[0])
            at_zero = float(expr.args[1]) if len(expr.args) > 1 else 0.5  # SymPy's H(0) = 1/2
            return Tensor(jnp.heaviside(inner.value, at_zero), inner.axes)
        if isinstance(expr, sp.Piecewise):
            return self.piecewise(expr)
        if type(expr) in elementwise_functions():
            (arg,) = expr.args
            inner = self(arg)
            return Tensor(elementwise_functions()[type(expr)](inner.value), inner.axes)
        raise CompileError(f"cannot compile {_describe(expr)}: no JAX translation for this node")

    def condition(self, expr: sp.Basic) -> Tensor:
        """A relation, delta or connective: 1.0 / 0.0 (a delta) or a boolean tensor."""
        found = self.static(expr)
        if found is not None:
            if isinstance(expr, sp.KroneckerDelta):
                return Tensor(jnp.where(jnp.asarray(found.value), 1.0, 0.0), found.axes)
            return Tensor(jnp.asarray(found.value), found.axes)
        parts = [self(arg) for arg in expr.args]
        axes = union_axes(parts)
        values = [p.aligned(axes) for p in parts]
        if isinstance(expr, sp.KroneckerDelta):
            return Tensor(jnp.where(values[0] == values[1], 1.0, 0.0), axes)
        if isinstance(expr, sp.Not):
            return Tensor(jnp.logical_not(values[0]), axes)
        if type(expr) in relation_functions():
            return Tensor(relation_functions()[type(expr)](*values), axes)
        return Tensor(_connectives()[type(expr)](values), axes)

    def piecewise(self, expr: sp.Piecewise) -> Tensor:
        """The first piece whose condition holds, by `jnp.where` (NaN where none does)."""
        pieces = [(self(value), self(condition)) for value, condition in expr.args]
        axes = union_axes([t for piece in pieces for t in piece])
        result = jnp.asarray(jnp.nan)
        for value, condition in reversed(pieces):  # where() broadcasts over every piece's axes
            result = jnp.where(condition.aligned(axes), value.aligned(axes), result)
        return Tensor(result, axes)

    def indexed(self, expr: sp.Indexed) -> Tensor:
        """An entry read at its indices: a slice where an index is a bound or free index
        symbol, a gather otherwise; NaN where an index falls outside the array's axis."""
        name = str(expr.base)
        if name not in self.arrays:
            raise CompileError(f"no array bound to {name}")
        value = self.arrays[name]
        if value.ndim != len(expr.indices):
            raise CompileError(f"{expr} has {len(expr.indices)} indices, the array {name} has {value.ndim} axes")
        plain = [isinstance(i, sp.Symbol) and i in self.ranges for i in expr.indices]
        in_range = [i.is_Integer and 0 <= int(i) < n for i, n in zip(expr.indices, value.shape, strict=True)]
        if all(p or c for p, c in zip(plain, in_range, strict=True)) and \
                len({i for p, i in zip(plain, expr.indices, strict=True) if p}) == sum(plain):
            index: list = []
            axes: list[sp.Symbol] = []
            for n, idx in enumerate(expr.indices):
                length = value.shape[n]
                if idx.is_Integer:
                    index.append(int(idx))
                    continue
                want = self.ranges[idx]
                if want > length:  # pad: entries beyond the axis read as NaN
                    pad = [(0, 0)] * value.ndim
                    pad[n] = (0, want - length)
                    value = jnp.pad(value, pad, constant_values=jnp.nan)
                index.append(slice(0, want))
                axes.append(idx)
            return Tensor(value[tuple(index)], tuple(axes))
        parts = [self._index(idx) for idx in expr.indices]
        axes = union_axes(parts)
        grids = np.broadcast_arrays(*[p.aligned(axes) for p in parts])
        valid = np.ones(grids[0].shape, bool)
        for n, grid in enumerate(grids):
            valid &= (grid >= 0) & (grid < value.shape[n])
        clipped = tuple(np.clip(grid, 0, value.shape[n] - 1) for n, grid in enumerate(grids))
        gathered = value[clipped]
        if not valid.all():
            gathered = jnp.where(jnp.asarray(valid), gathered, jnp.nan)
        return Tensor(gathered, axes)

    def sum(self, expr: sp.Sum) -> Tensor:
        """Sum over one or several indices: one einsum contracting all of them. A range
        that does not start at 0, or whose limits depend on outer indices, is a mask."""
        summand = self.summand(expr)
        result = contract(summand.factors + summand.masks, summand.keep)
        return Tensor(result.value * summand.copies, summand.keep) if summand.copies != 1 else result

    def summand(self, expr: sp.Sum, visit: Callable[[sp.Expr], object] | None = None) -> Summand:
        """Bind the sum's indices, evaluate each factor of its body (and apply `visit` to each,
        e.g. `numerics.rounding`'s error bound), and unbind them again."""
        body, bound, masks = expr.function, [], []
        limits = [tuple(limit) for limit in reversed(expr.limits)]  # outermost first
        added: list[sp.Symbol] = []
        try:
            for n, (x, lower, upper) in enumerate(limits):
                lo, hi = self._index(lower), self._index(upper)
                if np.any(hi.value < lo.value - 1):
                    raise CompileError(f"reversed summation range in {_describe(expr)}")
                if x in self.ranges:  # an inner sum re-binds an outer index: rename it
                    fresh = sp.Dummy(str(x), integer=True, nonnegative=True)
                    x, body = fresh, body.xreplace({x: fresh})
                    limits[n + 1:] = [(y, a.xreplace({limits[n][0]: fresh}), b.xreplace({limits[n][0]: fresh}))
                                      for y, a, b in limits[n + 1:]]
                self.ranges[x] = max(int(np.max(hi.value)) + 1, 0)
                added.append(x)
                bound.append(x)
                if lo.axes or hi.axes or int(lo.value) != 0:
                    here = _Static(self.values_of(x), (x,))
                    axes = union_axes([here, lo, hi])
                    inside = (here.aligned(axes) >= lo.aligned(axes)) & (here.aligned(axes) <= hi.aligned(axes))
                    masks.append(Tensor(jnp.where(jnp.asarray(inside), 1.0, 0.0), axes))
            factors = [self(f) for f in sp.Mul.make_args(body)]
            visited = [visit(f) for f in sp.Mul.make_args(body)] if visit is not None else []
            sizes = {x: self.ranges[x] for x in bound}
        finally:
            for x in added:
                del self.ranges[x]
        keep = tuple(a for a in union_axes(factors + masks) if a not in bound)
        copies = 1  # indices the summand does not depend on contribute n identical terms
        for x in bound:
            if not any(x in f.axes for f in factors + masks):
                copies *= sizes[x]
        terms = int(np.prod([sizes[x] for x in bound], dtype=np.int64))
        return Summand(factors=factors, visited=visited, masks=masks, keep=keep, copies=copies, terms=terms)


@dataclass(frozen=True)
class Summand:
    """A sum's body, evaluated with its indices bound (`Evaluator.summand`)."""

    factors: list[Tensor]  # the body's factors' values
    visited: list  # what the caller's `visit` made of each factor (empty without one)
    masks: list[Tensor]  # 1.0 inside the summation range, 0.0 outside (limits that are not 0..n-1)
    keep: tuple[sp.Symbol, ...]  # the axes left after summing
    copies: int  # bound indices the body does not depend on: the sum is this many copies
    terms: int  # the number of terms summed (the product of the bound ranges)


def compile_expression(
    expr: sp.Expr,
    free: tuple[sp.Symbol, ...] = (),
    *,
    axes: Mapping[str, tuple] | None = None,
    ranges: Mapping[sp.Symbol, sp.Expr] | None = None,
) -> Callable[[Mapping[str, jnp.ndarray]], jnp.ndarray]:
    """A jnp function of the parameter arrays that evaluates `expr`.

    `free` lists the expression's free index symbols; the returned array has one axis
    per free index, in that order (e.g. ``(S.tau, S.m)`` gives a ``(T, d_e)`` gradient).
    The range of a free index is its size in `ranges` (``{index: size symbol}``), else in
    ``symbols.FREE_SIZES``. The function takes ``{tensor name: array}`` (names as in
    `theory.symbols`, e.g. ``"W_q"``, or in `axes`: ``{name: axis sizes}`` for tensors
    declared elsewhere, e.g. a plugin's parameters); sizes are read from the arrays' shapes.
    Raises `CompileError` at once (before any tracing) for a node it cannot translate.
    """
    prepared = Prepared.of(expr, free, axes=axes, ranges=ranges)

    def evaluate(arrays: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
        evaluator = prepared.evaluator(Evaluator, arrays)
        return prepared.output(evaluator, evaluator(prepared.expr))

    return evaluate


@dataclass(frozen=True)
class Prepared:
    """An expression checked for compilation, with what it needs to know of its arrays."""

    expr: sp.Expr
    free: tuple[sp.Symbol, ...]
    known_axes: Mapping[str, tuple]
    known_ranges: Mapping[sp.Symbol, sp.Expr]

    @classmethod
    def of(cls, expr, free: tuple = (), *, axes: Mapping[str, tuple] | None = None,
           ranges: Mapping[sp.Symbol, sp.Expr] | None = None) -> Prepared:
        """Raises `CompileError` at once for a node that cannot compile or a free index without a range."""
        expr = sp.sympify(expr)
        check_compilable(expr)
        known_ranges = {**S.FREE_SIZES, **(ranges or {})}
        missing = [x for x in free if x not in known_ranges]
        if missing:
            raise CompileError(f"no range known for the free index {missing[0]}")
        return cls(expr, tuple(free), {**S.AXES, **(axes or {})}, known_ranges)

    def evaluator(self, kind: type, arrays: Mapping[str, jnp.ndarray]) -> Evaluator:
        """An evaluator of class `kind` on `arrays`, sizes read from their shapes, free indices ranged."""
        sizes: dict[sp.Symbol, int] = {}
        for name, array in arrays.items():
            if name not in self.known_axes:
                raise CompileError(f"no axes known for the array {name}")
            if len(self.known_axes[name]) != jnp.ndim(array):
                raise CompileError(f"array {name} has {jnp.ndim(array)} axes, expected {len(self.known_axes[name])}")
            for size, n in zip(self.known_axes[name], jnp.shape(array), strict=True):
                if not isinstance(size, sp.Symbol):
                    continue
                if sizes.setdefault(size, n) != n:
                    raise CompileError(f"inconsistent size {size}: {sizes[size]} vs {n}")
        evaluator = kind(arrays, sizes)
        for x in self.free:
            evaluator.ranges[x] = evaluator.scalar(self.known_ranges[x])
        return evaluator

    def output(self, evaluator: Evaluator, result: Tensor) -> jnp.ndarray:
        """`result` with one axis per free index, in `free`'s order."""
        shape = [evaluator.ranges[x] for x in self.free]
        return jnp.broadcast_to(result.aligned(self.free), shape)
