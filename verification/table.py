"""Plain-text rendering of sweep results: the claims table and the findings below it."""

from __future__ import annotations

from attnverify.verification.sweep import ClaimResult


def _verdict(r: ClaimResult) -> str:
    verdict = "PASS" if r.passed else "FAIL"
    if r.unexpected:
        return verdict + " (UNEXPECTED)"
    if r.expected is False:
        return verdict + " (expected)"
    if r.expected is None and not r.passed:
        return verdict + " (hyp. unmet)"
    return verdict


def claims_table(results: list[ClaimResult]) -> str:
    rows = [("claim", "statement", "dtype", "tol", "max err", "median err", "trials", "result", "proof")]
    for r in results:
        statement = r.statement if len(r.statement) <= 60 else r.statement[:57] + "..."
        rows.append((r.id, statement, r.dtype, f"{r.tolerance:.0e}", f"{r.max_error:.2e}",
                     f"{r.median_error:.2e}", str(r.trials), _verdict(r), r.proof or "-"))
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    measured = [f"- {r.id}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.statistics.items())
                for r in results if r.statistics]
    if measured:
        lines += ["", "Statistics of empirical claims:", *measured]
    findings = [f"- {r.id}: {r.finding}" for r in results if r.finding]
    if findings:
        lines += ["", "Findings:", *findings]
    unexpected = [r.id for r in results if r.unexpected]
    lines += ["", f"{sum(r.passed for r in results)} passed, {sum(not r.passed for r in results)} failed"
              f" ({len(unexpected)} unexpected{': ' + ', '.join(unexpected) if unexpected else ''})"]
    return "\n".join(lines)
