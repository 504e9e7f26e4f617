"""Wiegreffe & Pinter's tests on the §1 model (K = 1, synthetic tasks): the model-consistent
adversary's trade-off (mean TVD vs mean JSD per lambda) with J&W's per-instance adversaries and
the seed-to-seed JSD, and the accuracy of every arm of the uniform baseline and the diagnostic.

All numbers are means over the claims' fixed pool of task documents (`verification.claims.wp`),
for the models those claims train (cached: in a report they are not trained twice). The CSV lists
accuracy and F1 (class 1) per task and arm.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from attnverify.figures.common import FigureContext, plt, style
from attnverify.numerics.modelfile import atomic_write
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
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["study", "task", "arm", "accuracy", "f1"])
            writer.writeheader()
            writer.writerows(data["arms"])

    atomic_write(path, write)
    return Path(path)


def draw(data: dict) -> plt.Figure:
    with style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
        left.plot(data["curve_tvd"], data["curve_jsd"], "o-", label="W&P adversaries (trained)")
        for k, (lam, x, y) in enumerate(zip(data["lambdas"], data["curve_tvd"], data["curve_jsd"], strict=True)):
            # saturated adversaries sit on one point: stack their labels
            left.annotate(f"λ={lam:g}", (x, y), xytext=(-40, -12 - 10 * k), textcoords="offset points", fontsize=8)
        for eps, point in data["jw"].items():
            left.plot(point["tvd"], point["jsd"], "s", label=f"J&W exact ε-max JSD, ε={eps}")
        left.axhline(data["seed_jsd"], color="grey", ls="--", label=f"{data['seeds'] - 1} retrained seeds")
        left.axhline(np.log(2), color="black", lw=0.5)
        left.set_xlabel("mean TVD of the output vs the base")
        left.set_ylabel("mean JSD of the attention vs the base")
        left.set_title(f"Trade-off on {data['task']} ({data['documents']} documents)", fontsize=10)
        left.legend(fontsize=8, loc="lower right")
        rows = data["arms"]
        labels = [f"{r['task']}\n{r['arm']}" for r in rows]
        colours = ["C0" if r["study"].startswith("uniform") else "C1" for r in rows]
        right.bar(range(len(rows)), [r["accuracy"] for r in rows], color=colours)
        right.set_xticks(range(len(rows)), labels, rotation=90, fontsize=8)
        right.set_ylim(0.4, 1.02)
        right.set_ylabel("test accuracy")
        right.set_title("Uniform baseline (blue, seed 0) and diagnostic MLP (orange)", fontsize=10)
        fig.suptitle("Wiegreffe & Pinter's tests on the §1 model (K = 1)")
    return fig
