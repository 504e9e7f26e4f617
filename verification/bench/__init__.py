"""`attnverify bench`: throughput, compile time, scaling and the LIME comparison with `lime`.
"""

from attnverify._faces import face

_EXPORTS = {
    "KNOWN": "tables",
    "TARGET_SPEC": "measures",
    "VERSUS": "lime_vs_package",
    "bench_enumeration": "lime_vs_package",
    "bench_paths": "lime_vs_package",
    "bench_versus_lime": "lime_vs_package",
    "cold_warm": "compile_time",
    "compile_split": "compile_time",
    "derive_and_compile": "measures",
    "device_scaling": "measures",
    "first_verdicts": "compile_time",
    "lime_benchmarks": "lime_vs_package",
    "lime_scaling": "lime_vs_package",
    "paper_text": "lime_vs_package",
    "run_benchmarks": "tables",
    "scaling": "measures",
    "sweep_throughput": "measures",
    "timed": "lime_vs_package",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = face(__name__, _EXPORTS)
