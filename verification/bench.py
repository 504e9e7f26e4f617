"""Benchmarks of the Theorem 1 pipeline (targets: issue 2; numbers go in the README).

* derive + compile time at the paper's sizes (SymPy derivation, then the first jitted call);
* sweep throughput of ``thm1.gradient`` (paper closed form vs `jax.grad`, with the draws) in
  models/s, next to a sweep of `jax.grad` alone on the same draws, measured in one run.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.model import embed, output_gradient
from attnverify.verification import claims  # noqa: F401
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import draw_errors

from attnverify.spec import PAPER, ModelSpec


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def derive_and_compile(spec: ModelSpec = PAPER) -> dict[str, float]:
    """Seconds to derive Theorem 1's quantities with SymPy and to jit-compile + run them once."""
    from attnverify.numerics.quantities import theorem1_quantities
    from attnverify.theory.derivations import derive_gradient

    derive_gradient.cache_clear()
    theorem1_quantities.cache_clear()
    derive_s, _ = _timed(lambda: derive_gradient(spec))
    key_p, key_d = jax.random.split(jax.random.PRNGKey(0))
    params, tokens = draw_params(key_p, spec), draw_document(key_d, spec)
    q = theorem1_quantities(spec)
    compile_s, _ = _timed(lambda: [jax.jit(q[name])(params, tokens) for name in ("derived", "paper")])
    return {"derive_s": derive_s, "compile_s": compile_s, "total_s": derive_s + compile_s}


def sweep_throughput(spec: ModelSpec, *, trials: int = 8192, chunk_size: int = 1024) -> dict[str, float]:
    """Models/s of the ``thm1.gradient`` sweep and of a `jax.grad`-only sweep (float64)."""
    claim = REGISTRY["thm1.gradient"]
    kw = dict(trials=trials, chunk_size=chunk_size, progress=False)
    draw_errors(claim, spec, **{**kw, "trials": chunk_size})  # compile
    claim_s, _ = _timed(lambda: draw_errors(claim, spec, **kw))

    root = jax.random.PRNGKey(0)

    def grad_only(index):
        key_p, key_d = jax.random.split(jax.random.fold_in(root, index))
        params = draw_params(key_p, spec, dtype=jnp.float64)
        tokens = draw_document(key_d, spec)
        return output_gradient(params, embed(params, tokens, spec), spec)

    batched = jax.jit(jax.vmap(grad_only))

    def run_grad():
        return [batched(jnp.arange(s, s + chunk_size)).sum() for s in range(0, trials, chunk_size)]

    jax.block_until_ready(batched(jnp.arange(chunk_size)))
    grad_s, _ = _timed(run_grad)
    return {
        "trials": trials,
        "claim_models_per_s": trials / claim_s,
        "grad_only_models_per_s": trials / grad_s,
        "claim_over_grad_time": claim_s / grad_s,
    }
