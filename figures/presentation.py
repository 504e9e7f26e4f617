"""How the report presents each figure: a title in words, a one-sentence takeaway computed from
the figure's data, and the paper's published number where the paper has the same figure
(docs/theory.md §7). Pure formatting of data already computed; never recomputes anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

#: name -> title in words (the report's heading for the figure).
TITLES = {
    "architecture": "The model: one attention layer, K heads, queried from [CLS] (the paper's architecture figure)",
    "fig1": "Seven explanations of one sentence (the paper's Figure 1)",
    "fig3": "Self-attention of each head (the paper's Figure 3)",
    "fig4": "LIME against Eq. 19, the shell form and LIME's exact limit (the paper's Figure 4)",
    "fig5": "Gradient: Theorem 1's closed form against autodiff (the paper's Figure 5)",
    "eq19_nu": "Eq. 19's error as the LIME kernel width ν varies",
    "eq19_d": "Eq. 19's error as the number of words d grows",
    "eq19_n": "LIME's convergence to its limit β^∞ as the number of samples n grows",
    "thm1_hist": "Theorem 1's error over random models, float64 and float32",
    "jw_permutation": "Jain & Wallace's permutation test on our model",
    "wp_tradeoff": "Wiegreffe & Pinter's adversarial trade-off on our model",
    "bench_scaling": "Run time against problem size",
}

#: name -> what the paper (or its authors' notebook) published for the same figure.
PAPER = {
    "fig1": "On the authors' IMDB model, LIME, G-avg and G×I give “questionable” the most negative weight "
            "(LIME −1.012, G×I −3.332); α-max ranks it second (0.316).",
    "fig3": "A 2×3 grid of heads over [CLS] and 7 words, each head on its own colour scale.",
    "fig4": "The authors' notebook on its IMDB test review gives Pearson r = 0.97, relative L2 = 0.25 between the "
            "LIME mean and Eq. 19 over 71 words.",
    "fig5": "The two maps agree except in the [CLS] row.",
}


def correlation_text(pearson: float | None) -> str:
    """A correlation for a title or a takeaway: n/a where it carries no information (NaN in memory,
    null in a data file, its reason beside)."""
    if pearson is None or not np.isfinite(pearson):
        return "n/a"
    return f"{pearson:.2f}" if abs(pearson) < 0.99 else f"{pearson:.3f}"  # 0.996 is not 1.00


def l2_text(value: float | None) -> str:
    """A relative L2 error; n/a where it is null in the data file (its reason beside)."""
    return f"{value:.2f}" if value is not None and np.isfinite(value) else "n/a"


def _fig4(data: dict) -> str:
    a = data.get("agreement", {})
    parts = []
    for form, label in (("eq19", "Eq. 19"), ("shell", "the shell form")):
        if form in a and a[form].get("vs_lime"):
            v = a[form]["vs_lime"]
            parts.append(f"{label} r = {correlation_text(v['pearson'])}, relative L2 = {l2_text(v['relative_l2'])}")
    if "limit" in a and a["limit"].get("vs_lime"):
        v = a["limit"]["vs_lime"]
        parts.append(f"the exact limit β^∞ r = {correlation_text(v['pearson'])}, relative L2 = "
                     f"{l2_text(v['relative_l2'])}")
    if not parts:
        return "LIME against Eq. 19."
    signs = ""
    if data.get("eq19") is not None and data.get("limit") is not None:
        eq19, limit = np.asarray(data["eq19"], float), np.asarray(data["limit"], float)
        signs = (f" Eq. 19 has the sign of β^∞ on {int(np.sum(np.sign(eq19) == np.sign(limit)))} of {limit.size} "
                 "words: a high r does not mean the signs are right.")
    text = f"On “{data['text']}”, against" if data.get("text") else "Against"
    return f"{text} the LIME mean over all {len(data.get('features', []))} words: " + "; ".join(parts) + "." + signs


def _fig1(data: dict) -> str:
    lime = np.asarray(data["values"]["lime"], float)
    words = data["words"]
    low = int(np.argmin(lime))
    unknown = [w for w, ok in zip(data.get("paper_words", []), data.get("paper_in_vocabulary", []), strict=False)
               if not ok]
    whose = "The paper's sentence" if data.get("paper_sentence", True) else "The given sentence"
    extra = f" {whose} has {len(unknown)} word(s) out of our vocabulary ({', '.join(unknown)})." \
        if unknown else ""
    paper_words = data.get("paper_words", [])
    if unknown and len(paper_words) == len(words):  # each stand-in's own weight: the paper's point was about its word
        swaps = [f"“{theirs}” by “{ours}” (LIME {lime[j]:+.2g})"
                 for j, (theirs, ours) in enumerate(zip(paper_words, words, strict=True)) if theirs != ours]
        extra += f" Replaced: {', '.join(swaps)}." if swaps else ""
    if lime[low] == 0:
        return (f"No LIME weight is negative on this sentence (the smallest, 0, for “{words[low]}”); the "
                f"unsigned attention and gradient-norm strips could not show a sign either way.{extra}")
    if lime[low] < 0:
        return (f"LIME gives “{words[low]}” the most negative weight ({lime[low]:+.3g}); the unsigned "
                f"attention and gradient-norm strips cannot show that sign.{extra}")
    return (f"Every LIME weight is positive on this sentence (the smallest, {lime[low]:+.3g}, for "
            f"“{words[low]}”): no word pushes away from the class here, which the unsigned attention and "
            f"gradient-norm strips could not show either way.{extra}")


def _fig3(data: dict) -> str:
    totals, attention = np.asarray(data["cls_row_total"], float), np.asarray(data["attention"], float)
    rows = attention[:, 0, :]  # each head's [CLS] row over the positions shown
    if len(rows) == 1:
        heads = "One head (on its own colour scale)"
    elif np.abs(rows - rows[0]).max() > 0.05 * max(rows.max(), np.finfo(float).tiny):
        heads = "The heads attend differently (each on its own colour scale)"
    else:
        heads = f"The {len(rows)} heads attend alike (within 5 % of the largest weight)"
    sums = f"{totals.min():.2f}" if np.isclose(totals.min(), totals.max(), atol=5e-3) else \
        f"{totals.min():.2f}–{totals.max():.2f}"
    rest = (", the rest of the mass going to positions not shown (UNK padding, or words past the first ones)"
            if totals.min() < 0.995 else ": nearly all of the mass is on the positions shown")
    return f"{heads}; the [CLS] row shown sums to {sums}{rest}."


def _fig5(data: dict) -> str:
    """Read from the differences, relative to the largest gradient entry. Rounding stays below the
    square root of the dtype's epsilon of it (1.5e-8 in float64: the rounding floor of attention,
    ε·max|γ|, is 1e-12 at scores of 100, docs/theory.md §10.5), and an unmet hypothesis of Theorem 1
    (a value nonlinearity, say) shows far above it."""
    scale = data["max_abs_gradient"]
    agree = np.sqrt(np.finfo(np.dtype(data.get("dtype", "float64"))).eps) * scale
    cls, words = data["max_abs_diff_cls_row"], data["max_abs_diff_other_rows"]
    relative = (lambda x: f"{x / scale:.1e} of the largest entry") if scale > 0 else (lambda x: f"{x:.1e}")
    if words > agree:
        return (f"Closed form and autodiff differ on the word rows too (by up to {relative(words)}): Theorem 1 "
                "does not hold for this model (Model used lists where it is not the paper's).")
    if cls > agree:
        return (f"Closed form and autodiff agree on every word row (up to {relative(words)}); they differ in the "
                f"[CLS] row (by up to {relative(cls)}: Theorem 1 misses the query's dependence on e_0).")
    return (f"Closed form and autodiff agree on every row, the [CLS] row included (up to {relative(max(cls, words))}): "
            "on this text the query's dependence on e_0 adds nothing.")


def _span(values) -> str:
    """``a`` or ``a–b``, two significant digits, from finite values."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    low, high = f"{values.min():.2g}", f"{values.max():.2g}"
    return low if low == high else f"{low}–{high}"


