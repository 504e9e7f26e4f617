"""Results kept on disk (`numerics.stored_results`): trained models read back bit for bit without
training, another recipe trained afresh, an unreadable entry trained again; a claim's reported
numbers and a figure's data read back for the same inputs only."""

import dataclasses
import pickle

import jax
import numpy as np
import pytest
from attnverify.figures import catalog
from attnverify.figures.common import FigureContext
from attnverify.numerics import compilation_cache, host_devices, stored_programs
from attnverify.numerics.draws import draw_params
from attnverify.numerics.modelfile import ModelFile
from attnverify.numerics.training import synthetic_tasks
from attnverify.theory import memo
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification import sweep
from attnverify.verification.registry import REGISTRY

STEPS = 3  # plumbing, not a useful model


@pytest.fixture
def folder(tmp_path):
    kept = memo.set_derivations_folder(tmp_path)
    memo.forget()
    yield tmp_path
    memo.set_derivations_folder(kept)
    memo.forget()


@pytest.fixture
def trainings(monkeypatch):
    """Every training program asked for, recorded (a read-back entry asks for none)."""
    calls = []
    real = synthetic_tasks._training_program
    monkeypatch.setattr(synthetic_tasks, "_training_program", lambda *a: calls.append(a) or real(*a))
    return calls


def _train(spec, **recipe):
    # Past the in-process cache, as a new process would call it.
    return synthetic_tasks.trained_model.__wrapped__(spec, "needle", steps=STEPS, **recipe)


def _same_bits(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in pairs)


def test_trained_weights_are_read_back_bit_for_bit_without_training(folder, tiny_spec, trainings):
    params, accuracy = _train(tiny_spec)
    assert len(trainings) == 1 and len(compilation_cache.result_entries(folder)) == 1

    memo.forget()  # as a new process: only the disk remembers
    again, accuracy_again = _train(tiny_spec)
    assert len(trainings) == 1, "read back, yet trained again"
    assert _same_bits(again, params) and accuracy_again == accuracy

    # Can fail: another seed is another recipe, trained afresh and stored beside the first.
    other, _ = _train(tiny_spec, seed=1)
    assert len(trainings) == 2 and len(compilation_cache.result_entries(folder)) == 2
    assert not _same_bits(other, params)


def test_one_compiled_training_program_trains_every_task(tiny_spec, monkeypatch):
    # The task is an argument of the training program, not part of it: the three tasks of a
    # recipe compile once. Can fail: a program per task would be compiled three times.
    real, programs = synthetic_tasks._training_program, []
    monkeypatch.setattr(synthetic_tasks, "_training_program", lambda *a: programs.append(real(*a)) or programs[-1])
    models = {task: synthetic_tasks.trained_model.__wrapped__(tiny_spec, task, steps=STEPS)[0]
              for task in synthetic_tasks.TASKS}
    assert len(programs) == 3 and len({id(p) for p in programs}) == 1 and programs[0]._cache_size() == 1
    assert not _same_bits(models["needle"], models["planted"])


def test_an_unreadable_entry_is_trained_again_and_rewritten(folder, tiny_spec, trainings):
    params, accuracy = _train(tiny_spec)
    (entry,) = compilation_cache.result_entries(folder)
    entry.write_bytes(b"not a pickle")
    memo.forget()
    again, accuracy_again = _train(tiny_spec)
    assert len(trainings) == 2 and _same_bits(again, params) and accuracy_again == accuracy
    assert _same_bits(pickle.loads(entry.read_bytes())[2][0], params)  # rewritten (memo.ENTRY, key, result)


def test_another_xla_option_is_another_entry_but_another_device_count_is_not(monkeypatch):
    # XLA's options may round a trained model's weights differently (an optimisation level of 0
    # changes the last bits), so a result computed under them is never read back without them.
    # The CPU device count is left out: results are bit-identical for any count (test_scale_out).
    # Can fail: a digest that ignored $XLA_FLAGS would be equal in the first comparison.
    def digest(flags: str) -> str:
        monkeypatch.setenv("XLA_FLAGS", flags)
        stored_programs.environment_digest.cache_clear()
        return stored_programs.environment_digest()

    try:
        plain = digest(f"{host_devices.FLAG}=2")
        assert digest(f"{host_devices.FLAG}=2 --xla_backend_optimization_level=1") != plain
        assert digest(f"{host_devices.FLAG}=4") == plain == digest("")
    finally:
        monkeypatch.undo()
        stored_programs.environment_digest.cache_clear()


