"""Soundness of the prover (issue 12, items 4 and 5; docs/theory.md §10, "Soundness rules
of the prover"): `normal_form` / `prove_equal` never prove a false identity, and the
explicit check of `derive_gradient` tells every size symbol apart.

Every false identity below was "proved" by the earlier prover; the identities inside the
summation range must still be proved, so the prover is sound without being made blind.
"""

import cmath
import itertools
import re

import numpy as np
import pytest
import sympy as sp
from attnverify.theory import derivations, statements
from attnverify.theory import symbols as S
from attnverify.theory.calculus import gradient, normal_form, prove_equal
from attnverify.theory.model import SymbolicModel

from attnverify.spec import PAPER

x, y, W, A, B = (sp.IndexedBase(name) for name in ("x", "y", "W", "A", "B"))
t, s, k, r = S.t, S.s, S.k, S.r
q = sp.Symbol("q", integer=True, nonnegative=True)
tau, m = S.tau, S.m  # declared: tau in [0, T - 1], m in [0, d_e - 1] (symbols.FREE_SIZES)
u = sp.Symbol("u", integer=True, nonnegative=True)  # a free index whose range is not declared
t_1 = sp.Symbol("t_1", integer=True, nonnegative=True)  # the name normal_form gives a bound index
T, d_att, d_e, d_out = S.T, S.d_att, S.d_e, S.d_out

#: Sizes at which a normal form is compared with SymPy's own unrolling (Sum.doit).
SIZES = {S.T: 4, S.d_e: 5, S.d_att: 2, S.d_out: 3, S.K: 2, S.C: 6}


def _unrolled(expr, point):
    return expr.subs(point).subs(SIZES).doit()


def assert_normal_form_agrees_with_unrolling(expr, free_values):
    """normal_form(expr) = expr at SIZES, for every value of the free indices listed."""
    normal = normal_form(expr)
    names = list(free_values)
    for values in itertools.product(*(free_values[name] for name in names)):
        point = dict(zip(names, values, strict=True))
        difference = _unrolled(expr, point) - _unrolled(normal, point)
        assert sp.expand(difference) == 0, (point, normal)


TAUS = range(SIZES[S.T])  # every value tau may take
MS = range(SIZES[S.d_e])  # every value m may take


# -- delta elimination: false identities are not proved -----------------------------------------
def test_delta_below_the_lower_limit_is_not_eliminated():
    # sum_{t=1}^{T-1} delta(t, 0) e[t, m] is 0 (position 0 is not summed), not e[0, m].
    lhs = sp.Sum(sp.KroneckerDelta(t, 0) * S.e[t, m], (t, 1, T - 1))
    assert not prove_equal(lhs, S.e[0, m])
    assert prove_equal(lhs, 0)
    assert_normal_form_agrees_with_unrolling(lhs, {m: MS})


def test_delta_with_an_index_of_another_range_is_not_eliminated():
    # tau ranges over positions [0, T - 1]; the sum over [0, d_att - 1] reaches it only when
    # tau <= d_att - 1, so the sum is not W[tau] (for tau >= d_att it is 0).
    lhs = sp.Sum(sp.KroneckerDelta(k, tau) * W[k], (k, 0, d_att - 1))
    assert not prove_equal(lhs, W[tau])
    assert_normal_form_agrees_with_unrolling(lhs, {tau: TAUS})
    at_far_position = _unrolled(normal_form(lhs), {tau: SIZES[S.d_att] + 1})
    assert at_far_position == 0


def test_delta_at_the_upper_limit_plus_one_is_not_eliminated():
    # T is one past the last position: the sum is 0.
    lhs = sp.Sum(sp.KroneckerDelta(t, T) * x[t], (t, 0, T - 1))
    assert not prove_equal(lhs, x[T])
    assert prove_equal(lhs, 0)
    # tau = T - 1 is one past the last summed position T - 2.
    shorter = sp.Sum(sp.KroneckerDelta(t, tau) * x[t], (t, 0, T - 2))
    assert not prove_equal(shorter, x[tau])
    assert_normal_form_agrees_with_unrolling(shorter, {tau: TAUS})
    # A word position (tau >= 1) is not reached by a sum that starts at 1 when tau may be 0.
    words = sp.Sum(sp.KroneckerDelta(t, tau) * x[t], (t, 1, T - 1))
    assert not prove_equal(words, x[tau])
    assert_normal_form_agrees_with_unrolling(words, {tau: TAUS})


def test_delta_over_an_index_of_unknown_range_is_not_eliminated():
    lhs = sp.Sum(sp.KroneckerDelta(t, u) * x[t], (t, 0, T - 1))
    assert not prove_equal(lhs, x[u])
    assert_normal_form_agrees_with_unrolling(lhs, {u: range(SIZES[S.T] + 2)})


def test_delta_of_a_shifted_index_is_not_eliminated_as_if_unshifted():
    # delta(t + 1, tau) picks t = tau - 1, not t = tau.
    lhs = sp.Sum(sp.KroneckerDelta(t + 1, tau) * x[t], (t, 0, T - 1))
    assert not prove_equal(lhs, x[tau])
    assert_normal_form_agrees_with_unrolling(lhs, {tau: TAUS})


