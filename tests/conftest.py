"""Test configuration: float64 before any array exists; shared helpers and fixtures."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attnverify.spec import ModelSpec  # noqa: E402


def tree_allclose(a, b, *, rtol: float, atol: float) -> bool:
    """All leaves of two pytrees equal within explicit tolerances."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol) for x, y in zip(la, lb, strict=True)
    )


@pytest.fixture
def tiny_spec() -> ModelSpec:
    """A small paper-switch model: fast to compile, big enough to be generic."""
    return ModelSpec(max_len=8, d_embed=6, d_att=4, d_out=5, heads=3, vocab_size=30)
