"""Identifiability of attention: Brunner et al. (2020) and Naim & Asher (2024) (docs/theory.md §8.3-8.4,
checks 26-29), group ``identifiability``. Head 0's attention moves; the other heads stay fixed.

Naim & Asher's construction of "efficient attention" is unconfirmed (docs/theory.md §8.4): the
three constructions checked here are *candidates*, not their definition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.related import fiber as nid
from attnverify.numerics.related import jain_wallace as njw
from attnverify.numerics.training.synthetic_tasks import cast, documents, seeded_documents, trained_model
from attnverify.verification.empirical import (
    MEAN_REASON,
    SHARE_REASON,
    difference,
    difference_exceeds_zero,
    fraction_above,
    left,
)
from attnverify.verification.registry import Claim, register

from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

tid = lazy_module("attnverify.theory.related.identifiability")  # SymPy: loaded when a claim is first built

SOURCE = "Brunner et al. (ICLR 2020); docs/theory.md §8.3 (derived)"
CANDIDATE_SOURCE = "Naim & Asher (ECAI 2024), 'efficient attention': candidate constructions, docs/theory.md §8.4"
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
TOLERANCE_REASON = "relative rounding of T-term sums and small (C+1)-dimensional solves, >= 100x margin"
#: Draws where `fiber_max_jsd` certifies no vertex (NaN): left out of the vertex claims, and counted.
NO_VERTEX_REASON = ("no basic solution certified a vertex in this dtype: every rank[S 1]-position block was singular "
                    "within rounding or its solution negative beyond it (an ill-conditioned [S 1], as at d_e = 1 with "
                    "tanh)")
COUNT = {"float64": 0.0, "float32": 0.0}
DEFECT = 1e-9  # a vector farther than this from the simplex is not a distribution (float64 rounding ~1e-15)
#: What rounding alone can make of a T-term projection's defect, per dtype: float32's 1.2e-7 per
#: operation reaches about 1e-6 at T = 16, so a defect below 1e-5 there is no evidence of one (in
#: float32 a projection that sums to 1 exactly had |sum - 1| > 1e-9 in 80 % of draws).
ROUNDING = {jnp.dtype("float64"): DEFECT, jnp.dtype("float32"): 1e-5}


def _head(spec: ModelSpec):
    """(params, tokens) -> (alpha, s, logits): every head's attention and read-outs, the logits."""
    tid.check_positions(spec.max_len)

    def parts(params, tokens):
        e = nm.embed(params, tokens, spec)
        alpha, s = nm.attention(params, e, spec), nm.readouts(params, e, spec)
        return alpha, s, njw.logits_from(params, spec, alpha, s)

    return parts


def _logits_with(params, spec, alpha, s, head_alpha):
    return njw.logits_from(params, spec, alpha.at[0].set(head_alpha), s)


# -- 26: the fiber ---------------------------------------------------------------------------------
def _dimension(spec: ModelSpec):
    parts = _head(spec)
    derived = spec.max_len - tid.generic_readout_rank(spec)

    def compare(params, tokens):
        _, s, _ = parts(params, tokens)
        measured = spec.max_len - nid.numerical_rank(nid.augmented(s[0]))
        return measured.astype(s.dtype), jnp.asarray(derived, s.dtype)

    return compare


def _joint(spec: ModelSpec):
    parts = _head(spec)
    derived = spec.heads * spec.max_len - tid.generic_joint_rank(spec)
    weight = 1.0 / spec.heads if spec.head_aggregation == "mean" else 1.0

    def compare(params, tokens):
        _, s, _ = parts(params, tokens)
        measured = spec.heads * spec.max_len - nid.numerical_rank(nid.joint_system(s, weight))
        return measured.astype(s.dtype), jnp.asarray(derived, s.dtype)

    return compare


def _moves(spec: ModelSpec):
    parts, rank = _head(spec), tid.generic_readout_rank(spec)

    def compare(params, tokens):
        alpha, s, z = parts(params, tokens)
        moved = nid.fiber_moves(alpha[0], s[0], rank=rank)
        logits = jax.vmap(lambda a: _logits_with(params, spec, alpha, s, a))(moved)
        measured = jnp.concatenate([logits.ravel(), moved.sum(axis=1), jnp.min(moved, axis=1) > 0])
        # A weight that underflowed to 0 (float32 at --scale 10) leaves no step that keeps every entry > 0
        # (the step is 0 and the "move" is alpha_hat itself): set aside, decided by the model's attention
        underflow = jnp.min(alpha[0]) == 0
        return (jnp.where(underflow, jnp.nan, measured),
                jnp.concatenate([jnp.tile(z, moved.shape[0]), jnp.ones(2 * moved.shape[0], z.dtype)]))

    return compare


