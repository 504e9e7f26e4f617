"""New figures: how good Eq. 19 is, and how fast LIME reaches its limit β^∞.

* ``eq19_nu`` / ``eq19_d``: relative L2 error ‖approx − β^∞‖ / ‖β^∞‖ of Eq. 19, of the
  improved closed form (`numerics.lime.eq19_form`) and of the shell form (`numerics.lime.shell_form`)
  against LIME's exact large-sample limit β^∞
  (`numerics.lime.limit.beta_limit`: enumeration of all 2^d masks, in-place UNK
  replacement, ridge 0), over documents of d distinct words, against the kernel width ν and
  against d. Models: random draws at the paper's init (the claims' spec) and the model explained
  (trained by the report, or given with ``--model``: the legend says which). Its documents are d
  distinct words drawn at random from its 500 most frequent, not sentences of its corpus.
* ``eq19_n``: root-mean-square error of LIME (`numerics.lime.engine.lime_explain`, ridge 0, in-place
  replacement) against β^∞ as the number of samples n grows, on log-log axes with the fitted
  slope (Monte-Carlo theory: −1/2).
"""

from __future__ import annotations

import jax
import numpy as np
from attnverify.figures.common import NEGATIVE, POSITIVE, FigureContext, plt, style
from attnverify.numerics.draws import draw_params
from attnverify.numerics.model import CLS, UNK
from attnverify.numerics.tokenize import encode

NUS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
# Each d and each n is one compilation (static shapes): the quick preset uses fewer.
DS = {"quick": (4, 8, 12), "full": (2, 4, 6, 8, 10, 12)}
NS = {"quick": (250, 1000, 4000, 16000), "full": (250, 500, 1000, 2000, 4000, 8000, 16000)}
D_FOR_NU, NU_FOR_D = 8, 0.25
APPROXIMATIONS = ("eq19", "improved", "shell")
STYLES = {("random", "eq19"): (NEGATIVE, "-", "x"), ("random", "improved"): (NEGATIVE, "--", "D"),
          ("random", "shell"): (NEGATIVE, ":", "o"),
          ("model", "eq19"): (POSITIVE, "-", "x"), ("model", "improved"): (POSITIVE, "--", "D"),
          ("model", "shell"): (POSITIVE, ":", "o")}
NAMES = {"eq19": "Eq. 19", "improved": "improved (mean mask)", "shell": "shell form"}


def _documents(ctx: FigureContext, d: int, count: int) -> list[tuple[str, object, object, list[str]]]:
    """(model kind, params, tokens, words) for `count` documents of d distinct words per model:
    random models at the claims' spec (random distinct word ids), and the context's model
    (distinct words among its 500 most frequent)."""
    out = []
    root = jax.random.PRNGKey(ctx.seed)
    spec = ctx.claims_spec
    for c in range(count):
        k_params, k_words = jax.random.split(jax.random.fold_in(root, c))
        params = draw_params(k_params, spec)
        ids = np.asarray(jax.random.choice(k_words, np.arange(2, spec.vocab_size), (d,), replace=False))
        tokens = np.full(spec.max_len, UNK, np.int32)
        tokens[0], tokens[1:1 + d] = CLS, ids
        out.append(("random", params, tokens, [str(i) for i in ids]))
    if ctx.model is not None and ctx.model.spec.max_len - 1 >= d:  # else `model_too_short` says why
        m = ctx.model
        pool = np.arange(2, min(m.spec.vocab_size, 502))
        for c in range(count):
            ids = np.asarray(jax.random.choice(jax.random.fold_in(root, 10**6 + c), pool, (d,), replace=False))
            text = " ".join(m.vocab[i] for i in ids)
            tokens, kept = encode(text, m.vocab, m.spec.max_len)
            out.append(("model", m.params, tokens, kept))
    return out


def model_too_short(ctx: FigureContext, ds) -> str | None:
    """Why the context's model has no series for some d of `ds`: its T - 1 words hold fewer."""
    if ctx.model is None or ctx.model.spec.max_len - 1 >= max(ds):
        return None
    return (f"the {ctx.model_origin} model reads T - 1 = {ctx.model.spec.max_len - 1} words: "
            f"no series for d > {ctx.model.spec.max_len - 1}")


def _labels(ctx: FigureContext) -> dict[str, str]:
    """Legend words per model kind: the context's model is "trained" or "given" (`model_origin`)."""
    return {"random": "random", "model": ctx.model_origin}


def _spec_of(ctx: FigureContext, kind: str):
    return ctx.claims_spec if kind == "random" else ctx.model.spec


