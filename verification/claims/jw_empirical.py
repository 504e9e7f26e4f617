"""Jain & Wallace (2019), empirical checks (docs/theory.md §8.7, checks 16-20), group ``jw``.

* 18 (Monte Carlo): 10^4 random permutations of the attention against the exact moments;
* 20: J&W's adversarial optimiser against the exact eps-max JSD (vertex enumeration);
* 16, 17: their Kendall tau-b protocol per instance, on random and on trained models.

Per-draw randomness (permutations, optimiser start) uses fixed keys: each draw's model and
document are random, the procedure applied to them is the same.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.evaluations import shared
from attnverify.numerics.related import jain_wallace as njw
from attnverify.numerics.related.adversarial import exact_max_jsd, head_slab, jw_optimiser, selected_max_jsd
from attnverify.numerics.token_keys import token_key
from attnverify.numerics.training.synthetic_tasks import cast, seeded_documents, trained_model
from attnverify.verification.claims.jw import SOURCE, moment_arrays, moment_statement
from attnverify.verification.empirical import (
    MEAN_REASON,
    EveryDrawCheck,
    difference,
    largest_violation,
    left,
    tau_exceeds_zero,
    z_within,
)
from attnverify.verification.registry import Claim, register

from attnverify.spec import ModelSpec

MC_PERMUTATIONS, MC_Z = 10_000, 5.0
DOCUMENTS_PER_DRAW = 8  # the tau protocol averages 8 (model, document) pairs per draw: power at 32 draws
EPSILONS = (0.01, 0.05)
MEAN_TOLERANCE = {"float64": 0.0, "float32": 0.0}


# -- 18: Monte-Carlo permutations ---------------------------------------------------------------------
def _monte_carlo(spec: ModelSpec):
    m, c = spec.max_len - 1, spec.explained_class
    perms = njw.random_permutations(jax.random.PRNGKey(0), MC_PERMUTATIONS, m)
    stated = moment_statement(False)

    def compare(params, tokens):
        e = nm.embed(params, tokens, spec)
        x = njw.permuted_outputs(params, e, spec, perms)
        alpha, s = nm.attention(params, e, spec), nm.readouts(params, e, spec)[:, :, c]
        mean, var = stated(moment_arrays(alpha, s, m, False))
        mean = mean + njw.unpermuted_rest(params, e, spec, m)
        n, centred = x.shape[0], x - x.mean()
        sample_var = jnp.mean(centred**2)
        z_mean = (x.mean() - mean) / jnp.sqrt(sample_var / n)
        z_var = (sample_var - var) / jnp.sqrt((jnp.mean(centred**4) - sample_var**2) / n)
        return jnp.maximum(jnp.abs(z_mean), jnp.abs(z_var)), jnp.asarray(MC_Z)

    return compare


register(Claim(
    id="jw.permutation_monte_carlo", group="jw", provenance="measured",  # the moments are derived here (§8.1)
    statement=f"{MC_PERMUTATIONS} random permutations of alpha over all T-1 word positions match the "
    "closed-form mean and variance",
    source=SOURCE, lhs="max(|z| of the sample mean, |z| of the sample variance)",
    rhs=f"{MC_Z} (standard errors)", build=_monte_carlo, tolerance={"float64": 0.0, "float32": 0.0},
    tolerance_reason=f"|z| <= {MC_Z}: P(|z| > 5) = 6e-7 per statistic, ~1e-3 over 1000 draws x 2",
    requires={"output_link": "logit", "head_aggregation": "mean"},
    measure=left, summary=z_within(MC_Z),
))


# -- 20: adversarial attention --------------------------------------------------------------------------
def _search(spec: ModelSpec):
    """J&W's optimiser on head 0 of the draw (every eps reads the same search)."""
    def search(params, tokens):
        return jw_optimiser(jax.random.PRNGKey(0), params, nm.embed(params, tokens, spec), spec, 0)

    return shared((spec, "jw.search"), search)


def _exact(spec: ModelSpec, epsilon: float):
    """The exact eps-max JSD of head 0 (vertex enumeration)."""
    def exact(params, tokens):
        return exact_max_jsd(head_slab(params, nm.embed(params, tokens, spec), spec, 0), epsilon)

    return shared((spec, "jw.exact", epsilon), exact)


