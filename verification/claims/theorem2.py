"""Theorem 2 (Lopardo et al. 2024): LIME's limit approximated by Eq. (19). Group ``theorem2``.

Eq. (19) is an approximation: the identity claims below are the derivation (the chain's end,
kappa c_j with kappa = 3/2 from SymPy and c_j by `jax.grad` of the true model with its normaliser
fixed, against Eq. (19) as typed once), the exact special case (equal scores: 2/3), the improved
form's derivation and the shell form's exactness where it must be exact (linear f; the deletion
extension on binary masks); the approximation claims report how far Eq. (19), the consistent
chain (independence in Sigma and Gamma: coefficient 1) and the closed forms are from the exact
limit, and the shell-gain claims test the ">= 5x lower median error than Eq. (19)" target in
both removal modes at d = 16 and init scales 1, 2 and 3 (`attnverify sweep-eq19` gives the full
grid).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from attnverify.numerics.draws import draw_params
from attnverify.numerics.evaluations import shared
from attnverify.numerics.lime import eq19_form as lime_eq19
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.lime import fixed_normaliser as lime_fixed
from attnverify.numerics.lime import shell_form as lime_shell
from attnverify.numerics.lime import structured as lime_structured
from attnverify.numerics.lime.constants import mg_constants
from attnverify.numerics.lime.document import random_document
from attnverify.numerics.lime.limit import exact_gamma, limit_from_gamma
from attnverify.numerics.lime.sampling import sample_masks
from attnverify.numerics.token_keys import token_key
from attnverify.verification.blocks import relative_error
from attnverify.verification.claims.lime import EXACT, EXACT_REASON, NU, document_of, exact_limit, mask_key, sizes
from attnverify.verification.empirical import median_ratio, ratio
from attnverify.verification.registry import Claim, register

from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

# SymPy's side, loaded when a claim is first built or proved (`attnverify.lazy`).
theory = lazy_module("attnverify.theory.eq19")
lime_shell_theory = lazy_module("attnverify.theory.lime_shell")

SOURCE = "Lopardo, Precioso & Garreau (ICML 2024), Theorem 2 / 'Eq. (19)'; docs/theory.md §6"
#: The hypotheses of the formula's constants (1/K, logit output) and of the ratio form.
HYPOTHESES = {"query": "cls", "head_aggregation": "mean", "output_link": "logit"}


#: The claims below that are swept on the sweep's own draws (not the shell-gain claims, which draw
#: their own models) evaluate Eq. (19)'s arrays, the exact limit and c_j on the same draw: one program
#: computes them once for all (`verification.blocks`; results do not change with the selection).
EVALUATION = "theorem2"


def _arrays(spec: ModelSpec):
    """(the draw's document, Eq. (19)'s arrays on it, d), evaluated once per draw in a group."""
    def arrays(params, tokens):
        d, _ = sizes(spec)
        doc = document_of(tokens, spec)
        return doc, lime_eq19.quantities(params, doc, spec, d), d

    return shared((spec, "thm2.arrays"), arrays)


def _exact(spec: ModelSpec):
    """beta^inf at NU on the draw's document (enumeration)."""
    return shared((spec, "thm2.exact"), lambda params, tokens: exact_limit(params, document_of(tokens, spec), spec))


def _equal_scores_case(spec: ModelSpec):
    """The same model with W_k = 0 (every score equal): (beta^inf at NU and nu = oo, concatenated;
    Eq. (19))."""
    def case(params, tokens):
        params = params._replace(W_k=jnp.zeros_like(params.W_k))
        doc, arrays, d = _arrays(spec)(params, tokens)
        exact = jnp.concatenate([exact_limit(params, doc, spec, nu) for nu in (NU, float("inf"))])
        return exact, lime_eq19.statement(arrays, d)

    return shared((spec, "thm2.equal_scores"), case)


