"""attnverify: a SymPy + JAX verifier for attention versus post-hoc explanations.

The importable layers are ``attnverify.theory`` (SymPy only), ``attnverify.numerics``
(JAX), ``attnverify.verification`` (claims and sweeps) and ``attnverify.figures``
(matplotlib). This top-level module stays light: it never imports JAX.
"""

from attnverify.errors import InputError
from attnverify.spec import PAPER, SMALL, ModelSpec

__version__ = "0.1.0"
__all__ = ["InputError", "ModelSpec", "PAPER", "SMALL", "__version__"]
