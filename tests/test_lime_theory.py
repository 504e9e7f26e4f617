"""Mardaoui-Garreau constants: derived by SymPy from LIME's sampling scheme, then checked."""

import jax
import numpy as np
import pytest
import sympy as sp
from attnverify.numerics.lime.constants import mg_constants
from attnverify.theory import mardaoui_garreau as mg

from attnverify.errors import InputError

d, nu, s = mg.d, mg.nu, mg.s


def test_kernel_is_derived_from_the_cosine_distance():
    # docs/theory.md §4: pi = exp(-(1 - sqrt(1 - s/d))^2 / (2 nu^2)).
    stated = sp.exp(-((1 - sp.sqrt(1 - s / d)) ** 2) / (2 * nu**2))
    point = {d: 9, s: 4, nu: sp.Rational(1, 4)}
    assert abs(sp.N((mg.kernel() - stated).subs(point), 30)) < 1e-25
    wrong = sp.exp(-((1 - sp.sqrt(1 - s / d)) ** 2) / nu**2)  # the sqrt of lime's kernel forgotten
    assert abs(sp.N((mg.kernel() - wrong).subs(point), 30)) > 1e-3


@pytest.mark.parametrize("size", [3, 4, 5])
def test_alpha_counting_matches_enumeration_of_all_subsets(size):
    for p in range(3):
        by_enumeration, by_formula = mg.explicit_alpha(size, p)
        assert sp.expand(by_enumeration - by_formula) == 0


def test_sigma_derived_equals_mardaoui_garreau_statement():
    derived, stated = mg.derive_inverse(), mg.mg_statement()
    assert derived.proved_right and derived.proved_left
    for name in stated:
        assert sp.simplify(derived.sigma[name] - stated[name]) == 0
    # A statement with the diagonal and off-diagonal entries swapped is caught.
    assert sp.simplify(derived.sigma["sigma_2"] - stated["sigma_3"]) != 0


def test_the_stable_form_of_sigma_is_the_derived_inverse_and_a_wrong_one_is_caught(monkeypatch):
    derived = mg.derive_stable_inverse()
    assert all(derived.checks.values()), derived.checks
    # A, B are sums of nonnegative terms (s and s (d - s) times the kernel), and D is the spread / d.
    for name in ("A", "B"):
        terms = [derived.gap_summands[name].subs({d: 7, s: k, nu: sp.Rational(1, 10)}) for k in range(1, 8)]
        assert all(sp.N(t) >= 0 for t in terms), name
    assert sp.simplify(derived.determinant_scale - 1 / d) == 0
    # Can fail: sigma_3 with the sign of its numerator flipped is caught by the symbolic check.
    stated = mg.stable_statement()
    wrong = {**stated, "sigma_3": -stated["sigma_3"]}
    monkeypatch.setattr(mg, "stable_statement", lambda: wrong)
    assert not mg.derive_stable_inverse.__wrapped__().checks["sigma_3 equals the derived one"]


def test_sigma_is_accurate_where_the_textbook_form_cancels_to_nothing():
    # Can fail: evaluated from alpha_0..alpha_2 as derived, the determinant (about 1e-117 at d = 3,
    # nu = 0.02, from terms of 1e-38) came out as rounding noise and sigma_0 as 1.8e35 (true: 1.13e98);
    # jit and eager gave different noise. 250-digit mpmath evaluation of the derived formula is the truth.
    import mpmath

    mpmath.mp.dps = 250
    summands = [sp.lambdify((s, d, nu), mg.alpha_summand(p), modules="mpmath") for p in range(3)]
    sigma = mg.derive_inverse().sigma
    exact = sp.lambdify((*mg.alpha_sym[:3], d), [sigma[f"sigma_{k}"] for k in range(4)], modules="mpmath")
    for size, width in [(3, 0.02), (3, 0.05), (4, 0.03), (5, 0.05), (10, 0.02), (7, 1.0)]:
        alpha = [mpmath.fsum(f(k, size, mpmath.mpf(width)) for k in range(1, size + 1)) for f in summands]
        truth = np.array([float(v) for v in exact(*alpha, size)])
        for computed in (mg_constants(size, width).sigma, jax.jit(lambda w, n=size: mg_constants(n, w).sigma)(width)):
            error = np.max(np.abs(np.asarray(computed) - truth)) / np.max(np.abs(truth))
            assert error < 1e-12, (size, width, error)


def test_the_mean_mask_is_accurate_where_the_kernel_weights_underflow():
    # Can fail: computed as alpha_1 / alpha_0, every weight underflows at nu = 0.001 (alpha_0 = 0 in
    # float64) and the mean mask was 0/0 = NaN, which made the improved form NaN. 50-digit mpmath of
    # the ratio alpha_1 / alpha_0 as derived is the truth; as nu -> 0 it tends to (d - 1)/d (s = 1).
    import mpmath
    from attnverify.numerics.lime.constants import mean_mask

    summands = [sp.lambdify((s, d, nu), mg.alpha_summand(p), modules="mpmath") for p in range(2)]
    for size, width in [(3, 0.001), (9, 0.001), (9, 0.01), (3, 0.05), (9, 0.25), (20, 1.0)]:
        with mpmath.workdps(50):
            alpha = [mpmath.fsum(f(k, size, mpmath.mpf(width)) for k in range(1, size + 1)) for f in summands]
            truth = float(alpha[1] / alpha[0])
        for computed in (mean_mask(size, width), jax.jit(lambda w, n=size: mean_mask(n, w))(width)):
            assert abs(float(computed) - truth) <= 1e-14 * truth, (size, width, float(computed), truth)
    assert abs(float(mean_mask(9, 0.001)) - 8 / 9) < 1e-15 and float(mean_mask(9, float("inf"))) == pytest.approx(4 / 9)
    with np.errstate(invalid="ignore"):
        old = mg_constants(9, 0.001).alpha
        assert np.isnan(float(old[1] / old[0]))  # the ratio of the sums themselves: 0/0