def _chain_coefficients(spec: ModelSpec):
    """c_j by `jax.grad` of the true model with the normaliser fixed (before the chain's kappa)."""
    def coefficients(params, tokens):
        doc, _, d = _arrays(spec)(params, tokens)
        return lime_fixed.chain_coefficients(params, doc, spec, d)

    return shared((spec, "thm2.chain"), coefficients)


def _chain_end(params, tokens, spec: ModelSpec, route: str):
    """kappa c_j: kappa, the chain's final coefficient, from SymPy (`theory.eq19`, 3/2 on the paper's
    route, 1 on the consistent one); c_j by `jax.grad` of the true model with the normaliser fixed."""
    kappa = float(theory.derive_eq19(spec, route).coefficient)
    return kappa * _chain_coefficients(spec)(params, tokens)


def _chain(spec: ModelSpec):
    def compare(params, tokens):
        _, arrays, d = _arrays(spec)(params, tokens)
        return _chain_end(params, tokens, spec, "paper"), lime_eq19.statement(arrays, d)

    return compare


def _consistent(spec: ModelSpec):
    def compare(params, tokens):
        return _chain_end(params, tokens, spec, "consistent"), _exact(spec)(params, tokens)

    return compare


def _equal_scores(scale: float):
    def build(spec: ModelSpec):
        def compare(params, tokens):
            exact, eq19 = _equal_scores_case(spec)(params, tokens)
            return exact, scale * jnp.concatenate([eq19, eq19])

        return compare

    return build


def _improved(arrays, spec: ModelSpec, d: int):
    """The improved form, or NaN where it is not derived (softmax link, mean query): such a
    spec is outside the claim's hypotheses and reports FAIL (hyp. unmet) instead of crashing."""
    if theory.derive_improved(spec).derived is None:
        return jnp.full((d,), jnp.nan)
    return lime_eq19.improved(arrays, spec, d, NU)


def _approximation(which: str):
    def build(spec: ModelSpec):
        def compare(params, tokens):
            _, arrays, d = _arrays(spec)(params, tokens)
            approx = lime_eq19.statement(arrays, d) if which == "eq19" else _improved(arrays, spec, d)
            return approx, _exact(spec)(params, tokens)

        return compare

    return build


def _improved_autodiff(spec: ModelSpec):
    def compare(params, tokens):
        doc, arrays, d = _arrays(spec)(params, tokens)
        return _improved(arrays, spec, d), lime_eq19.improved_autodiff(params, doc, spec, d, NU)

    return compare


def _proof_of_chain(spec: ModelSpec) -> str:
    derivation = theory.derive_eq19(spec)
    if derivation.proved:
        return "proved for all sizes"
    return "not proved" + (": " + ", ".join(derivation.unmet) if derivation.unmet else "")


def _proof_of_equal_scores(spec: ModelSpec) -> str:
    return "proved for all nu, d" if theory.equal_score_case(spec)["proved"] else "not proved"


register(Claim(
    id="thm2.chain_equals_statement",
    evaluation=EVALUATION,
    provenance="measured",  # our reconstruction of the route to Eq. (19) (docs/theory.md §6.6)
    group="theorem2",
    statement="The SymPy chain (ratio form, fixed normaliser, MG, independence in Gamma only with "
    "Sigma^-1 exact, nu, d -> oo) gives Eq. (19) as stated",
    source=SOURCE,
    lhs="kappa c_j: kappa = 3/2 from the chain (SymPy); c_j = jax.grad of the true model with its "
    "softmax normaliser fixed (numerics.lime.fixed_normaliser)",
    rhs="Eq. (19) as typed once (theory.eq19.eq19_statement), compiled",
    build=_chain,
    tolerance={"float64": 1e-12, "float32": 1e-5},
    tolerance_reason="T-term sums of attention times read-outs in two orders; measured ~1e-16 (float64)",
    requires=HYPOTHESES,
    proof=_proof_of_chain,
))

