"""The Eq. (19) sweep: how good is the paper's approximation of LIME, and where does it break?

For every grid point (nu, d, T, K, init scale, removal mode) and `draws` random models and
documents, compare three closed forms with LIME's exact limit beta^inf (enumeration for
small d, Monte Carlo beyond) and with empirical LIME (n samples, ridge 1, one run):

* ``eq19`` — the paper's formula as stated (`theory.eq19.eq19_statement`);
* ``eq19_mg`` — the chain stopped at its exact step 4 (2/3 of Eq. (19) under the paper spec);
* ``improved`` — the first-order ratio-form expansion at the mean mask (`derive_improved`);
* ``shell`` — first order within each removal-count shell (`theory.lime_shell`), both modes.

Metrics per draw: relative L2 error ||a - b|| / ||b||, Pearson correlation, least-squares
slope of b on a; the rows report their median and 10/90% quantiles over draws. One
compilation per (d, T, K, removal); nu and the scale are traced, so they are cheap to vary.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.draws import draw_params
from attnverify.numerics.lime import eq19_form as lime_eq19
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.lime import shell_form as lime_shell
from attnverify.numerics.lime.document import random_document
from attnverify.numerics.lime.limit import checked_coefficients, exact_gamma, monte_carlo_normal_equations
from attnverify.numerics.lime.ridge import weighted_ridge
from attnverify.numerics.lime.sampling import kernel_weights, sample_masks
from attnverify.numerics.modelfile import atomic_write
from attnverify.theory import eq19 as theory
from tqdm.auto import tqdm

from attnverify.errors import InputError
from attnverify.spec import ModelSpec
from attnverify.validate import dumps

APPROXIMATIONS = ("eq19", "eq19_mg", "improved", "shell")
TARGETS = ("exact", "lime")
#: (compared, reference) per row: every closed form against both targets, and LIME at n against beta^inf.
PAIRS = (*itertools.product(APPROXIMATIONS, TARGETS), ("lime", "exact"))
#: Largest d enumerated exactly, per evaluation path (beyond: Monte Carlo).
MAX_EXACT_D = {"ratio": 16, "structured": 12, "generic": 10}


@dataclass(frozen=True)
class Point:
    nu: float
    d: int
    T: int
    K: int
    scale: float
    removal: str


def grid(nus, ds, Ts, Ks, scales, removals) -> list[Point]:
    return [Point(float(nu), int(d), int(T), int(K), float(sc), rm)
            for T, K, d, rm, sc, nu in itertools.product(Ts, Ks, ds, removals, scales, nus)]


#: `sweep-eq19`'s numbers of distinct words when none are given: those that fit the grid (`default_ds`).
DEFAULT_DS = (5, 10, 20)


def largest_d(T: int, spec: ModelSpec) -> int:
    """The most distinct words a document can hold: T - 1 positions after [CLS], and the vocabulary
    but [CLS] and UNK."""
    return min(T - 1, spec.vocab_size - 2)


def default_ds(spec: ModelSpec, Ts) -> list[int]:
    """`DEFAULT_DS` that fit every T of the grid (on SMALL, T = 16: 5 and 10)."""
    return [d for d in DEFAULT_DS if d <= min(largest_d(T, spec) for T in Ts)]


def document_length(d: int, T: int, words_per_feature: float) -> int:
    return int(min(T - 1, max(d, round(words_per_feature * d))))


def check_point(point: Point, spec: ModelSpec, words_per_feature: float) -> None:
    if point.d < 2:
        raise InputError(f"sweep: d must be >= 2 (LIME's limit is undefined for d = {point.d})")
    if point.d > largest_d(point.T, spec):
        raise InputError(f"sweep: d = {point.d} needs T >= d + 1 and vocab_size >= d + 2")
    if not point.nu > 0 or not point.scale > 0:
        raise InputError(f"sweep: nu and scale must be > 0, got nu={point.nu}, scale={point.scale}")
    if point.removal not in ("delete", "replace"):
        raise InputError(f"sweep: removal must be delete or replace, got {point.removal!r}")
    if words_per_feature < 1:
        raise InputError("sweep: words per feature must be >= 1")


@functools.partial(jax.jit, static_argnames=("spec", "d", "length", "removal", "exact", "n_mc", "n_lime",
                                             "improved", "shell"))
def _draws(keys, nu, scale, lime_ridge, *, spec, d, length, removal, exact, n_mc, n_lime, improved, shell):
    """Every quantity of one grid point, for each key (lax.map: memory of one draw at a time)."""

    def one(key):
        key_params, key_doc, key_lime, key_mc = jax.random.split(key, 4)
        params = draw_params(key_params, spec, scale=scale)
        doc = random_document(key_doc, d, length, spec.max_len, spec.vocab_size)
        path = lime_eval.choose_path(params, spec, removal)
        data, _ = lime_eval.prepare(params, doc, spec, d, path)
        if exact:
            gamma, _, magnitude = exact_gamma(data, doc, nu, spec=spec, d=d, removal=removal, path=path,
                                              with_magnitude=True)
            beta = checked_coefficients(gamma, magnitude, d, nu)  # NaN where lost to rounding: never a target
        else:
            G, g, _ = monte_carlo_normal_equations(data, doc, nu, key_mc, spec=spec, d=d, removal=removal,
                                                   path=path, n=n_mc, chunk_size=min(2**13, n_mc // 16))
            beta = jnp.linalg.solve(G.sum(axis=0), g.sum(axis=0))[1:]
        z = sample_masks(key_lime, n_lime, d, dtype=params.embedding.dtype)
        y = lime_eval.outputs(data, doc, z, spec=spec, removal=removal, path=path)
        lime = weighted_ridge(z, y, kernel_weights(z, nu), lime_ridge).coef
        arrays = lime_eq19.quantities(params, doc, spec, d)
        approx = {
            "eq19": lime_eq19.statement(arrays, d),
            "eq19_mg": lime_eq19.additive_part(arrays, spec, d),
            "improved": lime_eq19.improved(arrays, spec, d, nu) if improved else jnp.full((d,), jnp.nan),
            "shell": (lime_shell.shell_form(params, doc, nu, spec=spec, d=d, removal=removal) if shell
                      else jnp.full((d,), jnp.nan)),
        }
        return {"exact": beta, "lime": lime, **approx}

    return jax.lax.map(one, keys)


def metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Relative L2 error of a against b, their correlation, and the LS slope of b on a."""
    if not np.all(np.isfinite(a)):
        return {"rel_l2": float("nan"), "corr": float("nan"), "slope": float("nan")}
    with np.errstate(over="ignore"):  # against a target that underflowed to ~0 (narrow kernels): inf, said as such
        rel = np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(float).tiny)
    # Two points always correlate +-1: no information at d = 2 (NaN: "n/a" in the table).
    corr = np.corrcoef(a, b)[0, 1] if a.size > 2 and np.std(a) > 0 and np.std(b) > 0 else float("nan")
    slope = float(a @ b / (a @ a)) if a @ a > 0 else float("nan")
    return {"rel_l2": float(rel), "corr": float(corr), "slope": slope}


