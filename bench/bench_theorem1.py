"""Theorem 1 benchmarks: `python bench/bench_theorem1.py` (or `attnverify bench theorem1`)."""

import json
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)

from attnverify.verification.bench.measures import derive_and_compile, sweep_throughput  # noqa: E402

from attnverify.spec import PAPER, ModelSpec  # noqa: E402

SWEEP_SPEC = ModelSpec(max_len=16, d_embed=32, d_att=16, d_out=16, heads=8, vocab_size=64)

if __name__ == "__main__":
    result = {
        "machine": f"{platform.machine()} {jax.devices()[0].platform} x{jax.device_count()}",
        "derive_compile_paper_sizes": derive_and_compile(PAPER),
        "sweep_T16_K8_d32": sweep_throughput(SWEEP_SPEC),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
