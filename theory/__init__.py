"""SymPy layer: the model's expression, derivations and the paper's statements.

This package never imports JAX (STYLE.md).
"""
