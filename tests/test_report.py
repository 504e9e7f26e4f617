"""The report: every registered claim appears, figures are embedded, failures are recorded."""

from __future__ import annotations

import base64
import json
import re

import jax
import pytest
from attnverify.figures.catalog import draw_for_report
from attnverify.numerics import modelfile
from attnverify.numerics.draws import draw_params
from attnverify.numerics.training import train as tr
from attnverify.verification import workers
from attnverify.verification.registry import REGISTRY
from attnverify.verification.report import build as report
from attnverify.verification.sweep import ClaimResult

from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.spec import ModelSpec

TINY = ModelSpec(max_len=10, d_embed=8, d_att=4, d_out=4, heads=2, vocab_size=30)


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    vocab = ["[CLS]", "UNK", "attention", "based", "explanations", "are", "popular", "but", "questionable"]
    vocab += [f"w{j}" for j in range(TINY.vocab_size - len(vocab))]
    modelfile.save(path, TINY, draw_params(jax.random.PRNGKey(1), TINY), vocab)
    return path


def _fake_run_claim(claim, spec, *, trials, seed=0, dtype="float64", **_):
    """A stand-in sweep (no compilation): the claim's expected verdict, made-up errors."""
    passed = claim.holds
    error = 1e-16 if passed else 0.5
    return ClaimResult(id=claim.id, statement=claim.statement, dtype=dtype, tolerance=claim.tolerance[dtype],
                       trials=trials, max_error=error, median_error=error, passed=passed,
                       finding=None if passed else f"{claim.id} fails as expected",
                       expected=claim.expected(spec), unexpected=False, seed=seed, errors=[error] * trials)


def test_report_trains_when_no_model_and_lists_every_registered_claim(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "run_claim", _fake_run_claim)
    monkeypatch.setattr(report, "DEFAULT_SPEC", TINY)
    monkeypatch.setattr(report, "DEFAULT_TRAINING", tr.TrainConfig(epochs=1, lr=1e-2))
    options = report.ReportOptions(out_dir=tmp_path / "out", data="synthetic:120", claims_spec=TINY, figures=())
    origins = []

    def figures(names, context, out_dir, log, **_):  # what the figures' legends call the model
        origins.append(context["model_origin"])
        return {}, [], {}

    written, status = report.run_report(options, draw_figures=figures)
    assert status == 0 and origins == ["trained"]
    assert (tmp_path / "out" / "model.npz").is_file()  # cached for the next run
    md, page = written["report.md"].read_text(), written["report.html"].read_text()
    assert REGISTRY, "the registry is empty"
    for cid in REGISTRY:  # generic over the registry: other groups appear without changes here
        assert cid in md and cid in page
    metrics = json.loads(tr.metrics_path(tmp_path / "out" / "model.npz").read_text())
    assert f"test accuracy {metrics['accuracy']['test']:.4f}" in md
    results = json.loads(written["results.json"].read_text())
    assert {r["id"] for r in results["results"]} == set(REGISTRY)
    for key in ("jax", "sympy", "device", "seed", "dtypes"):
        assert key in results["environment"] and key in md

    # the second run loads the cached model instead of training (the report trained it: "trained")
    written, _ = report.run_report(options, draw_figures=figures)
    assert "cached from an earlier run" in written["report.md"].read_text() and origins == ["trained"] * 2


