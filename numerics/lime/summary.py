"""LIME, its limit and Eq. (19) for one text, as plain JSON-ready data (`attnverify explain`).

Every list is aligned with ``lime_words`` (the d distinct words, first occurrence first).
"""

from __future__ import annotations

import jax
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.lime import eq19_form as lime_eq19
from attnverify.numerics.lime import finite_n
from attnverify.numerics.lime import ratio_form as lime_ratio
from attnverify.numerics.lime import shell_form as lime_shell
from attnverify.numerics.lime.engine import lime_explain
from attnverify.numerics.lime.limit import beta_limit
from attnverify.theory import eq19 as eq19_theory

from attnverify.errors import InputError
from attnverify.spec import ModelSpec


def lime_record(explanation, *, n_samples: int, runs: int, nu: float, removal: str, seed: int) -> dict:
    """The JSON record of one `engine.lime_explain` result: words, coefficients per run,
    intercepts and the settings that produced them."""
    return {
        "lime_words": explanation.words,
        "lime_coef": explanation.coef.tolist(),
        "lime_intercept": explanation.intercept.tolist(),
        "lime_settings": {"n_samples": n_samples, "runs": runs, "nu": nu, "removal": removal, "ridge": 1.0,
                          "seed": seed, "path": explanation.path},
    }


def limit_fields(limit, d: int, *, output: float, n_samples: int, nu: float) -> dict:
    """The JSON fields of a `beta_limit` result: the limit, how it was computed, its standard error,
    and where LIME sits at `n_samples` (`finite_n.causes`, ridge 1 as lime): ``lime_centre``, its
    relative L2 distance to the limit ``lime_centre_gap``, and that distance with one cause alone,
    ``lime_centre_gap_causes`` (``first_sample``: row 0 without the ridge; ``ridge``: the ridge
    without row 0). None, with ``lime_centre_reason``, where the limit is rounding noise next to the
    output or the centre is not a number. `output`: the model's output on the document (row 0)."""
    method = (f"exact (enumeration of 2^{d} - 1 masks)" if limit.method == "exact"
              else f"monte_carlo ({limit.evaluations} masks, batch-means standard error in lime_limit_stderr)")
    out = {"lime_limit": limit.beta.tolist(), "lime_limit_method": method,
           "lime_limit_stderr": None if limit.stderr is None else limit.stderr.tolist()}
    centre = finite_n.causes(limit.intercept, limit.beta, output, nu=nu, n=n_samples, ridge=1.0)
    if isinstance(centre, str):  # why there is none
        return {**out, "lime_centre": None, "lime_centre_gap": None, "lime_centre_gap_causes": None,
                "lime_centre_reason": centre}
    return {**out, "lime_centre": centre.coef.tolist(), "lime_centre_gap": centre.gap,
            "lime_centre_gap_causes": {"first_sample": centre.first_sample, "ridge": centre.ridge}}