def test_without_a_folder_nothing_is_stored(tmp_path, tiny_spec, trainings):
    # The test processes (and any in-process caller) keep no folder: `conftest._derivations_afresh`.
    _train(tiny_spec)
    memo.forget()
    _train(tiny_spec)
    assert len(trainings) == 2 and compilation_cache.result_entries(tmp_path) == []


# -- a claim's reported numbers, a figure's data ------------------------------------------------------
@pytest.fixture
def counted_context():
    """A built-in claim, as registered, whose context counts its calls (restored afterwards)."""
    claim = REGISTRY["identifiability.support_sufficient.needle"]
    calls = []
    original = claim.context
    object.__setattr__(claim, "context", lambda spec: calls.append(spec) or {"undefined_share_needle": 0.25})
    yield claim, calls
    object.__setattr__(claim, "context", original)


def test_a_builtin_claims_context_is_computed_once_then_read_back(folder, tiny_spec, counted_context):
    claim, calls = counted_context
    assert sweep._context(claim, tiny_spec) == {"undefined_share_needle": 0.25}
    memo.forget()
    assert sweep._context(claim, tiny_spec) == {"undefined_share_needle": 0.25}
    assert len(calls) == 1 and len(compilation_cache.result_entries(folder)) == 1
    # Can fail: another spec is computed afresh; a replaced claim (another measure, the same id)
    # is the user's code, computed in every run and never stored.
    sweep._context(claim, tiny_spec.replace(max_len=9))
    assert len(calls) == 2
    replaced = dataclasses.replace(claim)
    sweep._context(replaced, tiny_spec)
    memo.forget()
    sweep._context(replaced, tiny_spec)
    assert len(calls) == 4 and len(compilation_cache.result_entries(folder)) == 2


def _figure_context(spec, key: int) -> FigureContext:
    vocab = ["[CLS]", "UNK"] + [f"w{j}" for j in range(spec.vocab_size - 2)]
    return FigureContext(model=ModelFile(spec, draw_params(jax.random.PRNGKey(key), spec), vocab), seed=0, quick=True)


def test_a_figures_data_is_read_back_for_the_same_inputs_only(folder, tiny_spec):
    computed = []

    def compute(ctx):
        computed.append(ctx)
        return {"values": np.arange(3.0) / 7, "n": len(computed)}

    first = catalog.computed("fig3", compute, _figure_context(tiny_spec, 0))
    again = catalog.computed("fig3", compute, _figure_context(tiny_spec, 0))
    assert len(computed) == 1 and again["n"] == 1 and again["values"].tobytes() == first["values"].tobytes()
    # Can fail: other weights, another seed are other inputs.
    catalog.computed("fig3", compute, _figure_context(tiny_spec, 1))
    catalog.computed("fig3", compute, dataclasses.replace(_figure_context(tiny_spec, 0), seed=1))
    assert len(computed) == 3
    # The claims' sweep numbers are inputs of the figures that read them (catalog.READS_SWEEPS)
    # only: fig3 drawn beside the claims (no sweeps yet) and after them is one entry.
    swept = dataclasses.replace(_figure_context(tiny_spec, 0), sweeps={("thm1.gradient", "float64"): [1e-16]})
    assert "fig3" not in catalog.READS_SWEEPS and "thm1_hist" in catalog.READS_SWEEPS
    assert catalog.computed("fig3", compute, swept)["n"] == 1 and len(computed) == 3
    catalog.computed("thm1_hist", compute, _figure_context(tiny_spec, 0))
    catalog.computed("thm1_hist", compute, swept)
    assert len(computed) == 5
