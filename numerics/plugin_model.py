"""The true model of a plugin: its SymPy forward, compiled to JAX (`numerics.compile`).

For a `theory.plugin.PluginSpec` there is no hand-written JAX model: the plugin's
forward expression ``SymbolicModel(spec).output()`` compiled to a jnp function *is* the
model, and `jax.grad` of that compiled forward is the autodiff side of every gradient
claim. The same compilation applies to a plain `ModelSpec`, which is how a test shows the
hand-written model (`numerics.model`) and the compiled forward agree.

Parameters: a plugin draw is `PluginParams` (the spec's `Params` plus ``extra``, the
plugin's declared parameters and constants by name). Each declared parameter is drawn
from its own key, folded from the draw's key and the parameter's name, so the built-in
arrays of a draw do not change when a plugin adds a parameter.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.export
import jax.numpy as jnp
import sympy as sp
from attnverify.numerics import model as nm
from attnverify.numerics.compile import compile_expression
from attnverify.numerics.draws import INIT_BOUND, draw_params
from attnverify.theory import statements
from attnverify.theory import symbols as S
from attnverify.theory.derivations import derive_gradient
from attnverify.theory.model import Constant, Parameter, SymbolicModel
from attnverify.theory.plugin import logit_shift_exponents, overridden, shift_exponent, shifts_cancel

from attnverify.errors import warn
from attnverify.spec import ModelSpec
from attnverify.validate import fits_in_memory

PLUGIN_STREAM = 2_000_003  # folded into a draw's key, then the parameter name's CRC-32


class PluginParams(NamedTuple):
    """A draw of a plugin model: the base `Params` and the declared tensors by name."""

    base: nm.Params
    extra: dict[str, jnp.ndarray]


jax.export.register_namedtuple_serialization(PluginParams, serialized_name="attnverify.PluginParams")


def base_params(params: Any) -> nm.Params:
    return params.base if isinstance(params, PluginParams) else params


def extra_params(params: Any) -> dict[str, jnp.ndarray]:
    return params.extra if isinstance(params, PluginParams) else {}


def base_spec(spec: ModelSpec) -> ModelSpec:
    return getattr(spec, "base", spec)


@functools.lru_cache(maxsize=64)
def declarations(spec: ModelSpec) -> tuple[dict[str, Parameter], dict[str, Constant]]:
    """The parameters and constants the model of `spec` declares (none for a plain spec)."""
    return SymbolicModel(spec).declarations()


def size_values(spec: ModelSpec) -> dict[sp.Symbol, int]:
    return {S.T: spec.max_len, S.d_e: spec.d_embed, S.d_att: spec.d_att, S.d_out: spec.d_out,
            S.K: spec.heads, S.C: spec.classes}


def shape_of(parameter: Parameter, spec: ModelSpec) -> tuple[int, ...]:
    sizes = size_values(spec)
    return tuple(int(sizes.get(axis, axis)) for axis in parameter.shape)


def expected_extra_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Shape of every declared tensor: parameters by their axes, constants ``()``."""
    parameters, constants = declarations(spec)
    return {**{n: shape_of(p, spec) for n, p in parameters.items()}, **{n: () for n in constants}}


def extra_axes(spec: ModelSpec) -> dict[str, tuple]:
    """Axis sizes of the declared tensors, for `compile_expression`."""
    parameters, constants = declarations(spec)
    return {**{n: p.shape for n, p in parameters.items()}, **{n: () for n in constants}}


def draw_extra(key, spec: ModelSpec, *, scale: float = 1.0, dtype=jnp.float64) -> dict[str, jnp.ndarray]:
    """The declared parameters of one draw (each by its init) and the constants' values."""
    parameters, constants = declarations(spec)
    shapes = {name: shape_of(p, spec) for name, p in parameters.items()}
    # before any array: a declared size of 10**10 aborted XLA's allocator (a C++ crash, no message)
    fits_in_memory(f"one draw of the plugin's parameters ({', '.join(f'{n} {tuple(s)}' for n, s in shapes.items())})",
                   sum(math.prod(s) for s in shapes.values()) * jnp.dtype(dtype).itemsize)
    root = jax.random.fold_in(key, PLUGIN_STREAM)
    extra = {}
    for name, p in parameters.items():
        k = jax.random.fold_in(root, zlib.crc32(name.encode()) & 0x7FFFFFFF)
        shape = shapes[name]
        if p.init == "normal":
            extra[name] = p.scale * jax.random.normal(k, shape, dtype)
        elif p.init == "uniform":
            bound = INIT_BOUND * scale * p.scale
            extra[name] = jax.random.uniform(k, shape, dtype, -bound, bound)
        else:
            extra[name] = (jnp.zeros if p.init == "zeros" else jnp.ones)(shape, dtype)
    for name, c in constants.items():
        extra[name] = jnp.asarray(c.value, dtype)
    return extra


