"""The explained output on many masked documents, by one of three equal evaluation paths.

* ``"generic"`` — any JAX callable ``tokens (T,) -> scalar`` on every perturbed token array
  (`lime_document.perturb`): the reference, O(model) per sample.
* ``"structured"`` — the paper model through word and position tables
  (`lime_structured`): O(K T) per sample, both removal modes.
* ``"ratio"`` — in-place replacement only: each head is a ratio of affine functions of z
  (`lime_ratio`): O(K d) per sample.

Tests prove the three equal to 1e-12 in float64. Samples are processed in chunks of
`chunk_size` (`jax.lax.map(..., batch_size=...)`) so memory stays bounded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics.lime import ratio_form as lime_ratio
from attnverify.numerics.lime import structured as lime_structured
from attnverify.numerics.lime.document import LimeDocument, perturb
from jaxtyping import Array, Float

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

PATHS = ("auto", "generic", "structured", "ratio")
ModelFn = Callable[[jnp.ndarray], jnp.ndarray]


def model_function(params: nm.Params, spec: ModelSpec) -> ModelFn:
    """The true model as ``tokens -> explained output`` (the generic path's callable)."""

    def f(tokens: jnp.ndarray) -> jnp.ndarray:
        return nm.explained_output(params, nm.embed(params, tokens, spec), spec)

    return f


def unavailable(is_params: bool, spec: ModelSpec, removal: str) -> dict[str, str | None]:
    """Why each path cannot run (None where it can), for a Params model or a callable."""
    return {
        "ratio": (
            "a callable model has no tables" if not is_params
            else "the ratio form needs removal='replace'" if removal != "replace"
            else lime_ratio.unsupported(spec)
        ),
        "structured": "a callable model has no tables" if not is_params else lime_structured.unsupported(spec),
        "generic": None,
    }


def fastest_path(is_params: bool, spec: ModelSpec, removal: str) -> str:
    """The fastest exact path available (`unavailable`): ratio, then structured, then generic."""
    reasons = unavailable(is_params, spec, removal)
    return next(p for p in ("ratio", "structured", "generic") if reasons[p] is None)


def choose_path(model: Any, spec: ModelSpec, removal: str, path: str = "auto") -> str:
    """The evaluation path: the fastest exact one the model and spec allow, or `path`."""
    if path not in PATHS:
        raise InputError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    is_params = isinstance(model, nm.Params)
    if not is_params and not callable(model):
        raise InputError("model must be a Params tuple or a callable tokens -> output")
    if path == "auto":
        return fastest_path(is_params, spec, removal)
    reasons = unavailable(is_params, spec, removal)
    if reasons[path] is not None:
        raise InputError(f"path {path!r} is not available: {reasons[path]}")
    return path


def prepare(model: Any, doc: LimeDocument, spec: ModelSpec, d: int, path: str) -> tuple[Any, ModelFn | None]:
    """What the path needs, computed once per document: ``(arrays, callable)``.

    arrays are traceable (tables, ratio form, or the parameters for the generic path);
    callable is a user's model function for the generic path (static under `jit`), else None.
    """
    if path == "ratio":
        return lime_ratio.ratio_form(model, doc, spec, d), None
    if path == "structured":
        return lime_structured.tables(model, spec, doc.tokens.shape[0]), None
    return (model, None) if isinstance(model, nm.Params) else (None, model)


@functools.partial(jax.jit, static_argnames=("spec", "removal", "path", "model_fn", "chunk_size", "span"))
def outputs(
    data: Any,
    doc: LimeDocument,
    z: Float[Array, "n d"],
    *,
    spec: ModelSpec,
    removal: str,
    path: str,
    model_fn: ModelFn | None = None,
    chunk_size: int = 1000,
    span: int | None = None,
) -> Float[Array, " n"]:
    """f(x(z)) for each mask row of z; `data` and `model_fn` come from `prepare`.

    Rows are processed `chunk_size` at a time (`jax.lax.map` over chunks). The structured
    path multiplies precomputed word and position weights (no exp per sample; deletion
    without building token arrays) and falls back to a stable softmax when a normaliser
    could underflow. span: for deletion on the structured path, the original positions
    that can hold words (`lime_structured.word_span`; default all T).
    """
    n, d = z.shape
    chunk = min(chunk_size, n)
    padded = -(-n // chunk) * chunk
    zc = jnp.concatenate([z, jnp.ones((padded - n, d), z.dtype)]).reshape(padded // chunk, chunk, d)
    perturb_all = jax.vmap(perturb, in_axes=(None, 0, None))

    if path == "structured":
        form = lime_structured.delete_form(data, doc.tokens, doc.feature, d, span) if removal == "delete" else None

        def fast_chunk(masks):
            if removal == "delete":
                return lime_structured.delete_outputs(form, data, masks, spec)
            return lime_structured.outputs_fast(data, perturb_all(doc, masks, removal), spec)

        def stable_chunk(masks):
            tokens = perturb_all(doc, masks, removal)
            return jax.vmap(lambda t: lime_structured.output(data, t, spec))(tokens)

        # Exact to rounding unless a softmax normaliser could underflow (scores spread by
        # more than ~350): then every chunk is recomputed with the stable softmax.
        safe = jnp.sqrt(jnp.finfo(z.dtype).tiny)
        bound = lime_structured.normaliser_bound(data, doc.tokens, doc.feature)
        out = jax.lax.cond(bound > safe, lambda: jax.lax.map(fast_chunk, zc), lambda: jax.lax.map(stable_chunk, zc))
        return out.reshape(-1)[:n]

    def one_chunk(masks):
        if path == "ratio":
            return lime_ratio.output(data, masks, spec)
        tokens = perturb_all(doc, masks, removal)
        f = model_fn if model_fn is not None else model_function(data, spec)
        return jax.vmap(f)(tokens)

    return jax.lax.map(one_chunk, zc).reshape(-1)[:n]
