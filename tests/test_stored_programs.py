"""Sweep programs traced once and read back (`numerics.stored_programs`): the same numbers,
no build and no trace the second time, and nothing stored for code outside the package."""

import dataclasses
import logging

import jax
import pytest
from attnverify.numerics import compilation_cache, stored_programs
from attnverify.verification import blocks
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification.claims import theorem1 as theorem1_claims
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import draw_errors

TRIALS = 4


@pytest.fixture
def folder(tmp_path):
    stored_programs.set_programs_folder(tmp_path)
    blocks.forget_programs()
    yield tmp_path
    stored_programs.set_programs_folder(None)
    blocks.forget_programs()


def _traced(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if "transforming" in r.getMessage())


def test_a_stored_program_gives_the_same_numbers_without_building_or_tracing(folder, tiny_spec, caplog, monkeypatch):
    claim = REGISTRY["thm1.gradient"]
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        first = draw_errors(claim, tiny_spec, trials=TRIALS, progress=False)
    assert "transforming measures" in _traced(caplog) and "transforming draw" in _traced(caplog)
    assert len(compilation_cache.traced_entries(folder)) == 2  # the draw and the measure program

    blocks.forget_programs()  # as a new process: only the disk remembers
    caplog.clear()
    built = []  # every Theorem 1 claim's build asks for the quantities: a build now is recorded
    quantities = theorem1_claims.theorem1_quantities
    monkeypatch.setattr(theorem1_claims, "theorem1_quantities", lambda spec: built.append(1) or quantities(spec))
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        again = draw_errors(REGISTRY["thm1.gradient"], tiny_spec, trials=TRIALS, progress=False)
    assert again.tobytes() == first.tobytes()
    assert "transforming measures" not in _traced(caplog) and "transforming draw" not in _traced(caplog)
    assert built == []

    # Can fail: another spec is another program, traced (and stored) afresh.
    caplog.clear()
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        draw_errors(claim, tiny_spec.replace(max_len=9), trials=TRIALS, progress=False)
    assert "transforming measures" in _traced(caplog)
    assert len(compilation_cache.traced_entries(folder)) == 4


def test_a_claim_that_is_not_the_registered_one_is_never_stored(folder, tiny_spec):
    # A replaced claim (another tolerance, measure or build) may trace to another program under
    # the same id: it is traced in every run, never read back.
    mine = dataclasses.replace(REGISTRY["thm1.gradient"], evaluation=None)
    draw_errors(mine, tiny_spec, trials=TRIALS, progress=False)
    names = [p.name for p in compilation_cache.traced_entries(folder)]
    assert len(names) == 1 and names[0].startswith("draws-")  # the draws only (package code)