def draw_plugin_params(key, spec: ModelSpec, *, scale: float = 1.0, dtype=jnp.float64) -> PluginParams:
    """One random model of a plugin spec: the base draw of the same key, plus `draw_extra`."""
    return PluginParams(draw_params(key, base_spec(spec), scale=scale, dtype=dtype),
                        draw_extra(key, spec, scale=scale, dtype=dtype))


def embed(params: Any, tokens: jnp.ndarray, spec: ModelSpec) -> jnp.ndarray:
    """e_t = omega_{xi_t} + p_t, as the built-in model embeds."""
    return nm.embed(base_params(params), tokens, base_spec(spec))


# -- the compiled model ------------------------------------------------------------------------
class CompiledModel(NamedTuple):
    """jnp functions of the symbol arrays ``{name: array}`` for one spec."""

    output: Callable  # the explained output f (scalar)
    score: Callable  # gamma (K, T)
    alpha: Callable  # alpha (K, T)
    logits: Callable  # z_c (C,)
    axes: dict  # the declared tensors' axes (for further compilations)
    uses_logit_shift: bool
    shifts_cancel: bool = True  # the forward is proved free of gamma^* and z^* (`theory.plugin.shifts_cancel`)
    #: A plugin's weight F exp(E_0 - r gamma^*) other than exp(score - gamma^*) (`theory.plugin.
    #: shift_exponent`): E_0 (K, T), r (a number, or a function giving (K,)) and F (None: 1, else a
    #: function giving (K, T)); exponent None: E_0 is the score, r is 1 and F is 1.
    exponent: Callable | None = None
    rate: Callable | float = 1.0
    factor: Callable | None = None
    #: A plugin's own output whose exps hold z^* as exp(E_0 - r z^*) (`theory.plugin.
    #: logit_shift_exponents`): a function giving every E_0 / r, flattened, and the sign of the
    #: rates; None: z^* at the logits' max (sigmoid: max(0, z)), as the built-in links read.
    logit_exponents: Callable | None = None
    logit_rate_sign: int = 1
    #: A plugin's attention weights (K, T) and normalisers (K,), for `_gradient_scale`; None for the
    #: built-in model, whose weights are at most exp(0).
    weight: Callable | None = None
    normaliser: Callable | None = None


@functools.lru_cache(maxsize=32)
def compiled_model(spec: ModelSpec) -> CompiledModel:
    """The forward of `spec`'s SymPy model (plugin or not), compiled (raises `CompileError`)."""
    model = SymbolicModel(spec)
    axes = extra_axes(spec)
    output = model.output()
    free = {S.i: S.K, S.t: S.T, S.c: S.C}
    compiled = CompiledModel(
        output=compile_expression(output, axes=axes),
        score=compile_expression(model.score(S.i, S.t), (S.i, S.t), axes=axes, ranges=free),
        alpha=compile_expression(model.alpha(S.i, S.t), (S.i, S.t), axes=axes, ranges=free),
        logits=compile_expression(model.logit(S.c), (S.c,), axes=axes, ranges=free),
        axes=axes,
        uses_logit_shift=S.logit_shift in output.free_symbols,
    )
    if base_spec(spec) is spec:  # the built-in model: its softmax and output links cancel the shifts
        return compiled
    compiled = compiled._replace(
        weight=compile_expression(model.weight(S.i, S.t), (S.i, S.t), axes=axes, ranges=free),
        normaliser=compile_expression(model.normaliser(S.i), (S.i,), axes=axes, ranges=free))
    if not shifts_cancel(spec):
        return compiled._replace(shifts_cancel=False)
    parts = shift_exponent(spec)
    if parts is not None and not (parts[1:] == (1, 1) and parts[0] == model.score(S.i, S.t)):
        base, rate, factor = parts
        compiled = compiled._replace(
            exponent=compile_expression(base, (S.i, S.t), axes=axes, ranges=free),
            rate=float(rate) if rate.is_Number else compile_expression(rate, (S.i,), axes=axes, ranges=free),
            factor=None if factor == 1 else compile_expression(factor, (S.i, S.t), axes=axes, ranges=free))
    if compiled.uses_logit_shift and "output" in overridden(type(model)):
        compiled = _with_logit_exponents(compiled, logit_shift_exponents(spec), axes)
    return compiled


