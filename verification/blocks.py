"""The compiled programs a sweep runs, and how claims share them (compile less).

A sweep block is `BLOCK` consecutive draws. Two ``jit(vmap(...))`` programs make its numbers:

* the *draw program*, ``(seed, index[BLOCK]) -> (params, tokens)[BLOCK]``: draw ``d`` is
  ``fold_in(PRNGKey(seed), d)`` split into a parameter key and a document key, as always.
  One per (spec, dtype, scale), the seed an argument: every claim swept at those settings
  runs the same program, and on CPU compiling the PRNG (threefry) was most of each claim's
  compile time. Claims that read only the document's rows of the embedding table
  (`Claim.embedding_rows`, the Theorem 1 claims) have a second one that draws only those rows:
  the table's inverse erfs were about half of a Theorem 1 sweep's time.
* the *measure program*, ``(params, tokens)[BLOCK] -> {id: measure[BLOCK]}`` for every member of
  an evaluation group: claims that declare the same `Claim.evaluation` evaluate the same
  quantities on the same draws (e.g. every Theorem 1 claim: one forward, one `jax.grad`, one
  compiled derivation, several comparisons), so one program returns all their per-draw
  measures; a claim without a group is a group of one. The other members' arrays wait in
  `_SHARED` until their own sweep asks for that block (same spec, seed, dtype, scale).

Each draw's numbers are computed by the same operations as in a per-claim program; tests
check that they are bit-identical. Both programs are `stored_programs.StoredProgram`s: they run
through their `jax.export`, and a built-in claim's are kept on disk beside the compiled programs,
so that a warm run neither builds, traces nor lowers them. `compile_seconds` is the wall time spent tracing,
lowering and compiling (or loading from the persistent cache) so far in this process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.draws import sweep_draw
from attnverify.numerics.evaluations import shared_evaluations
from attnverify.numerics.stored_programs import StoredProgram
from attnverify.verification.registry import (
    REGISTRY,
    Claim,
    build_comparison,
    is_builtin,
    user_comparison,
    user_measure,
)

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

BLOCK = 128  # draws per vectorised block; part of the results manifest


def block_size(trials: int) -> int:
    """Draws per block of a sweep of `trials` draws: BLOCK, or for fewer draws the next power
    of two (a smoke test of 8 draws computes 8, not 128). The draws are the same in a block
    of any size, and so are their errors up to the last bits (XLA vectorises another size
    differently; docs/verification.md); the same `trials` always gives the same bits."""
    return BLOCK if trials >= BLOCK else 1 << max(0, trials - 1).bit_length()
DTYPES = {"float64": jnp.float64, "float32": jnp.float32}

#: The most recently used compiled programs. Bounded: every compiled XLA CPU executable holds
#: hundreds of memory mappings, and a process that kept all of them (a report sweeps ~90 claims
#: in two dtypes) would run into the kernel's mapping limit (vm.max_map_count, 65530).
MAX_CACHED_PROGRAMS = 8
_DRAWS: OrderedDict[tuple, Callable] = OrderedDict()
_MEASURES: OrderedDict[tuple, tuple] = OrderedDict()
#: Group members' per-block arrays not yet asked for: (group, spec, seed, dtype, scale, id, first).
MAX_SHARED = 4096
_SHARED: OrderedDict[tuple, jax.Array] = OrderedDict()


def relative_error(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """max |lhs - rhs| / max |rhs|: scale-free, so one tolerance serves every init scale.

    (Gradients at the paper's init are ~1e-3, where an absolute 1e-10 would be loose.) Where the
    rhs is exactly zero ("this quantity vanishes") there is no scale: the error is max |lhs|,
    absolute, where dividing by the smallest float made a rounding error of 1e-16 one of 1e292.
    """
    return jnp.max(jnp.abs(lhs - rhs)) / error_scale(rhs)


def error_scale(rhs: jnp.ndarray) -> jnp.ndarray:
    """What `relative_error` divides by: max |rhs|, or 1 where the rhs is exactly zero."""
    scale = jnp.max(jnp.abs(rhs))
    return jnp.where(scale > 0, scale, jnp.ones_like(scale))


#: The relative error reported for a statement that is NaN or inf on a draw that is judged: a failure,
#: never a draw set aside (NaN there would read as the claim's declared reason).
NONFINITE_STATEMENT_ERROR = 1e6


def set_aside_lost(stated: jnp.ndarray, bound: jnp.ndarray, truth: jnp.ndarray, tolerance: dict,
                    truth_rounding: jnp.ndarray | float = 0.0, *, zero_is_lost: bool = False) -> jnp.ndarray:
    """`stated`, or NaN where the comparison's own rounding exceeds half its dtype's tolerance
    relative to the truth's scale (`error_scale`): `bound` bounds a closed form's rounding
    (`numerics.rounding`), `truth_rounding` the truth's, absolute. With `zero_is_lost` a truth
    that is exactly 0 is its own scale, not 1: any rounding then loses it (a variance of outputs
    that all round to the same number says nothing of the true one; not the default: as the rule
    for every claim it set aside 4 more of 256 draws of jw.unk_replacement at scale 1, whose
    differences of outputs can be 0 where the true one is). On a draw set aside no comparison can
    tell a right formula from a wrong one. The claim declares such draws (`Claim.nonfinite_reason`):
    counted and reported, not judged; a sweep that keeps none is inconclusive. Which draws are
    set aside never depends on the error. Where `bound` is the statement's own (not a derived
    form's), a wrong statement lost on every draw makes the sweep inconclusive, never a PASS. A
    statement that is NaN or inf on a judged draw counts as an error of NONFINITE_STATEMENT_ERROR."""
    scale = jnp.max(jnp.abs(truth)) if zero_is_lost else error_scale(truth)
    lost = jnp.max(bound) + truth_rounding > tolerance[jnp.dtype(stated.dtype).name] / 2 * scale
    judged = jnp.where(jnp.isfinite(stated), stated, truth + NONFINITE_STATEMENT_ERROR * scale)
    return jnp.where(lost, jnp.nan, judged)


def _remember(cache: OrderedDict, key, make, limit: int):
    if key in cache:
        cache.move_to_end(key)
    else:
        cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    return cache[key]


def draw_program(spec: ModelSpec, *, dtype: str, scale: float, embedding_rows: str = "table") -> StoredProgram:
    """The jitted ``(seed, index[n]) -> (params, tokens)`` of every sweep at these settings.
    With ``embedding_rows="document"`` (a plain `ModelSpec` only) the embedding table holds
    the document's rows and NaN elsewhere (`Claim.embedding_rows`); all else is the same."""
    document_rows = embedding_rows == "document" and type(spec) is ModelSpec

    def make():
        def draw(seed, index):
            return sweep_draw(seed, index, spec, scale=scale, dtype=DTYPES[dtype], document_rows=document_rows)

        return jax.vmap(draw, in_axes=(None, 0))

    variant = " document rows" if document_rows else ""
    key = f"draws {spec.to_json()} {dtype} {scale!r}{variant}" if type(spec) is ModelSpec else None
    return _remember(_DRAWS, (spec, dtype, scale, document_rows), lambda: StoredProgram("draws", make, key),
                     MAX_CACHED_PROGRAMS)


def embedding_rows(claim: Claim) -> str:
    """The rows a sweep of `claim` draws: "document" when every member of its group reads
    only the document's rows (they share the draws), else "table"."""
    return "document" if all(m.embedding_rows == "document" for m in group_of(claim)) else "table"


def group_of(claim: Claim) -> tuple[Claim, ...]:
    """The claims one measure program serves: every registered claim with the same
    `Claim.evaluation` (registration order), or `claim` alone."""
    if claim.evaluation is None or REGISTRY.get(claim.id) is not claim:
        return (claim,)
    return tuple(c for c in REGISTRY.values() if c.evaluation == claim.evaluation)


def measure_program(claim: Claim, spec: ModelSpec, *, dtype: str) -> StoredProgram:
    """The jitted ``(params, tokens) -> {member id: per-draw measures}`` of `claim`'s group. A
    member whose comparison cannot be built for `spec` is left out (its own sweep then reports
    why); `claim` itself must build. The members are built when the program is first traced:
    a program read back from the disk (`stored_programs`) builds none of them."""
    members = group_of(claim)

    def make():
        compares = []
        for member in members:
            try:  # a user's claim: a build that raises or returns no function is a one-line InputError
                compares.append((member, build_comparison(member, spec)))
            except Exception:
                if member is claim:
                    raise

        def measures(params, tokens):
            out = {}
            with shared_evaluations():  # a quantity several members compare is traced once
                for member, compare in compares:
                    lhs, rhs = user_comparison(member, compare, params, tokens)
                    out[member.id] = user_measure(member, member.measure or relative_error, lhs, rhs)
            return out

        return jax.vmap(measures)

    # Only the package's own claims, as registered, are stored: their builds are its code.
    builtin = all(map(is_builtin, members))
    key = (f"measures {[member.id for member in members]} {spec.to_json()} {dtype}"
           if builtin and type(spec) is ModelSpec else None)
    return _remember(_MEASURES, (tuple(id(member) for member in members), spec, dtype),
                     lambda: StoredProgram(f"measures-{claim.evaluation or claim.id}", make, key),
                     MAX_CACHED_PROGRAMS)


@dataclass(frozen=True)
class ClaimBlock:
    """Runs `claim` on one block of draws; group members' arrays are kept for their sweeps."""

    claim: Claim
    spec: ModelSpec
    seed: int
    dtype: str
    scale: float
    grouped: bool  # the claim's program serves other members too
    draws: StoredProgram
    measures: StoredProgram

    def submit(self, first: int, device, size: int = BLOCK) -> jax.Array | np.ndarray:
        """The measures of draws first..first+size-1 (computed on `device`, asynchronously),
        or the array an earlier group member's block left for this claim."""
        key = (self.claim.evaluation, self.spec, self.seed, self.dtype, self.scale, size)
        shared = _SHARED.pop((*key, self.claim.id, first), None) if self.grouped else None
        if shared is not None:
            return shared
        seed = jax.device_put(np.asarray(self.seed, dtype=_index_dtype()), device)
        index = jax.device_put(np.arange(first, first + size, dtype=_index_dtype()), device)
        params, tokens = self.draws(seed, index)
        outputs = self.measures(params, tokens)
        _check_x64(self.dtype)  # a claim's own code may have turned it off while the programs were traced
        for member, value in outputs.items():
            if member != self.claim.id:
                _SHARED[(*key, member, first)] = value
                while len(_SHARED) > MAX_SHARED:
                    _SHARED.popitem(last=False)
        return outputs[self.claim.id]

    def __call__(self, index: jax.Array) -> jax.Array:
        """The measures of the draws `index` (no sharing; e.g. for a benchmark)."""
        params, tokens = self.draws(jnp.asarray(self.seed, dtype=_index_dtype()), index)
        return self.measures(params, tokens)[self.claim.id]


def _index_dtype():
    return np.int64 if jax.config.jax_enable_x64 else np.int32


def _check_x64(dtype: str) -> None:
    """A float64 sweep computed with 64-bit mode off would be float32 under a float64 label."""
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise InputError("JAX's 64-bit mode (jax_enable_x64) is off, and float64 sweeps need it: something in this "
                         "process turned it off (a plugin's method, a claim's code, a notebook cell); leave it on")


def claim_block(claim: Claim, spec: ModelSpec, *, seed: int, dtype: str, scale: float) -> ClaimBlock:
    _check_x64(dtype)
    return ClaimBlock(claim, spec, seed, dtype, scale, len(group_of(claim)) > 1,
                      draw_program(spec, dtype=dtype, scale=scale, embedding_rows=embedding_rows(claim)),
                      measure_program(claim, spec, dtype=dtype))


_UNDEFINED: OrderedDict[tuple, Callable] = OrderedDict()
_UNDEFINED_DRAWS: OrderedDict[tuple, np.ndarray] = OrderedDict()


def model_undefined(spec: ModelSpec, *, trials: int, seed: int, dtype: str, scale: float) -> np.ndarray:
    """Per draw 0..trials-1 of a plugin spec's sweep: True where the model's explained output itself
    is NaN or infinite on the draw's parameters and document (where a model that declares
    ``nonfinite_reason`` is undefined), computed from the very draws the claims were swept on, in the
    same blocks (`block_size`); once per sweep settings, for every claim judged on them."""
    return _remember(_UNDEFINED_DRAWS, (spec, trials, seed, dtype, scale),
                     lambda: _model_undefined(spec, trials=trials, seed=seed, dtype=dtype, scale=scale),
                     MAX_CACHED_PROGRAMS)


def _model_undefined(spec: ModelSpec, *, trials: int, seed: int, dtype: str, scale: float) -> np.ndarray:
    from attnverify.numerics import plugin_model as pm

    def make():
        def undefined(params, tokens):
            return ~jnp.isfinite(pm.explained_output(params, pm.embed(params, tokens, spec), spec))

        return jax.jit(jax.vmap(undefined))

    program = _remember(_UNDEFINED, (spec, dtype), make, MAX_CACHED_PROGRAMS)
    draws = draw_program(spec, dtype=dtype, scale=scale)
    size = block_size(trials)
    seed_array = jnp.asarray(seed, dtype=_index_dtype())
    blocks = [program(*draws(seed_array, jnp.arange(first, first + size, dtype=_index_dtype())))
              for first in range(0, trials, size)]
    return np.concatenate([np.asarray(b) for b in blocks])[:trials]


def forget_programs() -> None:
    """Drop every compiled program and shared array held here (e.g. before a cold measurement)."""
    _DRAWS.clear()
    _MEASURES.clear()
    _SHARED.clear()
    _UNDEFINED.clear()
    _UNDEFINED_DRAWS.clear()


# -- compile time ---------------------------------------------------------------------------
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_lock = threading.Lock()
_spans: list[tuple[float, float]] = []  # the latest compile spans, disjoint
_total = 0.0


def _on_span(event: str, start: float, end: float, **_kwargs) -> None:
    """Add [start, end] to the time spent compiling. Spans nest (a jit traced inside another
    jit's trace reports first, its enclosing trace later): time is counted once."""
    global _total
    if event not in _COMPILE_EVENTS:
        return
    with _lock:
        overlapping = [(s, e) for s, e in _spans if s <= end and e >= start]
        _total += (end - start) - sum(min(e, end) - max(s, start) for s, e in overlapping)
        merged = (min([start] + [s for s, _ in overlapping]), max([end] + [e for _, e in overlapping]))
        _spans[:] = sorted([span for span in _spans if span not in overlapping] + [merged])[-64:]


jax.monitoring.register_event_time_span_listener(_on_span)


def compile_seconds() -> float:
    """Wall seconds this process has spent tracing, lowering and compiling (or loading
    compiled programs from the persistent cache) so far."""
    return _total