def test_the_range_of_a_reversed_sum_is_not_taken_for_its_index_range():
    # SymPy reads Sum_{s=T+1}^{T-1} f(s) as -f(T) (Karr's convention): s = T there, outside
    # [0, T - 1], so the inner delta must not be eliminated on the strength of "s <= T - 1".
    expr = sp.Sum(sp.Sum(sp.KroneckerDelta(t, s) * x[t], (t, 0, T - 1)), (s, T + 1, T - 1))
    assert_normal_form_agrees_with_unrolling(expr, {})
    assert not prove_equal(expr, -x[T])


# -- delta elimination: true identities are still proved -----------------------------------------
def test_delta_inside_the_range_is_still_eliminated():
    # (These hold on the earlier prover too: they guard against a prover made merely weaker.)
    assert prove_equal(sp.Sum(sp.KroneckerDelta(t, tau) * x[t], (t, 0, T - 1)), x[tau])
    assert prove_equal(sp.Sum(sp.KroneckerDelta(k, m) * W[k], (k, 0, d_e - 1)), W[m])
    assert normal_form(sp.Sum(sp.KroneckerDelta(t, tau) * x[t], (t, 0, T - 1))) == x[tau]
    # The range of an enclosing sum's index is known inside it.
    nested = sp.Sum(sp.Sum(sp.KroneckerDelta(t, s) * x[t] * y[s], (t, 0, T - 1)), (s, 0, T - 1))
    assert prove_equal(nested, sp.Sum(x[r] * y[r], (r, 0, T - 1)))
    # A constant inside the range.
    assert prove_equal(sp.Sum(sp.KroneckerDelta(t, 0) * x[t], (t, 0, T - 1)), x[0])


def test_a_declared_range_lets_the_delta_go():
    lhs = sp.Sum(sp.KroneckerDelta(t, u) * x[t], (t, 0, T - 1))
    assert prove_equal(lhs, x[u], ranges={u: (1, T - 2)})
    assert prove_equal(lhs, x[u], ranges={u: (0, T - 1)})
    assert not prove_equal(lhs, x[u], ranges={u: (0, T)})
    words = sp.Sum(sp.KroneckerDelta(t, tau) * x[t], (t, 1, T - 1))
    assert prove_equal(words, x[tau], ranges={tau: (1, T - 1)})  # a word position


def test_a_symbol_named_like_the_lime_feature_index_gets_no_range_from_its_name():
    """eq19's feature index j is in [0, d - 1] only where eq19 says so: a plugin's own j
    (the same name and assumptions, so the same SymPy symbol) is any nonnegative integer."""
    j, d = sp.Symbol("j", integer=True, nonnegative=True), sp.Symbol("d", integer=True, positive=True)
    hits = sp.Sum(sp.KroneckerDelta(t, j), (t, 0, d - 1))
    assert _unrolled(hits.subs(d, 3), {j: 3}) == 0  # j = d: the sum is 0, not 1
    assert not prove_equal(hits, 1)
    assert prove_equal(hits, 1, ranges={j: (0, d - 1)})


# -- renaming and substitution never capture a free symbol ---------------------------------------
def test_renaming_a_bound_index_does_not_capture_a_free_symbol():
    # t_1 is free here; the bound s must not be renamed to t_1.
    lhs = sp.Sum(x[s] * y[s, t_1], (s, 0, T - 1))
    assert not prove_equal(lhs, sp.Sum(x[s] * y[s, s], (s, 0, T - 1)))
    assert_normal_form_agrees_with_unrolling(lhs, {t_1: range(SIZES[S.T])})
    assert t_1 in normal_form(lhs).free_symbols


def test_delta_substitution_does_not_capture_into_an_inner_sum():
    # Eliminating delta(r, t_1) substitutes t_1 for r under an inner sum whose index
    # normal_form names t_1 too: the inner index must be renamed first.
    inner = sp.Sum(A[r, q], (q, 0, T - 1))
    expr = sp.Sum(sp.Sum(sp.KroneckerDelta(r, t_1) * B[t_1] * inner, (r, 0, T - 1)), (t_1, 0, T - 1))
    assert_normal_form_agrees_with_unrolling(expr, {})
    assert not prove_equal(expr, sp.Sum(B[s] * A[s, s] * T, (s, 0, T - 1)))


def test_an_inner_sum_that_rebinds_an_index_forgets_the_ranges_that_named_the_outer_one():
    # Inside Sum_{s=0}^{0}, the s in t's range [0, s] is the outer, free s, not the inner s = 0:
    # at s = 2 the left side is x[0], the right side x[0] + x[1] + x[2].
    lhs = sp.Sum(sp.KroneckerDelta(k, t) * x[t], (k, 0, 0), (s, 0, 0), (t, 0, s))
    rhs = sp.Sum(x[t], (t, 0, s))
    assert sp.expand(lhs.subs(s, 2).doit() - rhs.subs(s, 2).doit()) != 0
    assert not prove_equal(lhs, rhs)
    # The same through a declared range: u <= s names the s that the sum re-binds (T = 2, u = 2).
    rebinds = sp.Sum(sp.KroneckerDelta(t, u) * x[t], (t, 0, T - 1), (s, 0, T - 1))
    assert (rebinds - T * x[u]).subs({T: 2, u: 2}).doit() != 0
    assert not prove_equal(rebinds, T * x[u], ranges={u: (0, s)})
    assert prove_equal(rebinds, T * x[u], ranges={u: (0, T - 1)})  # still proved where it holds


