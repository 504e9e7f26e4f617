"""Lazy public faces for the layer packages (PEP 562).

Each layer's ``__init__.py`` lists its public names and the module that defines each one.
A name is imported on first use, so ``import attnverify.numerics`` costs nothing until a
function is needed, and a face never creates an import cycle with its own modules.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def face(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for `package`, whose public names live in `exports`
    (name -> submodule, relative to the package)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        # A function named like its own module (``shell_form.shell_form``) loses to the
        # module: importing the submodule rebinds the name to it anyway, so the function
        # could not be a stable attribute, and ``from pkg import shell_form`` means the module.
        if module is not None and module != name:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:  # a submodule
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
