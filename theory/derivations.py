"""Theorem 1 derived: the gradient of the explained output with respect to e_t.

`derive_gradient(spec)` differentiates the spec's forward expression with `sympy.diff`
and compares the result with the paper's statement (`theory.statements`) in two ways:
symbolically for every size (normal forms differ by zero, `calculus.prove_equal`) and,
as a second check, at explicit small sizes after unrolling every sum.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp
from attnverify.theory import statements
from attnverify.theory import symbols as S
from attnverify.theory.calculus import (
    at_cls_position,
    at_word_position,
    explicit,
    gradient,
    normal_form,
    prove_equal,
)
from attnverify.theory.model import SymbolicModel

from attnverify.spec import ModelSpec

#: Explicit sizes of the second, unrolled check (small: expansion grows like T^2 d^2).
EXPLICIT_SIZES = {S.T: 3, S.d_e: 2, S.d_att: 1, S.d_out: 1, S.K: 2, S.C: 2}


@dataclass(frozen=True)
class Proof:
    """Outcome of comparing a derived expression with a statement."""

    name: str
    general: bool  # equal for every size (symbolic sizes)
    explicit: bool | None = None  # equal at EXPLICIT_SIZES after unrolling (None: not run)

    @property
    def status(self) -> str:
        if self.general:
            return "proved for all sizes"
        if self.explicit:
            return "proved at explicit sizes only"
        if self.explicit is False:
            return "disproved at explicit sizes"
        return "not proved"


@dataclass(frozen=True)
class GradientDerivation:
    """Everything `derive gradient` prints, for one spec."""

    spec: ModelSpec
    output: sp.Expr  # f(e), the forward expression
    gradient: sp.Expr  # d f / d e[tau, m], all positions (free: tau, m)
    word: sp.Expr  # the same at a word position, tau >= 1
    cls: sp.Expr  # the same at tau = 0
    gxi: sp.Expr  # sum_m e[tau, m] d f / d e[tau, m] at a word position (free: tau)
    paper: sp.Expr  # Theorem 1 as stated (free: tau, m)
    cls_term: sp.Expr  # THEORY.md §3.3 query-path term (free: m)
    gxi_paper: sp.Expr  # the G x I closed form as stated (free: tau)
    proofs: dict[str, Proof] = field(default_factory=dict)


def _explicit_equal(lhs: sp.Expr, rhs: sp.Expr, points: list[dict]) -> bool:
    for point in points:
        difference = explicit(lhs.subs(point), EXPLICIT_SIZES) - explicit(rhs.subs(point), EXPLICIT_SIZES)
        if sp.expand(difference) != 0:
            return False
    return True


@functools.lru_cache(maxsize=32)
def derive_gradient(spec: ModelSpec, *, explicit_check: bool = False) -> GradientDerivation:
    """Derive nabla_{e_t} f for `spec` with SymPy and compare with the paper's statements.

    With `explicit_check`, each comparison is repeated at `EXPLICIT_SIZES` with every sum
    unrolled (seconds to a minute): the check that does not rely on `normal_form`.
    """
    model = SymbolicModel(spec)
    output = model.output()
    grad = gradient(output)
    word = at_word_position(grad)
    cls = at_cls_position(grad)
    gxi = normal_form(sp.Sum(S.e[S.tau, S.m] * word, (S.m, 0, S.d_e - 1)))
    paper = statements.theorem1_gradient(model)
    cls_term = statements.cls_query_term(model)
    gxi_paper = statements.gradient_times_input(model)
    paper_at_cls = paper.subs(S.tau, 0)

    comparisons = {
        "theorem1 (t >= 1)": (word, paper, [{S.tau: 1, S.m: 0}, {S.tau: 2, S.m: 1}]),
        "theorem1 at [CLS] (t = 0)": (cls, paper_at_cls, [{S.m: 0}]),
        "theorem1 + query-path term at [CLS]": (cls, paper_at_cls + cls_term, [{S.m: 0}, {S.m: 1}]),
        "gradient x input (t >= 1)": (gxi, gxi_paper, [{S.tau: 2}]),
    }
    proofs = {}
    for name, (lhs, rhs, points) in comparisons.items():
        general = prove_equal(lhs, rhs)
        exact = _explicit_equal(lhs, rhs, points) if explicit_check else None
        proofs[name] = Proof(name, general, exact)
    return GradientDerivation(
        spec, output, grad, word, cls, gxi, paper, cls_term, gxi_paper, proofs
    )