def lime_summary(
    params: nm.Params, tokens, words: list[str], spec: ModelSpec, *, n_samples: int = 5000, runs: int = 1,
    nu: float = 0.25, removal: str = "delete", seed: int = 0, limit_samples: int = 2**18,
    output: float | None = None,
) -> dict:
    """LIME runs, beta^inf, Eq. (19) and the improved form for the words of one document.

    Returns ``lime_words``, ``lime_coef`` (runs lists of d), ``lime_intercept``,
    ``lime_limit`` (None when undefined), ``lime_limit_method`` (how it was computed, or why
    not), ``lime_limit_stderr``, ``lime_centre`` and its gaps (`limit_fields`; `output`,
    the model's output on the text, is computed when not given), ``eq19`` (the paper's formula),
    ``eq19_improved`` (None when
    not derived for the spec, d = 1, or lost to rounding: then ``eq19_improved_reason`` says so),
    ``eq19_shell`` (the shell form for the same removal mode; None when not defined for the spec,
    d = 1, or lost to rounding: then ``eq19_shell_reason`` says so) and the settings.
    """
    key_lime, key_limit = jax.random.split(jax.random.PRNGKey(seed))
    explanation = lime_explain(params, tokens, spec, key=key_lime, words=words, n_samples=n_samples, runs=runs,
                               nu=nu, removal=removal)
    d = len(explanation.words)
    out = lime_record(explanation, n_samples=n_samples, runs=runs, nu=nu, removal=removal, seed=seed)
    try:
        limit = beta_limit(params, tokens, spec, words=words, nu=nu, removal=removal, n_mc=limit_samples,
                           key=key_limit)
    except InputError as err:
        out.update(lime_limit=None, lime_limit_method=f"undefined: {err}", lime_limit_stderr=None)
    else:
        if output is None:
            output = float(jax.jit(nm.explained_output, static_argnames="spec")(
                params, nm.embed(params, tokens, spec), spec=spec))
        out.update(limit_fields(limit, d, output=output, n_samples=n_samples, nu=nu))
    out["eq19"] = lime_eq19.eq19_approximation(params, tokens, spec, words=words).tolist()
    # Why a form is not computed at all (None: it is): both approximate beta^inf, undefined for d = 1.
    one_word = f"d = {d}: it approximates the large-sample limit, undefined for one word" if d < 2 else None
    not_derived = ("not derived for this spec" if eq19_theory.derive_improved(spec).derived is None
                   else lime_ratio.unsupported(spec))
    skipped = {"eq19_improved": not_derived or one_word,
               "eq19_shell": lime_shell.unsupported(spec, removal) or one_word}
    out["eq19_improved"] = (None if skipped["eq19_improved"] else
                            lime_eq19.improved_approximation(params, tokens, spec, nu=nu, words=words).tolist())
    out["eq19_shell"] = (None if skipped["eq19_shell"] else
                         lime_shell.shell_approximation(params, tokens, spec, nu=nu, removal=removal,
                                                        words=words).tolist())
    out.update({f"{form}_reason": reason for form, reason in skipped.items() if reason})
    # A form that is not a number gets no value and a reason. The shell form multiplies by Sigma^-1,
    # whose entries leave float64's range at a narrow kernel (docs/theory.md §5); the improved form
    # needs only the mean mask, computed without underflow (`constants.mean_mask`).
    reasons_if_lost = {
        "eq19_improved": f"it is not finite at d = {d}, nu = {nu}",
        "eq19_shell": (f"Sigma^-1 Gamma is not computable in floating point at d = {d}, nu = {nu} "
                       "(Sigma nearly singular at this narrow kernel); use a wider kernel"),
    }
    for form, reason in reasons_if_lost.items():
        if out[form] is not None and not np.all(np.isfinite(out[form])):
            out[form], out[f"{form}_reason"] = None, reason
    if not np.all(np.isfinite(out["eq19"])):
        raise InputError("Eq. (19) is not finite for this model and text")
    return out


def reasons(result: dict) -> list[str]:
    """The lines that say why forms of an `explain` result are not numbers (after its LIME table),
    and, where LIME at its n sits far from its limit, how far and why."""
    lines = []
    gap = result.get("lime_centre_gap")
    if gap is not None and gap > finite_n.NOTED_GAP:
        n, alone = result["lime_settings"]["n_samples"], result["lime_centre_gap_causes"]
        lines.append(f"note: at n = {n}, LIME's coefficients are centred {gap:.2g} (relative L2) away from the limit: "
                     f"lime's ridge (1, the intercept free) and its first sample (the text itself, weight 1) weigh "
                     f"against the rare masks that fix the limit (alone they give {alone['ridge']:.2g} and "
                     f"{alone['first_sample']:.2g}; lime_centre in --json; docs/theory.md §5, \"LIME at finite n\")")
    if result.get("eq19_reason"):  # a plugin model: the paper-model forms do not apply
        return lines + [f"eq19, improved, shell: not computed ({result['eq19_reason']})"]
    return lines + [f"{name}: not computed ({result[key]})" for name, key in
                    (("improved", "eq19_improved_reason"), ("shell", "eq19_shell_reason")) if result.get(key)]
