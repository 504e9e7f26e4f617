"""JAX layer: the true model, SymPy expressions compiled to JAX, draws, the model file and
explanations. The LIME engine lives in `numerics.lime`, the related papers' quantities in
`numerics.related`, corpora and training in `numerics.training`.
"""

import os as _os

from attnverify._faces import face

# XLA owns the cores. On CPU, jaxlib's LAPACK (jnp.linalg.solve, eigh, ...) is scipy's
# OpenBLAS, whose worker threads busy-wait after every call and so took the cores from the
# next XLA program: a LIME explanation's evaluation after its ridge solve ran in 19.5 ms
# instead of 11.3 ms (median, d = 196, two cores; docs/benchmarks.md). Our matrices are at most
# a few hundred wide, where one BLAS thread loses nothing. Read when scipy's library loads
# (JAX's first linear-algebra call); a value the user set is kept.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_EXPORTS = {
    "ARRAYS": "modelfile",
    "BIASES": "modelfile",
    "BoundedEvaluator": "rounding",
    "CacheInfo": "compilation_cache",
    "CacheLocationError": "compilation_cache",
    "CompileError": "compile",
    "Evaluator": "compile",
    "IG_BASELINE": "explanations",
    "INIT_BOUND": "draws",
    "ModelFile": "modelfile",
    "NAMES": "explanations",
    "Params": "model",
    "PluginParams": "plugin_model",
    "SCORER": "modelfile",
    "SCORER_STREAM": "draws",
    "atomic_write": "modelfile",
    "attention": "model",
    "autodiff_gradient": "plugin_model",
    "builtin_vocab": "tokenize",
    "cache_entries": "compilation_cache",
    "cache_info": "compilation_cache",
    "cache_location": "compilation_cache",
    "check_cache_location": "compilation_cache",
    "clear_cache": "compilation_cache",
    "compile_expression": "compile",
    "compile_with_rounding_bound": "rounding",
    "compiled_quantity": "plugin_model",
    "configure_cache": "compilation_cache",
    "derivation_entries": "compilation_cache",
    "draw_document": "draws",
    "draw_params": "draws",
    "embed": "model",
    "encode": "tokenize",
    "expected_shapes": "modelfile",
    "explain": "explanations",
    "explain_positions": "explanations",
    "explained_output": "model",
    "head_outputs": "model",
    "keys": "model",
    "load": "modelfile",
    "logits": "model",
    "output_gradient": "model",
    "positional_encoding": "model",
    "queries": "model",
    "readouts": "model",
    "remove_unreadable_entries": "compilation_cache",
    "save": "modelfile",
    "score_function": "model",
    "scores": "model",
    "self_attention": "model",
    "shared": "evaluations",
    "shared_evaluations": "evaluations",
    "symbol_arrays": "quantities",
    "theorem1_quantities": "quantities",
    "token_key": "token_keys",
    "unsupported": "compile",
    "values": "model",
    "words": "tokenize",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = face(__name__, _EXPORTS)
