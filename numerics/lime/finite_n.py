"""Where LIME's coefficients sit at n samples (docs/theory.md §5, "LIME at finite n").

LIME's ridge solves (X^T W X + lambda P) b = X^T W f over its n rows, P the identity on the
coefficients (the intercept is not penalised). Row 0 is the document itself (z = 1, kernel weight
1), and the other n - 1 rows are drawn independently. Replacing their sums by their expectations,
(n - 1) Sigma and (n - 1) Gamma with Gamma = Sigma (beta_0, beta^inf), gives LIME's centre at n.
The random design's own O(1/n) bias (a ratio of random sums) is neglected; it is nil at d = 2,
where the three kinds of masks match the three parameters. Two things keep the centre off
beta^inf: row 0 and lime's ridge (lambda = 1), each against n - 1 times the weight of the masks
that fix the limit. Where those masks are rare and light (few words, narrow kernels), either can
dominate at lime's default n = 5000; `causes` says which.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from attnverify.numerics.explanations import is_rounding_noise
from attnverify.numerics.lime.constants import mg_constants

#: `explain` notes a centre farther than this (relative L2) from the limit.
NOTED_GAP = 0.1


class Centre(NamedTuple):
    """LIME's centre at n (`centre_at_n`), its relative L2 distance to beta^inf, and that distance
    with one cause alone: row 0 without the ridge, the ridge without row 0."""

    coef: np.ndarray
    gap: float
    first_sample: float
    ridge: float


def sigma_matrix(d: int, nu: float) -> np.ndarray:
    """Sigma = E[pi x x^T], x = (1, z), from alpha_0..alpha_2 (docs/theory.md §5)."""
    a0, a1, a2, _ = np.asarray(mg_constants(d, nu).alpha, np.float64)
    sigma = np.full((d + 1, d + 1), a2)
    sigma[0, :] = sigma[:, 0] = a1
    sigma[np.arange(1, d + 1), np.arange(1, d + 1)] = a1
    sigma[0, 0] = a0
    return sigma


def _solve(sigma: np.ndarray, intercept: float, beta: np.ndarray, f0: float | None, n: int,
           ridge: float) -> np.ndarray | None:
    """(x_0 x_0^T + (n - 1) Sigma + ridge P)^-1 (x_0 f0 + (n - 1) Sigma (intercept, beta)), row 0
    left out where `f0` is None; None where it is not a number."""
    d = beta.size
    x0 = np.ones(d + 1)
    gram = (n - 1) * sigma + ridge * np.diag(np.r_[0.0, np.ones(d)])
    target = (n - 1) * sigma @ np.r_[intercept, beta]
    if f0 is not None:
        gram, target = gram + np.outer(x0, x0), target + x0 * f0
    with np.errstate(all="ignore"):
        try:
            solution = np.linalg.solve(gram, target)
        except np.linalg.LinAlgError:
            return None
    return solution[1:] if np.all(np.isfinite(solution)) else None


def centre_at_n(intercept: float, beta, f0: float, *, nu: float, n: int, ridge: float) -> np.ndarray | None:
    """LIME's coefficients at n samples with the sums replaced by their expectations: the solution
    of (x_0 x_0^T + (n - 1) Sigma + ridge P) b = x_0 f0 + (n - 1) Sigma (intercept, beta). None
    where it is not a number (a kernel so narrow that Sigma's entries underflow)."""
    beta = np.asarray(beta, np.float64)
    return _solve(sigma_matrix(beta.size, nu), intercept, beta, f0, n, ridge)


def relative_gap(centre: np.ndarray, limit) -> float:
    """||centre - beta^inf|| / ||beta^inf||: not finite, without NumPy's warnings, where the norms
    overflow (an output near 1e305: the caller reports the number as not finite)."""
    limit = np.asarray(limit, np.float64)
    with np.errstate(all="ignore"):
        return float(np.linalg.norm(centre - limit) / max(np.linalg.norm(limit), np.finfo(float).tiny))


#: Why `causes` gives no centre.
NOISE_REASON = "the limit is rounding noise next to the output"
NAN_REASON = "not a number at this kernel width"


def causes(intercept: float, beta, f0: float, *, nu: float, n: int, ridge: float) -> Centre | str:
    """The centre at n and how far it is from beta^inf, with and without each cause; or why there
    is none: beta^inf is rounding noise next to the output (no distance to speak of:
    `explanations.is_rounding_noise`), or the centre is not a number."""
    beta = np.asarray(beta, np.float64)
    if is_rounding_noise(beta, f0):
        return NOISE_REASON
    sigma = sigma_matrix(beta.size, nu)
    solutions = [_solve(sigma, intercept, beta, first, n, lam) for first, lam in
                 ((f0, ridge), (f0, 0.0), (None, ridge))]
    if any(s is None for s in solutions):
        return NAN_REASON
    both, first_sample, ridge_only = solutions
    return Centre(both, relative_gap(both, beta), relative_gap(first_sample, beta), relative_gap(ridge_only, beta))
