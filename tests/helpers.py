"""Helpers shared by the tests: random models and documents drawn as the sweeps draw them."""

from __future__ import annotations

import dataclasses
import functools

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


#: A small model whose LIME limit is enumerated over all 2^d masks in a fraction of a second.
LIME_SMALL = ModelSpec(max_len=10, d_embed=8, d_att=4, d_out=4, heads=2, vocab_size=30)


def small_lime_case(d: int = 4, length: int = 6, seed: int = 0):
    """``(spec, params, tokens, length)``: `lime_case` on `LIME_SMALL` at init scale 2."""
    params, doc = lime_case(LIME_SMALL, seed, d=d, length=length, scale=2.0)
    return LIME_SMALL, params, tokens_of(doc), length


def tokens_of(doc) -> np.ndarray:
    return np.asarray(doc.tokens)


@functools.lru_cache(maxsize=64)
def _joint(spec: ModelSpec, names: tuple[str, ...]):
    from attnverify.numerics.quantities import theorem1_quantities

    q = theorem1_quantities(spec)
    return jax.jit(lambda params, tokens: tuple(q[name](params, tokens) for name in names))


def theorem1(spec: ModelSpec, params, tokens, *names: str) -> tuple:
    """The named `theorem1_quantities` of one draw, in one compiled program (called one by one,
    each quantity runs op by op: a small compilation per operation, several times slower)."""
    return _joint(spec, names)(params, tokens)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """`main` in this process: (exit code, stdout, stderr). A parse error's SystemExit counts too."""
    from attnverify.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    """Exit 2, one line on stderr saying `fragment`, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("attnverify: error: ") and fragment in lines[0], err
    assert "Traceback" not in err


def judged(claim_ids, spec: ModelSpec, params, tokens) -> list[tuple[tuple, object]]:
    """Each claim's own check on one given draw, for the tests that inject a wrong formula: its
    build's comparison and its measure (the relative error when it has none), jitted together,
    then its verdict (`judge_claim`: its summary against its float64 tolerance; its proof and
    context are not rerun). Per claim: ``((lhs, rhs), result)``."""
    from attnverify.verification.registry import REGISTRY
    from attnverify.verification.sweep import judge_claim, relative_error

    claims = [REGISTRY[claim_id] for claim_id in claim_ids]
    comparisons = [claim.build(spec) for claim in claims]

    @jax.jit
    def compared(params, tokens):
        out = []
        for claim, compare in zip(claims, comparisons, strict=True):
            lhs, rhs = compare(params, tokens)
            out.append((lhs, rhs, (claim.measure or relative_error)(lhs, rhs)))
        return out

    return [((lhs, rhs), judge_claim(dataclasses.replace(claim, proof=None, context=None), spec,
                                     np.asarray([float(value)]), trials=1))
            for claim, (lhs, rhs, value) in zip(claims, compared(params, tokens), strict=True)]