@pytest.mark.parametrize("lhs, rhs, ranges, point", [
    # a Product re-binds t: the delta's t inside it is not the summed t (T = 2: 0 against 2 x0...x4)
    (sp.Sum(sp.Product(sp.Sum(sp.KroneckerDelta(k, t) * x[k], (k, 0, T - 1)), (t, 0, 2 * T)), (t, 0, T - 1)),
     T * sp.Product(x[t], (t, 0, 2 * T)), None, {T: 2}),
    # substituting k = s into a Product that binds s would capture it (s = 0: x0 x1 against x0 x1 + x0)
    (sp.Sum(sp.KroneckerDelta(k, s) * sp.Product(x[s] + k, (s, 0, 1)), (k, 0, T - 1)),
     sp.Product(x[s] + s, (s, 0, 1)), {s: (0, T - 1)}, {T: 2, s: 0}),
])
def test_a_product_is_opaque_to_the_rules_for_sums(lhs, rhs, ranges, point):
    assert sp.expand((lhs - rhs).subs(point).doit()) != 0
    assert not prove_equal(lhs, rhs, ranges)


def test_divergent_sums_are_not_split_by_linearity():
    n = sp.Symbol("n", integer=True, positive=True)
    telescoping = sp.Sum(1 / n - 1 / (n + 1), (n, 1, sp.oo))  # 1, while the right side is oo - oo
    assert telescoping.doit() == 1 and sp.Sum(1 / n, (n, 1, sp.oo)).is_convergent() is sp.false
    assert not prove_equal(telescoping, sp.Sum(1 / n, (n, 1, sp.oo)) - sp.Sum(1 / (n + 1), (n, 1, sp.oo)))


def test_a_float_is_never_proved_equal_to_anything():
    # SymPy rounds Float arithmetic while it builds an expression, before any prover sees it:
    # x (1 + 1e-20) is built as x * 1.0, and 0.1 * 10 as 1.0 (the double 0.1 is not 1/10).
    # (b + y)(b - y) + 1 and b**2 - y**2 differ by 1, but expanded in Float arithmetic b**2 + 1
    # rounds to b**2. A Float in either side is "not proved", by every prover.
    b = sp.Float(2**53)
    y0 = sp.Symbol("y")
    assert sp.expand((b + y0) * (b - y0) + 1 - (b**2 - y0**2)) == 0  # the rounding
    assert x[0] * (1 + sp.Float(1e-20)) == x[0] * sp.Float(1.0)  # what the prover is given
    cases = [((b + y0) * (b - y0) + 1, b**2 - y0**2), (y0 * (1 + sp.Float(1e-20)), y0),
             (y0 * sp.Float(0.1) * 10, y0), (b * (y0 + 1), b * y0 + b)]  # the last one true, still refused
    for prove in _all_provers():
        for lhs, rhs in cases:
            assert not prove(lhs, rhs), (prove.__name__, lhs, rhs)
    assert prove_equal(sp.Rational(1, 10) * 10 * y0, y0)  # a number written exactly is proved


def test_a_sum_whose_range_breaks_its_index_assumptions_is_refused_by_every_prover():
    # j is nonnegative, so SymPy built Abs(j) as j and delta(j, -1) as 0 inside sums that run
    # from -1: both sides are already wrong when the prover gets them (T = 1: 1 against -1; the
    # delta sum is 1, not 0).
    j = sp.Symbol("j", integer=True, nonnegative=True)
    assert sp.Sum(sp.Abs(j), (j, -1, T - 1)) == sp.Sum(j, (j, -1, T - 1))  # built equal
    delta = sp.Sum(sp.KroneckerDelta(j, -1), (j, -1, 0))
    nested = sp.Sum(x[t] * sp.Sum(sp.Abs(j), (j, t - 2, t)), (t, 0, T - 1))  # t - 2 < 0 at t = 0, 1
    for prove in _all_provers():
        assert not prove(sp.Sum(sp.Abs(j), (j, -1, T - 1)), sp.Sum(j, (j, -1, T - 1))), prove.__name__
        assert not prove(delta, 0), prove.__name__
        assert not prove(nested, nested), prove.__name__
    # The same through the other binders, whose bodies SymPy simplifies too (|j| over j = -1 is 1, not -1;
    # |x| for a positive x integrated over [-1, 0] is 1/2, not -1/2), and through a declared range
    # (max(j, 0) = j is false at j = -3).
    xp = sp.Symbol("xp", positive=True)
    plain = sp.Symbol("xr")
    for prove in _all_provers():
        assert not prove(sp.Product(sp.Abs(j), (j, -1, -1)), sp.Product(j, (j, -1, -1))), prove.__name__
        assert not prove(sp.Integral(sp.Abs(xp), (xp, -1, 0)), sp.Integral(xp, (xp, -1, 0))), prove.__name__
    assert not prove_equal(sp.Max(j, 0), j, {j: (-3, -1)})
    assert prove_equal(sp.Max(j, 0), j, {j: (0, 3)})
    assert prove_equal(sp.Integral(plain**2, (plain, 0, 1)), sp.Integral(plain**2, (plain, 0, 1)))
    # within range, and with a limit that the enclosing sum keeps in range, still proved
    inner = sp.Sum(x[t] * sp.Sum(sp.Abs(j), (j, t - 1, t)), (t, 1, T - 1))
    assert prove_equal(inner, sp.Sum(x[t] * sp.Sum(j, (j, t - 1, t)), (t, 1, T - 1)))


