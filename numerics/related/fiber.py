"""Identifiability of attention on the true model (Brunner et al.; Naim & Asher; docs/theory.md §8.3-8.4).

A head's logits depend on its attention alpha only through alpha^T S (S: T x C read-outs),
so every alpha in the fiber {alpha in simplex : [S 1]^T alpha = [S 1]^T alpha_hat} gives
exactly the same logits. Here, in JAX (jittable, vmappable):

* the fiber's directions (SVD of [S 1]) and moves along them;
* its vertices (basic solutions with rank[S 1] nonzero entries: C + 1 for generic read-outs, fewer
  where the model's structure bounds the rank, `constraint_basis`) and the largest JSD among them
  (JSD(., alpha_hat) is convex: its maximum over the fiber is at a vertex);
* Brunner's effective attention, the projection onto col(S) or col(V), which need not be
  a distribution;
* three *candidate* readings of Naim & Asher's "efficient attention" (their construction
  is unconfirmed): (a) the projection onto col[S 1], (b) the minimum-norm point of the
  fiber with alpha >= 0, (c) its maximum-entropy point; and their optimality, by KKT residuals
  (`kkt_residuals`) that do not use the dual solvers that construct them.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.related.jain_wallace import jsd
from attnverify.numerics.svd import least_squares, left_singular_vectors, singular_values
from jaxtyping import Array, Float

from attnverify.errors import InputError
from attnverify.lazy import lazy_module

tid = lazy_module("attnverify.theory.related.identifiability")  # SymPy: loaded on first use

NEWTON_STEPS = 60  # the dual problems below are C+1-dimensional: Newton converges in far fewer
BACKTRACK = 2.0 ** -np.arange(30)  # step sizes tried by the line search


def augmented(S: Float[Array, "T C"]) -> Float[Array, "T r"]:
    """[S 1]: the read-outs and a column of ones (the sum-to-one condition)."""
    return jnp.concatenate([S, jnp.ones((S.shape[0], 1), S.dtype)], axis=1)


def numerical_rank(M: Float[Array, "m n"], rtol: float | None = None) -> jnp.ndarray:
    """Number of singular values above rtol * largest (default: max(m, n) * machine epsilon)."""
    sigma = singular_values(M)
    if rtol is None:
        rtol = max(M.shape) * jnp.finfo(M.dtype).eps
    return jnp.sum(sigma > rtol * sigma[0])


def full_rank(S: Float[Array, "T C"]) -> int:
    """rank[S 1] of read-outs with free entries, min(T, C + 1): the default `rank` below."""
    return min(S.shape[0], S.shape[1] + 1)


def constraint_basis(S: Float[Array, "T C"], rank: int | None = None) -> Float[Array, "T r"]:
    """The fiber's constraint matrix B, with {alpha : B^T alpha = B^T alpha_hat} the affine fiber: [S 1]
    itself where its rank is `full_rank`, else an orthonormal basis of col[S 1], its first `rank` left
    singular vectors (the same conditions, without the dependent ones). A static int: in a sweep, what the
    model's structure allows (`theory.related.identifiability.generic_readout_rank`: d_out + 1 where
    d_out < C), decided by the spec, not by the draw; `related fiber` passes its one model's numerical rank."""
    if rank is None or rank == S.shape[1] + 1:
        return augmented(S)
    return left_singular_vectors(augmented(S))[:, :rank]


def fiber_directions(S: Float[Array, "T C"], rank: int | None = None) -> Float[Array, "T T-r"]:
    """An orthonormal basis of {delta : S^T delta = 0, 1^T delta = 0}, where rank[S 1] = `rank`
    (default `full_rank`): the last T - rank left singular vectors of [S 1]."""
    tid.check_positions(S.shape[0])
    return left_singular_vectors(augmented(S))[:, full_rank(S) if rank is None else rank:]


def fiber_moves(alpha_hat: Float[Array, " T"], S: Float[Array, "T C"], fraction: float = 0.5,
                rank: int | None = None) -> Float[Array, "T-r T"]:
    """alpha_hat + step * delta for each fiber direction delta, the step keeping every entry
    >= (1 - fraction) * min alpha_hat > 0: distinct distributions with the same logits."""
    directions = fiber_directions(S, rank).T
    step = fraction * jnp.min(alpha_hat) / jnp.max(jnp.abs(directions), axis=1)
    return alpha_hat[None] + step[:, None] * directions


