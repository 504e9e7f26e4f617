"""Integrated Gradients for the §1 model (docs/theory.md §8.6), three ways, by Gauss-Legendre quadrature.

The path moves the word positions from a baseline b_t to e_t with `[CLS]` fixed (b_0 = e_0):
e(lambda) = b + lambda (e - b), and IG_t = int_0^1 <grad_{e_t} f(e(lambda)), e_t - b_t> dlambda.

* `integrated_gradients`: the truth, `jax.grad` of the true model at each node;
* `derived_integrated_gradients`: the same integral of the SymPy-derived gradient
  (`theory.derivations.derive_gradient`, compiled by `numerics.compile`);
* `statement_integrated_gradients`: the §8.6 one-dimensional integrand as typed in
  `theory.related.saliency`, compiled the same way.

All three integrate with the same `order`-point Gauss-Legendre rule on [0, 1]. The integrand
is analytic in lambda (softmax of affine scores), so the rule converges geometrically;
`ORDER` = 64 is converged to float64 rounding at the paper's init (tests and the
`saliency.ig_quadrature_converged` claim compare it with twice as many nodes).
Baselines: ``zero`` (b_t = 0, which also removes the positional encoding) and ``unk``
(b_t = omega_UNK + p_t: the all-UNK document).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.compile import compile_expression
from attnverify.numerics.quantities import symbol_arrays
from jaxtyping import Array, Float, Int

from attnverify.errors import InputError
from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

# SymPy's side, loaded when a form is first compiled (`attnverify.lazy`).
S = lazy_module("attnverify.theory.symbols")
derivations = lazy_module("attnverify.theory.derivations")
symbolic = lazy_module("attnverify.theory.model")
ts = lazy_module("attnverify.theory.related.saliency")

ORDER = 64  # Gauss-Legendre nodes (converged: see the module docstring)
#: `refined`: the gap to completeness accepted, relative to the larger of |f(e) - f(b)| and max |IG|,
#: and the most nodes tried.
COMPLETENESS, MAX_ORDER = 1e-9, 1024
BASELINES = ("zero", "unk")

#: ``(params, e) -> (T, d_e)`` gradient of the explained output, or ``(params, e, b, lambda) -> (T,)``
#: per-token integrand.
Gradient = Callable[[nm.Params, jnp.ndarray], jnp.ndarray]


def check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
        raise InputError(f"quadrature order must be a positive integer, got {order!r}")


def check_baseline(kind: str) -> None:
    if kind not in BASELINES:
        raise InputError(f"unknown IG baseline {kind!r} (known: {', '.join(BASELINES)})")


def gauss_legendre(order: int, dtype=jnp.float64) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Nodes and weights of the `order`-point Gauss-Legendre rule on [0, 1] (exact for
    polynomials of degree <= 2 order - 1)."""
    check_order(order)
    x, w = np.polynomial.legendre.leggauss(int(order))
    return jnp.asarray((x + 1) / 2, dtype), jnp.asarray(w / 2, dtype)


def baseline(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, kind: str) -> Float[Array, "T d_e"]:
    """The baseline embeddings b: row 0 is e_0 ([CLS] fixed); rows t >= 1 are 0 (``zero``) or
    omega_UNK + p_t (``unk``)."""
    check_baseline(kind)
    e = nm.embed(params, tokens, spec)
    if kind == "zero":
        rest = jnp.zeros_like(e)
    else:
        rest = nm.embed(params, jnp.full_like(tokens, nm.UNK), spec)
    return rest.at[0].set(e[0])


#: Quadrature nodes whose integrand is evaluated at once (`jax.lax.map`'s batch): the integrand's intermediates are
#: held for this many nodes, not for all of them. With every node at once, the deep scorer's SymPy-derived gradient
#: held 22 GB at 128 nodes for a sweep block of 128 draws; 4 at a time, 1.8 GB (`verify saliency.ig_derived.zero
#: --scorer deep --trials 128`). On the paper's model the time is the same.
NODE_BATCH = 4


def _integrate(step: Callable[[jnp.ndarray], jnp.ndarray], order: int, dtype) -> jnp.ndarray:
    """sum_q w_q step(lambda_q): the quadrature of a per-token integrand, NODE_BATCH nodes at a time."""
    nodes, weights = gauss_legendre(order, dtype)
    return jnp.einsum("q,qt->t", weights, jax.lax.map(step, nodes, batch_size=min(NODE_BATCH, order)))


def ig_of_gradient(gradient: Gradient, params: nm.Params, e: Float[Array, "T d_e"],
                   b: Float[Array, "T d_e"], order: int = ORDER) -> Float[Array, " T"]:
    """IG_t = sum_q w_q <gradient(e(lambda_q))_t, e_t - b_t> (row 0 is 0: [CLS] does not move)."""
    def step(lam):
        return jnp.sum(gradient(params, b + lam * (e - b)) * (e - b), axis=1)

    return _integrate(step, order, e.dtype)