def _all_provers():
    from attnverify.theory.related.sums import prove_equal_interchanged, prove_equal_rational

    return (prove_equal, prove_equal_interchanged, prove_equal_rational)


xr, xi = sp.Symbol("xr"), sp.Symbol("xi", integer=True)  # indices that may be negative


@pytest.mark.parametrize("lhs, rhs", [
    (sp.Sum(sp.Abs(xr), (xr, -3, -1)), sp.Sum(xr, (xr, -3, -1))),  # 6 against -6
    (sp.Sum(sp.Max(xi, 0), (xi, -2, 2)), sp.Sum(xi, (xi, -2, 2))),  # 3 against 0
    (sp.Sum(sp.Piecewise((x[xi], xi >= 0), (0, True)), (xi, -2, 2)), sp.Sum(x[xi], (xi, -2, 2))),
])
def test_a_renamed_index_keeps_its_own_assumptions(lhs, rhs):
    # Renamed integer and nonnegative, |x|, max(x, 0) and the condition x >= 0 evaluated as if
    # x could not be negative.
    assert sp.expand(lhs.doit() - rhs.doit()) != 0
    for prove in _all_provers():
        assert not prove(lhs, rhs), prove.__name__


def test_a_sum_whose_limits_are_not_integers_is_refused():
    # x runs over 1/2, 3/2, 5/2, where delta(x, 1) is 0: the sum is 0, not 1. SymPy's own
    # Sum.doit (and so calculus.unroll) gives 1 here: only the refusal keeps it out.
    plain, a = sp.Symbol("xh"), sp.Symbol("a")
    half = sp.Rational(1, 2)
    wrong = sp.Sum(sp.KroneckerDelta(plain, 1) * plain, (plain, half, 5 * half))
    assert sum((sp.KroneckerDelta(plain, 1) * plain).subs(plain, v) for v in (half, 3 * half, 5 * half)) == 0
    for prove in _all_provers():
        assert not prove(wrong, 1), prove.__name__
    # a lower limit a in [0, 1] may be 1/2 too
    assert not prove_equal(sp.Sum(sp.KroneckerDelta(plain, 1) * plain, (plain, a, a + 2)), 1, {a: (0, 1)})
    assert prove_equal(sp.Sum(sp.KroneckerDelta(plain, 1) * plain, (plain, 0, 2)), 1)  # integer limits: proved


@pytest.mark.parametrize("n", [sp.Symbol("N", infinite=True, extended_positive=True),
                               sp.Symbol("N", extended_positive=True), sp.Symbol("N")])
def test_a_limit_that_may_be_infinite_does_not_let_sums_be_interchanged(n):
    # At N = oo: summed over j first every inner sum is 0; over i first the inner sums are
    # 1, 0, 0, ... The order of a conditionally convergent double sum matters.
    i0, j0 = sp.symbols("i0 j0")
    a = sp.KroneckerDelta(i0, j0) - sp.KroneckerDelta(j0, i0 + 1)
    inner_j = [sum(int(iv == jv) - int(jv == iv + 1) for jv in range(50)) for iv in range(5)]
    inner_i = [sum(int(iv == jv) - int(jv == iv + 1) for iv in range(50)) for jv in range(5)]
    assert inner_j == [0] * 5 and inner_i == [1, 0, 0, 0, 0]
    lhs, rhs = sp.Sum(sp.Sum(a, (j0, 0, n)), (i0, 0, n)), sp.Sum(sp.Sum(a, (i0, 0, n)), (j0, 0, n))
    for prove in _all_provers():
        assert not prove(lhs, rhs), prove.__name__


def test_no_substitution_into_a_binder_the_rules_do_not_know():
    # LaplaceTransform(t, w, s) binds w: substituting floor(w) for t would be captured. The left side
    # is floor(w)/s, the right side 1/(s (e^s - 1)) whatever w (w = 0, s = 1: 0 against 0.58).
    w, s0 = sp.Symbol("w", nonnegative=True), sp.Symbol("s0", positive=True)
    lhs = sp.Sum(sp.KroneckerDelta(t, sp.floor(w)) * sp.LaplaceTransform(t, w, s0), (t, 0, sp.floor(w)))
    rhs = sp.LaplaceTransform(sp.floor(w), w, s0)
    assert sp.LaplaceTransform(t, w, s0).doit() == t / s0
    for prove in _all_provers():
        assert not prove(lhs, rhs), prove.__name__
    # A binder's variable with an assumption no range states: SymPy built |xp| as xp for a positive xp,
    # but the transform integrates over every real xp, and Subs puts xp = -1 (1 against -1).
    xp, kk = sp.Symbol("xp", positive=True), sp.Symbol("kk")
    for prove in _all_provers():
        assert not prove(sp.Subs(sp.Abs(xp), xp, -1), sp.Subs(xp, xp, -1)), prove.__name__
        assert not prove(sp.FourierTransform(sp.exp(-xp**2) * sp.Abs(xp), xp, kk),
                         sp.FourierTransform(sp.exp(-xp**2) * xp, xp, kk)), prove.__name__
    plain = sp.Symbol("xr")
    assert prove_equal(sp.Subs(plain**2, plain, 2) + x[0], x[0] + sp.Subs(plain**2, plain, 2))  # still proved
    i5 = sp.Idx("i5", 5)  # an Idx's free symbol is itself, its argument a plain Symbol: it binds nothing
    assert prove_equal(W[i5] + 1, 1 + W[i5]) and not prove_equal(W[i5] + 1, W[i5])