def _eq19_sweep(data: dict) -> str:
    """The median over documents of each form's relative error, its range over the x values."""
    forms = (("eq19", "Eq. 19"), ("improved", "the improved form"), ("shell", "the shell form"))
    parts = []
    for model, errors in data["errors"].items():
        medians = {form: [np.nanmedian(np.asarray(point, float)) for point in errors[form]]
                   for form, _ in forms if form in errors}
        text = ", ".join(f"{label} {_span(medians[form])}" for form, label in forms if form in medians)
        parts.append(f"{data['model_labels'].get(model, model)} models: {text}")
    x = np.asarray(data["x"], float)
    return (f"Median relative error against LIME's exact limit β^∞ over {data['x_symbol']} = {x.min():g}–{x.max():g} "
            f"({data['documents_per_model']} documents a model); " + "; ".join(parts) + ".")


def _eq19_n(data: dict) -> str:
    # Eq. 19 is a fixed formula: its distance to the limit does not shrink with n; far above LIME's own error
    # at the largest n, it is no sampling noise
    far = data["eq19_vs_limit"] > 10 * data["rmse"][-1]
    return (f"LIME's error to its limit β^∞ falls as n^{data['slope']:.2f} (Monte Carlo: n^-0.5), from "
            f"{data['rmse'][0]:.2g} at n = {data['n'][0]} to {data['rmse'][-1]:.2g} at n = {data['n'][-1]}; Eq. 19 "
            f"is {data['eq19_vs_limit']:.2f} (relative L2) from β^∞ whatever n"
            + (": its error is not sampling noise." if far else "."))


