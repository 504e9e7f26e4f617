"""Figure 3: each head's self-attention matrix over [CLS] and the first words of one text.

The model computes every row but only the [CLS] row (the query q = W_q e_0) reaches the
output; it is outlined. The softmax runs over all T positions, UNK padding included, so a
displayed row sums to less than 1: the number right of the [CLS] row is its displayed sum
(docs/theory.md §7, Figure 3).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from attnverify.figures.common import FigureContext, plt, style
from attnverify.numerics import model as nm
from attnverify.numerics.tokenize import CLS_TOKEN, encode
from matplotlib.patches import Rectangle

NAME = "fig3"
MAX_WORDS = 12  # more columns would make the tick labels unreadable
#: A cell is labelled with its value only when it holds at least this share of its head's maximum.
LABEL_SHARE = 0.5


def compute(ctx: FigureContext) -> dict:
    """Attention of every head on [CLS] + the first words: ``attention`` (K, n, n) with rows
    = queries, columns = keys; ``cls_row_total`` (K,) is the [CLS] row's mass over those n."""
    loaded = ctx.need_model(NAME)
    tokens, kept = encode(ctx.text, loaded.vocab, loaded.spec.max_len)
    kept = kept[:MAX_WORDS]
    n = 1 + len(kept)
    e = nm.embed(loaded.params, jnp.asarray(tokens), loaded.spec)
    full = np.asarray(nm.self_attention(loaded.params, e, loaded.spec))
    return {
        "text": ctx.text,
        "labels": [CLS_TOKEN] + kept,
        "in_vocabulary": [True] + [loaded.vocab[int(t)] == w for t, w in zip(tokens[1:n], kept, strict=True)],
        "attention": full[:, :n, :n],
        "cls_row_total": full[:, 0, :n].sum(axis=1),
        "T": loaded.spec.max_len,
    }


def draw(data: dict, *, shared_scale: bool = False) -> plt.Figure:
    """One heat map per head; each head on its own colour scale (as the paper) unless
    `shared_scale`; only cells with at least LABEL_SHARE of the head's maximum carry a label."""
    attention = np.asarray(data["attention"])
    K, n, _ = attention.shape
    labels = [w if ok else f"{w}*" for w, ok in zip(data["labels"], data["in_vocabulary"], strict=True)]
    cols = min(K, 3)
    rows = math.ceil(K / cols)
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1.5, 4.4 * rows + 1.2), squeeze=False,
                                 sharex=True, sharey=True, constrained_layout=True)
        for i, ax in enumerate(axes.flat):
            if i >= K:
                ax.axis("off")
                continue
            vmax = float(attention.max() if shared_scale else attention[i].max()) or 1.0
            image = ax.imshow(attention[i], cmap="Greens", vmin=0, vmax=vmax)
            if not shared_scale:
                fig.colorbar(image, ax=ax, shrink=0.8, format="%.3f")
            ax.set_title(f"Head {i + 1}   ([CLS] row Σ = {data['cls_row_total'][i]:.2f})")
            ax.set_xticks(range(n), labels, rotation=60, ha="right", rotation_mode="anchor")
            ax.set_yticks(range(n), labels)
            ax.tick_params(labelbottom=i >= K - cols, labelleft=i % cols == 0)
            ax.add_patch(Rectangle((-0.5, -0.5), n, 1, fill=False, edgecolor="black", linewidth=2.2))
            for r in range(n):
                for c in range(n):
                    value = attention[i, r, c]
                    if value >= LABEL_SHARE * vmax and n <= 9:
                        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=9,
                                color="white" if value > 0.6 * vmax else "black")
            if i % cols == 0:
                ax.set_ylabel("query position")
            if i >= K - cols:
                ax.set_xlabel("key position")
        if shared_scale:
            fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="attention weight")
        scale = "one colour scale for all heads" if shared_scale else "each head on its own colour scale"
        unknown = "" if all(data["in_vocabulary"]) else "   (* out of vocabulary: read as UNK)"
        fig.suptitle(
            f"Self-attention per head on “{data['text']}”{unknown}\n"
            "Only the outlined [CLS] row reaches the output. Each row is a softmax over all "
            f"T = {data['T']} positions (padding included),\nso the [CLS] row shown sums to Σ < 1; {scale}.",
            fontsize=12,
        )
    return fig
