"""Theorem 1 (Lopardo et al. 2024): the gradient of the output w.r.t. each token embedding."""

from __future__ import annotations

from attnverify.numerics.quantities import theorem1_quantities
from attnverify.verification.registry import PAPER_HYPOTHESES, Claim, register

from attnverify.lazy import lazy_module

derivations = lazy_module("attnverify.theory.derivations")  # SymPy: loaded when a proof is asked for

SOURCE = "Lopardo, Precioso & Garreau (ICML 2024), Theorem 1; docs/theory.md §3"

# Relative error of sums of O(T * d_e) products: measured ~1e-15 (float64) and ~1e-6
# (float32) at T = 16..256; the tolerances leave >= 100x margin, while a wrong formula is
# off by O(1) relative (the negative control: ~0.3).
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
TOLERANCE_REASON = "relative rounding of O(T*d_e) sums, >= 100x margin over measured"
#: Every Theorem 1 claim compares rows of the same quantities (one forward, one jax.grad, the
#: compiled derivations) on the same draws: one compiled program serves them all.
EVALUATION = "theorem1"
#: They read the embedding table only at the document's tokens (e_t = E[x_t]): their sweeps draw
#: only those rows (`Claim.embedding_rows`).
ROWS_READ = "document"


def _proof(name: str):
    return lambda spec: derivations.derive_gradient(spec).proofs[name].status


def _cls_row(lhs_name: str):
    """The true gradient with row 0 ([CLS]) from `lhs_name`, against the true gradient: its
    relative error is row 0's error against the whole gradient's scale, as thm1.derived's.
    Against row 0's own scale it measured cancellation, not the formula: where attention
    saturates, row 0 is a sum of alpha_s (s_s - f_i) terms cancelling to ~1e-7 of the other rows,
    and its rounding (~1e-14 of them) read as a relative error of 1e-7 at --scale 30, an
    unexpected FAIL of a proved identity.
    What it gives up: a wrong row-0 term smaller than the tolerance times the largest gradient entry
    passes (a [CLS] row that gets almost no gradient); the closed form without the query-path term
    still has a largest error of 0.13-1.1 over a sweep at scales 1 to 100 (tests/test_sweep.py)."""

    def build(spec):
        q = theorem1_quantities(spec)
        lhs, rhs = q[lhs_name], q["autodiff"]

        def compare(params, tokens):
            true = rhs(params, tokens)
            return true.at[0].set(lhs(params, tokens)[0]), true

        return compare

    return build


def _rows(lhs_name: str, rhs_name: str, rows: slice):
    def build(spec):
        q = theorem1_quantities(spec)
        lhs, rhs = q[lhs_name], q[rhs_name]
        return lambda params, tokens: (lhs(params, tokens)[rows], rhs(params, tokens)[rows])

    return build


register(Claim(
    id="thm1.derived",
    provenance="measured",  # calculus, established here: no statement of the paper
    group="theorem1",
    statement="SymPy-derived d f/d e_t (all t, [CLS] included) equals jax.grad of the true model",
    source="sympy.diff of the spec's forward expression",
    lhs="sympy.diff of the forward expression, compiled to JAX",
    rhs="jax.grad of the JAX model",
    build=_rows("derived", "autodiff", slice(None)),
    evaluation=EVALUATION,
    embedding_rows=ROWS_READ,
    tolerance=TOLERANCE,
    tolerance_reason=TOLERANCE_REASON,
))

register(Claim(
    id="thm1.gradient",
    provenance="paper",
    group="theorem1",
    statement="Theorem 1 closed form equals the true gradient at every word position t >= 1",
    source=SOURCE,
    lhs="the paper's closed form, compiled",
    rhs="jax.grad of the JAX model",
    build=_rows("paper", "autodiff", slice(1, None)),
    evaluation=EVALUATION,
    embedding_rows=ROWS_READ,
    tolerance=TOLERANCE,
    tolerance_reason=TOLERANCE_REASON,
    requires=PAPER_HYPOTHESES,
    proof=_proof("theorem1 (t >= 1)"),
))

