"""Three-way judgement of statistical claims by one-sided confidence bounds (docs/theory.md §11).

A statistical claim says that a population quantity of its per-draw statistic (a mean, a share
of draws, a median) lies above or below a threshold. The draws give a lower bound L and an upper
bound U, each one-sided at level 1 - ALPHA:

* **holds** when the bound on the claim's side clears the threshold: L >= threshold for "above",
  U <= threshold for "below" (> and < for a strict claim);
* **refuted** when the bound on the other side clears it the other way: U < threshold for
  "above", L > threshold for "below" (<= and >= for a strict claim);
* **inconclusive** otherwise, and always with fewer than MIN_DRAWS finite draws; `draws_needed`
  is then about how many draws would settle it if the observed effect and spread stayed the same.

So a sweep with too few draws reads as inconclusive, never as a refutation, and "at least as good
as" claims (`at_least_as_good`) must show their lower bound at or above -margin: the burden of
proof is on the claim, not on its refutation.

The level is ALPHA = Phi(-3) = 0.135 % one-sided, that of the Z = 3 rule these claims used
before, with the Student-t quantile t_{n-1}(1 - ALPHA) for a mean because its standard error is
estimated from the same n draws: at n = 8 a Z = 3 bound has a one-sided error of about 1 %, while
t_7(1 - ALPHA) = 4.53 keeps it at 0.135 % for normal draws; at n = 1000, t = 3.008, so verdicts
there are those of the Z = 3 rule. For a skewed statistic the t bound errs more often (measured up to
tens of times ALPHA at 8 to 128 draws: docs/theory.md §11.3, `bench/mean_bound_coverage.py`). Draws
without spread never meet the t bound: the statistic's declared range bounds their mean, or nothing
does (`MeanTest`). The level is this small because a full run judges about forty statistical
claims: at 95 % one-sided, about two of them would be decided wrongly in every run whose effects
sit near their thresholds; at 0.135 % the chance of any wrong decision in such a run is about 5 %.
Shares use the exact (Clopper-Pearson) binomial bounds and medians the order-statistic (sign-test)
bounds, at the same level.

NaN and inf draws are never used as numbers: they are counted (`Judgement.nonfinite`), and
`verification.sweep.run_claim` fails the claim unless it declares why they are legitimate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from attnverify.errors import InputError
from attnverify.validate import number

Z = 3.0
ALPHA = 0.5 * math.erfc(Z / math.sqrt(2))  # Phi(-Z) = 0.00135: one-sided level of each bound
MIN_DRAWS = 2  # fewer finite draws: no estimate of the spread, so inconclusive
#: Draws of a statistic with a declared range that span less than this share of it, or without one,
#: less than this share of their own largest magnitude, are judged as draws without spread
#: (docs/theory.md §11.3): the t bound's width would then be set by the spread seen, while one unseen
#: draw anywhere in the range could move the mean by far more.
NARROW = 1e-3
DIRECTIONS = ("above", "below")


@functools.cache
def _stats():
    """`scipy.stats`, imported when a statistical claim is first judged (about a second of
    imports that a run of identities alone never needs)."""
    from scipy import stats

    return stats


MAX_DRAWS = 10**9  # draws_needed beyond this is reported as "no number of draws"


@dataclass(frozen=True)
class Judgement:
    """A statistical claim judged on its draws (see the module docstring)."""

    outcome: str  # holds | refuted | inconclusive
    statistic: str  # what is judged, e.g. "mean" or "share > 0.35"
    estimate: float
    threshold: float
    direction: str  # above | below
    strict: bool
    bound: float  # the claim's-side bound (lower for "above", upper for "below")
    counter_bound: float  # the other bound (the one that refutes)
    draws: int  # finite draws used
    nonfinite: int  # NaN / inf draws, not used
    draws_needed: int | None  # when inconclusive: about how many draws settle it (None: none do)
    numbers: dict[str, float] = field(default_factory=dict)  # reported with the result
    note: str = ""  # why the bounds are what they are, when not the test's usual ones (a sample without spread)

    @property
    def deciding(self) -> tuple[str, float]:
        """The bound that decided the outcome, named: the other side's for a refutation, the
        claim's side otherwise (e.g. ``("upper", 0.81)`` for "mean >= 1" refuted)."""
        claims_side = "lower" if self.direction == "above" else "upper"
        other_side = "upper" if claims_side == "lower" else "lower"
        return (other_side, self.counter_bound) if self.outcome == "refuted" else (claims_side, self.bound)

    @property
    def target(self) -> str:
        """The claim as an inequality, e.g. ``mean > 0``."""
        op = {("above", True): ">", ("above", False): ">=", ("below", True): "<", ("below", False): "<="}
        return f"{self.statistic} {op[self.direction, self.strict]} {self.threshold:g}"