def test_noncommuting_factors_are_not_reordered():
    # With 2x2 matrices, T = 2, A = [[0, 1], [0, 0]], F(0) = [[1, 0], [0, 0]], F(1) = 0:
    # Sum F(t) A = [[0, 1], [0, 0]], while A Sum F(t) = 0.
    a_nc, f_nc = sp.Symbol("Anc", commutative=False), sp.Function("Fnc", commutative=False)
    m_nc = sp.IndexedBase("Mnc", commutative=False)
    a_np, f0 = np.array([[0, 1], [0, 0]]), np.array([[1, 0], [0, 0]])
    assert (f0 @ a_np != a_np @ f0).any()
    for prove in _all_provers():
        assert not prove(sp.Sum(f_nc(t) * a_nc, (t, 0, T - 1)), a_nc * sp.Sum(f_nc(t), (t, 0, T - 1))), prove.__name__
        assert not prove(sp.Sum(m_nc[t] * a_nc, (t, 0, T - 1)), a_nc * sp.Sum(m_nc[t], (t, 0, T - 1))), prove.__name__


def test_a_sum_that_breaks_its_index_assumptions_is_left_alone():
    # t is nonnegative, but summed from -T: the inner delta's range 0 <= t is not known (T = 2:
    # 0 against e[-1] + e[-2]).
    lhs = sp.Sum(sp.Sum(sp.KroneckerDelta(s, t) * x[s], (s, 0, T - 1)), (t, -T, -1))
    rhs = sp.Sum(x[t], (t, -T, -1))
    from attnverify.theory.calculus import unroll  # Sum.doit refuses t = -1 for a nonnegative t

    assert sp.expand(unroll(lhs.subs(T, 2)) - unroll(rhs.subs(T, 2))) != 0
    assert not prove_equal(lhs, rhs)
    inside = sp.Sum(sp.Sum(sp.KroneckerDelta(s, t) * x[s], (s, 0, T - 1)), (t, 0, T - 1))
    assert prove_equal(inside, sp.Sum(x[t], (t, 0, T - 1)))  # in range, still proved


def test_a_limit_is_opaque_to_delta_substitution():
    # Substituting tau for q inside Limit(q + tau, tau, 0) would capture it (T = 3, tau = 1: 1 against 0).
    lhs = sp.Sum(sp.KroneckerDelta(q, tau) * sp.Limit(q + tau, tau, 0), (q, 0, T - 1))
    rhs = sp.Limit(2 * tau, tau, 0)
    assert (lhs.subs(T, 3).doit().subs(tau, 1) - rhs.doit()) != 0
    assert not prove_equal(lhs, rhs)


def test_a_limit_that_names_its_own_index_gives_no_range():
    # In Sum_{tau=1}^{T-1-tau}, the upper limit names the free tau, not the summed one
    # (T = 3, tau = 0: the two sides differ by x[2]).
    from attnverify.theory.calculus import unroll

    lhs = sp.Sum(sp.Sum(sp.KroneckerDelta(t, tau) * x[t], (t, 0, T - 2)), (tau, 1, T - 1 - tau))
    rhs = sp.Sum(x[tau], (tau, 1, T - 1 - tau))
    assert sp.expand(unroll((lhs - rhs).subs({T: 3, tau: 0}))) != 0
    for prove in _all_provers():
        assert not prove(lhs, rhs), prove.__name__


def test_an_undecided_delta_sum_lets_no_index_escape():
    # An undecided delta sum was a Piecewise whose condition names r; SymPy's piecewise_fold,
    # run when the outer sum is built, pulled it out of the sum over r, and r escaped (as j_1).
    from attnverify.theory.calculus import unroll

    inner = sp.Sum(sp.KroneckerDelta(t, 1) * W[t, 0], (t, s, r), (r, 0, 2))
    lhs = sp.Sum(sp.KroneckerDelta(k, 0) * x[s] * sp.Sum(sp.KroneckerDelta(t, k + 1) * W[t, 0], (t, s, r), (r, 0, 2)),
                 (s, 0, 2), (k, 0, 2))
    normal = normal_form(sp.Sum(x[s] * inner, (s, 0, 2)))
    assert {f for f in normal.free_symbols if isinstance(f, sp.Symbol)} <= {x.label, W.label}, normal
    j_1 = sp.Symbol("j_1", integer=True, nonnegative=True)
    escaped = sp.Sum(sp.Piecewise((3 * W[1, 0] * x[s], (j_1 >= 1) & (s <= 1)),
                                  (-3 * W[1, 0] * x[s], (s > 1) & (j_1 < 1)), (0, True)), (s, 0, 2))
    for value in (0, 1, 2):  # what the escaped form says, for every j_1, is not the sum
        assert sp.expand(unroll(lhs) - unroll(escaped.subs(j_1, value))) != 0
    for prove in _all_provers():
        assert not prove(lhs, escaped), prove.__name__


