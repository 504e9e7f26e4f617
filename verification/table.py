"""Plain-text rendering of sweep results: the claims table and the findings below it."""

from __future__ import annotations

from attnverify.verification.sweep import ClaimResult
from attnverify.verification.verdicts import VERDICTS, label

_OP = {"above": ">=", "below": "<="}
_PROVENANCE = {"paper": "paper", "literature": "lit.", "measured": "measured", "": "-"}


def _verdict(r: ClaimResult) -> str:
    """The result cell: the verdict (PASS, FAIL, INCONCLUSIVE first) and its qualifier."""
    return label(r)


def target_text(r: ClaimResult) -> str:
    """What the claim asserts, as the table's target cell: the tolerance, or the statistic's inequality."""
    if r.statistic is None:
        return f"err <= {r.tolerance:.0e}"
    return r.target or f"{r.statistic} {_OP.get(r.direction or '', '?')} {r.threshold:.3g}"


def measured_text(r: ClaimResult) -> str:
    """What was measured, as the table's cell (the report and the workers' log lines use it too)."""
    return _measured_value(r) + nonfinite_text(r)


def nonfinite_text(r: ClaimResult) -> str:
    """How many draws were NaN / inf, whenever any were (declared or not): never left unsaid."""
    if not r.nonfinite:
        return ""
    why = "declared" if r.nonfinite_reason else "not explained"
    return f" ({r.trials - r.nonfinite} of {r.trials} draws used; {r.nonfinite} NaN/inf, {why})"


def no_error_measured(r: ClaimResult) -> bool:
    """An identity whose every draw was NaN / inf (declared or not): there is no error to show."""
    return r.statistic is None and bool(r.trials) and r.nonfinite == r.trials


def _measured_value(r: ClaimResult) -> str:
    if r.statistic is None and "error" in r.statistics:  # a per-draw summary's error (`fraction_above`, least 1)
        shown = ", ".join(f"{k} {r.statistics[k]:.3g}" for k in ("min", "fraction") if k in r.statistics)
        return f"error {r.max_error:.2e}; per draw: median {r.median_error:.3g}" + (f", {shown}" if shown else "")
    if no_error_measured(r):
        return "no error measured"
    if r.statistic is None:
        return f"max {r.max_error:.2e}, median {r.median_error:.2e}"
    if r.bound is None:  # a statistic of every draw (`EveryDrawCheck`): no confidence bound
        return f"{r.estimate:.3g}"
    lower, upper = r.statistics.get("lower"), r.statistics.get("upper")
    if lower is None or upper is None:
        return f"{r.estimate:.3g} (bound {r.bound:.3g})"
    return f"{r.estimate:.3g} in [{lower:.3g}, {upper:.3g}]"  # the two one-sided bounds


def claims_table(results: list[ClaimResult], *, only: tuple[str, ...] | None = None) -> str:
    """The table of `results` (only the verdicts in `only`, when given), the statistics and
    findings of the rows shown, and a summary line over all results.

    Identity claims show their maximum and median error against the tolerance; statistical claims
    show the statistic against its threshold and the estimate with its two one-sided confidence
    bounds [L, U] (holds if the claim's side clears the threshold, refuted if the other side clears it
    the other way; docs/theory.md §11), never an "error"."""
    shown = [r for r in results if only is None or r.verdict in only]
    rows = [("claim", "statement", "dtype", "trials", "target", "measured", "result", "prov.", "proof")]
    for r in shown:
        statement = r.statement if len(r.statement) <= 60 else r.statement[:57] + "..."
        rows.append((r.id, statement, r.dtype, str(r.trials), target_text(r), measured_text(r), _verdict(r),
                     _PROVENANCE.get(r.provenance, r.provenance), r.proof or "-"))
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    measured = [f"- {r.id}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.statistics.items())
                for r in shown if r.statistics]
    if measured:
        lines += ["", "Statistics of empirical claims:", *measured]
    findings = [f"- {r.id}: {r.finding}" for r in shown if r.finding]
    if findings:
        lines += ["", "Findings:", *findings]
    lines += ["", summary_line(results)]
    if only is not None:
        lines.append(f"(showing {len(shown)} of {len(results)}: {', '.join(only)})")
    return "\n".join(lines)


def summary_line(results: list[ClaimResult]) -> str:
    """``N pass, N fail (unexpected): ids, N expected fail, N hyp. unmet, N inconclusive: ids``."""
    by = {v: [r.id for r in results if r.verdict == v] for v in VERDICTS}

    def listed(verdict: str) -> str:
        return ": " + ", ".join(by[verdict]) if by[verdict] else ""

    refuting = sum(r.refutes is not None for r in results)
    refuting_note = f" ({refuting} refuting the paper or literature, expectation measured)" if refuting else ""
    return (f"{len(by['pass'])} pass, {len(by['fail'])} fail (unexpected){listed('fail')}, "
            f"{len(by['expected_fail'])} expected fail{refuting_note}, {len(by['hyp_unmet'])} hyp. unmet, "
            f"{len(by['inconclusive'])} inconclusive{listed('inconclusive')}")