def test_the_log_kernel_is_the_log_of_the_kernel():
    # `constants.mean_mask` weighs by exp(log pi - max log pi); a log kernel off by a factor is caught.
    point = {d: 9, s: 4, nu: sp.Rational(1, 4)}
    assert abs(sp.N((sp.exp(mg.log_kernel()) - mg.kernel()).subs(point), 30)) < 1e-25
    assert abs(sp.N((sp.exp(2 * mg.log_kernel()) - mg.kernel()).subs(point), 30)) > 1e-3


@pytest.mark.parametrize("size", [3, 4, 6])
def test_block_inverse_at_explicit_sizes(size):
    assert mg.explicit_inverse_check(size)
    # Direct symbolic inversion of the explicit matrix agrees (independent of the block algebra).
    if size <= 4:
        sigma = mg.second_moment_matrix().explicit(size)
        assert sp.simplify(sigma.inv() - mg.derive_inverse().inverse.explicit(size)) == sp.zeros(size + 1, size + 1)


def test_block_algebra_rules_match_explicit_matrices():
    a = mg.Exchangeable(*sp.symbols("x1 r1 c1 p1 q1"))
    b = mg.Exchangeable(*sp.symbols("x2 r2 c2 p2 q2"))
    for size in (2, 3):
        assert sp.expand((a @ b).explicit(size) - a.explicit(size) * b.explicit(size)) == sp.zeros(size + 1, size + 1)


def test_wide_kernel_limits_match_theory():
    derived, stated = mg.wide_kernel_limits(), mg.mg_limit_statement()
    for name in stated:
        assert sp.simplify(derived[name] - stated[name]) == 0, name
    assert sp.simplify(derived["sigma_2"] - 6) != 0  # the large-d value is not the finite-d one
    large = mg.large_d_limits()
    assert (large["sigma_2"], large["d*sigma_1"], large["d*sigma_3"]) == (6, -6, -6)
    assert (large["alpha_1"], large["alpha_2"]) == (sp.Rational(1, 2), sp.Rational(1, 3))


@pytest.mark.parametrize("size,expected", [(10, (0.452, 0.304, 0.212)), (50, (0.492, 0.344, 0.258)),
                                           (100, (0.497, 0.349, 0.264))])
def test_compiled_alphas_match_theory_numbers(size, expected):
    # docs/theory.md §5 values, given to 3 decimals (tolerance: half a unit in the last place).
    alpha = np.asarray(mg_constants(size, 0.25).alpha[:3])
    np.testing.assert_allclose(alpha, expected, rtol=0, atol=5e-4 + 1e-12)


def test_compiled_sigmas_match_theory_numbers_and_limits():
    # docs/theory.md §5 values for d = 100, to the digits given there.
    got = np.asarray(mg_constants(100, 0.25).sigma)
    assert np.all(np.abs(got - (26.27, -0.346, 11.72, -0.113)) <= np.array((5e-3, 5e-4, 5e-3, 5e-4)))
    wide = np.asarray(mg_constants(100, float("inf")).sigma)
    size = 100
    limits = (2 * (2 * size - 1) / (size + 1), -6 / (size + 1),
              6 * (size**2 - 2 * size + 3) / ((size - 1) * (size + 1)), -6 * (size - 3) / ((size - 1) * (size + 1)))
    np.testing.assert_allclose(wide, limits, rtol=1e-12)


def test_compiled_sigma_inverts_the_explicit_matrix():
    c = mg_constants(7, 0.3)
    a0, a1, a2 = (float(x) for x in c.alpha[:3])
    sigma = np.block([[np.array([[a0]]), a1 * np.ones((1, 7))],
                      [a1 * np.ones((7, 1)), (a1 - a2) * np.eye(7) + a2 * np.ones((7, 7))]])
    s0, s1, s2, s3 = (float(x) for x in c.sigma)
    inverse = np.block([[np.array([[s0]]), s1 * np.ones((1, 7))],
                        [s1 * np.ones((7, 1)), (s2 - s3) * np.eye(7) + s3 * np.ones((7, 7))]])
    np.testing.assert_allclose(sigma @ inverse, np.eye(8), atol=1e-12)


def test_constants_reject_degenerate_sizes():
    with pytest.raises(InputError, match="d = 1"):
        mg_constants(1, 0.25)
    with pytest.raises(InputError, match="no words"):
        mg_constants(0, 0.25)
    assert jax.numpy.isfinite(mg_constants(2, 0.25).sigma).all()
    # d = 2, nu = 0.05: almost all kernel weight is on masks removing one word (z_1 + z_2 = 1, collinear
    # with the intercept): Sigma is nearly singular and its inverse huge, 1/(w_1 w_2) ~ 1.4e87, but finite.
    # At nu = 0.02 the weight of removing both words, exp(-1250), underflows: Sigma is singular in float64.
    sigma = mg_constants(2, 0.05).sigma
    assert jax.numpy.isfinite(sigma).all() and 1e86 < float(sigma[0]) < 1e88
    assert not jax.numpy.isfinite(mg_constants(2, 0.02).sigma).all()