def _errors(ctx: FigureContext, d: int, nus: tuple[float, ...], count: int) -> dict:
    """``errors[kind][approx][nu index]``: list over documents of the relative L2 error, and
    ``lost[kind][nu index]``: documents whose beta^inf is not a number there (`LimitLost`)."""
    from attnverify.numerics.lime.eq19_form import (  # SymPy-backed: imported when data is computed
        eq19_approximation,
        improved_approximation,
    )
    from attnverify.numerics.lime.limit import LimitLost, beta_limit  # SymPy-backed: imported when data is computed
    from attnverify.numerics.lime.shell_form import shell_approximation  # SymPy-backed: imported when data is computed
    errors: dict[str, dict[str, list[list[float]]]] = {}
    lost: dict[str, list[int]] = {}
    for kind, params, tokens, words in _documents(ctx, d, count):
        spec = _spec_of(ctx, kind)
        eq19 = eq19_approximation(params, tokens, spec, words=words)
        slot = errors.setdefault(kind, {a: [[] for _ in nus] for a in APPROXIMATIONS})
        for i, nu in enumerate(nus):
            try:
                beta = beta_limit(params, tokens, spec, words=words, nu=nu, removal="replace", method="exact").beta
            except LimitLost:  # no target at this width: counted (`lost`) and said in the title, not plotted
                lost.setdefault(kind, [0] * len(nus))[i] += 1
                continue
            approximations = {
                "eq19": eq19,
                "improved": improved_approximation(params, tokens, spec, nu=nu, words=words),
                "shell": shell_approximation(params, tokens, spec, nu=nu, words=words, removal="replace"),
            }
            norm = float(np.linalg.norm(beta)) or 1.0
            for name, approx in approximations.items():
                slot[name][i].append(float(np.linalg.norm(approx - beta)) / norm)
    return {"errors": errors, "lost": lost}


def compute_eq19_nu(ctx: FigureContext) -> dict:
    count = 4 if ctx.quick else 16
    return {"x": list(NUS), "x_label": "kernel width ν (lime: kernel_width / 100)", "x_symbol": "ν", "d": D_FOR_NU,
            **_errors(ctx, D_FOR_NU, NUS, count), "documents_per_model": count, "model_labels": _labels(ctx),
            "note": model_too_short(ctx, (D_FOR_NU,)),
            "title": f"Eq. 19 vs exact $\\beta^\\infty$ against ν (d = {D_FOR_NU}, in-place UNK replacement)"}


def compute_eq19_d(ctx: FigureContext) -> dict:
    count = 4 if ctx.quick else 16
    ds = DS["quick" if ctx.quick else "full"]
    per_d = {d: _errors(ctx, d, (NU_FOR_D,), count) for d in ds}
    kinds = dict.fromkeys(kind for d in ds for kind in per_d[d]["errors"])  # "model" only where T holds d
    errors = {kind: {a: [per_d[d]["errors"][kind][a][0] if kind in per_d[d]["errors"] else [] for d in ds]
                     for a in APPROXIMATIONS} for kind in kinds}
    lost = {kind: [per_d[d]["lost"].get(kind, [0])[0] for d in ds] for kind in kinds}
    return {"x": list(ds), "x_label": "number of distinct words d", "x_symbol": "d", "nu": NU_FOR_D, "errors": errors,
            "lost": {kind: counts for kind, counts in lost.items() if any(counts)},
            "documents_per_model": count, "model_labels": _labels(ctx), "note": model_too_short(ctx, ds),
            "title": f"Eq. 19 vs exact $\\beta^\\infty$ against d (ν = {NU_FOR_D}, in-place UNK replacement)"}


def _draw_errors(data: dict, *, log_x: bool) -> plt.Figure:
    with style():
        fig, ax = plt.subplots(figsize=(9, 6.4), constrained_layout=True)
        x = np.asarray(data["x"], float)
        labels = data.get("model_labels", {})
        for kind, per_approx in data["errors"].items():
            for approx, values in per_approx.items():
                colour, line, marker = STYLES[(kind, approx)]
                median, low, high = (np.array([np.quantile(v, q) if v else np.nan for v in values])
                                     for q in (0.5, 0.25, 0.75))  # no document at a point: no point drawn
                ax.plot(x, median, line, marker=marker, color=colour,
                        label=f"{NAMES[approx]}, {labels.get(kind, kind)} model")
                ax.fill_between(x, low, high, color=colour, alpha=0.12)
        if log_x:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(data["x_label"])
        ax.set_ylabel("relative L2 error  ‖approx − $\\beta^\\infty$‖ / ‖$\\beta^\\infty$‖")
        ax.set_title(f"{data['title']}\nmedian and quartiles over {data['documents_per_model']} "
                     f"documents per model{_caveats(data)}", fontsize=11)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)  # below: covers no point
    return fig