def test_no_substitution_into_a_sum_that_breaks_its_index_assumptions():
    # s -> 0 inside Sum_{t=-1}^{0} made delta(0, t + 1) evaluate to 0 for a nonnegative t, though
    # t = -1 here: the sum is y[-1], not 0.
    from attnverify.theory.calculus import unroll

    lhs = sp.Sum(sp.KroneckerDelta(s, 0) * sp.Sum(sp.KroneckerDelta(s, t + 1) * x[t], (t, -1, 0)), (s, 0, 1))
    assert unroll(lhs) == x[-1]
    for prove in _all_provers():
        assert not prove(lhs, 0), prove.__name__
        assert not prove(lhs, lhs.subs(x, y)), prove.__name__


def test_an_inner_index_that_reuses_an_outer_name_stays_inner():
    # Sum_{t=0}^{2} Sum_{t=0}^{n} g[t] is 3 Sum_{t=0}^{n} g[t] (the inner t is the one in g), not
    # (n + 1)(g[0] + g[1] + g[2]) (n = 1: they differ by g[0] + g[1] - 2 g[2]).
    from attnverify.theory.calculus import unroll

    n = sp.Symbol("n")
    lhs, rhs = sp.Sum(x[t], (t, 0, n), (t, 0, 2)), sp.Sum(x[t], (t, 0, 2), (s, 0, n))
    assert sp.expand(unroll((lhs - rhs).subs(n, 1))) != 0
    for prove in _all_provers():
        assert not prove(lhs, rhs), prove.__name__


# -- the interchanging and the rational provers (theory/related/sums.py) --------------------------
a_, c_ = sp.Symbol("a", integer=True, nonnegative=True), sp.Symbol("c", integer=True, nonnegative=True)
x0 = sp.Symbol("_x0", integer=True, nonnegative=True)  # the name `canonical_parts` gives a bound index


def test_sums_whose_limits_depend_on_each_other_are_not_interchanged():
    from attnverify.theory.related.sums import prove_equal_interchanged

    C = sp.IndexedBase("C")
    lhs = sp.Sum(B[a_] * sp.Sum(A[c_], (c_, 0, a_)), (a_, 0, T - 1)) * sp.Sum(C[t], (t, 0, T - 1))
    rhs = sp.Sum(C[a_] * sp.Sum(A[c_], (c_, 0, a_)), (a_, 0, T - 1)) * sp.Sum(B[t], (t, 0, T - 1))
    values = {A[0]: 1, A[1]: 1, B[0]: 1, B[1]: 0, C[0]: 0, C[1]: 1}
    assert lhs.subs(T, 2).doit().subs(values) == 1 and rhs.subs(T, 2).doit().subs(values) == 2
    assert not prove_equal_interchanged(lhs, rhs)
    # independent limits still commute
    product = sp.Sum(A[a_], (a_, 0, T - 1)) * sp.Sum(B[c_], (c_, 0, 2 * T))
    assert prove_equal_interchanged(product, sp.Sum(sp.Sum(A[a_] * B[c_], (a_, 0, T - 1)), (c_, 0, 2 * T)))


def test_a_sum_pulled_out_of_a_product_captures_no_free_symbol():
    from attnverify.theory.related.sums import prove_equal_interchanged

    # t_1 is free in exp(B[t_1]), and normal_form names the sum's index t_1 (T = 2, t_1 = 0:
    # 2 against 1 + e with A = (1, 1), B = (0, 1)).
    lhs = sp.Sum(A[k], (k, 0, T - 1)) * sp.exp(B[t_1])
    rhs = sp.Sum(A[k] * sp.exp(B[k]), (k, 0, T - 1))
    values = {A[0]: 1, A[1]: 1, B[0]: 0, B[1]: 1}
    assert sp.simplify((lhs - rhs).subs({T: 2, t_1: 0}).doit().subs(values)) != 0
    assert not prove_equal_interchanged(lhs, rhs)


def test_a_free_symbol_named_like_a_canonical_index_is_not_captured():
    from attnverify.theory.related.sums import prove_equal_interchanged, prove_equal_rational

    # T = 2, _x0 = 0: y[1] against 0, and A[0,0] + A[1,0] against A[0,0] + A[1,1]
    assert (x0 * sp.Sum(y[k], (k, 0, T - 1)) - sp.Sum(k * y[k], (k, 0, T - 1))).subs({T: 2, x0: 0}).doit() != 0
    assert not prove_equal_rational(x0 * sp.Sum(y[k], (k, 0, T - 1)), sp.Sum(k * y[k], (k, 0, T - 1)))
    assert (sp.Sum(A[k, x0], (k, 0, T - 1)) - sp.Sum(A[k, k], (k, 0, T - 1))).subs({T: 2, x0: 0}).doit() != 0
    assert not prove_equal_interchanged(sp.Sum(A[k, x0], (k, 0, T - 1)), sp.Sum(A[k, k], (k, 0, T - 1)))
    # ... nor one bound by a Product (N = 3: 40 against 56)
    N = sp.Symbol("N", integer=True, positive=True)
    lhs = sp.Sum(sp.Product(q + x0, (x0, 1, 2)), (q, 0, N))
    rhs = sp.Sum(sp.Product(2 * q, (x0, 1, 2)), (q, 0, N))
    assert (lhs - rhs).subs(N, 3).doit() != 0
    assert not prove_equal_interchanged(lhs, rhs)