def _vertex(spec: ModelSpec):
    parts, rank = _head(spec), tid.generic_readout_rank(spec)

    def compare(params, tokens):
        alpha, s, z = parts(params, tokens)
        _, vertex = nid.fiber_max_jsd(alpha[0], s[0], rank=rank)
        return (jnp.concatenate([_logits_with(params, spec, alpha, s, vertex), vertex.sum()[None]]),
                jnp.concatenate([z, jnp.ones(1, z.dtype)]))

    return compare


def _max_jsd(spec: ModelSpec):
    parts, rank = _head(spec), tid.generic_readout_rank(spec)

    def compare(params, tokens):
        alpha, s, _ = parts(params, tokens)
        value, _ = nid.fiber_max_jsd(alpha[0], s[0], rank=rank)
        return value, jnp.log(2.0) / 2

    return compare


register(Claim(
    id="identifiability.fiber_dimension", group="identifiability", provenance="literature",
    statement="dim{alpha in simplex : [S 1]^T alpha = [S 1]^T alpha_hat} = T - rank[S 1] on every draw (head 0, "
              "all C logits), with rank[S 1] that of generic read-outs of the model: min(T, C + 1) for free "
              "entries, at most d_out + 1 for S = V W_l^T",
    source=SOURCE, lhs="T - numerical rank of the draw's [S 1] (SVD, JAX)",
    rhs="T - rank[S 1] of the model's SymPy read-out expression at random rational points (60 digits, the "
        "largest rank of two points)",
    build=_dimension,
    tolerance=COUNT, tolerance_reason="integer counts: equal or not",
))
register(Claim(
    id="identifiability.joint_fiber_dimension", group="identifiability", provenance="literature",
    statement="Heads moved jointly, only the averaged logits kept: dim = KT - rank of the (K + C) x KT system, "
              "the rank of generic read-outs of the model (KT - min(KT, K + C) for free entries) on every draw",
    source=SOURCE, lhs="KT - numerical rank of the draw's system (SVD, JAX)",
    rhs="KT - rank of the system built from the model's SymPy read-out expressions at random rational points "
        "(60 digits, the largest rank of two points)",
    build=_joint,
    tolerance=COUNT, tolerance_reason="integer counts: equal or not",
))
register(Claim(
    id="identifiability.fiber_moves", group="identifiability", provenance="literature",
    statement="Moving head 0's attention along each fiber direction keeps every logit and keeps a distribution",
    source=SOURCE, lhs="logits, sums and positivity after each move (true model)",
    rhs="the original logits, 1, True", build=_moves, tolerance=TOLERANCE, tolerance_reason=TOLERANCE_REASON,
    nonfinite_reason="a weight of head 0 underflowed to 0 in this dtype: no move keeps every entry positive",
))
register(Claim(
    id="identifiability.fiber_vertex", group="identifiability", provenance="literature",
    statement="The fiber's max-JSD vertex (support rank[S 1]: C + 1 for free read-outs) is a distribution with "
              "exactly the model's logits",
    source=SOURCE + "; the eps = 0 form of Jain & Wallace's search", lhs="logits and sum at the vertex",
    rhs="the model's logits, 1", build=_vertex, tolerance=TOLERANCE, tolerance_reason=TOLERANCE_REASON,
    nonfinite_reason=NO_VERTEX_REASON,
))
register(Claim(
    # measured: the literature says attention is not identifiable; this threshold and T are ours (below)
    id="identifiability.fiber_max_jsd", group="identifiability", provenance="measured",
    statement="With T = 16 positions and C = 2 classes, on every random draw some attention at JSD > ln(2)/2 "
              "from the model's gives exactly its logits (the fiber shrinks with T: measured false at T <= 8)",
    source=SOURCE + "; vertex enumeration (JSD is convex)", lhs="max JSD over the fiber's vertices",
    rhs="ln(2)/2", build=_max_jsd, tolerance=COUNT,
    tolerance_reason="a minimum over draws against a fixed threshold (no estimation error)",
    measure=left, summary=fraction_above(float(np.log(2) / 2), least=1.0),
    # The threshold is ours, measured at SMALL's T and C (256 draws: below it in 66 % of draws at
    # T = 7, 9 % at T = 8, none from T = 10 on): no verdict is expected elsewhere.
    requires={"max_len": 16, "classes": 2}, nonfinite_reason=NO_VERTEX_REASON,
))


