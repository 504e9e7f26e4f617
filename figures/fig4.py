"""Figure 4: LIME coefficients over independent runs (box plots; lime's kernel and ridge, n = 5000
samples, 2000 in the report's quick preset: the title says which) for the ten
words the first run ranks highest, against the Eq. 19 approximation (red ×), the shell form
(blue ◆, `numerics.lime.shell_form`, docs/theory.md §6.5) and LIME's exact limit β^∞ (black ★,
`numerics.lime.limit`: enumeration for d ≤ 16 words, Monte Carlo above) (docs/theory.md §5–§7).

Eq. 19 assumes in-place UNK replacement and a wide kernel; LIME here deletes words (lime's
``bow=True``) with ν = 0.25, as in the authors' experiments, so the scales can differ. The shell
form holds exactly only the 4 words whose presence changes attention most
(`numerics.lime.shell_form.EXACT_WORDS`); a word that moves the output through its value alone is
expanded, and can be far off (on the report's default sentence, "amazing": 0.035 against β^∞ = 1.79).
"""

from __future__ import annotations

import jax
import numpy as np
from attnverify.figures.common import NEGATIVE, FigureContext, plt, style, write_csv
from attnverify.figures.presentation import correlation_text, l2_text
from attnverify.numerics.tokenize import encode

from attnverify.errors import InputError

NAME = "fig4"
TOP = 10
#: β^∞ by enumeration of the 2^d masks up to this many words; Monte Carlo beyond.
EXACT_WORDS = 16
#: Monte-Carlo masks for β^∞ when d > EXACT_WORDS.
MC_SAMPLES = {"quick": 2**16, "full": 2**20}
#: The default document: longer than the running sentence, so that ten words can be ranked.
DOCUMENT = ("i love the new phone and the camera is amazing but the battery is awful and "
            "the service was bad so i would not buy it again")


def agreement(approx: np.ndarray, lime_mean: np.ndarray) -> dict[str, float | str]:
    """Pearson correlation, relative L2 error and least-squares slope of LIME on `approx`; a
    correlation that carries no information, or an error relative to a LIME mean of zero, is NaN
    with its reason beside it (``pearson_reason``, ``relative_l2_reason``)."""
    norm = float(np.linalg.norm(lime_mean))
    slope = float(approx @ lime_mean / (approx @ approx)) if approx @ approx > 0 else float("nan")
    out: dict[str, float | str] = {"pearson": float("nan")}
    if norm > 0:
        out["relative_l2"] = float(np.linalg.norm(approx - lime_mean)) / norm
    else:  # it was divided by 1: an absolute error, reported as relative
        out["relative_l2"] = float("nan")
        out["relative_l2_reason"] = "every LIME coefficient is 0: no error is relative to it"
    if len(approx) < 3:
        out["pearson_reason"] = f"{len(approx)} words: two points always correlate +-1"
    elif not (np.std(approx) > 0 and np.std(lime_mean) > 0):
        out["pearson_reason"] = "a constant vector has no correlation"
    else:
        out["pearson"] = float(np.corrcoef(approx, lime_mean)[0, 1])
    return {**out, "slope": slope}


