"""The unrolled Threefry key type (`numerics.threefry`) gives `jax.random`'s own numbers,
bit for bit, and so do the sweeps' draws (`numerics.draws`) that use it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics import draws
from attnverify.numerics import threefry as fry
from jax.extend.random import define_prng_impl, threefry_prng_impl

from attnverify.spec import ModelSpec

SHAPES = [(), (2, 3, 5)]


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@jax.jit
def _samples(key):
    """Every kind of draw the project makes, from one key (raw or typed); one compilation."""
    out = {"split": jax.random.split(key, 6), "fold_in": jax.random.fold_in(key, draws.SCORER_STREAM)}
    out = {k: jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v for k, v in out.items()}
    for shape in SHAPES:
        for dtype in (jnp.float64, jnp.float32):
            out[f"uniform{shape}{dtype.dtype}"] = jax.random.uniform(key, shape, dtype, -0.1, 0.1)
            out[f"normal{shape}{dtype.dtype}"] = jax.random.normal(key, shape, dtype)
        out[f"randint{shape}"] = jax.random.randint(key, shape, 1, 64)
        for width in (8, 16, 32, 64):
            out[f"bits{shape}{width}"] = jax.random.bits(key, shape, dtype=f"uint{width}")
    return out


def test_unrolled_key_gives_jax_random_numbers():
    for seed in (0, 12345):
        raw = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
        assert _same(_samples(fry.unrolled_key(raw)), _samples(raw))
    typed = jax.random.key(3)  # a typed default key converts to the same key as its raw data
    assert _same(jax.random.key_data(fry.unrolled_key(typed)), jax.random.key_data(typed))
    assert jax.random.key_impl(fry.unrolled_key(typed)) == jax.random.key_impl(fry.unrolled_key(raw))


def test_unrolled_key_under_jit_and_vmap():
    root = jax.random.PRNGKey(3)

    def batch(convert):
        return jax.jit(jax.vmap(lambda i: jax.random.normal(convert(jax.random.fold_in(root, i)), (4, 5))))

    index = jnp.arange(50)
    assert _same(batch(fry.unrolled_key)(index), batch(lambda k: k)(index))


def test_a_wrong_hash_is_caught():
    """Negative control: one rotation constant off and the comparison fails."""
    wrong = ((13, 15, 26, 6), (17, 29, 16, 23))
    impl = define_prng_impl(
        key_shape=(2,), seed=threefry_prng_impl.seed, fold_in=fry._fold_in, name="wrong", tag="wrong",
        split=lambda k, shape: jnp.stack(fry.threefry2x32(k[0], k[1], *fry._counters(shape), rotations=wrong), -1),
        random_bits=lambda k, width, shape: fry._random_bits(k, width, shape),
    )
    raw = jax.random.PRNGKey(0)
    wrapped = jax.random.wrap_key_data(raw, impl=impl)
    assert not np.array_equal(jax.random.key_data(jax.random.split(wrapped, 6)), jax.random.split(raw, 6))
    x1, x2 = jnp.zeros(8, jnp.uint32), jnp.arange(8, dtype=jnp.uint32)
    assert not _same(fry.threefry2x32(raw[0], raw[1], x1, x2, rotations=wrong),
                     fry.threefry2x32(raw[0], raw[1], x1, x2))


#: The additive scorer's v comes from a folded key; the other arrays (biases, the deep
#: scorer's U) are `jax.random.uniform` of split keys like W_q's, and the dtypes' bit
#: conversions are covered by `test_unrolled_key_gives_jax_random_numbers`. (Compiling
#: jax.random's own Threefry for the reference is slow on CPU: keep this draw small.)
SPEC = ModelSpec(max_len=5, d_embed=7, d_att=3, d_out=2, heads=2, vocab_size=11, scorer="additive")


def _draws(spec, dtype, *, unrolled: bool):
    """Draw 5 of a sweep (split(fold_in(PRNGKey(0), 5))), init scale 2, through the unrolled
    key or jax.random's default key (vmapped draws: `test_unrolled_key_under_jit_and_vmap`)."""

    def one(index):
        key_params, key_doc = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), index))
        return draws.draw_params(key_params, spec, scale=2.0, dtype=dtype), draws.draw_document(key_doc, spec)

    original = draws.unrolled_key
    if not unrolled:
        draws.unrolled_key = lambda k: k
    try:
        return jax.jit(one)(5)
    finally:
        draws.unrolled_key = original