# -- 27: Brunner's effective attention ---------------------------------------------------------------
def beyond_rounding(defect: jnp.ndarray) -> jnp.ndarray:
    """A distribution defect, or 0 where its dtype's rounding alone could make it (`ROUNDING`):
    never above the DEFECT cut then, so rounding is not counted as "not a distribution"."""
    return jnp.where(defect > ROUNDING[defect.dtype], defect, jnp.zeros_like(defect))


def _effective(which: int):
    def build(spec: ModelSpec):
        parts = _head(spec)

        def compare(params, tokens):
            alpha, s, _ = parts(params, tokens)
            defect = nid.distribution_defects(nid.effective_attention(alpha[0], s[0]))[which]
            return beyond_rounding(defect), jnp.asarray(0.0, s.dtype)

        return compare

    return build


register(Claim(
    id="identifiability.effective_sum", group="identifiability", provenance="literature",
    statement="Effective attention (projection onto col S) does not sum to 1 on almost every draw (>= 99 %)",
    source=SOURCE, lhs="|sum - 1| of the projection of alpha_hat onto col(S) (0 within the dtype's rounding)",
    rhs="0",
    build=_effective(0), tolerance=COUNT, tolerance_reason=SHARE_REASON,
    measure=left, summary=fraction_above(DEFECT, least=0.99),
))
register(Claim(
    id="identifiability.effective_negative", group="identifiability", provenance="literature",
    statement="Effective attention has negative entries on most draws (>= 50 %)",
    source=SOURCE, lhs="-min entry of the projection onto col(S) (0 within the dtype's rounding)", rhs="0",
    build=_effective(1), tolerance=COUNT, tolerance_reason=SHARE_REASON,
    measure=left, summary=fraction_above(DEFECT, least=0.5),
))


# -- 28: candidates for efficient attention ----------------------------------------------------------
def _candidate(name: str):
    def build(spec: ModelSpec):
        parts, rank = _head(spec), tid.generic_readout_rank(spec)
        construct = nid.CANDIDATES[name]

        def compare(params, tokens):
            alpha, s, _ = parts(params, tokens)
            candidate = construct(alpha[0], s[0])
            B = nid.augmented(s[0])  # its last column gives the sum
            # Optimality on every draw: KKT residuals of the candidate's own problem (0 at its optimum;
            # any other point of the fiber, alpha_hat included, leaves them nonzero).
            optimality = nid.kkt_residuals(name, candidate, s[0], rank=rank)
            zeros = jnp.zeros(2, s.dtype)
            if name == "projection":  # not asserted to be >= 0: it can be negative (bench)
                return jnp.concatenate([B.T @ candidate, optimality]), jnp.concatenate([B.T @ alpha[0], zeros])
            negative = nid.distribution_defects(candidate)[1]
            return (jnp.concatenate([B.T @ candidate, negative[None], optimality]),
                    jnp.concatenate([B.T @ alpha[0], jnp.zeros(1, s.dtype), zeros]))

        return compare

    return build


for _name, _text in (("projection", "(a) the projection onto col[S 1] is the minimum-norm point of the affine "
                      "fiber: same S^T alpha, sums to 1 (entries may be negative), KKT conditions of min |alpha|^2"),
                     ("min_norm", "(b) the minimum-norm point of the fiber with alpha >= 0: same S^T alpha, "
                      "sums to 1, no negative entry, KKT conditions of min |alpha|^2 s.t. alpha >= 0"),
                     ("max_entropy", "(c) the maximum-entropy point of the fiber: same S^T alpha, sums to 1, "
                      "no negative entry, KKT conditions of max H(alpha)")):
    register(Claim(
        id=f"identifiability.candidate_{_name}", group="identifiability", provenance="measured",
        statement=f"Candidate {_text}",
        source=CANDIDATE_SOURCE,
        lhs="[S 1]^T candidate (its most negative entry), KKT stationarity and dual-feasibility residuals "
        "(numerics.related.fiber.kkt_residuals: jax.grad of the objective, least-squares multipliers)",
        rhs="[S 1]^T alpha_hat (and 0), 0, 0", build=_candidate(_name), tolerance=TOLERANCE,
        tolerance_reason=TOLERANCE_REASON + " (Newton on a (C+1)-d dual converges to rounding; the KKT "
        "residuals are relative to max |grad|)",
    ))


# -- 29: necessity and sufficiency of the min-norm candidate's support (trained models) --------------
SUPPORT_DOCUMENTS = 32  # documents per draw (each draw's value is their mean): power at 32 draws
#: Why a draw may be NaN: removing (or keeping) the support can leave a head with no attention in
#: every one of the draw's documents, where the renormalised attention is undefined.
UNDEFINED = "a draw where every document's kept attention is empty in some head has no defined share"


