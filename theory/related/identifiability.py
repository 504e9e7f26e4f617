"""Brunner et al. / Naim & Asher: the fiber of output-equivalent attention (docs/theory.md §8.3-8.4).

The output depends on a head's attention alpha only through alpha^T S (S: T x C
read-outs). The fiber F = {alpha in simplex : S^T alpha = S^T alpha_hat} has directions
{delta : [S 1]^T delta = 0}; since alpha_hat > 0, small moves stay in the simplex, so
the statement is dim F = T - rank[S 1]. The derived dimension is the length of SymPy's
`nullspace()` of [S 1]^T, for symbolic (generic) or exact rational S.

What rank[S 1] a draw of the model has is derived from the model's own read-out expression
(`SymbolicModel.readout`, so a switch or a plugin that changes it is followed): evaluated at
random rational points, it gives the generic rank (`generic_readout_rank`). A T x C matrix of free
entries has min(T, C + 1); the model's S = V W_l^T has at most d_out + 1 (docs/theory.md §8.3).

Also derived: the minimum-norm point of the affine fiber, from the Lagrange conditions
solved by `sympy.solve`, equals the orthogonal projection of alpha_hat onto col[S 1].
"""

from __future__ import annotations

import functools
import random
from fractions import Fraction

import mpmath
import sympy as sp
from attnverify.theory import symbols as symbols_
from attnverify.theory.model import SymbolicModel

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

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


# -- the rank a draw of the model has ------------------------------------------------------------------
#: Significant digits of the evaluation at a random point (`model_readouts`): a rank deficiency the
#: model's structure forces leaves singular values at its rounding, about 10^-DIGITS of the largest,
#: far below `RANK_RTOL`. A rank the structure allows can only be missed, never invented: at an unlucky
#: point (an entry of 0, a saturated tanh: with entries up to 99 it rounded to exactly 1 at 60 digits)
#: rows coincide. Entries are therefore of order 1 and never 0, and the rank is the largest at `POINTS`
#: independent points.
DIGITS = 60
RANK_RTOL = "1e-30"
POINTS = 2


class _RandomPoint:
    """Entries of one tensor at a random rational point, drawn on first read: +-k / 10^6, k in 1..10^6 (two
    positions whose embeddings coincide would have equal rows: with k / 100, 3 points in 200 did at d_e = 1)."""

    def __init__(self, rng: random.Random):
        self.rng, self.entries = rng, {}

    def __getitem__(self, index):
        if index not in self.entries:
            self.entries[index] = self.rng.choice((-1, 1)) * mpmath.mpf(self.rng.randint(1, 10**6)) / 10**6
        return self.entries[index]


def model_readouts(spec: ModelSpec, heads: int, rows: int, seed: int = 0) -> list[mpmath.matrix]:
    """Each of the first `heads` heads' read-outs s_t^(i) (rows x C), from the model's SymPy expression
    (`SymbolicModel.readout`) at `rows` positions of a random rational point (`_RandomPoint`): every entry of
    the embedded document e[t, k] and of every parameter drawn at random, a plugin's constants at their values, and the
    expression evaluated at `DIGITS` significant digits (`sympy.lambdify` to mpmath)."""
    model = SymbolicModel(spec)
    sizes = {symbols_.T: spec.max_len, symbols_.d_e: spec.d_embed, symbols_.d_att: spec.d_att,
             symbols_.d_out: spec.d_out, symbols_.K: spec.heads, symbols_.C: spec.classes}
    expression = model.readout(symbols_.i, symbols_.t, symbols_.c).subs(sizes)
    expression = expression.subs({c.symbol: sp.Rational(Fraction(c.value)) for c in model.declared_constants.values()})
    tensors = sorted(expression.atoms(sp.IndexedBase), key=str)
    evaluate = sp.lambdify([symbols_.i, symbols_.t, symbols_.c, *tensors], expression, modules="mpmath")
    rng = random.Random(seed)
    with mpmath.workdps(DIGITS):
        point = [_RandomPoint(rng) for _ in tensors]
        return [mpmath.matrix([[evaluate(i, t, c, *point) for c in range(spec.classes)] for t in range(rows)])
                for i in range(heads)]


def numerical_rank(M: mpmath.matrix) -> int:
    """Singular values above `RANK_RTOL` times the largest, at `DIGITS` digits."""
    with mpmath.workdps(DIGITS):
        sigma = mpmath.svd_r(M, compute_uv=False)
        return sum(1 for x in sigma if x > mpmath.mpf(RANK_RTOL) * max(sigma))


def _positions(spec: ModelSpec) -> int:
    """Positions enough for a generic rank: the [S 1] rows of a head span their whole image (of dimension
    at most C + 1) at min(T, C + 1) generic positions, so more rows add no rank (docs/theory.md §8.3)."""
    return min(spec.max_len, spec.classes + 1)


def _largest_rank(matrix_at) -> int:
    """The largest `numerical_rank` of `matrix_at(seed)` over `POINTS` random points (rounding can only
    hide rank, never invent it)."""
    with mpmath.workdps(DIGITS):
        return max(numerical_rank(matrix_at(seed)) for seed in range(POINTS))


@functools.lru_cache(maxsize=16)
def generic_readout_rank(spec: ModelSpec) -> int:
    """rank[S 1] of head 0 at generic positions of the model of `spec`: min(T, C + 1) for free read-outs,
    less where the model's structure bounds it (S = V W_l^T: at most d_out + 1)."""
    def augmented(seed):
        (S,) = model_readouts(spec, 1, _positions(spec), seed)
        return mpmath.matrix([[*row, 1] for row in S.tolist()])

    return _largest_rank(augmented)


@functools.lru_cache(maxsize=16)
def generic_joint_rank(spec: ModelSpec) -> int:
    """Rank of the joint system of every head (`joint_constraint_matrix`: 1^T delta^(i) = 0 per head and
    sum_i S^(i)T delta^(i) = 0) at generic positions shared by the heads, as on a draw: the system's
    columns of head i span that head's image at min(T, C + 1) positions, as for one head."""
    heads, rows = spec.heads, _positions(spec)

    def system(seed):
        matrix = mpmath.zeros(heads + spec.classes, heads * rows)
        for i, S in enumerate(model_readouts(spec, heads, rows, seed)):
            for t in range(rows):
                matrix[i, i * rows + t] = 1
                for c in range(spec.classes):
                    matrix[heads + c, i * rows + t] = S[t, c]
        return matrix

    return _largest_rank(system)


@functools.lru_cache(maxsize=4)
def prove_minimum_norm(T: int, C: int = 1) -> bool:
    """Derived (Lagrange) = stated (projection), for symbolic S and alpha_hat."""
    check_positions(T)
    S = sp.Matrix(T, C, lambda t, c: sp.Symbol(f"s_{t}_{c}"))
    alpha_hat = sp.Matrix(sp.symbols(f"a0:{T}"))
    difference = minimum_norm_derived(S, alpha_hat) - minimum_norm_statement(S, alpha_hat)
    return all(sp.simplify(entry) == 0 for entry in difference)
