"""Lopardo et al.'s LIME approximation ("Eq. (19)"; docs/theory.md §6), derived step by step.

`eq19_statement` is the formula as the paper (its code) states it, typed once:

    beta_j ~ 3/(2K) sum_i sum_{t in P_j} (alpha_t^(i) s_t^(i) - alpha~_t^(i) s~_t^(i)).

`derive_eq19(spec)` reaches it from LIME's exact large-sample limit (`theory.mardaoui_garreau`) by a
chain of steps, each a SymPy operation with its assumption named (`Step`):

1. *ratio form* — in-place UNK replacement and a constant query make each head
   ``N_i(z) / D_i(z)`` with numerator and normaliser affine in z (exact on binary masks);
2. *normaliser fixed* — D_i(z) is held at its value in the original document for the kept
   words and in the all-UNK document for the removed ones: f becomes additive in z;
3. *coefficients* — ``c_j = d f / d z_j`` by `sympy.diff` (exact for an additive f);
4. *MG, exact* — for an additive f, Sigma^{-1} Gamma^f returns c_j for every nu and d;
5. *independence in Gamma only* — in Gamma^f, E[pi z_j z_k] is replaced by
   E[pi z_j] E[pi z_k] / E[pi] (the mask entries treated as independent) while Sigma^{-1}
   keeps Mardaoui & Garreau's exact entries: beta_j = kappa c_j + lambda sum_k c_k;
6. *wide kernel* — nu -> oo (`sympy.limit`);
7. *large d* — d -> oo, the mean coefficient sum_k c_k / d dropped.

The coefficient of c_j stays 1 through step 4; **the 3/2 comes from step 5 applying the
independence to Gamma but not to Sigma** (kappa = alpha_1 (alpha_0 - alpha_1) / (alpha_0
(alpha_1 - alpha_2)), 3/2 after steps 6-7). Independence itself does not produce it:
`derive_eq19(spec, route="consistent")` applies the same replacement to both Sigma and Gamma
(5'), and then Sigma^{-1} Gamma^f = (c_0, c) again for an additive f, so the coefficient is 1
at every step and the chain ends on c_j = 2/3 of Eq. (19) — the exact limit when all scores
are equal (docs/theory.md §6.3, `equal_score_case`). Whether the paper's route is step 5 is
unconfirmed; it is *a* derivation that lands exactly on the stated formula, and every step
can be checked against the exact limit.

`derive_improved(spec)` keeps step 1 (exact) and replaces steps 2-7 by a first-order
expansion of the ratio form around the kernel-weighted mean mask z = alpha_1/alpha_0,
which accounts for the renormalisation of attention after removal and keeps finite d, nu.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp
from attnverify.theory import mardaoui_garreau as mg
from attnverify.theory import memo
from attnverify.theory import symbols as S
from attnverify.theory.calculus import normal_form, prove_equal

from attnverify.spec import ModelSpec

#: Features: the free index j of a coefficient, and a second feature index k.
j = sp.Symbol("j", integer=True, nonnegative=True)
k = sp.Symbol("k", integer=True, nonnegative=True)
D = mg.d  # number of features
#: The range of the free feature index, passed to every `normal_form` / `prove_equal` here
#: (docs/theory.md §10.6, rule R1): only this module's j ranges over the d features, not a symbol
#: that some other derivation (a plugin's, say) happens to call j.
RANGES = {j: (sp.Integer(0), D - 1)}

# Per-head, per-position quantities (arrays bound by `numerics.lime.eq19_form`):
P = sp.IndexedBase("P")  # [j, t]: 1 if word position t holds feature j
z = sp.IndexedBase("z")  # [j]: the mask
alpha = sp.IndexedBase("alpha")  # [i, t]: attention in the original document
alpha_t = sp.IndexedBase("alpha~")  # [i, t]: attention in the all-UNK document
s = sp.IndexedBase("s")  # [i, t]: read-out s_t^(i) (explained class), original document
s_t = sp.IndexedBase("s~")  # [i, t]: read-out in the all-UNK document
w = sp.IndexedBase("w")  # [i, t]: exp(gamma_t^(i) - shift_i), original document
w_t = sp.IndexedBase("w~")  # [i, t]: the same in the all-UNK document
b = sp.IndexedBase("b")  # [i]: head bias b_l (0 without biases)
zbar = sp.IndexedBase("zbar")  # [0]: the kernel-weighted mean mask entry alpha_1 / alpha_0

#: Axis sizes of each array above (for the compiler in `numerics.lime.eq19_form`).
AXES = {
    "P": (D, S.T), "z": (D,), "alpha": (S.K, S.T), "alpha~": (S.K, S.T), "s": (S.K, S.T),
    "s~": (S.K, S.T), "w": (S.K, S.T), "w~": (S.K, S.T), "b": (S.K,), "zbar": (1,),
}

# Symbols of the MG chain: a generic coefficient c_j, the total C = sum_k c_k, the constant.
c_j, C_total, c_0 = sp.symbols("c_j C c_0", real=True)


def eq19_statement() -> sp.Expr:
    """Eq. (19) as stated (docs/theory.md §6.1), free index j: the paper's 3/2 and 1/K."""
    i, t = S.i, S.t
    body = P[j, t] * (alpha[i, t] * s[i, t] - alpha_t[i, t] * s_t[i, t])
    return sp.Rational(3, 2) / S.K * sp.Sum(sp.Sum(body, (t, 0, S.T - 1)), (i, 0, S.K - 1))