def _caveats(data: dict) -> str:
    """What the figure leaves out, for its title: documents whose limit is lost at some x (narrow
    kernels), and a given model too short for some d."""
    lines = []
    labels = data.get("model_labels", {})
    for kind, counts in data.get("lost", {}).items():
        at = ", ".join(f"{x:g}" for x, c in zip(data["x"], counts, strict=True) if c)
        lines.append(f"{labels.get(kind, kind)} model: $\\beta^\\infty$ lost to rounding for up to {max(counts)} of "
                     f"{data['documents_per_model']} documents at {data['x_symbol']} = {at} (not drawn)")
    if data.get("note"):
        lines.append(data["note"])
    return "".join(f"\n{line}" for line in lines)


def draw_eq19_nu(data: dict) -> plt.Figure:
    return _draw_errors(data, log_x=True)


def draw_eq19_d(data: dict) -> plt.Figure:
    return _draw_errors(data, log_x=False)


def compute_eq19_n(ctx: FigureContext) -> dict:
    """On one document: RMSE of R LIME runs per n against beta^inf with the log-log slope, and
    Eq. 19's relative L2 error against each LIME run (median over runs) and against beta^inf."""
    from attnverify.numerics.lime.engine import lime_explain  # SymPy-backed: imported when data is computed
    from attnverify.numerics.lime.eq19_form import (  # SymPy-backed: imported when data is computed
        eq19_approximation,
    )
    from attnverify.numerics.lime.limit import beta_limit  # SymPy-backed: imported when data is computed
    runs = 8 if ctx.quick else 32
    kind, params, tokens, words = _documents(ctx, D_FOR_NU, 1)[-1]  # the context's model if there is one
    spec = _spec_of(ctx, kind)
    nu = 0.25
    beta = beta_limit(params, tokens, spec, words=words, nu=nu, removal="replace", method="exact").beta
    eq19 = eq19_approximation(params, tokens, spec, words=words)
    rmse, eq19_vs_lime = [], []
    ns = NS["quick" if ctx.quick else "full"]
    for i, n in enumerate(ns):
        lime = lime_explain(params, tokens, spec, key=jax.random.PRNGKey(ctx.seed + i), words=words,
                            n_samples=n, runs=runs, nu=nu, removal="replace", ridge=0.0)
        rmse.append(float(np.sqrt(np.mean((lime.coef - beta[None, :]) ** 2))))
        eq19_vs_lime.append(float(np.median(np.linalg.norm(lime.coef - eq19, axis=1)
                                            / np.linalg.norm(lime.coef, axis=1))))
    slope, intercept = np.polyfit(np.log(ns), np.log(rmse), 1)
    return {"n": list(ns), "rmse": rmse, "slope": float(slope), "intercept": float(intercept),
            "eq19_vs_lime": eq19_vs_lime,
            "eq19_vs_limit": float(np.linalg.norm(eq19 - beta) / (np.linalg.norm(beta) or 1.0)),
            "runs": runs, "nu": nu, "d": len(words), "model": kind,
            "model_label": _labels(ctx)[kind], "words": words, "beta_limit": beta,
            "eq19": eq19, "note": model_too_short(ctx, (D_FOR_NU,))}


def draw_eq19_n(data: dict) -> plt.Figure:
    n, rmse = np.asarray(data["n"], float), np.asarray(data["rmse"])
    with style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
        left.loglog(n, rmse, "o", color=POSITIVE, label=f"LIME ({data['runs']} runs per n)")
        left.loglog(n, np.exp(data["intercept"]) * n ** data["slope"], "-", color="black",
                    label=f"fitted slope {data['slope']:.3f}")
        left.loglog(n, rmse[0] * (n / n[0]) ** -0.5, ":", color="grey", label="slope −1/2 (Monte-Carlo rate)")
        left.set_xlabel("LIME samples n")
        left.set_ylabel("RMSE of LIME coefficients vs $\\beta^\\infty$")
        left.set_title("LIME converges to its limit")
        right.semilogx(n, data["eq19_vs_lime"], "x-", color=NEGATIVE, markersize=9,
                       label="Eq. 19 vs LIME at n (median over runs)")
        right.axhline(data["eq19_vs_limit"], color="black", linestyle="--",
                      label=f"Eq. 19 vs $\\beta^\\infty$: {data['eq19_vs_limit']:.3f}")
        right.set_xlabel("LIME samples n")
        right.set_ylabel("relative L2 error of Eq. 19")
        right.set_title("Eq. 19's error: Monte-Carlo noise fades, the approximation error stays")
        right.set_ylim(0, 1.15 * max(*data["eq19_vs_lime"], data["eq19_vs_limit"]))
        for ax in (left, right):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        note = f"\n{data['note']}: drawn on a random model" if data.get("note") else ""
        model = data.get("model_label", data["model"])
        fig.suptitle(f"{model.capitalize()} model, one document with d = {data['d']} words, "
                     f"ν = {data['nu']}, in-place UNK replacement, ridge 0{note}")
    return fig
