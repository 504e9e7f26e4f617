"""LIME's limit shell by shell: the derivation behind the shell form (docs/theory.md §5-6).

LIME's kernel pi depends on a mask only through s, the number of removed features, and given
s the mask is a uniform subset of k = d - s kept features. So, exactly,

    Gamma = E[pi (1, z) f(z)] = sum_s P(s) pi(s) E[(1, z) f(z) | s],   beta^inf = Sigma^{-1} Gamma.

The shell form makes one approximation: within each shell, f is replaced by its first-order
expansion at the shell's mean mask q 1 (q = k/d),

    f(z) ~ f_s + sum_l g_sl (z_l - q),   f_s = f(q 1),  g_s = grad f(q 1),

so the conditional moments needed are the first two of the uniform k-subset, which SymPy
derives here from counting subsets (`theory.mardaoui_garreau.kept_probability`):

    E[f | s] ~ f_s,   E[z_j f | s] ~ q f_s + c_same g_sj + c_other (G_s - g_sj),  G_s = sum_l g_sl.

Strata: m chosen features (the words that dominate attention) can be held exactly. A shell
then splits into the 2^m states of those features (probability `stratum`, by counting), the
other d - m features form a uniform subset, and the expansion is over them only, with the same
moments at (d - m, k - a). m = 0 is the plain shell form.

Unlike a single expansion at the overall mean mask (`theory.eq19.derive_improved`), the
expansion point follows the number of removed words, which is what moves the kept words'
positions under deletion. The same moments give the within-shell variance of any linear
statistic sum_l c_l z_l (used to smooth the positions of the deletion model).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp
from attnverify.theory import mardaoui_garreau as lime

#: Strata of a shell: m features held exactly, a of them kept (the rest: a uniform subset).
m_exact, a_kept = sp.symbols("m a", integer=True, nonnegative=True)
#: Per-shell symbols: f_s, g_sj, G_s = sum_l g_sl, and the sums of a linear statistic.
f_s, g_j, G = sp.symbols("f_s g_j G", real=True)
sum_c, sum_c2 = sp.symbols("C Q", real=True)  # C = sum_l c_l, Q = sum_l c_l^2


@dataclass(frozen=True)
class ShellDerivation:
    mean: sp.Expr  # E[z_j | s]
    pair: sp.Expr  # E[z_j z_l | s], j != l
    c_same: sp.Expr  # E[z_j (z_j - q) | s]
    c_other: sp.Expr  # E[z_j (z_l - q) | s], j != l
    gamma_0: sp.Expr  # E[f | s] under the first-order expansion
    gamma_j: sp.Expr  # E[z_j f | s] under the first-order expansion
    variance: sp.Expr  # Var(sum_l c_l z_l | s)
    weight: sp.Expr  # P(s) pi(s): the shell's share of Gamma (= alpha_0's summand)
    stratum: sp.Expr  # P(the m exact features are in one given state with a kept | s)
    checks: dict[str, bool]


def kept_fraction() -> sp.Expr:
    """q = k/d = (d - s)/d, the shell's mean mask entry."""
    return (lime.d - lime.s) / lime.d


@functools.lru_cache(maxsize=1)
def derive_shell() -> ShellDerivation:
    """The conditional moments and the shell form's Gamma terms, derived from the law of z."""
    d, q = lime.d, kept_fraction()
    mean = sp.factor(lime.kept_probability(1))  # P(z_j = 1 | s)
    pair = sp.factor(lime.kept_probability(2))  # P(z_j = z_l = 1 | s)
    c_same = sp.factor(mean - q * mean)  # E[z_j^2] = E[z_j] for a binary z_j
    c_other = sp.factor(pair - q * mean)
    # E[(z_l - q) | s] = E[z_l | s] - q: zero exactly when q is the shell's mean.
    centred = sp.simplify(mean - q)
    gamma_0 = f_s + centred * G
    gamma_j = sp.collect(sp.expand(mean * f_s + c_same * g_j + c_other * (G - g_j)), [f_s, g_j, G], sp.factor)
    variance = sp.factor(c_same * sum_c2 + c_other * (sum_c**2 - sum_c2))
    # Strata: given s (k = d - s kept), one state of m chosen features with a of them kept
    # leaves a uniform (k - a)-subset of the other d - m: count those subsets.
    k = d - lime.s
    stratum = sp.binomial(d - m_exact, k - a_kept) / sp.binomial(d, k)
    states_sum = [sum(sp.binomial(m, a) * stratum.subs({d: 7, m_exact: m, a_kept: a, lime.s: s_})
                      for a in range(m + 1)) for m in range(3) for s_ in range(1, 8)]
    checks = {
        "strata of a shell sum to 1 (d = 7, m <= 2)": all(sp.simplify(x - 1) == 0 for x in states_sum),
        "mean is k/d": centred == 0,
        "pair is k(k-1)/(d(d-1))": sp.simplify(pair - q * (q * d - 1) / (d - 1)) == 0,
        "c_other = -c_same/(d-1)": sp.simplify(c_other + c_same / (d - 1)) == 0,
    }
    return ShellDerivation(mean, pair, c_same, c_other, sp.simplify(gamma_0), gamma_j, variance,
                           lime.alpha_summand(0), stratum, checks)