def _with_logit_exponents(compiled: CompiledModel, parts: tuple | None, axes: dict) -> CompiledModel:
    """`compiled` with z^* read from a plugin's own output (`theory.plugin.logit_shift_exponents`);
    unchanged when z^* enters that output otherwise."""
    if parts is None:
        return compiled
    ratios = [(compile_expression(base, tuple(ranges), axes=axes, ranges=ranges), float(rate))
              for base, rate, ranges in parts]

    def exponents(arrays: dict) -> jnp.ndarray:
        return jnp.concatenate([jnp.ravel(ratio(arrays) / rate) for ratio, rate in ratios])

    return compiled._replace(logit_exponents=exponents, logit_rate_sign=1 if parts[0][1] > 0 else -1)


def _tensor_arrays(params: Any, e: jnp.ndarray) -> dict[str, jnp.ndarray]:
    base = base_params(params)
    arrays = {"e": e, "W_q": base.W_q, "W_k": base.W_k, "W_v": base.W_v, "W_l": base.W_l}
    for name in ("b_q", "b_k", "b_v", "b_l", "v_score", "U_score"):
        if getattr(base, name) is not None:
            arrays[name] = getattr(base, name)
    arrays.update(extra_params(params))
    return arrays


def _gamma_shift(compiled: CompiledModel, arrays: dict) -> jnp.ndarray:
    """Each head's gamma^* where the largest exponent of its weights F exp(E_0 - r gamma^*), over
    the positions F does not zero, is 0: max_t E_0 / r there for r > 0 (the scores' max for the
    built-in weight), min_t for r < 0; 0 where r = 0 or no position is live. Over every position,
    a window (F = 0 at the largest E_0) left every live weight at exp(-Delta / temp), which
    underflowed."""
    if compiled.exponent is None:
        return jnp.max(compiled.score(arrays), axis=1)
    base = compiled.exponent(arrays)
    rate = compiled.rate(arrays) if callable(compiled.rate) else jnp.full(base.shape[:1], compiled.rate, base.dtype)
    rate = jnp.broadcast_to(rate, base.shape[:1])[:, None]
    live = True if compiled.factor is None else compiled.factor(arrays) != 0  # where broadcasts it
    ratio = base / jnp.where(rate == 0, 1, rate)
    largest = jnp.max(jnp.where(live, ratio, -jnp.inf), axis=1)
    smallest = jnp.min(jnp.where(live, ratio, jnp.inf), axis=1)
    shift = jnp.where(rate[:, 0] > 0, largest, jnp.where(rate[:, 0] < 0, smallest, 0))
    return jnp.where(jnp.isinf(shift), 0, shift)  # no live position: any shift


def _shifts(compiled: CompiledModel, arrays: dict, spec: ModelSpec) -> dict[str, jnp.ndarray]:
    """gamma^* where each head's largest weight is exp(0) (`_gamma_shift`), and z^* where the
    output's largest exponent is 0: a plugin's own output's max E_0 / r (min for r < 0:
    `CompiledModel.logit_exponents`), else the logits' max (sigmoid: max(0, z))."""
    shifts = {"gamma^*": jax.lax.stop_gradient(_gamma_shift(compiled, arrays))}
    if compiled.logit_exponents is not None:
        exponents = compiled.logit_rate_sign * compiled.logit_exponents({**arrays, **shifts})
        shifts["z^*"] = jax.lax.stop_gradient(compiled.logit_rate_sign * jnp.max(exponents))
    elif compiled.uses_logit_shift:
        shifts["z^*"] = jax.lax.stop_gradient(nm.logit_shift(compiled.logits({**arrays, **shifts}), spec))
    return shifts


def symbol_arrays(params: Any, e: jnp.ndarray, spec: ModelSpec) -> dict[str, jnp.ndarray]:
    """Bind every SymPy tensor name of `spec`'s model to an array. The shifts gamma^* and
    z^* may be any constants (exact); they are bound where each head's largest weight is exp(0)
    (`_gamma_shift`: the scores' max over t when the weight is exp(score - gamma^*)) and where the
    output's largest exponent is 0 (the logits' max; sigmoid: max(0, z)), so that exp never overflows. A plugin whose
    forward is not proved free of them (`theory.plugin.shifts_cancel`) gets them at 0: the model
    exactly as its expression reads, exp's overflow unguarded (an overflowing draw is NaN/inf,
    and counted)."""
    compiled = compiled_model(spec)
    arrays = _tensor_arrays(params, e)
    if compiled.shifts_cancel:
        arrays.update(_shifts(compiled, arrays, spec))
    else:
        dtype = e.dtype
        arrays["gamma^*"] = jnp.zeros(spec.heads, dtype)
        if compiled.uses_logit_shift:
            arrays["z^*"] = jnp.zeros((), dtype)
    return arrays