register(Claim(
    id="thm2.consistent_vs_exact",
    evaluation=EVALUATION,
    provenance="measured",
    group="theorem2",
    statement="The chain with independence applied consistently (to Sigma and Gamma: coefficient 1, i.e. "
    "2/3 of Eq. (19)) equals LIME's exact limit (replace mode, nu = 0.25) on random models",
    source="this project (theory.eq19, route 'consistent'); docs/theory.md §6",
    lhs="c_j (coefficient 1 from the chain, SymPy) by jax.grad of the model with its normaliser fixed",
    rhs="exact beta^inf (enumeration)",
    build=_consistent,
    tolerance=EXACT,
    tolerance_reason="as an identity (it is an approximation; compare its median error with thm2.eq19_vs_exact)",
    requires=HYPOTHESES,
    holds=False,
    finding="The consistent chain is an approximation too: max relative error {max_error:.3g} (max-norm) "
    "against the exact limit; it is exact only when every score is equal (thm2.equal_scores_two_thirds).",
))

register(Claim(
    id="thm2.equal_scores_two_thirds",
    evaluation=EVALUATION,
    provenance="measured",
    group="theorem2",
    statement="When every score is equal (W_k = 0) the exact limit is 2/3 of Eq. (19), at nu = 0.25 and oo",
    source="docs/theory.md §6.3 (derived)",
    lhs="exact beta^inf (enumeration, in-place replacement)",
    rhs="2/3 x Eq. (19)",
    build=_equal_scores(2 / 3),
    tolerance=EXACT,
    tolerance_reason=EXACT_REASON,
    requires=HYPOTHESES,
    proof=_proof_of_equal_scores,
))

register(Claim(
    id="thm2.equal_scores_eq19",
    evaluation=EVALUATION,
    provenance="measured",
    group="theorem2",
    statement="Eq. (19) equals the exact limit when every score is equal",
    source=SOURCE,
    lhs="exact beta^inf (enumeration, in-place replacement)",
    rhs="Eq. (19)",
    build=_equal_scores(1.0),
    tolerance=EXACT,
    tolerance_reason=EXACT_REASON,
    requires=HYPOTHESES,
    holds=False,
    finding="Eq. (19)'s 3/2 overshoots: with equal scores the exact limit is 2/3 of Eq. (19): an error of "
    "{max_error:.3g} relative to Eq. (19), the table's right-hand side, and of 1/2 relative to the limit, the "
    "denominator of thm2.eq19_vs_exact.",
))

register(Claim(
    id="thm2.eq19_vs_exact",
    evaluation=EVALUATION,
    provenance="measured",  # the paper gives Eq. (19) as an approximation: that it is no identity is measured here
    group="theorem2",
    statement="Eq. (19) equals LIME's exact limit (replace mode, nu = 0.25) on random models",
    source=SOURCE,
    lhs="Eq. (19), compiled",
    rhs="exact beta^inf (enumeration)",
    build=_approximation("eq19"),
    tolerance=EXACT,
    tolerance_reason="as an identity (it is an approximation; see the finding and sweep-eq19)",
    requires=HYPOTHESES,
    holds=False,
    finding="Eq. (19) is an approximation, not an identity: its relative error (max-norm) against the exact limit "
    "is {median_error:.3g} at the median of {draws} random models and {max_error:.3g} at the worst, which grows "
    "with the number of draws (it is no bound). With equal scores Eq. (19) is 3/2 of the limit, an error of 1/2 "
    "(thm2.equal_scores_eq19); see `attnverify sweep-eq19` for L2 error and correlation.",
))

register(Claim(
    id="thm2.improved_vs_exact",
    evaluation=EVALUATION,
    provenance="measured",
    group="theorem2",
    statement="The improved closed form (first order at the mean mask) equals the exact limit",
    source="this project (theory.eq19.derive_improved)",
    lhs="d f/d z_j of the ratio form at z = alpha_1/alpha_0, compiled",
    rhs="exact beta^inf (enumeration)",
    build=_approximation("improved"),
    tolerance=EXACT,
    tolerance_reason="as an identity (it is an approximation: compare its median error with thm2.eq19_vs_exact)",
    requires={"query": "cls", "output_link": "logit"},
    holds=False,
    finding="The improved form is an approximation too (max relative error {max_error:.3g}, max-norm); "
    "its median error, in the table, is the number to compare with Eq. (19)'s (thm2.eq19_vs_exact).",
))

