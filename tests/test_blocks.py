"""Compiled sweep programs: one draw program per (spec, dtype, scale), one measure program per
evaluation group; the per-draw numbers are those of one fused program per claim, bit for bit."""

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.verification import blocks
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification.registry import REGISTRY, select
from attnverify.verification.sweep import draw_errors

TRIALS = 5


def _fused(members, spec, *, seed: int, dtype: str):
    """The programs sweeps ran before draws and measures were compiled apart: draws and the
    comparisons in one ``jit(vmap)`` over the draw index."""
    compares = [(c, c.build(spec)) for c in members]
    root = jax.random.PRNGKey(seed)

    def one(index):
        key_params, key_doc = jax.random.split(jax.random.fold_in(root, index))
        params = draw_params(key_params, spec, scale=1.0, dtype=blocks.DTYPES[dtype])
        tokens = draw_document(key_doc, spec)
        return [(c.measure or blocks.relative_error)(*compare(params, tokens)) for c, compare in compares]

    values = jax.jit(jax.vmap(one))(jnp.arange(blocks.block_size(TRIALS)))
    return {c.id: np.asarray(v, dtype=np.float64)[:TRIALS] for c, v in zip(members, values, strict=True)}


def test_theorem1_claims_share_one_program_with_the_fused_programs_numbers(tiny_spec):
    group = select(["theorem1"])
    assert blocks.group_of(REGISTRY["thm1.gradient"]) == tuple(group)  # every Theorem 1 claim, one program
    blocks.forget_programs()
    got = {c.id: draw_errors(c, tiny_spec, trials=TRIALS, seed=3, progress=False) for c in group}
    reference = _fused(group, tiny_spec, seed=3, dtype="float64")
    for claim_id, errors in got.items():
        assert errors.tobytes() == reference[claim_id].tobytes(), claim_id  # bit for bit
    assert len(blocks._MEASURES) == 1 and len(blocks._DRAWS) == 1


def test_a_group_member_after_the_first_compiles_nothing_and_keeps_its_numbers(tiny_spec):
    first, later = REGISTRY["thm1.derived"], REGISTRY["thm1.control_no_jacobian"]
    blocks.forget_programs()
    draw_errors(first, tiny_spec, trials=TRIALS, progress=False)
    assert any(key[-2] == later.id for key in blocks._SHARED)  # waiting for its own sweep
    compiled = blocks.compile_seconds()
    shared = draw_errors(later, tiny_spec, trials=TRIALS, progress=False)
    assert blocks.compile_seconds() == compiled and not any(key[-2] == later.id for key in blocks._SHARED)
    alone = draw_errors(dataclasses.replace(later, evaluation=None), tiny_spec, trials=TRIALS, progress=False)
    assert blocks.compile_seconds() > compiled  # a claim of its own: its own program
    assert shared.tobytes() == alone.tobytes()


def test_the_seed_is_an_argument_of_the_draw_program(tiny_spec):
    claim = REGISTRY["thm1.gradient"]
    blocks.forget_programs()
    a = draw_errors(claim, tiny_spec, trials=TRIALS, seed=0, progress=False)
    compiled = blocks.compile_seconds()
    b = draw_errors(claim, tiny_spec, trials=TRIALS, seed=1, progress=False)
    assert blocks.compile_seconds() == compiled and len(blocks._DRAWS) == 1  # no recompilation
    assert not np.array_equal(a, b)  # other draws


def test_compile_seconds_counts_nested_and_repeated_spans_once(monkeypatch):
    monkeypatch.setattr(blocks, "_spans", [])
    monkeypatch.setattr(blocks, "_total", 0.0)
    trace = "/jax/core/compile/jaxpr_trace_duration"
    blocks._on_span(trace, 2.0, 3.0)  # an inner jit, traced inside the outer one
    blocks._on_span(trace, 4.0, 5.0)  # another inner one
    blocks._on_span(trace, 1.0, 6.0)  # the outer trace, reported last
    assert blocks.compile_seconds() == pytest.approx(5.0)
    blocks._on_span("/jax/core/compile/backend_compile_duration", 6.5, 7.0)
    blocks._on_span("/jax/some/other/event", 7.0, 9.0)  # not compiling
    assert blocks.compile_seconds() == pytest.approx(5.5)


#: Groups whose members share quantities through `numerics.evaluations.shared` (cheap enough on the
#: tiny spec; Theorem 1's is checked bit for bit above).
SHARING_GROUPS = ["theorem2", "saliency.ig.zero"]


@pytest.mark.parametrize("evaluation", SHARING_GROUPS)
def test_a_group_gives_each_member_the_numbers_of_its_own_program(evaluation, tiny_spec, monkeypatch):
    # Can fail: a shared quantity under a key that another quantity also uses, or evaluated on
    # other arguments, would hand a member numbers that its own program does not compute. The
    # reference is the same group traced without sharing (every member evaluates its own
    # quantities, as in a program of its own): one compilation, not one per member.
    spec = tiny_spec.replace(classes=2, output_link="logit")
    members = [c for c in REGISTRY.values() if c.evaluation == evaluation]
    assert len(members) >= 2, evaluation
    blocks.forget_programs()
    grouped = {c.id: draw_errors(c, spec, trials=TRIALS, seed=5, progress=False) for c in members}
    assert len(blocks._MEASURES) == 1  # one measure program for the whole group
    blocks.forget_programs()
    traced_alone = []

    @contextlib.contextmanager
    def nothing_shared():
        traced_alone.append(True)
        yield

    monkeypatch.setattr(blocks, "shared_evaluations", nothing_shared)
    alone = {c.id: draw_errors(c, spec, trials=TRIALS, seed=5, progress=False) for c in members}
    assert traced_alone  # traced again, without sharing (not a program kept from the grouped sweeps)
    for claim in members:
        # The same operations in another program: equal up to XLA's choice of fusion (last bits).
        np.testing.assert_allclose(grouped[claim.id], alone[claim.id], rtol=1e-9, atol=1e-13, err_msg=claim.id)


def test_a_claim_that_reads_rows_outside_the_document_gets_nan_and_fails(tiny_spec):
    # Can fail: a document-rows sweep that drew the whole table (or zeros elsewhere) would let a
    # claim that reads other rows pass unseen. The guard is the NaN of the rows not drawn.
    def build(spec):
        return lambda params, tokens: (jnp.sum(params.embedding), jnp.sum(params.embedding))

    claim = dataclasses.replace(REGISTRY["thm1.gradient"], id="test.whole_table", build=build, evaluation=None,
                                requires={}, proof=None)
    assert claim.embedding_rows == "document"
    blocks.forget_programs()
    assert np.isnan(draw_errors(claim, tiny_spec, trials=TRIALS, progress=False)).all()
    table = dataclasses.replace(claim, embedding_rows="table")
    assert np.isfinite(draw_errors(table, tiny_spec, trials=TRIALS, progress=False)).all()
    assert len(blocks._DRAWS) == 2  # the two draw programs
    with pytest.raises(ValueError, match="embedding_rows must be one of table, document"):
        dataclasses.replace(claim, embedding_rows="rows")
