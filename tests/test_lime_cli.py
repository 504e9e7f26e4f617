"""CLI: `derive lime`, `derive eq19`, `explain --lime-*`, `sweep-eq19`, and their bad input."""

import csv
import json

import numpy as np
import pytest
from attnverify.numerics.lime.constants import mg_constants

from attnverify.cli import main
from attnverify.errors import InputError

# The sizes of the other LIME test files (compiled functions are shared within one pytest run).
SMALL_MODEL = ["--max-len", "12", "--d-embed", "8", "--d-att", "4", "--d-out", "5", "--heads", "3",
               "--vocab-size", "40"]
SENTENCE = "attention based explanations are popular but questionable"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, *argv, text):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and text in err[0], err
    assert "Traceback" not in err[0]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lime") / "model.npz"
    assert main(["init-model", "--seed", "1", "--out", str(path), *SMALL_MODEL]) == 0
    return path


def test_derive_lime_values(capsys):
    code, out, _ = run(capsys, "derive", "lime", "--d", "50", "--nu", "0.25", "--json")
    data = json.loads(out)
    assert code == 0
    # docs/theory.md §5: (alpha_0, alpha_1, alpha_2) ~ (0.492, 0.344, 0.258) at d = 50, nu = 0.25.
    assert [round(data[f"alpha_{p}"], 3) for p in range(3)] == [0.492, 0.344, 0.258]
    assert {f"sigma_{k}" for k in range(4)} <= set(data) and all(data["proofs"].values())
    _, text, _ = run(capsys, "derive", "lime")
    assert "sigma_2 -> 6*(d**2 - 2*d + 3)/((d - 1)*(d + 1))" in text


def test_derive_lime_refuses_constants_beyond_float64(capsys):
    # Can fail: at nu = 1e-5 the 30-digit values were finite but printed as alpha = 0 and sigma = -inf.
    code, _, err = run(capsys, "derive", "lime", "--d", "3", "--nu", "1e-5")
    assert code == 2 and err.count("\n") == 1 and "beyond float64's range" in err
    code, out, _ = run(capsys, "derive", "lime", "--d", "3", "--nu", "0.02", "--json")
    # huge, but a float64: 1.13e98 (250-digit evaluation of the derived formula, tests/test_lime_theory.py).
    # Can fail: from alpha_0..alpha_2 as derived, the 30-digit evaluation printed sigma_1 = -5.0e49.
    values = json.loads(out)
    assert code == 0 and 5.6e97 < -values["sigma_1"] < 5.7e97
    # the same numbers as the package computes with (float64, compiled): two evaluations agree
    computed = mg_constants(3, 0.02).sigma
    assert all(abs(float(computed[k]) / values[f"sigma_{k}"] - 1) < 1e-12 for k in range(4))
    code, out, _ = run(capsys, "derive", "lime", "--d", "2", "--nu", "inf", "--json")  # alpha_2 = 0 exactly
    assert code == 0 and json.loads(out)["alpha_2"] == 0 and json.loads(out)["sigma_0"] == 2
    # Can fail: at nu = inf the values were 30-digit sums, and sigma_3 = -6(d - 3)/((d - 1)(d + 1)) (docs/theory.md
    # §5, typed here) printed as 7.48802e-31 at d = 3 where it is 0; exact rationals there give exactly 0 and -1/2
    for d, sigma_3 in ((3, 0.0), (5, -0.5)):
        code, out, _ = run(capsys, "derive", "lime", "--d", str(d), "--nu", "inf", "--json")
        assert code == 0 and json.loads(out)["sigma_3"] == sigma_3 == -6 * (d - 3) / ((d - 1) * (d + 1))


@pytest.mark.parametrize("args", [["gradient", "--d", "3"], ["eq19", "--nu", "0.5"]])
def test_lime_values_flags_are_refused_by_the_other_derivations(capsys, args):
    # Can fail: they were accepted and ignored, so a user believed eq19 was derived at nu = 0.5.
    code, _, err = run(capsys, "derive", *args)
    assert code == 2 and err.count("\n") == 1 and f"applies to `derive lime`, not `derive {args[0]}`" in err


@pytest.mark.parametrize("args, message", [
    (["lime", "--latex"], "--latex applies to `derive gradient`, not `derive lime`"),
    (["eq19", "--explicit-check"], "--explicit-check applies to `derive gradient`, not `derive eq19`"),
    (["lime", "--nu", "0.5"], "--nu needs --d: without it `derive lime` prints the constants for every d and nu"),
    (["lime", "--scorer", "deep", "--biases"], "--biases, --scorer applies to `derive gradient` and `derive eq19`"),
])
def test_flags_a_derivation_would_ignore_are_refused(capsys, args, message):
    # Can fail: each was accepted and the output was byte for byte the same (`derive lime --latex`
    # printed plain text; LIME's constants do not depend on the model).
    code, out, err = run(capsys, "derive", *args)
    assert code == 2 and not out and err.count("\n") == 1 and message in err