register(Claim(
    id="thm2.improved_derived",
    evaluation=EVALUATION,
    provenance="measured",
    group="theorem2",
    statement="The SymPy-derived improved form equals jax.grad of the ratio-form extension at the mean mask",
    source="this project (theory.eq19.derive_improved)",
    lhs="sympy.diff of the ratio form, compiled",
    rhs="jax.grad of the ratio form (numerics.lime.ratio_form)",
    build=_improved_autodiff,
    tolerance={"float64": 1e-10, "float32": 1e-4},
    tolerance_reason="rounding of T-term sums; measured ~1e-16",
    requires={"query": "cls", "output_link": "logit"},
))


# -- the shell form (theory.lime_shell) --------------------------------------------------------
#: The shell form needs the structured deletion model (word + position split) under deletion.
STRUCTURED = {"query": "cls", "value_nonlinearity": "none", "scorer": "dot"}
#: The issue's target: the shell form's error at most 1/5 of Eq. (19)'s, as a median over draws.
GAIN = {"float64": 0.2, "float32": 0.2}


def _shell_linear(spec: ModelSpec):
    """A model linear in z (coefficients from the draw: Eq. (19)'s values, intercept b) has an
    exact first-order expansion in every shell, so the shell form must return its coefficients."""
    def compare(params, tokens):
        _, arrays, d = _arrays(spec)(params, tokens)
        c = lime_eq19.statement(arrays, d)
        c0 = jnp.sum(arrays["b"]) + 0.5

        def value_and_grad(point, s_rest):
            return jax.value_and_grad(lambda z: c0 + z @ c)(point)

        # Two features held exactly, as the shell form holds its dominant words: at most d - 2 of them, so that
        # two or more are expanded (with d - 1 held the one expanded feature's pair moments are 0/0).
        held = jnp.asarray([0, d - 1][:max(0, min(2, d - 2))], jnp.int32)
        return lime_shell.shell_limit(value_and_grad, d, NU, c.dtype, held), c

    return compare


#: The largest entry of Sigma (MG's constants at nu = 0.25) the shell claim's tolerance assumes: 28-41 from d = 4
#: on (40.7 at d = 4); 54 at d = 3 and 5,970 at d = 2, where Sigma^-1 amplifies rounding by as much more.
SIGMA_ASSUMED = 41.0


def _shell_linear_error(lhs, rhs):
    """The relative error in units of the rounding Sigma's constants allow (`SIGMA_ASSUMED`): at d = 2 a
    right shell form was 6.5e-10 off, above the 1e-10 that d >= 4 keeps under."""
    sigma = mg_constants(lhs.shape[0], NU, dtype=lhs.dtype).sigma
    return relative_error(lhs, rhs) / jnp.maximum(1.0, jnp.max(jnp.abs(sigma)) / SIGMA_ASSUMED)


def _shell_extension(spec: ModelSpec):
    def compare(params, tokens):
        d, _ = sizes(spec)
        doc = document_of(tokens, spec)
        tab = lime_structured.tables(params, spec, spec.max_len)
        form = lime_structured.delete_form(tab, doc.tokens, doc.feature, d)
        z = sample_masks(mask_key(tokens), 32, d, dtype=params.embedding.dtype)
        width = jnp.full((spec.max_len,), 1e-3, params.embedding.dtype)  # -> 0: Gaussians underflow to one-hot
        extension = jax.vmap(lime_shell.deletion_extension(form, tab, spec, width))(z)
        return extension, lime_structured.delete_outputs(form, tab, z, spec)

    return compare