def test_report_end_to_end_with_a_real_claim_and_an_embedded_figure(tmp_path, tiny_model_path):
    options = report.ReportOptions(out_dir=tmp_path, model=tiny_model_path, claims=("thm1.gradient",),
                                   figures=("fig3",), trials=4, claims_spec=TINY)
    written, status = report.run_report(options, draw_figures=draw_for_report)
    assert status == 0
    page = written["report.html"].read_text()
    assert "thm1.gradient" in page and ">PASS<" in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 1 and base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=['\"]https?:", page)  # self-contained
    assert "figures/fig3.png" in written["report.md"].read_text()
    assert (tmp_path / "figures" / "fig3.pdf").stat().st_size > 0


def test_results_json_is_strict_json_with_the_reason_beside_each_non_finite_number(tmp_path, tiny_model_path,
                                                                                    monkeypatch):
    # A max error can be NaN (an every-draw summary of NaN draws), and a draw can overflow (inf): written as NaN and
    # Infinity tokens, strict JSON parsers refused the file (docs/cli.md: null, the reason beside).
    def statistical(claim, spec, **kwargs):
        result = _fake_run_claim(claim, spec, **kwargs)
        result.max_error, result.median_error, result.errors = float("nan"), float("nan"), [float("inf"), 1.0]
        return result

    monkeypatch.setattr(workers, "run_claim", statistical)
    options = report.ReportOptions(out_dir=tmp_path, model=tiny_model_path, claims=("thm1.gradient",), figures=(),
                                   trials=2, claims_spec=TINY)
    written, _ = report.run_report(options, draw_figures=None)

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    payload = json.loads(written["results.json"].read_text(), parse_constant=refuse)
    record = payload["results"][0]
    assert record["max_error"] is None and record["max_error_non_finite"] == "NaN"
    assert payload["options"]["trials"] == 2 and payload["options"]["claims_spec"]["max_len"] == TINY.max_len


def test_a_failing_claim_or_figure_is_recorded_not_fatal(tmp_path, tiny_model_path, monkeypatch):
    def broken(claim, spec, **kwargs):
        if claim.id == "thm1.gxi":
            raise RuntimeError("simulated failure")
        return _fake_run_claim(claim, spec, **kwargs)

    monkeypatch.setattr(workers, "run_claim", broken)

    def figures(names, context, out_dir, log):
        assert context["model_origin"] == "given"  # a model file with no training record beside it
        return {}, ["figure fig1: ValueError: simulated"], {}

    options = report.ReportOptions(out_dir=tmp_path, model=tiny_model_path, claims=("theorem1",),
                                   claims_spec=TINY)
    written, status = report.run_report(options, draw_figures=figures)
    md = written["report.md"].read_text()
    assert status == 1
    assert "claim thm1.gxi (float64): RuntimeError: simulated failure" in md
    assert "figure fig1: ValueError: simulated" in md
    assert "thm1.gradient" in md


def test_an_unexpected_result_gives_exit_status_1(tmp_path, tiny_model_path, monkeypatch):
    def wrong(claim, spec, **kwargs):
        result = _fake_run_claim(claim, spec, **kwargs)
        result.unexpected = claim.id == "thm1.gradient"
        return result

    monkeypatch.setattr(workers, "run_claim", wrong)
    options = report.ReportOptions(out_dir=tmp_path, model=tiny_model_path, claims=("theorem1",),
                                   claims_spec=TINY)
    written, status = report.run_report(options)
    assert status == 1 and "UNEXPECTED" in written["report.html"].read_text()


@pytest.mark.parametrize("change, message", [
    ({"claims": ("no.such.claim",)}, "unknown claim"),
    ({"trials": 0}, "trials"),
    ({"preset": "huge"}, "unknown preset"),
])
def test_bad_options_fail_before_any_work(tmp_path, change, message):
    options = report.ReportOptions(out_dir=tmp_path / "out", **change)
    with pytest.raises(InputError, match=message):
        report.run_report(options)
    assert not (tmp_path / "out").exists()


def test_cli_report_errors_are_one_line(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["report", "--out", str(a_file)]) == 2
    assert main(["report", "--out", str(tmp_path / "r"), "--model", str(tmp_path / "missing.npz")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[")]  # no log
    assert len(lines) == 2 and all(line.startswith("attnverify: error:") for line in lines)
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--out", str(tmp_path / "r"), "--quick", "--full"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().startswith("attnverify report: error: argument --full")


def test_quick_preset_is_float64_only_and_full_adds_float32():
    assert report.DTYPES["quick"] == ("float64",)
    assert set(report.DTYPES["full"]) == {"float64", "float32"}
    assert report.PRESETS["quick"] < report.PRESETS["full"]


def test_report_reads_as_a_document_summary_model_figures_then_grouped_claims(tmp_path, tiny_model_path,
                                                                               monkeypatch):
    """Summary first, then "Model used" against the paper's IMDB setup, then the claims grouped by
    paper with the negative controls in their own last section; results.json carries verdicts."""
    monkeypatch.setattr(workers, "run_claim", _fake_run_claim)
    options = report.ReportOptions(out_dir=tmp_path, model=tiny_model_path, claims=("theorem1",),
                                   figures=("fig3",), trials=2)
    written, _ = report.run_report(options, draw_figures=draw_for_report)
    md = written["report.md"].read_text()
    order = [md.index(h) for h in ("## Summary", "## Model used", "## Figures", "## Claims",
                                   "### Negative controls")]
    assert order == sorted(order)
    assert md.index("Theorem 1: gradients") < md.index("### Negative controls")
    controls = md[md.index("### Negative controls"):md.index("## Model details")]
    assert "thm1.control_no_jacobian" in controls and "thm1.gxi" not in controls
    used = md[md.index("## Model used"):md.index("## Figures")]
    assert "IMDB" in used and "T = 256" in used and "80.19%" in used
    assert "Self-attention of each head" in md and "**Takeaway.**" in md
    results = json.loads(written["results.json"].read_text())
    assert all(r["verdict"] in {"pass", "expected_fail", "fail", "hyp_unmet", "inconclusive"}
               for r in results["results"])
    assert results["summary"][0].startswith("What the paper claims")


def test_summary_puts_the_papers_own_statements_apart_from_what_we_measured_about_them():
    from attnverify.verification.report.sections import summary_lines

    def result(cid, passed, finding=None, expected=True):
        return ClaimResult(id=cid, statement=cid, dtype="float64", tolerance=1e-10, trials=8, max_error=0.0,
                           median_error=0.0, passed=passed, finding=finding, expected=expected)

    results = [result("thm1.gradient", True), result("thm1.gradient_cls_row", False, "wrong at [CLS]", False),
               result("thm2.eq19_vs_exact", False, "an approximation", False),
               result("thm2.shell_gain", False, "the shell form is closer", False),
               result("jw.tau", False, "not on this task", False)]
    # Can fail: a statement the paper asserts and we measured to fail (the expectation is ours:
    # provenance "measured", asserted_by "paper") is a finding on the paper, and counts among
    # its statements; it was reported as merely "measured here, about the paper's results".
    claims = {"thm1.gradient": {"group": "theorem1", "provenance": "paper"},
              "thm1.gradient_cls_row": {"group": "theorem1", "provenance": "measured", "asserted_by": "paper"},
              "thm2.eq19_vs_exact": {"group": "theorem2", "provenance": "paper"},
              "thm2.shell_gain": {"group": "theorem2", "provenance": "measured"},
              "jw.tau": {"group": "jw", "provenance": "literature"}}
    lines = summary_lines(results, claims, [], {})
    text = "\n".join(lines)
    assert "Finding on the paper (thm1.gradient_cls_row): wrong at [CLS]" in text
    assert "Finding on the paper (thm2.shell_gain)" not in text  # measured here, not stated by the paper
    assert "Measured here, about the paper's results (thm2.shell_gain)" in text
    assert "Finding on the paper (thm2.eq19_vs_exact): an approximation" in text
    assert "1 of 3 hold as stated or as derived here; the rest are the findings above." in text
    assert "Related paper (jw.tau): not on this task" in text
    # Can fail: what we measured about the paper's own formula, read as stated, comes before what we
    # measured about our other forms (in the report Eq. (19)'s error came fourth, after the chain's).
    about = [line for line in lines if line.startswith("Measured here")]
    claims["thm2.eq19_vs_exact"] = {"group": "theorem2", "provenance": "measured", "lhs": "Eq. (19), compiled"}
    claims["thm2.shell_gain"]["lhs"] = "relative L2 error of the shell form"
    reordered = [line for line in summary_lines(results[:1] + results[3:4] + results[2:3], claims, [], {})
                 if line.startswith("Measured here")]
    assert about == ["Measured here, about the paper's results (thm2.shell_gain): the shell form is closer"]
    assert [line.split("(")[1].split(")")[0] for line in reordered] == ["thm2.eq19_vs_exact", "thm2.shell_gain"]


def test_a_users_own_claims_are_never_reported_as_the_papers_or_a_related_papers():
    # A user's claim in the paper's group, stated as "paper", that fails (a bug in the user's code,
    # say) was "Finding on the paper"; one in a group of its own was "Related paper".
    from attnverify.verification.report.sections import claim_sections, summary_lines

    def result(cid, passed, finding=None):
        return ClaimResult(id=cid, statement=cid, dtype="float64", tolerance=1e-10, trials=8, max_error=0.5,
                           median_error=0.5, passed=passed, finding=finding, expected=True, unexpected=not passed)

    results = [result("thm1.gradient", True), result("mine.in_theorem1", False, "FAILS where claimed"),
               result("mine.other", False, "FAILS too"), result("mine.fine", True)]
    claims = {"thm1.gradient": {"group": "theorem1", "provenance": "paper"},
              "mine.in_theorem1": {"group": "theorem1", "provenance": "paper", "user": True},
              "mine.other": {"group": "mine", "provenance": "measured", "user": True},
              "mine.fine": {"group": "mine", "provenance": "measured", "user": True}}
    text = "\n".join(summary_lines(results, claims, [], {}))
    assert "Your claim (mine.in_theorem1): FAILS where claimed" in text and "Your own claims: 1 of 3 hold." in text
    assert "Finding on the paper" not in text and "Related paper" not in text
    # Can fail: with every one of the paper's statements holding there are no findings above to
    # point to ("...; the rest are the findings above." was printed whatever the count).
    assert "Of the paper's own statements checked (thm1.gradient), 1 of 1 holds as stated or as derived here." in text
    assert "the rest are the findings above" not in text
    sections = dict(claim_sections(results, claims))
    assert [r.id for r in sections["Your own claims (theorem1)"]] == ["mine.in_theorem1"]
    assert [r.id for r in sections["Your own claims (mine)"]] == ["mine.other", "mine.fine"]
    assert all(not r.id.startswith("mine.") for heading, rs in sections.items() if "Your" not in heading for r in rs)


def test_a_figures_takeaway_taken_from_its_caption_is_not_repeated_beneath_it():
    # Without a takeaway of its own, a figure's takeaway is its caption's first sentence: a caption
    # of one sentence was printed twice, as the takeaway and again in italics.
    from attnverify.figures.presentation import present

    assert present("architecture", None, "One sentence only.")["caption"] == ""
    note = present("architecture", None, "First sentence. Second one.")
    assert (note["takeaway"], note["caption"]) == ("First sentence.", "Second one.")


def test_data_that_a_cached_model_makes_unused_is_warned_of(tmp_path, capsys):
    # Can fail: with OUT/model.npz from an earlier run, `report --data csv:other.csv` explained the
    # cached model and said nothing; the corpus that model was trained on is in its metrics file.
    from attnverify.commands import _note_cached_model

    cached = tmp_path / "model.npz"
    _note_cached_model(cached, "synthetic:500")  # nothing cached: the report trains on --data
    cached.write_bytes(b"a model")
    tr.metrics_path(cached).write_text(json.dumps({"source": "synthetic:200"}))
    _note_cached_model(cached, "synthetic:200")  # the corpus it was trained on: used, no warning
    assert capsys.readouterr().err == ""
    _note_cached_model(cached, "synthetic:500")
    err = capsys.readouterr().err
    assert err.startswith("attnverify: warning: --data synthetic:500: not used") and "trained on synthetic:200" in err


def test_figure_takeaways_follow_their_data():
    # Can fail: fig5's takeaway was one fixed sentence ("agree on every word row") whatever the
    # data, and fig1's called the smallest of all-positive LIME weights "the most negative".
    from attnverify.figures.presentation import present

    def fig5(words, cls, dtype="float64"):
        data = {"max_abs_gradient": 0.5, "max_abs_diff_other_rows": words, "max_abs_diff_cls_row": cls, "dtype": dtype}
        return present("fig5", data, "c.")["takeaway"]

    assert fig5(1e-16, 0.2).startswith("Closed form and autodiff agree on every word row (up to 2.0e-16 of the ")
    assert "they differ in the [CLS] row (by up to 4.0e-01" in fig5(1e-16, 0.2)
    assert fig5(0.38, 0.2).startswith("Closed form and autodiff differ on the word rows too (by up to 7.6e-01")
    assert fig5(1e-16, 1e-16).startswith("Closed form and autodiff agree on every row, the [CLS] row included")
    # 2e-6 of the largest entry: float32's rounding (sqrt(eps) = 3.5e-4), far above float64's (1.5e-8)
    assert fig5(1e-6, 0.2, "float32").startswith("Closed form and autodiff agree on every word row")
    assert fig5(1e-6, 0.2, "float64").startswith("Closed form and autodiff differ on the word rows too")

    def fig1(lime):
        data = {"values": {"lime": lime}, "words": ["good", "but", "bad"]}
        return present("fig1", data, "c.")["takeaway"]

    assert fig1([0.3, -0.1, 0.2]).startswith("LIME gives “but” the most negative weight (-0.1)")
    assert fig1([0.3, 0.1, 0.2]).startswith("Every LIME weight is positive on this sentence (the smallest, +0.1, "
                                            "for “but”)")


def test_the_new_figures_takeaways_carry_their_numbers():
    # Can fail: eq19_nu, eq19_d, eq19_n, thm1_hist, jw_permutation and wp_tradeoff had the caption's first
    # sentence as their takeaway, the same words for the three Eq. 19 figures and no number in any.
    from attnverify.figures.presentation import present

    sweep = {"x": [0.25, 2.0], "x_symbol": "ν", "documents_per_model": 3, "model_labels": {"random": "random"},
             "errors": {"random": {"eq19": [[0.3, 0.5, 0.4], [0.2, 0.6, 0.7]], "improved": [[0.01, 0.02, 0.03],
                                                                                             [0.01, 0.01, 0.01]]}}}
    assert present("eq19_nu", sweep, "c.")["takeaway"] == (
        "Median relative error against LIME's exact limit β^∞ over ν = 0.25–2 (3 documents a model); random models: "
        "Eq. 19 0.4–0.6, the improved form 0.01–0.02.")
    rates = {"n": [100, 400], "rmse": [0.02, 0.01], "slope": -0.5, "eq19_vs_limit": 0.8}
    assert present("eq19_n", rates, "c.")["takeaway"].startswith(
        "LIME's error to its limit β^∞ falls as n^-0.50 (Monte Carlo: n^-0.5), from 0.02 at n = 100 to 0.01 at "
        "n = 400; Eq. 19 is 0.80 (relative L2) from β^∞ whatever n: its error is not sampling noise.")
    hist = {"errors": {"float64": {"thm1.gradient": [1e-16, 3e-16], "thm1.gradient_cls_row": [0.2, 0.9]}},
            "tolerance": {"float64": 1e-10}}
    assert present("thm1_hist", hist, "c.")["takeaway"] == (
        "Theorem 1 holds at the word rows and not at the [CLS] row; float64: the word rows' largest error 3e-16 over "
        "2 models (tolerance 1e-10), the [CLS] row read as a word row up to 0.9.")
    broken = {**hist, "errors": {"float64": {**hist["errors"]["float64"], "thm1.gradient": [1e-16, 0.3]}}}
    assert present("thm1_hist", broken, "c.")["takeaway"].startswith("Theorem 1 against jax.grad: float64: the word")
    panels = {"panels": {"a (x)": {"median_tvd": [0.1, 0.3, 0.2]}, "b": {"median_tvd": [0.0, 0.0]}}, "permutations": 5}
    assert present("jw_permutation", panels, "c.")["takeaway"].endswith(
        "(the median over 5 permutations, then over documents): a: 0.2; b: 0.")
    fig4 = {"features": ["a", "b", "c"], "eq19": [0.5, -0.2, 0.1], "limit": [0.4, 0.3, 0.2],
            "agreement": {"eq19": {"vs_lime": {"pearson": 0.9, "relative_l2": 0.3}}}}
    assert present("fig4", fig4, "c.")["takeaway"].endswith(
        "Eq. 19 r = 0.90, relative L2 = 0.30. Eq. 19 has the sign of β^∞ on 2 of 3 words: a high r does not mean the "
        "signs are right.")
    seeds = {"seeds": 10, "seed_jsd": 0.3, "seed_jsd_needle": 0.001, "seed_jsd_no_needle": 0.6}
    assert present("wp_tradeoff", seeds, "c.")["takeaway"].startswith(
        "The 9 retrained seeds' attention is 0.3 (JSD) from the base on average, 0.001 on documents with the "
        "needle and 0.6 on those without: seeds agree where the output depends on one word.")
    assert present("wp_tradeoff", {**seeds, "seed_jsd_needle": 0.5}, "c.")["takeaway"].endswith("0.6 on those without.")


def test_model_used_names_every_assumption_that_is_not_the_papers():
    # Can fail: a model with tanh values, or with 2 heads of width 8, was described as
    # "Architecture as in the paper".
    from attnverify.verification.report.sections import model_used

    from attnverify.spec import PAPER, SMALL

    assert model_used({"spec": PAPER.to_json()}).endswith(
        "The model has 6 heads and d_e = 128, as the paper's; its assumptions are the paper's (query from [CLS], "
        "scaled scores, no value nonlinearity).")
    changed = SMALL.replace(heads=1, value_nonlinearity="tanh", scale_scores=False, classes=3).to_json()
    assert model_used({"spec": changed}).endswith(
        "The model has 1 head and d_e = 32 (the paper's: 6 heads, d_e = 128); unlike the paper's model, "
        "scale_scores = false (paper: true), value_nonlinearity = tanh (paper: none), classes = 3 (paper: 2).")


def test_the_summary_lists_inconclusive_claims_on_one_line_and_counts_each_verdict():
    # Can fail: each inconclusive claim was a bullet of its own with its bounds (eleven of the report's 29
    # bullets), and "57 of 74 hold" left the reader to guess what the other 17 were.
    from attnverify.verification.report.sections import summary_lines

    def result(cid, verdict, needed=None):
        return ClaimResult(id=cid, statement=cid, dtype="float64", tolerance=1e-10, trials=32, max_error=0.0,
                           median_error=0.0, passed=verdict == "pass", finding=None if verdict == "pass" else "why",
                           expected=True, verdict=verdict, draws_needed=needed)

    claims = {f"jw.{k}": {"group": "jw", "provenance": "literature"} for k in "abcd"}
    results = [result("jw.a", "pass"), result("jw.b", "inconclusive", 60), result("jw.c", "inconclusive"),
               result("jw.d", "expected_fail")]
    lines = summary_lines(results, claims, [], {})
    assert "Related paper (jw.b): why" not in lines and "Related paper (jw.d): why" in lines
    assert "Related papers, inconclusive at 32 draws (neither held nor refuted at the confidence level; each " \
           "claim's table gives its bounds and the draws that would settle it): jw.b (~60 draws), jw.c." in lines
    assert lines[-1] == ("Related papers: 1 of 4 statements hold on our models; 1 failing as the literature or our "
                         "measurement expects (the findings above); 2 inconclusive.")


def test_the_summary_reads_each_claims_worst_run_and_counts_what_held():
    # Can fail: the Summary read only each claim's first (float64) run, so a float32 failure left
    # "1 of 1 holds"; and it counted an unexpected PASS (a statement expected to fail that held)
    # among the statements that do not hold.
    from attnverify.verification.report.sections import summary_lines

    def result(cid, dtype, passed, expected, finding=None):
        return ClaimResult(id=cid, statement=cid, dtype=dtype, tolerance=1e-10, trials=8, max_error=0.0,
                           median_error=0.0, passed=passed, finding=finding, expected=expected)

    claims = {"thm1.gradient": {"group": "theorem1", "provenance": "paper"},
              "jw.a": {"group": "jw", "provenance": "literature"}, "jw.b": {"group": "jw", "provenance": "measured"}}
    results = [result("thm1.gradient", "float64", True, True),
               result("thm1.gradient", "float32", False, True, "FAILS where it is claimed to hold: max error 1"),
               result("jw.a", "float64", True, True),
               result("jw.b", "float64", True, False, "Holds although expected to fail")]
    text = "\n".join(summary_lines(results, claims, [], {}))
    assert "Finding on the paper (thm1.gradient): In float32: FAILS where it is claimed to hold" in text
    assert "0 of 1 holds as stated or as derived here; the rest are the findings above." in text
    assert "Related papers: 2 of 2 statements hold on our models." in text  # jw.b's unexpected PASS holds


def test_figure_takeaways_of_fig3_and_fig4_and_a_captions_first_sentence_follow_the_data():
    # Can fail: fig3's takeaway said "Each head attends differently ... the rest of the mass going
    # to padding" for one head whose row summed to 1; a null relative L2 made fig4's takeaway fall
    # back to a caption cut at "Eq."; fig1 called a zero weight positive.
    import numpy as np
    from attnverify.figures.presentation import present

    one_head = {"cls_row_total": [1.0], "attention": np.full((1, 3, 3), 1 / 3)}
    assert present("fig3", one_head, "c.")["takeaway"] == (
        "One head (on its own colour scale); the [CLS] row shown sums to 1.00: nearly all of the mass is on the "
        "positions shown.")
    alike = {"cls_row_total": [0.6, 0.6], "attention": np.full((2, 3, 3), 0.2)}
    assert present("fig3", alike, "c.")["takeaway"].startswith("The 2 heads attend alike")
    apart = {"cls_row_total": [0.6, 0.9], "attention": np.stack([np.full((3, 3), 0.2), np.full((3, 3), 0.3)])}
    assert present("fig3", apart, "c.")["takeaway"] == (
        "The heads attend differently (each on its own colour scale); the [CLS] row shown sums to 0.60–0.90, the "
        "rest of the mass going to positions not shown (UNK padding, or words past the first ones).")
    fig4 = {"features": ["a", "b"], "agreement": {"eq19": {"vs_lime": {"pearson": None, "relative_l2": None}}}}
    assert present("fig4", fig4, "c.")["takeaway"] == "Against the LIME mean over all 2 words: Eq. 19 r = n/a, " \
                                                      "relative L2 = n/a."
    cut = present("eq19_nu", None, "New figures: how good Eq. 19 is, w.r.t. e_t. Second sentence.")
    assert (cut["takeaway"], cut["caption"]) == ("New figures: how good Eq. 19 is, w.r.t. e_t.", "Second sentence.")
    zero = {"values": {"lime": [0.0, 0.3]}, "words": ["good", "bad"]}
    assert present("fig1", zero, "c.")["takeaway"].startswith("No LIME weight is negative on this sentence")


def test_findings_of_one_sided_and_two_sided_tests_do_not_say_which_side():
    # Can fail: a gap significantly below zero was reported as "equally accurate" (W&P's diagnostic)
    # or "as accurate as learned attention" (uniform baseline), and agreement below chance as
    # near ties that "still order LOO".
    import numpy as np
    from attnverify.verification.sweep import judge_claim

    from attnverify.spec import SMALL

    below = -0.05 + 0.01 * np.random.default_rng(0).standard_normal(32)
    said = {cid: judge_claim(REGISTRY[cid], SMALL, below, trials=32).finding
            for cid in ("wp.diagnostic_self_trained_vs_uniform.needle", "wp.uniform_baseline.needle")}
    assert said["wp.diagnostic_self_trained_vs_uniform.needle"].startswith(
        "self_trained attention is not more accurate than uniform attention on needle (gap -0.0")
    assert said["wp.uniform_baseline.needle"].startswith(
        "learned attention is not 10 accuracy points above uniform attention on needle (mean gap -0.0")
    ties = judge_claim(REGISTRY["info.near_ties_at_chance"], SMALL, 0.25 + below - below.mean(), trials=32).finding
    assert "outside chance (0.5 +- 0.1)" in ties and "one way or the other" in ties


def test_model_used_says_when_the_claims_are_swept_under_other_assumptions():
    # Can fail: with `report --model tanh.npz` and the claims swept without tanh, the Summary's
    # verdicts and fig5's takeaway described two models, and nothing said so.
    from attnverify.verification.report.sections import model_used

    from attnverify.spec import SMALL

    tanh = SMALL.replace(value_nonlinearity="tanh").to_json()
    assert model_used({"spec": tanh, "claims_spec": SMALL.to_json()}).endswith(
        "The claims are swept on random models whose assumptions differ from this model's: value_nonlinearity = "
        "none there (tanh here); the figures explain this model.")
    assert "The claims are swept" not in model_used({"spec": tanh, "claims_spec": tanh})


def test_a_control_that_held_is_not_counted_as_caught_and_a_tie_quotes_float64():
    # Can fail: counting a control's "fail" (it held: the check could not catch it) as caught gave
    # "2 of 2 ... caught"; and on a tie of verdicts the Summary must quote the float64 run.
    from attnverify.verification.report.sections import summary_lines

    def result(cid, dtype, passed, expected, finding=None):
        return ClaimResult(id=cid, statement=cid, dtype=dtype, tolerance=1e-10, trials=8, max_error=0.0,
                           median_error=0.0, passed=passed, finding=finding, expected=expected)

    claims = {cid: {"group": "jw", "provenance": "measured"} for cid in ("jw.control_a", "jw.control_b", "jw.c")}
    results = [result("jw.control_a", "float64", False, False, "caught"),
               result("jw.control_b", "float64", True, False, "Holds although expected to fail"),
               result("jw.c", "float32", False, False, "Fails as expected: in float32"),
               result("jw.c", "float64", False, False, "Fails as expected: in float64")]
    text = "\n".join(summary_lines(results, claims, [], {}))
    assert "Negative controls: 1 of 2 deliberately wrong formulas were caught" in text
    assert "Not caught (held, could not be computed, or undecided): jw.control_b." in text
    assert "in float64" in text and "in float32" not in text


# -- verification.report: the numbers and words the report shows (kill RS*/RR* survivors) ----------
_METRICS = {"source": "synthetic:needle", "sizes": {"train": 800, "validation": 100, "test": 100},
            "accuracy": {"test": 0.85126, "validation": 0.84374, "train": 0.91249},
            "majority_class_accuracy": {"test": 0.5125, "validation": 0.6}, "config": "c", "best_epoch": 3,
            "seconds": 12.4, "dtype": "float64"}


def _model():
    from attnverify.spec import SMALL

    return {"path": "m.npz", "origin": "trained", "spec": SMALL.to_json(), "metrics": _METRICS}


def test_model_used_quotes_the_accuracies_and_their_difference_at_the_stated_precision():
    from attnverify.verification.report.sections import model_used

    text = model_used(_model())
    assert "**test accuracy 0.8513**" in text  # 0.85126 to 4 decimals
    assert "their code reports 80.19% test accuracy" in text  # the paper's 0.8019 (docs/theory.md §7)
    # 100 * (0.85126 - 0.8019) = +4.936: ours is higher, so the difference is positive
    assert f"accuracy differs by {100 * (0.85126 - 0.8019):+.1f} points" in text and "+4.9 points" in text


def test_model_details_lines_quote_each_split_and_the_majority_baseline_on_test():
    from attnverify.verification.report.render import _model_lines

    lines = "\n".join(_model_lines(_model()))
    assert ("**test accuracy 0.8513** (validation 0.8437, train 0.9125; majority class on test: 0.5125)"
            in lines)
    assert "12 s" in lines


def _result(cid, verdict, passed, expected=True, finding=None, dtype="float64"):
    from attnverify.verification.sweep import ClaimResult

    return ClaimResult(id=cid, statement=cid, dtype=dtype, tolerance=1e-10, trials=8, max_error=0.0,
                       median_error=0.0, passed=passed, finding=finding, expected=expected, verdict=verdict)


def test_html_colours_the_verdict_cell_by_its_verdict_and_an_unexpected_pass_as_unexpected():
    import re

    from attnverify.verification.report.render import ReportContent, html_page

    results = [_result("jw.a", "pass", True), _result("jw.b", "fail", True, expected=False, finding="held"),
               _result("jw.c", "expected_fail", False, expected=False, finding="as expected")]
    claims = {cid: {"group": "jw", "provenance": "literature"} for cid in ("jw.a", "jw.b", "jw.c")}
    page = html_page(ReportContent("t", results, claims, {}, {}, {}, {}))
    rows = {}
    for row in re.findall(r"<tr>(<td>.*?)</tr>", page):
        cells = re.findall(r"<td([^>]*)>([^<]*)</td>", row)
        rows[cells[0][1]] = cells
    # columns: claim, statement, dtype, target, measured, verdict, provenance; only the verdict is coloured
    assert rows["jw.a"][5] == (" class='PASS'", "PASS")
    assert rows["jw.b"][5] == (" class='UNEXPECTED'", "PASS (UNEXPECTED)")  # a bug to look at, not a pass
    assert rows["jw.c"][5][0] == " class='FAIL'"
    assert all(attrs == "" for cells in rows.values() for i, (attrs, _) in enumerate(cells) if i != 5)


def test_summary_names_up_to_three_statements_and_counts_errors():
    from attnverify.verification.report.sections import summary_lines

    ids = ["thm1.a", "thm1.b", "thm1.c"]
    claims = {cid: {"group": "theorem1", "provenance": "paper"} for cid in ids}
    results = [_result("thm1.a", "pass", True), _result("thm1.b", "pass", True),
               _result("thm1.c", "expected_fail", False, expected=False, finding="f")]
    text = "\n".join(summary_lines(results, claims, ["e1", "e2"], {}))
    assert "Of the paper's own statements checked (thm1.a, thm1.b, thm1.c), 2 of 3 hold" in text
    assert "2 claim(s) or figure(s) could not run" in text
    four = summary_lines(results + [_result("thm1.d", "pass", True)],
                         {**claims, "thm1.d": {"group": "theorem1", "provenance": "paper"}}, [], {})
    assert any(line.startswith("Of the paper's own statements checked, 3 of 4 hold") for line in four)
