"""Readable output of the LIME derivations (`derive lime`, `derive eq19`): text and JSON.

Numbers are evaluated by SymPy itself (exact sums at the given d, then `evalf`), so they
are an independent check of the JAX-compiled constants in `numerics.lime.constants`.
"""

from __future__ import annotations

import math

import sympy as sp
from attnverify.theory import eq19 as eq19_theory
from attnverify.theory import lime_shell
from attnverify.theory import mardaoui_garreau as mg
from attnverify.theory.display import readable

from attnverify.errors import InputError
from attnverify.spec import ModelSpec


def lime_values(size: int, width: float) -> dict[str, float]:
    """alpha_0..alpha_2 and sigma_0..sigma_3 at d = size, nu = width (inf allowed), by SymPy."""
    if size < 2:
        raise InputError(f"d must be >= 2 (d = {size}: LIME's Sigma is singular)", parameter="d")
    if not width > 0:
        raise InputError(f"nu must be > 0 (or inf), got {width}", parameter="nu")
    nu_value = sp.oo if math.isinf(width) else sp.Float(width, 30)

    def terms(summand: sp.Expr) -> list[sp.Expr]:  # a summand at s = 1..size, 30 digits (exact at nu = inf)
        if nu_value is sp.oo:  # rationals: a constant that is 0 (sigma_3 at d = 3) is 0, not 30 digits of noise
            at = sp.limit(summand, mg.nu, sp.oo)
            return [at.subs({mg.d: size, mg.s: k}) for k in range(1, size + 1)]
        at = summand.subs({mg.nu: nu_value})
        return [sp.N(at.subs({mg.d: size, mg.s: k}), 30) for k in range(1, size + 1)]

    weights = terms(mg.alpha_summand(0))
    values = {"alpha_0": sp.Add(*weights)}
    values.update({f"alpha_{p}": sp.Add(*terms(mg.alpha_summand(p))) for p in (1, 2)})
    # The sigmas in their stable form (docs/theory.md §5): sums of nonnegative terms, so 30 digits are
    # 30 digits. From alpha_0..alpha_2 as derived, the determinant cancels: at d = 3, nu = 0.02 this
    # printed sigma_0 = 1.0e50 for 1.13e98.
    stable = mg.derive_stable_inverse()
    mean = sp.Add(*(w * k for k, w in enumerate(weights, start=1))) / values["alpha_0"]
    spread = values["alpha_0"] * sp.Add(*(w * (k - mean) ** 2 for k, w in enumerate(weights, start=1)))
    big_a, big_b, big_d = mg.gap_sym
    subs = {mg.alpha_sym[1]: values["alpha_1"], mg.alpha_sym[2]: values["alpha_2"], mg.d: size,
            big_a: sp.Add(*terms(stable.gap_summands["A"])), big_b: sp.Add(*terms(stable.gap_summands["B"])),
            big_d: stable.determinant_scale.subs(mg.d, size) * spread}
    for name, expr in stable.sigma.items():
        values[name] = sp.N(expr.subs(subs), 30)
    if not all(v.is_finite for v in values.values()):
        raise InputError(f"Sigma is singular at d = {size}, nu = {width}")
    floats = {k: float(v) for k, v in values.items()}
    underflow = any(floats[k] == 0 and values[k] != 0 for k in values)  # alpha_2 = 0 exactly at d = 2
    if not all(math.isfinite(v) for v in floats.values()) or underflow:
        raise InputError(f"Sigma's constants at d = {size}, nu = {width} are beyond float64's range "
                         f"(alpha_0 {_size_of(values['alpha_0'])}, sigma_0 {_size_of(values['sigma_0'])}); "
                         "use a wider kernel")
    return floats


def _size_of(value: sp.Expr) -> str:
    """'= 3.47e-400', or, for an exponent of many digits, how far out of float64's range."""
    text = str(sp.N(value, 3))  # str: a SymPy Float's format() goes through `decimal`, which refuses such exponents
    if len(text) <= 24:
        return f"= {text}"
    size = "far below 1e-308" if abs(value) < 1 else "far above 1e+308"
    return f"{size} in size, negative" if value < 0 else size


