"""Jain & Wallace's quantities on the true JAX model (docs/theory.md §8.1).

* the output as a function of the attention (to detach, permute or replace it);
* the detached gradient (attention held fixed with `jax.lax.stop_gradient`);
* leave-one-out by deletion, without re-indexing (rows of e removed) and with it (the
  token removed, later tokens shifted left under the positional encoding, UNK appended),
  and in-place UNK replacement;
* permutations of the attention over positions 1..m;
* their per-instance protocol: importances and Kendall tau-b between them.

J&W's output is a class probability (binary: sigma of the logit difference), so the
protocol uses ``probability`` and the total variation distance |p - p'|; the closed
forms of `theory.related.jw` are about the spec's explained output (`explained_from`).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics import model as nm
from attnverify.numerics.related.kendall import kendall_tau_b
from jaxtyping import Array, Float, Int, PRNGKeyArray

from attnverify.spec import ModelSpec


# -- the output as a function of the attention ----------------------------------------------
def logits_from(params: nm.Params, spec: ModelSpec, alpha: Float[Array, "K T"],
                s: Float[Array, "K T C"]) -> Float[Array, " C"]:
    """Class logits for given attention alpha and read-outs s (heads mean/sum, + b_l)."""
    heads = jnp.einsum("it,itc->ic", alpha, s)
    if spec.biases:
        heads = heads + params.b_l
    return heads.mean(axis=0) if spec.head_aggregation == "mean" else heads.sum(axis=0)


def explained_from(z: Float[Array, " C"], spec: ModelSpec) -> Float[Array, ""]:
    """The spec's explained output from the logits (raw logit, sigmoid or softmax), as the model's."""
    return nm.output_from_logits(z, spec)


def probability(z: Float[Array, " C"], spec: ModelSpec) -> Float[Array, ""]:
    """J&W's output: the probability of the explained class (softmax of the logits)."""
    return nm.softmax_probability(z, spec.explained_class)


def output_with_attention(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec,
                          alpha: Float[Array, "K T"], *, output=explained_from) -> Float[Array, ""]:
    """The output with the attention replaced by `alpha` (the read-outs are the model's)."""
    return output(logits_from(params, spec, alpha, nm.readouts(params, e, spec)), spec)


def detached_gradient(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec, *,
                      output=explained_from) -> Float[Array, "T d_e"]:
    """d output / d e with the attention held fixed (J&W detach it)."""

    def detached(e_):
        alpha = jax.lax.stop_gradient(nm.attention(params, e_, spec))
        return output_with_attention(params, e_, spec, alpha, output=output)

    return jax.grad(detached)(e)


def full_gradient(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec, *,
                  output=explained_from) -> Float[Array, "T d_e"]:
    """d output / d e through every path (attention included)."""
    return jax.grad(lambda e_: output(nm.logits(params, e_, spec), spec))(e)


# -- leave-one-out -----------------------------------------------------------------------------
def _without(T: int, t) -> Int[Array, " T-1"]:
    """Indices 0..T-1 except t, in order (t may be traced)."""
    index = jnp.arange(T - 1)
    return index + (index >= t)


def loo_no_reindex(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec
                   ) -> Float[Array, " T-1"]:
    """f(xi) - f(xi_{-t}) for t = 1..T-1, deleting row t of e (other rows keep their PE)."""
    T = e.shape[0]
    full = nm.explained_output(params, e, spec)
    deleted = jax.vmap(lambda t: nm.explained_output(params, e[_without(T, t)], spec))
    return full - deleted(jnp.arange(1, T))


def delete_token(tokens: Int[Array, " T"], t) -> Int[Array, " T"]:
    """The document with token t deleted: later tokens shift left, UNK fills the end."""
    T = tokens.shape[0]
    return jnp.concatenate([tokens[_without(T, t)], jnp.array([nm.UNK], tokens.dtype)])


def loo_reindexed(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec, *,
                  output=explained_from) -> Float[Array, " T-1"]:
    """out(xi) - out(xi_{-t}) for t = 1..T-1, deleting the token (positions re-indexed)."""

    def out(x):
        return output(nm.logits(params, nm.embed(params, x, spec), spec), spec)

    others = jax.vmap(lambda t: out(delete_token(tokens, t)))(jnp.arange(1, tokens.shape[0]))
    return out(tokens) - others


def replace_word(tokens: Int[Array, " T"], word) -> Int[Array, " T"]:
    """Every occurrence of `word` after [CLS] replaced in place by UNK."""
    position = jnp.arange(tokens.shape[0])
    return jnp.where((tokens == word) & (position > 0), nm.UNK, tokens)


# -- permutations ------------------------------------------------------------------------------
def all_permutations(m: int) -> np.ndarray:
    """Every permutation of 0..m-1, one per row (m! rows)."""
    return np.asarray(list(itertools.permutations(range(m))), dtype=np.int32)


@functools.partial(jax.jit, static_argnums=(1, 2))  # one program, not an XLA compile per operation
def random_permutations(key: PRNGKeyArray, n: int, m: int) -> Int[Array, "n m"]:
    return jax.vmap(lambda k: jax.random.permutation(k, m))(jax.random.split(key, n))


