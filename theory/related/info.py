"""Wen et al. (2022), the information-theoretic view: the Gumbel-max law (docs/theory.md §8.5).

Derived: P(argmax_t (gamma_t + g_t) = t) for i.i.d. Gumbel(0, 1) noise g, as the integral
of the winner's density times the others' distribution functions, changed to the
variable y = exp(-x) and integrated by SymPy. Statement: softmax(gamma)_t, typed once.
Also derived: the Gumbel-softmax sample softmax((gamma + g)/tau) tends to the one-hot of
the argmax as tau -> 0+, so its expectation tends to softmax(gamma).
"""

from __future__ import annotations

import functools

import sympy as sp
from attnverify.theory import memo

X = sp.Symbol("x", real=True)
Y = sp.Symbol("y", positive=True)
TAU = sp.Symbol("tau", positive=True)


def gumbel_pdf(z: sp.Expr) -> sp.Expr:
    return sp.exp(-z - sp.exp(-z))


def gumbel_cdf(z: sp.Expr) -> sp.Expr:
    return sp.exp(-sp.exp(-z))


def scores(T: int) -> list[sp.Symbol]:
    return list(sp.symbols(f"gamma0:{T}", real=True))


def gumbel_max_derived(gamma: list[sp.Symbol], t: int) -> sp.Expr:
    """P(position t wins): int f(x - gamma_t) prod_{u != t} F(x - gamma_u) dx over the reals."""
    integrand = gumbel_pdf(X - gamma[t])
    for u, g in enumerate(gamma):
        if u != t:
            integrand *= gumbel_cdf(X - g)
    integral = sp.Integral(integrand, (X, -sp.oo, sp.oo)).transform(sp.exp(-X), Y)
    return sp.simplify(integral.doit())


def gumbel_max_statement(gamma: list[sp.Symbol], t: int) -> sp.Expr:
    """Gumbel-max: the winner's law is softmax(gamma)."""
    return sp.exp(gamma[t]) / sum(sp.exp(g) for g in gamma)


@functools.lru_cache(maxsize=8)
@memo.on_disk  # seconds of SymPy: a later run reads it back
def prove_gumbel_max(T: int) -> bool:
    """Derived = statement for every position, T explicit (T >= 2)."""
    if T < 2:
        raise ValueError("Gumbel-max needs T >= 2")
    gamma = scores(T)
    return all(sp.simplify(gumbel_max_derived(gamma, t) - gumbel_max_statement(gamma, t)) == 0
               for t in range(T))


def zero_temperature_limit(gap: sp.Expr) -> sp.Expr:
    """lim_{tau -> 0+} softmax((x_0, x_1)/tau)_0 for perturbed scores with x_0 - x_1 = `gap`,
    derived from the softmax itself (x_1 stays a symbol; SymPy cancels it, then takes the limit)."""
    x1 = sp.Symbol("x_1", real=True)
    scores = (x1 + gap, x1)
    weight = sp.exp(scores[0] / TAU) / sum(sp.exp(x / TAU) for x in scores)
    return sp.limit(sp.simplify(weight), TAU, 0, "+")


@functools.lru_cache(maxsize=2)
def prove_zero_temperature_limit() -> bool:
    """For two perturbed scores x_0 > x_1 (gap d > 0), softmax((x_0, x_1)/tau)_0 -> 1 as tau -> 0+:
    the winner's weight tends to one, the sample to the argmax's one-hot."""
    return zero_temperature_limit(sp.Symbol("d", positive=True)) == 1
