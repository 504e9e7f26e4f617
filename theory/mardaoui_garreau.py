"""Mardaoui & Garreau's constants for LIME on text, derived with SymPy from the sampling scheme.

Nothing here is typed in from the paper except `mg_statement` (the formulas as Mardaoui &
Garreau state them, docs/theory.md §5), which is the thing being checked. The derivation:

1. **Kernel.** A sample removes s of the d features; its binary vector z has d - s ones.
   The cosine similarity to the all-ones vector, ``<z, 1> / (|z| |1|)``, and `lime`'s kernel
   ``sqrt(exp(-D^2 / w^2))`` with ``D = 100 (1 - cos)`` and ``w = 100 nu`` simplify to
   ``psi(s/d) = exp(-(1 - sqrt(1 - s/d))^2 / (2 nu^2))``.
2. **Law of z.** s ~ Uniform{1..d}, then a uniform s-subset is removed: a given set of p
   features is kept with probability ``binomial(d - p, s) / binomial(d, s)`` (counting),
   so ``alpha_p = E[pi z_j1 ... z_jp] = 1/d sum_s psi(s/d) binomial(d-p, s)/binomial(d, s)``.
3. **Sigma and its inverse.** Exchangeability makes Sigma = E[pi (1,z)(1,z)^T] a block
   matrix ``[[x, r 1^T], [c 1, p I + q J]]`` (J = 1 1^T). Such matrices multiply by the
   rules ``1^T 1 = d``, ``J 1 = d 1``, ``J J = d J`` (`Exchangeable.__matmul__`), so
   ``Sigma X = I`` for an unknown X of the same shape is 5 linear equations, solved by
   `sympy.solve`: that gives sigma_0..sigma_3 *and* proves the block structure of the
   inverse for every d (the inverse is unique, and one of that shape exists).
4. **Limits** ``nu -> oo`` and ``d -> oo`` with `sympy.limit`.

Sizes stay symbolic; `explicit_*` functions repeat each step at explicit small d by
enumerating every subset, a check that does not rely on the counting argument.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import sympy as sp
from attnverify.theory import memo

#: Number of features (distinct words) and the normalised kernel width (w = 100 nu).
d = sp.Symbol("d", integer=True, positive=True)
nu = sp.Symbol("nu", positive=True)
#: Number of removed features in one sample (1..d).
s = sp.Symbol("s", integer=True, positive=True)
#: The constants as free symbols (alpha_p).
alpha_sym = sp.symbols("alpha_0:5", real=True)


# -- 1. kernel -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def kernel() -> sp.Expr:
    """pi as a function of s (removed), d and nu, derived from lime's cosine kernel."""
    kept = sp.Symbol("k", positive=True)  # d - s >= 1 (s = d: see the note below)
    cosine = kept / (sp.sqrt(kept) * sp.sqrt(d))  # <z, 1> = k, |z| = sqrt(k), |1| = sqrt(d)
    distance = 100 * (1 - cosine)
    width = 100 * nu
    weight = sp.sqrt(sp.exp(-(distance**2) / width**2))
    # s = d gives z = 0: sklearn's cosine distance is then 1 (a zero vector is left
    # unnormalised), the value of the expression below at s = d by continuity.
    return sp.simplify(sp.powsimp(weight.subs(kept, d - s)))


@functools.lru_cache(maxsize=1)
def log_kernel() -> sp.Expr:
    """log pi(s): the exponent of `kernel`, from which ratios of kernel-weighted sums are evaluated
    without underflow (the weights divided by the largest one). Checked: exp of it is `kernel`."""
    exponent = sp.simplify(sp.expand_log(sp.log(kernel()), force=True))
    if sp.simplify(sp.exp(exponent) - kernel()) != 0:
        raise AssertionError(f"log kernel {exponent} is not the log of {kernel()}")
    return exponent


def psi(t: sp.Expr) -> sp.Expr:
    """psi(t) with t = s/d the removed fraction (docs/theory.md §4)."""
    return kernel().subs(s, t * d)


# -- 2. law of z and the alpha_p -----------------------------------------------------------------
def kept_probability(p: int) -> sp.Expr:
    """P(p given features all kept | s removed): s-subsets avoiding them over all s-subsets."""
    return sp.factor(sp.combsimp(sp.binomial(d - p, s) / sp.binomial(d, s)))


def alpha_summand(p: int) -> sp.Expr:
    """The term of alpha_p for s removed features: P(s) * pi(s) * P(kept | s), P(s) = 1/d."""
    return kernel() * kept_probability(p) / d


