"""Brunner et al. / Naim & Asher: the fiber of output-equivalent attention (docs/theory.md §8.3-8.4).

The output depends on a head's attention alpha only through alpha^T S (S: T x C
read-outs). The fiber F = {alpha in simplex : S^T alpha = S^T alpha_hat} has directions
{delta : [S 1]^T delta = 0}; since alpha_hat > 0, small moves stay in the simplex, so
the statement is dim F = T - rank[S 1]. The derived dimension is the length of SymPy's
`nullspace()` of [S 1]^T, for symbolic (generic) or exact rational S.

Also derived: the minimum-norm point of the affine fiber, from the Lagrange conditions
solved by `sympy.solve`, equals the orthogonal projection of alpha_hat onto col[S 1].
"""

from __future__ import annotations

import functools
import random
from fractions import Fraction

import sympy as sp

from attnverify.errors import InputError

MIN_POSITIONS = 3  # below T = 3 a one-class fiber is a point: nothing to identify


def check_positions(T: int) -> None:
    if T < MIN_POSITIONS:
        raise InputError(f"identifiability: the fiber needs T >= {MIN_POSITIONS} positions, got T={T}")


def constraint_matrix(S: sp.Matrix) -> sp.Matrix:
    """[S 1]^T, (C + 1) x T: the linear conditions a fiber direction must satisfy."""
    return S.row_join(sp.ones(S.rows, 1)).T


def fiber_dimension_statement(T: int, rank: int) -> int:
    """docs/theory.md §8.3: dim F = T - rank[S 1]."""
    return T - rank


def fiber_directions(S: sp.Matrix) -> list[sp.Matrix]:
    """A basis of {delta : S^T delta = 0, 1^T delta = 0} (SymPy `nullspace`)."""
    return constraint_matrix(S).nullspace()


def rational_matrix(values) -> sp.Matrix:
    """An exact rational copy of a float array (each float64 is a dyadic rational)."""
    return sp.Matrix([[sp.Rational(Fraction(float(x))) for x in row] for row in values])


def random_rational_matrix(rows: int, cols: int, seed: int = 0) -> sp.Matrix:
    """A random matrix of small rationals: generic with probability one, exact arithmetic."""
    rng = random.Random(seed)
    return sp.Matrix(rows, cols, lambda *_: sp.Rational(rng.randint(-99, 99), rng.randint(1, 99)))


@functools.lru_cache(maxsize=16)
def generic_fiber(T: int, C: int, *, symbolic: bool = False) -> dict[str, int]:
    """Derived vs stated dimension for a generic T x C read-out matrix: symbolic entries
    (exact for every generic S, slow beyond T = 8 or C = 2) or a random rational instance."""
    check_positions(T)
    if symbolic:
        S = sp.Matrix(T, C, lambda t, c: sp.Symbol(f"s_{t}_{c}"))
        rank = constraint_matrix(S).rank(simplify=True)
    else:
        S = random_rational_matrix(T, C)
        rank = constraint_matrix(S).rank()
    return {"derived": len(fiber_directions(S)), "stated": fiber_dimension_statement(T, rank),
            "rank": rank}


def joint_constraint_matrix(S_heads: list[sp.Matrix]) -> sp.Matrix:
    """K heads moved jointly, preserving only the averaged logits: 1^T delta^(i) = 0 for
    each i and sum_i S^(i)T delta^(i) = 0, as a (K + C) x KT matrix."""
    K, T = len(S_heads), S_heads[0].rows
    ones = sp.zeros(K, K * T)
    for i in range(K):
        ones[i, i * T:(i + 1) * T] = sp.ones(1, T)
    outputs = sp.Matrix.hstack(*[S.T for S in S_heads])
    return ones.col_join(outputs)


def minimum_norm_statement(S: sp.Matrix, alpha_hat: sp.Matrix) -> sp.Matrix:
    """docs/theory.md §8.3: the minimum-norm point of the affine fiber is P_{col[S 1]} alpha_hat."""
    B = S.row_join(sp.ones(S.rows, 1))
    return B * (B.T * B).inv() * B.T * alpha_hat


def minimum_norm_derived(S: sp.Matrix, alpha_hat: sp.Matrix) -> sp.Matrix:
    """argmin |alpha|^2 s.t. [S 1]^T alpha = [S 1]^T alpha_hat, from the Lagrange conditions."""
    A = constraint_matrix(S)
    T = S.rows
    x = sp.Matrix(sp.symbols(f"x0:{T}"))
    lam = sp.Matrix(sp.symbols(f"lam0:{A.rows}"))
    lagrangian = (x.T * x)[0] / 2 - (lam.T * (A * x - A * alpha_hat))[0]
    equations = [sp.diff(lagrangian, v) for v in list(x) + list(lam)]
    solution = sp.solve(equations, list(x) + list(lam), dict=True)
    if len(solution) != 1:
        raise ValueError("the Lagrange system has no unique solution (rank-deficient [S 1])")
    return x.subs(solution[0])


@functools.lru_cache(maxsize=4)
def prove_minimum_norm(T: int, C: int = 1) -> bool:
    """Derived (Lagrange) = stated (projection), for symbolic S and alpha_hat."""
    check_positions(T)
    S = sp.Matrix(T, C, lambda t, c: sp.Symbol(f"s_{t}_{c}"))
    alpha_hat = sp.Matrix(sp.symbols(f"a0:{T}"))
    difference = minimum_norm_derived(S, alpha_hat) - minimum_norm_statement(S, alpha_hat)
    return all(sp.simplify(entry) == 0 for entry in difference)
