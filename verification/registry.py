"""The claims registry: every checked statement is a `Claim`, i.e. data.

A claim names two computations of the same quantity (``lhs`` and ``rhs``) that the sweep
compares on random parameter draws, the spec hypotheses under which the statement is
asserted, a tolerance per dtype and why, and whether the statement is expected to hold.
Adding a claim is one `register(Claim(...))` call in a module of `verification.claims`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np
from attnverify.numerics.model import Params

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

#: ``(params, tokens) -> (lhs, rhs)``: both sides on one draw, any matching shapes.
Comparison = Callable[[Params, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]

#: The switches of the paper's model that Theorem 1-type statements rely on.
PAPER_HYPOTHESES: dict[str, Any] = {
    "scale_scores": True,
    "head_aggregation": "mean",
    "query": "cls",
    "value_nonlinearity": "none",
    "output_link": "logit",
    "scorer": "dot",  # the closed forms differentiate <q, k_t>: kappa = W_k^T q / sqrt(d_att)
}


@dataclass(frozen=True)
class Claim:
    id: str
    group: str
    statement: str
    source: str
    lhs: str  # what the left-hand side is computed by
    rhs: str  # what the right-hand side is computed by
    build: Callable[[ModelSpec], Comparison]
    tolerance: Mapping[str, float]
    tolerance_reason: str
    requires: Mapping[str, Any] = field(default_factory=dict)
    holds: bool = True  # False: known not to hold; its FAIL is a finding, not a bug
    finding: str | None = None  # reported when it fails; may use {max_error:.3g}
    proof: Callable[[ModelSpec], str] | None = None  # status of the symbolic proof under a spec
    # Empirical claims (optional): `measure` turns one draw's (lhs, rhs) into the number kept
    # per draw (default: the relative error); `summary` turns the numbers of all draws into
    # named statistics whose "error" entry is judged against the tolerance (PASS iff <=).
    measure: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray] | None = None
    summary: Callable[[np.ndarray], dict[str, float]] | None = None
    # Optional numbers measured once per spec and reported with the result (e.g. trained
    # models' accuracies), merged into its statistics; they do not enter the verdict.
    context: Callable[[ModelSpec], dict[str, float]] | None = None

    def expected(self, spec: ModelSpec) -> bool | None:
        """Expected PASS/FAIL under `spec`; None when its hypotheses do not hold."""
        return self.holds if spec.satisfies(dict(self.requires)) else None

    def unmet(self, spec: ModelSpec) -> dict[str, Any]:
        return {k: getattr(spec, k) for k, v in self.requires.items() if getattr(spec, k) != v}


REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    if claim.id in REGISTRY:
        raise ValueError(f"claim {claim.id} registered twice")
    missing = {"float64", "float32"} - set(claim.tolerance)
    if missing:
        raise ValueError(f"claim {claim.id} lacks a tolerance for {', '.join(sorted(missing))}")
    REGISTRY[claim.id] = claim
    return claim


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for claim in REGISTRY.values():
        out.setdefault(claim.group, []).append(claim.id)
    return out


def select(names: list[str]) -> list[Claim]:
    """Claims named by group (e.g. ``theorem1``), id (``thm1.gradient``) or ``all``."""
    if not names or "all" in names:
        return list(REGISTRY.values())
    chosen: list[Claim] = []
    known_groups = groups()
    for name in names:
        ids = known_groups.get(name, [name] if name in REGISTRY else None)
        if ids is None:
            close = difflib.get_close_matches(name, list(known_groups) + list(REGISTRY), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(f"unknown claim or group {name!r} ({hint}groups: {', '.join(sorted(known_groups))}; "
                             "`attnverify claims` lists every id)")
        chosen.extend(REGISTRY[i] for i in ids if REGISTRY[i] not in chosen)
    return chosen