def alpha(p: int) -> sp.Expr:
    """alpha_p = E[pi z_j1 ... z_jp] for p distinct features, as a finite sum over s."""
    return sp.Sum(alpha_summand(p), (s, 1, d))


# -- 3. Sigma and its inverse --------------------------------------------------------------------
@dataclass(frozen=True)
class Exchangeable:
    """The (d+1) x (d+1) matrix ``[[x, r 1^T], [c 1, p I + q J]]`` with J = 1 1^T."""

    x: sp.Expr
    r: sp.Expr
    c: sp.Expr
    p: sp.Expr
    q: sp.Expr

    def __matmul__(self, other: Exchangeable) -> Exchangeable:
        # The only facts used: 1^T 1 = d, 1^T J = d 1^T, J 1 = d 1, J J = d J.
        a, b = self, other
        return Exchangeable(
            x=sp.expand(a.x * b.x + d * a.r * b.c),
            r=sp.expand(a.x * b.r + a.r * (b.p + d * b.q)),
            c=sp.expand(a.c * b.x + (a.p + d * a.q) * b.c),
            p=sp.expand(a.p * b.p),
            q=sp.expand(a.p * b.q + a.q * b.p + d * a.q * b.q + a.c * b.r),
        )

    def explicit(self, size: int) -> sp.Matrix:
        """The matrix at an explicit d = size."""
        top = [self.x] + [self.r] * size
        rows = [top] + [
            [self.c] + [self.p * int(j == k) + self.q for k in range(size)] for j in range(size)
        ]
        return sp.Matrix(rows).subs(d, size)

    def entries(self) -> tuple[sp.Expr, ...]:
        return (self.x, self.r, self.c, self.p, self.q)


IDENTITY = Exchangeable(sp.Integer(1), sp.Integer(0), sp.Integer(0), sp.Integer(1), sp.Integer(0))


def second_moment_matrix() -> Exchangeable:
    """Sigma = E[pi (1,z)(1,z)^T] in terms of alpha_0..alpha_2.

    Entry (0,0) is E[pi] = alpha_0; (0,j) and (j,0) are E[pi z_j] = alpha_1; (j,j) is
    E[pi z_j^2] = alpha_1 because z_j is binary; (j,k), j != k, is alpha_2.
    """
    a0, a1, a2 = alpha_sym[:3]
    return Exchangeable(a0, a1, a1, a1 - a2, a2)


@dataclass(frozen=True)
class InverseDerivation:
    sigma: dict[str, sp.Expr]  # sigma_0..sigma_3 in terms of alpha_0..alpha_2 and d
    inverse: Exchangeable
    proved_right: bool  # Sigma @ inverse == I in the block algebra (every d)
    proved_left: bool  # inverse @ Sigma == I


@functools.lru_cache(maxsize=1)
def derive_inverse() -> InverseDerivation:
    """Solve Sigma X = I for X = [[sigma_0, sigma_1 1^T], [sigma_1' 1, (sigma_2 - sigma_3) I
    + sigma_3 J]] and check both products."""
    x, r, c, diag, off = sp.symbols("x r c diag off")
    unknown = Exchangeable(x, r, c, diag, off)
    product = second_moment_matrix() @ unknown
    equations = [got - want for got, want in zip(product.entries(), IDENTITY.entries(), strict=True)]
    (solution,) = sp.solve(equations, [x, r, c, diag, off], dict=True)
    inverse = Exchangeable(*(sp.factor(solution[v]) for v in (x, r, c, diag, off)))
    sigma = {
        "sigma_0": inverse.x,
        "sigma_1": inverse.r,
        "sigma_2": sp.factor(inverse.p + inverse.q),  # the diagonal entry of the word block
        "sigma_3": inverse.q,  # the off-diagonal entry
    }

    def is_identity(m: Exchangeable) -> bool:
        return all(sp.simplify(a - b) == 0 for a, b in zip(m.entries(), IDENTITY.entries(), strict=True))

    return InverseDerivation(
        sigma=sigma,
        inverse=inverse,
        proved_right=is_identity(second_moment_matrix() @ inverse),
        proved_left=is_identity(inverse @ second_moment_matrix()),
    )


# -- 3b. the inverse in a form float arithmetic can evaluate -------------------------------------
#: The positive sums the stable form reads besides alpha_0..alpha_2 (docs/theory.md §5, "Evaluating
#: the sigmas"): A = alpha_0 - alpha_1, B = alpha_1 - alpha_2 and D, Sigma's determinant factor
#: (the denominator of sigma_0 and sigma_1).
gap_sym = sp.symbols("A B D", real=True)
#: Power sums S_k = sum_s alpha_summand(0) * s^k: each alpha_p is a combination of S_0..S_2.
power_sym = sp.symbols("S_0:3", real=True)