# -- the model under in-place replacement -----------------------------------------------------
def mask_at(t) -> sp.Expr:
    """Z_t = sum_k P[k, t] z[k]: 1 when position t's word is kept (0 at [CLS]/padding, where
    the word and the all-UNK quantities coincide, so its value does not matter)."""
    return sp.Sum(P[k, t] * z[k], (k, 0, D - 1))


def interpolation_lemma() -> bool:
    """For binary Z, g(Z) = Z g(1) + (1 - Z) g(0) for any g (checked at Z = 0 and Z = 1):
    the per-position term exp(gamma_t(z)) s_t(z) is affine in the mask."""
    Z = sp.Symbol("Z")
    g = sp.Function("g")
    affine = Z * g(1) + (1 - Z) * g(0)
    return all(sp.simplify(affine.subs(Z, v) - g(v)) == 0 for v in (0, 1))


def _aggregate(spec: ModelSpec, per_head: sp.Expr) -> sp.Expr:
    total = sp.Sum(per_head, (S.i, 0, S.K - 1))
    return total / S.K if spec.head_aggregation == "mean" else total


def _link(spec: ModelSpec, logit: sp.Expr) -> sp.Expr:
    if spec.output_link == "sigmoid":
        return 1 / (1 + sp.exp(-logit))
    return logit  # "softmax" is not derived here (see `derive_improved`)


def ratio_form(spec: ModelSpec) -> sp.Expr:
    """f(z): each head N_i(z)/D_i(z) + b_i with N, D affine in z (step 1, exact on {0,1}^d)."""
    i, t = S.i, S.t
    Z = mask_at(t)
    numerator = sp.Sum(Z * w[i, t] * s[i, t] + (1 - Z) * w_t[i, t] * s_t[i, t], (t, 0, S.T - 1))
    normaliser = sp.Sum(Z * w[i, t] + (1 - Z) * w_t[i, t], (t, 0, S.T - 1))
    return _link(spec, _aggregate(spec, numerator / normaliser + b[i]))


def fixed_normaliser_form(spec: ModelSpec) -> sp.Expr:
    """Step 2: kept terms over the original document's normaliser (alpha = w / sum w), removed
    terms over the all-UNK one (alpha~): f becomes additive in z."""
    i, t = S.i, S.t
    Z = mask_at(t)
    body = Z * alpha[i, t] * s[i, t] + (1 - Z) * alpha_t[i, t] * s_t[i, t]
    return _link(spec, _aggregate(spec, sp.Sum(body, (t, 0, S.T - 1)) + b[i]))


def coefficient(expr: sp.Expr) -> sp.Expr:
    """d expr / d z[j] by `sympy.diff`, deltas eliminated (`calculus.normal_form`)."""
    return normal_form(sp.diff(expr, z[j]), RANGES)


# -- LIME on an additive function, with exact or independent second moments ----------------------
def additive_beta(second_moment: sp.Expr, sigma_moment: sp.Expr | None = None) -> sp.Expr:
    """beta_j of f = c_0 + sum_k c_k z_k, Sigma^{-1} Gamma^f with the derived sigma.

    Gamma_0 = E[pi f], Gamma_j = E[pi z_j f] use E[pi] = alpha_0, E[pi z_j] = E[pi z_j^2] =
    alpha_1 and E[pi z_j z_k] = `second_moment` (alpha_2 for LIME's sampling). Sigma^{-1} is
    Mardaoui & Garreau's (`mardaoui_garreau.derive_inverse`) with E[pi z_j z_k] = `sigma_moment`
    in Sigma (default alpha_2, the exact entry): the sigma are rational in alpha_2, so
    substituting it inverts the Sigma built on that moment."""
    a0, a1, a2 = mg.alpha_sym[:3]
    sig = {k: v if sigma_moment is None else v.subs(a2, sigma_moment) for k, v in mg.derive_inverse().sigma.items()}
    gamma_0 = a0 * c_0 + a1 * C_total
    gamma_j = a1 * c_0 + a1 * c_j + second_moment * (C_total - c_j)
    gamma_sum = D * a1 * c_0 + a1 * C_total + second_moment * (D - 1) * C_total  # sum over j
    beta = sig["sigma_1"] * gamma_0 + (sig["sigma_2"] - sig["sigma_3"]) * gamma_j + sig["sigma_3"] * gamma_sum
    return sp.collect(sp.simplify(sp.expand(beta)), [c_j, C_total, c_0], sp.factor)


