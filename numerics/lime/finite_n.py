"""Where LIME's coefficients sit at n samples, to first order (docs/theory.md §5, "LIME at finite n").

LIME's ridge solves (X^T W X + lambda P) b = X^T W f over its n rows. Row 0 is the document itself
(z = 1, kernel weight 1), and the other n - 1 rows are drawn independently, so the sums are
x_0 x_0^T + (n - 1) Sigma and x_0 f(1) + (n - 1) Gamma up to Monte-Carlo noise, with Sigma and
Gamma those of the large-sample limit (Gamma = Sigma beta^inf, intercept first). Row 0 vanishes
from the limit, not from LIME at n: where the masks that pin the limit down are rare and carry
small weights (few words, narrow kernels), it still pulls LIME away from beta^inf at lime's
default n = 5000.
"""

from __future__ import annotations

import numpy as np
from attnverify.numerics.lime.constants import mg_constants

#: `explain` notes a centre farther than this (relative L2) from the limit.
NOTED_GAP = 0.1


def sigma_matrix(d: int, nu: float) -> np.ndarray:
    """Sigma = E[pi x x^T], x = (1, z), from alpha_0..alpha_2 (docs/theory.md §5)."""
    a0, a1, a2, _ = np.asarray(mg_constants(d, nu).alpha, np.float64)
    sigma = np.full((d + 1, d + 1), a2)
    sigma[0, :] = sigma[:, 0] = a1
    sigma[np.arange(1, d + 1), np.arange(1, d + 1)] = a1
    sigma[0, 0] = a0
    return sigma


def centre_at_n(intercept: float, beta, f0: float, *, nu: float, n: int, ridge: float) -> np.ndarray | None:
    """LIME's coefficients at n samples with the sums replaced by their expectations: the solution
    of (x_0 x_0^T + (n - 1) Sigma + ridge P) b = x_0 f0 + (n - 1) Sigma (intercept, beta), P the
    identity on the coefficients (lime does not penalise the intercept). None where it is not a
    number (a kernel so narrow that Sigma's entries underflow)."""
    beta = np.asarray(beta, np.float64)
    d = beta.size
    sigma = sigma_matrix(d, nu)
    x0 = np.ones(d + 1)
    penalty = ridge * np.diag(np.r_[0.0, np.ones(d)])
    gram = np.outer(x0, x0) + (n - 1) * sigma + penalty
    target = x0 * f0 + (n - 1) * sigma @ np.r_[intercept, beta]
    with np.errstate(all="ignore"):
        try:
            solution = np.linalg.solve(gram, target)
        except np.linalg.LinAlgError:
            return None
    return solution[1:] if np.all(np.isfinite(solution)) else None


def relative_gap(centre: np.ndarray, limit) -> float:
    """||centre - beta^inf|| / ||beta^inf||."""
    limit = np.asarray(limit, np.float64)
    return float(np.linalg.norm(centre - limit) / max(np.linalg.norm(limit), np.finfo(float).tiny))
