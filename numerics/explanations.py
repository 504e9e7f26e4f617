"""The six attention and gradient explanations of docs/theory.md §2 and §3.4, per word position.

Gradients come from `jax.grad` of the true model (what the model really does); the
closed forms are checked against it by the Theorem 1 claims. Values are reported per
position t = 1..L ([CLS] and padding excluded).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.related.integrated_gradients import baseline, integrated_gradients, refined

from attnverify.spec import ModelSpec

NAMES = ("alpha_avg", "alpha_max", "grad_avg", "grad_l1", "grad_l2", "grad_x_input")
#: Explanations whose largest |value| is at most this times |output| are rounding noise: a LIME fit
#: of an output that its perturbations do not change (every word unknown, say) gives ~1e-16.
ROUNDING_NOISE = 1e-12


def is_rounding_noise(values, output: float) -> bool:
    """Whether every value is at rounding level next to the model's output (`ROUNDING_NOISE`)."""
    values = np.asarray(values, np.float64)
    return values.size == 0 or float(np.abs(values).max()) <= ROUNDING_NOISE * abs(output)


#: Integrated Gradients of the true model (docs/theory.md §8.6), from the all-UNK document.
IG_BASELINE = "unk"


@functools.partial(jax.jit, static_argnames=("spec",))
def explain_positions(params: nm.Params, tokens: jnp.ndarray, spec: ModelSpec) -> dict[str, jnp.ndarray]:
    """Every explanation at every position (length-T arrays) plus the explained output, and the
    output at IG's baseline (`explain` checks IG's completeness against their difference)."""
    e = nm.embed(params, tokens, spec)
    g = nm.output_gradient(params, e, spec)
    return {"logit": nm.explained_output(params, e, spec), **per_position(nm.attention(params, e, spec), g, e),
            "baseline_output": nm.explained_output(params, baseline(params, tokens, spec, IG_BASELINE), spec)}


def l2_norm(g: jnp.ndarray) -> jnp.ndarray:
    """Each row's Euclidean norm, scaled by its largest entry first: the squares of a row of 1e-158
    underflowed to 0 (and those of 1e155 would overflow), and G-l2 printed 0 beside a G-l1 of 4.8e-158."""
    scale = jnp.max(jnp.abs(g), axis=1)
    scalable = jnp.isfinite(scale) & (scale > 0)
    safe = jnp.where(scalable, scale, 1)
    return jnp.where(scalable, safe * jnp.sqrt(((g / safe[:, None]) ** 2).sum(axis=1)), scale)  # 0, NaN, inf kept


def per_position(alpha: jnp.ndarray, g: jnp.ndarray, e: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """The attention and gradient explanations of every position, from the attention weights
    alpha (K, T), the gradient g and the embeddings e (T, d_e), for any model."""
    return {
        "alpha_avg": alpha.mean(axis=0),
        "alpha_max": alpha.max(axis=0),
        "grad_avg": g.mean(axis=1),
        "grad_l1": jnp.abs(g).sum(axis=1),
        "grad_l2": l2_norm(g),
        "grad_x_input": (e * g).sum(axis=1),
    }


def explain(params: nm.Params, tokens: jnp.ndarray, spec: ModelSpec, n_words: int) -> dict:
    """Plain-Python explanations of words 1..n_words: ``{name: [float]}``, ``logit``, and ``ig``
    (Integrated Gradients with the UNK baseline, named in ``ig_baseline``)."""
    tokens = jnp.asarray(tokens)
    return explained(explain_positions(params, tokens, spec), n_words,
                     lambda order: integrated_gradients(params, tokens, spec, kind=IG_BASELINE, order=order))


def explained(values: dict, n_words: int, ig_at) -> dict:
    """`explain`'s record, for any model, from its `explain_positions` values (``logit``, `NAMES`,
    ``baseline_output``) and ``ig_at(order)``, IG with that many nodes: words 1..n_words of each
    explanation, and ``ig`` (None where it is undefined or did not converge, with ``ig_reason``), its
    baseline and the Gauss-Legendre nodes used (`integrated_gradients.refined`)."""
    out = {"logit": float(values["logit"])}
    for name in NAMES:
        out[name] = [float(x) for x in values[name][1 : n_words + 1]]
    ig, nodes, reason = refined(ig_at, out["logit"] - float(values["baseline_output"]))
    out |= {"ig": None if ig is None else [float(x) for x in ig[1 : n_words + 1]], "ig_baseline": IG_BASELINE,
            "ig_nodes": nodes}
    return out if reason is None else {**out, "ig_reason": reason}


def _output_named(spec) -> str:
    """The output link, or, for a plugin that writes its own output, that plugin's ``Model.output``
    (a tanh of the logit is not the logit the spec's link names)."""
    plugin = getattr(spec, "plugin", None)
    if plugin is not None:
        from attnverify.theory.plugin import overridden

        if "output" in overridden(plugin.model):
            return f"{plugin.name}'s Model.output"
    return spec.output_link


def explain_text(result: dict, spec, *, lime_samples: int | None) -> str:
    """`explain`'s text output (the command's, and the API's `ExplainResult` repr): the explained
    output, a row per token, and with LIME a row per word beside its limit and closed forms."""
    lines = [f"explained output ({_output_named(spec)}, class {spec.explained_class}): {result['logit']:+.6g}",
             f"{'token':>16s}" + "".join(f"{n:>14s}" for n in NAMES)]
    lines += [f"{word[:16]:>16s}" + "".join(f"{result[n][j]:>14.5g}" for n in NAMES)
              for j, word in enumerate(result["tokens"])]
    if lime_samples is not None:
        from attnverify.numerics.lime.summary import reasons

        settings = result["lime_settings"]
        lines += ["", f"LIME ({settings['removal']}, nu={settings['nu']:g}, n={lime_samples}, "
                      f"mean of {settings['runs']} run(s)); limit: {result['lime_limit_method']}",
                  f"{'word':>16s}{'lime':>12s}{'limit':>12s}{'eq19':>12s}{'improved':>12s}{'shell':>12s}"]
        for j, word in enumerate(result["lime_words"]):
            cells = [sum(run[j] for run in result["lime_coef"]) / settings["runs"]]
            cells += [result[k][j] if result[k] is not None else float("nan")
                      for k in ("lime_limit", "eq19", "eq19_improved", "eq19_shell")]
            lines.append(f"{word[:16]:>16s}" + "".join(f"{c:>12.5g}" for c in cells))
        lines += reasons(result)
    return "\n".join(lines)