def stable_statement() -> dict[str, sp.Expr]:
    """sigma_0..sigma_3 in alpha_1, alpha_2, A, B, D and d, with no difference of nearly equal numbers
    but one (sigma_3's alpha_1 A - D, where the kernel is wide and nothing is large): the form the
    numerics evaluate, typed here and checked against `derive_inverse` by `derive_stable_inverse`.
    Written with alpha_0..alpha_2 alone, the determinant and alpha_1 - alpha_2 cancel to nothing at
    narrow kernels (their terms agree to every digit float64 holds)."""
    a1, a2 = alpha_sym[1:3]
    big_a, big_b, big_d = gap_sym
    return {
        "sigma_0": (a1 + (d - 1) * a2) / big_d,
        "sigma_1": -a1 / big_d,
        "sigma_2": ((d - 2) * big_d + a1 * big_a) / ((d - 1) * big_b * big_d),
        "sigma_3": (a1 * big_a - big_d) / ((d - 1) * big_b * big_d),
    }


@dataclass(frozen=True)
class StableInverse:
    sigma: dict[str, sp.Expr]  # `stable_statement`
    gap_summands: dict[str, sp.Expr]  # A's and B's term for s removed features: alpha summands' differences
    determinant_scale: sp.Expr  # D = determinant_scale * (S_0 S_2 - S_1^2), a function of d alone
    checks: dict[str, bool]


@memo.on_disk  # a second of SymPy in every command that evaluates the constants: read back
def derive_stable_inverse() -> StableInverse:
    """What the stable form reads, derived, and proofs that it is Sigma's inverse.

    * A's and B's terms are the differences of the alpha summands: the kernel term times a factored
      polynomial (``s / d^2`` and ``s (d - s) / (d^2 (d - 1))``), nonnegative, so their sums lose nothing.
    * Each alpha_p is the summand of alpha_0 times a polynomial in s (`sympy.Poly`), so alpha_p is a
      combination of the power sums S_k, and D, expanded in them, is a multiple of
      ``S_0 S_2 - S_1^2 = S_0 sum_s w_s (s - S_1/S_0)^2``: a spread, a sum of nonnegative terms.
    * With A, B and D replaced by their definitions, each `stable_statement` sigma equals the
      derived one (`sympy.simplify` of the difference is 0)."""
    a0, a1, a2 = alpha_sym[:3]
    big_a, big_b, big_d = gap_sym
    derived = derive_inverse().sigma
    determinant = sp.factor(-a1 / derived["sigma_1"])
    # the kernel kept whole (factored, it splits into exponentials that overflow one by one)
    gaps = {name: alpha_summand(0) * sp.factor(sp.cancel((alpha_summand(p) - alpha_summand(p + 1)) / alpha_summand(0)))
            for p, name in enumerate("AB")}
    in_powers = {}
    for p in range(3):
        ratio = sp.Poly(sp.cancel(alpha_summand(p) / alpha_summand(0)), s)
        in_powers[alpha_sym[p]] = sum(coef * power_sym[k] for (k,), coef in ratio.terms())
    s0, s1, s2 = power_sym
    scale = sp.simplify(sp.expand(determinant.subs(in_powers)) / (s0 * s2 - s1**2))
    definitions = {big_a: a0 - a1, big_b: a1 - a2, big_d: determinant}
    checks = {
        "A is alpha_0 - alpha_1": sp.simplify(gaps["A"] - (alpha_summand(0) - alpha_summand(1))) == 0,
        "B is alpha_1 - alpha_2": sp.simplify(gaps["B"] - (alpha_summand(1) - alpha_summand(2))) == 0,
        "D is a multiple of the spread": scale.free_symbols <= {d},
        **{f"{name} equals the derived one": sp.simplify(expr.subs(definitions) - derived[name]) == 0
           for name, expr in stable_statement().items()},
    }
    return StableInverse(sigma=stable_statement(), gap_summands=gaps, determinant_scale=scale, checks=checks)


