"""Figure 1: seven explanations of one sentence, one highlighted strip each.

α-avg and α-max (attention of the [CLS] row), LIME (`numerics.lime.engine.lime_explain`, lime's
defaults: deletion, ν = 0.25, ridge 1, n = 5000 samples, the mean of 5 runs; 2000 samples and 3 runs
in the report's quick preset, as the figure says), and the gradient
explanations G-avg, G-l1, G-l2 and G×I (`numerics.explanations`, `jax.grad` of the true
model). Green: positive, red: negative; opacity ∝ |value| / max |value| within each strip (a strip
of rounding noise, |value| <= 1e-12 |logit|, is not coloured).
Attention and the gradient norms carry no sign, so they are all green (docs/theory.md §2, §7).
"""

from __future__ import annotations

import jax
import numpy as np
from attnverify.figures.common import (
    NEGATIVE,
    POSITIVE,
    RUNNING_SENTENCE,
    FigureContext,
    plt,
    style,
    write_csv,
)
from attnverify.numerics.tokenize import encode

NAME = "fig1"
#: In-vocabulary stand-ins for the paper's words that a model's vocabulary may lack (same sense),
#: tried in order; the first one the vocabulary holds replaces the word in the running example.
SUBSTITUTES = {"questionable": ("doubtful", "bad", "wrong", "awful"), "explanations": ("reasons", "answers"),
               "attention": ("focus", "care"), "popular": ("famous", "loved", "good"), "based": ("built",)}


def in_vocabulary_example(text: str, vocab: list[str]) -> str:
    """`text` with each out-of-vocabulary word replaced by its first SUBSTITUTES entry that `vocab`
    holds (a word without one is kept, and drawn as UNK)."""
    known = set(vocab)
    out = []
    for word in text.split():
        if word not in known:
            word = next((w for w in SUBSTITUTES.get(word, ()) if w in known), word)
        out.append(word)
    return " ".join(out)
#: Strip order and labels of the paper; values are keyed by `numerics.explanations.NAMES`.
METHODS = (("alpha_avg", "α-avg"), ("alpha_max", "α-max"), ("lime", "LIME"), ("grad_avg", "G-avg"),
           ("grad_l1", "G-l1"), ("grad_l2", "G-l2"), ("grad_x_input", "G×I"))


def compute(ctx: FigureContext) -> dict:
    """Per word position: every explanation (LIME: the mean over runs of the coefficient of that
    position's word), the explained logit, and the LIME settings."""
    from attnverify.numerics.explanations import explain  # SymPy-backed: imported when data is computed
    from attnverify.numerics.lime.engine import lime_explain  # SymPy-backed: imported when data is computed
    loaded = ctx.need_model(NAME)
    text = in_vocabulary_example(ctx.text, list(loaded.vocab))
    paper_tokens, paper_words = encode(ctx.text, loaded.vocab, loaded.spec.max_len)
    tokens, kept = encode(text, loaded.vocab, loaded.spec.max_len)
    values = explain(loaded.params, tokens, loaded.spec, len(kept))
    runs, n_samples = (3, 2000) if ctx.quick else (5, 5000)
    lime = lime_explain(loaded.params, tokens, loaded.spec, key=jax.random.PRNGKey(ctx.seed), words=kept,
                        runs=runs, n_samples=n_samples)
    mean = dict(zip(lime.words, lime.coef.mean(axis=0), strict=True))
    values["lime"] = [float(mean[w]) for w in kept]
    return {
        "text": text,
        "paper_text": ctx.text,
        "paper_sentence": ctx.text == RUNNING_SENTENCE,  # else the user's --text
        "paper_words": paper_words,
        "paper_in_vocabulary": [loaded.vocab[int(t)] == w
                                for t, w in zip(paper_tokens[1:], paper_words, strict=False)],
        "words": kept,
        "in_vocabulary": [loaded.vocab[int(t)] == w for t, w in zip(tokens[1:], kept, strict=False)],
        "values": {key: values[key] for key, _ in METHODS},
        "logit": values["logit"],
        "lime": {"runs": runs, "n_samples": n_samples, "nu": lime.nu, "removal": lime.removal,
                 "ridge": lime.ridge, "seed": ctx.seed, "coef_per_run": lime.coef, "features": lime.words},
    }


def write_table(path, data: dict):
    header = ["word"] + [key for key, _ in METHODS]
    rows = [[w] + [data["values"][key][j] for key, _ in METHODS] for j, w in enumerate(data["words"])]
    return write_csv(path, header, rows)


def _label(value: float) -> str:
    """At most 6 characters, so the label of a short word ("but") stays under its box:
    +0.16, -0.62, +4.9, +2e-04 (the data file keeps every digit)."""
    if value == 0 or abs(value) >= 10:
        return f"{value:+.3g}"
    return f"{value:+.2f}" if abs(value) >= 0.01 else f"{value:+.0e}"