def decide(lower: float, upper: float, threshold: float, direction: str, strict: bool) -> str:
    """holds / refuted / inconclusive from the two one-sided bounds (NaN bounds: inconclusive)."""
    if direction == "above":
        holds = lower > threshold if strict else lower >= threshold
        refuted = upper <= threshold if strict else upper < threshold
    else:
        holds = upper < threshold if strict else upper <= threshold
        refuted = lower >= threshold if strict else lower > threshold
    return "holds" if holds else "refuted" if refuted else "inconclusive"


def _split(values) -> tuple[np.ndarray, int]:
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    return finite, int(values.size - finite.size)


def _check_finite(name: str, value) -> None:
    """A finite number (a NumPy or JAX scalar too: `validate.number`); None is checked where it is used."""
    if value is not None:
        number(f"a statistical test's {name}", value)



def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")


def _scaled(needed: int | None, finite: int, nonfinite: int) -> int | None:
    """Draws needed in all (declared NaN draws included), from the finite draws needed."""
    if needed is None:
        return None
    return int(math.ceil(needed * (finite + nonfinite) / finite)) if finite else needed


def _grid(n: int) -> np.ndarray:
    """Candidate draw counts above n: 2 % steps up to MAX_DRAWS (draws_needed is 'about')."""
    grid = np.unique(np.ceil(max(n, 1) * 1.02 ** np.arange(1, 1200)).astype(np.int64))
    return grid[(grid > n) & (grid <= MAX_DRAWS)]


# -- means ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _t_quantile(level: float, dof: int) -> float:
    return float(_stats().t.ppf(level, dof))


