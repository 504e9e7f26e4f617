"""Measures and summaries for empirical claims (the optional `Claim.measure` / `Claim.summary`).

A sweep keeps one number per draw; for an empirical claim that number is a statistic of
the draw (a Kendall tau, a gap, a violation) and `summary` judges the whole sweep:

* `mean_exceeds_zero`: the mean is positive by more than Z standard errors (Monte-Carlo
  error of the mean over independent draws; Z = 3: a one-sided false alarm of 0.13 %);
* `largest_violation`: the largest per-draw violation of an inequality (rounding only);
* `fraction_above`: the share of draws where a property holds;
* `median_ratio`: the median of a per-draw ratio (e.g. one approximation's error over another's).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

Z = 3.0  # standard errors for a "clearly positive" mean


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def mean_exceeds_zero(values: np.ndarray, *, z: float = Z) -> dict[str, float]:
    """error = z * SE - mean, or +inf when the mean is not positive (PASS at tolerance 0 iff
    mean > 0 and mean >= z * SE); NaN draws are dropped."""
    kept = _finite(np.asarray(values, dtype=np.float64))
    n = kept.size
    if n < 2:  # no standard error: not shown to be positive
        return {"error": float("inf"), "mean": float(np.mean(kept)) if n else float("nan"), "se": float("nan"),
                "draws": float(n), "dropped": float(values.size - n)}
    mean, se = float(kept.mean()), float(kept.std(ddof=1) / np.sqrt(n))
    return {"error": z * se - mean if mean > 0 else float("inf"), "mean": mean, "se": se, "draws": float(n),
            "dropped": float(values.size - n)}


def largest_violation(values: np.ndarray) -> dict[str, float]:
    """error = the largest per-draw violation (<= 0 everywhere when the inequality holds)."""
    values = np.asarray(values, dtype=np.float64)
    return {"error": float(np.max(values)) if np.all(np.isfinite(values)) else float("inf"),
            "mean": float(np.mean(values))}


def z_within(limit: float, *, mean_name: str = "mean_abs_z") -> Callable[[np.ndarray], dict[str, float]]:
    """Summary of per-draw |z|-scores: error = max |z| - limit (PASS iff every draw is within
    `limit` standard errors), with the max and the mean (reported as `mean_name`)."""
    def summary(values: np.ndarray) -> dict[str, float]:
        values = np.asarray(values, dtype=np.float64)
        return {"error": float(np.max(values) - limit), "max_abs_z": float(np.max(values)),
                mean_name: float(np.mean(values))}

    return summary


def fraction_above(threshold: float, *, least: float) -> Callable[[np.ndarray], dict[str, float]]:
    """Summary: share of draws with value > threshold; error = least - share (PASS iff share >= least)."""
    def summary(values: np.ndarray) -> dict[str, float]:
        values = np.asarray(values, dtype=np.float64)
        share = float(np.mean(values > threshold))
        return {"error": least - share, "fraction": share, "mean": float(np.nanmean(values)),
                "max": float(np.nanmax(values))}

    return summary


def median_ratio(values: np.ndarray) -> dict[str, float]:
    """error = the median of per-draw ratios (PASS iff median <= tolerance); NaN draws count as
    +inf (a ratio that could not be computed does not help the claim)."""
    values = np.where(np.isfinite(values), np.asarray(values, dtype=np.float64), np.inf)
    return {"error": float(np.median(values)), "median_ratio": float(np.median(values)),
            "p90_ratio": float(np.percentile(values, 90)), "max_ratio": float(np.max(values))}


def difference(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """Per-draw measure: lhs - rhs (scalars)."""
    return jnp.asarray(lhs - rhs).reshape(())


def ratio(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """Per-draw measure: lhs / rhs (scalars)."""
    return jnp.asarray(lhs / rhs).reshape(())


def left(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """Per-draw measure: lhs alone (rhs is the reference it is reported against)."""
    return jnp.asarray(lhs).reshape(())
