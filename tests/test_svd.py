"""SVDs under `jax.vmap` run one matrix at a time (`numerics.svd`), so no sweep can hand jaxlib's
CPU SVD kernel a batch it splits over XLA's thread pool and hang on (`numerics.known_defects`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics import svd

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("theory", "numerics", "verification", "figures", "attnverify")
#: The jnp.linalg functions that are, or call, an SVD.
SVD_CALLS = {"svd", "lstsq", "pinv", "matrix_rank", "svdvals", "cond"}


def _svd_operands(function, *args) -> list[str]:
    """The operand types of every LAPACK SVD custom call in the program of vmap(function)."""
    text = jax.jit(jax.vmap(function)).lower(*args).as_text()
    return re.findall(r"custom_call @lapack_[sd]gesdd_ffi\([^)]*\).*?: \((tensor<[^>]*>)", text)


@pytest.mark.parametrize("name", ["singular_values", "left_singular_vectors", "least_squares"])
def test_a_batch_of_svds_is_one_call_per_matrix_with_the_batched_numbers(name):
    rng = np.random.default_rng(0)
    M, b = rng.normal(size=(5, 7, 3)), rng.normal(size=(5, 7))
    args = (M, b) if name == "least_squares" else (M,)
    ours = getattr(svd, name)
    direct = {"singular_values": lambda M: jnp.linalg.svd(M, compute_uv=False),
              "left_singular_vectors": lambda M: jnp.linalg.svd(M, full_matrices=True)[0],
              "least_squares": lambda M, b: jnp.linalg.lstsq(M, b)[0]}[name]
    assert _svd_operands(ours, *args) == ["tensor<7x3xf64>"]  # one matrix, in a loop
    # Can fail: jnp.linalg under vmap hands the kernel the whole batch.
    assert _svd_operands(direct, *args) == ["tensor<5x7x3xf64>"]
    np.testing.assert_allclose(jax.vmap(ours)(*args), jax.vmap(direct)(*args), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ours(*(a[0] for a in args)), direct(*(a[0] for a in args)), rtol=1e-13, atol=1e-14)


def _direct_svd_calls(path: Path) -> list[str]:
    """`jnp.linalg.X` / `jax.numpy.linalg.X` calls of an SVD function in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in SVD_CALLS and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "linalg" and ast.unparse(node.value.value) in ("jnp", "jax.numpy"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return found


def test_the_package_calls_an_svd_only_through_numerics_svd():
    calls = [c for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py")) for c in _direct_svd_calls(path)]
    # Can fail: the scan finds numerics/svd.py's own three calls.
    assert sorted(c.split(":")[0] for c in calls if c.startswith("numerics/svd.py")) == ["numerics/svd.py"] * 3
    assert [c for c in calls if not c.startswith("numerics/svd.py")] == []


_INFINITE = """
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from attnverify.numerics import svd
M = jnp.array([[jnp.inf, 2.0, 1.0], [3.0, 1.0, 1.0], [1.0, 5.0, 1.0], [2.0, 2.0, 1.0]])
outs = (svd.left_singular_vectors(M), svd.least_squares(M, M[:, 1]), svd.singular_values(M),
        jax.vmap(svd.least_squares)(M[None], M[None, :, 1]))
print(*(bool(jnp.all(jnp.isnan(x))) for x in outs))
"""


def test_a_matrix_holding_an_infinity_gives_nan_and_never_reaches_lapacks_svd():
    # Can fail: LAPACK's SVD with U and V never returned on it (related fiber on a model whose read-outs
    # overflow hung past any limit). In a child process, so that a hang ends at the timeout.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _INFINITE], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.split() == ["True"] * 4, out.stderr[-2000:]


def test_a_finite_matrix_gives_the_kernels_numbers_bit_for_bit():
    # Can fail: the guard changed a finite matrix (a where() that rounded, or zeros let through).
    M = jax.random.normal(jax.random.PRNGKey(3), (7, 4), jnp.float64)
    b = jnp.arange(7.0)
    assert np.array_equal(svd.least_squares(M, b), jnp.linalg.lstsq(M, b)[0])
    assert np.array_equal(svd.left_singular_vectors(M), jnp.linalg.svd(M, full_matrices=True)[0])
    assert np.array_equal(svd.singular_values(M), jnp.linalg.svd(M, compute_uv=False))
