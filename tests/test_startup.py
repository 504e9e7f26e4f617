"""What every command pays before its first program: importing the claims (which fills the
registry) loads neither SymPy, optax nor SciPy, and compiles nothing (`attnverify.lazy`).

A warm ``attnverify verify theorem1`` reads its programs back (`numerics.stored_programs`), so
these libraries would be start-up time and nothing else: about 0.7 s of a 2 s warm run
(docs/benchmarks.md)."""

import subprocess
import sys

import pytest

from attnverify.lazy import lazy_module

_PROBE = """
import sys, jax
compiled = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: compiled.append(event) if event.endswith("backend_compile_duration") else None)
import attnverify.verification.claims
loaded = [name for name in ("sympy.core", "optax.contrib", "scipy.special", "scipy.stats") if name in sys.modules]
print(loaded, len(compiled))
"""


def test_importing_the_claims_loads_no_sympy_optax_or_scipy_and_compiles_nothing():
    # Can fail: a module-level `import sympy`, a theory module imported at the top of a claim
    # module, or a jnp array made at import (a compiled program) shows here.
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[-2] == "[] 0", out.stdout + out.stderr[-2000:]


def test_a_lazy_module_loads_on_first_use_and_is_the_module():
    # Can fail: a lazy module that never loads, or that loads a second copy of the module.
    probe = ("import sys; from attnverify.lazy import lazy_module; m = lazy_module('fractions'); "
             "before = type(m).__name__; f = m.Fraction(1, 3); import fractions; "
             "print(before, type(m).__name__, f == fractions.Fraction(1, 3), m is fractions)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "_LazyModule module True True"


def test_a_module_already_imported_is_returned_as_it_is():
    import json

    assert lazy_module("json") is json


def test_a_missing_module_is_an_import_error_at_once():
    with pytest.raises(ModuleNotFoundError, match="attnverify_no_such_module"):
        lazy_module("attnverify_no_such_module")