def explained_output(params: Any, e: jnp.ndarray, spec: ModelSpec) -> jnp.ndarray:
    """f(e): the compiled forward. Where it is not finite (a log of a negative number, an overflow)
    its gradient is NaN too: ``jax.grad`` of ``log(z)`` is a finite 1/z at z < 0, where the model is
    undefined, and such a draw is no evidence for any statement about the gradient."""
    compiled = compiled_model(spec)
    arrays = symbol_arrays(params, e, spec)
    f = compiled.output(arrays)
    scale = _gradient_scale(compiled, arrays) * jnp.where(jnp.isfinite(f), 1.0, jnp.nan).astype(f.dtype)
    return _gradient_unless_lost(f, jax.lax.stop_gradient(scale))


def _gradient_scale(compiled: CompiledModel, arrays: dict) -> jnp.ndarray:
    """1, or NaN where the gradient would lose terms without a NaN of its own: an attention weight or
    normaliser beyond the square root of the float range, whose square (the quotient rule's
    denominator) overflows in the backward pass, so that the softmax Jacobian's term becomes 0. A
    weight written without gamma^* (``exp(score / temp)``), or with a factor that grows with the
    score (``cosh(score)``), gets there at temp = 0.0012 or a scale of 30; the forward stays exact,
    and the gradient was 4-239x off, and both sides of `thm1.derived` agreed on it (docs/theory.md §10.3).
    Cautious: a weight that large is flagged even where nothing divides by it (a normaliser of 1), and
    gives a NaN gradient there, never a wrong one; an `alpha` overridden alone is not read."""
    if compiled.weight is None:
        return jnp.ones((), arrays["e"].dtype)
    limit = jnp.sqrt(jnp.finfo(arrays["e"].dtype).max)
    largest = jnp.maximum(jnp.max(jnp.abs(compiled.weight(arrays))), jnp.max(jnp.abs(compiled.normaliser(arrays))))
    return jnp.where(largest > limit, jnp.nan, 1.0).astype(arrays["e"].dtype)


