"""The jaxlib releases whose batched CPU linear algebra can hang are refused by the package's
requirements and reported at run time (numerics/known_defects.py); so are the releases older than
the JAX APIs the package calls (docs/cli.md, "JAX version")."""

import tomllib
from pathlib import Path

import pytest
from attnverify.numerics import known_defects
from packaging.requirements import Requirement

from attnverify import cli_support

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
AFFECTED = ["0.10.0", "0.10.1", "0.10.2", "0.11.0"]
SAFE = ["0.8.0", "0.9.0.1", "0.9.2", "0.11.1", "0.11.2", "0.12.0"]
#: Releases without an API the package calls: `jax.enable_x64` arrived in 0.8.0,
#: `jax.monitoring.register_event_time_span_listener` in 0.5.0 and
#: `jax.export.register_namedtuple_serialization` in 0.4.35. 0.4.30 and 0.4.35 fail on import, 0.5.0
#: wherever a model is trained, and 0.7.2 lacks `jax.enable_x64` too (each an AttributeError).
TOO_OLD = ["0.4.30", "0.4.35", "0.5.0", "0.7.2"]


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


@pytest.mark.parametrize("version", TOO_OLD)
def test_the_requirements_refuse_releases_older_than_the_apis_the_package_calls(version):
    # Can fail: a floor lowered below 0.8.0 would let pip install a JAX the package cannot run on.
    for name in ("jax", "jaxlib"):
        assert not _requirement(name).specifier.contains(version), (name, version)


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
