"""Random parameter draws with the paper's initialisation (docs/theory.md §1.2).

Embedding table N(0, 1) (PyTorch's default, never re-initialised by the authors); every
linear map, and bias, U(-0.1 * scale, 0.1 * scale) (`scale = 1` is the paper's init).
The additive and deep scorers' ``v_score`` and ``U_score`` are linear maps too, drawn the
same way from keys folded out of the draw's key, so the paper-model arrays of a draw do not
depend on the scorer: one seed gives the same embedding, W_q, W_k, W_v, W_l for every scorer.

The draws are `jax.random`'s, bit for bit, hashed by the unrolled Threefry of
`numerics.threefry` (about twice as fast on CPU as JAX's own lowering).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from attnverify.numerics.model import CLS, Params
from attnverify.numerics.threefry import normal_rows, unrolled_key
from jaxtyping import Array, Int, PRNGKeyArray

from attnverify.spec import ModelSpec

INIT_BOUND = 0.1
SCORER_STREAM = 1_000_003  # folded into a draw's key for the additive / deep scorer's v, U


def draw_params(key: PRNGKeyArray, spec: ModelSpec, *, scale: float = 1.0, dtype=jnp.float64,
                rows: Int[Array, " n"] | None = None) -> Params:
    """One random model of `spec` (a `Params`, arrays of `dtype`). `scale` multiplies the
    bound of the uniform linear init; `key` is the draw's PRNG key. A plugin spec draws
    `numerics.plugin_model.PluginParams`: these arrays plus the plugin's declared ones.

    With `rows` (token ids, e.g. a document's), only those rows of the embedding table are
    drawn, bit for bit as in the whole table (`numerics.threefry.normal_rows`), and every
    other row is NaN: a computation that reads one shows NaN instead of a number (under JAX's
    older, non-partitionable Threefry the whole table is drawn, as without `rows`). The table is
    most of a draw's cost (an inverse erf per entry), and Theorem 1's quantities read only the
    document's rows (`Claim.embedding_rows`)."""
    if getattr(spec, "plugin", None) is not None:
        from attnverify.numerics.plugin_model import draw_plugin_params

        return draw_plugin_params(key, spec, scale=scale, dtype=dtype)
    K, A, O, D, C = spec.heads, spec.d_att, spec.d_out, spec.d_embed, spec.classes
    key = unrolled_key(key)
    k_emb, k_q, k_k, k_v, k_l, k_b = jax.random.split(key, 6)
    bound = INIT_BOUND * scale

    def uniform(k, shape):
        return jax.random.uniform(k, shape, dtype, -bound, bound)

    biases = {}
    if spec.biases:
        kq, kk, kv, kl = jax.random.split(k_b, 4)
        biases = dict(
            b_q=uniform(kq, (K, A)), b_k=uniform(kk, (K, A)),
            b_v=uniform(kv, (K, O)), b_l=uniform(kl, (K, C)),
        )
    scorer = {}
    if spec.scorer != "dot":
        # fold_in(key, d) equals split(key, n)[d] for d < n (threefry), so a small d would
        # reuse the key of W_q or W_k: fold in a constant no split of this key reaches.
        k_v_score, k_U_score = jax.random.split(jax.random.fold_in(key, SCORER_STREAM))
        scorer["v_score"] = uniform(k_v_score, (K, A))
        if spec.scorer == "deep":
            scorer["U_score"] = uniform(k_U_score, (K, A, A))
    if rows is None or not jax.config.jax_threefry_partitionable:
        embedding = jax.random.normal(k_emb, (spec.vocab_size, D), dtype)
    else:
        drawn = normal_rows(k_emb, rows, D, dtype)
        embedding = jnp.full((spec.vocab_size, D), jnp.nan, dtype).at[rows].set(drawn)
    return Params(
        embedding=embedding,
        W_q=uniform(k_q, (K, A, D)),
        W_k=uniform(k_k, (K, A, D)),
        W_v=uniform(k_v, (K, O, D)),
        W_l=uniform(k_l, (K, C, O)),
        **biases,
        **scorer,
    )


def sweep_draw(seed, index, spec: ModelSpec, *, scale: float, dtype, document_rows: bool = False) -> tuple:
    """Draw `index` of a sweep with `seed`: ``(params, tokens)`` from keys of the seed and the index
    alone (``fold_in(PRNGKey(seed), index)`` split into a parameter key and a document key), so a
    result depends on neither chunks nor devices. With `document_rows` the embedding table holds
    the document's rows and NaN elsewhere (`draw_params`' ``rows``)."""
    key_params, key_doc = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index))
    tokens = draw_document(key_doc, spec)
    return draw_params(key_params, spec, scale=scale, dtype=dtype, rows=tokens if document_rows else None), tokens


def draw_document(key: PRNGKeyArray, spec: ModelSpec) -> Int[Array, " T"]:
    """[CLS] followed by T - 1 ids drawn uniformly from the rest of the vocabulary (UNK included)."""
    return _document(key, spec.max_len, spec.vocab_size)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _document(key: PRNGKeyArray, max_len: int, vocab_size: int) -> Int[Array, " T"]:
    # One compiled program per size, called eagerly or inside a sweep's trace: eagerly, its
    # half-dozen operations would each be an XLA compilation of their own (tens of ms each on
    # CPU). Integer operations only, so the ids are the same bits either way.
    body = jax.random.randint(unrolled_key(key), (max_len - 1,), 1, vocab_size)
    return jnp.concatenate([jnp.array([CLS]), body])