@functools.lru_cache(maxsize=64)
def _t_quantiles(level: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`_grid(n)` and the t quantiles at `level` for each count in it (read-only: kept between
    calls, since an inconclusive mean test needs them for its draws-needed estimate every time)."""
    grid = _grid(n)
    quantiles = _stats().t.ppf(level, grid - 1)
    grid.flags.writeable = quantiles.flags.writeable = False
    return grid, quantiles


def _no_spread(finite: np.ndarray, dtype: str, *scales: float) -> bool:
    """Every draw the same number up to the sweep dtype's rounding, relative to the largest of the
    draws, the threshold and the statistic's range (`scales`: so rounding noise around 0, e.g.
    0.1 + 0.2 - 0.3 against 0, is no spread): the sample says nothing about the spread."""
    scale = max(float(np.max(np.abs(finite))), *(abs(float(x)) for x in scales))
    return float(np.ptp(finite)) <= 4 * float(np.finfo(np.dtype(dtype)).eps) * scale


def other_share_bound(n: np.ndarray | int, alpha: float = ALPHA) -> np.ndarray:
    """The upper bound, at level 1 - alpha, on P(a draw differs from c) when all n draws equal c:
    1 - alpha^(1/n) (n draws all equal c happen with probability (1 - p)^n <= alpha beyond it)."""
    return 1.0 - alpha ** (1.0 / np.asarray(n, dtype=np.float64))


@dataclass(frozen=True)
class MeanTest:
    """The mean of the per-draw statistic against a threshold, by a Student-t bound.

    With `center`, the claim is ``|mean - center| <= threshold`` (direction "below"): it holds
    when both one-sided bounds lie within center +- threshold, and is refuted when the whole
    interval lies outside. `pool_share` is a share of the per-draw variance that more draws do not
    reduce (draws resampled from a fixed pool add var/pool-size each): SE = sd sqrt(1/n + pool_share).

    A sample without spread (every finite draw the same number c) gives the t bound no width, so
    it is not used (docs/theory.md §11.3): with `support` (the statistic's a-priori range [a, b],
    e.g. (-1, 1) for a difference of accuracies) the mean lies in
    [c - p (c - a), c + p (b - c)], p = `other_share_bound(n)`, whatever the distribution;
    without it nothing bounds the mean and the outcome is inconclusive. So it is for draws spread
    over less than NARROW of the range, or without a range, of their own largest magnitude.
    """

    statistic: str = "mean"
    threshold: float = 0.0
    direction: str = "above"
    strict: bool = False
    center: float | None = None
    pool_share: float = 0.0
    support: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _check_direction(self.direction)
        _check_finite("threshold", self.threshold)
        if self.center is not None and (self.direction != "below" or not self.threshold >= 0):
            raise InputError("a test of |mean - center| needs direction 'below' and a threshold >= 0")
        if self.center is not None:
            _check_finite("center", self.center)
        if not (self.pool_share >= 0 and math.isfinite(self.pool_share)):
            raise InputError(f"pool share must be a number >= 0, got {self.pool_share}")
        if self.support is not None:
            try:
                a, b = (float(x) for x in self.support)
            except (TypeError, ValueError):
                a = b = float("nan")
            if not (math.isfinite(a) and math.isfinite(b) and a < b):
                raise InputError(f"support must be two finite numbers a < b, got {self.support}")

    def judge(self, values, threshold: float | None = None, *, dtype: str = "float64") -> Judgement:
        """`dtype`: the sweep's, whose rounding decides when draws count as all equal."""
        threshold = self.threshold if threshold is None else threshold
        if threshold is None:
            raise InputError(f"the mean test of {self.statistic!r} has no threshold")
        _check_finite("threshold", threshold)
        finite, nonfinite = _split(values)
        n = finite.size
        peak = float(np.max(np.abs(finite))) if n else 0.0
        # scaled: the mean of 1e308s overflows, the squares of 1e-165s underflow
        mean = peak * float((finite / peak).mean()) if peak > 0 else (0.0 if n else float("nan"))
        estimate = mean if self.center is None else abs(mean - self.center)
        base = dict(statistic=self.statistic, estimate=estimate, threshold=threshold, direction=self.direction,
                    strict=self.strict, draws=n, nonfinite=nonfinite)
        if n < MIN_DRAWS:
            numbers = {"mean": mean, "se": float("nan"), "draws": float(n), "nonfinite": float(nonfinite)}
            return Judgement(outcome="inconclusive", bound=float("nan"), counter_bound=float("nan"),
                             draws_needed=None, numbers=numbers, **base)
        span = ()
        if self.support is not None:  # a draw outside the declared range: the declaration is wrong
            a, b = self.support
            span = (b - a,)
            outside = finite[(finite < a - 1e-6 * (b - a)) | (finite > b + 1e-6 * (b - a))]
            if outside.size:
                raise InputError(f"the {self.statistic} is {outside[0]:.6g} in a draw, outside its declared "
                                 f"support [{a:g}, {b:g}]")
        equal = _no_spread(finite, dtype, threshold, *span)
        # a sliver of the range, or without one, of the draws' own magnitude ([1, 1 + 1e-9])
        if equal or float(np.ptp(finite)) <= NARROW * (span[0] if span else peak):
            return self._judge_without_spread(finite, mean, threshold, base, equal=equal)
        sd = peak * float((finite / peak).std(ddof=1))
        se = sd * math.sqrt(1 / n + self.pool_share)
        if not se > 0:  # subnormal draws: the standard error itself underflows
            return self._judge_without_spread(finite, mean, threshold, base, equal=equal)
        q = _t_quantile(1 - ALPHA, n - 1)
        q_either = _t_quantile(1 - ALPHA / 2, n - 1)  # |mean - center|'s refuting side: two ways
        lower, upper = self._bounds(mean - q * se, mean + q * se, mean - q_either * se, mean + q_either * se)
        outcome = decide(lower, upper, threshold, self.direction, self.strict)
        needed = None
        if outcome == "inconclusive":  # |mean - center| beyond the threshold: refuting takes ALPHA/2
            level = 1 - ALPHA / 2 if self.center is not None and estimate > threshold else 1 - ALPHA
            needed = _scaled(self._needed(abs(estimate - threshold), sd, n, level), n, nonfinite)
        bound, counter = (lower, upper) if self.direction == "above" else (upper, lower)
        numbers = {"mean": mean, "se": se, "draws": float(n), "nonfinite": float(nonfinite), "t": q,
                   "lower": lower, "upper": upper}
        return Judgement(outcome=outcome, bound=bound, counter_bound=counter, draws_needed=needed,
                         numbers=numbers, **base)

    def _bounds(self, lo: float, hi: float, lo_either: float, hi_either: float) -> tuple[float, float]:
        """Bounds on the claim's quantity from one-sided bounds [lo, hi] on the mean, each at level
        1 - ALPHA ([lo_either, hi_either]: each at 1 - ALPHA/2)."""
        if self.center is None:
            return lo, hi
        # |mu - center| <= thr holds when both one-sided bounds lie within (a two one-sided test:
        # each at ALPHA); it is refuted when mu lies beyond either side, two ways to err, so the
        # refuting bound takes ALPHA/2 on each side.
        return max(lo_either - self.center, self.center - hi_either, 0.0), max(hi - self.center, self.center - lo)

    def _judge_without_spread(self, finite: np.ndarray, mean: float, threshold: float, base: dict, *,
                              equal: bool) -> Judgement:
        """Draws with no spread (`equal`: up to rounding), or a spread below NARROW of the range (without
        one, of the draws' magnitude), or one whose standard error underflows: not the t bound."""
        nonfinite, n = base["nonfinite"], finite.size
        numbers = {"mean": mean, "se": 0.0, "draws": float(n), "nonfinite": float(nonfinite)}
        if self.support is None:
            low, high = float(finite.min()), float(finite.max())
            seen = f"equal {mean:.6g}" if equal else \
                f"lie in [{low:.6g}, {high:.6g}], less than {NARROW:g} of their magnitude"
            note = (f"all {n} finite draws {seen}: with so little spread, and no range declared for the "
                    f"{self.statistic}, nothing bounds its mean (a t bound would have next to no width)")
            return Judgement(outcome="inconclusive", bound=float("nan"), counter_bound=float("nan"),
                             draws_needed=None, numbers=numbers, note=note, **base)
        a, b = self.support
        # within rounding of the range (`judge` refused any value beyond it)
        low, high = min(max(float(finite.min()), a), b), min(max(float(finite.max()), a), b)

        def bounds(m):
            p, p_either = float(other_share_bound(m)), float(other_share_bound(m, ALPHA / 2))
            return self._bounds(low - p * (low - a), high + p * (b - high),
                                low - p_either * (low - a), high + p_either * (b - high))

        lower, upper = bounds(n)
        outcome = decide(lower, upper, threshold, self.direction, self.strict)
        needed = None
        if outcome == "inconclusive":
            settled = [m for m in _grid(n) if decide(*bounds(m), threshold, self.direction, self.strict)
                       != "inconclusive"]
            needed = _scaled(int(settled[0]) if settled else None, n, nonfinite)
        bound, counter = (lower, upper) if self.direction == "above" else (upper, lower)
        share = float(other_share_bound(n))
        numbers.update(lower=lower, upper=upper, other_share=share)
        if equal:
            note = (f"all {n} finite draws equal {mean:.6g}: the bounds are those of a statistic in [{a:g}, {b:g}] "
                    f"that differs from it in at most {share:.3g} of draws")
        else:
            note = (f"all {n} finite draws lie in [{low:.6g}, {high:.6g}], less than {NARROW:g} of the range: the "
                    f"bounds are those of a statistic in [{a:g}, {b:g}] with at most {share:.3g} of draws outside "
                    "that band")
        return Judgement(outcome=outcome, bound=bound, counter_bound=counter, draws_needed=needed,
                         numbers=numbers, note=note, **base)

    def _needed(self, effect: float, sd: float, n: int, level: float) -> int | None:
        if not (effect > 0 and math.isfinite(effect)) or sd == 0:
            return None
        m, t = _t_quantiles(level, n)
        with np.errstate(over="ignore"):  # draws near the float range: an infinite width settles nothing
            settled = t * sd * np.sqrt(1 / m + self.pool_share) < effect
        return int(m[np.argmax(settled)]) if settled.any() else None

    def __call__(self, values) -> dict[str, float]:
        """The numbers reported with the result (no verdict: see `judge`)."""
        return self.judge(values).numbers


