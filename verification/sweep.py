"""Sweeps: run a claim on many random parameter draws with ``jit(vmap(...))``.

Draw ``d`` uses the key ``fold_in(PRNGKey(seed), d)``, so the results do not depend on
the chunk size. Chunks bound memory; a progress bar shows them on stderr.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from attnverify.errors import InputError
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.spec import ModelSpec
from attnverify.verification.registry import Claim

DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


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
) -> np.ndarray:
    """The relative error of `claim` on draws 0..trials-1, as a float64 numpy array."""
    if trials < 1:
        raise InputError(f"--trials must be >= 1, got {trials}")
    if chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {chunk_size}")
    if not scale > 0:
        raise InputError(f"--scale must be > 0, got {scale}")
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be float64 or float32, got {dtype!r}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 sweeps need jax_enable_x64 set before any array is made")
    compare = claim.build(spec)
    root = jax.random.PRNGKey(seed)

    def one(index):
        key_params, key_doc = jax.random.split(jax.random.fold_in(root, index))
        params = draw_params(key_params, spec, scale=scale, dtype=DTYPES[dtype])
        lhs, rhs = compare(params, draw_document(key_doc, spec))
        return relative_error(lhs, rhs)

    batched = jax.jit(jax.vmap(one))
    errors = []
    starts = range(0, trials, chunk_size)
    bar = tqdm(starts, desc=claim.id, unit="chunk", disable=not progress, file=sys.stderr, leave=False)
    for start in bar:
        # Always run full chunks (one compilation), then drop the draws past `trials`.
        index = jnp.arange(start, start + chunk_size)
        errors.append(np.asarray(batched(index), dtype=np.float64)[: trials - start])
    return np.concatenate(errors)


def run_claim(claim: Claim, spec: ModelSpec, *, trials: int, seed: int = 0, dtype: str = "float64",
              scale: float = 1.0, chunk_size: int = 256, progress: bool = True) -> ClaimResult:
    """Sweep `claim` and judge it against its tolerance and its expected outcome."""
    errors = draw_errors(claim, spec, trials=trials, seed=seed, dtype=dtype, scale=scale,
                         chunk_size=min(chunk_size, trials), progress=progress)
    tolerance = claim.tolerance[dtype]
    finite = bool(np.all(np.isfinite(errors)))
    max_error = float(np.max(errors)) if finite else float("inf")
    passed = finite and max_error <= tolerance
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
            finding = claim.finding.format(max_error=max_error)
        else:
            finding = f"FAILS where it is claimed to hold: max error {max_error:.3g} > {tolerance:g}."
    proof = claim.proof(spec) if claim.proof is not None else None
    qs = {f"p{q}": float(np.quantile(errors, q / 100)) for q in (10, 50, 90, 99)}
    return ClaimResult(
        id=claim.id, statement=claim.statement, dtype=dtype, tolerance=tolerance, trials=trials,
        max_error=max_error, median_error=float(np.median(errors)), passed=passed,
        finding=finding, expected=expected,
        unexpected=expected is not None and passed != expected,
        proof=proof, seed=seed, scale=scale, quantiles=qs, errors=errors.tolist(),
    )
