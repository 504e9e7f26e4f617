"""How often the mean test's bound is wrong (docs/theory.md §11.3): `python bench/mean_bound_coverage.py [REPS]`.

For each distribution of the per-draw statistic and each number of draws n, REPS sweeps (default
20,000) are judged by `verification.confidence.MeanTest` against a true claim, "mean >= mu" at
the distribution's own mean mu; the share of sweeps that refute it is the bound's one-sided error,
to compare with ALPHA = Phi(-3) = 0.135 %. Prints a markdown table. A statistic declared bounded
(`support`) is judged with its range; the others without.
"""

import sys

import numpy as np
from attnverify.verification.confidence import ALPHA, MeanTest

REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
DRAWS = (8, 32, 128)
rng = np.random.default_rng(0)

#: name -> (sampler of an (reps, n) array, true mean, support)
DISTRIBUTIONS = {
    "normal": (lambda shape: rng.normal(size=shape), 0.0, None),
    "exponential": (lambda shape: rng.exponential(size=shape), 1.0, None),
    "lognormal(0, 1)": (lambda shape: rng.lognormal(size=shape), float(np.exp(0.5)), None),
    "Bernoulli(0.05)": (lambda shape: (rng.random(shape) < 0.05).astype(float), 0.05, (0.0, 1.0)),
    "Bernoulli(0.3)": (lambda shape: (rng.random(shape) < 0.3).astype(float), 0.3, (0.0, 1.0)),
}


def refuted_share(sample, mu: float, support, n: int) -> float:
    test = MeanTest(threshold=mu, direction="above", support=support)
    values = sample((REPS, n))
    return sum(test.judge(row).outcome == "refuted" for row in values) / REPS


def main() -> None:
    print(f"| per-draw statistic | {' | '.join(f'n = {n}' for n in DRAWS)} |")
    print(f"|---|{'---|' * len(DRAWS)}")
    for name, (sample, mu, support) in DISTRIBUTIONS.items():
        cells = [refuted_share(sample, mu, support, n) for n in DRAWS]
        print(f"| {name} | " + " | ".join(f"{c:.3%} ({c / ALPHA:.1f}x)" for c in cells) + " |")
    print(f"\nALPHA = {ALPHA:.3%}; {REPS} sweeps per cell (standard error of a cell at ALPHA: "
          f"{np.sqrt(ALPHA * (1 - ALPHA) / REPS):.3%}).")


if __name__ == "__main__":
    main()