@jax.custom_jvp
def _gradient_unless_lost(f: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
    """`f`, whose derivative is multiplied by `scale` (`_gradient_scale`: NaN marks a lost gradient,
    and the forward keeps its exact value)."""
    return f


@_gradient_unless_lost.defjvp
def _gradient_unless_lost_jvp(primals, tangents):
    (f, scale), (tangent, _) = primals, tangents
    return f, tangent * scale


def output_gradient(params: Any, e: jnp.ndarray, spec: ModelSpec) -> jnp.ndarray:
    """nabla_{e_t} f for every position t: `jax.grad` of the compiled forward."""
    return jax.grad(explained_output, argnums=1)(params, e, spec)


def attention(params: Any, e: jnp.ndarray, spec: ModelSpec) -> jnp.ndarray:
    """alpha^(i)_t (K, T), compiled from the model's `alpha`."""
    return compiled_model(spec).alpha(symbol_arrays(params, e, spec))


def model_function(params: Any, spec: ModelSpec) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """The compiled model as ``tokens -> explained output`` (for LIME's generic path)."""

    def f(tokens: jnp.ndarray) -> jnp.ndarray:
        return explained_output(params, embed(params, tokens, spec), spec)

    return f


# -- Theorem 1 quantities of a plugin ---------------------------------------------------------
Quantity = Callable[[Any, jnp.ndarray], jnp.ndarray]


@functools.lru_cache(maxsize=32)
def plugin_theorem1_quantities(spec: ModelSpec) -> dict[str, Quantity]:
    """The keys of `numerics.quantities.theorem1_quantities`, for the model of `spec`:
    the derivation and the paper's statements (in the model's own quantities) compiled,
    and the autodiff sides by `jax.grad` of the compiled forward."""
    d = derive_gradient(spec)
    axes = extra_axes(spec)

    def compiled(expr, free) -> Quantity:
        evaluate = compile_expression(expr, free, axes=axes)

        def quantity(params, tokens):
            return evaluate(symbol_arrays(params, embed(params, tokens, spec), spec))

        return quantity

    derived = compiled(d.gradient, (S.tau, S.m))
    paper = compiled(d.paper, (S.tau, S.m))
    cls_term = compiled(d.cls_term, (S.m,))
    gxi_paper = compiled(d.gxi_paper, (S.tau,))
    detached = compiled(statements.detached_gradient(SymbolicModel(spec)), (S.tau, S.m))

    def autodiff(params, tokens):
        return output_gradient(params, embed(params, tokens, spec), spec)

    def autodiff_gxi(params, tokens):
        e = embed(params, tokens, spec)
        return jnp.sum(e * output_gradient(params, e, spec), axis=1)

    return {
        "derived": derived,
        "paper": paper,
        "paper_plus_cls_term": lambda p, x: paper(p, x).at[0].add(cls_term(p, x)),
        "paper_without_jacobian": detached,
        "gxi_paper": gxi_paper,
        "autodiff": autodiff,
        "autodiff_gxi": autodiff_gxi,
    }


# -- the model file ----------------------------------------------------------------------------
def save_model(path, spec: ModelSpec, params: Any, vocab: list[str]) -> None:
    """A model file of a plugin spec: the base arrays, the declared ones and the plugin's
    description (`numerics.modelfile.save`; ``plugin`` member)."""
    import json

    import numpy as np
    from attnverify.numerics import modelfile

    extra = {name: np.asarray(value) for name, value in extra_params(params).items()}
    plugin = getattr(spec, "plugin", None)
    modelfile.save(path, base_spec(spec), base_params(params), vocab, extra=extra,
                   plugin=json.dumps(plugin.describe()) if plugin is not None else None)


def load_model(path, spec_of: Callable[[ModelSpec], ModelSpec], *, dtype=None):
    """Read a model file for the plugin spec ``spec_of(stored spec)``: a `ModelFile` whose
    spec is that plugin spec and whose params are `PluginParams`. Missing or unexpected
    declared arrays are one-line `InputError`s."""
    import dataclasses

    import numpy as np
    from attnverify.numerics import modelfile

    loaded = modelfile.load(path, dtype=dtype or np.float64,
                            extras=lambda stored: expected_extra_shapes(spec_of(stored)))
    spec = spec_of(loaded.spec)
    _note_another_version(path, loaded.plugin, spec.plugin)
    params = jax.tree_util.tree_map(jnp.asarray, PluginParams(loaded.params, dict(loaded.extra)))
    return dataclasses.replace(loaded, spec=spec, params=params)


def _note_another_version(path, stored: str | None, plugin) -> None:
    """Warn, in one line, when the model file was written by another plugin, or another version of
    this one (another SHA-256), or its record of the plugin cannot be read: the file's own
    parameters and constants are used, whatever the plugin now says. A plugin given as a class (no
    file, no digest) is compared by name."""
    import json

    try:
        record = json.loads(stored) if stored is not None else None
        writer, digest = (record.get("file") or record.get("name"), record.get("sha256"))
    except (ValueError, AttributeError):
        record = writer = digest = None
    used = plugin.path or plugin.name
    if record is None:
        warn(f"{path}: its record of the plugin that wrote it cannot be read; the file's parameters and "
             f"constants are used with {used}")
    elif not plugin.digest:  # a class: no file to compare
        if record.get("name") != plugin.name:
            warn(f"{path}: written by plugin {writer}, used with {plugin.name}; the file's parameters and constants "
                 "are used")
    elif digest != plugin.digest:
        same = writer is not None and Path(str(writer)).name == Path(used).name
        wrote = f"another version of {used}" if same else f"{writer}"
        warn(f"{path}: written by {wrote} (sha256 {str(digest)[:12]}), used with {used} (sha256 "
             f"{plugin.digest[:12]}); the file's parameters and constants are used, not the plugin file's")


def logits(params: Any, e: jnp.ndarray, spec: ModelSpec) -> jnp.ndarray:
    """z_c (C,), compiled from the model's `logit`."""
    return compiled_model(spec).logits(symbol_arrays(params, e, spec))


# -- building blocks of a user's claim -----------------------------------------------------------
def compiled_quantity(spec: ModelSpec, expr: sp.Expr, free: tuple[sp.Symbol, ...] = (S.tau, S.m)) -> Quantity:
    """An index-level expression over the model of `spec` (its own quantities, a plugin's
    parameters and constants included), compiled: ``(params, tokens) -> array`` with one
    axis per free index (default ``(tau, m)``: a (T, d_e) gradient-shaped array)."""
    evaluate = compile_expression(expr, free, axes=extra_axes(spec))

    def quantity(params, tokens):
        return evaluate(symbol_arrays(params, embed(params, tokens, spec), spec))

    return quantity


def autodiff_gradient(spec: ModelSpec) -> Quantity:
    """``(params, tokens) -> (T, d_e)``: `jax.grad` of the compiled forward of `spec`'s model."""

    def quantity(params, tokens):
        return output_gradient(params, embed(params, tokens, spec), spec)

    return quantity
