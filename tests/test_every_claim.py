"""Every registered claim, swept in float64 and in float32, gives its expected verdict under
that dtype's tolerance.

The built-in claims are read from the registry at import time, so a claim added to
`verification.claims` is covered without changes here (a user's claim, from a plugin or a
notebook, is checked by its own tests). Each claim runs on the spec that ``attnverify verify``
and the report sweep it on (`SMALL`), with the claim's hypotheses applied where `SMALL` does not
meet them (otherwise no verdict is expected and the test would say nothing).

This is the one place where the suite runs every claim through the whole pipeline (build, draw,
measure, judge) in both dtypes: the claims' own tests check their mathematics, mostly by calling
what the claims compare, and sweep only a few of them. It checks plumbing and tolerances, not
statistics, which the claims' own tests and the report check: so 32 draws per claim and dtype (a
sweep of fewer than `sweep.BLOCK` draws computes only those; the d = 16 shell-gain claims cost 8x
less than with 128), and fewer for four statistical units whose draws cost more than their
compilation (`FEWER_TRIALS`). A statistical claim may then be inconclusive, never unexpected.

Cost: a claim's sweep is one XLA compilation per dtype and one block of draws. What a claim builds
before it compiles (a SymPy derivation, a short training run in float64, a study's pool) is the
same for both dtypes and kept in memory within a test (`theory.memo`), so one test sweeps a unit
in both dtypes and builds it once; the members of an evaluation group are swept in the same test,
one after another, so each dtype's shared program is compiled once (`units`). The registry-wide
test is marked ``slow`` (part of the default suite; ``-m "not slow"`` leaves it out).
"""

import dataclasses

import pytest
from attnverify.verification import claims as _claims  # noqa: F401  (fills the registry)
from attnverify.verification import sweep
from attnverify.verification.blocks import group_of
from attnverify.verification.registry import BUILTIN, REGISTRY, Claim
from attnverify.verification.sweep import run_claim

from attnverify.spec import SMALL, ModelSpec

#: Enough for an identity's float32 rounding to show (see the module docstring).
TRIALS = 32
#: Units whose 32 draws cost more arithmetic than their compilation, swept at fewer draws. The shell-gain
#: claims enumerate 2^16 masks per draw at the paper's widths (measured at 32 draws: 14-18 s a dtype, about
#: 4 s at 8); at 12 draws init scale 1's claims still pass in both modes and dtypes (their median ratios lie
#: far below the target; below about 10 draws the median's bound is infinite and every verdict
#: inconclusive). The support claims train and score a pool per draw (6 s at 32, 1.5 s at 8):
#: `support_sufficient.needle` needs about 63 draws to settle and is inconclusive at 32 too, and
#: `support_necessary_needle_vs_bow` passes at 8. All are statistical (inconclusive is never unexpected).
FEWER_TRIALS = {"evaluation:thm2.shell_gain_replace": 12, "evaluation:thm2.shell_gain_delete": 12,
                "identifiability.support_sufficient.needle": 8, "identifiability.support_necessary_needle_vs_bow": 8}
#: An identity swept in float32 rounds in float32: its largest error over the draws is far above
#: this (measured: 1e-7 or more for every built-in identity); below it, part of the sweep ran in
#: float64 (lime.sigma_inverse and lime.additive_recovery did: 4e-15).
FLOAT64_LIKE = 1e-12
#: float64 first: what a claim builds is float64 whatever the sweep's dtype, and is then kept.
DTYPES = ("float64", "float32")


@pytest.fixture
def verdicts_only(monkeypatch):
    """A claim's context and proof (`Claim.context`, `Claim.proof`) are reported beside its
    verdict, never judged, and do not depend on the sweep's dtype (a context trains and evaluates
    in float64, a proof is SymPy): computed here they would only repeat, at up to ten seconds a
    claim, what their own tests check (test_identifiability, test_scorer, test_jw, test_info)."""
    monkeypatch.setattr(sweep, "_context", lambda claim, spec: {})
    monkeypatch.setattr(sweep, "_proof", lambda claim, spec: None)


def claim_spec(claim: Claim) -> ModelSpec:
    """The spec a claim is swept on: SMALL, with the claim's hypotheses applied if SMALL lacks them."""
    return SMALL if SMALL.satisfies(dict(claim.requires)) else SMALL.replace(**claim.requires)


def test_every_claim_states_a_float32_tolerance_no_finer_than_float64():
    # float32 rounding (eps 1.2e-7) is never finer than float64's (eps 2.2e-16), and each claim
    # says why its tolerances are what they are.
    assert REGISTRY, "the registry is empty"
    for claim in REGISTRY.values():
        assert claim.tolerance["float32"] >= claim.tolerance["float64"], claim.id
        assert claim.tolerance_reason.strip(), claim.id


