"""Wiegreffe & Pinter's tests on the §1 model (K = 1, synthetic tasks): the model-consistent
adversary's trade-off (mean TVD vs mean JSD per lambda) with J&W's per-instance adversaries and
the seed-to-seed JSD, and the accuracy of every arm of the uniform baseline and the diagnostic.

All numbers are means over the claims' fixed pool of task documents (`verification.claims.wp`),
for the models those claims train (cached: in a report they are not trained twice). The CSV lists
accuracy and F1 (class 1) per task and arm.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from attnverify.figures.common import FigureContext, plt, style, write_csv
from attnverify.numerics.related import wiegreffe_pinter as wp
from attnverify.numerics.related import wp_diagnostic as wd

NAME = "wp_tradeoff"


def _arms(spec) -> list[dict]:
    """Accuracy and F1 on the pool per (study, task, arm); baseline arms are seed-0 models."""
    from attnverify.verification.claims import wp as cw  # SymPy-backed: imported when data is computed
    wspec, rows = wp.wp_spec(spec), []
    for task in cw.TASKS:
        docs, y = cw.pool_documents(spec, task)
        for attention in wp.ATTENTIONS:
            z = cw.pool_logits(cw.model(spec, task, attention, 0), docs, wspec, attention)
            accuracy, f1 = wp.accuracy_f1(z, y)
            rows.append({"study": "uniform baseline (22)", "task": task, "arm": attention,
                         "accuracy": float(accuracy), "f1": float(f1)})
    for task in cw.DIAGNOSTIC_TASKS:
        docs, y = cw.pool_documents(spec, task)
        base = cw.model(spec, task)
        adversary = cw.adversary_models(spec, task)[wp.LAMBDAS.index(cw.DIAGNOSTIC_LAMBDA)]
        mlps = cw.diagnostic_mlps(spec, task)
        for i, arm in enumerate(wd.ARMS):
            accuracy, f1 = wp.accuracy_f1(cw.pool_arm_logits(i, wp.unstack(mlps, i), docs, wspec, base, adversary), y)
            rows.append({"study": "diagnostic MLP (25)", "task": task, "arm": arm,
                         "accuracy": float(accuracy), "f1": float(f1)})
    return rows


def compute(ctx: FigureContext) -> dict:
    """The trade-off curve, J&W's points and the seed JSD (needle), and the arms' accuracy and F1."""
    from attnverify.verification.claims import wp as cw  # SymPy-backed: imported when data is computed
    spec, task = ctx.claims_spec, cw.CALIBRATION_TASK
    curve = cw.pool(spec, "curve", task, "float64")
    calibration = cw.pool(spec, "calibration", task, "float64")
    needle = np.asarray(cw.pool_documents(spec, task)[1]) == 1
    seed_jsd = np.asarray(calibration["seed_jsd"])
    return {
        "task": task, "lambdas": list(wp.LAMBDAS),
        "curve_tvd": [float(v) for v in jnp.mean(curve["tvd"], axis=1)],
        "curve_jsd": [float(v) for v in jnp.mean(curve["jsd"], axis=1)],
        "jw": {str(eps): {"tvd": float(jnp.mean(calibration[f"jw_tvd_{eps}"])),
                          "jsd": float(jnp.mean(calibration[f"jw_jsd_{eps}"])),
                          "jsd_needle": float(np.mean(np.asarray(calibration[f"jw_jsd_{eps}"])[needle])),
                          "jsd_no_needle": float(np.mean(np.asarray(calibration[f"jw_jsd_{eps}"])[~needle]))}
               for eps in cw.EPSILONS},
        "seed_jsd": float(seed_jsd.mean()), "seed_jsd_needle": float(seed_jsd[needle].mean()),
        "seed_jsd_no_needle": float(seed_jsd[~needle].mean()),
        "seeds": cw.CALIBRATION_SEEDS, "documents": cw.POOL, "arms": _arms(spec),
    }


def write_table(path: Path, data: dict) -> Path:
    fields = ("study", "task", "arm", "accuracy", "f1")
    return write_csv(Path(path), fields, [[arm[field] for field in fields] for arm in data["arms"]])


def draw(data: dict) -> plt.Figure:
    with style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5.6), constrained_layout=True)
        # markers only: a line between adversaries would show trade-offs no adversary was trained for
        left.plot(data["curve_tvd"], data["curve_jsd"], "o", label="W&P adversaries (trained)")
        for k, (lam, x, y) in enumerate(zip(data["lambdas"], data["curve_tvd"], data["curve_jsd"], strict=True)):
            # saturated adversaries sit on one point: stack their labels
            left.annotate(f"λ={lam:g}", (x, y), xytext=(8, -4) if x < 0.1 else (-40, -12 - 10 * k),
                          textcoords="offset points", fontsize=8)
        for k, (eps, point) in enumerate(data["jw"].items()):
            colour = f"C{k + 1}"
            left.plot(point["tvd"], point["jsd"], "s", color=colour, label=f"J&W exact ε-max JSD, ε={eps}")
            # the pooled mean hides two groups: documents with the needle and without it
            left.plot([point["tvd"]] * 2, [point["jsd_needle"], point["jsd_no_needle"]], "v", color=colour,
                      mfc="none", label=f"  with / without the needle: {point['jsd_needle']:.2g} / "
                                        f"{point['jsd_no_needle']:.2g}")
        seeds = data["seeds"] - 1
        left.axhline(data["seed_jsd"], color="grey", ls="--", label=f"{seeds} retrained seeds ({data['seed_jsd']:.2g})")
        left.axhline(data["seed_jsd_needle"], color="grey", ls=":",
                     label=f"  with the needle ({data['seed_jsd_needle']:.2g})")
        left.axhline(data["seed_jsd_no_needle"], color="grey", ls="-.",
                     label=f"  without it ({data['seed_jsd_no_needle']:.2g})")
        left.axhline(np.log(2), color="black", lw=0.5, label="ln 2, the largest JSD")
        left.set_xlabel("mean TVD of the output vs the base")
        left.set_ylabel("mean JSD of the attention vs the base")
        left.set_title(f"Trade-off on {data['task']} ({data['documents']} documents)", fontsize=10)
        left.set_ylim(-0.02, 0.76)
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        rows = data["arms"]
        labels = [f"{r['task']}\n{r['arm']}" for r in rows]
        colours = ["C0" if r["study"].startswith("uniform") else "C1" for r in rows]
        right.bar(range(len(rows)), [r["accuracy"] for r in rows], color=colours)
        right.set_xticks(range(len(rows)), labels, rotation=90, fontsize=8)
        right.axhline(0.5, color="black", lw=0.5, ls="--")
        right.annotate("0.5", (len(rows) - 0.5, 0.5), xytext=(2, 0), textcoords="offset points", va="center",
                       fontsize=8)
        right.set_ylim(0, 1.02)
        right.set_ylabel("test accuracy")
        right.set_title("Uniform baseline (blue, seed 0) and diagnostic MLP (orange)", fontsize=10)
        fig.suptitle("Wiegreffe & Pinter's tests on the §1 model (K = 1)")
    return fig
