"""Wiegreffe & Pinter's diagnostic (check 25, docs/theory.md §8.2): do attention weights help a model
that cannot find the important tokens by itself?

A fresh **token-wise MLP** sees every token alone (no mixing between positions):
``h_t = W_2 tanh(W_1 e_t + b_1) + b_2`` with its own embedding ``e_t = omega_{xi_t} + p_t``, and the
class logits are a **fixed** attention's pooling ``z = sum_t alpha_t h_t``. The MLP is trained four
times, from the same init on the same documents, with alpha taken from:

* ``transferred``: the trained §1 base model's attention (frozen);
* ``self_trained``: its own learned attention, alpha = softmax_t <kappa, e_t> (kappa trained with it);
* ``uniform``: alpha_t = 1/T;
* ``adversarial``: a model-consistent adversary's attention (`wiegreffe.adversaries`, frozen).

W&P's expectation [unconfirmed]: transferred >= self-trained > uniform >= adversarial.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics import stored_results
from attnverify.numerics.related import wiegreffe_pinter as wp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from attnverify.errors import InputError
from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

optax = lazy_module("optax")  # loaded on first use: `attnverify.lazy`

HIDDEN = 16  # the MLP's hidden width
ARMS = ("transferred", "self_trained", "uniform", "adversarial")


class TokenMLP(NamedTuple):
    embedding: Float[Array, "V d_e"]
    W_1: Float[Array, "H d_e"]
    b_1: Float[Array, " H"]
    W_2: Float[Array, "C H"]
    b_2: Float[Array, " C"]
    kappa: Float[Array, " d_e"]  # the self-trained attention's score direction


def draw_mlp(key: PRNGKeyArray, spec: ModelSpec, *, hidden: int = HIDDEN, dtype=jnp.float64) -> TokenMLP:
    """A fresh MLP with the §1.2 conventions: embedding N(0, 1), every linear map and bias U(-0.1, 0.1)."""
    k_emb, k_1, k_b1, k_2, k_b2, k_kappa = jax.random.split(key, 6)

    def uniform(k, shape):
        return jax.random.uniform(k, shape, dtype, -0.1, 0.1)

    return TokenMLP(jax.random.normal(k_emb, (spec.vocab_size, spec.d_embed), dtype),
                    uniform(k_1, (hidden, spec.d_embed)), uniform(k_b1, (hidden,)),
                    uniform(k_2, (spec.classes, hidden)), uniform(k_b2, (spec.classes,)),
                    uniform(k_kappa, (spec.d_embed,)))


def token_embeddings(mlp: TokenMLP, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, "T d_e"]:
    e = mlp.embedding[tokens]
    if spec.positional:
        e = e + nm.positional_encoding(tokens.shape[0], e.shape[1], e.dtype)
    return e


def token_logits(mlp: TokenMLP, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, "T C"]:
    """h_t = W_2 tanh(W_1 e_t + b_1) + b_2 at every position (each token alone)."""
    hidden = jnp.tanh(token_embeddings(mlp, tokens, spec) @ mlp.W_1.T + mlp.b_1)
    return hidden @ mlp.W_2.T + mlp.b_2


def own_attention(mlp: TokenMLP, tokens: Int[Array, " T"], spec: ModelSpec) -> Float[Array, " T"]:
    """The self-trained arm's attention: softmax_t <kappa, e_t>."""
    return jax.nn.softmax(token_embeddings(mlp, tokens, spec) @ mlp.kappa)


def arm_attention(arm, mlp: TokenMLP, tokens: Int[Array, " T"], spec: ModelSpec, base: nm.Params,
                  adversary: nm.Params) -> Float[Array, " T"]:
    """The fixed attention of arm number `arm` (an index into `ARMS`; may be traced) on one
    document; attention models with several heads give their head mean (docs/theory.md §2)."""
    candidates = jnp.stack([
        wp.attention_of(base, tokens, spec).mean(axis=0),
        own_attention(mlp, tokens, spec),
        jnp.full(tokens.shape, 1.0 / tokens.shape[0], mlp.b_2.dtype),
        wp.attention_of(adversary, tokens, spec).mean(axis=0),
    ])
    return candidates[arm]


def pooled_logits(mlp: TokenMLP, tokens: Int[Array, " T"], spec: ModelSpec, alpha: Float[Array, " T"]
                  ) -> Float[Array, " C"]:
    """z = sum_t alpha_t h_t."""
    return alpha @ token_logits(mlp, tokens, spec)


def arm_logits(arm, mlp: TokenMLP, tokens: Int[Array, "n T"], spec: ModelSpec, base: nm.Params,
               adversary: nm.Params) -> Float[Array, "n C"]:
    def one(x):
        return pooled_logits(mlp, x, spec, arm_attention(arm, mlp, x, spec, base, adversary))

    return jax.vmap(one)(tokens)


@functools.partial(jax.jit, static_argnames=("spec", "learning_rate"))
def _fit_diagnostics(init: TokenMLP, base: nm.Params, adversary: nm.Params, tokens, y, *, spec: ModelSpec,
                     learning_rate: float) -> TokenMLP:
    def one(arm):
        def loss(mlp, x, labels_):
            z = arm_logits(arm, mlp, x, spec, base, adversary)
            return optax.softmax_cross_entropy_with_integer_labels(z, labels_).mean()

        return wp.fit(init, loss, tokens, y, learning_rate=learning_rate)

    return jax.vmap(one)(jnp.arange(len(ARMS)))


def diagnostic_models(spec: ModelSpec, runs: tuple[tuple[str, str, int], ...], base: int = 0,
                      adversary_lambda: float = wp.LAMBDAS[0], *, seed: int = 20, hidden: int = HIDDEN,
                      steps: int = wp.STEPS, batch: int = wp.BATCH,
                      learning_rate: float = wp.LEARNING_RATE) -> TokenMLP:
    """The four trained MLPs (stacked in the order of `ARMS`) on the task of run `base` of
    ``wiegreffe.trained_runs(spec, runs)``, which gives the transferred attention; the adversarial
    attention is that of ``wiegreffe.adversaries(spec, runs, base)`` at `adversary_lambda`. Cached."""
    return _diagnostic_models(spec, tuple(map(tuple, runs)), base, adversary_lambda, seed, hidden, steps, batch,
                              learning_rate)


@functools.lru_cache(maxsize=16)
@stored_results.on_disk  # a later run reads the weights back
def _diagnostic_models(spec: ModelSpec, runs: tuple[tuple[str, str, int], ...], base: int, adversary_lambda: float,
                       seed: int, hidden: int, steps: int, batch: int, learning_rate: float) -> TokenMLP:
    if adversary_lambda not in wp.LAMBDAS:
        raise InputError(f"adversary_lambda must be one of {wp.LAMBDAS}, got {adversary_lambda}")
    if hidden < 1:
        raise InputError(f"the MLP needs >= 1 hidden unit, got {hidden}")
    recipe = dict(steps=steps, batch=batch, learning_rate=learning_rate)
    base_model = wp.unstack(wp.trained_runs(spec, runs, **recipe), base)
    adversary = wp.unstack(wp.adversaries(spec, runs, base, **recipe), wp.LAMBDAS.index(adversary_lambda))
    tokens, y = wp.training_documents(seed, runs[base][0], spec, steps=steps, batch=batch)
    init = draw_mlp(jax.random.PRNGKey(seed), spec, hidden=hidden, dtype=base_model.embedding.dtype)
    return _fit_diagnostics(init, base_model, adversary, tokens, y, spec=spec, learning_rate=learning_rate)
