"""The paper's figures and new ones (matplotlib). This package never imports SymPy.
"""

from attnverify._faces import face

_EXPORTS = {
    "APPROXIMATIONS": "eq19_sweeps",
    "BINS": "jw_permutation",
    "CLAIMS": "thm1_hist",
    "COLOURS": "thm1_hist",
    "DOCUMENT": "fig4",
    "DS": "eq19_sweeps",
    "DTYPES": "thm1_hist",
    "FIGURES": "catalog",
    "FONT": "common",
    "FigureContext": "common",
    "LEGEND": "thm1_hist",
    "MARKERS": "bench_scaling",
    "MAX_WORDS": "fig3",
    "METHODS": "fig1",
    "NAMES": "eq19_sweeps",
    "NS": "eq19_sweeps",
    "NUS": "eq19_sweeps",
    "PERMUTATIONS": "jw_permutation",
    "RUNNING_SENTENCE": "common",
    "SIGNED_CMAP": "common",
    "STYLES": "eq19_sweeps",
    "TOP": "fig4",
    "agreement": "fig4",
    "caption": "catalog",
    "check_names": "catalog",
    "compute_eq19_d": "eq19_sweeps",
    "compute_eq19_n": "eq19_sweeps",
    "compute_eq19_nu": "eq19_sweeps",
    "draw_eq19_d": "eq19_sweeps",
    "draw_eq19_n": "eq19_sweeps",
    "draw_eq19_nu": "eq19_sweeps",
    "draw_for_report": "catalog",
    "figures_from_files": "catalog",
    "make": "catalog",
    "make_all": "catalog",
    "save": "bench_scaling",
    "save_figure": "common",
    "style": "common",
    "write_csv": "common",
    "write_json": "common",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = face(__name__, _EXPORTS)