# -- the explicit check tells the sizes apart ----------------------------------------------------
def _theorem1_without_inverse_sqrt_d_att(model):
    """Theorem 1 with the 1/sqrt(d_att) of the softmax-Jacobian term dropped (a wrong statement)."""
    i = S.i
    centred = statements._W_l_v(model, i, tau) - sp.Sum(
        model.alpha(i, S.s) * statements._W_l_v(model, i, S.s), (S.s, 0, T - 1))
    bracket = statements._value_readout_direction(model, i, m) + centred * statements._score_direction(model, i, m)
    return sp.Sum(model.alpha(i, tau) * bracket, (i, 0, S.K - 1)) / S.K


def test_explicit_sizes_tell_every_size_apart():
    sizes = [derivations.EXPLICIT_SIZES[size] for size in (S.T, S.d_e, S.d_att, S.d_out, S.K, S.C)]
    assert len(set(sizes)) == len(sizes) and min(sizes) >= 2


def test_explicit_check_rejects_theorem1_without_inverse_sqrt_d_att():
    model = SymbolicModel(PAPER)
    word = derivations.derive_gradient(PAPER).word
    wrong = _theorem1_without_inverse_sqrt_d_att(model)
    # Dropping the factor is the only change: with it put back, the statement is Theorem 1.
    restored = wrong.replace(  # (W_k^T q)_m, the score direction, regains its factor
        lambda e: isinstance(e, sp.Sum) and e.limits == ((S.a, 0, d_att - 1),)
        and e.function.has(S.W_k[S.i, S.a, m]),
        lambda e: e / sp.sqrt(d_att))
    assert prove_equal(restored, statements.theorem1_gradient(model))
    sizes = derivations.EXPLICIT_SIZES
    points = [{tau: p, m: c} for p in range(1, sizes[S.T]) for c in range(sizes[S.d_e])]
    assert not prove_equal(word, wrong)
    assert derivations._explicit_equal(word, wrong, points) is False
    assert derivations._explicit_equal(word, statements.theorem1_gradient(model), points) is True


def test_a_counterexample_withholds_the_proof_and_only_a_real_difference_counts():
    # `derive_gradient` searches one explicit point for a counterexample before `prove_equal`:
    # a wrong statement is found there; the true one is not (so it still goes to the prover).
    model = SymbolicModel(PAPER)
    word = derivations.derive_gradient(PAPER).word
    quick = derivations.Unrolled(derivations.EXPLICIT_SIZES, digits=derivations.QUICK_DIGITS, positive_scalars=True)
    point = {tau: 1, m: 0}
    assert derivations._differs(quick, word, _theorem1_without_inverse_sqrt_d_att(model), point)
    assert not derivations._differs(quick, word, statements.theorem1_gradient(model), point)
    # A side that is not a real number there shows nothing (no counterexample, no crash).
    x = sp.Symbol("x")
    assert not derivations._differs(derivations.Unrolled(derivations.EXPLICIT_SIZES), sp.sqrt(-x ** 2 - 1), x, {})
    assert derivations._explicit_equal(sp.sqrt(-x ** 2 - 1), x, [{}]) is None


