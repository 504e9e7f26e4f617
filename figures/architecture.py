"""The model drawn from its spec (the paper's architecture figure): [CLS] and
the words, embedded (with positions when the spec has them), K heads whose query comes from [CLS] (or the spec's query),
a per-head read-out, and the aggregation over heads; every spec switch that changes the model
is written on the part it changes (docs/theory.md §1).
"""

from __future__ import annotations

import json

from attnverify.figures.common import FigureContext, plt, style
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

NAME = "architecture"
#: The spec fields drawn (each changes the model); the paper's values are the defaults shown.
SWITCHES = ("positional", "query", "scorer", "scale_scores", "value_nonlinearity", "head_aggregation",
            "output_link", "biases")


def compute(ctx: FigureContext) -> dict:
    """The spec as a dict (the model's when given, else the claims' spec)."""
    spec = ctx.model.spec if ctx.model is not None else ctx.claims_spec
    values = json.loads(spec.to_json())
    return {"spec": values, "switches": {k: values.get(k) for k in SWITCHES if k in values}}


def _box(ax, x, y, w, h, text, colour="#eef3fb", size=10):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=colour, edgecolor="#333333"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def _arrow(ax, a, b):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color="#333333", linewidth=1.2))


def draw(data: dict) -> plt.Figure:
    spec = data["spec"]
    K = int(spec.get("heads", 1))
    shown = min(K, 4)
    with style():
        fig, ax = plt.subplots(figsize=(9, 6))
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 7)
        ax.axis("off")
        last = spec.get("max_len")  # T positions: [CLS] at 0, words (or UNK padding) at 1..T - 1
        tokens = ["[CLS]", "w1", "w2", "…", f"w{last - 1}" if isinstance(last, int) else "w(T−1)"]
        for i, t in enumerate(tokens):
            _box(ax, 0.6 + 1.8 * i, 0.3, 1.4, 0.6, t, "#fff4d6" if i == 0 else "#f5f5f5")
        positional = "word + position embedding" if spec.get("positional") else "word embedding (no positions)"
        _box(ax, 0.6, 1.3, 8.6, 0.6, f"{positional}, d_e = {spec.get('d_embed')}")
        for i in range(5):
            _arrow(ax, (1.3 + 1.8 * i, 0.9), (1.3 + 1.8 * i, 1.3))
        width = 8.6 / shown
        query = spec.get("query", "cls")
        for h in range(shown):
            x = 0.6 + h * width
            # the last box drawn is head K: "… head K" says heads were left out before it
            label = f"head {h + 1}" if (h < shown - 1 or shown == K) else f"… head {K}"
            _box(ax, x + 0.1, 2.4, width - 0.2, 1.5,
                 f"{label}\nquery from {query}\nscore: {spec.get('scorer')}"
                 f"{' /√d_att' if spec.get('scale_scores') else ''}\nsoftmax over T", "#e3f4e3", size=9)
            nonlinearity = spec.get("value_nonlinearity")
            readout = "read-out" + ("" if nonlinearity in (None, "none") else f" ({nonlinearity})")
            _box(ax, x + 0.1, 4.3, width - 0.2, 0.7, readout, "#eef3fb", size=9)
            _arrow(ax, (x + width / 2, 1.9), (x + width / 2, 2.4))
            _arrow(ax, (x + width / 2, 3.9), (x + width / 2, 4.3))
            _arrow(ax, (x + width / 2, 5.0), (5.0, 5.5))
        _box(ax, 2.5, 5.5, 5.0, 0.6, f"{spec.get('head_aggregation')} over the {K} heads", "#fbe3e3")
        _arrow(ax, (5.0, 6.1), (5.0, 6.4))
        bias = "with biases" if spec.get("biases") else "no biases"
        ax.text(5.0, 6.6, f"output: {spec.get('output_link')} of class {spec.get('explained_class', 1)} ({bias})",
                ha="center", fontsize=10)
        drawn = f" ({shown} of {K} heads drawn)" if K > shown else ""
        ax.set_title(f"The model, drawn from its spec{drawn}", fontsize=12)
    return fig
