"""Jain & Wallace's permutation test: the median output change over 100 random permutations of
the attention, against the document's largest attention weight (their violin plot).

Each panel is one kind of model: random draws at the paper's init, §1 models trained on the
synthetic needle and bag-of-words tasks (on documents of their task), the given model on the
tweet test split (when a model file is passed), and J&W's control encoder (read-outs from the
mean embedding), where no permutation can change anything. Output: the class-1 probability; change: |p' - p| (TVD).
Closed form behind it (docs/theory.md §8.1): the variance over permutations vanishes iff alpha is
uniform or the read-outs are constant.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.figures.common import FigureContext, plt, style
from attnverify.numerics import model as nm
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.related import jain_wallace as njw
from attnverify.numerics.training.synthetic_tasks import documents, trained_model

NAME = "jw_permutation"
PERMUTATIONS = 100  # J&W's count
BINS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)  # max-attention bins of the violins


DOCUMENTS_PER_STEP = 16  # documents evaluated together (memory: 16 x PERMUTATIONS forwards)


def _study(params_of, tokens_of, spec, n: int, perms, mixing: bool = False) -> dict:
    """Document d's model and document are ``params_of(d)``, ``tokens_of(d)`` (traceable in d):
    all `n` documents in one compiled program, `DOCUMENTS_PER_STEP` at a time."""
    def one(d):
        params = params_of(d)
        return njw.permutation_tvd(params, nm.embed(params, tokens_of(d), spec), spec, perms, mixing=mixing)

    study = jax.jit(lambda ds: jax.lax.map(one, ds, batch_size=DOCUMENTS_PER_STEP))
    max_attention, median_tvd = (np.asarray(x) for x in study(jnp.arange(n)))
    return {"max_attention": [float(v) for v in max_attention], "median_tvd": [float(v) for v in median_tvd]}


def compute(ctx: FigureContext) -> dict:
    """Per panel: ``max_attention`` and ``median_tvd`` per document."""
    spec = ctx.claims_spec
    n = 48 if ctx.quick else 256
    root = jax.random.PRNGKey(ctx.seed)
    perms = njw.random_permutations(jax.random.fold_in(root, 1), PERMUTATIONS, spec.max_len - 1)
    key = lambda d, i: jax.random.fold_in(jax.random.fold_in(root, d), i)  # noqa: E731
    random_params = lambda d: draw_params(key(d, 0), spec)  # noqa: E731
    random_doc = lambda d: draw_document(key(d, 1), spec)  # noqa: E731
    panels = {"random init (paper's U(-0.1, 0.1))": _study(random_params, random_doc, spec, n, perms)}
    for task in ("needle", "bag_of_words"):
        params, accuracy = trained_model(spec, task, seed=ctx.seed)
        task_doc = lambda d, t=task: documents(key(d, 2), 1, t, spec)[0]  # noqa: E731  (its own task's)
        panels[f"trained: {task} (accuracy {accuracy:.2f})"] = _study(lambda d, p=params: p, task_doc, spec, n, perms)
    if ctx.model is not None:
        from attnverify.numerics.training.corpora import encode_texts, load_corpus

        loaded = ctx.model
        texts = load_corpus("tweets").test.texts[:n]
        docs = encode_texts(texts, loaded.vocab, loaded.spec.max_len)
        model_perms = njw.random_permutations(jax.random.fold_in(root, 2), PERMUTATIONS, loaded.spec.max_len - 1)
        docs, given = jnp.asarray(docs), jax.tree_util.tree_map(jnp.asarray, loaded.params)
        panels["given model, tweet test split"] = _study(lambda d: given, lambda d: docs[d],
                                                          loaded.spec, len(texts), model_perms)
    panels["control: read-outs from the mean embedding"] = _study(random_params, random_doc, spec, n, perms,
                                                                  mixing=True)
    return {"panels": panels, "permutations": PERMUTATIONS, "bins": list(BINS), "T": spec.max_len}


def draw(data: dict) -> plt.Figure:
    panels = data["panels"]
    bins = data["bins"]
    with style():
        # at most 3 panels a row: the report shows figures <= 1000 px wide, where a row of 5
        # made the 8-pt labels unreadable
        columns = min(3, len(panels))
        rows = -(-len(panels) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.8 * rows), sharey=True,
                                 constrained_layout=True, squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (title, panel) in zip(axes.flat, panels.items(), strict=False):
            peak, change = np.asarray(panel["max_attention"]), np.asarray(panel["median_tvd"])
            counts = []
            for j in range(len(bins) - 1):
                inside = change[(peak >= bins[j]) & (peak < bins[j + 1] + (j == len(bins) - 2))]
                counts.append(inside.size)
                if inside.size > 1 and np.ptp(inside) > 0:  # a violin of constant values draws nothing
                    ax.violinplot([inside], positions=[j], showmedians=True, widths=0.8)
                # every document as a point, a bin of one document and constant values included
                jitter = np.random.default_rng(j).uniform(-0.15, 0.15, inside.size)
                ax.plot(j + jitter, inside, "o", ms=2.5, color="black", alpha=0.35)
            ax.set_xlim(-0.6, len(bins) - 1.4)
            ax.set_xticks(range(len(bins) - 1), [f"{bins[j]:.2g}-{bins[j + 1]:.2g}\nn={counts[j]}"
                                                 for j in range(len(bins) - 1)], rotation=30, fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("max attention (head mean)")
        for row in axes:
            row[0].set_ylabel(f"median |Δp| over {data['permutations']} permutations")
        # log above 1e-6 (a trained needle model's changes are ~1e-6, random init's ~1e-4), linear below
        axes[0][0].set_yscale("symlog", linthresh=1e-6)
        axes[0][0].set_ylim(0, 1.05)  # a probability change: the violins' smoothing is cut at 0
        fig.suptitle("Permuting attention (Jain & Wallace): output change vs peakedness")
    return fig
