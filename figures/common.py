"""What every figure shares: the Agg backend, colours, and writing PNG + PDF + data files.

Every figure module has ``compute(...) -> dict`` (the numbers, from `numerics` or
`verification` functions, JSON-ready) and ``draw(data) -> Figure`` (matplotlib only), and
`figures.catalog` ties them to a name. The data file next to each image is what was drawn.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Files only, no display: Agg, whatever the environment asks. matplotlib reads $MPLBACKEND when it
# is first imported, and a value it does not know ended the command in its traceback: it is
# hidden from that import, then put back for the processes this one starts.
_CHOSEN_BACKEND = os.environ.pop("MPLBACKEND", None)
try:
    import matplotlib
finally:
    if _CHOSEN_BACKEND is not None:
        os.environ["MPLBACKEND"] = _CHOSEN_BACKEND

matplotlib.use("Agg")  # also where matplotlib was imported before (a notebook); must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
from attnverify.numerics.modelfile import ModelFile, atomic_write  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402

from attnverify.errors import InputError, warn  # noqa: E402
from attnverify.spec import SMALL, ModelSpec  # noqa: E402
from attnverify.validate import dumps  # noqa: E402

POSITIVE, NEGATIVE = "#1a9641", "#d7191c"  # green = pushes towards class 1, red = away
#: Red-white-green for signed heat maps (the paper's Figure 5 palette).
SIGNED_CMAP = LinearSegmentedColormap.from_list("red_white_green", [NEGATIVE, "#ffffff", POSITIVE])
FONT = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10}

#: The running sentence of Figures 1, 3 and 5 (docs/theory.md §7).
RUNNING_SENTENCE = "attention based explanations are popular but questionable"


@dataclass
class FigureContext:
    """Inputs shared by the figures: a model, the explained text, a seed, a size preset
    (`quick`: fewer draws and runs), the spec of the random-draw sweeps, and sweep results when
    the caller already has them (``{(claim id, dtype): errors}``)."""

    model: ModelFile | None = None
    #: What the legends call `model`: "trained" (by `attnverify train` or the report) or "given".
    model_origin: str = "given"
    text: str = RUNNING_SENTENCE
    document: str | None = None  # fig4's document (None: the figure's own default)
    seed: int = 0
    quick: bool = False
    claims_spec: ModelSpec = SMALL  # the random-draw sweeps' model (as `attnverify verify`)
    sweeps: dict[tuple[str, str], Sequence[float]] = field(default_factory=dict)

    def need_model(self, name: str) -> ModelFile:
        if self.model is None:
            raise InputError(f"figure {name} needs a model file", parameter="model")
        return self.model


def _json_default(value: Any):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(path: Path, data: dict) -> Path:
    """Strict JSON (`validate.dumps`): a non-finite number is null with its reason beside."""
    plain = json.loads(json.dumps(data, default=_json_default))  # arrays as lists, NaN kept for `dumps`
    atomic_write(path, lambda tmp: Path(tmp).write_text(dumps(plain, indent=2) + "\n"))
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    atomic_write(path, write)
    return path


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    """``NAME.png`` (150 dpi) and ``NAME.pdf`` in `out_dir`, each written atomically; closes `fig`."""
    paths = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for suffix, options in ((".png", {"dpi": 150}), (".pdf", {})):
                path = out_dir / f"{name}{suffix}"
                atomic_write(path, lambda tmp, o=options, s=suffix: fig.savefig(
                    tmp, format=s[1:], bbox_inches="tight", **o))
                paths.append(path)
    finally:
        plt.close(fig)
    _report_warnings(name, caught)
    return paths


def _report_warnings(name: str, caught: list) -> None:
    """Matplotlib's warnings while a figure was written, as one line: the glyphs its font lacks
    (a text in a script the font does not cover), else the first warning's text."""
    if not caught:
        return
    messages = [str(w.message) for w in caught]
    glyphs = sorted({chr(int(m.split()[1])) for m in messages
                     if m.startswith("Glyph ") and "missing from font" in m and m.split()[1].isdigit()})
    if glyphs:
        shown = " ".join(glyphs[:8]) + (f" and {len(glyphs) - 8} more" if len(glyphs) > 8 else "")
        warn(f"{name}: the figure's font has no glyph for {len(glyphs)} character(s) of the text ({shown}): "
             "they are drawn as empty boxes")
    else:
        warn(f"{name}: {messages[0].splitlines()[0]}")


def style():
    """Context manager with the house fonts; every ``draw`` builds its figure inside it."""
    return plt.rc_context(FONT)