def _adversarial(epsilon: float, feasibility: bool = False):
    def build(spec: ModelSpec):
        if spec.classes != 2:  # outside the hypothesis (a binary output): reported, not computed
            return lambda params, tokens: (jnp.asarray(jnp.nan), jnp.asarray(0.0))

        def compare(params, tokens):
            exact = _exact(spec, epsilon)(params, tokens)
            if feasibility:  # the exact optimum's vertex is feasible for the true model
                e = nm.embed(params, tokens, spec)
                alpha = nm.attention(params, e, spec)
                p = njw.output_with_attention(params, e, spec, alpha.at[0].set(exact.vertex),
                                              output=njw.probability)
                p_hat = njw.output_with_attention(params, e, spec, alpha, output=njw.probability)
                return jnp.abs(p - p_hat) - epsilon, jnp.asarray(0.0, e.dtype)
            return selected_max_jsd(_search(spec)(params, tokens), epsilon), exact.jsd

        return compare

    return build


def _gaps(values: np.ndarray) -> dict[str, float]:
    """values = optimiser - exact per draw (<= 0): -values is the optimiser's gap."""
    gap = -np.asarray(values)
    return {"mean_gap": float(gap.mean()), "median_gap": float(np.median(gap)), "max_gap": float(gap.max()),
            "share_within_0.01": float(np.mean(gap <= 0.01))}


#: The optimiser never beats the exact optimum: max (optimiser - exact) <= rounding, with its gaps.
_gap_summary = EveryDrawCheck(statistic="max (optimiser - exact)", threshold=None, extra=_gaps)


for _eps in EPSILONS:
    register(Claim(
        id=f"jw.adversarial_gap_eps{_eps}", group="jw", provenance="measured",
        statement=f"J&W's optimiser (k=5, amsgrad 0.01, 500 steps) never beats the exact eps-max JSD "
        f"(eps = {_eps}); its gap is reported",
        source=SOURCE, lhs="optimiser's eps-max JSD (head 0 moves, hinge at 0.01)",
        rhs="max over the feasible polytope's vertices", build=_adversarial(_eps),
        tolerance={"float64": 1e-9, "float32": 1e-4},
        tolerance_reason="both are JSDs of feasible points: only rounding can put the optimiser above",
        requires={"classes": 2}, measure=difference, summary=_gap_summary,
        evaluation="jw.adversarial",
    ))
    register(Claim(
        id=f"jw.adversarial_vertex_feasible_eps{_eps}", group="jw", provenance="measured",
        statement=f"The exact optimum's vertex changes the true model's output by at most eps = {_eps}",
        source=SOURCE, lhs="|p(vertex) - p_hat| - eps (true model)", rhs="0",
        build=_adversarial(_eps, feasibility=True), tolerance={"float64": 1e-12, "float32": 1e-6},
        tolerance_reason="probabilities in [0, 1]: absolute rounding", requires={"classes": 2},
        measure=difference, summary=largest_violation,
        evaluation="jw.adversarial",
    ))


# -- 16, 17: the Kendall tau protocol -------------------------------------------------------------------
PAIR = {name: j for j, name in enumerate(njw.PAIRS)}


def shuffled_models(tokens, params, n: int):
    """The draw's model and n - 1 copies with the entries of every array shuffled: the
    paper's init is i.i.d. per entry within an array, so each copy has the same law (and the
    draw's scale and dtype). Averaging over them cuts the model-to-model variance."""
    key = token_key(tokens, 6)

    def shuffle(key, x):
        return jax.random.permutation(key, x.ravel()).reshape(x.shape)

    def copy(key):
        leaves, tree = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(key, len(leaves))
        return jax.tree_util.tree_unflatten(tree, [shuffle(k, x) for k, x in zip(keys, leaves, strict=True)])

    copies = jax.vmap(copy)(jax.random.split(key, n - 1))
    return jax.tree_util.tree_map(lambda x, c: jnp.concatenate([x[None], c]), params, copies)


