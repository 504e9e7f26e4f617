"""LIME's large-sample limit beta^inf = Sigma^{-1} Gamma^f (Mardaoui & Garreau; docs/theory.md §5).

* ``"exact"`` — Gamma^f = E[pi (1, z) f(x(z))] by enumerating all 2^d - 1 masks, each
  weighted by its sampling probability times its kernel weight; then beta = Sigma^{-1}
  Gamma with the sigma derived by SymPy (`theory.mardaoui_garreau`, compiled in `lime_constants`).
  No Monte-Carlo noise: this *is* LIME as n -> oo with ridge 0.
* ``"monte_carlo"`` — n masks from lime's sampler (row 0 excluded), the weighted
  least-squares normal equations accumulated chunk by chunk (memory O(chunk d + d^2)),
  then solved; a batch-means standard error per coefficient comes with it.

``method="auto"`` enumerates when 2^d fits the path's budget (`EXACT_BUDGET`) and uses
Monte Carlo beyond.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.lime.constants import MGConstants, check_features, check_width, mg_constants
from attnverify.numerics.lime.document import LimeDocument, check_removal, lime_document
from attnverify.numerics.lime.sampling import kernel_weights, sample_masks, subset_probability
from jaxtyping import Array, Float, PRNGKeyArray

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

#: Largest number of enumerated masks per path for ``method="auto"`` (2^20 masks of the
#: ratio form take about a second on 2 CPU cores; the other paths cost O(K T) or a full
#: model call per mask).
EXACT_BUDGET = {"ratio": 2**20, "structured": 2**16, "generic": 2**12}
#: Batches of the Monte-Carlo standard error (batch means).
MC_BATCHES = 16


def is_enumerated(d: int, path: str) -> bool:
    """Whether ``method="auto"`` enumerates the 2^d masks on `path` (else: Monte Carlo)."""
    return 2**d <= EXACT_BUDGET[path]


@dataclass(frozen=True)
class LimitResult:
    """beta^inf for one document: `beta` (d,) aligned with `words`, the intercept, how it was
    computed ("exact" or "monte_carlo"), its Monte-Carlo standard error (None when exact)
    and the number of model evaluations."""

    words: list[str]
    beta: np.ndarray
    intercept: float
    method: str
    stderr: np.ndarray | None
    evaluations: int
    path: str


def masks_from_index(index: jnp.ndarray, d: int, dtype) -> Float[Array, "m d"]:
    """Mask number `index` (bit j = z_j): enumerates {0,1}^d."""
    return ((index[:, None] >> jnp.arange(d)) & 1).astype(dtype)


def sigma_solve(gamma: Float[Array, " d1"], sigma: Float[Array, " 4"]) -> Float[Array, " d1"]:
    """Sigma^{-1} Gamma with the block inverse [[s0, s1 1^T], [s1 1, (s2 - s3) I + s3 J]]."""
    g0, g = gamma[0], gamma[1:]
    s0, s1, s2, s3 = sigma
    intercept = s0 * g0 + s1 * g.sum()
    coef = s1 * g0 + (s2 - s3) * g + s3 * g.sum()
    return jnp.concatenate([intercept[None], coef])


def enumerated_gamma(
    f_of_masks: Callable[[jnp.ndarray], jnp.ndarray], d: int, nu: float, *, chunk_size: int = 2**14,
    dtype=None, with_magnitude: bool = False,
):
    """Gamma^f = sum over all masks z of P(z) pi(z) (1, z) f(z), for any ``f_of_masks: (m, d)
    -> (m,)`` (traceable); and whether every output was finite. The all-kept mask has
    probability 0 in the limit and is skipped. `with_magnitude`: also the same sums of
    |P pi (1, z) f|, what rounding scales with (`rounding_bound`)."""
    total = 2**d
    chunk = min(chunk_size, total)
    dtype = dtype or jnp.result_type(float)

    def one_chunk(start):
        z = masks_from_index(start + jnp.arange(chunk), d, dtype)
        weight = subset_probability(d - z.sum(axis=1), d) * kernel_weights(z, nu)
        f = f_of_masks(z)
        wf = weight * jnp.where(weight > 0, f, 0.0)
        sums = [jnp.concatenate([wf.sum()[None], wf @ z])]
        if with_magnitude:
            sums.append(jnp.concatenate([jnp.abs(wf).sum()[None], jnp.abs(wf) @ z]))
        return jnp.stack(sums), jnp.all(jnp.isfinite(f) | (weight == 0))

    sums, finite = jax.lax.map(one_chunk, jnp.arange(0, total, chunk))
    sums = sums.sum(axis=0)
    return (sums[0], jnp.all(finite), sums[1]) if with_magnitude else (sums[0], jnp.all(finite))


def limit_from_gamma(gamma: Float[Array, " d1"], d: int, nu: float) -> Float[Array, " d1"]:
    """(intercept, beta) = Sigma^{-1} Gamma with the SymPy-derived sigma for d, nu."""
    return sigma_solve(gamma, mg_constants(d, nu, dtype=gamma.dtype).sigma)


#: How far beyond Gamma's own rounding the computed beta may stray: the sigmas carry rounding of their
#: own (within 8e-14 relative, from sums of nonnegative terms: `constants.mg_constants`). Measured on
#: additive models, d = 2..10 and nu = 0.02..inf in float64, compiled or not: the error stays below
#: 0.031 of the bound with this factor, below half of it without (tests/test_lime_limit.py).
SIGMA_SLACK = 16


def rounding_bound(magnitude: Float[Array, " d1"], constants: MGConstants) -> Float[Array, " d1"]:
    """About how far rounding can move each entry of Sigma^{-1} Gamma (docs/theory.md §5, "Rounding at
    narrow kernels"), with `constants` those of the solve (`mg_constants`).

    Gamma's sums over the 2^d masks carry rounding errors up to about (d + 1) eps times the sums of
    their terms' magnitudes (`magnitude`), and the solve multiplies them by Sigma^{-1}'s entries. At a
    narrow kernel those entries are huge and of both signs, and beta is the small difference of huge
    terms. `SIGMA_SLACK` covers the rounding of the sigmas themselves."""
    s0, s1, s2, s3 = constants.sigma
    m0, m = magnitude[0], magnitude[1:]
    intercept = jnp.abs(s0) * m0 + jnp.abs(s1) * m.sum()
    coef = jnp.abs(s1) * m0 + jnp.abs(s2 - s3) * m + jnp.abs(s3) * m.sum()
    d = magnitude.shape[0] - 1
    return SIGMA_SLACK * (d + 1) * jnp.finfo(magnitude.dtype).eps * jnp.concatenate([intercept[None], coef])


def lost_to_rounding(coef: Float[Array, " d"], bound: Float[Array, " d"], scale: Float[Array, ""]) -> jnp.ndarray:
    """Whether the coefficients `coef` are not to be trusted: not finite, or with fewer than half their
    significant digits left, measured against the larger of the coefficients and `scale`, the size of
    the explained output (`output_scale`): rounding (`rounding_bound`) can move them by more than
    sqrt(eps) of that, 1.5e-8 in float64 and 3.5e-4 in float32."""
    size = jnp.maximum(jnp.max(jnp.abs(coef)), scale)
    return ~jnp.all(jnp.isfinite(coef)) | (jnp.max(bound) > jnp.sqrt(jnp.finfo(coef.dtype).eps) * size)


def output_scale(magnitude: Float[Array, " d1"], constants: MGConstants) -> Float[Array, ""]:
    """The kernel-weighted mean of |f| over the masks, sum |P pi f| / sum P pi (= alpha_0)."""
    return magnitude[0] / constants.alpha[0]


@functools.partial(jax.jit, static_argnames=("d",))  # one program, not an XLA compile per operation
def checked_limit(gamma: Float[Array, " d1"], magnitude: Float[Array, " d1"], d: int, nu: float):
    """(intercept, beta) = Sigma^{-1} Gamma (`limit_from_gamma`), the rounding bound of each entry
    and the output's scale, from one evaluation of the constants: what `lost_to_rounding` judges."""
    constants = mg_constants(d, nu, dtype=gamma.dtype)
    return sigma_solve(gamma, constants.sigma), rounding_bound(magnitude, constants), output_scale(magnitude, constants)


@functools.partial(jax.jit, static_argnames=("d",))
def checked_coefficients(gamma: Float[Array, " d1"], magnitude: Float[Array, " d1"], d: int, nu: float):
    """beta = Sigma^{-1} Gamma's coefficients, NaN where they are lost to rounding: noise is never a value."""
    solution, bound, scale = checked_limit(gamma, magnitude, d, nu)
    return jnp.where(lost_to_rounding(solution[1:], bound[1:], scale), jnp.nan, solution[1:])


@functools.partial(jax.jit, static_argnames=("spec", "d", "removal", "path", "model_fn", "chunk_size",
                                             "with_magnitude"))
def exact_gamma(
    data: Any, doc: LimeDocument, nu: float, *, spec: ModelSpec, d: int, removal: str, path: str,
    model_fn=None, chunk_size: int = 2**14, with_magnitude: bool = False,
):
    """`enumerated_gamma` of the model on the document's perturbations."""

    def f_of_masks(z):
        return lime_eval.outputs(data, doc, z, spec=spec, removal=removal, path=path,
                                 model_fn=model_fn, chunk_size=z.shape[0])

    return enumerated_gamma(f_of_masks, d, nu, chunk_size=chunk_size, with_magnitude=with_magnitude)


def check_mc_samples(n_mc: int, d: int, prefix: str = "") -> None:
    """The Monte-Carlo limit draws `MC_BATCHES` batches, each of at least d + 1 masks (a batch's
    normal equations must be solvable): one-line `InputError` for fewer samples."""
    if n_mc < MC_BATCHES * (d + 1):
        raise InputError(f"{prefix}the Monte-Carlo limit at d = {d} needs at least {MC_BATCHES * (d + 1)} samples "
                         f"({MC_BATCHES} batches of d + 1 masks), got {n_mc}")


@functools.partial(
    jax.jit, static_argnames=("spec", "d", "removal", "path", "model_fn", "n", "chunk_size")
)
def monte_carlo_normal_equations(
    data: Any, doc: LimeDocument, nu: float, key: PRNGKeyArray, *, spec: ModelSpec, d: int,
    removal: str, path: str, n: int, model_fn=None, chunk_size: int = 2**14,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Per batch: G = sum pi x x^T and g = sum pi x f, x = (1, z); and all-outputs-finite."""
    dtype = jnp.result_type(float)
    per_batch = n // (MC_BATCHES * chunk_size)

    def one_chunk(index):
        z = sample_masks(jax.random.fold_in(key, index), chunk_size, d, include_original=False, dtype=dtype)
        f = lime_eval.outputs(data, doc, z, spec=spec, removal=removal, path=path,
                              model_fn=model_fn, chunk_size=chunk_size)
        x = jnp.concatenate([jnp.ones((chunk_size, 1), dtype), z], axis=1)
        w = kernel_weights(z, nu)
        return (x.T * w) @ x, (x.T * w) @ f, jnp.all(jnp.isfinite(f))

    def one_batch(b):
        G, g, ok = jax.lax.map(one_chunk, b * per_batch + jnp.arange(per_batch))
        return G.sum(axis=0), g.sum(axis=0), jnp.all(ok)

    return jax.lax.map(one_batch, jnp.arange(MC_BATCHES))


class LimitLost(InputError):
    """beta^inf is not a number at this kernel width and d: Sigma singular in floating point, or
    Sigma^-1 Gamma lost to rounding (docs/theory.md §5, "Rounding at narrow kernels")."""


def beta_limit(
    model: Any,
    tokens,
    spec: ModelSpec,
    *,
    words: list[str] | None = None,
    n_words: int | None = None,
    features: str = "words",
    nu: float = 0.25,
    removal: str = "replace",
    method: str = "auto",
    n_mc: int = 10**6,
    key: PRNGKeyArray | None = None,
    path: str = "auto",
    chunk_size: int = 2**14,
) -> LimitResult:
    """beta^inf of LIME (n -> oo, ridge 0) for one document.

    model, tokens, words, n_words, features, nu, removal, path: as `numerics.lime.engine.lime_explain`.
    method: "exact" (enumeration of 2^d masks), "monte_carlo" (n_mc masks, needs `key`) or
    "auto". Returns a `LimitResult`.
    """
    doc, names = lime_document(tokens, words=words, n_words=n_words, features=features)
    d = len(names)
    check_features(d, what="LIME limit")
    check_width(nu)
    check_removal(removal)
    chosen = lime_eval.choose_path(model, spec, removal, path)
    data, model_fn = lime_eval.prepare(model, doc, spec, d, chosen)
    if method == "auto":
        method = "exact" if is_enumerated(d, chosen) else "monte_carlo"
    if method == "exact":
        if d > 30:
            raise InputError(f"exact enumeration of 2^{d} masks is out of reach; use monte_carlo")
        gamma, finite, magnitude = exact_gamma(data, doc, nu, spec=spec, d=d, removal=removal, path=chosen,
                                               model_fn=model_fn, chunk_size=chunk_size, with_magnitude=True)
        if not bool(finite):
            raise InputError("LIME limit: the model returned NaN or inf on some perturbed documents")
        solution, bound, scale = checked_limit(gamma, magnitude, d, nu)
        bound = bound[1:]
        if np.all(np.isfinite(solution)) and bool(lost_to_rounding(solution[1:], bound, scale)):
            size = max(float(jnp.max(jnp.abs(solution[1:]))), float(scale))
            raise LimitLost(
                f"LIME limit: lost to rounding at d = {d}, nu = {nu} (Sigma^-1 Gamma is the small difference of huge "
                f"terms: rounding can move a coefficient by {float(jnp.max(bound)):.2g}, against coefficients and "
                f"outputs of size {size:.2g}); use a wider kernel")
        stderr, evaluations = None, 2**d - 1
    elif method == "monte_carlo":
        if key is None:
            raise InputError("monte_carlo needs a PRNG key")
        chunk = max(1, min(chunk_size, n_mc // MC_BATCHES))
        check_mc_samples(n_mc, d)
        G, g, finite = monte_carlo_normal_equations(data, doc, nu, key, spec=spec, d=d, removal=removal,
                                                    path=chosen, n=n_mc, model_fn=model_fn,
                                                    chunk_size=chunk)
        if not bool(jnp.all(finite)):
            raise InputError("LIME limit: the model returned NaN or inf on some perturbed documents")
        solution = jnp.linalg.solve(G.sum(axis=0), g.sum(axis=0))
        per_batch = jnp.linalg.solve(G, g[..., None])[..., 0]
        stderr = np.asarray(jnp.std(per_batch[:, 1:], axis=0, ddof=1) / np.sqrt(MC_BATCHES))
        evaluations = MC_BATCHES * (n_mc // (MC_BATCHES * chunk)) * chunk
    else:
        raise InputError(f"method must be auto, exact or monte_carlo, got {method!r}")
    solution = np.asarray(solution)
    if not np.all(np.isfinite(solution)):
        raise LimitLost(
            f"LIME limit: Sigma is numerically singular for d = {d}, nu = {nu} (the kernel weight sits "
            "on masks that remove a single word); use a wider kernel"
        )
    return LimitResult(names, solution[1:], float(solution[0]), method, stderr, evaluations, chosen)
