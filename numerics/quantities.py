"""The three independent computations of Theorem 1's quantities, as jnp functions.

* ``derived_*``: the SymPy derivation (`theory.derivations`), compiled (`numerics.compile`);
* ``paper_*``: the paper's statement (`theory.statements`), compiled the same way;
* ``autodiff_*``: `jax.grad` of the true JAX model (`numerics.model`).

Each function takes ``(params, tokens)`` and is pure, so sweeps can `jit(vmap(...))` it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics.compile import compile_expression
from attnverify.numerics.evaluations import shared

from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

# SymPy's side, loaded when a quantity is first built: a run whose programs are stored builds none.
derivations = lazy_module("attnverify.theory.derivations")
symbolic = lazy_module("attnverify.theory.model")
statements = lazy_module("attnverify.theory.statements")
S = lazy_module("attnverify.theory.symbols")

Quantity = Callable[[nm.Params, jnp.ndarray], jnp.ndarray]


def symbol_arrays(params: nm.Params, e: jnp.ndarray, spec: ModelSpec) -> dict[str, jnp.ndarray]:
    """Bind the SymPy tensor names to arrays. The shifts gamma^* = max_t gamma_t and
    z^* (max(0, z) or max_c z_c) can be any constant (exact); these keep exp finite."""
    arrays = {
        "e": e,
        "W_q": params.W_q,
        "W_k": params.W_k,
        "W_v": params.W_v,
        "W_l": params.W_l,
        "gamma^*": jax.lax.stop_gradient(jnp.max(nm.scores(params, e, spec), axis=1)),
    }
    if spec.biases:
        arrays.update(b_q=params.b_q, b_k=params.b_k, b_v=params.b_v, b_l=params.b_l)
    for name in ("v_score", "U_score"):  # the additive / deep scorer's parameters, when present
        if getattr(params, name) is not None:
            arrays[name] = getattr(params, name)
    if spec.output_link != "logit":
        arrays["z^*"] = jax.lax.stop_gradient(nm.logit_shift(nm.logits(params, e, spec), spec))
    return arrays


def _compiled(expr, free, spec: ModelSpec) -> Quantity:
    evaluate = compile_expression(expr, free)

    def quantity(params: nm.Params, tokens: jnp.ndarray) -> jnp.ndarray:
        e = nm.embed(params, tokens, spec)
        return evaluate(symbol_arrays(params, e, spec))

    return quantity


@functools.lru_cache(maxsize=32)
def theorem1_quantities(spec: ModelSpec) -> dict[str, Quantity]:
    """Named jnp functions ``(params, tokens) -> array`` for the Theorem 1 claims (for a
    plugin spec, from its compiled forward: `numerics.plugin_model`)."""
    if getattr(spec, "plugin", None) is not None:
        from attnverify.numerics.plugin_model import plugin_theorem1_quantities

        return plugin_theorem1_quantities(spec)
    d = derivations.derive_gradient(spec)
    derived = _compiled(d.gradient, (S.tau, S.m), spec)
    paper = shared((spec, "paper"), _compiled(d.paper, (S.tau, S.m), spec))
    cls_term = _compiled(d.cls_term, (S.m,), spec)
    gxi_paper = _compiled(d.gxi_paper, (S.tau,), spec)
    # A deliberately wrong formula (the softmax-Jacobian term dropped): the registry's
    # negative control, which every sweep must report as FAIL.
    detached = _compiled(statements.detached_gradient(symbolic.SymbolicModel(spec)), (S.tau, S.m), spec)

    def autodiff(params, tokens):
        return nm.output_gradient(params, nm.embed(params, tokens, spec), spec)

    def autodiff_gxi(params, tokens):
        e = nm.embed(params, tokens, spec)
        return jnp.sum(e * nm.output_gradient(params, e, spec), axis=1)

    named = {
        "derived": derived,
        "paper": paper,
        "paper_plus_cls_term": lambda p, x: paper(p, x).at[0].add(cls_term(p, x)),
        "paper_without_jacobian": detached,
        "gxi_paper": gxi_paper,
        "autodiff": autodiff,
        "autodiff_gxi": autodiff_gxi,
    }
    return {name: shared((spec, name), quantity) for name, quantity in named.items()}

