"""LIME benchmarks: this project's engine vs the `lime` package, evaluation paths, beta^inf.

Run: ``attnverify bench lime [--quick]`` or ``python bench/bench_lime.py [--quick] [--json PATH]``.

1. One LIME explanation at paper sizes (T = 256, K = 6, d_e = 128, 255 words, n = 5000, kernel
   width 25, ridge 1): `lime`'s ``LimeTextExplainer`` calling the same model (jitted, batched
   JAX), vs `lime_explain`, in one run, for both like-for-like settings: lime's default
   bow=True (deletion, d = 100 distinct words; structured path) and bow=False with
   mask_string='UNK' (in-place replacement, d = 255 positions; ratio path); and deletion on a
   200-word text with d = 196 distinct words (where the ridge's Gram grows as d^2). Steady state
   (compilation excluded, reported apart); ours also in float32.
2. Throughput (masked documents per second) of the structured, ratio and generic paths.
3. beta^inf by exact enumeration: time vs d (ratio path, replace mode; structured, delete).
4. Scaling: samples/s of one LIME explanation (structured path, deletion) as n, d, T or K
   varies from the paper's point, with the compiled chunk's memory.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import numpy as np
from attnverify.numerics.draws import draw_params
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.lime.document import lime_document, random_document
from attnverify.numerics.lime.engine import lime_explain
from attnverify.numerics.lime.limit import beta_limit
from attnverify.numerics.lime.sampling import sample_masks
from attnverify.numerics.tokenize import builtin_vocab
from attnverify.numerics.tokenize import words as split_words

from attnverify.spec import PAPER


def timed(fn, repeat: int = 3) -> tuple[float, float]:
    """(first call, best of `repeat` later calls) in seconds; results are blocked on."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def paper_text(vocab: list[str], d: int, length: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    distinct = rng.choice(vocab[2:], d, replace=False)
    words = list(distinct) + list(rng.choice(distinct, length - d))
    rng.shuffle(words)
    return " ".join(words)


#: The like-for-like comparisons: lime's settings, ours for the same computation, and the text
#: (distinct words, words): the paper's text of 255 words with 100 distinct, and a 200-word
#: text with 196 distinct words, where the ridge's d x d Gram dominates.
VERSUS = {
    "delete": ({"bow": True}, {"removal": "delete"}, (100, 255)),  # lime's default
    "replace": ({"bow": False, "mask_string": "UNK"}, {"removal": "replace", "features": "positions"}, (100, 255)),
    "delete_long": ({"bow": True}, {"removal": "delete"}, (196, 200)),
}


def bench_versus_lime(quick: bool) -> dict:
    """Per removal mode: `lime`'s ``LimeTextExplainer`` and `lime_explain` on the same model and
    text, in one run; ours in float64 (the default) and float32 (same masks; the largest
    coefficient difference to float64 is reported next to it)."""
    from lime.lime_text import LimeTextExplainer
    from threadpoolctl import threadpool_limits  # scikit-learn's, installed with lime

    spec = PAPER
    vocab = builtin_vocab(spec.vocab_size)
    params = draw_params(jax.random.PRNGKey(0), spec)
    params32 = jax.tree_util.tree_map(lambda x: x.astype(np.float32) if x.dtype == np.float64 else x, params)
    index = {w: i for i, w in enumerate(vocab)}
    model = jax.jit(jax.vmap(lime_eval.model_function(params, spec)))

    def encode(ws):
        ids = [0] + [index.get(w, 1) for w in ws[: spec.max_len - 1]]
        return ids + [1] * (spec.max_len - len(ids))

    def classifier(texts):  # batched in blocks of 500 documents (memory: 500 x 256 x 128 floats)
        tokens = np.array([encode(split_words(t)) for t in texts])
        out = np.concatenate([np.asarray(model(tokens[i : i + 500])) for i in range(0, len(tokens), 500)])
        return np.stack([-out, out], axis=1)

    n = 5000
    classifier([paper_text(vocab, 100, 255)] * 500)  # compile the model once, outside the timing
    key = jax.random.PRNGKey(1)
    rows = {}
    for mode, (lime_options, ours_options, (distinct, length)) in VERSUS.items():
        text = paper_text(vocab, distinct, length)
        ws = split_words(text)
        tokens = np.array(encode(ws))
        explainer = LimeTextExplainer(random_state=0, **lime_options)  # kernel_width=25
        d = len(set(ws)) if lime_options["bow"] else len(ws)
        # lime's BLAS (scikit-learn's ridge) on one thread, as the JAX layer sets it
        # (numerics/blas_threads.py), and on a thread per core, OpenBLAS's own default: lime's
        # faster time is the one compared.
        lime_by_threads = {}
        for threads in sorted({1, os.cpu_count() or 1}):
            with threadpool_limits(limits=threads, user_api="blas"):
                start = time.perf_counter()
                for _ in range(1 if quick else 3):
                    explainer.explain_instance(text, classifier, num_features=d, num_samples=n)
                lime_by_threads[threads] = (time.perf_counter() - start) / (1 if quick else 3)
        lime_seconds = min(lime_by_threads.values())

        def ours(p, options=ours_options, tokens=tokens, ws=ws):
            return lime_explain(p, tokens, spec, key=key, words=ws, n_samples=n, **options).coef

        first, best = timed(lambda: ours(params), repeat=3 if quick else 10)
        _, best32 = timed(lambda: ours(params32), repeat=3 if quick else 10)
        coef, coef32 = ours(params), ours(params32)
        rows[mode] = {"lime": lime_options, "d": d, "T": spec.max_len, "K": spec.heads, "n": n,
                      "lime_seconds": lime_seconds,
                      "lime_seconds_by_blas_threads": lime_by_threads, "ours_seconds": best,
                      "ours_first_call_seconds": first,
                      "speedup": lime_seconds / best, "ours_float32_seconds": best32,
                      "speedup_float32": lime_seconds / best32,
                      "float32_max_relative_difference": float(np.abs(coef32 - coef).max() / np.abs(coef).max())}
    return rows


