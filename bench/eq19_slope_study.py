"""How exact is Eq. (19)? The two studies of docs/theory.md §6.3: `python bench/eq19_slope_study.py [DRAWS]`.

Both compare LIME's exact large-sample limit beta^inf (ridge 0, every mask enumerated,
`numerics.lime.limit`) with the paper's Eq. (19) under in-place replacement by UNK, per draw:
the least-squares slope of beta on Eq. (19) through the origin (1 where Eq. (19) has the right
scale) and their Pearson correlation over the d coefficients (`verification.lime_sweep.metrics`).
DRAWS (default 40) random draws per cell; prints two markdown tables.

1. **Random multi-head models**: the project's model at the sweep's sizes (`spec.SMALL`) with
   K = 3 heads, T = 16, d = 10 distinct words over 15 word positions, nu = 0.25; the linear maps
   drawn from U(-0.1, 0.1) (the paper's initialisation, scale 1) or U(-0.5, 0.5) (scale 5). This
   is `attnverify sweep-eq19 --K 3 --d 10 --removal replace --scale 1 5 --nu 0.25` (its JSON has
   the slopes).
2. **A one-head scalar model**, where the weight the model gives UNK is a free parameter: the
   output is f = sum_t softmax(a)_t v_t over T = 20 positions, `[CLS]` at position 0 (score 0,
   read-out 0), d = 10 words occurring once (scores a_w and read-outs v_w from N(0, 1)), and the
   other T - 1 - d positions read as UNK. A removed word's position reads as UNK too: score
   a(UNK), read-out 0. Without position parts deletion equals replacement here. Eq. (19) is then
   (3/2) alpha_j v_j, alpha the attention of the whole document (UNK's read-out is 0).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from attnverify.numerics.lime.limit import enumerated_gamma, limit_from_gamma  # noqa: E402
from attnverify.verification.lime_sweep import grid, metrics, run_sweep  # noqa: E402

from attnverify.spec import SMALL  # noqa: E402

DRAWS = 40
D, T_SCALAR = 10, 20
UNK_SCORES = (0.0, -1.0, -2.0, -4.0, -8.0)
NUS = (0.25, float("inf"))


def multi_head_table(draws: int) -> str:
    points = grid([0.25], [D], [16], [3], [1.0, 5.0], ["replace"])
    rows = run_sweep(points, SMALL, draws=draws, seed=0, progress=False)["rows"]
    lines = ["| linear maps | slope of beta on Eq. (19): median (10-90 %) | correlation: median (10-90 %) "
             "| draws whose limit is lost to rounding |", "|---|---|---|---|"]
    for row in rows:
        if (row["approximation"], row["target"]) != ("eq19", "exact"):
            continue
        bound = 0.1 * row["scale"]
        lines.append(f"| U(-{bound:g}, {bound:g}) | {row['slope_median']:.2f} ({row['slope_p10']:.2f}-"
                     f"{row['slope_p90']:.2f}) | {row['corr_median']:.3f} ({row['corr_p10']:.3f}-"
                     f"{row['corr_p90']:.3f}) | {row['limit_lost_draws']} |")
    return "\n".join(lines)


def scalar_output(z, word_scores, read_outs, unk_score):
    """f at masks z (m, d): position 0 [CLS], positions 1..d the words (UNK where removed), the rest UNK."""
    m = z.shape[0]
    kept = z.astype(bool)
    scores = jnp.concatenate([jnp.zeros((m, 1)), jnp.where(kept, word_scores, unk_score),
                              jnp.full((m, T_SCALAR - 1 - D), unk_score)], axis=1)
    values = jnp.concatenate([jnp.zeros((m, 1)), jnp.where(kept, read_outs, 0.0), jnp.zeros((m, T_SCALAR - 1 - D))],
                             axis=1)
    return (jax.nn.softmax(scores, axis=1) * values).sum(axis=1)


@jax.jit
def scalar_limit(word_scores, read_outs, unk_score, nu):
    """beta^inf and Eq. (19) of the scalar model with these word scores and read-outs (d,)."""
    gamma, _ = enumerated_gamma(lambda z: scalar_output(z, word_scores, read_outs, unk_score), D, nu)
    beta = limit_from_gamma(gamma, D, nu)[1:]
    alpha = jax.nn.softmax(jnp.concatenate([jnp.zeros(1), word_scores, jnp.full(T_SCALAR - 1 - D, unk_score)]))
    return beta, 1.5 * alpha[1 : D + 1] * read_outs


def scalar_draw(key, unk_score, nu):
    """beta^inf and Eq. (19) of one random draw of the scalar model."""
    k_score, k_read = jax.random.split(key)
    return scalar_limit(jax.random.normal(k_score, (D,)), jax.random.normal(k_read, (D,)), unk_score, nu)


def scalar_table(draws: int) -> str:
    keys = [jax.random.PRNGKey(r) for r in range(draws)]
    lines = ["| UNK score a(UNK) | slope, median per draw: nu = 0.25 / nu -> oo "
             "| correlation per draw, median / minimum: nu = 0.25 ; nu -> oo | correlation of the pooled draws: "
             "nu = 0.25 / nu -> oo |", "|---|---|---|---|"]
    for unk in UNK_SCORES:
        slopes, corrs, pooled = [], [], []
        for nu in NUS:
            per_draw = [tuple(map(np.asarray, scalar_draw(key, unk, nu))) for key in keys]
            found = [metrics(eq19, beta) for beta, eq19 in per_draw]
            slopes.append(np.median([m["slope"] for m in found]))
            corrs.append([m["corr"] for m in found])
            beta_all, eq19_all = (np.concatenate(x) for x in zip(*per_draw, strict=True))
            pooled.append(np.corrcoef(eq19_all, beta_all)[0, 1])
        lines.append(f"| {unk:g} | {slopes[0]:.2f} / {slopes[1]:.2f} | "
                     + " ; ".join(f"{np.median(c):.3f} / {np.min(c):.2f}" for c in corrs)
                     + " | " + " / ".join(f"{p:.3f}" for p in pooled) + " |")
    return "\n".join(lines)


def main() -> None:
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else DRAWS
    print(f"Random multi-head models (K = 3, T = 16, d = {D}, nu = 0.25, replacement, {draws} draws each):\n")
    print(multi_head_table(draws))
    print(f"\nOne-head scalar model (T = {T_SCALAR}, d = {D}, {draws} draws per cell):\n")
    print(scalar_table(draws))


if __name__ == "__main__":
    main()