def test_explain_refuses_lime_settings_without_lime_samples(capsys, tmp_path):
    # Can fail: `explain --nu 0.5 --seed 3` ran without LIME and printed what it prints without them.
    vocab = tmp_path / "v.txt"
    vocab.write_text("good\nmovie\n")
    assert main(["init-model", "--vocab", str(vocab), "--out", str(tmp_path / "m.npz"), "--sizes", "small",
                 "--vocab-size", "4"]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "explain", "--model", str(tmp_path / "m.npz"), "--text", "good movie",
                         "--nu", "0.5", "--seed", "3")
    assert code == 2 and not out
    assert err.strip() == "attnverify: error: --nu, --seed applies to LIME: add --lime-samples N"


def test_derive_eq19_shows_where_three_halves_comes_from(capsys):
    _, text, _ = run(capsys, "derive", "eq19")
    assert "5. independence" in text and "coefficient of c_j: 3/2" in text
    assert "equal to the statement for every size: yes" in text
    assert "== shell form" in text and "E[z_j | s] = k/d" in text and "c_other = -c_same/(d-1): yes" in text
    data = json.loads(run(capsys, "derive", "eq19", "--json", "--head-aggregation", "sum")[1])
    assert data["proved"] is False and "head_aggregation" in data["unmet"]


def test_explain_with_lime(capsys, model_file):
    args = ["explain", "--model", str(model_file), "--text", SENTENCE + " but", "--json",
            "--lime-samples", "400", "--lime-runs", "2", "--removal", "replace", "--seed", "3"]
    code, out, _ = run(capsys, *args)
    data = json.loads(out)
    assert code == 0 and data["lime_words"] == SENTENCE.split()  # "but" twice: one feature
    d = len(data["lime_words"])
    assert len(data["lime_coef"]) == 2 and all(len(c) == d for c in data["lime_coef"])
    assert len(data["lime_limit"]) == d and data["lime_limit_method"].startswith("exact")
    assert len(data["eq19"]) == d and len(data["eq19_improved"]) == d and len(data["eq19_shell"]) == d
    # the shell form is the closest closed form to the exact limit here (in-place replacement)
    limit, shell, eq19 = (np.asarray(data[k]) for k in ("lime_limit", "eq19_shell", "eq19"))
    assert np.linalg.norm(shell - limit) < np.linalg.norm(eq19 - limit) / 5
    _, text, _ = run(capsys, *[a for a in args if a != "--json"])
    assert "limit: exact" in text and "questionable" in text


def test_explain_with_an_infinite_kernel_width_writes_it_as_null_with_its_reason(capsys, model_file):
    # --nu inf is allowed (the kernel's wide limit); it is a setting, not a result, and strict JSON
    # writes it as null with "+inf" beside (it was once refused as a non-finite result, after the work).
    code, out, _ = run(capsys, "explain", "--model", str(model_file), "--text", SENTENCE, "--json",
                       "--lime-samples", "50", "--nu", "inf")
    settings = json.loads(out)["lime_settings"]
    assert code == 0 and settings["nu"] is None and settings["nu_non_finite"] == "+inf"


def test_explain_lime_bad_input(capsys, model_file):
    base = ["explain", "--model", str(model_file), "--text", SENTENCE]
    one_line_error(capsys, *base, "--lime-samples", "1", text="--lime-samples must be >= 2")
    one_line_error(capsys, *base, "--lime-samples", "100", "--nu", "0", text="nu must be > 0")
    one_line_error(capsys, *base, "--lime-samples", "100", "--removal", "mask", text="invalid choice")
    # d = 1: LIME runs, its limit is reported as undefined (a stated fallback, not a NaN).
    code, out, _ = run(capsys, "explain", "--model", str(model_file), "--text", "popular popular", "--json",
                       "--lime-samples", "50")
    data = json.loads(out)
    assert code == 0 and data["lime_limit"] is None and "d = 1" in data["lime_limit_method"]


