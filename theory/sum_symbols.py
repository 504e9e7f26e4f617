"""A Sum's free symbols, computed once per expression.

SymPy computes the free symbols of a `Sum` (any `ExprWithLimits`) by rebuilding its body with
the bound indices masked (``function.xreplace``), and rebuilding builds every Sum nested inside,
each of which computes its own free symbols again: the cost grows with the square of the
nesting. A derivation asks for them constantly (``is_number``, ``has``, assumptions), and for a
plugin whose scores nest sums three deep (examples/layernorm_keys.py) this was half of the
derivation. The free symbols are a function of the expression alone, so they are memoised with
SymPy's own cache (`sympy.core.cache.cacheit`, keyed by structural equality, off when SymPy's
cache is), and every caller gets a fresh copy (SymPy's callers update the set they are given).
"""

from __future__ import annotations

from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core.cache import cacheit

_computed = getattr(ExprWithLimits.free_symbols, "fget", None)
if _computed is not None and not getattr(_computed, "_attnverify_memoised", False):
    _memoised = cacheit(_computed)

    def _free_symbols(self) -> set:
        return set(_memoised(self))

    _free_symbols._attnverify_memoised = True  # type: ignore[attr-defined]
    _free_symbols.__doc__ = _computed.__doc__
    ExprWithLimits.free_symbols = property(_free_symbols)
