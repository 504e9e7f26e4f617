"""LIME's weighted Gram by popcount of bit-packed masks (`numerics.lime.packed_gram`) and the ridge
built on it (`ridge.shell_ridge`): equal to the float matmul and to `weighted_ridge` to rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics.lime import packed_gram as pg
from attnverify.numerics.lime.ridge import shell_ridge, weighted_ridge
from attnverify.numerics.lime.sampling import kernel_weights, sample_masks, shell_weights


def _masks(n, d, seed=0):
    return sample_masks(jax.random.PRNGKey(seed), n, d, dtype=jnp.float64)


# Compiled as the engine runs them (called eagerly, each operation would compile on its own).
_pack = jax.jit(pg.pack, static_argnums=2)
_packed_gram, _matmul_gram, _weighted_gram = jax.jit(pg.packed_gram), jax.jit(pg.matmul_gram), jax.jit(pg.weighted_gram)
_shell_ridge, _weighted_ridge = jax.jit(shell_ridge), jax.jit(weighted_ridge)


@pytest.mark.parametrize("d", [40, 100])
def test_packed_gram_equals_the_matmul(d):
    n = 5000
    assert pg.packing_pays(n, d)  # the packed path is the one under test
    z = _masks(n, d)
    shell = pg.shells(z)
    weight = shell_weights(d, 0.25)
    packed, fits = _pack(z, shell, pg.words_per_shell(n, d))
    assert bool(fits)
    got = np.asarray(_packed_gram(packed, weight))
    want = np.asarray(_matmul_gram(z, weight[shell]))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
    # can fail: the weights of the wrong shells give another matrix
    wrong = np.asarray(_packed_gram(packed, weight[::-1]))
    assert np.max(np.abs(wrong - want)) > 1e-3 * np.max(np.abs(want))


def test_a_shell_that_overflows_its_words_falls_back_to_the_matmul():
    n, d = 5000, 40
    z = np.ones((n, d))
    z[:, 0] = 0.0  # every row in shell 1: far more rows than its words hold
    z = jnp.asarray(z)
    shell = pg.shells(z)
    _, fits = _pack(z, shell, pg.words_per_shell(n, d))
    assert not bool(fits)
    weight = shell_weights(d, 0.25)
    np.testing.assert_allclose(_weighted_gram(z, shell, weight), _matmul_gram(z, weight[shell]), rtol=1e-12)


@pytest.mark.parametrize("d, ridge", [(6, 1.0), (64, 1.0), (64, 0.0)])
def test_shell_ridge_equals_weighted_ridge(d, ridge):
    n = 4000
    z = _masks(n, d, seed=d)
    beta = jax.random.normal(jax.random.PRNGKey(1), (d, 2), dtype=jnp.float64)
    y = z @ beta + 0.1 * jax.random.normal(jax.random.PRNGKey(2), (n, 2), dtype=jnp.float64)
    want = _weighted_ridge(z, y, kernel_weights(z, 0.25), ridge)
    got = _shell_ridge(z, y, shell_weights(d, 0.25), ridge)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_shell_weights_are_the_kernel_of_each_shell():
    d = 9
    z = jnp.asarray(np.tril(np.ones((d + 1, d)), -1)[::-1].copy())  # row s keeps d - s features
    assert np.array_equal(np.asarray(pg.shells(z)), np.arange(d + 1))
    np.testing.assert_array_equal(shell_weights(d, 0.25), kernel_weights(z, 0.25))


def test_without_x64_the_gram_is_the_matmul():
    # 64-bit words do not exist without x64 (jnp.uint64 would silently be 32 bits): no packing then.
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp, numpy as np\n"
            "from attnverify.numerics.lime import packed_gram as pg\n"
            "from attnverify.numerics.lime.sampling import sample_masks, shell_weights\n"
            "z = sample_masks(jax.random.PRNGKey(0), 5000, 64, dtype=jnp.float32)\n"
            "s = pg.shells(z); w = shell_weights(64, 0.25, jnp.float32)\n"
            "assert pg.packing_pays(5000, 64)\n"
            "gram, want = jax.jit(pg.weighted_gram)(z, s, w), jax.jit(pg.matmul_gram)(z, w[s])\n"
            "np.testing.assert_allclose(gram, want, rtol=1e-6)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# -- packed_gram: the capacity check at its exact boundary (kills P1) -----------------------------
def _masks_with_shell_sizes(sizes: dict[int, int], d: int, seed=0) -> np.ndarray:
    """Binary masks, sizes[s] rows with s removed features each (uniform s-subsets)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, count in sizes.items():
        for _ in range(count):
            z = np.ones(d)
            z[rng.choice(d, s, replace=False)] = 0.0
            rows.append(z)
    z = np.array(rows)
    return z[rng.permutation(len(z))]


@pytest.mark.parametrize("extra", [0, 1])
def test_a_shell_one_row_over_its_words_is_not_packed_and_the_gram_is_exact(extra):
    from attnverify.numerics.lime import packed_gram as pg
    from attnverify.numerics.lime.sampling import shell_weights

    n_target, d = 5000, 40
    words = pg.words_per_shell(n_target, d)
    capacity = words * pg.WORD
    sizes = {1: capacity + extra}
    rest = n_target - sizes[1]
    for s in range(2, d + 1):  # spread the rest over the other shells, each well under capacity
        sizes[s] = rest // (d - 1) + (1 if s - 2 < rest % (d - 1) else 0)
    z = jnp.asarray(_masks_with_shell_sizes(sizes, d))
    n = z.shape[0]
    assert pg.packing_pays(n, d) and pg.words_per_shell(n, d) == words
    shell = pg.shells(z)
    _, fits = jax.jit(pg.pack, static_argnums=2)(z, shell, words)
    assert bool(fits) == (extra == 0)  # capacity rows fit, capacity + 1 do not
    weight = np.asarray(shell_weights(d, 0.25))
    zn = np.asarray(z)
    want = (zn.T * weight[zn.shape[1] - zn.sum(1).astype(int)]) @ zn  # NumPy oracle
    got = np.asarray(jax.jit(pg.weighted_gram)(z, shell, jnp.asarray(weight)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
