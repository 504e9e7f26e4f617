"""Every figure on a tiny model writes non-empty PNG, PDF and data files; bad names are errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from attnverify.figures import catalog, eq19_sweeps, fig1, fig4
from attnverify.figures.common import RUNNING_SENTENCE, FigureContext
from attnverify.figures.fig3 import MAX_WORDS as MAX_WORDS_FIG3
from attnverify.numerics import model as nm
from attnverify.numerics import modelfile
from attnverify.numerics.draws import draw_params
from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN, encode, words
from matplotlib.text import Text

from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.spec import ModelSpec

TINY = ModelSpec(max_len=10, d_embed=8, d_att=4, d_out=4, heads=2, vocab_size=40)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    known = list(dict.fromkeys(words(RUNNING_SENTENCE) + words(fig4.DOCUMENT)))
    vocab = ([CLS_TOKEN, UNK_TOKEN] + known + [f"w{j}" for j in range(TINY.vocab_size)])[: TINY.vocab_size]
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    # scale 5: attention far from uniform, so the figures have something to show
    modelfile.save(path, TINY, draw_params(jax.random.PRNGKey(0), TINY, scale=5.0), vocab)
    return modelfile.load(path)


@pytest.fixture(scope="module")
def drawn(tiny_model, tmp_path_factory):
    """Every figure once, at test sizes: fewer d and n values (each is one compilation)."""
    patch = pytest.MonkeyPatch()
    patch.setitem(eq19_sweeps.DS, "quick", (3,))
    patch.setitem(eq19_sweeps.NS, "quick", (100, 400))
    patch.setattr(eq19_sweeps, "NUS", (0.25, 2.0))
    # The histogram reads sweep results when it is given them, as in the report (its own
    # sweep is `verification.sweep.draw_errors`, one compilation per claim and dtype).
    rng = np.random.default_rng(0)
    sweeps = {(cid, dtype): list(10 ** rng.uniform(*{"float64": (-16, -14), "float32": (-7, -6)}[dtype], 20))
              for cid in ("thm1.gradient", "thm1.cls_term") for dtype in ("float64", "float32")}
    sweeps |= {("thm1.gradient_cls_row", dtype): list(rng.uniform(0.1, 1, 20)) for dtype in ("float64", "float32")}
    ctx = FigureContext(model=tiny_model, quick=True, claims_spec=TINY, sweeps=sweeps)
    out = tmp_path_factory.mktemp("figures")
    real_save = catalog.save_figure

    def save_and_measure(fig, out_dir, name):  # the smallest font of every figure, before it closes
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        FONTS[name] = min(sizes)
        return real_save(fig, out_dir, name)

    patch.setattr(catalog, "save_figure", save_and_measure)
    try:
        written = catalog.make_all(["all"], ctx, out)
    finally:
        patch.undo()
    return written, out


#: Smallest font (points) of each figure drawn by the `drawn` fixture.
FONTS: dict[str, float] = {}
#: The report's column (CSS px, `verification/report/render.py`: ``max-width: 1000px``) and the
#: PNG resolution (`figures.common.save_figure`).
DISPLAY_PX, PNG_DPI = 1000, 150


@pytest.mark.parametrize("name", list(catalog.FIGURES))
def test_each_figure_is_readable_at_the_reports_width(drawn, name):
    # Shown at most DISPLAY_PX wide, a figure of w pixels is scaled by min(1, DISPLAY_PX / w): its
    # smallest font must still be >= 8 pt (CSS: 8 * 96 / 72 px), and its shape a page's, not a strip's.
    from PIL import Image

    written, _ = drawn
    png = next(p for p in written[name] if p.suffix == ".png")
    width, height = Image.open(png).size
    assert 0.4 <= width / height <= 5.0, (name, width, height)
    shown = min(1.0, DISPLAY_PX / width)
    smallest_px = FONTS[name] * PNG_DPI / 72 * shown
    assert smallest_px >= 8 * 96 / 72, f"{name}: smallest font {FONTS[name]:.1f} pt shows as {smallest_px:.1f} px"


@pytest.mark.parametrize("name", list(catalog.FIGURES))
def test_each_figure_writes_png_pdf_and_data(drawn, name):
    written, out = drawn
    suffixes = {p.suffix for p in written[name]}
    assert {".png", ".pdf", ".json"} <= suffixes
    for path in written[name]:
        assert path.parent == out and path.stat().st_size > 0
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    json.loads((out / f"{name}.json").read_text())


def test_fig5_data_shows_the_cls_row_discrepancy(drawn):
    data = json.loads((drawn[1] / "fig5.json").read_text())
    # float64: rows t >= 1 agree to rounding; row 0 misses the query-path term (docs/theory.md §3.3)
    assert data["max_abs_diff_other_rows"] <= 1e-12 * max(data["max_abs_gradient"], 1.0)
    assert data["max_abs_diff_cls_row"] > 1e-6 * data["max_abs_gradient"]


def _attention_by_hand(loaded, tokens) -> np.ndarray:
    """Every head's self-attention (K, T, T) in NumPy from the model file's weights (the paper's dot
    scorer over sqrt(d_att), no biases): the oracle of the figures' attention."""
    params, spec = loaded.params, loaded.spec
    assert spec.scorer == "dot" and spec.scale_scores and not spec.biases
    e = np.asarray(nm.embed(params, jnp.asarray(tokens), spec), np.float64)
    q = np.einsum("iak,uk->iua", np.asarray(params.W_q, np.float64), e)
    k = np.einsum("iak,tk->ita", np.asarray(params.W_k, np.float64), e)
    return scipy.special.softmax(np.einsum("iua,ita->iut", q, k) / np.sqrt(q.shape[-1]), axis=-1)


