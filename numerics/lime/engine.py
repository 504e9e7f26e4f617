"""LIME for text, exactly as `lime`'s ``LimeTextExplainer`` computes it, in JAX (docs/theory.md §4).

`lime_explain` draws lime's neighbourhood (`lime_sampling`), evaluates the model on every
perturbed document (`lime_eval`: generic, structured or ratio path), weights the samples
with lime's cosine kernel and fits lime's weighted ridge (`lime_ridge`). Every one of the d
distinct words gets a coefficient (no feature selection: lime with ``num_features >= d`` or
``feature_selection='none'``). Runs are independent neighbourhoods (seeds), vmapped.

Not the same thing as this (docs/theory.md §9): Captum's ``Lime`` (Bernoulli(0.5) masks, a
baseline of 0, Lasso(0.01), w = 1, 25-50 samples), Captum's ``KernelShap`` and shap's
``KernelExplainer`` (Shapley-kernel weights; shap >= 0.47 truncates to 10 features unless
``l1_reg=False``), and shap's text ``Partition`` explainer (Owen values).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.lime import structured as lime_structured
from attnverify.numerics.lime.constants import check_width
from attnverify.numerics.lime.document import LimeDocument, check_removal, lime_document
from attnverify.numerics.lime.ridge import RidgeFit, shell_ridge
from attnverify.numerics.lime.sampling import sample_masks, shell_weights
from jaxtyping import PRNGKeyArray

from attnverify.errors import InputError
from attnverify.spec import ModelSpec


@dataclass(frozen=True)
class LimeExplanation:
    """R independent LIME runs on one document.

    words: the d features (distinct words, first occurrence first); coef: (R, d) array,
    aligned with `words`; intercept, score (weighted R^2), local_pred: (R,) arrays.
    """

    words: list[str]
    coef: np.ndarray
    intercept: np.ndarray
    score: np.ndarray
    local_pred: np.ndarray
    n_samples: int
    nu: float
    removal: str
    ridge: float
    path: str


def check_lime_arguments(d: int, n_samples: int, runs: int, nu: float, ridge: float, removal: str) -> None:
    """One-line errors for arguments LIME cannot run with."""
    if d < 1:
        raise InputError("LIME: the document has no words (d = 0): nothing to explain")
    if n_samples < 2:
        raise InputError(f"LIME: n_samples must be >= 2 (row 0 is the original), got {n_samples}")
    if runs < 1:
        raise InputError(f"LIME: runs must be >= 1, got {runs}")
    check_width(nu)
    if every_weight_vanishes(d, nu):
        raise InputError(f"LIME: at kernel width nu = {nu:g} every sample's kernel weight underflows in float64, "
                         "the original document's included (its cosine distance to itself rounds to ~1e-16): the "
                         "weighted fit would be 0/0; use a larger nu")
    check_removal(removal)
    if not (ridge >= 0 and math.isfinite(ridge)):
        raise InputError(f"LIME: ridge must be a finite number >= 0, got {ridge}")
    if ridge == 0 and n_samples < d + 1:
        raise InputError(
            f"LIME: n_samples = {n_samples} < d + 1 = {d + 1}: the unpenalised system is singular; "
            "use more samples or a ridge > 0"
        )


def every_weight_vanishes(d: int, nu: float) -> bool:
    """Whether lime's kernel gives every mask of d features weight 0 (or NaN) in float64, the
    all-ones mask included: `shell_weights` evaluated in NumPy, before any compilation."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        return not np.any(shell_weights(d, nu, np.float64, xp=np) > 0)


@functools.partial(jax.jit, static_argnames=("n", "d", "dtype"))
def _masks(key: PRNGKeyArray, *, n: int, d: int, dtype) -> jnp.ndarray:
    return sample_masks(key, n, d, dtype=dtype)


@functools.partial(jax.jit, static_argnames=("spec", "removal", "path", "model_fn", "chunk_size", "span"))
def _outputs(data, doc, z, *, spec, removal, path, model_fn, chunk_size, span) -> tuple[jnp.ndarray, jnp.ndarray]:
    y = lime_eval.outputs(data, doc, z, spec=spec, removal=removal, path=path, model_fn=model_fn,
                          chunk_size=chunk_size, span=span)
    return y, jnp.all(jnp.isfinite(y))


