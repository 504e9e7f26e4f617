"""Per-draw randomness taken from whole documents (`numerics.token_keys`): every sweep draw of a claim
gets its own LIME document and its own task documents (keys from the token sum repeated: 292 and 813
distinct documents in 1000 draws)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics.draws import draw_document
from attnverify.numerics.token_keys import token_key
from attnverify.numerics.training.synthetic_tasks import TASKS, seeded_document
from attnverify.verification.claims.lime import document_of, mask_key

from attnverify.spec import SMALL

DRAWS = 1000


def _sweep_documents(spec, n, seed=0):
    """The documents the sweep hands to draws 0..n-1 (the key split of `numerics.draws.sweep_draw`, written again)."""
    root = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: draw_document(jax.random.split(jax.random.fold_in(root, i))[1], spec))(jnp.arange(n))


def _distinct(rows) -> int:
    return len({tuple(row) for row in np.asarray(rows).reshape(len(rows), -1).tolist()})


@pytest.fixture(scope="module")
def tokens():
    return _sweep_documents(SMALL, DRAWS)


def test_lime_claim_documents_and_masks_differ_per_draw(tokens):
    assert _distinct(tokens) == DRAWS  # the sweep's own documents already differ
    docs = jax.vmap(lambda t: document_of(t, SMALL).tokens)(tokens)
    assert _distinct(docs) >= 990
    keys = jax.vmap(mask_key)(tokens)
    assert _distinct(keys) == DRAWS


@pytest.mark.parametrize("task", TASKS)
def test_task_documents_differ_per_draw(tokens, task):
    docs = jax.vmap(lambda t: seeded_document(t, task, SMALL))(tokens)
    assert _distinct(docs) >= 990


def test_token_key_reads_every_token_in_order():
    t = jnp.asarray([0, 5, 9, 2], jnp.int32)
    same_sum = jnp.asarray([0, 9, 5, 2], jnp.int32)  # a permutation: the same token sum
    keys = [np.asarray(token_key(x, 3)) for x in (t, same_sum, t.at[3].set(3))]
    assert not np.array_equal(keys[0], keys[1]) and not np.array_equal(keys[0], keys[2])
    assert np.array_equal(np.asarray(token_key(t, 3)), keys[0])  # deterministic
    assert not np.array_equal(np.asarray(token_key(t, 4)), keys[0])  # streams differ