def test_sweep_eq19_counts_the_draws_whose_limit_is_lost_and_compares_them_with_nothing(capsys, tmp_path):
    # Can fail: at d = 2 and nu = 0.05 the rows showed "nan / nan" with no reason, and at d = 3 the
    # limit was rounding noise compared as if it were the target.
    tiny = ["--max-len", "6", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "1", "--vocab-size", "12"]
    out_json = tmp_path / "s.json"
    code, text, _ = run(capsys, "sweep-eq19", "--nu", "1e-6", "0.05", "0.25", "--d", "3", "--removal", "replace",
                        "--draws", "2", "--lime-samples", "200", "--quiet", "--json", str(out_json), *tiny)
    assert code == 0
    lines = {line.split()[0]: line for line in text.splitlines()[2:5]}
    assert lines["0.05"].split()[6:8] == ["lost", "n/a"] and lines["0.25"].split()[6] == "exact"
    # Can fail: at nu = 1e-6 LIME's coefficients underflow to ~1e-305, and Eq. (19)'s error relative
    # to them was printed with all 306 of its digits.
    assert lines["1e-06"].split()[6] == "lost" and len(lines["1e-06"]) < 200, lines["1e-06"]
    assert "e+30" in lines["1e-06"].split()[-4] and lines["1e-06"].split()[-1] == "n/a"  # lime vs a lost limit
    assert float(lines["0.25"].split()[-1]) > 0  # one LIME run at n = 200 against beta^inf
    rows = json.loads(out_json.read_text())["rows"]
    assert {r["nu"]: r["limit_lost_draws"] for r in rows} == {1e-6: 2, 0.05: 2, 0.25: 0}
    assert all(r["rel_l2_median"] is None for r in rows if r["nu"] == 0.05 and r["target"] == "exact")


def test_sweep_eq19_writes_json_and_csv(capsys, tmp_path):
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    code, text, _ = run(capsys, "sweep-eq19", "--nu", "0.25", "inf", "--d", "4", "--removal", "replace",
                        "--draws", "2", "--lime-samples", "200", "--quiet", "--json", str(out_json),
                        "--csv", str(out_csv), *SMALL_MODEL)
    assert code == 0 and "shell err" in text and "mean-mask err" in text
    data = json.loads(out_json.read_text())
    # 2 nu x (4 forms x 2 targets + LIME against the limit)
    assert data["manifest"]["draws"] == 2 and len(data["rows"]) == 2 * 9
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["approximation"] for r in rows} == {"eq19", "eq19_mg", "improved", "shell", "lime"}
    assert {r["target"] for r in rows if r["approximation"] == "lime"} == {"exact"}
    one_line_error(capsys, "sweep-eq19", "--d", "1", "--quiet", *SMALL_MODEL, text="d must be >= 2")


def test_sweep_eq19_checks_every_grid_point_before_any_work(capsys, monkeypatch):
    # Can fail: the default --d 5 10 20 never fitted the default spec (T = 16), and `sweep-eq19` with
    # no flags was refused at d = 20 after 55 s of the other points' work.
    from attnverify.verification import lime_sweep

    from attnverify import preflight
    from attnverify.cli import build_parser
    from attnverify.spec import SMALL

    args = build_parser().parse_args(["sweep-eq19"])
    preflight.check_sweep_eq19(args)
    assert args.d == [d for d in (5, 10, 20) if d <= SMALL.max_len - 1] == [5, 10]
    ran = []
    monkeypatch.setattr(lime_sweep, "run_point", lambda point, *a, **k: ran.append(point) or [])
    one_line_error(capsys, "sweep-eq19", "--d", "5", "20", "--quiet", text="--d 20: a document of T = 16 tokens")
    one_line_error(capsys, "sweep-eq19", "--T", "3", "--quiet", text="none of the defaults 5 10 20 fits T = 3")
    with pytest.raises(InputError, match="d = 20 needs T >= d"):  # the API: every point, then the work
        lime_sweep.run_sweep(lime_sweep.grid([0.25], [5, 20], [16], [2], [1.0], ["replace"]), SMALL, progress=False)
    assert ran == []


def test_a_correlation_of_two_coefficients_is_not_shown_as_information():
    # Can fail: at d = 2 every correlation was 1.000 (two points always correlate +-1), Eq. (19)
    # at relative error 2 included.
    from attnverify.verification.lime_sweep import _pair, metrics

    two = metrics(np.array([1.0, 2.0]), np.array([-3.0, 5.0]))
    assert np.isnan(two["corr"]) and two["rel_l2"] > 0
    assert _pair({"rel_l2_median": 1.93, "corr_median": two["corr"]}) == "1.930 / n/a"
    assert metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.5, 4.0]))["corr"] == pytest.approx(0.98198, abs=1e-5)