def independent_moment() -> sp.Expr:
    """E[pi z_j z_k] if the mask entries were independent given the kernel: E[pi z_j] E[pi z_k] / E[pi]."""
    a0, a1 = mg.alpha_sym[:2]
    return a1**2 / a0


@dataclass(frozen=True)
class Step:
    name: str
    assumption: str  # what the step assumes ("exact" when nothing)
    expression: sp.Expr  # beta_j (or f) after the step
    coefficient: sp.Expr | None = None  # the factor multiplying c_j after the step
    holds: bool | None = None  # does the assumption hold under the spec (None: approximation)


#: The two routes from step 4: independence in Gamma only (the paper's 3/2) or in Sigma and Gamma.
ROUTES = ("paper", "consistent")


@dataclass(frozen=True)
class Eq19Derivation:
    spec: ModelSpec
    steps: list[Step]
    derived: sp.Expr  # the end of the chain, in the per-position quantities (free: j)
    statement: sp.Expr  # eq19_statement(), as typed when the derivation was asked for
    proved: bool  # derived == statement for every size
    unmet: dict[str, str] = field(default_factory=dict)  # spec assumptions the chain needs
    route: str = "paper"
    coefficient: sp.Expr = sp.Integer(1)  # the factor of c_j at the end of the chain (a number)


def spec_assumptions(spec: ModelSpec) -> dict[str, str]:
    """The spec switches the ratio form and Eq. (19)'s constants rely on, when unmet."""
    unmet = {}
    if spec.query != "cls":
        unmet["query"] = "the query depends on the mask, so a head is not a ratio of affine functions"
    if spec.output_link != "logit":
        unmet["output_link"] = f"{spec.output_link} link: f is not additive even with the normaliser fixed"
    if spec.head_aggregation != "mean":
        unmet["head_aggregation"] = "heads are summed: the statement's 1/K does not apply"
    return unmet