#: The shell-gain claims draw their own model and document per draw (from `token_key`): the paper's
#: widths (`GAIN_SIZES`), d = 16 features over 24 words (1.5 per feature, as sweep-eq19), so that 12
#: of the 16 words are expanded (4 held exactly). The sweep's sizes and --scale do not apply.
GAIN_SIZES = {"d_embed": 128, "d_att": 64, "d_out": 64, "heads": 6, "vocab_size": 1000}
#: T: 64 under replacement; under deletion the enumeration costs O(K T) per mask (2^16 masks), so
#: the document fills the window (T = 25, no padding): 2x cheaper than T = 64, with the same median
#: ratios within their spread (measured at scales 1 / 3: 0.026 / 0.28 at T = 64 on 8 draws, 0.028 /
#: 0.25 at T = 25 on 128).
GAIN_T = {"replace": 64, "delete": 25}
GAIN_D, GAIN_WORDS = 16, 24
GAIN_STREAM = 41  # `token_key` stream of those models and documents
#: Masks per enumeration chunk: the sweep vmaps 128 draws, so a chunk's (draws, masks, T, K) terms
#: under deletion stay near 100 MB.
GAIN_CHUNK = {"replace": 2**12, "delete": 2**8}


def gain_spec(spec: ModelSpec, removal: str) -> ModelSpec:
    """The spec of the shell-gain claims' own models: `spec`'s switches at `GAIN_SIZES`."""
    return spec.replace(**GAIN_SIZES, max_len=GAIN_T[removal])


def _shell_gain_errors(removal: str, spec: ModelSpec):
    """Per draw, (the shell form's, Eq. (19)'s) relative L2 errors to the exact limit, one pair per
    init scale of `GAIN_HOLDS`: the same model keys and document at every scale, the scales one
    `lax.map` (one compiled body for the three claims of a removal mode)."""
    own = gain_spec(spec, removal)
    if lime_eval.fastest_path(True, own, removal) == "generic":
        return shared((spec, "thm2.shell_gain", removal), _not_computed)

    def errors(params, tokens):
        key_params, key_doc = jax.random.split(token_key(tokens, GAIN_STREAM))
        doc = random_document(key_doc, GAIN_D, GAIN_WORDS, own.max_len, own.vocab_size)

        def at(scale):
            model = draw_params(key_params, own, scale=scale, dtype=params.embedding.dtype)
            path = lime_eval.choose_path(model, own, removal)
            data, _ = lime_eval.prepare(model, doc, own, GAIN_D, path)
            gamma, _ = exact_gamma(data, doc, NU, spec=own, d=GAIN_D, removal=removal, path=path,
                                   chunk_size=GAIN_CHUNK[removal])
            exact = limit_from_gamma(gamma, GAIN_D, NU)[1:]
            shell = lime_shell.shell_form(model, doc, NU, spec=own, d=GAIN_D, removal=removal)
            eq19 = lime_eq19.statement(lime_eq19.quantities(model, doc, own, GAIN_D), GAIN_D)
            error = lambda a: jnp.linalg.norm(a - exact) / jnp.linalg.norm(exact)  # noqa: E731
            return error(shell), error(eq19)

        return jax.lax.map(at, jnp.asarray(tuple(GAIN_HOLDS), params.embedding.dtype))

    return shared((spec, "thm2.shell_gain", removal), errors)


def _not_computed(params, tokens):
    """NaN at every scale: where neither the ratio nor the structured evaluation serves the spec (only outside the
    claims' hypotheses: query='mean' for replacement; an additive or deep scorer or tanh values for deletion),
    the exact limit would evaluate the whole model of the paper's widths on 2^16 masks per draw and scale: 77 GB
    at once under replacement, and more than ten minutes for 32 draws under deletion. The claims are then
    reported as not computed outside their hypotheses, never judged."""
    nan = jnp.full((len(GAIN_HOLDS),), jnp.nan, params.embedding.dtype)
    return nan, nan


def _shell_gain(removal: str, scale: float):
    def build(spec: ModelSpec):
        errors, at = _shell_gain_errors(removal, spec), tuple(GAIN_HOLDS).index(scale)

        def compare(params, tokens):
            shell, eq19 = errors(params, tokens)
            return shell[at], eq19[at]

        return compare

    return build