def _protocol_taus(spec: ModelSpec, task: str | None):
    """Per draw, the protocol's tau-b of every pair (documents, pairs), on the draw's model and
    shuffled copies (task None) or on the model trained on `task`, with documents of that task."""
    trained = trained_model(spec, task)[0] if task else None

    def taus(params, tokens):
        docs = seeded_documents(tokens, task, spec, DOCUMENTS_PER_DRAW)
        if trained is not None:
            models = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (DOCUMENTS_PER_DRAW, *x.shape)),
                                            cast(trained, params.embedding.dtype))
        else:
            models = shuffled_models(tokens, params, DOCUMENTS_PER_DRAW)
        return jax.vmap(lambda p, x: njw.protocol_taus(p, x, spec)[0])(models, docs)

    return shared((spec, "jw.taus", task), taus)


#: Why a protocol draw may be NaN. Can happen: at --max-len 5 --vocab-size 8 a random document is one word
#: repeated about once in 343 (draw 37 of seed 0: [CLS] 5 5 5 5); re-indexed deletion of any of its words
#: leaves the same document, so |LOO| is constant.
UNDEFINED_TAU = ("a document of the draw has a constant importance (every word the same: |LOO| equal at each "
                 "position), where tau-b is undefined")


def _taus(first: tuple[str, str], second: tuple[str, str] | None, task: str | None):
    """Per draw tau(first) - tau(second) (or tau(first) alone), on the draw's model or a trained one."""
    def build(spec: ModelSpec):
        protocol = _protocol_taus(spec, task)

        def compare(params, tokens):
            taus = protocol(params, tokens)  # (documents, pairs)
            other = taus[:, PAIR[second]] if second else jnp.zeros_like(taus[:, 0])
            # A document whose tau-b is undefined (a constant importance) makes the draw NaN:
            # counted by the sweep (`UNDEFINED_TAU`), never averaged away.
            return jnp.mean(taus[:, PAIR[first]]), jnp.mean(other)

        return compare

    return build


# Only robust statements are claims (each cleared its 99.87 % bound by a wide margin at 100+
# draws). They were chosen after looking at the full table (every pair, p < 0.05 shares), which
# `bench/bench_related.py` prints from its own keys: a PASS here replicates a statement on the
# sweep's draws; it is not a test fixed before any data was seen. The first three restate findings
# of J&W's (provenance: the literature); the sign's role is this project's check 17 (measured).
PROTOCOL = [
    ("tau_grad_loo_above_alpha_loo", ("grad_detached", "loo"), ("alpha", "loo"), None,
     "tau-b(gradient, LOO) exceeds tau-b(alpha, LOO) on average (J&W: gradients and LOO agree more)", "literature"),
    ("tau_alpha_grad", ("alpha", "grad_detached"), None, "needle",
     "tau-b(alpha, |detached G x I|) is clearly positive (the importance is |alpha_t s_t| / sum)", "literature"),
    ("tau_alpha_grad", ("alpha", "grad_detached"), None, "bag_of_words",
     "tau-b(alpha, |detached G x I|) is clearly positive (the importance is |alpha_t s_t| / sum)", "literature"),
    ("tau_sign_matters", ("alpha", "grad_detached"), ("alpha", "grad_detached_signed"), "needle",
     "tau-b(alpha, |G x I|) exceeds tau-b(alpha, signed G x I): attention is unsigned", "measured"),
    ("tau_sign_matters", ("alpha", "grad_detached"), ("alpha", "grad_detached_signed"), "bag_of_words",
     "tau-b(alpha, |G x I|) exceeds tau-b(alpha, signed G x I): attention is unsigned", "measured"),
]
for _name, _first, _second, _task, _text, _provenance in PROTOCOL:
    where = (f"trained {_task} model, documents of its task" if _task else "random models and documents") + \
        f", mean of {DOCUMENTS_PER_DRAW} per draw"
    register(Claim(
        id=f"jw.{_name}" + (f".{_task}" if _task else ""), group="jw", provenance=_provenance,
        statement=f"{_text} [{where}]",
        source=SOURCE + "; protocol per instance, scipy-equivalent tau-b",
        lhs=f"tau-b{_first}", rhs=f"tau-b{_second}" if _second else "0",
        build=_taus(_first, _second, _task), tolerance=MEAN_TOLERANCE, tolerance_reason=MEAN_REASON,
        requires={"classes": 2}, measure=difference, summary=tau_exceeds_zero, nonfinite_reason=UNDEFINED_TAU,
        # The claims on one task's documents read the same tau-b table: one program.
        evaluation=f"jw.tau.{_task}" if _task else None, trains_on=(_task,) if _task else (),
    ))
