"""JAX layer: the true model, SymPy expressions compiled to JAX, draws, the model file and
explanations. The LIME engine lives in `numerics.lime`, the related papers' quantities in
`numerics.related`, corpora and training in `numerics.training`.
"""

from attnverify._faces import face

_EXPORTS = {
    "ARRAYS": "modelfile",
    "BIASES": "modelfile",
    "Evaluator": "compile",
    "IG_BASELINE": "explanations",
    "INIT_BOUND": "draws",
    "ModelFile": "modelfile",
    "NAMES": "explanations",
    "Params": "model",
    "SCORER": "modelfile",
    "SCORER_STREAM": "draws",
    "atomic_write": "modelfile",
    "attention": "model",
    "builtin_vocab": "tokenize",
    "compile_expression": "compile",
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
    "save": "modelfile",
    "score_function": "model",
    "scores": "model",
    "self_attention": "model",
    "symbol_arrays": "quantities",
    "theorem1_quantities": "quantities",
    "values": "model",
    "words": "tokenize",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = face(__name__, _EXPORTS)
