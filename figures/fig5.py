"""Figure 5: the gradient of the explained logit w.r.t. each position's embedding e_t,
"theory" (Theorem 1's closed form as the paper states it, compiled by `numerics.quantities`)
against "autodiff" (`jax.grad` of the true model), and their difference.

They agree at every word and padding position; at [CLS] (row 0) the closed form misses the
query path q = W_q e_0 (docs/theory.md §3.3), which the difference panel makes visible.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from attnverify.figures.common import SIGNED_CMAP, FigureContext, plt, style
from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN, encode

NAME = "fig5"
ROWS, COLUMNS = 10, 80  # the paper shows the first 10 positions and 80 coordinates


def compute(ctx: FigureContext) -> dict:
    """``theory`` and ``autodiff`` gradients (rows: positions, columns: embedding coordinates),
    cut to the first `ROWS` x `COLUMNS`, and the max |difference| at row 0 and at rows >= 1."""
    from attnverify.numerics.quantities import theorem1_quantities  # SymPy-backed: imported when data is computed
    loaded = ctx.need_model(NAME)
    tokens, kept = encode(ctx.text, loaded.vocab, loaded.spec.max_len)
    q = theorem1_quantities(loaded.spec)
    x = jnp.asarray(tokens)
    theory = np.asarray(q["paper"](loaded.params, x))
    autodiff = np.asarray(q["autodiff"](loaded.params, x))
    rows, cols = min(ROWS, loaded.spec.max_len), min(COLUMNS, loaded.spec.d_embed)
    known = [loaded.vocab[int(t)] == w for t, w in zip(tokens[1:], kept, strict=False)]
    labels = ([CLS_TOKEN] + [w if ok else f"{w}*" for w, ok in zip(kept, known, strict=True)]
              + [UNK_TOKEN + " (pad)"] * loaded.spec.max_len)
    diff = autodiff - theory
    return {
        "text": ctx.text,
        "labels": labels[:rows],
        "out_of_vocabulary": [w for w, ok in zip(kept, known, strict=True) if not ok],
        "theory": theory[:rows, :cols],
        "autodiff": autodiff[:rows, :cols],
        "max_abs_diff_cls_row": float(np.abs(diff[0]).max()),
        "max_abs_diff_other_rows": float(np.abs(diff[1:]).max()),
        "max_abs_gradient": float(np.abs(autodiff).max()),
        "dtype": str(theory.dtype),
    }


def draw(data: dict) -> plt.Figure:
    theory, autodiff = np.asarray(data["theory"]), np.asarray(data["autodiff"])
    diff = autodiff - theory
    rows, cols = theory.shape
    # The paper's colour range: the smaller of |max| and |min| over the word rows.
    body = autodiff[1:] if rows > 1 else autodiff
    vmax = float(min(abs(body.max()), abs(body.min()))) or float(np.abs(autodiff).max()) or 1.0
    dmax = float(np.abs(diff).max()) or 1.0
    with style():
        fig, axes = plt.subplots(3, 1, figsize=(13, 11), sharex=True, constrained_layout=True)
        panels = (
            ("Theory: Theorem 1 closed form", theory, vmax, "∂f/∂e_t"),
            ("Autodiff: jax.grad of the true model", autodiff, vmax, "∂f/∂e_t"),
            (f"Autodiff − theory ({data['dtype']}): max |diff| [CLS] row {data['max_abs_diff_cls_row']:.2e}, "
             f"other rows {data['max_abs_diff_other_rows']:.1e} "
             f"(absolute; the largest |∂f/∂e_t| is {data['max_abs_gradient']:.2g})",
             diff, dmax, "difference"),
        )
        for ax, (title, values, scale, label) in zip(axes, panels, strict=True):
            image = ax.imshow(values, cmap=SIGNED_CMAP, vmin=-scale, vmax=scale, aspect="auto",
                              interpolation="nearest")
            ax.set_title(title)
            ax.set_yticks(range(rows), data["labels"])
            fig.colorbar(image, ax=ax, label=label, pad=0.01)
        axes[-1].set_xlabel(f"embedding coordinate (first {cols})")
        unknown = " (* out of vocabulary: read as UNK)" if data["out_of_vocabulary"] else ""
        fig.suptitle(f"Gradient of the class-1 logit w.r.t. e_t on “{data['text']}”{unknown}\n"
                     "(colour range clipped to the word rows' range, as in the paper)")
    return fig
