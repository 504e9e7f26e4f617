"""scipy's OpenBLAS, which jaxlib's LAPACK calls on CPU, runs on one thread in every command and
API call (`numerics.blas_threads`, from `cli_support.enable_x64`: its idle threads busy-waited and
took the cores from XLA), and a thread count the user set is kept."""

import json
import os
import subprocess
import sys

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")  # scikit-learn's, in the test extras

_PROBE = ("from attnverify.cli_support import enable_x64\n"
          "enable_x64()\n"
          "import jax.numpy as jnp, json, threadpoolctl\n"
          "jnp.linalg.solve(jnp.eye(3), jnp.ones(3)).block_until_ready()\n"
          "print(json.dumps({i['filepath']: i['num_threads'] for i in threadpoolctl.threadpool_info()"
          " if 'scipy' in i['filepath']}))\n")


def _threads(**env: str) -> dict[str, int]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_jaxlibs_blas_runs_on_one_thread_and_a_users_choice_is_kept():
    default = _threads()
    if not default:
        pytest.skip("scipy's BLAS is not its bundled OpenBLAS here")
    assert set(default.values()) == {1}
    # Can fail: the user's own setting must win (and it is visible to threadpoolctl).
    chosen = _threads(OPENBLAS_NUM_THREADS="2")
    assert set(chosen.values()) == {2}