def run_point(point: Point, spec: ModelSpec, *, draws: int, seed: int, words_per_feature: float = 1.5,
              n_mc: int = 2**18, n_lime: int = 5000, lime_ridge: float = 1.0) -> list[dict]:
    """The rows of one grid point: one per (approximation, target), medians over draws."""
    check_point(point, spec, words_per_feature)
    spec = spec.replace(max_len=point.T, heads=point.K)
    length = document_length(point.d, point.T, words_per_feature)
    path = lime_eval.fastest_path(True, spec, point.removal)
    exact = point.d <= MAX_EXACT_D[path]
    improved = theory.derive_improved(spec).derived is not None and path != "generic"
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(draws))
    out = _draws(keys, point.nu, point.scale, lime_ridge, spec=spec, d=point.d, length=length,
                 removal=point.removal, exact=exact, n_mc=n_mc, n_lime=n_lime, improved=improved,
                 shell=lime_shell.unsupported(spec, point.removal) is None)
    out = {k: np.asarray(v) for k, v in out.items()}
    # Draws whose limit is not a number (Sigma singular, or lost to rounding): counted, never compared.
    lost = int(np.sum(~np.all(np.isfinite(out["exact"]), axis=1)))
    rows = []
    for approx, target in PAIRS:
        per_draw = [metrics(out[approx][r], out[target][r]) for r in range(draws)]
        row = {**asdict(point), "length": length, "approximation": approx, "target": target,
               "limit_method": "exact" if exact else f"monte_carlo({n_mc})", "draws": draws,
               "limit_lost_draws": lost, "deviations": json.dumps(spec.deviations(), sort_keys=True)}
        for name in ("rel_l2", "corr", "slope"):
            values = np.array([m[name] for m in per_draw])
            finite = values[np.isfinite(values)]
            for q, label in ((50, "median"), (10, "p10"), (90, "p90")):
                row[f"{name}_{label}"] = float(np.percentile(finite, q)) if finite.size else float("nan")
        rows.append(row)
    return rows