def refined(ig_at: Callable[[int], jnp.ndarray], target: float) -> tuple[np.ndarray | None, int, str | None]:
    """``(IG, nodes, reason)``: IG with ORDER nodes, doubled until sum_t IG_t = f(e) - f(b) (`target`) to
    COMPLETENESS, at most MAX_ORDER; past it IG is None and `reason` says why. At the paper's init 64
    nodes suffice; at init scale 30, where attention sharpens along the path, they left IG 8.5 % off and
    its sum 17 % off f(e) - f(b), with no warning. Where f(b) or the gradient on the path is not
    finite (a plugin's model undefined at the baseline), IG is None and `reason` says so: the other
    explanations of the text stay defined."""
    if not np.isfinite(target):
        return None, ORDER, ("Integrated Gradients is undefined: f(e) - f(b) is not finite (the model is undefined "
                             "or overflows at the baseline, or at the text)")
    order = ORDER
    while True:
        ig = np.asarray(ig_at(order), np.float64)
        if not np.all(np.isfinite(ig)):
            return None, order, ("Integrated Gradients is undefined: the gradient is NaN or infinite on the straight "
                                 "path from the baseline to the text")
        scale = max(abs(target), float(np.max(np.abs(ig))), np.finfo(np.float64).tiny)
        gap = abs(float(ig.sum()) - target) / scale
        if gap <= COMPLETENESS:
            return ig, order, None
        if order >= MAX_ORDER:
            return None, order, (f"Integrated Gradients did not converge: with {order} Gauss-Legendre nodes their sum "
                                 f"misses f(e) - f(b) by {gap:.2g} of it")
        order *= 2


@functools.partial(jax.jit, static_argnames=("spec", "kind", "order"))
def integrated_gradients(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *,
                         kind: str = "zero", order: int = ORDER) -> Float[Array, " T"]:
    """IG of the true model (`jax.grad` on the straight path) at every position."""
    e, b = nm.embed(params, tokens, spec), baseline(params, tokens, spec, kind)
    return ig_of_gradient(lambda p, x: nm.output_gradient(p, x, spec), params, e, b, order)


@functools.lru_cache(maxsize=32)
def _derived_gradient(spec: ModelSpec) -> Gradient:
    evaluate = compile_expression(derivations.derive_gradient(spec).gradient, (S.tau, S.m))
    return lambda params, e: evaluate(symbol_arrays(params, e, spec))


@functools.partial(jax.jit, static_argnames=("spec", "kind", "order"))
def derived_integrated_gradients(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *,
                                 kind: str = "zero", order: int = ORDER) -> Float[Array, " T"]:
    """IG with the SymPy-derived gradient (sympy.diff of the forward expression, compiled)."""
    e, b = nm.embed(params, tokens, spec), baseline(params, tokens, spec, kind)
    return ig_of_gradient(_derived_gradient(spec), params, e, b, order)


@functools.lru_cache(maxsize=32)
def _statement_integrand(spec: ModelSpec, wrong: bool = False):
    model = symbolic.SymbolicModel(spec)
    statement = ts.ig_integrand_without_score_term if wrong else ts.ig_integrand_statement
    evaluate = compile_expression(statement(model), (S.tau,))

    def integrand(params, e, b, lam):
        # gamma^* may be any per-head constant: the max over both ends of the path keeps exp <= 1.
        ends = jnp.concatenate([nm.scores(params, e, spec), nm.scores(params, b, spec)], axis=1)
        arrays = {**symbol_arrays(params, e, spec), "e_b": b, "lambda": lam,
                  "gamma^*": jax.lax.stop_gradient(jnp.max(ends, axis=1))}
        return evaluate(arrays)

    return integrand


@functools.partial(jax.jit, static_argnames=("spec", "kind", "order", "wrong"))
def statement_integrated_gradients(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *,
                                   kind: str = "zero", order: int = ORDER, wrong: bool = False
                                   ) -> Float[Array, " T"]:
    """IG from the §8.6 one-dimensional integrand as stated (`wrong`: the score term dropped).
    Only positions t >= 1 are meaningful (the statement is for word positions)."""
    e, b = nm.embed(params, tokens, spec), baseline(params, tokens, spec, kind)
    integrand = _statement_integrand(spec, wrong)
    return _integrate(lambda lam: integrand(params, e, b, lam), order, e.dtype)


@functools.partial(jax.jit, static_argnames=("spec", "kind"))
def output_change(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *, kind: str = "zero") -> jnp.ndarray:
    """f(xi) - f(baseline): what the attributions of IG add up to (completeness)."""
    e, b = nm.embed(params, tokens, spec), baseline(params, tokens, spec, kind)
    return nm.explained_output(params, e, spec) - nm.explained_output(params, b, spec)


