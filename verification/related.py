"""The related papers' analyses of one document under one model (`attnverify related WHAT`).

* ``adversarial``: Jain & Wallace's eps-max JSD for head `head`: the exact optimum (vertex
  enumeration) and their optimiser, for each eps;
* ``fiber``: the attention vectors giving exactly the model's logits (Brunner et al.): the
  dimension (numerical, and exact with SymPy on the rationalised read-outs), the largest
  JSD inside, effective attention and the candidates for Naim & Asher's efficient attention;
* ``gumbel``: Wen et al.'s Gumbel-softmax entropy per temperature, and the Gumbel-max law;
* ``protocol``: J&W's importances at each word and their Kendall tau-b.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.modelfile import ModelFile
from attnverify.numerics.related import adversarial as nadv
from attnverify.numerics.related import fiber as nid
from attnverify.numerics.related import jain_wallace as njw
from attnverify.numerics.related import mutual_information as ninfo
from attnverify.numerics.related.kendall import kendall_tau_b
from attnverify.numerics.tokenize import encode
from attnverify.theory.related import identifiability as tid

from attnverify.errors import InputError

ANALYSES = ("adversarial", "fiber", "gumbel", "protocol")


def _floats(x) -> list[float]:
    return [float(v) for v in np.asarray(x).ravel()]


def analyse(what: str, loaded: ModelFile, text: str, *, epsilons=(0.01, 0.05), temperatures=ninfo.TEMPERATURES,
            head: int = 0, seed: int = 0, samples: int = 2000) -> dict:
    """The `what` analysis of `text` under the model file `loaded`, as a JSON-ready dict."""
    if what not in ANALYSES:
        raise InputError(f"unknown analysis {what!r} (known: {', '.join(ANALYSES)})")
    spec = loaded.spec
    if not 0 <= head < spec.heads:
        raise InputError(f"head must be in 0..{spec.heads - 1}, got {head}", parameter="head")
    for eps in epsilons:
        nadv.check_epsilon(eps)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(loaded.params))
    for tau in temperatures:
        ninfo.check_temperature(tau, dtype)
    tokens, kept = encode(text, loaded.vocab, spec.max_len)
    if what == "protocol" and len(kept) < 2:  # Kendall's tau ranks the words: one word has no order
        raise InputError(f"related protocol: the text needs at least 2 words (Kendall's tau ranks them), "
                         f"got {len(kept)} within the model's window of {spec.max_len - 1} word"
                         f"{'s' if spec.max_len != 2 else ''} (T = {spec.max_len})")
    tokens = jnp.asarray(tokens)
    params = jax.tree_util.tree_map(jnp.asarray, loaded.params)
    e = nm.embed(params, tokens, spec)
    alpha, s = nm.attention(params, e, spec), nm.readouts(params, e, spec)
    out = {"analysis": what, "words": kept, "head": head, "T": spec.max_len}
    key = jax.random.PRNGKey(seed)
    if what == "adversarial":
        slab = nadv.head_slab(params, e, spec, head)
        search = nadv.jw_optimiser(key, params, e, spec, head)
        out["p_hat"] = float(slab.p_hat)
        out["epsilons"] = {}
        for eps in epsilons:
            exact = nadv.exact_max_jsd(slab, eps)
            support = np.flatnonzero(np.asarray(exact.vertex) > 1e-12)
            out["epsilons"][str(eps)] = {
                "exact_max_jsd": float(exact.jsd), "optimiser_max_jsd": float(nadv.selected_max_jsd(search, eps)),
                "vertex_support": [int(t) for t in support], "vertex_weights": _floats(exact.vertex[support]),
            }
    elif what == "fiber":
        S = s[head]
        # The fiber's vertices have rank[S 1] positions: C + 1 for generic read-outs, fewer where the model's
        # widths bound the rank (d_out < C) or its weights are not generic (`nid.constraint_basis`).
        rank = int(nid.numerical_rank(nid.augmented(S)))
        value, vertex = nid.fiber_max_jsd(alpha[head], S, rank=rank)
        if not jnp.isfinite(value):
            singular = np.linalg.svd(np.asarray(nid.augmented(S)), compute_uv=False)
            raise InputError(f"related fiber: no vertex of head {head}'s fiber is certified on this text: every "
                             f"{rank}-position block of [S 1] is singular within rounding or its solution negative "
                             f"beyond it ([S 1]'s singular values run from {singular[0]:.3g} down to "
                             f"{singular[rank - 1]:.3g}: ill-conditioned read-outs)")
        effective = nid.effective_attention(alpha[head], S)
        on_values = nid.effective_attention(alpha[head], nm.values(params, e, spec)[head])
        z = njw.logits_from(params, spec, alpha, s)
        out.update({
            "dimension_numerical": spec.max_len - rank,
            # What a generic model of this spec has (derived from its SymPy read-outs): the exact rank of the
            # float S itself says less, since rounding makes a rank-deficient S = V W_l^T (d_out < C) full rank.
            "dimension_generic_sympy": spec.max_len - tid.generic_readout_rank(spec),
            "max_jsd": float(value), "max_jsd_vertex_support": [int(t) for t in np.flatnonzero(vertex > 1e-12)],
            "logit_change_at_vertex": float(jnp.max(jnp.abs(
                njw.logits_from(params, spec, alpha.at[head].set(vertex), s) - z))),
            "effective_attention": {"abs_sum_minus_1": float(jnp.abs(effective.sum() - 1)),
                                    "most_negative": float(jnp.minimum(effective.min(), 0))},
            # Brunner's own space: the head's value matrix (T x d_out); the identity when d_out >= T.
            "effective_attention_values": {"abs_sum_minus_1": float(jnp.abs(on_values.sum() - 1)),
                                           "most_negative": float(jnp.minimum(on_values.min(), 0))},
            "candidates": {},
        })
        for name, construct in nid.CANDIDATES.items():
            c = construct(alpha[head], S)
            B = nid.augmented(S)
            out["candidates"][name] = {
                "abs_sum_minus_1": float(jnp.abs(c.sum() - 1)), "most_negative": float(jnp.minimum(c.min(), 0)),
                "readout_change": float(jnp.max(jnp.abs(B.T @ c - B.T @ alpha[head]))),
                "support_size": int(jnp.sum(c > 1e-12)),
            }
    elif what == "gumbel":
        gamma = nm.scores(params, e, spec)[head]
        noise = ninfo.gumbel_noise(key, samples, spec.max_len, gamma.dtype)
        out["entropy_softmax"] = float(ninfo.softmax_entropy(gamma))  # alpha[head] = softmax(gamma)
        out["entropy_by_temperature"] = {
            str(tau): float(jnp.mean(ninfo.softmax_entropy(ninfo.gumbel_logits(gamma, noise, tau))))
            for tau in temperatures}
        out["gumbel_max_largest_gap"] = float(jnp.max(jnp.abs(ninfo.hard_attention_frequencies(gamma, noise)
                                                             - alpha[head])))
    else:
        # Over the words only (J&W leave special tokens out; here [CLS] and UNK padding). The |G x I|
        # importances are shares: normalised again over the words, so that they sum to 1 there too
        # (a rescaling: no tau-b changes)
        n = len(kept)
        importance = {name: v[:n] for name, v in njw.importances(params, tokens, spec).items()}
        for name in ("grad_detached", "grad_full"):
            total = jnp.sum(importance[name])  # 0 only if every word's |G x I| is: then the zeros stay
            importance[name] = jnp.where(total > 0, importance[name] / jnp.where(total > 0, total, 1), 0.0)
        alike = [name for name, v in importance.items() if float(jnp.max(v)) == float(jnp.min(v))]
        if alike:  # tau-b of a ranking that is all ties is 0/0 (NaN, as scipy's): no order to compare
            raise InputError(f"related protocol: every word of the text has the same {' and '.join(alike)} "
                             "importance, so Kendall's tau-b has no order to compare (the model reads the words "
                             "alike: repeated or unknown words)")
        out["importances"] = {name: _floats(v) for name, v in importance.items()}
        out["kendall"] = {}
        for a, b in njw.PAIRS:
            tau, p = kendall_tau_b(importance[a], importance[b]) if n > 1 else (jnp.nan, jnp.nan)
            out["kendall"][f"{a} vs {b}"] = {"tau_b": float(tau), "p": float(p)}
    return out
