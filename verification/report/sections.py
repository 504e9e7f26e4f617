"""The report's reader-facing sections, as plain data: the ranked Summary, the "Model used"
paragraph (ours against the paper's IMDB setup, docs/theory.md §7), and the claims grouped by
paper and section with the negative controls apart. Formatting into Markdown / HTML is
`verification.report.render`'s job.
"""

from __future__ import annotations

import json
import math

from attnverify.verification.sweep import ClaimResult
from attnverify.verification.table import measured_text, target_text
from attnverify.verification.verdicts import label

#: The paper's setup, as the authors' code has it (docs/theory.md §7, "Training").
PAPER_SETUP = {"data": "IMDB (20,000 train / 5,000 validation / 25,000 test reviews)", "T": 256,
               "accuracy": 0.8019}

#: How a claim's left-hand side begins when it is the paper's own formula, read as stated.
PAPERS_FORMULA = ("the paper's", "Eq. (19)")

#: Claim group -> (rank, heading): the paper's own statements first, then the related papers.
GROUPS = {
    "theorem1": (0, "Lopardo et al. (ICML 2024), Theorem 1: gradients (docs/theory.md §3)"),
    "theorem2": (1, "Lopardo et al. (ICML 2024), Theorem 2 and Eq. 19: LIME (docs/theory.md §6)"),
    "lime": (2, "Mardaoui & Garreau (AISTATS 2021): LIME's limit for text (docs/theory.md §5)"),
    "jw": (3, "Jain & Wallace (NAACL 2019): attention is not explanation (docs/theory.md §8.1)"),
    "wp": (4, "Wiegreffe & Pinter (EMNLP 2019): attention is not not explanation (docs/theory.md §8.2)"),
    "saliency": (5, "Bastings & Filippova (BlackboxNLP 2020): saliency vs attention (docs/theory.md §8)"),
    "info": (6, "Wen, Subbalakshmi & Yang (2022): attention and information (docs/theory.md §8)"),
    "identifiability": (7, "Identifiability of attention (docs/theory.md §8)"),
}
PAPER_GROUPS = ("theorem1", "theorem2")
CONTROLS = "Negative controls (deliberately wrong formulas; each must FAIL)"

HEADER = ["claim", "statement", "dtype", "target", "measured", "verdict", "provenance"]


def is_control(claim_id: str, info: dict) -> bool:
    """A negative control: a deliberately wrong formula that must fail for the sweep to mean anything."""
    return ".control" in claim_id or str(info.get("source", "")).startswith("a deliberately")


def is_users(info: dict) -> bool:
    """A claim of the user's own (`--claims-module`, a plugin, a notebook): never reported as the
    paper's or a related paper's, whatever group it joined."""
    return bool(info.get("user"))


def _finding(r: ClaimResult) -> str:
    said = " ".join((r.finding or "").split())
    return said if r.dtype == "float64" else f"In {r.dtype}: {said}"


#: Which of a claim's runs (one per dtype) the Summary reads: an unexpected result first, then an
#: undecided one, then any other that is not a plain pass, so that a float32 run is not hidden
#: behind its float64 pass.
_SHOWN_FIRST = {"fail": 0, "inconclusive": 1, "hyp_unmet": 2, "expected_fail": 3, "pass": 4}


def _one_run_per_claim(results: list[ClaimResult]) -> list[ClaimResult]:
    """Per claim, in the claims' order, the run the Summary reads (`_SHOWN_FIRST`; float64 on a tie)."""
    runs: dict[str, list[ClaimResult]] = {}
    for r in results:
        runs.setdefault(r.id, []).append(r)
    return [min(rs, key=lambda r: (_SHOWN_FIRST.get(r.verdict, 0), r.dtype != "float64")) for rs in runs.values()]


def _is_finding(r: ClaimResult, info: dict) -> bool:
    return r.verdict != "pass" and not is_control(r.id, info)