def joint_system(S_heads: Float[Array, "K T C"], weight: float) -> Float[Array, "K+C K*T"]:
    """Heads moved jointly, the averaged logits preserved: 1^T delta^(i) = 0 per head and
    weight * sum_i S^(i)T delta^(i) = 0."""
    K, T, _ = S_heads.shape
    ones = jnp.kron(jnp.eye(K, dtype=S_heads.dtype), jnp.ones((1, T), S_heads.dtype))
    outputs = weight * jnp.concatenate(list(jnp.swapaxes(S_heads, 1, 2)), axis=1)
    return jnp.concatenate([ones, outputs], axis=0)


# -- vertices and the largest JSD in the fiber ---------------------------------------------------
#: The most supports (C + 1 of T positions) the vertex enumeration takes: C(256, 3) = 2.8 million
#: (a paper-size model, two classes) are scored in 0.7 s once compiled (2.8 s with compiling, on
#: the 2-core machine of docs/benchmarks.md); at T = 490, 19.5 million, 13 s; ten classes at T = 64
#: would be 1e11 supports.
MAX_SUPPORTS = 20_000_000
#: Supports scored together (a batch of `fiber_max_jsd`'s scan): their r x r systems, a few MB.
SUPPORTS_PER_BATCH = 2**14


def check_supports(T: int, r: int) -> None:
    """Refuse an enumeration of more than `MAX_SUPPORTS` supports, or of none (T < r), in one line,
    before any work."""
    count = math.comb(T, r)
    if count == 0:
        raise InputError(f"the fiber's vertices: no support of {r} positions among T = {T} (a vertex has rank[S 1] "
                         f"positions, C + 1 for generic read-outs: use a model with more positions than classes)")
    if count > MAX_SUPPORTS:
        raise InputError(f"the fiber's vertices: {count:.3g} supports of {r} among T = {T} positions to enumerate, "
                         f"more than {MAX_SUPPORTS:,} (use a model with fewer positions or classes)")


def _supports(T: int, r: int) -> jnp.ndarray:
    check_supports(T, r)
    flat = itertools.chain.from_iterable(itertools.combinations(range(T), r))  # no list of tuples
    return jnp.asarray(np.fromiter(flat, dtype=np.int32, count=math.comb(T, r) * r).reshape(-1, r))


def _basic_solution(B, target, support, tol: float):
    """The solution of [S 1]^T alpha = target on `support` (r positions), clipped at 0, and
    whether it is a vertex (the block nonsingular, the solution nonnegative up to `tol`)."""
    r = support.shape[0]
    block = B[support].T  # r x r
    singular = jnp.abs(jnp.linalg.det(block)) < tol * jnp.prod(jnp.linalg.norm(block, axis=0))
    x = jnp.linalg.solve(jnp.where(singular, jnp.eye(r, dtype=B.dtype), block), target)
    return jnp.clip(x, 0.0, None), ~singular & jnp.all(x >= -tol)


def fiber_vertices(alpha_hat: Float[Array, " T"], S: Float[Array, "T C"], tol: float = 1e-12,
                   rank: int | None = None) -> tuple[Float[Array, "n T"], jnp.ndarray]:
    """Every basic solution of {alpha >= 0, [S 1]^T alpha = [S 1]^T alpha_hat} with support
    of size rank[S 1] (`constraint_basis`; C + 1 by default), and whether it is a vertex
    (nonsingular, nonnegative up to `tol`)."""
    T, B = S.shape[0], constraint_basis(S, rank)
    target = B.T @ alpha_hat

    def point(support):
        x, valid = _basic_solution(B, target, support, tol)
        return jnp.zeros(T, B.dtype).at[support].set(x), valid

    return jax.vmap(point)(_supports(T, B.shape[1]))


