"""Measures and summaries for empirical claims (the optional `Claim.measure` / `Claim.summary`).

A sweep keeps one number per draw; for an empirical claim that number is a statistic of
the draw (a Kendall tau, a gap, a violation) and `summary` judges the whole sweep. Two kinds:

* statistical claims (`verification.confidence`: holds / refuted / inconclusive by a one-sided
  confidence bound, docs/theory.md §11): `mean_exceeds_zero`, `mean_above`, `mean_below`,
  `mean_within`, `at_least_as_good`, `fraction_above` (a share of draws below 1), `median_ratio`;
* per-draw checks judged like identities, rounding only (`EveryDrawCheck`: a statistic of all
  draws against its threshold, never a negative "error"): `largest_violation` (an inequality on
  every draw), `z_within` (every draw's |z| within a limit); and `fraction_above` with ``least=1``
  (`EveryDrawAbove`, a property of every draw: error = the share of draws that miss it).

NaN and inf draws are counted, never dropped silently: `run_claim` fails a claim that has any,
unless the claim declares why they are legitimate (`Claim.nonfinite_reason`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from attnverify.verification.confidence import MeanTest, MedianTest, ShareTest, Z  # noqa: F401 (Z re-exported)

from attnverify.errors import InputError

#: Tolerance reasons of statistical claims (their tolerance is unused: the test holds the threshold).
MEAN_REASON = ("one-sided 99.87 % Student-t bounds on the mean over draws (docs/theory.md §11): holds if the "
               "claim's bound clears the threshold, refuted if the other bound clears it the other way, else "
               "inconclusive")
SHARE_REASON = ("one-sided 99.87 % exact binomial (Clopper-Pearson) bounds on the share of draws (docs/theory.md "
                "§11): holds, refuted or inconclusive")

def mean_above(threshold: float, *, statistic: str = "mean", strict: bool = False,
               pool_share: float = 0.0, support: tuple[float, float] | None = None) -> MeanTest:
    """The mean is at least `threshold` (above it, when `strict`). `support`: the statistic's
    a-priori range, which bounds the mean when every draw is the same number (`MeanTest`)."""
    return MeanTest(statistic=statistic, threshold=threshold, direction="above", strict=strict,
                    pool_share=pool_share, support=support)


def mean_below(threshold: float, *, statistic: str = "mean", strict: bool = False,
               pool_share: float = 0.0, support: tuple[float, float] | None = None) -> MeanTest:
    """The mean is at most `threshold` (below it, when `strict`); `support` as in `mean_above`."""
    return MeanTest(statistic=statistic, threshold=threshold, direction="below", strict=strict,
                    pool_share=pool_share, support=support)


def mean_within(center: float, half_width: float, *, statistic: str | None = None,
                support: tuple[float, float] | None = None) -> MeanTest:
    """|mean - center| <= half_width (e.g. "at chance": agreement within 0.5 +- 0.1)."""
    if not half_width >= 0:
        raise InputError(f"half-width must be >= 0, got {half_width}")
    return MeanTest(statistic=statistic or f"|mean - {center:g}|", threshold=half_width, direction="below",
                    center=center, support=support)


#: "The mean is clearly positive": its lower confidence bound is above 0.
mean_exceeds_zero = mean_above(0.0, strict=True)
#: The same for a difference of two shares or accuracies (in [-1, 1], which bounds the mean when
#: every draw gives the same difference).
difference_exceeds_zero = mean_above(0.0, strict=True, support=(-1.0, 1.0))
#: A Kendall tau-b lies in [-1, 1], so a tau-b, and a difference of two, lie in [-2, 2].
TAU_RANGE = (-2.0, 2.0)
#: "The mean is clearly positive" for a tau-b or a difference of two (bounded when every draw is equal).
tau_exceeds_zero = mean_above(0.0, strict=True, support=TAU_RANGE)


def at_least_as_good(margin: float, *, statistic: str = "mean gap", pool_share: float = 0.0,
                     support: tuple[float, float] | None = None) -> MeanTest:
    """"At least as good as", on per-draw gaps (method minus reference): the mean gap's lower
    confidence bound must be >= -margin (a tie within the margin counts; a gap that is merely not
    shown to be worse does not)."""
    if not margin >= 0:
        raise InputError(f"a margin must be >= 0, got {margin}")
    return MeanTest(statistic=statistic, threshold=-margin, direction="above", pool_share=pool_share,
                    support=support)


@dataclass(frozen=True)
class EveryDrawCheck:
    """A property of every draw, judged like an identity (rounding only, no confidence bound):
    `statistic` (the largest of the per-draw numbers) must be at most
    `threshold` plus the claim's tolerance (`threshold=None`: the tolerance alone). Reported as that
    statistic against its threshold ("max |z| 2.94 <= 5.5"), never as a negative "error"."""

    statistic: str  # names the largest per-draw number
    threshold: float | None
    extra: Callable[[np.ndarray], dict[str, float]] | None = None  # further reported numbers

    def limit(self, tolerance: float) -> float:
        return tolerance if self.threshold is None else self.threshold + tolerance

    def target(self, tolerance: float) -> str:
        return f"{self.statistic} <= {self.limit(tolerance):.3g} (every draw)"

    def judge(self, values: np.ndarray, tolerance: float) -> tuple[float, dict[str, float]]:
        """(the statistic, with inf if any draw is NaN / inf; the reported numbers)."""
        values = np.asarray(values, dtype=np.float64)
        value = float(np.max(values)) if np.all(np.isfinite(values)) else float("inf")
        numbers = {self.statistic: value, **(self.extra(values) if self.extra is not None else {})}
        return value, numbers


#: The largest per-draw violation of an inequality that holds on every draw up to rounding
#: (<= 0 where it holds; the claim's tolerance is the rounding allowed).
largest_violation = EveryDrawCheck(statistic="max (lhs - rhs)", threshold=None,
                                   extra=lambda values: {"mean": float(np.mean(values))})


def z_within(limit: float, *, mean_name: str = "mean |z|") -> EveryDrawCheck:
    """Every draw's |z|-score is within `limit` standard errors: max |z| <= limit, with the mean
    (reported as `mean_name`)."""
    if not limit > 0:
        raise InputError(f"a z limit must be > 0, got {limit}")
    return EveryDrawCheck(statistic="max |z|", threshold=limit,
                          extra=lambda values: {mean_name: float(np.mean(values))})


@dataclass(frozen=True)
class EveryDrawAbove:
    """A property of every draw: its value is above `threshold`. Judged like an identity at
    tolerance 0 (`COUNT`): error = 1 - the share of draws above, with that share, the mean and the
    least value reported. The draw to inspect when it fails is the one with the least value
    (`worst`)."""

    threshold: float

    def __call__(self, values: np.ndarray) -> dict[str, float]:
        values = np.asarray(values, dtype=np.float64)
        share = float(np.mean(values > self.threshold))
        return {"error": 1.0 - share, "fraction": share, "mean": float(np.mean(values)),
                "min": float(np.min(values))}

    @staticmethod
    def worst(values: np.ndarray) -> int:
        """The index of the least finite value (the sweep asks only where one is finite)."""
        values = np.asarray(values, dtype=np.float64)
        return int(np.argmin(np.where(np.isfinite(values), values, np.inf)))


def fraction_above(threshold: float, *, least: float) -> ShareTest | EveryDrawAbove:
    """The share of draws with value > threshold is at least `least`.

    For least < 1 a statistical claim (`ShareTest`: exact binomial bounds). For least = 1 a claim
    about every draw (`EveryDrawAbove`): error = 1 - share, PASS at tolerance 0 iff every draw is
    above."""
    if not 0 < least <= 1:
        raise InputError(f"least must be in (0, 1], got {least}")
    if least < 1:
        return ShareTest(cut=threshold, least=least)
    return EveryDrawAbove(threshold)


#: The shell-gain target: the median per-draw ratio is at most the claim's tolerance (order-statistic bound).
median_ratio = MedianTest(statistic="median ratio", threshold=None, direction="below", label="_ratio")


def difference(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """Per-draw measure: lhs - rhs (scalars)."""
    return jnp.asarray(lhs - rhs).reshape(())


def ratio(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """Per-draw measure: lhs / rhs (scalars)."""
    return jnp.asarray(lhs / rhs).reshape(())


def left(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """Per-draw measure: lhs alone (rhs is the reference it is reported against)."""
    return jnp.asarray(lhs).reshape(())
