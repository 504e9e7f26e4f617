"""A regular (non-editable) install imports every layer, from anywhere, the repository root included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = "import attnverify.theory, attnverify.numerics.lime, attnverify.verification.report, attnverify.figures"
#: Drop the editable install's finder, so that only the regular install (or the checkout) can answer.
NO_EDITABLE = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True,
                   env={**__import__("os").environ, "TMPDIR": str(build)})
    return target


def _run(cwd: Path, site: Path) -> str:
    code = NO_EDITABLE + LAYERS + "; import attnverify; print(attnverify.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1:]
    return out.stdout.strip()


def test_regular_install_imports_every_layer_elsewhere(installed, tmp_path):
    assert _run(tmp_path, installed).startswith(str(installed))


def test_regular_install_imports_every_layer_from_the_repository_root(installed):
    # From the root, the checkout's attnverify/ comes first on sys.path and must find its layers.
    assert _run(ROOT, installed).startswith(str(ROOT))
