"""Figure 4: LIME coefficients over independent runs (box plots, lime's defaults) for the ten
words the first run ranks highest, against the Eq. 19 approximation (red ×) and the improved
closed form (blue ◆) of `numerics.lime.eq19_form` (THEORY.md §6, §7).

Eq. 19 assumes in-place UNK replacement and a wide kernel; LIME here deletes words (lime's
``bow=True``) with ν = 0.25, as in the authors' experiments, so the scales can differ.
"""

from __future__ import annotations

import jax
import numpy as np
from attnverify.figures.common import NEGATIVE, FigureContext, plt, style, write_csv
from attnverify.numerics.lime.engine import lime_explain
from attnverify.numerics.lime.eq19_form import eq19_approximation, improved_approximation
from attnverify.numerics.tokenize import encode

NAME = "fig4"
TOP = 10
#: The default document: longer than the running sentence, so that ten words can be ranked.
DOCUMENT = ("i love the new phone and the camera is amazing but the battery is awful and "
            "the service was bad so i would not buy it again")


def agreement(approx: np.ndarray, lime_mean: np.ndarray) -> dict[str, float]:
    """Pearson correlation, relative L2 error and least-squares slope of LIME on `approx`."""
    norm = float(np.linalg.norm(lime_mean)) or 1.0
    slope = float(approx @ lime_mean / (approx @ approx)) if approx @ approx > 0 else float("nan")
    corr = float(np.corrcoef(approx, lime_mean)[0, 1]) if len(approx) > 1 else float("nan")
    return {"pearson": corr, "relative_l2": float(np.linalg.norm(approx - lime_mean)) / norm, "slope": slope}


def compute(ctx: FigureContext) -> dict:
    loaded = ctx.need_model(NAME)
    text = ctx.document or DOCUMENT
    tokens, kept = encode(text, loaded.vocab, loaded.spec.max_len)
    runs, n_samples = 5, 2000 if ctx.quick else 5000
    lime = lime_explain(loaded.params, tokens, loaded.spec, key=jax.random.PRNGKey(ctx.seed), words=kept,
                        runs=runs, n_samples=n_samples)
    eq19 = eq19_approximation(loaded.params, tokens, loaded.spec, words=kept)
    try:
        improved = improved_approximation(loaded.params, tokens, loaded.spec, nu=lime.nu, words=kept)
        improved_note = f"improved closed form at ν = {lime.nu:g}"
    except ValueError as err:  # not derived for this spec: say so instead of drawing nothing silently
        improved, improved_note = None, f"improved closed form unavailable: {err}"
    top = np.argsort(-np.abs(lime.coef[0]), kind="stable")[:TOP]
    mean = lime.coef.mean(axis=0)
    return {
        "text": text,
        "features": lime.words,
        "top": [int(j) for j in top],
        "coef_per_run": lime.coef,
        "eq19": eq19,
        "improved": improved,
        "improved_note": improved_note,
        "agreement_eq19": agreement(np.asarray(eq19), mean),
        "agreement_improved": agreement(np.asarray(improved), mean) if improved is not None else None,
        "lime": {"runs": runs, "n_samples": n_samples, "nu": lime.nu, "removal": lime.removal,
                 "ridge": lime.ridge, "seed": ctx.seed},
    }


def write_table(path, data: dict):
    coef = np.asarray(data["coef_per_run"])
    improved = data["improved"] if data["improved"] is not None else [float("nan")] * coef.shape[1]
    header = ["word", "eq19", "improved"] + [f"lime_run{r + 1}" for r in range(coef.shape[0])]
    rows = [[w, data["eq19"][j], improved[j], *coef[:, j]] for j, w in enumerate(data["features"])]
    return write_csv(path, header, rows)


def draw(data: dict) -> plt.Figure:
    coef = np.asarray(data["coef_per_run"])
    top = data["top"]
    words = [data["features"][j] for j in top]
    positions = np.arange(1, len(top) + 1)
    with style():
        fig, ax = plt.subplots(figsize=(11, 6.2), constrained_layout=True)
        ax.boxplot([coef[:, j] for j in top], positions=positions, showmeans=True, widths=0.5,
                   meanprops={"marker": "o", "markerfacecolor": "black", "markeredgecolor": "black",
                              "markersize": 5})
        ax.scatter(positions, np.asarray(data["eq19"])[top], marker="x", s=160, color=NEGATIVE,
                   linewidths=2.5, zorder=3, label="Eq. 19 approximation")
        if data["improved"] is not None:
            ax.scatter(positions, np.asarray(data["improved"])[top], marker="D", s=60, color="#2c7bb6",
                       zorder=3, label=data["improved_note"])
        ax.axhline(0, color="grey", linestyle=":", linewidth=1.2)
        ax.set_xticks(positions, words, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_xlabel("Token")
        ax.set_ylabel("Weight")
        lime, a19 = data["lime"], data["agreement_eq19"]
        ax.plot([], [], "o", color="black", label=f"LIME: mean (dot) and box over {lime['runs']} runs")
        ax.legend(loc="best")
        extra = ""
        if data["agreement_improved"]:
            ai = data["agreement_improved"]
            extra = f"; improved: r = {ai['pearson']:.3f}, rel. L2 = {ai['relative_l2']:.2f}"
        ax.set_title(f"LIME weights (n = {lime['n_samples']}, ν = {lime['nu']}, {lime['removal']}) on "
                     f"“{data['text'][:70]}{'…' if len(data['text']) > 70 else ''}”\n"
                     f"all {len(data['features'])} words vs LIME mean — Eq. 19: r = {a19['pearson']:.3f}, "
                     f"rel. L2 = {a19['relative_l2']:.2f}, slope {a19['slope']:.2f}{extra}", fontsize=11)
    return fig
