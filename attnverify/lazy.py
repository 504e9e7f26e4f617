"""Modules loaded on first use, with the standard library's `importlib.util.LazyLoader`.

Every command imports the claim modules (they fill the registry), and a claim module names the
libraries its evaluation uses. A run whose programs, derivations and trained weights are stored
(`numerics.stored_programs`, `numerics.stored_results`) uses neither SymPy nor optax, so these
load when an attribute is first read, not at start-up (docs/benchmarks.md has the seconds).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name`, imported now if something already imported it, else when first used."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
