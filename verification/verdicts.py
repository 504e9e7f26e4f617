"""Verdicts: what a swept claim's outcome means, given what was expected and where that came from.

A claim's outcome is holds, refuted or (statistical claims only, `verification.confidence`)
inconclusive. Its verdict:

* ``pass``: it holds, as expected (or with no expectation: outside its hypotheses);
* ``fail``: an unexpected outcome (refuted where it should hold, or holds where it should not),
  or NaN / inf draws the claim does not explain. The only verdict that makes `verify` exit 1;
* ``expected_fail``: refuted, as expected; with a measured expectation and a source that asserts
  the statement (`Claim.asserted_by`), shown as refuting that source, not as merely "expected";
* ``hyp_unmet``: outside the claim's hypotheses, and refuted there, or not computed there (NaN /
  inf draws it does not explain); an inconclusive outcome stays ``inconclusive``;
* ``inconclusive``: the draws cannot tell; the result says about how many would.
"""

from __future__ import annotations

import math

from attnverify.errors import InputError

VERDICTS = ("pass", "fail", "expected_fail", "hyp_unmet", "inconclusive")


def decide_verdict(outcome: str, expected: bool | None, *, unexplained_nonfinite: bool) -> str:
    """The verdict of an outcome (holds / refuted / inconclusive) against the expectation
    (True / False / None = hypotheses unmet)."""
    if expected is None:
        if unexplained_nonfinite:
            return "hyp_unmet"
        return {"holds": "pass", "inconclusive": "inconclusive"}.get(outcome, "hyp_unmet")
    if unexplained_nonfinite:
        return "fail"
    if outcome == "inconclusive":
        return "inconclusive"
    if outcome == "holds":
        return "pass" if expected else "fail"
    return "fail" if expected else "expected_fail"


def parse_verdicts(text: str) -> tuple[str, ...]:
    """``"fail,inconclusive"`` -> ("fail", "inconclusive"); an unknown name is an InputError."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in VERDICTS]
    if unknown or not names:
        raise InputError(f"unknown verdict {', '.join(repr(n) for n in unknown) or repr(text)} "
                         f"(verdicts: {', '.join(VERDICTS)})")
    repeated = next((n for j, n in enumerate(names) if n in names[:j]), None)
    if repeated is not None:  # the table said "(showing 1 of 1: pass, pass)", as if two had been asked for
        raise InputError(f"verdict {repeated!r} is given twice in {text!r}")
    return names


def label(r) -> str:
    """The verdict as the table shows it (first word PASS, FAIL or INCONCLUSIVE)."""
    if r.verdict == "pass":
        return "PASS"
    if r.verdict == "fail":
        if r.nonfinite and not r.nonfinite_reason:
            return f"FAIL (UNEXPECTED: {r.nonfinite} NaN/inf)"
        return "PASS (UNEXPECTED)" if r.passed else "FAIL (UNEXPECTED)"
    if r.verdict == "expected_fail":
        if r.refutes:
            return f"FAIL (REFUTES {r.refutes.upper()}; expectation measured)"
        return "FAIL (expected; measured)" if r.provenance == "measured" else "FAIL (expected)"
    if r.verdict == "hyp_unmet":
        return "FAIL (hyp. unmet)"
    return f"INCONCLUSIVE (~{r.draws_needed} draws)" if r.draws_needed else "INCONCLUSIVE"


def inconclusive_finding(judgement) -> str:
    """One line: why the draws cannot tell, and how many would."""
    j = judgement
    if j.draws < 2:
        return f"Inconclusive: {j.draws} finite draw(s), too few to bound the {j.statistic}."
    if j.note and math.isnan(j.bound):  # no bound at all (a sample without spread): the note says why
        return f"Inconclusive: {j.note}."
    side, bound = j.deciding  # undecided: the claim's own side
    if j.draws_needed:
        more = f"about {j.draws_needed} draws would settle it at the observed effect"
    else:
        more = "no number of draws settles it at the observed effect (it sits at the threshold, or a fixed " \
            "pool's own error dominates)"
    why = f" ({j.note})" if j.note else ""
    return (f"Inconclusive at {j.draws} draws: {j.statistic} {j.estimate:.4g}, {side} bound {bound:.4g} "
            f"(other side {j.counter_bound:.4g}) against {j.target}{why}; {more}.")