@functools.lru_cache(maxsize=32)
@memo.on_disk  # seconds of SymPy: a later run reads it back (`theory.memo`)
def _chain(spec: ModelSpec, route: str) -> tuple[tuple[Step, ...], sp.Expr, sp.Expr]:
    """(steps, end of the chain, its coefficient of c_j): the statement plays no part here."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    a0, a1, a2 = mg.alpha_sym[:3]
    unmet = spec_assumptions(spec)
    exact = ratio_form(spec)
    fixed = fixed_normaliser_form(spec)
    c = coefficient(fixed)
    exact_mg = additive_beta(a2)
    if route == "paper":
        independent = additive_beta(independent_moment())  # Gamma only; Sigma^{-1} exact
        name, assumption = "independence in Gamma only", (
            "in Gamma, E[pi z_j z_k] = E[pi z_j] E[pi z_k] / E[pi] (mask entries independent); "
            "Sigma^{-1} kept exact (Mardaoui & Garreau)")
    else:
        independent = additive_beta(independent_moment(), independent_moment())
        name, assumption = "independence in Sigma and Gamma", (
            "E[pi z_j z_k] = E[pi z_j] E[pi z_k] / E[pi] in both Sigma and Gamma (mask entries independent)")
    kappa = sp.factor(sp.diff(independent, c_j))  # beta_j is linear in c_j and C
    lam = sp.factor(sp.diff(independent, C_total))
    wide = mg.wide_kernel_limits()
    at_wide = {a0: wide["alpha_0"], a1: wide["alpha_1"], a2: wide["alpha_2"]}
    kappa_wide, lam_wide = sp.factor(kappa.subs(at_wide)), sp.factor(lam.subs(at_wide))
    kappa_large = sp.limit(kappa_wide, D, sp.oo)
    derived = normal_form(kappa_large * c, RANGES)
    steps = (
        Step("ratio form", "in-place UNK replacement and a constant query (exact on binary masks)",
             exact, holds="query" not in unmet and interpolation_lemma()),
        Step("normaliser fixed", "softmax normaliser of the original document for kept words, of "
             "the all-UNK document for removed ones", fixed),
        Step("coefficients", "exact: f is additive, c_j = d f / d z_j", c),
        Step("MG, exact", "exact for every nu and d: LIME recovers an additive f", exact_mg,
             coefficient=sp.diff(exact_mg, c_j), holds=True),
        Step(name, assumption, independent, coefficient=kappa),
        Step("wide kernel", "nu -> oo", kappa_wide * c_j + lam_wide * C_total, coefficient=kappa_wide),
        Step("large d", "d -> oo and the mean coefficient sum_k c_k / d dropped" if lam_wide != 0
             else "d -> oo (lambda = 0: nothing to drop)", kappa_large * c_j, coefficient=kappa_large),
    )
    return steps, derived, kappa_large


@functools.lru_cache(maxsize=32)
def _proved(derived: sp.Expr, statement: sp.Expr) -> bool:
    return prove_equal(derived, statement, RANGES)


def derive_eq19(spec: ModelSpec, route: str = "paper") -> Eq19Derivation:
    """The chain of the module docstring for `spec` along `route` ("paper": independence in
    Gamma only, ending on 3/2; "consistent": in Sigma and Gamma, ending on 1), and whether it
    ends on the statement as `eq19_statement` types it now (read at every call, never cached
    with the chain, so a wrongly typed statement is reported as not proved)."""
    # The chain reads only these switches (sizes stay symbolic): one derivation serves every size.
    switches = ModelSpec(query=spec.query, head_aggregation=spec.head_aggregation, output_link=spec.output_link)
    steps, derived, kappa = _chain(switches, route)
    statement = eq19_statement()
    return Eq19Derivation(spec, list(steps), derived, statement, _proved(derived, statement),
                          spec_assumptions(spec), route, kappa)


# -- the exact special case of docs/theory.md §6.3 -----------------------------------------------------
@functools.lru_cache(maxsize=4)
def equal_score_case(spec: ModelSpec) -> dict[str, object]:
    """All scores equal (W_k = 0): alpha = alpha~ = 1/T, the normaliser is constant, f is
    exactly additive, LIME's limit is its coefficient (step 4), i.e. 2/3 of Eq. (19).

    Returns the symbolic exact limit, Eq. (19) under the same hypothesis, their ratio and
    whether the ratio simplifies to 2/3 (for every nu and d: no alpha appears).
    """
    t = S.t

    def constant(bases, value):
        return lambda e: e.replace(lambda x: isinstance(x, sp.Indexed) and x.base in bases, lambda x: value)

    # Equal scores: every w and w~ equal one constant W, so the ratio form's normaliser
    # sum_t (Z W + (1 - Z) W) = T W does not depend on z and f is exactly additive.
    W = sp.Symbol("W", positive=True)
    equal = constant((w, w_t), W)(ratio_form(spec))
    normaliser = normal_form(sp.Sum(mask_at(t) * W + (1 - mask_at(t)) * W, (t, 0, S.T - 1)), RANGES)
    normaliser_free_of_z = normal_form(sp.diff(normaliser, z[j]), RANGES) == 0
    exact_limit = coefficient(equal)  # MG, exact (step 4) on an additive f
    statement = normal_form(constant((alpha, alpha_t), 1 / S.T)(eq19_statement()), RANGES)
    ratio = sp.simplify(statement / exact_limit) if exact_limit != 0 else sp.nan
    return {
        "exact_limit": exact_limit,
        "eq19": statement,
        "ratio": ratio,
        "proved": normaliser_free_of_z
        and prove_equal(sp.Rational(3, 2) * exact_limit, statement, RANGES)
        and sp.simplify(additive_beta(mg.alpha_sym[2]) - c_j) == 0,
    }


# -- the improved closed form ----------------------------------------------------------------------
@dataclass(frozen=True)
class ImprovedDerivation:
    spec: ModelSpec
    derived: sp.Expr | None  # beta_j ~ d f / d z_j at z = zbar (free: j); None if not derived
    note: str


@functools.lru_cache(maxsize=16)
def derive_improved(spec: ModelSpec) -> ImprovedDerivation:
    """beta_j ~ d f / d z_j at the kernel-weighted mean mask, f the exact ratio form.

    Steps: ratio form (exact); first-order expansion of f around z = zbar 1 with zbar =
    alpha_1/alpha_0 (the only approximation: f ~ linear over the weighted neighbourhood);
    MG on the resulting additive function (exact). Finite d and nu enter through zbar.
    """
    if spec.query != "cls":
        return ImprovedDerivation(spec, None, "not derived: the ratio form needs a constant query")
    if spec.output_link == "softmax":
        return ImprovedDerivation(spec, None, "not derived for the softmax link (numerics uses jax.grad)")
    grad = coefficient(ratio_form(spec))
    at_mean = grad.replace(lambda e: isinstance(e, sp.Indexed) and e.base == z, lambda e: zbar[0])
    return ImprovedDerivation(spec, normal_form(at_mean, RANGES), "first order at the mean mask")