def run_sweep(points: list[Point], spec: ModelSpec, *, draws: int = 8, seed: int = 0, progress: bool = True,
              **options) -> dict:
    """All grid points; returns ``{"manifest": ..., "rows": [...]}``."""
    if draws < 1:
        raise InputError(f"sweep: draws must be >= 1, got {draws}")
    for point in points:  # every point before any work: d = 20 at T = 16 was refused after the others had run
        check_point(point, spec, options.get("words_per_feature", 1.5))
    rows = []
    for point in tqdm(points, desc="sweep-eq19", disable=not progress, file=sys.stderr, leave=False):
        rows.extend(run_point(point, spec, draws=draws, seed=seed, **options))
    manifest = {
        "what": "Eq. (19) and closed forms vs LIME's exact limit and empirical LIME",
        "spec": json.loads(spec.to_json()), "seed": seed, "draws": draws, "options": options,
        "grid": [asdict(p) for p in points],
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__},
    }
    return {"manifest": manifest, "rows": rows}


def write_results(result: dict, *, json_path: str | None = None, csv_path: str | None = None) -> None:
    """JSON (manifest + rows) and/or CSV (rows), each written atomically."""
    if json_path:
        text = dumps(result, indent=1) + "\n"  # strict JSON: NaN (undefined forms) as null, reason beside
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(text))
    if csv_path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(result["rows"][0]))
        writer.writeheader()
        writer.writerows(result["rows"])
        atomic_write(csv_path, lambda tmp: open(tmp, "w").write(buffer.getvalue()))


def _number(x: float, digits: int) -> str:
    """`digits` decimals, or three significant digits with an exponent from 1000 on (at a narrow
    kernel LIME's coefficients underflow towards 0 and an error relative to them reaches 1e305)."""
    return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:.2e}"


def _err(row: dict, digits: int = 4) -> str:
    """A median error for the table; "n/a" where the form is not defined for the spec, or where no
    draw's limit is a number (`_limit` says why)."""
    return _number(row["rel_l2_median"], digits) if np.isfinite(row["rel_l2_median"]) else "n/a"


def _pair(row: dict) -> str:
    """Median error / correlation, or "n/a" (`_err`)."""
    if not np.isfinite(row["rel_l2_median"]):
        return "n/a"
    corr = f"{row['corr_median']:.3f}" if np.isfinite(row["corr_median"]) else "n/a"
    return f"{_number(row['rel_l2_median'], 3)} / {corr}"


def _limit(row: dict) -> str:
    """How the limit was computed, and how many draws' limits were lost (Sigma singular or rounding)."""
    method = row["limit_method"].split("(")[0]
    lost = row.get("limit_lost_draws", 0)
    return method if not lost else ("lost" if lost == row["draws"] else f"{method} ({lost} lost)")


def sweep_table(rows: list[dict]) -> str:
    """One line per grid point: medians of relative L2 error (and correlation) per closed form."""
    header = ("nu", "d", "T", "K", "scale", "removal", "limit", "eq19 err/corr (exact)", "eq19_mg err",
              "mean-mask err", "shell err", "gain", "eq19 err/corr (lime)", "lime err (exact)")
    lines = [header]
    keyed = {(r["nu"], r["d"], r["T"], r["K"], r["scale"], r["removal"], r["approximation"], r["target"]): r
             for r in rows}
    points = sorted({k[:6] for k in keyed}, key=lambda p: (p[2], p[3], p[1], p[5], p[4], p[0]))
    for p in points:
        e19, mg, imp, shell, lime, lime_exact = (keyed[(*p, a, t)] for a, t in (
            ("eq19", "exact"), ("eq19_mg", "exact"), ("improved", "exact"), ("shell", "exact"), ("eq19", "lime"),
            ("lime", "exact")))
        gain = e19["rel_l2_median"] / shell["rel_l2_median"] if shell["rel_l2_median"] > 0 else float("nan")
        lines.append((f"{p[0]:g}", str(p[1]), str(p[2]), str(p[3]), f"{p[4]:g}", p[5],
                      _limit(e19), _pair(e19), _err(mg, 3),
                      _err(imp), _err(shell), f"{gain:.1f}x" if np.isfinite(gain) else "n/a",
                      _pair(lime), _err(lime_exact, 3)))
    widths = [max(len(line[j]) for line in lines) for j in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text) + ("\n(medians over draws; err = relative L2 error; corr = Pearson correlation over the d "
                              "coefficients, n/a at d = 2, where it is always +-1; mean-mask = the improved form "
                              "expanded at the overall mean mask; gain = eq19 err / shell err; lime err (exact) = one "
                              "LIME run at --lime-samples against beta^inf: with few words lime's ridge and its first "
                              "sample (the document, weight 1) keep it away from the limit, docs/theory.md §5 'LIME "
                              "at finite n'; lost = draws whose limit is not a number: Sigma singular or lost to "
                              "rounding at a narrow kernel, docs/theory.md §5)")
