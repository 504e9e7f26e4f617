"""LIME's surrogate: weighted ridge regression with an unpenalised intercept (docs/theory.md §4).

The same estimator as ``sklearn.linear_model.Ridge(alpha=ridge, fit_intercept=True)`` fitted
with ``sample_weight``: centre z and y by their weighted means (so the intercept is not
penalised), then solve ``(Zc^T W Zc + ridge I) beta = Zc^T W yc``. `lime` uses ridge = 1,
unscaled by n; ridge = 0 is the weighted least squares of the theory.

`shell_ridge` is the same fit for LIME's binary masks, whose weights depend only on the
number of removed features: its Gram is computed from integer co-occurrence counts
(`packed_gram`), and the weighted R^2 from the normal equations, with no pass over z.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from attnverify.numerics.lime.packed_gram import shells, weighted_gram
from jaxtyping import Array, Float


class RidgeFit(NamedTuple):
    intercept: Float[Array, "*m"]
    coef: Float[Array, " d *m"]
    score: Float[Array, "*m"]  # weighted R^2 on the fitted data (lime's `score`)
    local_pred: Float[Array, "*m"]  # surrogate at row 0 (lime's `local_pred`)


def weighted_ridge(
    z: Float[Array, "n d"], y: Float[Array, " n *m"], weights: Float[Array, " n"], ridge: float
) -> RidgeFit:
    """Fit y ~ intercept + z @ coef with sample weights and an L2 penalty on coef only.

    `y` may carry trailing output axes (several explained quantities sharing one
    neighbourhood); every returned field then has them too.
    """
    w = weights / jnp.sum(weights)  # the solution does not depend on the weights' scale...
    scale = jnp.sum(weights)  # ...once the penalty is rescaled by the same factor
    zt = z.T  # features x samples: the Gram as (d, n) @ (n, d) is ~1.5x faster on CPU
    zw = zt * w
    z_mean = zt @ w
    y_mean = jnp.tensordot(w, y, axes=1)
    yc = y - y_mean
    # sum_s w_s (z_s - zbar)(z_s - zbar)^T = Z^T W Z - zbar zbar^T, as the weights sum to 1
    gram = zw @ z - jnp.outer(z_mean, z_mean) + (ridge / scale) * jnp.eye(z.shape[1], dtype=z.dtype)
    rhs = jnp.tensordot(zw, yc, axes=1)
    coef = jnp.linalg.solve(gram, rhs)
    intercept = y_mean - jnp.tensordot(z_mean, coef, axes=1)
    fitted = intercept + jnp.tensordot(z, coef, axes=1)
    residual = jnp.tensordot(w, (y - fitted) ** 2, axes=1)
    total = jnp.tensordot(w, yc**2, axes=1)
    score = 1.0 - residual / total
    return RidgeFit(intercept, coef, score, fitted[0])


def shell_ridge(
    z: Float[Array, "n d"], y: Float[Array, " n *m"], shell_weight: Float[Array, " d1"], ridge: float
) -> RidgeFit:
    """`weighted_ridge` for binary masks z whose weight is ``shell_weight[s]``, s = d - |z| the
    number of removed features (`sampling.shell_weights`): equal to it to rounding.

    The weighted Gram sum_i pi(s_i) z_i z_i^T comes from integer counts (`packed_gram`), whose
    diagonal is also Z^T W 1; the residual sum of squares from the normal equations,
    sum w (yc - Zc b)^2 = sum w yc^2 - 2 b^T Zc^T W yc + b^T Zc^T W Zc b.
    """
    n, d = z.shape
    shell = shells(z)
    weights = shell_weight[shell].astype(z.dtype)
    scale = jnp.sum(weights)
    w = weights / scale
    gram_w = weighted_gram(z, shell, shell_weight) / scale  # Z^T W Z, weights summing to 1
    z_mean = jnp.diagonal(gram_w)  # z is binary: z_j^2 = z_j
    y_mean = jnp.tensordot(w, y, axes=1)
    yc = y - y_mean
    covariance = gram_w - jnp.outer(z_mean, z_mean)
    rhs = jnp.tensordot(z.T, w.reshape((n,) + (1,) * (y.ndim - 1)) * yc, axes=1)
    coef = jnp.linalg.solve(covariance + (ridge / scale) * jnp.eye(d, dtype=z.dtype), rhs)
    intercept = y_mean - jnp.tensordot(z_mean, coef, axes=1)
    total = jnp.tensordot(w, yc**2, axes=1)
    explained = 2.0 * jnp.sum(coef * rhs, axis=0) - jnp.sum(coef * jnp.tensordot(covariance, coef, axes=1), axis=0)
    residual = total - explained
    score = 1.0 - residual / total
    return RidgeFit(intercept, coef, score, intercept + jnp.tensordot(z[0], coef, axes=1))