@jax.jit
def _fit(z: jnp.ndarray, y: jnp.ndarray, nu, ridge) -> RidgeFit:
    return shell_ridge(z, y, shell_weights(z.shape[-1], nu, z.dtype), ridge)


def lime_runs(
    data: Any,
    doc: LimeDocument,
    keys: PRNGKeyArray,
    nu: float,
    ridge: float,
    *,
    spec: ModelSpec,
    n: int,
    d: int,
    removal: str,
    path: str,
    model_fn: lime_eval.ModelFn | None = None,
    chunk_size: int = 1000,
) -> tuple[RidgeFit, bool]:
    """One LIME fit per key: fits (NumPy arrays) with a leading run axis, and whether all
    outputs were finite.

    Each run is three compiled programs (masks, model outputs, ridge), dispatched in turn
    without waiting (one run's arrays alive at a time; the structured path's underflow check
    stays a real branch). Kept apart, each runs as fast as alone: fused into one program (or
    vmapped over runs) XLA made them up to 1.5x slower.
    """
    dtype = doc_dtype(data)
    span = lime_structured.word_span(doc.feature) if path == "structured" and removal == "delete" else None
    fits, finite = [], []
    for key in keys:
        z = _masks(key, n=n, d=d, dtype=dtype)
        y, ok = _outputs(data, doc, z, spec=spec, removal=removal, path=path, model_fn=model_fn,
                         chunk_size=chunk_size, span=span)
        fits.append(_fit(z, y, nu, ridge))
        finite.append(ok)
    # Gathered on the host: the runs are done by then, and a stack of each field per run would
    # be one more dispatched operation each.
    all_finite = all(bool(ok) for ok in finite)
    return RidgeFit(*(np.stack([np.asarray(field) for field in runs]) for runs in zip(*fits, strict=True))), all_finite


def doc_dtype(data: Any):
    leaves = [x for x in jax.tree_util.tree_leaves(data) if jnp.issubdtype(x.dtype, jnp.floating)]
    return leaves[0].dtype if leaves else jnp.result_type(float)


def lime_explain(
    model: Any,
    tokens,
    spec: ModelSpec,
    *,
    key: PRNGKeyArray,
    words: list[str] | None = None,
    n_words: int | None = None,
    features: str = "words",
    n_samples: int = 5000,
    runs: int = 1,
    nu: float = 0.25,
    removal: str = "delete",
    ridge: float = 1.0,
    path: str = "auto",
    chunk_size: int = 1000,
) -> LimeExplanation:
    """LIME on one document, `runs` times with independent neighbourhoods.

    model: `Params` of the paper model (structured/ratio paths available) or any callable
    ``tokens (T,) -> scalar``. tokens: the length-T ids ([CLS] first); words: the word
    strings at positions 1..L (features are their distinct values, or every position with
    features="positions", lime's bow=False). nu: kernel width / 100
    (lime's default 25 -> 0.25); removal: "delete" (lime's bow=True) or "replace" (in place
    by UNK). ridge: lime's Ridge alpha (1; 0 for the theory's least squares).
    """
    doc, names = lime_document(tokens, words=words, n_words=n_words, features=features)
    d = len(names)
    check_lime_arguments(d, n_samples, runs, nu, ridge, removal)
    chosen = lime_eval.choose_path(model, spec, removal, path)
    data, model_fn = lime_eval.prepare(model, doc, spec, d, chosen)
    keys = jax.random.split(key, runs)
    fits, finite = lime_runs(data, doc, keys, nu, ridge, spec=spec, n=n_samples, d=d, removal=removal,
                             path=chosen, model_fn=model_fn, chunk_size=chunk_size)
    if not finite:
        raise InputError("LIME: the model returned NaN or inf on some perturbed documents")
    return LimeExplanation(
        words=names,
        coef=fits.coef,
        intercept=fits.intercept,
        score=fits.score,
        local_pred=fits.local_pred,
        n_samples=n_samples,
        nu=float(nu),
        removal=removal,
        ridge=float(ridge),
        path=chosen,
    )
