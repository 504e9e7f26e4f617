"""New figure: the distribution of Theorem 1's relative error over random draws, float64 vs float32.

Three claims of the `theorem1` group: the closed form at word positions (holds), the closed
form plus the query-path term at [CLS] (holds), and the bare closed form at [CLS] (fails).
The errors are those of `verification.sweep.draw_errors` (or the caller's sweep results);
the dashed line is each dtype's tolerance, so the gap between holding and failing shows.
"""

from __future__ import annotations

import numpy as np
from attnverify.figures.common import NEGATIVE, POSITIVE, FigureContext, plt, style
from attnverify.verification.sweep import draw_errors

NAME = "thm1_hist"
CLAIMS = ("thm1.gradient", "thm1.cls_term", "thm1.gradient_cls_row")
DTYPES = ("float64", "float32")
COLOURS = {"thm1.gradient": POSITIVE, "thm1.cls_term": "#2c7bb6", "thm1.gradient_cls_row": NEGATIVE}
LEGEND = {
    "thm1.gradient": "closed form, word rows t ≥ 1",
    "thm1.cls_term": "closed form + query-path term, [CLS] row",
    "thm1.gradient_cls_row": "closed form alone, [CLS] row",
}


def compute(ctx: FigureContext) -> dict:
    """``errors[dtype][claim id]``: relative errors per draw; ``tolerance[dtype]``."""
    from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry; SymPy-backed)
    from attnverify.verification.registry import REGISTRY  # SymPy-backed: imported when data is computed
    trials = 64 if ctx.quick else 512
    errors: dict[str, dict[str, list[float]]] = {}
    for dtype in DTYPES:
        errors[dtype] = {}
        for cid in CLAIMS:
            known = ctx.sweeps.get((cid, dtype))
            if known is None:
                known = draw_errors(REGISTRY[cid], ctx.claims_spec, trials=trials, seed=ctx.seed,
                                    dtype=dtype, progress=False)
            errors[dtype][cid] = [float(x) for x in known]
    return {
        "errors": errors,
        "tolerance": {dtype: REGISTRY[CLAIMS[0]].tolerance[dtype] for dtype in DTYPES},
        "statements": {cid: REGISTRY[cid].statement for cid in CLAIMS},
        "spec": ctx.claims_spec.to_json(),
        "seed": ctx.seed,
    }


def draw(data: dict) -> plt.Figure:
    with style():
        fig, axes = plt.subplots(1, len(DTYPES), figsize=(11.5, 5.2), sharey=True, constrained_layout=True)
        every = np.concatenate([np.asarray(v, float) for d in data["errors"].values() for v in d.values()])
        every = every[np.isfinite(every) & (every > 0)]
        low, high = np.floor(np.log10(every.min())) - 0.5, np.ceil(np.log10(every.max())) + 0.5
        bins = np.linspace(low, high, 60)
        for ax, dtype in zip(axes, DTYPES, strict=True):
            for cid, values in data["errors"][dtype].items():
                values = np.asarray(values, float)
                # An exact zero (possible in float32) is drawn at the left edge.
                logs = np.log10(np.clip(values, 10 ** (low + 0.01), None))
                ax.hist(logs, bins=bins, alpha=0.7, color=COLOURS.get(cid), label=f"{cid}: {LEGEND.get(cid, '')}")
            tolerance = data["tolerance"][dtype]
            ax.axvline(np.log10(tolerance), color="black", linestyle="--", label="tolerance")
            ax.text(np.log10(tolerance) + 0.2, 0.97, f"tolerance\n{tolerance:g}", va="top",
                    transform=ax.get_xaxis_transform())
            # the legend is shared; the number of draws is each panel's own (a report's float32 draws are
            # the figure's, its float64 draws the claims' sweeps)
            counts = sorted({len(values) for values in data["errors"][dtype].values()})
            ax.set_title(f"{dtype} ({' / '.join(map(str, counts))} random models)")
            ax.set_xlabel("log10 relative error  max|lhs − rhs| / max|rhs|")
        axes[0].set_ylabel("random draws")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle("Theorem 1 against jax.grad over random draws: rounding level where it holds, "
                     "O(1) at [CLS] without the query-path term")
    return fig
