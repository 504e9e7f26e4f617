"""Benchmark scaling on log-log axes: throughput against each varied size (`attnverify bench
scaling lime --figure PATH`). Reads the numbers `attnverify bench` measured; computes nothing.

One panel per benchmark family: the Theorem 1 sweep (models/s against chunk size, T, K, d_e,
and the number of devices) and one LIME explanation (samples/s against n, d, T, K). Each
varied size is one line through its measured points, so a slope of -1 reads "cost linear in
that size".
"""

from __future__ import annotations

from pathlib import Path

from attnverify.figures.common import plt, style  # pyplot once common has chosen the backend
from attnverify.numerics.modelfile import atomic_write

from attnverify.errors import InputError

#: The benchmarks `draw` plots (`attnverify bench --figure` needs one of them).
PLOTTED = ("scaling", "devices", "lime")

MARKERS = {"chunk": "o", "T": "s", "K": "^", "d_e": "D", "n": "v", "d": "P", "devices": "X"}


def _lines(ax, rows: list[dict], rate: str, label_unit: str) -> None:
    varied = dict.fromkeys(r["vary"] for r in rows)
    for vary in varied:
        points = sorted((r["value"], r[rate]) for r in rows if r["vary"] == vary)
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker=MARKERS.get(vary, "o"), label=f"vary {vary}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("value of the varied size (log2)")
    ax.set_ylabel(label_unit)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def draw(results: dict) -> plt.Figure:
    """results: the dict `attnverify bench` returns (needs ``scaling`` and/or ``lime.scaling``)."""
    panels = []
    sweep = list(results.get("scaling") or [])
    sweep += [{"vary": "devices", "value": r["devices"], "models_per_s": r["models_per_s"]}
              for r in results.get("devices") or []]
    if sweep:
        panels.append(("Theorem 1 sweep (T=16, K=8, d_e=32 base)", sweep, "models_per_s", "models / s"))
    lime_rows = (results.get("lime") or {}).get("scaling") or []
    if lime_rows:
        panels.append(("one LIME explanation (n=5000, d=100, T=256, K=6 base)", lime_rows, "samples_per_s",
                       "perturbed documents / s"))
    if not panels:
        raise InputError(f"bench figure: run the {', '.join(PLOTTED)} benchmarks to have something to plot")
    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False)
        for ax, (title, rows, rate, unit) in zip(axes[0], panels, strict=True):
            _lines(ax, rows, rate, unit)
            ax.set_title(title)
        fig.suptitle(f"benchmark scaling on {results.get('machine', 'this machine')}", fontsize=11)
        fig.tight_layout()
    return fig


def save(results: dict, path: str | Path) -> Path:
    """Draw and write the figure to `path` (.png or .pdf), atomically."""
    path = Path(path)
    if path.suffix not in (".png", ".pdf"):
        raise InputError(f"bench figure: {path} must end in .png or .pdf")
    fig = draw(results)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