# -- shares of draws -----------------------------------------------------------------------------
def _share_bounds(k: np.ndarray | int, n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson one-sided bounds (each at level 1 - ALPHA) on a binomial proportion."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(k > 0, _stats().beta.ppf(ALPHA, np.maximum(k, 1), n - k + 1), 0.0)
        upper = np.where(k < n, _stats().beta.ppf(1 - ALPHA, k + 1, np.maximum(n - k, 1)), 1.0)
    return lower, upper


@dataclass(frozen=True)
class ShareTest:
    """The share of draws whose statistic exceeds `cut` is at least `least` (0 < least < 1).

    A claim about every draw (least = 1) is no statistical claim: one counterexample refutes it
    and no number of draws proves it (see `empirical.fraction_above`)."""

    cut: float
    least: float
    statistic: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.least < 1:
            raise InputError(f"a share test needs 0 < least < 1, got {self.least}")

    @property
    def name(self) -> str:
        return self.statistic or f"share > {self.cut:.3g}"

    def judge(self, values, threshold: float | None = None, *, dtype: str = "float64") -> Judgement:
        least = self.least if threshold is None else threshold
        finite, nonfinite = _split(values)
        n, k = finite.size, int(np.sum(finite > self.cut))
        share = k / n if n else float("nan")
        base = dict(statistic=self.name, estimate=share, threshold=least, direction="above", strict=False,
                    draws=n, nonfinite=nonfinite)
        numbers = {"fraction": share, "draws": float(n), "nonfinite": float(nonfinite),
                   "mean": float(finite.mean()) if n else float("nan"),
                   "max": float(finite.max()) if n else float("nan")}
        if n < MIN_DRAWS:
            return Judgement(outcome="inconclusive", bound=float("nan"), counter_bound=float("nan"),
                             draws_needed=None, numbers=numbers, **base)
        lower, upper = (float(b) for b in _share_bounds(k, n))
        outcome = decide(lower, upper, least, "above", False)
        needed = None
        if outcome == "inconclusive" and share != least:
            m = _grid(n)
            lo, hi = _share_bounds(np.round(share * m), m)
            settled = lo >= least if share > least else hi < least
            needed = _scaled(int(m[np.argmax(settled)]) if settled.any() else None, n, nonfinite)
        numbers.update(lower=lower, upper=upper)
        return Judgement(outcome=outcome, bound=lower, counter_bound=upper, draws_needed=needed,
                         numbers=numbers, **base)

    def __call__(self, values) -> dict[str, float]:
        return self.judge(values).numbers


# -- medians -------------------------------------------------------------------------------------
def _order_index(n: np.ndarray | int) -> np.ndarray:
    """k (1-based) such that x_(k) is an upper and x_(n+1-k) a lower bound on the median, each
    at level 1 - ALPHA: the smallest k with P(Binomial(n, 1/2) <= k - 1) >= 1 - ALPHA."""
    return _stats().binom.ppf(1 - ALPHA, np.asarray(n), 0.5).astype(np.int64) + 1


@dataclass(frozen=True)
class MedianTest:
    """The median of the per-draw statistic against a threshold, by order-statistic bounds
    (distribution-free). `threshold` None: the claim's tolerance for the dtype is the threshold.
    `label` is appended to the names of the reported numbers (``median_ratio``, ...)."""

    statistic: str = "median"
    threshold: float | None = None
    direction: str = "below"
    label: str = ""

    def __post_init__(self) -> None:
        _check_direction(self.direction)

    def judge(self, values, threshold: float | None = None, *, dtype: str = "float64") -> Judgement:
        threshold = self.threshold if threshold is None else threshold
        if threshold is None:
            raise InputError(f"the median test of {self.statistic!r} has no threshold")
        _check_finite("threshold", threshold)
        finite, nonfinite = _split(values)
        x, n = np.sort(finite), finite.size
        median = float(np.median(x)) if n else float("nan")
        numbers = {f"median{self.label}": median, f"p90{self.label}": float(np.percentile(x, 90)) if n else median,
                   f"max{self.label}": float(x[-1]) if n else median, "draws": float(n),
                   "nonfinite": float(nonfinite)}
        base = dict(statistic=self.statistic, estimate=median, threshold=threshold, direction=self.direction,
                    strict=False, draws=n, nonfinite=nonfinite)
        if n < MIN_DRAWS:
            return Judgement(outcome="inconclusive", bound=float("nan"), counter_bound=float("nan"),
                             draws_needed=None, numbers=numbers, **base)
        k = int(_order_index(n))
        upper = float(x[k - 1]) if k <= n else float("inf")
        lower = float(x[n - k]) if k <= n else float("-inf")
        outcome = decide(lower, upper, threshold, self.direction, False)
        needed = None
        if outcome == "inconclusive":  # sign test: the share of draws on the leading side
            lead = max(np.mean(x <= threshold), np.mean(x >= threshold))
            if lead > 0.5:
                m = _grid(n)
                settled = np.round(lead * m) >= _order_index(m)
                needed = _scaled(int(m[np.argmax(settled)]) if settled.any() else None, n, nonfinite)
        numbers.update(lower=lower, upper=upper)
        bound, counter = (lower, upper) if self.direction == "above" else (upper, lower)
        return Judgement(outcome=outcome, bound=bound, counter_bound=counter, draws_needed=needed,
                         numbers=numbers, **base)

    def __call__(self, values) -> dict[str, float]:
        return self.judge(values).numbers


STATISTICAL_TESTS = (MeanTest, ShareTest, MedianTest)


def takes_tolerance(summary) -> bool:
    """A statistical test without a threshold of its own: the claim's tolerance is its threshold."""
    return isinstance(summary, STATISTICAL_TESTS) and getattr(summary, "threshold", 0.0) is None