def compute(ctx: FigureContext) -> dict:
    from attnverify.numerics.lime.engine import lime_explain  # SymPy-backed: imported when data is computed
    from attnverify.numerics.lime.eq19_form import (  # SymPy-backed: imported when data is computed
        eq19_approximation,
    )
    from attnverify.numerics.lime.limit import beta_limit  # SymPy-backed: imported when data is computed
    from attnverify.numerics.lime.shell_form import shell_approximation
    loaded = ctx.need_model(NAME)
    text = ctx.document or DOCUMENT
    tokens, kept = encode(text, loaded.vocab, loaded.spec.max_len)
    runs, n_samples = 5, 2000 if ctx.quick else 5000
    lime = lime_explain(loaded.params, tokens, loaded.spec, key=jax.random.PRNGKey(ctx.seed), words=kept,
                        runs=runs, n_samples=n_samples)
    eq19 = eq19_approximation(loaded.params, tokens, loaded.spec, words=kept)
    try:
        shell = shell_approximation(loaded.params, tokens, loaded.spec, nu=lime.nu, removal=lime.removal,
                                    words=kept)
        shell_note = f"shell form (§6.5, {lime.removal})"
    except InputError as err:  # not defined for this spec: say so instead of drawing nothing silently
        shell, shell_note = None, f"shell form unavailable: {err}"
    d = len(lime.words)
    method = "exact" if d <= EXACT_WORDS else "monte_carlo"
    limit = beta_limit(loaded.params, tokens, loaded.spec, words=kept, nu=lime.nu, removal=lime.removal,
                       method=method, n_mc=MC_SAMPLES["quick" if ctx.quick else "full"],
                       key=jax.random.PRNGKey(ctx.seed + 1))
    top = np.argsort(-np.abs(lime.coef[0]), kind="stable")[:TOP]
    mean = lime.coef.mean(axis=0)
    return {
        "text": text,
        "features": lime.words,
        "top": [int(j) for j in top],
        "coef_per_run": lime.coef,
        "eq19": eq19,
        "shell": shell,
        "shell_note": shell_note,
        "limit": limit.beta,
        "limit_method": limit.method,
        "limit_stderr": limit.stderr,
        "agreement": {name: {"vs_lime": agreement(np.asarray(v), mean),
                             "vs_limit": agreement(np.asarray(v), np.asarray(limit.beta))}
                      for name, v in (("eq19", eq19), ("shell", shell), ("limit", limit.beta)) if v is not None},
        "lime": {"runs": runs, "n_samples": n_samples, "nu": lime.nu, "removal": lime.removal,
                 "ridge": lime.ridge, "seed": ctx.seed},
    }


def write_table(path, data: dict):
    coef = np.asarray(data["coef_per_run"])
    shell = data["shell"] if data["shell"] is not None else [float("nan")] * coef.shape[1]
    header = ["word", "eq19", "shell", "limit"] + [f"lime_run{r + 1}" for r in range(coef.shape[0])]
    rows = [[w, data["eq19"][j], shell[j], data["limit"][j], *coef[:, j]] for j, w in enumerate(data["features"])]
    return write_csv(path, header, rows)


FORMS = (("eq19", "Eq. 19", "x", NEGATIVE, 140), ("shell", "shell form", "D", "#2c7bb6", 50),
         ("limit", "exact limit β^∞", "*", "black", 130))


def _agreement_line(data: dict, ref: str) -> str:
    a = data["agreement"]
    return ", ".join(f"{label} r = {correlation_text(a[k][ref]['pearson'])} / L2 = "
                     f"{l2_text(a[k][ref]['relative_l2'])}"
                     for k, label, *_ in FORMS if k in a and not (k == "limit" and ref == "vs_limit"))


def draw(data: dict) -> plt.Figure:
    coef = np.asarray(data["coef_per_run"])
    top = data["top"]
    words = [data["features"][j] for j in top]
    positions = np.arange(1, len(top) + 1)
    with style():
        fig, ax = plt.subplots(figsize=(9, 6.4), constrained_layout=True)
        ax.boxplot([coef[:, j] for j in top], positions=positions, showmeans=True, widths=0.5,
                   meanprops={"marker": "o", "markerfacecolor": "black", "markeredgecolor": "black",
                              "markersize": 4})
        for offset, (key, label, marker, colour, size) in zip((-0.22, 0.0, 0.22), FORMS, strict=True):
            if data.get(key) is None:
                continue
            extra = f" ({data['limit_method'].replace('_', ' ')})" if key == "limit" else ""
            ax.scatter(positions + offset, np.asarray(data[key])[top], marker=marker, s=size, color=colour,
                       linewidths=2 if marker == "x" else 1, zorder=3, label=label + extra)
        ax.axhline(0, color="grey", linestyle=":", linewidth=1.2)
        ax.set_xticks(positions, words, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_xlabel("Token")
        ax.set_ylabel("Weight")
        lime = data["lime"]
        ax.plot([], [], "o", color="black", label=f"LIME: mean (dot), box over {lime['runs']} runs")
        fig.legend(loc="outside lower center", ncols=2, frameon=False)
        ax.set_title(f"LIME weights (n = {lime['n_samples']}, ν = {lime['nu']}, {lime['removal']}), "
                     f"{len(data['features'])} words\n"
                     f"vs LIME mean: {_agreement_line(data, 'vs_lime')}\n"
                     f"vs β^∞: {_agreement_line(data, 'vs_limit')}", fontsize=10, loc="left")
    return fig