def test_fig1_and_fig3_data_are_what_the_model_says(drawn, tiny_model):
    # Can fail: the strips' attention and gradients, word by word, against the model's [CLS] attention row
    # (computed here in NumPy) and jax.grad of the model; fig3's matrices against the full self-attention.
    strips = json.loads((drawn[1] / "fig1.json").read_text())
    assert strips["words"] == words(RUNNING_SENTENCE)
    assert set(strips["values"]) == {key for key, _ in fig1.METHODS}
    assert len(strips["values"]["lime"]) == len(strips["words"])
    tokens, kept = encode(strips["text"], tiny_model.vocab, TINY.max_len)
    n = len(kept)
    assert kept == strips["words"] and n >= 3
    cls_row = _attention_by_hand(tiny_model, tokens)[:, 0, 1:n + 1]
    values = {key: np.asarray(v) for key, v in strips["values"].items()}
    np.testing.assert_allclose(values["alpha_avg"], cls_row.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(values["alpha_max"], cls_row.max(axis=0), rtol=1e-5)
    e = nm.embed(tiny_model.params, jnp.asarray(tokens), TINY)
    g = np.asarray(jax.grad(nm.explained_output, argnums=1)(tiny_model.params, e, TINY))[1:n + 1]
    np.testing.assert_allclose(values["grad_l2"], np.linalg.norm(g, axis=1), rtol=1e-5)
    np.testing.assert_allclose(values["grad_x_input"], (g * np.asarray(e)[1:n + 1]).sum(axis=1), rtol=1e-4,
                               atol=1e-7)
    fig3 = json.loads((drawn[1] / "fig3.json").read_text())
    tokens3, kept3 = encode(fig3["text"], tiny_model.vocab, TINY.max_len)
    m = 1 + len(kept3[:MAX_WORDS_FIG3])
    np.testing.assert_allclose(np.asarray(fig3["attention"]), _attention_by_hand(tiny_model, tokens3)[:, :m, :m],
                               rtol=1e-5, atol=1e-12)


def test_fig4_marks_eq19_for_the_top_words(drawn, tiny_model):
    # Can fail: the top words are the first run's largest |coefficients| in order, and Eq. (19)'s values are
    # those of the figure's document, feature by feature
    from attnverify.numerics.lime.eq19_form import eq19_approximation

    data = json.loads((drawn[1] / "fig4.json").read_text())
    coef = np.asarray(data["coef_per_run"])
    assert coef.shape[0] == 5 and len(data["top"]) == min(fig4.TOP, coef.shape[1]) >= 3
    assert data["top"] == list(np.argsort(-np.abs(coef[0]), kind="stable")[:fig4.TOP])
    tokens, kept = encode(data["text"], tiny_model.vocab, TINY.max_len)
    assert data["features"] == list(dict.fromkeys(kept))
    np.testing.assert_allclose(data["eq19"], eq19_approximation(tiny_model.params, tokens, TINY, words=kept),
                               rtol=1e-12)
    # The agreement is with the mean of the runs, recomputed here with SciPy and a least-squares fit.
    from scipy import stats

    mean, eq19 = coef.mean(axis=0), np.asarray(data["eq19"])
    vs_lime = data["agreement"]["eq19"]["vs_lime"]
    assert vs_lime["pearson"] == pytest.approx(stats.pearsonr(eq19, mean)[0], rel=1e-12)
    assert vs_lime["relative_l2"] == pytest.approx(np.linalg.norm(eq19 - mean) / np.linalg.norm(mean), rel=1e-12)
    assert vs_lime["slope"] == pytest.approx(np.linalg.lstsq(eq19[:, None], mean, rcond=None)[0][0], rel=1e-12)


def test_eq19_n_slope_is_fitted_to_the_points(drawn):
    data = json.loads((drawn[1] / "eq19_n.json").read_text())
    slope = np.polyfit(np.log(data["n"]), np.log(data["rmse"]), 1)[0]
    assert slope == pytest.approx(data["slope"], rel=1e-9)


def test_unknown_figure_name_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown figure 'fig2'"):
        catalog.make_all(["fig2"], FigureContext(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_figure_without_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="needs a model"):
        catalog.make_all(["fig3"], FigureContext(), tmp_path)


@pytest.mark.parametrize("argv", [
    ["figures", "fig9", "--out", "X"],
    ["figures", "--out", "X"],
    ["figures", "fig3", "--out", "X", "--model", "missing.npz"],
])
def test_cli_figure_errors_are_one_line(tmp_path, capsys, argv):
    argv = [str(tmp_path / a) if a in ("X", "missing.npz") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnverify: error:") and "\n" not in err


def test_eq19_figures_leave_out_lost_limits_and_short_models_and_say_so(monkeypatch, tmp_path):
    # Can fail: a limit lost to rounding (a narrow kernel) stopped `figures eq19_nu` with an error,
    # and a given model reading fewer than d words stopped the report's figure with a broadcasting
    # error (T = 4: "could not broadcast input array from shape (8,) into shape (3,)").
    from attnverify.numerics.lime import limit

    real = limit.beta_limit

    def lost_when_narrow(*args, nu, **kwargs):
        if nu < 0.1:
            raise limit.LimitLost("lost to rounding (injected)")
        return real(*args, nu=nu, **kwargs)

    monkeypatch.setattr(limit, "beta_limit", lost_when_narrow)
    short_spec = TINY.replace(max_len=4)
    path = tmp_path / "short.npz"
    vocab = [CLS_TOKEN, UNK_TOKEN] + [f"w{j}" for j in range(short_spec.vocab_size - 2)]
    modelfile.save(path, short_spec, draw_params(jax.random.PRNGKey(0), short_spec), vocab)
    ctx = FigureContext(model=modelfile.load(path), claims_spec=TINY, quick=True)
    data = eq19_sweeps._errors(ctx, 4, (0.05, 0.25), 2)
    assert list(data["errors"]) == ["random"] and data["lost"] == {"random": [2, 0]}
    assert [len(v) for v in data["errors"]["random"]["eq19"]] == [0, 2]
    figure = eq19_sweeps.draw_eq19_nu({"x": [0.05, 0.25], "x_label": "ν", "x_symbol": "ν", "d": 4, **data,
                                       "documents_per_model": 2, "title": "t",
                                       "note": eq19_sweeps.model_too_short(ctx, (4,))})
    title = figure.axes[0].get_title()
    assert "lost to rounding for up to 2 of 2 documents at ν = 0.05 (not drawn)" in title
    assert "the given model reads T - 1 = 3 words: no series for d > 3" in title
    # eq19_n draws one document of d = 8 words: on a random model then, and its title says why.
    n_data = {"n": [100, 400], "rmse": [0.1, 0.05], "slope": -0.5, "intercept": 0.0, "eq19_vs_lime": [0.5, 0.4],
              "eq19_vs_limit": 0.4, "runs": 2, "nu": 0.25, "d": 8, "model": "random",
              "note": eq19_sweeps.model_too_short(ctx, (eq19_sweeps.D_FOR_NU,))}
    assert "reads T - 1 = 3 words: no series for d > 3: drawn on a random model" in \
        eq19_sweeps.draw_eq19_n(n_data)._suptitle.get_text()


@pytest.mark.parametrize("metrics", [False, True])
def test_the_eq19_legends_call_a_given_model_given_and_a_trained_one_trained(tmp_path, monkeypatch, metrics):
    # Can fail: the legends said "trained model" for any model file, an untrained one from
    # init-model included. A training record beside the file (`train`'s metrics) makes it trained.
    path = tmp_path / "m.npz"
    vocab = [CLS_TOKEN, UNK_TOKEN] + [f"w{j}" for j in range(TINY.vocab_size - 2)]
    modelfile.save(path, TINY, draw_params(jax.random.PRNGKey(0), TINY), vocab)
    if metrics:
        (tmp_path / "m.metrics.json").write_text("{}")
    seen = {}
    monkeypatch.setattr(catalog, "make_all", lambda names, ctx, out: seen.setdefault("ctx", ctx))
    catalog.figures_from_files(["eq19_d"], tmp_path / "figs", model=str(path))
    origin = "trained" if metrics else "given"
    assert seen["ctx"].model_origin == origin
    errors = {kind: {a: [[0.1, 0.2]] for a in eq19_sweeps.APPROXIMATIONS} for kind in ("random", "model")}
    figure = eq19_sweeps.draw_eq19_d({"x": [4], "x_label": "d", "x_symbol": "d", "errors": errors, "title": "t",
                                      "documents_per_model": 2, "model_labels": eq19_sweeps._labels(seen["ctx"])})
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert f"Eq. 19, {origin} model" in legend and "Eq. 19, random model" in legend
    assert not any(("trained" if origin == "given" else "given") in t for t in legend)


def test_a_correlation_without_information_is_null_with_its_reason_in_the_data_file(tmp_path):
    # Can fail: fig4 wrote NaN tokens (not strict JSON) with no reason, and numpy warned on stderr,
    # for two words (always +-1) and for a LIME mean of rounding noise against a zero limit.
    from attnverify.figures.common import write_json
    from attnverify.figures.presentation import present

    two = fig4.agreement(np.array([1.0, 2.0]), np.array([0.5, -0.5]))
    flat = fig4.agreement(np.array([1.0, 2.0, 3.0]), np.zeros(3))
    assert np.isnan(two["pearson"]) and "two points always correlate" in two["pearson_reason"]
    assert np.isnan(flat["pearson"]) and flat["pearson_reason"] == "a constant vector has no correlation"
    assert fig4.agreement(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5]))["pearson"] > 0.9
    data = {"agreement": {"eq19": {"vs_lime": two, "vs_limit": flat}}, "features": ["a", "b"]}
    path = write_json(tmp_path / "fig4.json", data)

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    back = json.loads(path.read_text(), parse_constant=refuse)
    assert back["agreement"]["eq19"]["vs_lime"]["pearson"] is None
    assert back["agreement"]["eq19"]["vs_lime"]["pearson_non_finite"] == "NaN"
    assert "Eq. 19 r = n/a, relative L2" in present("fig4", back, "caption.")["takeaway"]
    # Can fail: against a LIME mean of zero the error was divided by 1 and reported as relative.
    assert np.isnan(flat["relative_l2"]) and flat["relative_l2_reason"].startswith("every LIME coefficient is 0")
    assert back["agreement"]["eq19"]["vs_limit"]["relative_l2"] is None
    assert fig4._agreement_line(back, "vs_limit") == "Eq. 19 r = n/a / L2 = n/a"


def test_a_strip_of_rounding_noise_is_not_drawn_at_full_colour():
    # Can fail: LIME coefficients of 1e-16 (a model whose output does not change) were drawn as
    # solid green boxes, opacity being |value| / max within the strip.
    words_ = ["one", "two", "three"]
    values = {key: [0.3, -0.1, 0.2] for key, _ in fig1.METHODS}
    values["lime"] = [1.05e-16, 1.04e-16, -1.0e-16]
    data = {"text": "one two three", "paper_text": "one two three", "paper_words": words_,
            "paper_in_vocabulary": [True] * 3, "words": words_, "in_vocabulary": [True] * 3, "values": values,
            "logit": 0.01, "lime": {"runs": 3, "n_samples": 100, "nu": 0.25, "removal": "delete"}}
    figure = fig1.draw(data)
    texts = figure.axes[0].texts
    lime_row = next(i for i, t in enumerate(texts) if t.get_text().startswith("LIME"))
    assert texts[lime_row].get_text() == "LIME\n≈ 0"
    boxes = [t.get_bbox_patch() for t in texts[lime_row + 1:lime_row + 7:2]]
    assert [b.get_alpha() for b in boxes] == [0.0, 0.0, 0.0]
    other = next(i for i, t in enumerate(texts) if t.get_text() == "G-avg")
    assert texts[other + 1].get_bbox_patch().get_alpha() == 1.0  # a real strip keeps its colours
    from attnverify.numerics.explanations import is_rounding_noise

    assert is_rounding_noise(values["lime"], 0.01) and not is_rounding_noise([1e-9], 0.01)


def test_glyphs_the_font_lacks_are_one_warning_line(tmp_path, capsys):
    # Can fail: a text in a script the font does not cover (Japanese, say) printed matplotlib's raw
    # "UserWarning: Glyph ... missing from font(s)" lines, about 30 of them for two words.
    import matplotlib.pyplot as plt
    from attnverify.figures.common import save_figure

    fig, ax = plt.subplots()
    ax.set_title("日本語 テキスト")
    save_figure(fig, tmp_path, "title")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["attnverify: warning: title: the figure's font has no glyph for 7 character(s) of the text "
                   "(キ ス テ ト 日 本 語): they are drawn as empty boxes"]
    fig, ax = plt.subplots()
    ax.set_title("attention based explanations")
    save_figure(fig, tmp_path, "plain")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("names", "message"), [
    (["fig5", "--all"], "--all draws every figure: not with figure names (fig5)"),
    (["fig5", "fig3", "fig5"], "figure 'fig5' is named twice"),
])
def test_figure_names_with_all_or_twice_are_refused(tmp_path, capsys, names, message):
    # Can fail: `figures fig5 --all` drew every figure, and `figures fig5 fig5` drew fig5 once, silently.
    assert main(["figures", *names, "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"attnverify: error: {message}" + (" (each figure runs once)" if "twice" in message else "")]
    assert not (tmp_path / "figs").exists()


def test_a_backend_matplotlib_does_not_know_is_not_used(tmp_path):
    # Can fail: matplotlib reads $MPLBACKEND when it is first imported, and `MPLBACKEND=bogus`
    # (or a notebook's inline backend in a plain shell) ended `figures` in its ValueError traceback.
    exe = os.path.join(os.path.dirname(sys.executable), "attnverify")
    proc = subprocess.run([exe if os.path.exists(exe) else "attnverify", "figures", "architecture", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "bogus"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr  # (matplotlib may note a font cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["architecture.json", "architecture.pdf", "architecture.png"]


def test_fig1s_takeaway_names_the_sentence_it_explains():
    # Can fail: `report --text "..."` said "The paper's sentence has 1 word(s) out of our vocabulary"
    # about the user's own sentence.
    from attnverify.figures.presentation import present

    data = {"values": {"lime": [-0.2, 0.1]}, "words": ["not", "bad"], "paper_words": ["not", "zz"],
            "paper_in_vocabulary": [True, False], "paper_text": "not zz", "paper_sentence": False}
    given = present("fig1", data, "caption.")["takeaway"]
    assert given.endswith("The given sentence has 1 word(s) out of our vocabulary (zz). Replaced: “zz” by “bad” "
                          "(LIME +0.1).") and "paper" not in given
    paper = present("fig1", {**data, "paper_sentence": True}, "caption.")["takeaway"]
    assert paper.endswith("The paper's sentence has 1 word(s) out of our vocabulary (zz). Replaced: “zz” by “bad” "
                          "(LIME +0.1).")
    # Can fail: the stand-in's own weight was not given, so the paper's point about its word read as ours.
    assert present("fig1", {**data, "paper_words": ["not", "bad"], "paper_in_vocabulary": [True, True]},
                   "caption.")["takeaway"].endswith("cannot show that sign.")


def test_wp_tradeoffs_needle_split_follows_the_documents_labels(monkeypatch):
    # Can fail: the split of the seed JSD and of J&W's points by needle (label 1) against no needle,
    # on pools written here, averaged by hand; swapping the two groups flips the figure's takeaway.
    from attnverify.figures import wp_tradeoff
    from attnverify.numerics.related import wiegreffe_pinter as wp
    from attnverify.verification.claims import wp as cw

    n = 4
    calibration = {"seed_jsd": np.array([0.1, 0.5, 0.2, 0.9])}
    for eps in cw.EPSILONS:
        calibration |= {f"jw_tvd_{eps}": np.zeros(n), f"jw_jsd_{eps}": np.array([1.0, 2.0, 3.0, 4.0])}
    curve = {"tvd": np.zeros((len(wp.LAMBDAS), n)), "jsd": np.zeros((len(wp.LAMBDAS), n))}
    monkeypatch.setattr(cw, "pool", lambda spec, kind, task, dtype: curve if kind == "curve" else calibration)
    monkeypatch.setattr(cw, "pool_documents", lambda spec, task: (None, np.array([1, 0, 1, 0])))
    monkeypatch.setattr(wp_tradeoff, "_arms", lambda spec: [])
    data = wp_tradeoff.compute(FigureContext(claims_spec=TINY))
    assert data["seed_jsd_needle"] == pytest.approx(0.15) and data["seed_jsd_no_needle"] == pytest.approx(0.7)
    assert data["seed_jsd"] == pytest.approx(0.425)
    for eps in cw.EPSILONS:
        assert data["jw"][str(eps)]["jsd_needle"] == 2.0 and data["jw"][str(eps)]["jsd_no_needle"] == 3.0