def _thm1_hist(data: dict) -> str:
    parts, holds = [], []
    for dtype, errors in data["errors"].items():
        word = np.asarray(errors.get("thm1.gradient", []), float)
        cls = np.asarray(errors.get("thm1.gradient_cls_row", []), float)
        if word.size:
            holds.append(np.nanmax(word) <= data["tolerance"][dtype] and (not cls.size or np.nanmax(cls) > 1e-3))
            parts.append(f"{dtype}: the word rows' largest error {np.nanmax(word):.2g} over {word.size} models "
                         f"(tolerance {data['tolerance'][dtype]:g}), the [CLS] row read as a word row up to "
                         f"{np.nanmax(cls):.2g}" if cls.size else f"{dtype}: {np.nanmax(word):.2g}")
    lead = ("Theorem 1 holds at the word rows and not at the [CLS] row; " if holds and all(holds)
            else "Theorem 1 against jax.grad: ")
    return lead + "; ".join(parts) + "."


def _jw_permutation(data: dict) -> str:
    medians = {name: float(np.nanmedian(np.asarray(panel["median_tvd"], float)))
               for name, panel in data["panels"].items()}
    text = "; ".join(f"{name.split(' (')[0]}: {value:.2g}" for name, value in medians.items())
    return (f"Output change |Δp| when the attention is permuted (the median over {data['permutations']} permutations, "
            f"then over documents): {text}.")


def _wp_tradeoff(data: dict) -> str:
    needle, other = data["seed_jsd_needle"], data["seed_jsd_no_needle"]
    apart = needle < other / 10  # an order of magnitude apart: the pooled mean describes neither group
    return (f"The {data['seeds'] - 1} retrained seeds' attention is {data['seed_jsd']:.2g} (JSD) from the base on "
            f"average, {needle:.2g} on documents with the needle and {other:.2g} on those without"
            + (": seeds agree where the output depends on one word." if apart else "."))


TAKEAWAYS: dict[str, Callable[[dict], str]] = {
    "fig1": _fig1, "fig3": _fig3, "fig4": _fig4, "fig5": _fig5, "eq19_nu": _eq19_sweep, "eq19_d": _eq19_sweep,
    "eq19_n": _eq19_n, "thm1_hist": _thm1_hist, "jw_permutation": _jw_permutation, "wp_tradeoff": _wp_tradeoff}


#: A sentence ends at a full stop, then a space and a capital, but not after an abbreviation the
#: captions use ("Eq. 19", "w.r.t. e_t", "e.g. the", "i.e. its").
_SENTENCE_END = re.compile(r"(?<!\bEq)(?<!\bEqs)(?<!\bw\.r\.t)(?<!\be\.g)(?<!\bi\.e)\.\s+(?=[A-Z(“\"])")


def _first_sentence(text: str) -> tuple[str, str]:
    """(the first sentence, the rest) of `text`."""
    end = _SENTENCE_END.search(text)
    return (text, "") if end is None else (text[: end.start() + 1], text[end.end():])


def present(name: str, data: dict | None, caption: str) -> dict[str, str]:
    """{title, caption, takeaway, paper} for figure `name`; a takeaway that cannot be computed
    from `data` (an older data file) falls back to the caption's first sentence, and the caption
    keeps the rest (empty for a caption of one sentence)."""
    takeaway = ""
    if data is not None and name in TAKEAWAYS:
        try:
            takeaway = TAKEAWAYS[name](data)
        except (KeyError, ValueError, TypeError, IndexError):
            takeaway = ""
    if not takeaway:  # the caption's first sentence, then not repeated beneath it
        first, caption = _first_sentence(caption)
        takeaway = first.rstrip(".") + "."
    # "Figure 1: ..." in a caption is the paper's numbering, not the report's
    caption = re.sub(r"^Figure (\d+):", r"The paper's Figure \1:", caption)
    takeaway = re.sub(r"^Figure (\d+):", r"The paper's Figure \1:", takeaway)
    return {"title": TITLES.get(name, name), "caption": caption, "takeaway": takeaway,
            "paper": PAPER.get(name, "")}