def _support_one(spec: ModelSpec, necessity: bool):
    """One document's value: 1.0 when the prediction is unchanged (sufficiency) or flipped
    (necessity) with only (without) the min-norm candidate's support, NaN when that leaves a
    head with no attention."""
    parts = _head(spec)

    def one(params, document):
        alpha, s, z = parts(params, document)
        support = jax.vmap(nid.candidate_min_norm)(alpha, s) > DEFECT  # every head's candidate
        kept = jnp.where(support if not necessity else ~support, alpha, 0.0)
        total = kept.sum(axis=1, keepdims=True)
        defined = jnp.all(total > 0)
        changed = jnp.argmax(njw.logits_from(params, spec, kept / jnp.where(total > 0, total, 1.0), s)) \
            != jnp.argmax(z)
        value = changed if necessity else ~changed
        return jnp.where(defined, value.astype(s.dtype), jnp.nan)

    return one


def _support(task: str, necessity: bool):
    def build(spec: ModelSpec):
        one = _support_one(spec, necessity)
        trained = trained_model(spec, task)[0]

        def compare(params, tokens):
            params = cast(trained, params.embedding.dtype)
            docs = seeded_documents(tokens, task, spec, SUPPORT_DOCUMENTS)
            values = jax.vmap(lambda x: one(params, x))(docs)
            # The draw's share is over its defined documents (NaN when none is): the context
            # reports how many documents are undefined, so none is left out unseen.
            return jnp.nanmean(values), jnp.asarray(0.5, values.dtype)

        return compare

    return build


UNDEFINED_DOCUMENTS = 1024  # fixed task documents on which the context counts undefined ones


def _undefined_share(tasks: tuple[str, ...], necessity: bool):
    """Context: the share of `UNDEFINED_DOCUMENTS` fixed documents of each task on which the
    support claim's value is undefined (left out of its draw's share)."""
    def context(spec: ModelSpec) -> dict[str, float]:
        one = jax.jit(jax.vmap(_support_one(spec, necessity), in_axes=(None, 0)))
        out = {}
        for task in tasks:
            docs = documents(jax.random.PRNGKey(29), UNDEFINED_DOCUMENTS, task, spec)
            values = np.asarray(one(trained_model(spec, task)[0], docs))
            out[f"undefined_share_{task}"] = float(np.mean(np.isnan(values)))
        return out

    return context


def _necessity_contrast(spec: ModelSpec):
    needle, bow = _support("needle", True)(spec), _support("bag_of_words", True)(spec)

    def compare(params, tokens):
        return needle(params, tokens)[0], bow(params, tokens)[0]

    return compare


register(Claim(
    id="identifiability.support_sufficient.needle", group="identifiability", provenance="measured",
    statement="Keeping only the min-norm candidate's support (renormalised) keeps the prediction "
    f"[one trained needle model (training seed 0), needle-task documents, {SUPPORT_DOCUMENTS} per draw]",
    source=CANDIDATE_SOURCE + "; check 29", lhs="share of the draw's documents whose prediction is unchanged",
    rhs="share >= 0.9 of draws above 0.5",
    build=_support("needle", False), tolerance=COUNT, tolerance_reason=SHARE_REASON,
    requires={"classes": 2}, measure=left, summary=fraction_above(0.5, least=0.9),
    nonfinite_reason=UNDEFINED, context=_undefined_share(("needle",), False), trains_on=("needle",),
))
register(Claim(
    id="identifiability.support_necessary_needle_vs_bow", group="identifiability", provenance="measured",
    statement="Removing the candidate's support flips the prediction more often on the needle task "
    f"than on bag-of-words [one trained model per task (training seed 0), each on {SUPPORT_DOCUMENTS} "
    "documents of its own task per draw]",
    source=CANDIDATE_SOURCE + "; check 29", lhs="flip on the trained needle model",
    rhs="flip on the trained bag-of-words model", build=_necessity_contrast, tolerance=COUNT,
    tolerance_reason=MEAN_REASON, requires={"classes": 2},
    measure=difference, summary=difference_exceeds_zero, nonfinite_reason=UNDEFINED,
    context=_undefined_share(("needle", "bag_of_words"), True), trains_on=("needle", "bag_of_words"),
    finding="Not confirmed: flip rate on the needle task minus bag-of-words = {mean:.3g} "
    "(standard error {se:.2g}, {draws:.0f} draws where removal leaves some attention).",
))
