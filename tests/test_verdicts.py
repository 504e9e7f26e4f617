"""Verdicts a researcher can trust: three-way statistics, NaN counted, provenance shown.

Most tests judge fixed per-draw numbers with `judge_claim` (the second half of `run_claim`), so
they need no sweep; two go through a real (tiny) sweep and the CLI.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.verification import claims  # noqa: F401  (fills the registry)
from attnverify.verification.confidence import ALPHA, STATISTICAL_TESTS, MeanTest, decide
from attnverify.verification.empirical import (
    EveryDrawCheck,
    at_least_as_good,
    fraction_above,
    largest_violation,
    mean_exceeds_zero,
    median_ratio,
    z_within,
)
from attnverify.verification.registry import REGISTRY, Claim
from attnverify.verification.sweep import judge_claim, run_claim
from attnverify.verification.table import claims_table
from attnverify.verification.verdicts import label, parse_verdicts

from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.spec import SMALL, ModelSpec

TINY = ["--max-len", "4", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "1"]
TINY_SPEC = ModelSpec(max_len=4, d_embed=4, d_att=2, d_out=2, heads=1)


def _values(mean: float, se: float, n: int) -> np.ndarray:
    """n numbers with exactly this mean and standard error of the mean."""
    z = np.linspace(-1.0, 1.0, n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + z * se * np.sqrt(n)


def _claim(summary=mean_exceeds_zero, **kw) -> Claim:
    fields = dict(id="test.synthetic", group="test", statement="synthetic", source="test", lhs="x", rhs="0",
                  build=lambda spec: None, tolerance={"float64": 0.0, "float32": 0.0}, tolerance_reason="test",
                  measure=None, summary=summary, provenance="measured")
    return Claim(**{**fields, **kw})


def _judge(claim: Claim, values, spec=SMALL):
    return judge_claim(dataclasses.replace(claim, context=None, proof=None), spec, np.asarray(values, float),
                       trials=len(values))


# -- NaN is counted, never dropped --------------------------------------------------------------
def test_990_nan_draws_fail_instead_of_passing_on_10_equal_values():
    values = np.r_[np.full(990, np.nan), np.full(10, 0.5)]
    result = _judge(_claim(), values)
    assert result.verdict == "fail" and result.unexpected and not result.passed
    assert result.nonfinite == 990 and "990 of 1000 draws are NaN/inf" in result.finding
    assert "NaN/inf" in label(result)
    # Declared legitimate, they are counted and left out: the 10 finite draws decide.
    allowed = _judge(_claim(nonfinite_reason="test: undefined draws"), values)
    assert allowed.verdict == "pass" and allowed.nonfinite == 990 and allowed.statistics["draws"] == 10


def test_near_ties_without_any_near_tie_are_inconclusive_not_expected():
    claim = REGISTRY["info.near_ties_at_chance"]
    assert claim.nonfinite_reason  # its NaN (no near-tie pair) is declared
    result = _judge(claim, np.full(32, np.nan))
    assert result.verdict == "inconclusive" and not result.unexpected


def test_a_negative_control_yielding_nan_is_a_fail_not_expected():
    control = Claim(id="test.nan_control", group="test", statement="a control that cannot be computed",
                    source="test", lhs="NaN", rhs="0", tolerance={"float64": 1e-10, "float32": 1e-4},
                    tolerance_reason="test", holds=False, provenance="paper",
                    build=lambda spec: lambda params, tokens: (jnp.full(3, jnp.nan), jnp.ones(3)))
    result = run_claim(control, TINY_SPEC, trials=4, progress=False)
    assert result.verdict == "fail" and result.unexpected and result.nonfinite == 4
    finite_control = dataclasses.replace(control, build=lambda spec: lambda params, tokens: (jnp.zeros(3),
                                                                                            jnp.ones(3)))
    assert run_claim(finite_control, TINY_SPEC, trials=4, progress=False).verdict == "expected_fail"


# -- low power is inconclusive -------------------------------------------------------------------
def test_a_low_power_positive_mean_is_inconclusive_not_refuted():
    values = _values(0.198, 0.076, 8)  # the jw.tau_grad_loo_above_alpha_loo at --trials 8
    result = _judge(_claim(provenance="literature"), values)
    assert result.verdict == "inconclusive" and not result.unexpected and not result.passed
    assert result.estimate == pytest.approx(0.198) and result.bound < 0 < result.estimate
    assert result.draws_needed is not None and result.draws_needed > 8
    # ... and at the draws it names, the same effect and spread settle it.
    more = _values(0.198, 0.076 * np.sqrt(8 / result.draws_needed), result.draws_needed)
    assert _judge(_claim(provenance="literature"), more).verdict == "pass"
    assert _judge(_claim(provenance="literature"), values[:1]).verdict == "inconclusive"  # one draw


def test_only_a_clear_refutation_is_a_fail():
    result = _judge(_claim(provenance="literature"), _values(-0.2, 0.02, 32))
    assert result.verdict == "fail" and "REFUTED" in result.finding


def test_the_bound_is_student_t_at_level_alpha():
    """At n = 8 the lower bound is mean - t_7(1 - ALPHA) SE with t_7(0.99865) = 4.530 (a table value), not
    mean - 3 SE: a normal bound with an estimated SE would hold ~1 % of the time at a zero effect, not 0.135 %."""
    values = _values(1.0, 0.1, 8)
    judgement = MeanTest(threshold=0.0).judge(values)
    assert judgement.numbers["t"] == pytest.approx(4.530, abs=1e-3)
    assert judgement.bound == pytest.approx(1.0 - 0.4530, abs=1e-4) and judgement.numbers["se"] == pytest.approx(0.1)
    assert MeanTest().judge(_values(1.0, 0.1, 1000)).numbers["t"] == pytest.approx(3.0075, abs=1e-3)  # ~ Z = 3


@pytest.mark.parametrize("lower, upper, direction, strict, outcome", [
    (0.1, 0.5, "above", False, "holds"), (0.0, 0.5, "above", False, "holds"), (0.0, 0.5, "above", True, "inconclusive"),
    (-0.1, 0.5, "above", False, "inconclusive"), (-0.5, -0.1, "above", False, "refuted"),
    (-0.5, 0.0, "above", True, "refuted"), (-0.5, 0.0, "above", False, "inconclusive"),
    (-0.5, -0.1, "below", False, "holds"), (0.1, 0.5, "below", False, "refuted"), (-0.1, 0.1, "below", False,
                                                                                    "inconclusive"),
    (float("nan"), float("nan"), "above", False, "inconclusive"),
])
def test_decide(lower, upper, direction, strict, outcome):
    assert decide(lower, upper, 0.0, direction, strict) == outcome


# -- "at least as good as": the burden of proof is on the claim ---------------------------------
@pytest.mark.parametrize("gap", [-0.08, -0.09, -0.10])
def test_scorer_gaps_below_the_margin_do_not_pass(gap):
    values = _values(gap, 0.02, 32)  # 32 draws, margin 0.05: the old rule passed all three
    deep = REGISTRY["info.scorer_deep"]
    result = _judge(deep, values)
    assert result.verdict != "pass" and not result.passed
    assert result.threshold == -0.05 and result.direction == "above" and result.bound < -0.05


def test_scorer_verdicts_at_clear_gaps():
    deep, additive = REGISTRY["info.scorer_deep"], REGISTRY["info.scorer_additive"]
    assert _judge(deep, _values(0.0, 0.01, 32)).verdict == "pass"  # a tie within the margin
    assert _judge(deep, _values(-0.2, 0.01, 32)).verdict == "fail"
    refuted = _judge(additive, _values(-0.2, 0.01, 32))  # expected (measured) to fail: refutes the literature
    assert refuted.verdict == "expected_fail" and refuted.refutes == "literature"
    assert "REFUTES LITERATURE" in label(refuted) and "expected)" not in label(refuted)


def test_a_negative_margin_is_refused():
    with pytest.raises(InputError, match="margin"):
        at_least_as_good(-0.05)


# -- shares and medians ----------------------------------------------------------------------------
def test_a_share_of_draws_needs_enough_draws():
    test = fraction_above(0.5, least=0.9)
    assert test.judge(np.ones(32)).outcome == "inconclusive"  # 32 of 32: lower bound 0.81 < 0.9
    assert test.judge(np.ones(100)).outcome == "holds"
    assert test.judge(np.r_[np.ones(40), np.zeros(60)]).outcome == "refuted"
    assert fraction_above(0.5, least=1.0)(np.r_[np.ones(99), 0.0])["error"] > 0  # every draw: per-draw check


def test_the_median_is_judged_by_order_statistics():
    ratios = np.linspace(0.0, 0.1, 64)
    assert median_ratio.judge(ratios, 0.2).outcome == "holds"
    assert median_ratio.judge(ratios + 0.3, 0.2).outcome == "refuted"
    assert median_ratio.judge(np.linspace(0.1, 0.3, 16), 0.2).outcome == "inconclusive"


# -- reported: statistic, threshold, direction, provenance -------------------------------------
def test_statistical_results_report_statistic_threshold_direction_and_no_error():
    result = _judge(_claim(provenance="literature"), _values(0.3, 0.05, 32))
    record = result.to_json()
    assert record["verdict"] == "pass" and record["provenance"] == "literature" and record["nonfinite"] == 0
    assert (record["statistic"], record["threshold"], record["direction"]) == ("mean", 0.0, "above")
    assert record["bound"] == pytest.approx(0.3 - 0.05 * MeanTest().judge(_values(0.3, 0.05, 32)).numbers["t"])
    assert "error" not in record["statistics"] and np.isnan(record["max_error"])
    for key in ("id", "statement", "dtype", "tolerance", "trials", "max_error", "median_error", "passed", "finding",
                "expected", "unexpected"):
        assert key in record
    table = claims_table([result])
    assert "mean > 0" in table and "literature"[:3] in table and "error" not in table.split("Statistics")[1]


def test_every_draw_checks_report_their_statistic_against_its_threshold_never_a_negative_error():
    # z_within and largest_violation used to report "error = max |z| - limit" ("max -2.56").
    z = _claim(summary=z_within(5.5), tolerance={"float64": 0.0, "float32": 0.0})
    held = _judge(z, [0.5, 2.9, 1.0]).to_json()
    assert (held["verdict"], held["statistic"], held["estimate"], held["threshold"]) == ("pass", "max |z|", 2.9, 5.5)
    assert held["target"] == "max |z| <= 5.5 (every draw)" and held["bound"] is None
    assert np.isnan(held["max_error"]) and "error" not in held["statistics"]
    missed = _judge(z, [0.5, 6.0, 1.0])
    assert missed.verdict == "fail" and "max |z| 6 > 5.5" in missed.finding
    table = claims_table([_judge(z, [0.5, 2.9, 1.0])])
    assert "max |z| <= 5.5 (every draw)" in table and " 2.9 " in table and "max -" not in table
    gap = _claim(summary=largest_violation, tolerance={"float64": 1e-12, "float32": 0.0})
    assert _judge(gap, [-1.0, -0.5]).verdict == "pass" and _judge(gap, [-1.0, 2e-12]).verdict == "fail"
    assert _judge(gap, [-1.0, np.nan]).verdict == "fail"  # NaN counted, never dropped
    with pytest.raises(InputError):
        z_within(0.0)


def test_no_registered_claim_reports_an_error_below_zero():
    # An "error" is a distance: a claim whose per-draw numbers can go negative (a margin, a gap)
    # must report them as a statistic against a threshold (confidence test or EveryDrawCheck).
    statistical = (*STATISTICAL_TESTS, EveryDrawCheck)
    for claim in REGISTRY.values():
        if claim.summary is None or isinstance(claim.summary, statistical):
            continue
        summary = claim.summary(np.array([-3.0, -1.0, 0.5]))
        assert summary["error"] >= 0, (claim.id, summary)


def test_every_claim_has_a_provenance_and_measured_failures_name_their_source():
    assert all(c.provenance in ("paper", "literature", "measured") for c in REGISTRY.values())
    with pytest.raises(TypeError):
        Claim(id="x", group="t", statement="s", source="s", lhs="l", rhs="r", build=None,
              tolerance={"float64": 0.0, "float32": 0.0}, tolerance_reason="t")
    with pytest.raises(ValueError, match="provenance"):
        _claim(provenance="hunch")
    with pytest.raises(ValueError, match="asserted_by"):
        _claim(asserted_by="literature")  # holds=True: nothing to refute
    for claim_id in ("info.scorer_additive", "info.near_ties_at_chance", "saliency.sensitivity_diverges"):
        claim = REGISTRY[claim_id]
        assert claim.provenance == "measured" and claim.asserted_by == "literature" and not claim.holds


def test_only_filter_names_are_validated():
    assert parse_verdicts("fail, inconclusive") == ("fail", "inconclusive")
    with pytest.raises(InputError, match="unknown verdict 'bogus'"):
        parse_verdicts("fail,bogus")


# -- the CLI: exit status and the verdict filter ---------------------------------------------------
def _low_power(spec):
    """Per draw 0.5 + a standardised U(-0.1, 0.1) entry of W_q: on the 8 draws of seed 0 at TINY sizes,
    mean 0.18 and SE 0.26, a positive mean that 8 draws cannot establish (the old Z = 3 rule: FAIL)."""
    return lambda params, tokens: (0.5 + params.W_q[0, 0, 0] / (0.1 / np.sqrt(3)), jnp.zeros((), params.W_q.dtype))


def test_verify_exits_0_with_an_inconclusive_claim_and_filters_the_table(monkeypatch, capsys):
    from attnverify.verification.empirical import left

    claim = _claim(id="test.low_power", build=_low_power, measure=left, provenance="literature")
    identity = _claim(id="test.identity", summary=None, build=lambda spec: lambda p, x: (p.W_q, p.W_q))
    for c in (claim, identity):
        monkeypatch.setitem(REGISTRY, c.id, c)
    assert main(["verify", claim.id, identity.id, "--trials", "8", "--quiet", "--only", "inconclusive", *TINY]) == 0
    out = capsys.readouterr().out
    assert "INCONCLUSIVE" in out and "inconclusive: test.low_power" in out and "1 pass" in out
    rows = [line for line in out.splitlines() if line.startswith(("test.low_power", "test.identity"))]
    assert [r.split()[0] for r in rows] == ["test.low_power"]  # the identity passes: filtered out
    assert "(showing 1 of 2: inconclusive)" in out


@pytest.mark.parametrize("args, text", [
    (["--trials", "0"], "--trials"),
    (["--trials", "2", "--only", "bogus"], "--only: unknown verdict 'bogus'"),
])
def test_bad_verify_input_is_one_line_exit_2(args, text, capsys):
    assert main(["verify", "thm1.gradient", *args, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnverify: error:") and text in err


def test_alpha_is_the_z3_level():
    from scipy import stats

    assert ALPHA == pytest.approx(stats.norm.sf(3.0), rel=1e-14) and ALPHA == pytest.approx(0.00135, rel=1e-2)