def permute_attention(alpha: Float[Array, "K T"], perm: Int[Array, " m"], heads=slice(None)
                      ) -> Float[Array, "K T"]:
    """alpha'_t = alpha_{pi(t)} on positions 1..m for the chosen heads (default: every head,
    one shared pi); other positions and heads unchanged."""
    m = perm.shape[0]
    return alpha.at[heads, 1:m + 1].set(alpha[heads, 1 + perm])


def permuted_outputs(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec,
                     perms: Int[Array, "P m"], *, heads=slice(None), output=explained_from
                     ) -> Float[Array, " P"]:
    """The output under each permutation of the attention (read-outs fixed)."""
    alpha = nm.attention(params, e, spec)
    s = nm.readouts(params, e, spec)

    def one(perm):
        return output(logits_from(params, spec, permute_attention(alpha, perm, heads), s), spec)

    return jax.vmap(one)(perms)


def unpermuted_rest(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec, m: int,
                    heads=slice(None)) -> Float[Array, ""]:
    """The output with the permuted block's attention set to 0: the part no permutation moves
    (for the raw logit, which is linear in alpha)."""
    alpha = nm.attention(params, e, spec).at[heads, 1:m + 1].set(0.0)
    return explained_from(logits_from(params, spec, alpha, nm.readouts(params, e, spec)), spec)


# -- the protocol --------------------------------------------------------------------------------
PAIRS = (
    ("alpha", "grad_detached"), ("alpha", "grad_full"), ("alpha", "loo"),
    ("grad_detached", "loo"), ("grad_full", "loo"), ("grad_detached", "grad_full"),
    ("alpha", "grad_detached_signed"),
)


def importances(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec) -> dict[str, jnp.ndarray]:
    """J&W's importances at positions 1..T-1: attention (head mean), |G x I| detached and
    full, normalised to sum 1, the signed detached G x I, and LOO TVD by deletion."""
    e = nm.embed(params, tokens, spec)
    g_det = jnp.sum(e * detached_gradient(params, e, spec, output=probability), axis=1)[1:]
    g_full = jnp.sum(e * full_gradient(params, e, spec, output=probability), axis=1)[1:]
    return {
        "alpha": nm.attention(params, e, spec).mean(axis=0)[1:],
        "grad_detached": jnp.abs(g_det) / jnp.sum(jnp.abs(g_det)),
        "grad_full": jnp.abs(g_full) / jnp.sum(jnp.abs(g_full)),
        "grad_detached_signed": g_det,
        "loo": jnp.abs(loo_reindexed(params, tokens, spec, output=probability)),
    }


def protocol_taus(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec
                  ) -> tuple[Float[Array, " P"], Float[Array, " P"]]:
    """Kendall tau-b and p-value per instance for each pair in `PAIRS`."""
    imp = importances(params, tokens, spec)
    taus, ps = zip(*[kendall_tau_b(imp[a], imp[b]) for a, b in PAIRS], strict=True)
    return jnp.stack(taus), jnp.stack(ps)


def tvd(p: Float[Array, ...], q: Float[Array, ...]) -> Float[Array, ...]:
    """Total variation distance of two binary outputs given as probabilities of one class."""
    return jnp.abs(p - q)


def jsd(p: Float[Array, "... T"], q: Float[Array, "... T"], *, floor: float = 0.0) -> Float[Array, ...]:
    """Jensen-Shannon divergence (natural log), with 0 log 0 = 0; `floor` is added inside
    the logarithms as J&W's code does (1e-10), 0 for the exact value."""
    # log of the mixture m = (p + q) / 2 as log(p + q + 2 floor) - log 2: m itself is subnormal where a
    # weight is near the least normal number, and XLA on CPU flushes it to 0 (log m = -inf, JSD inf:
    # float32 at --scale 10)
    log_m = jnp.log(p + q + 2 * floor) - jnp.log(jnp.asarray(2.0, jnp.result_type(p, q)))

    def kl(a):
        ratio = jnp.log(jnp.where(a > 0, a, 1.0) + floor) - log_m
        return jnp.sum(jnp.where(a > 0, a * ratio, 0.0), axis=-1)

    return (kl(p) + kl(q)) / 2


def permutation_tvd(params: nm.Params, e: Float[Array, "T d_e"], spec: ModelSpec, perms: Int[Array, "P m"],
                    *, mixing: bool = False) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """J&W's permutation test for one document: (max_t alpha-avg_t over words, median over the
    permutations of |p(permuted) - p|). With `mixing`, the read-outs come from the mean
    embedding (J&W's control encoder h_t <- mean e): then no permutation can matter."""
    alpha = nm.attention(params, e, spec)
    source = jnp.broadcast_to(e.mean(axis=0), e.shape) if mixing else e
    s = nm.readouts(params, source, spec)
    p = probability(logits_from(params, spec, alpha, s), spec)
    permuted = jax.vmap(lambda q: probability(logits_from(params, spec, permute_attention(alpha, q), s), spec))(perms)
    return alpha.mean(axis=0)[1:].max(), jnp.median(tvd(permuted, p))