def test_sums_too_long_to_unroll_decide_nothing_and_end_at_once():
    # Can fail: a plugin's sum over 2**25 values ran term by term in mpmath, for minutes, in the
    # counterexample search before each proof (`verify theorem1 --plugin` never ended). Past
    # MAX_UNROLLED_TERMS the evaluator stops: no counterexample is shown, the explicit check is undecided.
    u, b = sp.Symbol("u", integer=True), sp.IndexedBase("b")
    long_sum = sp.Sum(sp.cos(u) * b[u], (u, 0, 2**25 - 1))
    with pytest.raises(derivations.TooLargeToUnroll, match="the sum over u runs over 33,554,432 values"):
        derivations.Unrolled(derivations.EXPLICIT_SIZES)(long_sum)
    assert not derivations._differs(derivations.Unrolled(derivations.EXPLICIT_SIZES), long_sum, 2 * long_sum, {})
    assert derivations._explicit_equal(long_sum, 2 * long_sum, [{}]) is None
    # the budget counts every term: ten sums that fit alone do not fit together
    pieces = sp.Add(*[sp.Sum(b[u] * k, (u, 0, derivations.MAX_UNROLLED_TERMS // 10)) for k in range(1, 11)])
    with pytest.raises(derivations.TooLargeToUnroll):
        derivations.Unrolled(derivations.EXPLICIT_SIZES)(pieces)
    short = sp.Sum(b[u], (u, 0, 9))  # a short sum is still unrolled and compared
    assert derivations._differs(derivations.Unrolled(derivations.EXPLICIT_SIZES), short, 2 * short, {})


def test_the_proofs_of_a_changed_model_are_withheld_without_the_prover(monkeypatch):
    # Every statement of the paper is false for a model whose output is tripled (the statements
    # are typed in its attention and read-outs, which do not change): each is refused by its
    # counterexample, and `prove_equal` is never reached.
    class Tripled(SymbolicModel):
        def output(self):
            return 3 * super().output()

    from attnverify.theory import memo

    calls = []
    monkeypatch.setattr(derivations, "prove_equal", lambda *args: calls.append(args) or True)
    monkeypatch.setattr(derivations, "SymbolicModel", Tripled)
    memo.forget()
    proofs = derivations.derive_gradient.__wrapped__.__wrapped__(PAPER).proofs
    assert calls == [] and all(p.status == "not proved" for p in proofs.values())


# -- a model with a residual path: the gradient at every coordinate m, m >= d_out included -------
class ResidualModel(SymbolicModel):
    """The paper's model with a residual path in the value: v_t,o + e[t, o] (needs d_out <= d_e)."""

    def value(self, i, o, t):
        return super().value(i, o, t) + S.e[t, o]


RESIDUAL_SIZES = {S.T: 3, S.d_e: 4, S.d_att: 2, S.d_out: 2, S.K: 2, S.C: 3}


def _numeric(expr, free, arrays):
    """`expr` at RESIDUAL_SIZES as a Python function of its free indices (sympy.lambdify,
    every sum a loop), reading the tensors from `arrays` (``{name: ndarray}``) when called."""
    def name(label):  # a Python identifier ("gamma^*" -> "array_gamma__")
        return "array_" + re.sub(r"\W", "_", str(label))

    bases = {base: sp.IndexedBase(name(base.label)) for base in expr.atoms(sp.IndexedBase)}
    body = expr.subs(RESIDUAL_SIZES).xreplace(bases)
    labels = [str(base.label) for base in bases]
    # Python's math printer: a Piecewise becomes ``a if c else b`` (numpy's select would
    # read every branch); cmath, for the complex step.
    function = sp.lambdify([*free, *bases.values()], body, modules=[
        {"KroneckerDelta": lambda a, b: 1 if a == b else 0, "exp": cmath.exp, "sqrt": cmath.sqrt},
        "math"])
    return lambda *values: function(*values, *(arrays[label] for label in labels))


def test_residual_path_gradient_is_right_at_every_coordinate():
    # d f / d e[tau, m] by sympy.diff + normal_form, against the complex-step derivative of
    # the forward expression (float64, exact to rounding), at every tau and every m: the
    # residual term W_l[i, c, m] exists only for m < d_out.
    model = ResidualModel(PAPER)
    output = model.output()
    derived = gradient(output)
    rng = np.random.default_rng(0)
    # Only the model's own tensors: other modules register theirs in S.AXES (with other sizes).
    used = {str(base.label) for base in output.atoms(sp.IndexedBase)}
    arrays = {name: rng.normal(0.0, 0.5, [int(sp.sympify(n).subs(RESIDUAL_SIZES)) for n in axes])
              for name, axes in S.AXES.items() if axes and name in used}
    arrays["e"] = arrays["e"].astype(complex)
    forward = _numeric(output, [], arrays)
    derivative = _numeric(derived, [tau, m], arrays)
    h = 1e-30
    for p in range(RESIDUAL_SIZES[S.T]):
        for c in range(RESIDUAL_SIZES[S.d_e]):
            arrays["e"][p, c] += 1j * h
            reference = forward().imag / h
            arrays["e"][p, c] -= 1j * h
            try:
                value = complex(derivative(p, c)).real
            except IndexError as error:  # e.g. W_l[i, c, m] with m >= d_out
                pytest.fail(f"the derivative at tau={p}, m={c} reads outside a tensor: {error}")
            assert value == pytest.approx(reference, rel=1e-10, abs=1e-13), (p, c)


# -- unrolling sums at explicit sizes (the checks that do not rely on normal_form) ------------------
@pytest.mark.parametrize("expr", [
    sp.Sum(x[t] * y[s], (t, 0, 3), (s, 0, t)),  # an inner limit that depends on the outer index
    sp.Sum(x[t], (t, 3, 0)),  # reversed by one: empty
    sp.Sum(x[t], (t, 5, 2)),  # reversed: Karr's convention, -Sum_{3}^{4}
    sp.Sum(sp.Sum(W[t, s] * x[s], (s, 0, 2)) ** 2, (t, 1, 2)),  # a power of a sum inside a sum
    sp.Sum(t**2, (t, 0, q)),  # a symbolic limit: left to Sum.doit
    sp.Sum(sp.Product(x[t] + s, (t, 0, 1)), (t, 0, 2), (s, 0, 1)),  # a Product re-binds t: left to Sum.doit
])
def test_unroll_is_sum_doit(expr):
    from attnverify.theory.calculus import unroll

    assert sp.expand(unroll(expr) - expr.doit()) == 0
    assert sp.expand(unroll(expr) - expr.doit() - x[0]) != 0  # the comparison can fail


def test_a_sums_memoised_free_symbols_are_its_own_and_a_fresh_copy():
    # theory/sum_symbols.py memoises ExprWithLimits.free_symbols; SymPy's callers update the set
    # they get, so a shared set would leak one caller's symbols into every later answer.
    from attnverify.theory import sum_symbols

    inner = sp.Sum(W[t, s] * x[s], (s, 0, t))
    outer = sp.Sum(inner * y[q], (t, 0, T - 1))
    expected = {e: sum_symbols._computed(e) for e in (inner, outer)}  # SymPy's own, not memoised
    assert {W.label, x.label, y.label, q, T} <= expected[outer] and t not in expected[outer] and t in expected[inner]
    first = outer.free_symbols
    first.add(sp.Symbol("leaked"))
    assert outer.free_symbols == expected[outer] and inner.free_symbols == expected[inner]
