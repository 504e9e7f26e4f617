"""Claims registry, sweeps, the results store and empirical summaries. Claims fill the
registry when `verification.claims` is imported; reports and benchmarks live in
`verification.report` and `verification.bench`.
"""

from attnverify._faces import face

_EXPORTS = {
    "ANALYSES": "related",
    "APPROXIMATIONS": "lime_sweep",
    "BLOCK": "sweep",
    "ChunkStore": "store",
    "Claim": "registry",
    "ClaimResult": "sweep",
    "DTYPES": "sweep",
    "MAX_CACHED_BLOCKS": "sweep",
    "MAX_EXACT_D": "lime_sweep",
    "PAPER_HYPOTHESES": "registry",
    "Point": "lime_sweep",
    "REGISTRY": "registry",
    "RESUME_KEYS": "store",
    "TARGETS": "lime_sweep",
    "Z": "empirical",
    "analyse": "related",
    "check_point": "lime_sweep",
    "check_sweep_arguments": "sweep",
    "claim_block": "sweep",
    "claims_table": "table",
    "difference": "empirical",
    "document_length": "lime_sweep",
    "draw_errors": "sweep",
    "draw_mesh": "sweep",
    "effective_chunk_size": "sweep",
    "environment": "store",
    "fraction_above": "empirical",
    "grid": "lime_sweep",
    "groups": "registry",
    "largest_violation": "empirical",
    "left": "empirical",
    "mean_exceeds_zero": "empirical",
    "median_ratio": "empirical",
    "metrics": "lime_sweep",
    "ratio": "empirical",
    "register": "registry",
    "relative_error": "sweep",
    "run_claim": "sweep",
    "run_point": "lime_sweep",
    "run_sweep": "lime_sweep",
    "select": "registry",
    "sweep_table": "lime_sweep",
    "write_results": "lime_sweep",
    "z_within": "empirical",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = face(__name__, _EXPORTS)