def bench_paths(quick: bool) -> dict:
    spec = PAPER
    params = draw_params(jax.random.PRNGKey(0), spec)
    d, n = 100, 2**13 if quick else 2**15
    doc = random_document(jax.random.PRNGKey(2), d, 255, spec.max_len, spec.vocab_size)
    z = sample_masks(jax.random.PRNGKey(3), n, d)
    out = {}
    for path, removal in (("structured", "delete"), ("structured", "replace"), ("ratio", "replace"),
                          ("generic", "delete")):
        data, _ = lime_eval.prepare(params, doc, spec, d, path)
        size = n if path != "generic" else n // 8

        def run(data=data, path=path, removal=removal, size=size):
            return lime_eval.outputs(data, doc, z[:size], spec=spec, removal=removal, path=path)

        _, best = timed(run)
        out[f"{path}/{removal}"] = size / best
    sampling = timed(lambda: sample_masks(jax.random.PRNGKey(4), n, d))[1]
    out["sampler (masks/s, d=100)"] = n / sampling
    return out


def bench_enumeration(quick: bool) -> dict:
    spec = PAPER
    params = draw_params(jax.random.PRNGKey(0), spec)
    out = {}
    sizes = {"ratio/replace": (10, 14, 18, 20) if not quick else (10, 14),
             "structured/delete": (10, 12, 14, 16) if not quick else (10, 12)}
    for label, ds in sizes.items():
        path, removal = label.split("/")
        for d in ds:
            doc = random_document(jax.random.PRNGKey(d), d, min(255, 2 * d), spec.max_len, spec.vocab_size)
            tokens = np.asarray(doc.tokens)
            doc_, names = lime_document(tokens, n_words=min(255, 2 * d))

            def run(tokens=tokens, d=d, path=path, removal=removal):
                return beta_limit(params, tokens, spec, n_words=min(255, 2 * d), removal=removal, path=path,
                                  method="exact").beta

            first, best = timed(run, repeat=1)
            out[f"{label} d={len(names)}"] = {"seconds": best, "first_call_seconds": first}
    return out


def _chunk_memory(data, doc, z, spec, removal: str, path: str) -> int:
    """Bytes (arguments + temporaries + outputs) of one compiled evaluation chunk, from XLA."""
    compiled = lime_eval.outputs.lower(data, doc, z, spec=spec, removal=removal, path=path,
                                       chunk_size=z.shape[0]).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        return -1
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)


def lime_scaling(quick: bool = False, *, removal: str = "delete", chunk: int = 1000) -> list[dict]:
    """Samples/s of `lime_explain` (structured path) with one of n, d, T, K varied from the
    paper's point (n = 5000, d = 100, T = 256, K = 6), and the memory of one chunk."""
    base = {"n": 5000, "d": 100, "T": PAPER.max_len, "K": PAPER.heads}
    grid = {"n": (1000, 5000, 20000), "d": (10, 30, 100, 200), "T": (64, 256, 512), "K": (1, 6, 16)}
    if quick:
        grid = {"n": (1000, 5000), "d": (10, 100), "T": (64, 256), "K": (1, 6)}
    rows = []
    for vary, values in grid.items():
        for value in values:
            point = {**base, vary: value}
            spec = PAPER.replace(max_len=point["T"], heads=point["K"])
            d, n = min(point["d"], point["T"] - 1), point["n"]
            params = draw_params(jax.random.PRNGKey(0), spec)
            doc = random_document(jax.random.PRNGKey(2), d, spec.max_len - 1, spec.max_len, spec.vocab_size)
            tokens = np.asarray(doc.tokens)

            def run(params=params, tokens=tokens, spec=spec, n=n):
                return lime_explain(params, tokens, spec, key=jax.random.PRNGKey(1), n_words=spec.max_len - 1,
                                    n_samples=n, removal=removal, chunk_size=chunk).coef

            _, best = timed(run, repeat=2 if quick else 5)
            data, _ = lime_eval.prepare(params, doc, spec, d, "structured")
            z = sample_masks(jax.random.PRNGKey(3), min(chunk, n), d)
            rows.append({"vary": vary, "value": value, "n": n, "d": d, "T": spec.max_len, "K": spec.heads,
                         "seconds": best, "samples_per_s": n / best,
                         "chunk_bytes": _chunk_memory(data, doc, z, spec, removal, "structured")})
    return rows


def lime_benchmarks(quick: bool = False) -> dict:
    """All three LIME benchmarks (float64; the `lime` comparison needs the test extra)."""
    try:
        versus = bench_versus_lime(quick)
    except ImportError:
        versus = {"skipped": "the lime package is not installed (pip install -e '.[test]')"}
    return {
        "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
        "versions": {"python": platform.python_version(), "jax": jax.__version__},
        "versus_lime": versus,
        "paths_documents_per_second": bench_paths(quick),
        "beta_limit_enumeration": bench_enumeration(quick),
        "scaling": lime_scaling(quick),
    }