def lime_derivation(size: int | None = None, width: float = 0.25) -> dict:
    """Everything `derive lime` prints: symbolic forms, proofs, limits, optional values."""
    inverse = mg.derive_inverse()
    stated = mg.mg_statement()
    wide, wide_stated = mg.wide_kernel_limits(), mg.mg_limit_statement()
    out = {
        "kernel": mg.kernel(),
        "kept_probability": {f"p={p}": mg.kept_probability(p) for p in range(3)},
        "alpha": {f"alpha_{p}": mg.alpha(p) for p in range(3)},
        "sigma": inverse.sigma,
        "proofs": {
            "Sigma X = I and X Sigma = I in the block algebra (every d)": inverse.proved_right and inverse.proved_left,
            **{f"{k} equals Mardaoui & Garreau's statement": sp.simplify(inverse.sigma[k] - stated[k]) == 0
               for k in stated},
            **{f"{k} limit (nu -> oo) equals docs/theory.md": sp.simplify(wide[k] - wide_stated[k]) == 0
               for k in wide_stated},
        },
        "wide_kernel_limits": wide,
        "large_d_limits": mg.large_d_limits(),
    }
    if size is not None:
        out["values"] = {"d": size, "nu": width, **lime_values(size, width)}
    return out


def lime_text(derivation: dict) -> str:
    lines = ["LIME for text: Mardaoui & Garreau's constants, derived by SymPy from the sampling scheme.",
             "(s ~ Uniform{1..d} features removed, then a uniform s-subset; kernel on the cosine distance.)",
             "", "== kernel pi(s) ==", f"pi = {derivation['kernel']}", "", "== law of z =="]
    lines += [f"P(p given features kept | s removed), {k}: {v}" for k, v in derivation["kept_probability"].items()]
    lines += ["", "== alpha_p = E[pi z_j1 ... z_jp] =="]
    lines += [f"{k} = {v}" for k, v in derivation["alpha"].items()]
    lines += ["", "== Sigma^{-1} = [[sigma_0, sigma_1 1^T], [sigma_1 1, (sigma_2 - sigma_3) I + sigma_3 J]] =="]
    lines += [f"{k} = {v}" for k, v in derivation["sigma"].items()]
    lines += ["", "== nu -> oo =="] + [f"{k} -> {v}" for k, v in derivation["wide_kernel_limits"].items()]
    lines += ["", "== then d -> oo =="] + [f"{k} -> {v}" for k, v in derivation["large_d_limits"].items()]
    lines += ["", "== proofs =="] + [f"{'yes' if ok else 'NO '}  {name}" for name, ok in derivation["proofs"].items()]
    if "values" in derivation:
        v = derivation["values"]
        digits = "exact" if math.isinf(v["nu"]) else "30 digits"
        lines += ["", f"== values at d = {v['d']}, nu = {v['nu']:g} (SymPy, {digits}) =="]
        lines += [f"{k} = {v[k]:.6g}" for k in ("alpha_0", "alpha_1", "alpha_2", "sigma_0", "sigma_1",
                                              "sigma_2", "sigma_3")]
    return "\n".join(lines)


def lime_json(derivation: dict) -> dict:
    out = {
        "kernel": str(derivation["kernel"]),
        "alpha_symbolic": {k: str(v) for k, v in derivation["alpha"].items()},
        "sigma_symbolic": {k: str(v) for k, v in derivation["sigma"].items()},
        "wide_kernel_limits": {k: str(v) for k, v in derivation["wide_kernel_limits"].items()},
        "large_d_limits": {k: str(v) for k, v in derivation["large_d_limits"].items()},
        "proofs": derivation["proofs"],
    }
    if "values" in derivation:
        out.update(derivation["values"])
    return out


def eq19_text(spec: ModelSpec) -> str:
    d = eq19_theory.derive_eq19(spec)
    lines = ["Eq. (19) of Lopardo et al. derived from LIME's exact limit, one assumption per step.",
             f"statement: beta_j = {d.statement}", ""]
    for number, step in enumerate(d.steps, start=1):
        coefficient = "" if step.coefficient is None else f"   coefficient of c_j: {step.coefficient}"
        lines.append(f"{number}. {step.name}: {step.assumption}{coefficient}")
    lines += ["", f"end of the chain: beta_j = {d.derived}",
              f"equal to the statement for every size: {'yes' if d.proved else 'NO'}"]
    if d.unmet:
        lines += ["spec assumptions the chain needs but this spec breaks:"]
        lines += [f"  {k}: {v}" for k, v in d.unmet.items()]
    consistent = eq19_theory.derive_eq19(spec, route="consistent")
    lines += ["", "== the same chain with independence applied consistently (steps 1-4 as above) =="]
    for number, step in enumerate(consistent.steps[4:], start=5):
        lines.append(f"{number}'. {step.name}: {step.assumption}   coefficient of c_j: {step.coefficient}")
    ratio = sp.nsimplify(d.coefficient / consistent.coefficient)
    lines += [f"end of the chain: beta_j = {consistent.derived}",
              f"equal to the statement: {'yes' if consistent.proved else 'no'}; Eq. (19) / this = {ratio}",
              "", "The 3/2 appears at step 5, which treats the mask entries as independent in Gamma while keeping",
              "the exact Sigma^{-1}; the same independence in both (5') keeps the coefficient 1, as steps 1-4 do."]
    case = eq19_theory.equal_score_case(spec)
    lines += ["", "== equal scores (W_k = 0): exact limit vs Eq. (19) ==",
              f"exact limit: {case['exact_limit']}", f"Eq. (19) / exact = {case['ratio']}  "
              f"(proved for every nu, d: {'yes' if case['proved'] else 'no'})"]
    improved = eq19_theory.derive_improved(spec)
    lines += ["", "== improved closed form: d f / d z_j of the ratio form at zbar = alpha_1/alpha_0 ==",
              "per head (logit link): (u_j - f_i(zbar) v_j) / N_i(zbar), u_j = sum_{t in P_j} (w_t s_t - w~_t s~_t),",
              "v_j = sum_{t in P_j} (w_t - w~_t), N_i(zbar) = sum_t w~_t + zbar sum_j v_j; as derived by sympy.diff:",
              readable(improved.derived) if improved.derived is not None else improved.note]
    lines += ["", *shell_lines()]
    return "\n".join(lines)