def units() -> dict[str, tuple[str, ...]]:
    """Every claim once: the members of an evaluation group together (`blocks.group_of`: one test
    sweeps them in turn, so the group's program is compiled once and every member reads its
    numbers), every other claim alone. Keys are test ids."""
    out: dict[str, tuple[str, ...]] = {}
    for claim in (c for c in REGISTRY.values() if c.id in BUILTIN):
        members = tuple(c.id for c in group_of(claim))
        out[f"evaluation:{claim.evaluation}" if len(members) > 1 else claim.id] = members
    return out


UNITS = units()


@pytest.mark.slow
@pytest.mark.parametrize("unit", list(UNITS))
def test_claim_gives_its_expected_verdict_in_float64_and_float32(unit, verdicts_only):
    # A wrong formula swept in float64 is an unexpected FAIL (tests/test_sweep.py), in float32 too (below).
    failures = []
    for dtype in DTYPES:
        for claim_id in UNITS[unit]:
            claim, spec = REGISTRY[claim_id], claim_spec(REGISTRY[claim_id])
            result = run_claim(claim, spec, trials=FEWER_TRIALS.get(unit, TRIALS), dtype=dtype, progress=False)
            assert result.dtype == dtype and result.tolerance == claim.tolerance[dtype]
            assert result.expected is not None, f"{claim_id}: no verdict expected under {spec.deviations()}"
            verdict = "PASS" if result.passed else "FAIL"
            # A finding explains every verdict but a plain PASS (an inconclusive or expected FAIL too, and a
            # PASS that left draws out: why).
            plain = result.passed and not result.nonfinite
            assert (result.finding is not None) == (not plain), (claim_id, dtype, result.finding)
            if dtype == "float32" and claim.summary is None and claim.tolerance[dtype] > 0 and result.passed \
                    and result.max_error < FLOAT64_LIKE:
                failures.append(f"{claim_id} in float32: max error {result.max_error:.2g}, below float32's rounding: "
                                "part of the sweep computes in float64 (a float64 default dtype?)")
            if result.unexpected:
                failures.append(f"{claim_id} in {dtype}: {verdict}, expected {'PASS' if result.expected else 'FAIL'} "
                                f"(error {result.max_error:.3g}, {dtype} tolerance {result.tolerance:g}; "
                                f"{result.finding})")
    assert not failures, "\n".join(failures)


def test_every_claim_is_swept_once():
    # Can fail: a built-in claim left out of every unit (or in two) would go unchecked (or be
    # checked twice). Claims a test registers later (plugins, the notebook) are not built-in.
    swept = [cid for ids in UNITS.values() for cid in ids]
    assert sorted(swept) == sorted(BUILTIN) and len(swept) == len(set(swept))


def test_only_statistical_units_are_swept_at_fewer_draws():
    # Can fail: a renamed unit would silently go back to 32 draws, and an identity at 8 draws might not show
    # float32's rounding (FLOAT64_LIKE).
    assert set(FEWER_TRIALS) <= set(UNITS)
    assert all(REGISTRY[claim_id].summary is not None for unit in FEWER_TRIALS for claim_id in UNITS[unit])


def test_float32_sweeps_really_round_in_float32_and_the_float64_tolerance_would_fail_them():
    # Can fail: the Theorem 1 gradient identity swept in float32 has rounding errors far above
    # its float64 tolerance (so the sweep is not silently promoted to float64 under x64), and
    # the same claim judged in float32 with its float64 tolerance is reported as an unexpected FAIL.
    claim = REGISTRY["thm1.gradient"]
    result = run_claim(claim, SMALL, trials=TRIALS, dtype="float32", progress=False)
    assert result.passed and result.max_error > 100 * claim.tolerance["float64"]
    too_tight = dataclasses.replace(claim, tolerance={**claim.tolerance, "float32": claim.tolerance["float64"]})
    wrong = run_claim(too_tight, SMALL, trials=TRIALS, dtype="float32", progress=False)
    assert not wrong.passed and wrong.unexpected


def test_every_claim_that_trains_declares_its_tasks_so_a_spec_they_cannot_be_built_at_is_refused_first():
    # Can fail: a claim that trains without declaring it (`Claim.trains_on`) was refused only when its turn
    # came, after the claims before it had run (minutes); one that declares a task it does not train on is
    # refused at a spec where it would run. Every built-in claim is built at a vocabulary too small for
    # the synthetic tasks: a build that trains is refused before it trains (`synthetic_tasks.check_task`),
    # with the task; any other builds as usual.
    from attnverify.errors import InputError

    tiny_vocabulary = SMALL.replace(vocab_size=8)
    wrong = []
    for claim in (c for c in REGISTRY.values() if c.id in BUILTIN):
        try:
            claim.build(tiny_vocabulary)
            trained = ()
        except InputError as err:
            assert "the synthetic tasks (task " in str(err), (claim.id, str(err))
            trained = (str(err).split("'")[1],)
        if not set(trained) <= set(claim.trains_on) or bool(trained) != bool(claim.trains_on):
            wrong.append(f"{claim.id}: trains on {trained or 'nothing'}, declares {claim.trains_on or 'nothing'}")
    assert not wrong, "\n".join(wrong)