def mg_statement() -> dict[str, sp.Expr]:
    """sigma_0..sigma_3 as Mardaoui & Garreau state them (docs/theory.md §5): the statement checked."""
    a0, a1, a2 = alpha_sym[:3]
    c_d = (d - 1) * a0 * a2 - d * a1**2 + a0 * a1
    return {
        "sigma_0": (a1 + (d - 1) * a2) / c_d,
        "sigma_1": -a1 / c_d,
        "sigma_2": ((d - 2) * a0 * a2 - (d - 1) * a1**2 + a0 * a1) / (c_d * (a1 - a2)),
        "sigma_3": (a1**2 - a0 * a2) / (c_d * (a1 - a2)),
    }


# -- 4. limits -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def wide_kernel_limits() -> dict[str, sp.Expr]:
    """alpha_p (p = 0..4) and sigma_0..sigma_3 as nu -> oo, as functions of d.

    `sympy.limit` takes psi to its limit; the finite sum over s is then summed in closed
    form (a finite sum commutes with the limit); the sigma are continuous in the alpha
    where c_d != 0, so their limits follow by substitution.
    """
    psi_limit = sp.limit(kernel(), nu, sp.oo)
    out: dict[str, sp.Expr] = {}
    for p in range(5):
        summand = psi_limit * kept_probability(p) / d
        out[f"alpha_{p}"] = sp.factor(sp.simplify(sp.summation(summand, (s, 1, d))))
    values = {alpha_sym[p]: out[f"alpha_{p}"] for p in range(3)}
    for name, expr in derive_inverse().sigma.items():
        out[name] = sp.factor(sp.simplify(expr.subs(values)))
    return out


def mg_limit_statement() -> dict[str, sp.Expr]:
    """The nu -> oo limits as docs/theory.md §5 states them (checked against `wide_kernel_limits`)."""
    return {
        "alpha_0": sp.Integer(1),
        "alpha_1": (d - 1) / (2 * d),
        "alpha_2": (d - 2) / (3 * d),
        "alpha_3": (d - 3) / (4 * d),
        "alpha_4": (d - 4) / (5 * d),
        "sigma_0": 2 * (2 * d - 1) / (d + 1),
        "sigma_1": -6 / (d + 1),
        "sigma_2": 6 * (d**2 - 2 * d + 3) / ((d - 1) * (d + 1)),
        "sigma_3": -6 * (d - 3) / ((d - 1) * (d + 1)),
    }


@functools.lru_cache(maxsize=1)
def large_d_limits() -> dict[str, sp.Expr]:
    """Leading behaviour as nu -> oo then d -> oo: sigma_2 -> 6, d sigma_1 -> -6, d sigma_3 -> -6."""
    wide = wide_kernel_limits()
    return {
        "sigma_0": sp.limit(wide["sigma_0"], d, sp.oo),
        "d*sigma_1": sp.limit(d * wide["sigma_1"], d, sp.oo),
        "sigma_2": sp.limit(wide["sigma_2"], d, sp.oo),
        "d*sigma_3": sp.limit(d * wide["sigma_3"], d, sp.oo),
        "alpha_1": sp.limit(wide["alpha_1"], d, sp.oo),
        "alpha_2": sp.limit(wide["alpha_2"], d, sp.oo),
    }


# -- explicit checks (no counting argument, no block algebra) ------------------------------------
def explicit_alpha(size: int, p: int) -> tuple[sp.Expr, sp.Expr]:
    """(by enumeration, by the formula) for alpha_p at d = size, psi left as a function.

    Enumeration: every non-empty removed set S has probability 1/(d binomial(d, |S|)), weight
    psi(|S|/d), and contributes when features 0..p-1 are all kept.
    """
    f = sp.Function("psi")
    by_enumeration = sp.Integer(0)
    for removed in range(1, size + 1):
        prob = sp.Rational(1, size * sp.binomial(size, removed))
        for subset in itertools.combinations(range(size), removed):
            if not set(range(p)) & set(subset):
                by_enumeration += prob * f(sp.Rational(removed, size))
    by_formula = sp.Sum(f(s / d) * kept_probability(p) / d, (s, 1, d)).subs(d, size).doit()
    return sp.expand(by_enumeration), sp.expand(by_formula)


def explicit_inverse_check(size: int) -> bool:
    """At d = size: explicit Sigma(alpha) times the derived block inverse is the identity."""
    inv = derive_inverse().inverse
    product = second_moment_matrix().explicit(size) * inv.explicit(size)
    return sp.simplify(product - sp.eye(size + 1)) == sp.zeros(size + 1, size + 1)


def moment(p: int) -> sp.Symbol:
    """E[pi z_j1 ... z_jp] for p distinct features, as the symbol alpha_p."""
    return alpha_sym[p]