def shell_lines() -> list[str]:
    """The shell form's derivation (`theory.lime_shell`): exact shell decomposition, the
    SymPy-derived k-subset moments, and the one approximation (first order in each shell)."""
    r = lime_shell.derive_shell()
    k = sp.Symbol("k", integer=True, nonnegative=True)

    def in_k(expr: sp.Expr) -> sp.Expr:  # shown with k = d - s kept, as in the text
        return sp.collect(sp.factor(expr.subs(mg.s, mg.d - k)), [lime_shell.f_s, lime_shell.g_j, lime_shell.G],
                          sp.factor)

    return [
        "== shell form: first order within each removal-count shell (both removal modes) ==",
        "exact: Gamma = sum_{s=1..d} P(s) pi(s) E[(1, z) f | s]; given s, z is a uniform subset of k = d - s kept",
        f"  P(s) pi(s) = {r.weight}",
        f"  E[z_j | s] = {in_k(r.mean)};  E[z_j z_l | s] = {in_k(r.pair)}  (counted subsets)",
        "approximation: f(z) ~ f_s + sum_l g_sl (z_l - q) in shell s, f_s = f(q 1), g_s = grad f(q 1), q = k/d",
        f"  E[f | s] = {r.gamma_0}",
        f"  E[z_j f | s] = {in_k(r.gamma_j)}   (G = sum_l g_sl)",
        "  beta = Sigma^-1 Gamma (MG, exact); deletion: f is the deletion model with real-valued positions,",
        f"  each read through a Gaussian of variance Var(sum_l c_l z_l | s) = {in_k(r.variance)} (+ 0.5^2)",
        "  (C = sum_l c_l, Q = sum_l c_l^2, c_l = occurrences of word l up to the position)",
        "strata: the m words that dominate attention are held exactly; each shell splits into their 2^m states,",
        f"  P(state with a of them kept | s) = {in_k(r.stratum)}  (counted subsets),",
        "  and the expansion runs over the other d - m words with the moments above at (d - m, k - a)",
        "checks: " + ", ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in r.checks.items()),
    ]


def _route_json(d: eq19_theory.Eq19Derivation) -> dict:
    return {"steps": [{"name": s.name, "assumption": s.assumption, "expression": str(s.expression),
                       "coefficient": None if s.coefficient is None else str(s.coefficient)} for s in d.steps],
            "derived": str(d.derived), "coefficient": str(d.coefficient), "proved": d.proved}


def eq19_json(spec: ModelSpec) -> dict:
    d = eq19_theory.derive_eq19(spec)
    case = eq19_theory.equal_score_case(spec)
    improved = eq19_theory.derive_improved(spec)
    shell = lime_shell.derive_shell()
    return {
        "statement": str(d.statement),
        "steps": [{"name": s.name, "assumption": s.assumption, "expression": str(s.expression),
                   "coefficient": None if s.coefficient is None else str(s.coefficient)} for s in d.steps],
        "derived": str(d.derived), "proved": d.proved, "unmet": d.unmet, "coefficient": str(d.coefficient),
        "consistent": _route_json(eq19_theory.derive_eq19(spec, route="consistent")),
        "equal_scores": {"exact_limit": str(case["exact_limit"]), "ratio": str(case["ratio"]),
                         "proved": case["proved"]},
        "improved": None if improved.derived is None else str(improved.derived),
        "shell": {"weight": str(shell.weight), "mean": str(shell.mean), "pair": str(shell.pair),
                  "gamma_0": str(shell.gamma_0), "gamma_j": str(shell.gamma_j), "variance": str(shell.variance),
                  "stratum": str(shell.stratum),
                  "checks": shell.checks},
    }