def _strip(ax, fig, y: float, words: list[str], values: np.ndarray, x0: float, fontsize: float,
           noise: bool = False) -> float:
    """One row of highlighted words at height y, starting at x0 (both in inches); returns the end x.
    A strip of rounding noise (`noise`) is not coloured."""
    renderer = fig.canvas.get_renderer()
    inches = fig.dpi_scale_trans
    scale = np.inf if noise else float(np.abs(values).max()) or 1.0
    x = x0
    for word, value in zip(words, values, strict=True):
        colour = POSITIVE if value >= 0 else NEGATIVE
        text = ax.text(x, y, word, fontsize=fontsize, va="center", ha="left", transform=inches,
                       bbox={"boxstyle": "round,pad=0.25", "facecolor": colour, "edgecolor": "none",
                             "alpha": abs(value) / scale})
        box = text.get_window_extent(renderer).transformed(inches.inverted())
        ax.text((box.x0 + box.x1) / 2, box.y0 - 0.1, _label(value), fontsize=fontsize * 0.55,
                ha="center", va="top", color="#444444", transform=inches)
        x = box.x1 + 0.16
    return x


def _plain_strip(ax, fig, y: float, words: list[str], known: list[bool], x0: float, fontsize: float) -> float:
    """The paper's sentence as our vocabulary reads it: words it lacks boxed in grey as UNK."""
    renderer = fig.canvas.get_renderer()
    inches = fig.dpi_scale_trans
    x = x0
    for word, ok in zip(words, known, strict=True):
        text = ax.text(x, y, word, fontsize=fontsize * 0.8, va="center", ha="left", transform=inches,
                       color="#333333" if ok else "#b00000",
                       bbox={"boxstyle": "round,pad=0.25", "facecolor": "#dddddd" if not ok else "none",
                             "edgecolor": "#b00000" if not ok else "none"})
        x = text.get_window_extent(renderer).transformed(inches.inverted()).x1 + 0.16
    return x


def draw(data: dict) -> plt.Figure:
    from attnverify.numerics.explanations import is_rounding_noise  # SymPy-backed: imported when drawn

    words = [w if ok else f"{w}*" for w, ok in zip(data["words"], data["in_vocabulary"], strict=True)]
    fontsize, row_height, label_width = 18, 0.95, 1.2
    rows = len(METHODS)
    height = row_height * (rows + (1 if data.get("paper_words", []) not in ([], data["words"]) else 0)) + 0.8
    with style():
        fig = plt.figure(figsize=(12, height))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.axis("off")
        fig.canvas.draw()
        end, noisy = 0.0, False
        for r, (key, label) in enumerate(METHODS):
            y = height - 0.9 - r * row_height
            values = np.asarray(data["values"][key], float)
            noise = is_rounding_noise(values, data["logit"])  # not coloured: it would show solid
            noisy |= noise
            ax.text(0.15, y, label + ("\n≈ 0" if noise else ""), fontsize=fontsize * 0.8, va="center", ha="left",
                    weight="bold", transform=fig.dpi_scale_trans)
            end = max(end, _strip(ax, fig, y, words, values, label_width, fontsize, noise))
        unknown = "   * out of vocabulary: read as UNK." if not all(data["in_vocabulary"]) else ""
        paper_words = data.get("paper_words", [])
        paper_sentence = data.get("paper_sentence", True)
        if paper_words and paper_words != data["words"]:
            y = height - 0.9 - rows * row_height
            ax.text(0.15, y, "paper" if paper_sentence else "given", fontsize=fontsize * 0.8, va="center",
                    ha="left", weight="bold",
                    color="#555555", transform=fig.dpi_scale_trans)
            marked = [w if ok else f"{w} = UNK" for w, ok in zip(paper_words, data["paper_in_vocabulary"],
                                                                   strict=True)]
            end = max(end, _plain_strip(ax, fig, y, marked, data["paper_in_vocabulary"], label_width, fontsize))
        lime = data["lime"]
        whose = "the paper's" if paper_sentence else "the given"
        paper = (f"  Bottom row: {whose} sentence “{data['paper_text']}” as our vocabulary reads it."
                 if paper_words and paper_words != data["words"] else "")
        header = (f"“{data['text']}”: class-1 logit {data['logit']:+.3f}.  Green: positive, red: negative; "
                  "opacity ∝ |value| / max per strip."
                  f"\nLIME: mean of {lime['runs']} runs, "
                  f"n = {lime['n_samples']}, ν = {lime['nu']}, {lime['removal']} removal.{unknown}"
                  f"{'   ≈ 0: rounding noise, not coloured.' if noisy else ''}\n{paper}")
        title = ax.text(0.15, height - 0.1, header, fontsize=10, va="top", transform=fig.dpi_scale_trans)
        end = max(end, title.get_window_extent(fig.canvas.get_renderer())
                  .transformed(fig.dpi_scale_trans.inverted()).x1)
        fig.set_size_inches(end + 0.2, height)
    return fig
