"""attnverify: a SymPy + JAX verifier for attention versus post-hoc explanations.

The importable layers are ``attnverify.theory`` (SymPy only), ``attnverify.numerics``
(JAX), ``attnverify.verification`` (claims and sweeps) and ``attnverify.figures``
(matplotlib). This top-level module stays light: it never imports JAX.
"""

from pathlib import Path as _Path

from attnverify.errors import InputError
from attnverify.spec import PAPER, SMALL, ModelSpec


def _see_checkout_layers() -> None:
    # In the repository the layers sit beside this folder (theory/, numerics/, ...) and
    # install as attnverify.theory etc. Run from the repository root, `import attnverify`
    # finds this folder before any installed copy; the layers must then come from the
    # same checkout, so the checkout's root joins the package path.
    here = _Path(__file__).resolve().parent
    root = here.parent
    if not (here / "numerics").is_dir() and (root / "numerics" / "__init__.py").is_file() \
            and (root / "pyproject.toml").is_file():
        __path__.append(str(root))  # noqa: F821 (the package's own __path__)


_see_checkout_layers()

__version__ = "0.1.0"
__all__ = ["InputError", "ModelSpec", "PAPER", "SMALL", "__version__", "derive", "explain", "verify"]

#: The Python API (`attnverify.api`), imported on first use: ``import attnverify`` stays light.
_API = ("derive", "explain", "verify")


def __getattr__(name: str):
    if name in _API:
        from attnverify import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attnverify' has no attribute {name!r}")