def _undecided(results: list[ClaimResult], what: str) -> list[str]:
    """One line for the inconclusive results among `results` (their bounds and the draws that would
    settle each are in their tables), instead of one line each."""
    undecided = [r for r in results if r.verdict == "inconclusive"]
    if not undecided:
        return []
    trials = sorted({r.trials for r in undecided})
    named = ", ".join(r.id + (f" (~{r.draws_needed} draws)" if r.draws_needed else "") for r in undecided)
    return [f"{what}, inconclusive at {' / '.join(map(str, trials))} draws (neither held nor refuted at the "
            f"confidence level; each claim's table gives its bounds and the draws that would settle it): {named}."]


def _refuted(r: ClaimResult) -> bool:
    """A control was caught: refuted within its hypotheses (not NaN, not undecided, not held).
    Outside them (`ClaimResult.expected` None) the formula it perturbs fails too, so its failure
    tells nothing: such a control is not counted at all (`summary_lines`)."""
    return r.verdict == "expected_fail"


def summary(results: list[ClaimResult], errors: list[str]) -> str:
    """One line of counts (kept for logs): runs, verdicts, controls, could-not-run."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return f"{len(results)} claim runs ({text}); {len(errors)} could not run."


def summary_lines(results: list[ClaimResult], claims: dict[str, dict], errors: list[str],
                  figure_notes: dict) -> list[str]:
    """The Summary, ranked: what the paper claims; our findings about its own statements; the
    related papers; the figures' numbers; the negative controls and anything that could not run."""
    first = _one_run_per_claim(results)
    lines = ["What the paper claims: for a one-layer multi-head attention classifier queried from [CLS], "
             "gradient explanations have a closed form in the attention weights (Theorem 1), and LIME's "
             "large-sample limit is approximately a linear function of them (Theorem 2, Eq. 19)."]
    users = [r for r in first if is_users(claims.get(r.id, {}))]
    first = [r for r in first if r not in users]
    in_paper = [r for r in first if claims.get(r.id, {}).get("group") in PAPER_GROUPS
                and not is_control(r.id, claims.get(r.id, {}))]
    # The paper's own statements (the expectation is the paper's, or the paper asserts what we
    # measured to fail: `Claim.asserted_by`); what we measured about its results comes after.
    paper = [r for r in in_paper if "paper" in (claims.get(r.id, {}).get("provenance"),
                                                claims.get(r.id, {}).get("asserted_by"))]
    # What we measured about the paper's results, the paper's own formulas read as stated first (Eq. (19)
    # against the exact limit, Theorem 1 at the [CLS] row), then the rest in the claims' order.
    ours = sorted((r for r in in_paper if r not in paper),
                  key=lambda r: not str(claims.get(r.id, {}).get("lhs", "")).startswith(PAPERS_FORMULA))
    for r in paper:
        if _is_finding(r, claims.get(r.id, {})) and r.finding:
            lines.append(f"Finding on the paper ({r.id}): {_finding(r)}")
    if paper:
        # holds: measured to hold, as expected or not (an unexpected PASS is a statement that holds)
        ok, verb = sum(r.passed for r in paper), "holds" if len(paper) == 1 else "hold"
        named = f" ({', '.join(r.id for r in paper)})" if len(paper) <= 3 else ""
        measured = (" Eq. (19), which the paper gives as an approximation, is not counted here: it is measured, below."
                    if any(claims.get(r.id, {}).get("group") == "theorem2" for r in ours) else "")
        lines.append(f"Of the paper's own statements checked{named}, {ok} of {len(paper)} {verb} as stated or as "
                     "derived here" + ("." if ok == len(paper) else "; the rest are the findings above.") + measured)
    for r in ours:
        if _is_finding(r, claims.get(r.id, {})) and r.finding and r.verdict != "inconclusive":
            lines.append(f"Measured here, about the paper's results ({r.id}): {_finding(r)}")
    lines += _undecided(ours, "About the paper's results")
    fig4 = figure_notes.get("fig4")
    if isinstance(fig4, dict) and fig4.get("takeaway"):
        paper = fig4.get("paper", "")
        lines.append(f"The paper's Figure 4 on our model: {fig4['takeaway']} For comparison, "
                     f"{paper[:1].lower()}{paper[1:]}")
    related = [r for r in first if claims.get(r.id, {}).get("group") not in PAPER_GROUPS
               and not is_control(r.id, claims.get(r.id, {}))]
    for r in related:
        if _is_finding(r, claims.get(r.id, {})) and r.finding and r.verdict != "inconclusive":
            lines.append(f"Related paper ({r.id}): {_finding(r)}")
    lines += _undecided(related, "Related papers")
    if related:
        ok = sum(r.passed for r in related)
        # the statements that do not hold, by verdict (an unexpected PASS holds: it is counted above, and
        # listed with the unexpected results at the end)
        rest = [(sum(r.verdict == verdict and not r.passed for r in related), label) for verdict, label in (
            ("expected_fail", "failing as the literature or our measurement expects (the findings above)"),
            ("inconclusive", "inconclusive"), ("hyp_unmet", "outside their hypotheses"),
            ("fail", "failing unexpectedly (listed at the end)"))]
        tail = "; ".join(f"{n} {label}" for n, label in rest if n)
        lines.append(f"Related papers: {ok} of {len(related)} statements hold on our models" + (f"; {tail}." if tail
                                                                                              else "."))
    for r in users:
        if r.verdict != "pass" and r.finding:
            lines.append(f"Your claim ({r.id}): {_finding(r)}")
    if users:
        ok = sum(r.passed for r in users)
        lines.append(f"Your own claims: {ok} of {len(users)} hold.")
    every_control = [r for r in first if is_control(r.id, claims.get(r.id, {}))]
    controls = [r for r in every_control if r.expected is not None]
    outside = sorted(r.id for r in every_control if r.expected is None)
    if controls:
        missed = sorted({r.id for r in controls if not _refuted(r)})
        caught = sum(_refuted(r) for r in controls)
        lines.append(f"Negative controls: {caught} of {len(controls)} deliberately wrong formulas were caught "
                     "(each must fail, or the checks could not fail)."
                     + (f" Not caught (held, could not be computed, or undecided): {', '.join(missed)}."
                        if missed else ""))
    if outside:
        lines.append(f"Negative controls outside their hypotheses, where the formula each perturbs fails too, so "
                     f"that catching them tells nothing (not counted): {', '.join(outside)}.")
    unexpected = [r.id for r in results if r.verdict == "fail"]
    if unexpected:
        lines.append(f"Unexpected results (bugs to look at): {', '.join(sorted(set(unexpected)))}.")
    if errors:
        lines.append(f"{len(errors)} claim(s) or figure(s) could not run (listed at the end).")
    return lines


