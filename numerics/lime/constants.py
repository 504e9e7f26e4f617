"""Mardaoui & Garreau's constants, compiled from their SymPy derivation (`theory.mardaoui_garreau`) to JAX.

`mg_constants(d, nu)` evaluates ``alpha_p = sum_{s=1}^{d} summand_p(s, d, nu)`` with the
summand lambdified from the derived expression, then the derived sigma_0..sigma_3. ``nu =
inf`` is allowed (the kernel is then identically 1, the limit of the expression).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from attnverify.errors import InputError
from attnverify.lazy import lazy_module

# SymPy's side, loaded when the constants are first compiled (`attnverify.lazy`).
sp = lazy_module("sympy")
theory = lazy_module("attnverify.theory.mardaoui_garreau")

#: alpha_p is compiled for p = 0..MAX_P. Nothing here reads alpha_3 (third moments enter only for tree
#: models, docs/theory.md §5); it is kept so that the array has the moments a caller may extend to.
MAX_P = 3


class MGConstants(NamedTuple):
    alpha: Float[Array, " 4"]  # alpha_0 .. alpha_3
    sigma: Float[Array, " 4"]  # sigma_0 .. sigma_3 (sigma_2 diagonal, sigma_3 off-diagonal)


@functools.lru_cache(maxsize=1)
def _compiled():
    """The alpha summands, A's and B's summands, D's scale and the sigmas of the stable form
    (`theory.mardaoui_garreau.derive_stable_inverse`), lambdified for JAX."""
    summands = [
        sp.lambdify((theory.s, theory.d, theory.nu), theory.alpha_summand(p), modules="jax")
        for p in range(MAX_P + 1)
    ]
    stable = theory.derive_stable_inverse()
    gaps = [sp.lambdify((theory.s, theory.d, theory.nu), stable.gap_summands[name], modules="jax") for name in "AB"]
    scale = sp.lambdify(theory.d, stable.determinant_scale, modules="jax")
    exprs = [stable.sigma[f"sigma_{k}"] for k in range(4)]
    sigmas = sp.lambdify((*theory.alpha_sym[1:3], *theory.gap_sym, theory.d), exprs, modules="jax", cse=True)
    return summands, gaps, scale, sigmas


def check_features(d: int, *, what: str = "LIME") -> None:
    """One-line errors for feature counts the LIME limit is not defined for."""
    if d < 1:
        raise InputError(f"{what}: the document has no words (d = 0): nothing to explain")
    if d == 1:
        raise InputError(
            f"{what}: d = 1: every LIME sample removes the only word, so Sigma is singular and "
            "the large-sample limit is undefined"
        )


def check_width(nu: float) -> None:
    if not nu > 0:
        raise InputError(f"kernel width nu must be > 0 (or inf), got {nu}")


def mg_constants(d: int, nu: float, *, dtype=jnp.float64) -> MGConstants:
    """alpha_0..alpha_3 and sigma_0..sigma_3 for d features (static) and width nu (traceable).

    Returns arrays of shape (4,). `d` must be >= 2 (see `check_features`).
    """
    check_features(d)
    return _evaluated(d, jnp.asarray(nu, dtype), dtype=dtype)


@functools.partial(jax.jit, static_argnames=("d", "dtype"))
def _evaluated(d: int, nu: Float[Array, ""], *, dtype) -> MGConstants:
    """The lambdified sums and sigmas, one compiled program per d (the persistent cache keeps it;
    evaluated operation by operation they compiled some 30 small programs in every command)."""
    summands, gaps, scale, sigmas = _compiled()
    s = jnp.arange(1, d + 1, dtype=dtype)
    terms = [f(s, float(d), nu) for f in summands]
    alpha = jnp.stack([jnp.sum(t) for t in terms])
    # Sums of nonnegative terms only (docs/theory.md §5, "Evaluating the sigmas"): A = alpha_0 -
    # alpha_1, B = alpha_1 - alpha_2 and D = scale * S_0 sum_s w_s (s - mean)^2, w_s alpha_0's terms.
    gap_a, gap_b = (jnp.sum(g(s, float(d), nu)) for g in gaps)
    mean = jnp.sum(terms[0] * s) / alpha[0]
    determinant = scale(float(d)) * alpha[0] * jnp.sum(terms[0] * (s - mean) ** 2)
    sigma = jnp.stack(sigmas(alpha[1], alpha[2], gap_a, gap_b, determinant, float(d)))
    return MGConstants(alpha=alpha, sigma=sigma)


@functools.lru_cache(maxsize=1)
def _mean_mask_parts():
    """log pi(s) and P(a feature kept | s removed) (`theory.mardaoui_garreau`), lambdified for JAX."""
    log_kernel = sp.lambdify((theory.s, theory.d, theory.nu), theory.log_kernel(), modules="jax")
    kept = sp.lambdify((theory.s, theory.d), theory.kept_probability(1), modules="jax")
    return log_kernel, kept


def mean_mask(d: int, nu: float, *, dtype=jnp.float64) -> Float[Array, ""]:
    """E_pi[z_j] / E_pi[1] = alpha_1 / alpha_0: the kernel-weighted mean of one mask entry."""
    check_features(d)
    return _mean_mask(d, jnp.asarray(nu, dtype), dtype=dtype)


@functools.partial(jax.jit, static_argnames=("d", "dtype"))
def _mean_mask(d: int, nu: Float[Array, ""], *, dtype) -> Float[Array, ""]:
    """alpha_1 / alpha_0 with every kernel weight divided by the largest (the ratio is unchanged):
    at a narrow kernel the weights underflow to 0 (nu = 0.001: alpha_0 = 0 in float64) and
    alpha_1 / alpha_0 was 0/0, while the ratio tends to (d - 1)/d, its value at s = 1."""
    log_kernel, kept = _mean_mask_parts()
    s = jnp.arange(1, d + 1, dtype=dtype)
    log_weight = log_kernel(s, float(d), nu)
    weight = jnp.exp(log_weight - jnp.max(log_weight))
    return jnp.sum(weight * kept(s, float(d))) / jnp.sum(weight)
