"""Benchmarks (issue targets live here, not in timed tests; numbers go in docs/benchmarks.md).

* `derive_and_compile`: SymPy derivation + first jitted call at the paper's sizes;
* `sweep_throughput`: models/s of the ``thm1.gradient`` sweep next to a `jax.grad`-only
  sweep of the same draws, measured in one run;
* `scaling`: sweep throughput against chunk size, T, K and d_e, with the compiled block's
  memory; `device_scaling` repeats one point with 1, 2, 4 (forced host) devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.model import embed, output_gradient
from attnverify.verification import claims  # noqa: F401
from attnverify.verification.registry import REGISTRY
from attnverify.verification.sweep import BLOCK, claim_block, draw_errors

from attnverify.spec import PAPER, ModelSpec

#: The sweep point of the issue's throughput target (>= 1e4 models/s on 2 cores).
TARGET_SPEC = ModelSpec(max_len=16, d_embed=32, d_att=16, d_out=16, heads=8, vocab_size=64)


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def derive_and_compile(spec: ModelSpec = PAPER) -> dict[str, float]:
    """Seconds to derive Theorem 1's quantities with SymPy and to jit-compile + run them once."""
    from attnverify.numerics.quantities import theorem1_quantities
    from attnverify.theory import memo
    from attnverify.theory.derivations import derive_gradient

    derive_gradient.cache_clear()
    theorem1_quantities.cache_clear()
    kept = memo.set_derivations_folder(None)  # derive, not read back a stored derivation
    try:
        derive_s, _ = _timed(lambda: derive_gradient(spec))
    finally:
        memo.set_derivations_folder(kept)
    key_p, key_d = jax.random.split(jax.random.PRNGKey(0))
    params, tokens = draw_params(key_p, spec), draw_document(key_d, spec)
    q = theorem1_quantities(spec)
    compile_s, _ = _timed(lambda: [jax.jit(q[name])(params, tokens) for name in ("derived", "paper")])
    return {"derive_s": derive_s, "compile_s": compile_s, "total_s": derive_s + compile_s}


def _best(fn, repeats: int) -> float:
    """The shortest of `repeats` timed calls (the run least disturbed by the rest of the machine)."""
    return min(_timed(fn)[0] for _ in range(repeats))


def sweep_throughput(spec: ModelSpec = TARGET_SPEC, *, trials: int = 8192, chunk_size: int = 1024,
                     repeats: int = 3) -> dict:
    """Models/s of the ``thm1.gradient`` sweep and of a `jax.grad`-only sweep (float64), each
    the best of `repeats` runs."""
    claim = REGISTRY["thm1.gradient"]
    kw = dict(trials=trials, chunk_size=chunk_size, progress=False)
    draw_errors(claim, spec, **{**kw, "trials": chunk_size})  # compile (on every device)
    claim_s = _best(lambda: draw_errors(claim, spec, **kw), repeats)

    root = jax.random.PRNGKey(0)

    def grad_only(index):
        key_p, key_d = jax.random.split(jax.random.fold_in(root, index))
        params = draw_params(key_p, spec, dtype=jnp.float64)
        tokens = draw_document(key_d, spec)
        return jnp.sum(output_gradient(params, embed(params, tokens, spec), spec))

    batched = jax.jit(jax.vmap(grad_only))
    jax.block_until_ready(batched(jnp.arange(chunk_size)))
    grad_s = _best(lambda: [batched(jnp.arange(s, s + chunk_size)) for s in range(0, trials, chunk_size)], repeats)
    return {
        "spec": f"T={spec.max_len} K={spec.heads} d_e={spec.d_embed}",
        "trials": trials,
        "repeats": repeats,
        "devices": jax.device_count(),  # the sweep's blocks spread over them (numerics.host_devices)
        "claim_models_per_s": trials / claim_s,
        "grad_only_models_per_s": trials / grad_s,
        "claim_time_over_grad_time": claim_s / grad_s,
    }


def _block_memory(spec: ModelSpec) -> int:
    """Bytes one block needs: the larger of its two programs (draws; the group's measures, which
    take the drawn models as arguments)."""
    block = claim_block(REGISTRY["thm1.gradient"], spec, seed=0, dtype="float64", scale=1.0)
    seed, index = jnp.asarray(0), jnp.arange(BLOCK)
    drawn = jax.eval_shape(block.draws, seed, index)
    sizes = []
    for stats in (block.draws.lower(seed, index).compile().memory_analysis(),
                  block.measures.lower(*drawn).compile().memory_analysis()):
        if stats is None:
            return -1
        sizes.append(int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes))
    return max(sizes)


def scaling(*, trials: int = 2048, quick: bool = False) -> list[dict]:
    """Throughput of the ``thm1.gradient`` sweep as one size varies at a time."""
    base = TARGET_SPEC
    points = [("chunk", c, base) for c in ((64, 1024) if quick else (64, 256, 1024, 4096))]
    for T in (8, 64) if quick else (8, 32, 64, 128):
        points.append(("T", T, base.replace(max_len=T)))
    for K in (2, 16) if quick else (1, 4, 16):
        points.append(("K", K, base.replace(heads=K)))
    for d in (16, 64) if quick else (8, 64, 128):
        points.append(("d_e", d, base.replace(d_embed=d)))
    rows = []
    for name, value, spec in points:
        chunk = value if name == "chunk" else 1024
        claim = REGISTRY["thm1.gradient"]
        draw_errors(claim, spec, trials=chunk, chunk_size=chunk, progress=False)  # compile
        seconds, _ = _timed(
            lambda s=spec, c=chunk, cl=claim: draw_errors(cl, s, trials=trials, chunk_size=c, progress=False)
        )
        rows.append({"vary": name, "value": value, "models_per_s": trials / seconds,
                     "block_bytes": _block_memory(spec), "chunk_bytes_est": _block_memory(spec) * chunk // BLOCK})
    return rows


def device_scaling(devices=(1, 2, 4), *, trials: int = 4096) -> list[dict]:
    """Models/s with 1, 2, 4 forced host devices (one subprocess each: the count is fixed at start)."""
    code = (
        "import jax, json, time; jax.config.update('jax_enable_x64', True)\n"
        "from attnverify.verification.bench.measures import TARGET_SPEC\n"
        "from attnverify.verification.registry import REGISTRY\n"
        "from attnverify.verification.sweep import draw_errors\n"
        "c = REGISTRY['thm1.gradient']; draw_errors(c, TARGET_SPEC, trials=1024, chunk_size=1024, progress=False)\n"
        f"t = time.perf_counter(); draw_errors(c, TARGET_SPEC, trials={trials}, chunk_size=1024, progress=False)\n"
        f"print(json.dumps({{'devices': jax.device_count(), 'models_per_s': {trials} / (time.perf_counter() - t)}}))\n"
    )
    rows = []
    for n in devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows
