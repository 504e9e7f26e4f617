"""Property-based checks over spec sizes and assumption switches (hypothesis)."""

import jax
import jax.numpy as jnp
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.quantities import theorem1_quantities
from hypothesis import given, settings
from hypothesis import strategies as st

from attnverify.spec import CHOICES, ModelSpec

specs = st.builds(
    ModelSpec,
    max_len=st.integers(2, 8), d_embed=st.integers(1, 6), d_att=st.integers(1, 4), d_out=st.integers(1, 4),
    heads=st.integers(1, 3), classes=st.integers(2, 3), vocab_size=st.integers(2, 20),
    scale_scores=st.booleans(), positional=st.booleans(), biases=st.booleans(),
    head_aggregation=st.sampled_from(CHOICES["head_aggregation"]),
    query=st.sampled_from(CHOICES["query"]),
    value_nonlinearity=st.sampled_from(CHOICES["value_nonlinearity"]),
    output_link=st.sampled_from(CHOICES["output_link"]),
    scorer=st.sampled_from(CHOICES["scorer"]),
)


@settings(max_examples=2, deadline=None)  # each example compiles its own programs (~20 s)
@given(spec=specs, seed=st.integers(0, 2**20), scale=st.sampled_from([0.3, 1.0, 4.0]))
def test_derived_gradient_equals_jax_grad_for_any_spec(spec, seed, scale):
    q = theorem1_quantities(spec)
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params, tokens = draw_params(k1, spec, scale=scale), draw_document(k2, spec)
    derived, auto = jax.jit(lambda p, x: (q["derived"](p, x), q["autodiff"](p, x)))(params, tokens)
    error = jnp.max(jnp.abs(derived - auto)) / jnp.maximum(jnp.max(jnp.abs(auto)), 1e-300)
    assert float(error) < 1e-9, (spec, float(error))
