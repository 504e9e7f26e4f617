"""The jaxlib releases whose batched CPU linear algebra can hang are refused by the package's
requirements and reported at run time (numerics/known_defects.py)."""

import tomllib
from pathlib import Path

import pytest
from attnverify.numerics import known_defects
from packaging.requirements import Requirement

from attnverify import cli_support

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
AFFECTED = ["0.10.0", "0.10.1", "0.10.2", "0.11.0"]
SAFE = ["0.4.30", "0.9.0.1", "0.9.2", "0.11.1", "0.11.2", "0.12.0"]


def _requirement(name: str) -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (found,) = [Requirement(line) for line in dependencies if Requirement(line).name == name]
    return found


@pytest.mark.parametrize("version", AFFECTED + SAFE)
def test_the_requirements_refuse_exactly_the_releases_with_the_defect(version):
    # Can fail both ways: a requirement that admits an affected release, or a defect range that
    # no longer matches what the requirements exclude.
    affected = known_defects.known_defect(version) is not None
    assert affected == (version in AFFECTED)
    for name in ("jax", "jaxlib"):
        assert _requirement(name).specifier.contains(version) == (not affected), (name, version)


def test_the_tests_do_not_run_on_an_affected_jaxlib():
    version = known_defects.installed_jaxlib()
    assert version is not None and known_defects.known_defect(version) is None, version


def test_a_command_on_an_affected_jaxlib_warns_once_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(known_defects, "installed_jaxlib", lambda: "0.10.2")
    monkeypatch.setattr(known_defects, "_warned", False)
    cli_support.enable_x64()
    cli_support.enable_x64()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnverify: warning: jaxlib 0.10.2 can hang"), lines


def test_a_safe_jaxlib_gives_no_warning(monkeypatch, capsys):
    monkeypatch.setattr(known_defects, "installed_jaxlib", lambda: "0.9.2")
    monkeypatch.setattr(known_defects, "_warned", False)
    cli_support.enable_x64()
    assert capsys.readouterr().err == ""
