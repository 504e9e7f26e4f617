"""Explanations of a plugin model (`attnverify explain --plugin`): the same records as
`numerics.explanations.explain` and `numerics.lime.summary.lime_summary`, computed on the
plugin's compiled forward (`numerics.plugin_model`).

Attention comes from the model's own ``alpha``; gradients, gradient x input and Integrated
Gradients from `jax.grad` of the compiled forward; LIME and its large-sample limit through
the generic evaluation path (`numerics.lime.evaluation`), which takes any JAX callable. The
structured and ratio paths, and Eq. (19) with its improved and shell forms, are formulas of
the paper's model: for a plugin each is None, with a one-line reason.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from attnverify.numerics import plugin_model as pm
from attnverify.numerics.explanations import IG_BASELINE, explained, per_position
from attnverify.numerics.lime import evaluation as lime_eval
from attnverify.numerics.related.integrated_gradients import ORDER, baseline, ig_of_gradient

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

#: Why the paper-model closed forms are not computed for a plugin model.
EQ19_REASON = "Eq. (19) and its improved and shell forms are the paper model's formulas, not the plugin's"


@functools.partial(jax.jit, static_argnames=("spec",))
def explain_positions(params, tokens: jnp.ndarray, spec: ModelSpec) -> dict[str, jnp.ndarray]:
    """Every explanation at every position (length-T arrays) plus the explained output."""
    e = pm.embed(params, tokens, spec)
    alpha = pm.attention(params, e, spec)
    g = pm.output_gradient(params, e, spec)
    b = baseline(pm.base_params(params), tokens, pm.base_spec(spec), IG_BASELINE)
    return {
        "logit": pm.explained_output(params, e, spec),
        **per_position(alpha, g, e),
        "ig": ig_of_gradient(lambda p, x: pm.output_gradient(p, x, spec), params, e, b, ORDER),
        "baseline_output": pm.explained_output(params, b, spec),
    }


@functools.partial(jax.jit, static_argnames=("spec", "order"))
def _ig(params, tokens: jnp.ndarray, spec: ModelSpec, order: int) -> jnp.ndarray:
    """IG with `order` nodes (`integrated_gradients.refined` asks for more than ORDER)."""
    e = pm.embed(params, tokens, spec)
    b = baseline(pm.base_params(params), tokens, pm.base_spec(spec), IG_BASELINE)
    return ig_of_gradient(lambda p, x: pm.output_gradient(p, x, spec), params, e, b, order)


def explain(params, tokens, spec: ModelSpec, n_words: int) -> dict:
    """Plain-Python explanations of words 1..n_words, keyed as `numerics.explanations.explain`."""
    tokens = jnp.asarray(tokens)
    values = explain_positions(params, tokens, spec)
    return explained(values, n_words,
                     lambda order: values["ig"] if order == ORDER else _ig(params, tokens, spec, order))


def lime_summary(params, tokens, words: list[str], spec: ModelSpec, *, n_samples: int = 5000, runs: int = 1,
                 nu: float = 0.25, removal: str = "delete", seed: int = 0, limit_samples: int = 2**18,
                 output: float | None = None) -> dict:
    """LIME runs and beta^inf on the compiled plugin model (generic path), keyed as
    `numerics.lime.summary.lime_summary`; the paper-model forms are None with `eq19_reason`."""
    from attnverify.numerics.lime.engine import lime_explain
    from attnverify.numerics.lime.limit import beta_limit
    from attnverify.numerics.lime.summary import lime_record, limit_fields

    f = pm.model_function(params, spec)
    key_lime, key_limit = jax.random.split(jax.random.PRNGKey(seed))
    explanation = lime_explain(f, tokens, spec, key=key_lime, words=words, n_samples=n_samples, runs=runs,
                               nu=nu, removal=removal, path="generic")
    d = len(explanation.words)
    out = {
        **lime_record(explanation, n_samples=n_samples, runs=runs, nu=nu, removal=removal, seed=seed),
        "lime_paths_refused": {p: r for p, r in lime_eval.unavailable(False, spec, removal).items() if r},
    }
    try:
        limit = beta_limit(f, tokens, spec, words=words, nu=nu, removal=removal, n_mc=limit_samples,
                           key=key_limit, path="generic")
    except InputError as err:
        out.update(lime_limit=None, lime_limit_method=f"undefined: {err}", lime_limit_stderr=None)
    else:
        output = float(jax.jit(f)(tokens)) if output is None else output
        out.update(limit_fields(limit, d, output=output, n_samples=n_samples, nu=nu))
    out.update(eq19=None, eq19_improved=None, eq19_shell=None, eq19_reason=EQ19_REASON)
    return out