def _number(value, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "?"


def model_used(model: dict) -> str:
    """One paragraph: our data, T, vocabulary and accuracy against the paper's IMDB setup."""
    if not model:
        return "No model was loaded."
    try:
        spec = json.loads(model.get("spec") or "{}")
    except (TypeError, ValueError):
        spec = {}
    metrics = model.get("metrics") or {}
    acc = (metrics.get("accuracy") or {}).get("test")
    data = metrics.get("source")
    sizes = metrics.get("sizes")
    T, vocab = spec.get("max_len", "?"), spec.get("vocab_size", "?")
    if data:
        split = (" (" + " / ".join(f"{n:,} {name}" for name, n in sizes.items()) + " documents)"
                 if isinstance(sizes, dict) and all(isinstance(n, int) for n in sizes.values()) else "")
        ours = (f"Our model was trained on `{data}`{split}, with T = {T} positions and a vocabulary of "
                f"{vocab} words; **test accuracy {_number(acc)}**.")
    else:
        ours = (f"Our model ({model.get('origin', '')}) comes without training metrics (untrained or "
                f"given as is), with T = {T} positions and a vocabulary of {vocab} words.")
    diff = (f" The paper's authors trained on {PAPER_SETUP['data']} with T = {PAPER_SETUP['T']}, and their "
            f"code reports {PAPER_SETUP['accuracy']:.2%} test accuracy.")
    notes = []
    if data and "imdb" not in str(data).lower():
        notes.append("our data are not IMDB, so our numbers are not the paper's numbers")
    if T != PAPER_SETUP["T"]:
        notes.append(f"T differs ({T} vs 256), which changes how much attention mass goes to padding")
    if acc is not None and isinstance(acc, float):
        notes.append(f"accuracy differs by {100 * (acc - PAPER_SETUP['accuracy']):+.1f} points")
    return (ours + diff + (" Differences: " + "; ".join(notes) + "." if notes else "") + _architecture(spec)
            + _claims_elsewhere(spec, model.get("claims_spec")))


def _claims_elsewhere(spec: dict, claims_spec: str | None) -> str:
    """A sentence where the claims' random models make other assumptions than the model the
    figures explain (`report --model M --value-nonlinearity tanh`, say): a claim's verdict and a
    figure's takeaway then describe different models."""
    try:
        swept = json.loads(claims_spec) if claims_spec else {}
    except ValueError:
        return ""
    other = [f"{name} = {_switch(swept[name])} there ({_switch(spec[name])} here)" for name in _unlike(spec, swept)]
    return (" The claims are swept on random models whose assumptions differ from this model's: "
            f"{', '.join(other)}; the figures explain this model." if other else "")


def _architecture(spec: dict) -> str:
    """The model's sizes, and every assumption on which it is not the paper's model (`_unlike`):
    a figure or a claim read without them would be misread."""
    from attnverify.spec import PAPER

    paper = json.loads(PAPER.to_json())
    heads, width = spec.get("heads", "?"), spec.get("d_embed", "?")
    sizes = f"The model has {heads} head{'' if heads == 1 else 's'} and d_e = {width}" + (
        ", as the paper's" if (heads, width) == (paper["heads"], paper["d_embed"])
        else f" (the paper's: {paper['heads']} heads, d_e = {paper['d_embed']})")
    unlike = [f"{name} = {_switch(spec[name])} (paper: {_switch(paper[name])})" for name in _unlike(spec, paper)]
    if not unlike:
        return f" {sizes}; its assumptions are the paper's (query from [CLS], scaled scores, no value nonlinearity)."
    return f" {sizes}; unlike the paper's model, {', '.join(unlike)}."


def _unlike(spec: dict, other: dict) -> list[str]:
    """The assumptions (`attnverify.spec.SWITCHES`, the classes and the explained one) on which two
    specs, as JSON objects, differ; a field either lacks is not compared."""
    from attnverify.spec import SWITCHES

    return [name for name in (*SWITCHES, "classes", "explained_class")
            if name in spec and name in other and spec[name] != other[name]]


def _switch(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def claim_row(r: ClaimResult) -> list[str]:
    return [r.id, r.statement, r.dtype, target_text(r), measured_text(r), label(r), r.provenance or "-"]


def claim_sections(results: list[ClaimResult], claims: dict[str, dict]) -> list[tuple[str, list[ClaimResult]]]:
    """(heading, results) per paper / section in rank order, the negative controls last."""
    buckets: dict[str, list[ClaimResult]] = {}
    controls = []
    users: dict[str, list[ClaimResult]] = {}
    for r in results:
        info = claims.get(r.id, {})
        if is_users(info):
            users.setdefault(info.get("group", ""), []).append(r)
        elif is_control(r.id, info):
            controls.append(r)
        else:
            buckets.setdefault(info.get("group", ""), []).append(r)
    ordered = sorted(buckets, key=lambda g: (GROUPS.get(g, (99, g))[0], g))
    out = [(GROUPS.get(g, (99, f"Other claims ({g or 'no group'})"))[1], buckets[g]) for g in ordered]
    out += [(f"Your own claims ({g or 'no group'})", users[g]) for g in sorted(users)]
    if controls:
        out.append((CONTROLS, controls))
    return out
