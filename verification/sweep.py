"""Sweeps: run a claim on many random parameter draws with ``jit(vmap(...))``.

Draw ``d`` uses the key ``fold_in(PRNGKey(seed), d)``, so the results do not depend on
the chunk size. Chunks bound memory; a progress bar shows them on stderr.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.verification.registry import Claim
from attnverify.verification.store import ChunkStore
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

DTYPES = {"float64": jnp.float64, "float32": jnp.float32}
BLOCK = 128  # draws per vectorised block (see `draw_errors`); part of the results manifest


@dataclass
class ClaimResult:
    """One claim swept under one spec. JSON keys are stable: add, never rename."""

    id: str
    statement: str
    dtype: str
    tolerance: float
    trials: int
    max_error: float
    median_error: float
    passed: bool
    finding: str | None
    expected: bool | None = None  # expected PASS (True) / FAIL (False) / no guarantee (None)
    unexpected: bool = False
    proof: str | None = None
    seed: int = 0
    scale: float = 1.0
    quantiles: dict[str, float] = field(default_factory=dict)
    statistics: dict[str, float] = field(default_factory=dict)  # empirical claims' summary
    errors: list[float] = field(default_factory=list, repr=False)

    def to_json(self, *, with_errors: bool = False) -> dict:
        out = asdict(self)
        if not with_errors:
            out.pop("errors")
        return out


def relative_error(lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """max |lhs - rhs| / max |rhs|: scale-free, so one tolerance serves every init scale.

    (Gradients at the paper's init are ~1e-3, where an absolute 1e-10 would be loose.)
    """
    tiny = jnp.finfo(rhs.dtype).tiny
    return jnp.max(jnp.abs(lhs - rhs)) / jnp.maximum(jnp.max(jnp.abs(rhs)), tiny)


def draw_mesh() -> Mesh:
    """A 1-d mesh over every device (every host's, after `jax.distributed.initialize()`)."""
    return Mesh(np.asarray(jax.devices()), ("draws",))


def effective_chunk_size(chunk_size: int) -> int:
    """`chunk_size` rounded up to a multiple of BLOCK (whole blocks)."""
    return -(-chunk_size // BLOCK) * BLOCK


def draw_errors(
    claim: Claim,
    spec: ModelSpec,
    *,
    trials: int,
    seed: int = 0,
    dtype: str = "float64",
    scale: float = 1.0,
    chunk_size: int = 256,
    progress: bool = True,
    store: ChunkStore | None = None,
) -> np.ndarray:
    """The relative error of `claim` on draws 0..trials-1, as a float64 numpy array.

    Draws go in chunks of `chunk_size` (rounded up to BLOCK). A chunk's blocks of BLOCK
    draws are spread round-robin over the mesh's devices, each block one call of the same
    compiled ``jit(vmap)`` executable, dispatched asynchronously so devices run in parallel.
    (An SPMD-partitioned program changes float64 rounding in the last bit for a few draws;
    one executable per block keeps results bit-identical for any chunk size or device
    count.) With several processes, each computes the blocks of its own devices and the
    chunk is all-gathered. With a `store`, finished chunks are read back, not recomputed,
    and new ones are appended as they finish.
    """
    check_sweep_arguments(trials=trials, chunk_size=chunk_size, scale=scale, dtype=dtype)
    block = claim_block(claim, spec, seed=seed, dtype=dtype, scale=scale)
    devices = list(draw_mesh().devices.flat)
    chunk = effective_chunk_size(chunk_size)
    errors = []
    bar = tqdm(total=trials, desc=claim.id, unit="draw", disable=not progress, file=sys.stderr, leave=False)
    for number, start in enumerate(range(0, trials, chunk)):
        stop = min(start + chunk, trials)
        cached = store.get(claim.id, number) if store is not None else None
        if cached is None:
            cached = _run_chunk(block, devices, start, chunk)[: stop - start].tolist()
            if store is not None:
                store.append(claim.id, number, start, stop, cached)
        errors.append(np.asarray(cached, dtype=np.float64))
        bar.update(stop - start)
    bar.close()
    return np.concatenate(errors)


#: The most recently used compiled blocks. Bounded: every compiled XLA CPU executable holds
#: hundreds of memory mappings, and a process that kept all of them (a report sweeps ~90 claims
#: in two dtypes) would run into the kernel's mapping limit (vm.max_map_count, 65530).
_BLOCKS: OrderedDict[tuple, tuple] = OrderedDict()
MAX_CACHED_BLOCKS = 8


def claim_block(claim: Claim, spec: ModelSpec, *, seed: int, dtype: str, scale: float):
    """The jitted ``index[BLOCK] -> error[BLOCK]`` function that every sweep block runs.

    Cached per (claim, spec, seed, dtype, scale), so repeated sweeps compile once; only the
    `MAX_CACHED_BLOCKS` most recent are kept.
    """
    key = (id(claim), spec, seed, dtype, scale)
    if key in _BLOCKS:
        _BLOCKS.move_to_end(key)
    else:
        _BLOCKS[key] = (claim, _claim_block(claim, spec, seed=seed, dtype=dtype, scale=scale))
        while len(_BLOCKS) > MAX_CACHED_BLOCKS:
            _BLOCKS.popitem(last=False)
    return _BLOCKS[key][1]


def _claim_block(claim: Claim, spec: ModelSpec, *, seed: int, dtype: str, scale: float):
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 sweeps need jax_enable_x64 set before any array is made")
    compare = claim.build(spec)
    root = jax.random.PRNGKey(seed)

    def one(index):
        # Keys from the draw index alone: results do not depend on chunks or devices.
        key_params, key_doc = jax.random.split(jax.random.fold_in(root, index))
        params = draw_params(key_params, spec, scale=scale, dtype=DTYPES[dtype])
        lhs, rhs = compare(params, draw_document(key_doc, spec))
        return (claim.measure or relative_error)(lhs, rhs)

    return jax.jit(jax.vmap(one))


def _run_chunk(block, devices: list, start: int, chunk: int) -> np.ndarray:
    """Errors of draws start..start+chunk-1: block b runs on device b mod len(devices)."""
    n_blocks = chunk // BLOCK
    mine = {b: devices[b % len(devices)] for b in range(n_blocks)}
    mine = {b: d for b, d in mine.items() if d.process_index == jax.process_index()}
    pending = {
        b: block(jax.device_put(jnp.arange(start + b * BLOCK, start + (b + 1) * BLOCK), device))
        for b, device in mine.items()
    }
    out = np.zeros((n_blocks, BLOCK), dtype=np.float64)
    for b, value in pending.items():
        out[b] = np.asarray(value, dtype=np.float64)
    if jax.process_count() > 1:
        # Other processes' blocks are zeros here: the sum over processes is exact.
        out = np.asarray(multihost_utils.process_allgather(out)).sum(axis=0)
    return out.reshape(-1)


def check_sweep_arguments(*, trials: int, chunk_size: int, scale: float, dtype: str) -> None:
    if trials < 1:
        raise InputError(f"--trials must be >= 1, got {trials}")
    if chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {chunk_size}")
    if not (scale > 0 and np.isfinite(scale)):
        raise InputError(f"--scale must be a positive number, got {scale}")
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be float64 or float32, got {dtype!r}")


def run_claim(claim: Claim, spec: ModelSpec, *, trials: int, seed: int = 0, dtype: str = "float64",
              scale: float = 1.0, chunk_size: int = 256, progress: bool = True,
              store: ChunkStore | None = None) -> ClaimResult:
    """Sweep `claim` and judge it against its tolerance and its expected outcome."""
    errors = draw_errors(claim, spec, trials=trials, seed=seed, dtype=dtype, scale=scale,
                         chunk_size=min(chunk_size, trials), progress=progress, store=store)
    tolerance = claim.tolerance[dtype]
    finite = bool(np.all(np.isfinite(errors)))
    max_error = float(np.max(errors)) if finite else float("inf")
    passed = finite and max_error <= tolerance
    statistics: dict[str, float] = {}
    if claim.summary is not None:  # an empirical claim: judged on a statistic of all draws
        statistics = {name: float(value) for name, value in claim.summary(errors).items()}
        max_error = statistics["error"]
        passed = bool(np.isfinite(max_error)) and max_error <= tolerance
    if claim.context is not None:  # reported numbers, not judged (never the "error" entry)
        statistics.update({k: float(v) for k, v in claim.context(spec).items() if k != "error"})
    expected = claim.expected(spec)
    finding = None
    if not passed:
        unmet = claim.unmet(spec)
        if unmet:
            finding = (
                f"Fails outside its hypotheses ({', '.join(f'{k}={v}' for k, v in unmet.items())}; "
                f"the statement assumes {', '.join(f'{k}={claim.requires[k]}' for k in unmet)}): "
                f"max error {max_error:.3g}."
            )
        elif claim.finding:
            finding = claim.finding.format(**{**statistics, "max_error": max_error})
        else:
            finding = f"FAILS where it is claimed to hold: max error {max_error:.3g} > {tolerance:g}."
    proof = claim.proof(spec) if claim.proof is not None else None
    qs = {f"p{q}": float(np.quantile(errors, q / 100)) for q in (10, 50, 90, 99)}
    return ClaimResult(
        id=claim.id, statement=claim.statement, dtype=dtype, tolerance=tolerance, trials=trials,
        max_error=max_error, median_error=float(np.median(errors)), passed=passed,
        finding=finding, expected=expected,
        unexpected=expected is not None and passed != expected,
        proof=proof, seed=seed, scale=scale, quantiles=qs, errors=errors.tolist(), statistics=statistics,
    )