def _proof_of_shell(spec: ModelSpec) -> str:
    checks = lime_shell_theory.derive_shell().checks
    return "moments derived: " + ", ".join(checks) if all(checks.values()) else "not derived: " + ", ".join(
        k for k, ok in checks.items() if not ok)


register(Claim(
    id="thm2.shell_linear_exact",
    evaluation=EVALUATION,
    provenance="measured",
    group="theorem2",
    statement="The shell form (first order in each removal-count shell) recovers a model linear in z exactly",
    source="this project (theory.lime_shell)",
    lhs="shell form of c_0 + z . c (SymPy-derived shell moments, MG Sigma^-1)",
    rhs="c",
    build=_shell_linear,
    tolerance=EXACT,
    tolerance_reason="sums over d shells times sigma (<= 41 from d = 4; the error is measured in units of "
    "max |sigma| / 41 where it is larger, at d = 2 and 3); measured max 7.6e-14, median 3.6e-14 (32 draws, nu = 0.25)",
    measure=_shell_linear_error,
    requires=HYPOTHESES,
    proof=_proof_of_shell,
))

register(Claim(
    id="thm2.shell_extension_exact",
    provenance="measured",
    group="theorem2",
    statement="The deletion extension (real-valued positions, Gaussian-read tables) equals the deletion "
    "model on binary masks as its widths go to 0",
    source="this project (numerics.lime.shell_form)",
    lhs="deletion_extension with widths 1e-3, on 32 LIME masks",
    rhs="lime_structured.delete_outputs (proved equal to the model by lime.structured_equals_model)",
    build=_shell_extension,
    tolerance={"float64": 1e-12, "float32": 1e-5},
    tolerance_reason="the same sums in another order; measured ~1e-16",
    requires=STRUCTURED,
))

#: Where the >= 5x target holds (measured here, see the module docstring): at init scales 1 and 2 in
#: both modes; at scale 3 sharper attention erodes the first-order expansion and the median gain
#: falls below 5x by the estimates (median ratios 0.30 and 0.25 at 128 draws), though neither bound
#: has yet excluded 0.2 there (inconclusive at 32 and at 128 draws: docs/lime.md).
GAIN_HOLDS = {1.0: True, 2.0: True, 3.0: False}
GAIN_FINDING = ("At init scale {scale:g} the target is missed: the median ratio of the shell form's error to "
                "Eq. (19)'s is {{median_ratio:.3g}} (target <= 0.2, a 5x gain; 90 % of draws below "
                "{{p90_ratio:.3g}}); sharper attention erodes the first-order expansion in each shell.")

for _removal, _setting in (("replace", "in-place replacement (the theory's setting)"),
                           ("delete", "deletion (lime's default)")):
    for _scale, _holds in GAIN_HOLDS.items():
        register(Claim(
            id=f"thm2.shell_gain_{_removal}.scale{_scale:g}",
            provenance="measured",
            group="theorem2",
            statement=f"The shell form's error to the exact limit is <= 1/5 of Eq. (19)'s (median over draws), "
            f"{_setting}, nu = 0.25, d = {GAIN_D} [random models of the paper's widths at T = {GAIN_T[_removal]}, "
            f"init scale {_scale:g}, drawn by the claim]",
            source="the issue's target for an improved closed form; this project (theory.lime_shell)",
            lhs="relative L2 error of the shell form to exact beta^inf (enumeration of 2^16 masks)",
            rhs="relative L2 error of Eq. (19) to the same",
            build=_shell_gain(_removal, _scale),
            evaluation=f"thm2.shell_gain_{_removal}",
            tolerance=GAIN,
            tolerance_reason="the target: >= 5x lower median error than Eq. (19) (median ratio <= 0.2)",
            requires={**HYPOTHESES, **(STRUCTURED if _removal == "delete" else {})},
            measure=ratio, summary=median_ratio, holds=_holds,
            finding=None if _holds else GAIN_FINDING.format(scale=_scale),
        ))
