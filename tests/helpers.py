"""Helpers shared by the tests: random models and documents drawn as the sweeps draw them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.lime.document import random_document

from attnverify.spec import ModelSpec


def draw(spec: ModelSpec, seed: int = 0, *, scale: float = 1.0, dtype=jnp.float64):
    """``(params, tokens)``: the model and document of `seed`, drawn as a sweep draws one."""
    key_params, key_doc = jax.random.split(jax.random.PRNGKey(seed))
    return draw_params(key_params, spec, scale=scale, dtype=dtype), draw_document(key_doc, spec)


def lime_case(spec: ModelSpec, seed: int, *, d: int, length: int, scale: float = 1.0, document_offset: int = 50):
    """``(params, document)`` for LIME tests: a model, and a random document of `length` words
    over `d` distinct features (seeded by ``seed + document_offset``)."""
    params = draw_params(jax.random.PRNGKey(seed), spec, scale=scale)
    doc = random_document(jax.random.PRNGKey(seed + document_offset), d, length, spec.max_len, spec.vocab_size)
    return params, doc


def tokens_of(doc) -> np.ndarray:
    return np.asarray(doc.tokens)
