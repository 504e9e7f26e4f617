"""One evaluation per quantity when several claims compare it on the same draw.

Claims of one evaluation group (`verification.blocks`) are traced together into one program;
each compares its own pair of quantities, and several compare the same one (every Theorem 1
claim compares against `jax.grad`). Inside `shared_evaluations`, a quantity wrapped by
`shared` is evaluated, i.e. traced, once per (params, tokens) objects, so the program holds
it once. The same operations on the same inputs: the numbers do not change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

Quantity = Callable
_SCOPES: list[dict] = []


@contextlib.contextmanager
def shared_evaluations():
    """Within this block a `shared` quantity is evaluated (traced) once per (params, tokens)
    objects, however many claims compare it: e.g. the Theorem 1 claims' one program traces
    jax.grad once, not once per claim. The same operations, so the same numbers."""
    _SCOPES.append({})
    try:
        yield
    finally:
        _SCOPES.pop()


def shared(key, quantity: Quantity) -> Quantity:
    """`quantity`, evaluated once per arguments inside `shared_evaluations` (`key` names it)."""
    if getattr(quantity, "shared_key", None) == key:
        return quantity

    def evaluate(params, tokens):
        if not _SCOPES:
            return quantity(params, tokens)
        memo = _SCOPES[-1]
        at = (key, id(params), id(tokens))
        if at not in memo:  # the scope holds the arguments: their ids stay theirs until it ends
            memo[at] = (params, tokens, quantity(params, tokens))
        return memo[at][2]

    evaluate.shared_key = key
    return evaluate