register(Claim(
    id="thm1.gradient_cls_row",
    # The closed form is known from the authors' code for word positions (t >= 1), and their own
    # Figure 5 shows theory and autodiff apart in row 0: that the paper asserts it at t = 0 is not
    # known (docs/theory.md §3.3), so this failure refutes no statement of the paper.
    provenance="measured",
    group="theorem1",
    statement="Theorem 1 closed form, read at the [CLS] position t = 0 as at the word positions",
    source=SOURCE,
    lhs="the paper's closed form at t = 0, compiled, in row 0 of the true gradient",
    rhs="jax.grad of the JAX model (the error: row 0's, relative to the whole gradient)",
    build=_cls_row("paper"),
    evaluation=EVALUATION,
    embedding_rows=ROWS_READ,
    tolerance=TOLERANCE,
    tolerance_reason=TOLERANCE_REASON,
    requires=PAPER_HYPOTHESES,
    holds=False,
    finding=(
        "Theorem 1's closed form does not extend to the [CLS] position: e_0 also enters through the "
        "query q = W_q e_0, a path the formula leaves out (max error {max_error:.3g}; the authors' "
        "Figure 5 shows the same row apart). Claim thm1.cls_term adds the query-path term."
    ),
    proof=_proof("theorem1 at [CLS] (t = 0)"),
))

register(Claim(
    id="thm1.cls_term",
    provenance="measured",
    group="theorem1",
    statement="At t = 0, closed form + 1/(K sqrt(d_att)) sum_i W_q^T W_k sum_s alpha_s (s_s - f_i) e_s "
    "equals the true gradient",
    source="docs/theory.md §3.3 (derived)",
    lhs="closed form + query-path term at t = 0, compiled, in row 0 of the true gradient",
    rhs="jax.grad of the JAX model (the error: row 0's, relative to the whole gradient)",
    build=_cls_row("paper_plus_cls_term"),
    evaluation=EVALUATION,
    embedding_rows=ROWS_READ,
    tolerance=TOLERANCE,
    tolerance_reason=TOLERANCE_REASON,
    requires=PAPER_HYPOTHESES,
    proof=_proof("theorem1 + query-path term at [CLS]"),
))

register(Claim(
    id="thm1.gxi",
    provenance="measured",  # derived here from Theorem 1 (docs/theory.md §3.4)
    group="theorem1",
    statement="G x I_t = 1/K sum_i alpha_t [s_t + gamma_t (s_t - f_i)] for t >= 1",
    source="docs/theory.md §3.4 (from Theorem 1)",
    lhs="the G x I closed form, compiled",
    rhs="<e_t, jax.grad>",
    build=_rows("gxi_paper", "autodiff_gxi", slice(1, None)),
    evaluation=EVALUATION,
    embedding_rows=ROWS_READ,
    tolerance=TOLERANCE,
    tolerance_reason=TOLERANCE_REASON,
    # <e_t, u> = s_t and <e_t, kappa> = gamma_t need s_t and gamma_t linear in e_t (docs/theory.md §3.4)
    requires={**PAPER_HYPOTHESES, "biases": False},
    proof=_proof("gradient x input (t >= 1)"),
))

register(Claim(
    id="thm1.control_no_jacobian",
    provenance="paper",
    group="theorem1",
    statement="Negative control: Theorem 1 with its softmax-Jacobian term dropped (t >= 1)",
    source="a deliberately wrong formula; must FAIL, or the sweep cannot tell formulas apart",
    lhs="1/K sum_i alpha_t W_v^T W_l^T, compiled",
    rhs="jax.grad of the JAX model",
    build=_rows("paper_without_jacobian", "autodiff", slice(1, None)),
    evaluation=EVALUATION,
    embedding_rows=ROWS_READ,
    tolerance=TOLERANCE,
    tolerance_reason=TOLERANCE_REASON,
    requires=PAPER_HYPOTHESES,  # Theorem 1's: outside them the right formula fails too, and a miss tells nothing
    holds=False,
    finding="Dropping the softmax-Jacobian term is detected (max error {max_error:.3g}).",
))
