"""Readable renderings of a derivation: common subexpressions named by `sympy.cse`."""

from __future__ import annotations

import dataclasses

import sympy as sp
from attnverify.theory.derivations import GradientDerivation


def readable(expr: sp.Expr, *, latex: bool = False, stem: str = "x") -> str:
    """`expr` as named common subexpressions (``x0 = ...``) followed by the result."""
    definitions, (reduced,) = sp.cse(expr, symbols=sp.numbered_symbols(stem))
    lines = []
    for name, value in definitions:
        if latex:
            lines.append(f"{sp.latex(name)} = {sp.latex(value)}")
        else:
            lines.append(f"{name} = {sp.sstr(value)}")
    lines.append(sp.latex(reduced) if latex else f"result = {sp.sstr(reduced)}")
    return "\n".join(lines)


def derivation_text(d: GradientDerivation, *, latex: bool = False) -> str:
    deviations = d.spec.deviations()
    model = "the paper's model" if not deviations else f"the paper's model with {deviations}"
    sections = [
        f"Gradient of the explained output f with respect to e[tau, m] ({model}).",
        "Indices: i head, t/s positions, k/m embedding, a attention, o value; sizes stay symbolic.",
        "",
        "== derived by sympy.diff, word positions tau >= 1 ==",
        readable(d.word, latex=latex),
        "",
        "== derived by sympy.diff, [CLS] position tau = 0 ==",
        readable(d.cls, latex=latex),
        "",
        "== Theorem 1 as stated by the paper ==",
        readable(d.paper, latex=latex),
        "",
        "== query-path term at [CLS] (docs/theory.md §3.3) ==",
        readable(d.cls_term, latex=latex),
        "",
        "== proofs (derived == statement) ==",
    ]
    width = max(len(name) for name in d.proofs)
    for name, proof in d.proofs.items():
        sections.append(f"{name:<{width}}  {proof.status}")
    return "\n".join(sections)


def derivation_json(d: GradientDerivation) -> dict:
    return {
        "spec": dataclasses.asdict(d.spec),
        "derived_gradient": str(d.gradient),
        "derived_word": str(d.word),
        "derived_cls": str(d.cls),
        "derived_gxi": str(d.gxi),
        "paper_theorem1": str(d.paper),
        "cls_query_term": str(d.cls_term),
        "paper_gxi": str(d.gxi_paper),
        "latex": {"derived_word": sp.latex(d.word), "paper_theorem1": sp.latex(d.paper)},
        "proofs": {
            name: {"general": p.general, "explicit": p.explicit, "status": p.status}
            for name, p in d.proofs.items()
        },
    }