@functools.partial(jax.jit, static_argnames=("spec", "kind", "order"))
def completeness_gap(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *, kind: str = "zero",
                     order: int = ORDER) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(sum_{t >= 1} IG_t, f(xi) - f(baseline)): equal up to quadrature error."""
    ig = integrated_gradients(params, tokens, spec, kind=kind, order=order)
    return jnp.sum(ig[1:]), output_change(params, tokens, spec, kind=kind)


# -- check 34: which saliency agrees with what ---------------------------------------------------
#: The saliency methods compared with attention (Bastings & Filippova; docs/theory.md §8.7, check 34).
SALIENCY = ("occlusion", "gxi_detached", "gxi_full", "ig_zero", "ig_unk")
#: Attention-based importances compared with them.
ATTENTION = ("alpha", "alpha_abs_s", "alpha_avg_abs_s")


@functools.partial(jax.jit, static_argnames=("spec",))
def occlusion(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, " T-1"]:
    """f(xi) - f(xi with position t replaced in place by UNK), t = 1..T-1."""
    def out(x):
        return nm.explained_output(params, nm.embed(params, x, spec), spec)

    replaced = jax.vmap(lambda t: out(tokens.at[t].set(nm.UNK)))(jnp.arange(1, tokens.shape[0]))
    return out(tokens) - replaced


@functools.partial(jax.jit, static_argnames=("spec", "order"))
def importances(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *, order: int = ORDER
                ) -> dict[str, Float[Array, " T-1"]]:
    """Per-token importances at positions 1..T-1: the signed saliency methods of `SALIENCY`,
    attention alpha (head mean), two multi-head readings of alpha_t |s_t| (per head,
    1/K sum_i alpha_t^(i) |s_t^(i)|; and alpha-avg_t |s-avg_t| with s-avg_t = 1/K sum_i s_t^(i)),
    and the sensitivity G-l2 = ||grad_{e_t} f||."""
    from attnverify.numerics.explanations import l2_norm  # (explanations imports this module)
    from attnverify.numerics.related import jain_wallace as njw  # J&W's detached / full gradient

    e = nm.embed(params, tokens, spec)
    g_full = njw.full_gradient(params, e, spec)
    alpha = nm.attention(params, e, spec)
    s = nm.readouts(params, e, spec)[:, :, spec.explained_class]
    return {
        "occlusion": occlusion(params, tokens, spec),
        "gxi_detached": jnp.sum(e * njw.detached_gradient(params, e, spec), axis=1)[1:],
        "gxi_full": jnp.sum(e * g_full, axis=1)[1:],
        "ig_zero": integrated_gradients(params, tokens, spec, kind="zero", order=order)[1:],
        "ig_unk": integrated_gradients(params, tokens, spec, kind="unk", order=order)[1:],
        "alpha": alpha.mean(axis=0)[1:],
        "alpha_abs_s": jnp.mean(alpha * jnp.abs(s), axis=0)[1:],
        "alpha_avg_abs_s": (alpha.mean(axis=0) * jnp.abs(s.mean(axis=0)))[1:],
        "grad_l2": l2_norm(g_full)[1:],
    }


def tau(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Kendall tau-b between the magnitudes |x| and |y| (which tokens matter, not their sign)."""
    from attnverify.numerics.related.kendall import kendall_tau_b

    return kendall_tau_b(jnp.abs(x), jnp.abs(y))[0]


def agreement(imp: dict[str, jnp.ndarray]) -> dict[str, jnp.ndarray]:
    """Mean tau-b among the saliency pairs (key ``saliency``), and of each attention-based
    importance (``alpha``, ``alpha_abs_s``, ``alpha_avg_abs_s``) with each saliency method. An
    undefined tau-b (a constant importance) makes its mean NaN, for the sweep to count."""
    pairs = [(a, b) for j, a in enumerate(SALIENCY) for b in SALIENCY[j + 1:]]
    out = {"saliency": jnp.mean(jnp.stack([tau(imp[a], imp[b]) for a, b in pairs]))}
    for name in ATTENTION:
        out[name] = jnp.mean(jnp.stack([tau(imp[name], imp[m]) for m in SALIENCY]))
    return out


# -- check 35: sensitivity vs saliency -------------------------------------------------------------
def plant(params: nm.Params, tokens: Int[Array, " T"], positions: int, factor: float) -> nm.Params:
    """The model with the embedding rows of the words at positions 1..`positions` scaled by
    `factor` (tokens with a large ||e||). A word at two of those positions is scaled once
    (`.at[rows].multiply` would scale it once per occurrence: 16x for a repeated word)."""
    chosen = jnp.zeros(params.embedding.shape[0], bool).at[tokens[1:positions + 1]].set(True)
    return params._replace(embedding=params.embedding * jnp.where(chosen, factor, 1.0)[:, None].astype(
        params.embedding.dtype))


@functools.partial(jax.jit, static_argnames=("spec",))
def sensitivity_saliency_tau(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec) -> jnp.ndarray:
    """tau-b(G-l2, |G x I|) over positions 1..T-1 (sensitivity vs saliency)."""
    e = nm.embed(params, tokens, spec)
    g = nm.output_gradient(params, e, spec)
    return tau(jnp.sqrt(jnp.sum(g * g, axis=1))[1:], jnp.sum(e * g, axis=1)[1:])
