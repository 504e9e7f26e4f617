"""The related papers' protocols in full (docs/theory.md §8.7, checks 16-33): `python bench/bench_related.py [N]`.

Prints markdown tables (N documents per model, default 200): Jain & Wallace's Kendall tau-b
protocol, adversarial attention (exact vs optimiser), the fiber and the efficient-attention
candidates, necessity/sufficiency of the candidate's support, and Wen et al.'s near ties,
MI and Gumbel entropies. Models: random draws at the paper's init (and x3), and §1 models
trained on the synthetic tasks (on documents of their task). Too slow for the test suite.
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from attnverify.numerics import model as nm  # noqa: E402
from attnverify.numerics.draws import draw_document, draw_params  # noqa: E402
from attnverify.numerics.related import adversarial as nadv  # noqa: E402
from attnverify.numerics.related import fiber as nid  # noqa: E402
from attnverify.numerics.related import jain_wallace as njw  # noqa: E402
from attnverify.numerics.related import mutual_information as ninfo  # noqa: E402
from attnverify.numerics.related.kendall import kendall_tau_b  # noqa: E402
from attnverify.numerics.training.synthetic_tasks import documents, trained_model  # noqa: E402

from attnverify.spec import SMALL  # noqa: E402

SPEC = SMALL
NOISE = ninfo.gumbel_noise(jax.random.PRNGKey(1), 2000, SPEC.max_len)


def per_document(params, tokens):
    """Every statistic of one document under one model."""
    e = nm.embed(params, tokens, SPEC)
    alpha, s = nm.attention(params, e, SPEC), nm.readouts(params, e, SPEC)
    taus, ps = njw.protocol_taus(params, tokens, SPEC)
    slab = nadv.head_slab(params, e, SPEC, 0)
    search = nadv.jw_optimiser(jax.random.PRNGKey(0), params, e, SPEC, 0)
    adversarial = jnp.stack([jnp.stack([nadv.exact_max_jsd(slab, eps).jsd, nadv.selected_max_jsd(search, eps)])
                             for eps in (0.01, 0.05)])
    fiber_jsd, _ = nid.fiber_max_jsd(alpha[0], s[0])
    projection = nid.candidate_projection(alpha[0], s[0])
    support = jax.vmap(nid.candidate_min_norm)(alpha, s) > 1e-9
    z = njw.logits_from(params, SPEC, alpha, s)

    def prediction_with(mask):
        kept = jnp.where(mask, alpha, 0.0)
        total = kept.sum(axis=1, keepdims=True)
        flipped = jnp.argmax(njw.logits_from(params, SPEC, kept / jnp.where(total > 0, total, 1), s)) != jnp.argmax(z)
        return jnp.where(jnp.all(total > 0), flipped, jnp.nan)

    loo = jnp.abs(njw.loo_no_reindex(params, e, SPEC))
    ties = ninfo.pair_agreement(alpha.mean(axis=0)[1:], loo, 0.1 / SPEC.max_len)
    entropies = jnp.stack([ninfo.mean_entropy(ninfo.gumbel_softmax(nm.scores(params, e, SPEC)[0], NOISE, tau))
                           for tau in ninfo.TEMPERATURES] + [ninfo.mean_entropy(alpha[0][None])])
    return {
        "taus": taus, "significant": ps < 0.05, "adversarial": adversarial, "fiber_jsd": fiber_jsd,
        "projection_negative": jnp.min(projection) < -1e-12,
        "keep_flips": prediction_with(support), "remove_flips": prediction_with(~support),
        "support": support.sum(axis=1).mean(), "ties": jnp.stack(ties), "entropies": entropies,
        "max_alpha": alpha.mean(axis=0)[1:].max(),
    }


def models(n: int):
    step = jax.jit(per_document)
    root = jax.random.PRNGKey(0)
    for label, scale in (("random, paper init", 1.0), ("random, init x3", 3.0)):
        rows = [step(draw_params(jax.random.fold_in(root, d), SPEC, scale=scale),
                     draw_document(jax.random.fold_in(root, 10**6 + d), SPEC)) for d in range(n)]
        yield label, rows
    for task in ("needle", "bag_of_words", "planted"):
        params, accuracy = trained_model(SPEC, task)
        docs = documents(jax.random.PRNGKey(11), n, task, SPEC)
        yield f"trained {task} (acc {accuracy:.2f})", [step(params, docs[d]) for d in range(n)]


def stack(rows, key):
    return np.stack([np.asarray(r[key], dtype=float) for r in rows])


def main(n: int) -> None:
    results = list(models(n))
    pairs = [f"{a} / {b}" for a, b in njw.PAIRS]
    print(f"## Jain & Wallace protocol: mean tau-b (sd) [share p < 0.05], {n} documents each\n")
    print("| model | " + " | ".join(pairs) + " |\n|---|" + "---|" * len(pairs))
    for label, rows in results:
        taus, sig = stack(rows, "taus"), stack(rows, "significant")
        cells = [f"{np.nanmean(taus[:, j]):+.2f} ({np.nanstd(taus[:, j]):.2f}) [{sig[:, j].mean():.2f}]"
                 for j in range(len(pairs))]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n## Adversarial attention (head 0): exact eps-max JSD vs J&W's optimiser\n")
    print("| model | eps | exact | optimiser | mean gap | share gap < 0.01 | share exact > 0.99 ln 2 |\n"
          "|---|---|---|---|---|---|---|")
    for label, rows in results:
        adv = stack(rows, "adversarial")
        for k, eps in enumerate((0.01, 0.05)):
            exact, opt = adv[:, k, 0], adv[:, k, 1]
            print(f"| {label} | {eps} | {exact.mean():.3f} | {opt.mean():.3f} | {(exact - opt).mean():.3f} | "
                  f"{np.mean(exact - opt < 0.01):.2f} | {np.mean(exact > 0.99 * np.log(2)):.2f} |")
    print("\n## Fiber, candidates, support (head 0 for the fiber; every head for the support)\n")
    print("| model | fiber max JSD (mean, min) | projection (a) negative | support size | keep support: "
          "flips | remove support: flips (defined) |\n|---|---|---|---|---|---|")
    for label, rows in results:
        fiber, keep, remove = stack(rows, "fiber_jsd"), stack(rows, "keep_flips"), stack(rows, "remove_flips")
        print(f"| {label} | {fiber.mean():.3f}, {fiber.min():.3f} | {stack(rows, 'projection_negative').mean():.2f}"
              f" | {stack(rows, 'support').mean():.1f} | {np.nanmean(keep):.2f} | {np.nanmean(remove):.2f} "
              f"({np.mean(~np.isnan(remove)):.2f}) |")
    print("\n## Wen et al.: near ties (|d alpha| < 0.1/T) vs |LOO| order; Gumbel-softmax entropy (head 0)\n")
    temps = " | ".join(f"H(tau={t})" for t in ninfo.TEMPERATURES)
    print(f"| model | near-tie agreement | other pairs | share of pairs near | {temps} | H(alpha) |\n"
          "|---|---|---|---|" + "---|" * (len(ninfo.TEMPERATURES) + 1))
    for label, rows in results:
        ties, H = stack(rows, "ties").sum(axis=0), stack(rows, "entropies").mean(axis=0)
        print(f"| {label} | {ties[0] / ties[1]:.3f} | {ties[2] / ties[3]:.3f} | {ties[1] / (ties[1] + ties[3]):.2f} | "
              + " | ".join(f"{h:.3f}" for h in H) + " |")
    params, _ = trained_model(SPEC, "planted")
    corpus = documents(jax.random.PRNGKey(7), 20000, "planted", SPEC)
    y = jax.vmap(lambda x: jnp.argmax(nm.logits(params, nm.embed(params, x, SPEC), SPEC)))(corpus)
    mi = ninfo.position_mi(corpus, y, SPEC.vocab_size, SPEC.classes)
    alpha = jax.vmap(lambda x: nm.attention(params, nm.embed(params, x, SPEC), SPEC).mean(axis=0)[1:])(corpus[:n])
    taus = [float(kendall_tau_b(a, mi)[0]) for a in alpha]
    print(f"\nPlanted task: plug-in MI (Miller-Madow) per position = {np.round(np.asarray(mi), 3).tolist()}; "
          f"tau-b(alpha, MI) per document = {np.mean(taus):.3f} (se {np.std(taus) / np.sqrt(n):.3f}); "
          f"argmax alpha = argmax MI in {np.mean(np.argmax(alpha, 1) == int(np.argmax(mi))):.2f} of documents")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