def fiber_max_jsd(alpha_hat: Float[Array, " T"], S: Float[Array, "T C"], tol: float = 1e-12,
                  rank: int | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """max JSD(alpha, alpha_hat) over the fiber (the eps = 0 form of J&W's search), and a
    vertex attaining it, among the basic solutions of `fiber_vertices` (supports of rank[S 1]
    positions: `rank`, C + 1 by default).

    Each is scored from its r = rank[S 1] entries alone, `SUPPORTS_PER_BATCH` at a time, keeping the best
    so far: memory holds the supports and one batch, not a T-vector per support (at T = 256 and
    two classes those took 5.6 GB). Where no basic solution is certified a vertex (`_basic_solution`),
    both are NaN. Off its support a vertex is 0 and the mean is alpha_hat_t / 2,
    so each such position adds alpha_hat_t log(2) / 2 to the JSD (natural log, as
    `jain_wallace.jsd`); the support's own terms are `jsd` of the r entries."""
    T, B = S.shape[0], constraint_basis(S, rank)
    target = B.T @ alpha_hat
    supports = _supports(T, B.shape[1])
    total = jnp.sum(alpha_hat)

    def value(support):
        x, valid = _basic_solution(B, target, support, tol)
        q = alpha_hat[support]
        off_support = (total - jnp.sum(q)) * jnp.log(jnp.asarray(2.0, q.dtype)) / 2
        return jnp.where(valid, jsd(x, q) + off_support, -jnp.inf)

    # A running maximum over batches: no value per support is kept, so a sweep's vmap over draws
    # holds one batch per draw (an array of every support's value was 22 MB a draw at T = 256).
    count = supports.shape[0]
    size = min(SUPPORTS_PER_BATCH, count)
    batches = -(-count // size)
    padded = jnp.concatenate([supports, jnp.broadcast_to(supports[:1], (batches * size - count, supports.shape[1]))])

    def batch(best, start):
        values = jax.vmap(value)(jax.lax.dynamic_slice_in_dim(padded, start, size))
        values = jnp.where(start + jnp.arange(size) < count, values, -jnp.inf)  # the padding: never chosen
        here = jnp.argmax(values)  # the first of equal values, as over the whole array
        better = values[here] > best[0]
        index = (start + here).astype(best[1].dtype)
        return (jnp.where(better, values[here], best[0]), jnp.where(better, index, best[1])), None

    start = (jnp.asarray(-jnp.inf, B.dtype), jnp.asarray(0, jnp.int32))
    (best_value, best_index), _ = jax.lax.scan(batch, start, jnp.arange(batches, dtype=jnp.int32) * size)
    x, _ = _basic_solution(B, target, supports[best_index], tol)
    # No support certified (every block singular within `tol`, or its solution negative beyond it: read-outs
    # whose [S 1] is ill-conditioned, as d_e = 1 with tanh): NaN, not the first support's solution.
    found = jnp.isfinite(best_value)
    vertex = jnp.zeros(T, B.dtype).at[supports[best_index]].set(x)
    return jnp.where(found, best_value, jnp.nan), jnp.where(found, vertex, jnp.nan)


# -- Brunner's effective attention ---------------------------------------------------------------
def projection(M: Float[Array, "T n"], alpha: Float[Array, " T"]) -> Float[Array, " T"]:
    """The orthogonal projection of alpha onto col(M) (least squares, rank-revealing)."""
    return M @ least_squares(M, alpha)


def effective_attention(alpha_hat: Float[Array, " T"], M: Float[Array, "T n"]) -> Float[Array, " T"]:
    """Brunner et al.: alpha_hat with its component in the left null space of M removed."""
    return projection(M, alpha_hat)


# -- candidates for Naim & Asher's efficient attention ---------------------------------------------
def candidate_projection(alpha_hat: Float[Array, " T"], S: Float[Array, "T C"]) -> Float[Array, " T"]:
    """(a) The projection onto col[S 1]: the minimum-norm point of the affine fiber (may be < 0)."""
    return projection(augmented(S), alpha_hat)


def _newton(dual, mu):
    """Minimise a convex C^1 dual function by (generalised) Newton steps with backtracking, damped
    as Levenberg-Marquardt's: where no backtracked step decreases the dual, the point stays and the
    next direction is damped by max(10 lambda, |gradient|); each accepted step divides lambda by 10,
    so it returns to Newton's. Where few rows of [S 1] are active the generalised Hessian is
    singular and the Newton direction huge along its null space: at --scale 10 the minimum-norm
    candidate stalled there with a residual of 1. Damping every step instead slowed the smooth
    maximum-entropy dual (1e-3 off after NEWTON_STEPS); trying both directions every step cost
    the identifiability claims half their time again."""
    backtrack = jnp.asarray(BACKTRACK, mu.dtype)
    ridge = 1e-14 if mu.dtype == jnp.float64 else 1e-6  # keeps a singular generalised Hessian solvable
    eye = jnp.eye(mu.shape[0], dtype=mu.dtype)

    def step(state, _):
        mu, damping = state
        gradient = jax.grad(dual)(mu)
        hessian = jax.hessian(dual)(mu)
        norm = jnp.linalg.norm(gradient)
        direction = -jnp.linalg.solve(hessian + (ridge * jnp.trace(hessian) + damping) * eye, gradient)
        trial = mu + backtrack[:, None] * direction
        values = jax.vmap(dual)(trial)
        norms = jnp.linalg.norm(jax.vmap(jax.grad(dual))(trial), axis=1)
        # Armijo on the dual's value, or a smaller gradient: near the optimum the value's decrease
        # falls below its rounding (a gradient of ~1e-8 changes an O(1) value by ~1e-16) while the
        # gradient, which is the constraint's residual, still shrinks quadratically.
        ok = (values <= dual(mu) + 1e-4 * backtrack * (gradient @ direction)) | \
            (norms <= (1 - 1e-4 * backtrack) * norm)
        accepted = jnp.any(ok)
        t = jnp.where(accepted, backtrack[jnp.argmax(ok)], jnp.zeros((), mu.dtype))
        damping = jnp.where(accepted, damping / 10, jnp.maximum(10 * damping, norm))
        return (mu + t * direction, damping), None

    (mu, _), _ = jax.lax.scan(step, (mu, jnp.zeros((), mu.dtype)), None, length=NEWTON_STEPS)
    return mu


def candidate_min_norm(alpha_hat: Float[Array, " T"], S: Float[Array, "T C"]) -> Float[Array, " T"]:
    """(b) argmin |alpha|^2 over the fiber with alpha >= 0. KKT: alpha = max(0, [S 1] mu),
    mu minimising the dual |max(0, [S 1] mu)|^2 / 2 - mu^T [S 1]^T alpha_hat."""
    B = augmented(S)
    target = B.T @ alpha_hat
    start = least_squares(B.T @ B, target)

    def dual(mu):
        return 0.5 * jnp.sum(jax.nn.relu(B @ mu) ** 2) - mu @ target

    return jax.nn.relu(B @ _newton(dual, start))


def candidate_max_entropy(alpha_hat: Float[Array, " T"], S: Float[Array, "T C"]) -> Float[Array, " T"]:
    """(c) argmax H(alpha) over the fiber: alpha = exp([S 1] mu), mu minimising the dual
    sum exp([S 1] mu) - mu^T [S 1]^T alpha_hat. It is a softmax of scores linear in S."""
    B = augmented(S)
    target = B.T @ alpha_hat
    start = jnp.zeros(B.shape[1], B.dtype).at[-1].set(-jnp.log(B.shape[0]))

    def dual(mu):
        return jnp.sum(jnp.exp(B @ mu)) - mu @ target

    return jnp.exp(B @ _newton(dual, start))


CANDIDATES = {
    "projection": candidate_projection,
    "min_norm": candidate_min_norm,
    "max_entropy": candidate_max_entropy,
}


# -- optimality: KKT conditions, independent of the dual solvers above -------------------------------
def _half_squared_norm(alpha):
    return 0.5 * jnp.sum(alpha**2)


def _negative_entropy(alpha):
    return jnp.sum(alpha * jnp.log(alpha))


#: What each candidate claims to minimise over the fiber, and whether alpha >= 0 is imposed:
#: (a) |alpha|^2 / 2 over the affine fiber, (b) the same with alpha >= 0, (c) -H(alpha) = sum alpha log alpha.
OBJECTIVES = {
    "projection": (_half_squared_norm, False),
    "min_norm": (_half_squared_norm, True),
    "max_entropy": (_negative_entropy, True),
}


#: What `fiber_vertices` lets a vertex's entries fall below 0 by, and how near singular its block may be,
#: per dtype: its rounding, with a margin (1e-12 is float64's default).
VERTEX_TOL = {"float64": 1e-12, "float32": 1e-5}
#: The most supports `kkt_residuals` enumerates where least squares cannot pick the multipliers: C(T, C + 1)
#: is 560 at T = 16 and two classes (the sweeps' SMALL), 2.8 million at T = 256 (0.7 s a draw), where it
#: keeps the least-squares multipliers alone, as before.
MAX_VERTEX_CHECK = 100_000


def kkt_residuals(name: str, alpha: Float[Array, " T"], S: Float[Array, "T C"], rank: int | None = None
                  ) -> Float[Array, " 2"]:
    """(stationarity, dual infeasibility) of `alpha` for candidate `name`'s problem, relative to max |grad|.

    The problem is min phi(alpha) s.t. [S 1]^T alpha = [S 1]^T alpha_hat (and alpha >= 0); phi and
    the constraint are convex, so a feasible alpha is optimal iff multipliers mu, lambda exist with
    grad phi(alpha) = [S 1] mu + lambda, lambda >= 0, lambda_t = 0 where alpha_t > 0 (KKT). Here
    grad phi is `jax.grad`; mu is the least-squares fit of grad phi on the rows where alpha_t > 0
    (every row without the sign constraint); the residual r = grad phi - [S 1] mu must vanish on
    those rows (stationarity) and be >= 0 on the others (lambda = r). Feasibility is checked
    separately (the claims compare [S 1]^T alpha). Both are 0 up to rounding at the optimum.

    Where those rows have rank below rank[S 1] (`rank`, C + 1 by default: a support of fewer
    positions, a vertex of the simplex, or an edge, where attention saturates), mu is not unique
    and the least-squares one need not be dual-feasible although another is (at --scale 10 a right
    answer showed 0.33). Dual feasibility is then decided by the equivalent first-order condition
    over the fiber of alpha itself, at its vertices (`fiber_vertices`: it is their convex hull):
    grad phi . (v - alpha) >= 0 for each v, for up to `MAX_VERTEX_CHECK` supports of rank[S 1]
    positions (decided by the spec, not by the draw). Where no vertex is certified
    (`fiber_vertices`: an ill-conditioned [S 1]) the least-squares multipliers' residual stays:
    it can only overstate the infeasibility, where an empty set of vertices would show none.
    """
    objective, nonnegative = OBJECTIVES[name]
    B = augmented(S)
    g = jax.grad(objective)(alpha)
    free = alpha > 0 if nonnegative else jnp.ones(alpha.shape, bool)
    rows = jnp.where(free[:, None], B, 0.0)
    mu = least_squares(rows, jnp.where(free, g, 0.0))
    r = g - B @ mu
    scale = jnp.max(jnp.where(free, jnp.abs(g), 0.0))
    stationarity = jnp.max(jnp.where(free, jnp.abs(r), 0.0)) / scale
    infeasible = jnp.max(jnp.where(free, 0.0, jax.nn.relu(-r))) / scale
    positions = B.shape[1] if rank is None else rank  # a vertex's support
    if nonnegative and math.comb(B.shape[0], positions) <= MAX_VERTEX_CHECK:
        vertices, valid = fiber_vertices(alpha, S, tol=VERTEX_TOL[jnp.dtype(alpha.dtype).name], rank=rank)
        descent = jnp.max(jnp.where(valid, jax.nn.relu((alpha[None] - vertices) @ g), 0.0)) / scale
        # No vertex certified: the least-squares multipliers' infeasibility stays (it may only overstate), not 0.
        infeasible = jnp.where((numerical_rank(rows) < positions) & jnp.any(valid), descent, infeasible)
    return jnp.stack([stationarity, infeasible])


def distribution_defects(alpha: Float[Array, " T"]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(|sum alpha - 1|, max(0, -min alpha)): both 0 for a probability distribution."""
    return jnp.abs(jnp.sum(alpha) - 1.0), jax.nn.relu(-jnp.min(alpha))
