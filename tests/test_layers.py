"""The house rules of the layers, checked in fresh interpreters and on the import graph.

theory (SymPy) -> numerics (JAX) -> verification -> figures; the CLI sits on top. Imports
run one way only; `theory` never loads JAX, `figures` never loads SymPy, and importing
`attnverify` (or any layer's face) loads neither until a name is used.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("theory", "numerics", "verification", "figures")
CLI = {"attnverify.cli", "attnverify.commands", "attnverify.cli_support"}


def _loaded_after(code: str) -> dict:
    probe = code + ("\nimport json, sys\n"
                    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'sympy'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    heavy = set(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"jax": "jax" in heavy, "sympy": "sympy" in heavy}


def _import_every_module(layer: str) -> str:
    return ("import importlib, pkgutil\n"
            f"import attnverify.{layer} as pkg\n"
            f"for m in pkgutil.walk_packages(pkg.__path__, 'attnverify.{layer}.'):\n"
            "    importlib.import_module(m.name)\n")


def test_importing_attnverify_and_its_faces_loads_neither_jax_nor_sympy():
    code = "import attnverify, attnverify.theory, attnverify.numerics, attnverify.verification, attnverify.figures"
    assert _loaded_after(code) == {"jax": False, "sympy": False}


def test_theory_never_loads_jax():
    assert _loaded_after(_import_every_module("theory"))["jax"] is False


def test_figures_never_load_sympy():
    assert _loaded_after(_import_every_module("figures"))["sympy"] is False


def test_the_probe_sees_a_heavy_import():
    # The probe can fail: importing a numerics module that compiles SymPy loads both.
    assert _loaded_after("import attnverify.numerics.compile") == {"jax": True, "sympy": True}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_module"
              and node.args and isinstance(node.args[0], ast.Constant)):  # an import deferred (attnverify.lazy)
            found.add(node.args[0].value)
    return found


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "attnverify" and parts[1] in ORDER else None


@pytest.mark.parametrize("layer", ORDER)
def test_imports_run_one_way_and_never_reach_the_cli(layer):
    below = set(ORDER[: ORDER.index(layer) + 1])
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for module in _imports(path):
            target = _layer_of(module)
            if module in CLI or (target is not None and target not in below):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_the_graph_check_catches_an_upward_import(tmp_path):
    # The graph check can fail: a theory module importing numerics is an offender.
    bad = tmp_path / "bad.py"
    bad.write_text("from attnverify.numerics import model\nimport attnverify.cli\n"
                   "verification = lazy_module('attnverify.verification.sweep')\n")
    modules = _imports(bad)
    assert _layer_of("attnverify.numerics.model") == "numerics" and "attnverify.cli" in modules
    assert {_layer_of(m) for m in modules} - {None} - {"theory"} == {"numerics", "verification"}


def test_every_name_a_face_lists_resolves():
    # Can fail: a face listed `STEPS_PER_CALL` after `train.py` no longer defined it, so
    # `from attnverify.numerics.training import *` raised AttributeError. In a fresh interpreter
    # (a face caches what it resolves).
    code = ("import importlib, pkgutil, sys\n"
            "import attnverify\n"
            "bad = []\n"
            "for layer in ('theory', 'numerics', 'verification', 'figures'):\n"
            "    top = importlib.import_module('attnverify.' + layer)\n"
            "    packages = [top] + [importlib.import_module(m.name) for m in pkgutil.walk_packages(\n"
            "        top.__path__, top.__name__ + '.') if m.ispkg]\n"
            "    for package in packages:\n"
            "        for name in getattr(package, '_EXPORTS', {}):\n"
            "            try:\n"
            "                getattr(package, name)\n"
            "            except AttributeError:\n"
            "                bad.append(package.__name__ + '.' + name)\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