def test_draws_are_bit_identical_to_jax_random():
    """`draw_params` / `draw_document` give the default keys' numbers, bit for bit."""
    assert _same(_draws(SPEC, jnp.float64, unrolled=True), _draws(SPEC, jnp.float64, unrolled=False))


def test_older_bits_keep_the_default_key():
    raw = jax.random.PRNGKey(5)
    with jax.threefry_partitionable(False):
        assert fry.unrolled_key(raw) is raw


def test_normal_rows_are_the_rows_of_the_whole_table_and_a_wrong_layout_is_caught():
    """`normal_rows` computes rows of `jax.random.normal`'s table alone, bit for bit, in both
    dtypes, whatever the rows (repeated, first, last). Can fail: the rows of a table of
    another width hash other counters, and so does a row read at the wrong index."""
    key = jax.random.fold_in(jax.random.PRNGKey(2), 9)
    height, width = 13, 6
    rows = jnp.array([0, 12, 3, 3, 7])
    for dtype in (jnp.float64, jnp.float32):
        table = jax.random.normal(key, (height, width), dtype)
        got = jax.jit(fry.normal_rows, static_argnums=(2, 3))(key, rows, width, dtype)
        assert got.dtype == dtype and got.tobytes() == table[rows].tobytes()
        assert not np.array_equal(fry.normal_rows(key, rows, width + 1, dtype)[:, :width], table[rows])
        assert not np.array_equal(fry.normal_rows(key, rows + 1, width, dtype), table[rows])
    with jax.threefry_partitionable(False), pytest.raises(NotImplementedError, match="partitionable"):
        fry.normal_rows(key, rows, width, jnp.float64)


def test_document_rows_draws_hold_the_tables_rows_and_nan_elsewhere():
    key = jax.random.PRNGKey(4)
    tokens = draws.draw_document(jax.random.PRNGKey(5), SPEC)
    full = draws.draw_params(key, SPEC, dtype=jnp.float64)
    rows = draws.draw_params(key, SPEC, dtype=jnp.float64, rows=tokens)
    used = np.zeros(SPEC.vocab_size, bool)
    used[np.asarray(tokens)] = True
    assert 0 < used.sum() < SPEC.vocab_size
    assert np.asarray(rows.embedding)[used].tobytes() == np.asarray(full.embedding)[used].tobytes()
    assert np.isnan(np.asarray(rows.embedding)[~used]).all()
    assert _same(rows._replace(embedding=full.embedding), full)  # every other array as drawn


# -- what the draws are, against docs/theory.md §1.2, not against themselves ------------------------
def test_a_documents_ids_are_cls_then_uniform_over_the_rest_of_the_vocabulary():
    # [CLS] (id 0) first, then ids uniform on 1..V-1, UNK (1) included: each id's count over
    # 2,000 documents within 6 standard deviations of its binomial mean.
    spec = ModelSpec(max_len=8, vocab_size=12)
    docs = np.asarray(jax.vmap(lambda k: draws.draw_document(k, spec))(jax.random.split(jax.random.PRNGKey(0), 2000)))
    assert (docs[:, 0] == 0).all() and docs[:, 1:].min() >= 1 and docs[:, 1:].max() <= spec.vocab_size - 1
    counts = np.bincount(docs[:, 1:].ravel(), minlength=spec.vocab_size)[1:]
    n, p = docs[:, 1:].size, 1 / (spec.vocab_size - 1)
    assert np.all(np.abs(counts - n * p) <= 6 * np.sqrt(n * p * (1 - p))), counts


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_linear_maps_are_uniform_on_the_papers_bound_times_the_scale(scale):
    # U(-0.1, 0.1) per entry at scale 1 (the paper's init): never past the bound, and on the 4,096
    # entries of W_q, W_k and W_v the bound reached to 0.5 % and the variance bound**2 / 3 to 10 %; the
    # embedding is N(0, 1), whatever the scale.
    spec = ModelSpec(max_len=8, d_embed=32, d_att=16, d_out=16, heads=8, vocab_size=64, biases=True)
    params = draws.draw_params(jax.random.PRNGKey(1), spec, scale=scale)
    bound = 0.1 * scale
    for name in ("W_q", "W_k", "W_v", "W_l", "b_q", "b_k", "b_v", "b_l"):
        w = np.asarray(getattr(params, name))
        assert np.abs(w).max() <= bound, name
        if w.size >= 4096:
            assert np.abs(w).max() >= 0.995 * bound and abs(w.var() / (bound**2 / 3) - 1) <= 0.1, name
    emb = np.asarray(params.embedding)
    assert abs(emb.std() - 1) <= 0.05 and abs(emb.mean()) <= 0.05
