"""Wiegreffe & Pinter (2019), *Attention is not not Explanation*: the models behind checks 22-24
(docs/theory.md §8.2, §8.7).

* **Uniform baseline (22).** The §1 model trained with its own (learned) attention, and the same
  architecture trained with the attention frozen at uniform, alpha_t = 1/T over all T positions.
  Both forwards go through `numerics.related.jain_wallace.logits_from` (the output for a given attention), so the
  two arms differ in the attention only.
* **Seed calibration (23).** Models of several training seeds: the JSD between their attention
  and the base model's (seed 0) calibrates what a "large" JSD is.
* **Model-consistent adversary (24).** A model trained from scratch with W&P's loss
  ``TVD(y_adv, y_base) - lambda * KL(alpha_adv || alpha_base)`` against the frozen base model,
  one per lambda.

W&P and J&W study one attention distribution per instance, so these checks use the §1 model with
K = 1 head (`wp_spec`); with several heads the seed JSD would depend on an arbitrary matching of
exchangeable heads. Every trainer uses the recipe of `numerics.training.synthetic_tasks.trained_model` (the
paper's init, Adam at lr 0.01, 300 steps of 64 fresh task documents); the document stream is
made outside the compiled loop (`training_documents`), so one compiled program trains every task,
arm and seed at once (vmapped), and the results are `functools.lru_cache`d: claims that share a
model train it once per process.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics import stored_results
from attnverify.numerics.draws import draw_params
from attnverify.numerics.related.adversarial import exact_max_jsd, head_slab
from attnverify.numerics.related.jain_wallace import jsd, logits_from
from attnverify.numerics.training.synthetic_tasks import check_task, documents, labels
from jaxtyping import Array, Float, Int

from attnverify.errors import InputError
from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

optax = lazy_module("optax")  # loaded on first use: `attnverify.lazy`

#: Training recipe shared by every W&P model (docs/theory.md §8.7: "a few hundred steps", CPU-cheap).
STEPS, BATCH, LEARNING_RATE = 300, 64, 0.01
#: Largest sizes the W&P checks train at (T <= 16, d_e <= 16 keeps a `verify wp` run in seconds).
MAX_LEN, MAX_EMBED = 16, 16
#: W&P's lambda grid for the model-consistent adversary (check 24).
LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)
CHUNK = 512  # documents per vectorised batch in `jw_adversary`
ATTENTIONS = ("learned", "uniform")


def wp_spec(spec: ModelSpec) -> ModelSpec:
    """The spec the W&P checks train: one head, T and d_e capped at 16, every other field kept."""
    return spec.replace(heads=1, max_len=min(spec.max_len, MAX_LEN), d_embed=min(spec.d_embed, MAX_EMBED))


def check_lambdas(lambdas: tuple[float, ...]) -> None:
    if not lambdas:
        raise InputError("model-consistent adversary: give at least one lambda")
    for lam in lambdas:
        if not lam > 0:
            raise InputError(f"model-consistent adversary: lambda must be > 0, got {lam}")


def check_seeds(seeds: int) -> None:
    if seeds < 2:
        raise InputError(f"seed calibration needs >= 2 seeds (a base and another), got {seeds}")


def seed_runs(task: str, seeds: int) -> tuple[tuple[str, str, int], ...]:
    """The runs of a seed calibration (check 23): learned attention, seeds 0 (the base) .. seeds-1."""
    check_seeds(seeds)
    return tuple((task, "learned", s) for s in range(seeds))


def check_attention(attention: str) -> None:
    if attention not in ATTENTIONS:
        raise InputError(f"unknown attention {attention!r} (known: {', '.join(ATTENTIONS)})")


# -- forwards ------------------------------------------------------------------------------------
def uniform_attention(spec: ModelSpec, dtype=jnp.float64) -> Float[Array, "K T"]:
    """alpha_t^(i) = 1/T at every position ([CLS] included, as the §1 softmax runs over all T)."""
    return jnp.full((spec.heads, spec.max_len), 1.0 / spec.max_len, dtype)


def attention_of(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec,
                 attention: str = "learned") -> Float[Array, "K T"]:
    """The attention an arm uses on one document: the model's own, or uniform."""
    if attention == "uniform":
        return uniform_attention(spec, params.embedding.dtype)
    return nm.attention(params, nm.embed(params, tokens, spec), spec)


def logits(params: nm.Params, tokens: Int[Array, " T"], spec: ModelSpec,
           attention: str = "learned") -> Float[Array, " C"]:
    """Class logits of one document with the arm's attention (`jw.logits_from`: read-outs are the model's)."""
    e = nm.embed(params, tokens, spec)
    return logits_from(params, spec, attention_of(params, tokens, spec, attention), nm.readouts(params, e, spec))


def batch_logits(params: nm.Params, tokens: Int[Array, "n T"], spec: ModelSpec,
                 attention: str = "learned") -> Float[Array, "n C"]:
    return jax.vmap(lambda x: logits(params, x, spec, attention))(tokens)


def tvd(z: Float[Array, "... C"], z_ref: Float[Array, "... C"]) -> Float[Array, ...]:
    """Total variation distance of the class distributions softmax(z), softmax(z_ref)."""
    return 0.5 * jnp.sum(jnp.abs(jax.nn.softmax(z, axis=-1) - jax.nn.softmax(z_ref, axis=-1)), axis=-1)


def kl(p: Float[Array, "... T"], q: Float[Array, "... T"]) -> Float[Array, ...]:
    """KL(p || q) = sum_t p_t log(p_t / q_t) (softmax attentions have full support)."""
    return jnp.sum(p * (jnp.log(p) - jnp.log(q)), axis=-1)


# -- metrics -------------------------------------------------------------------------------------
@jax.jit  # called on the host per arm (figures.wp_tradeoff): eagerly, each operation compiles on its own
def accuracy_f1(z: Float[Array, "n C"], y: Int[Array, " n"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Accuracy, and F1 of class 1 (2 TP / (2 TP + FP + FN); 0 when there is no positive at all)."""
    predicted = jnp.argmax(z, axis=-1)
    tp = jnp.sum((predicted == 1) & (y == 1)).astype(z.dtype)
    wrong = jnp.sum(predicted != y).astype(z.dtype)
    return jnp.mean((predicted == y).astype(z.dtype)), jnp.where(tp > 0, 2 * tp / (2 * tp + wrong), 0.0)


# -- training ------------------------------------------------------------------------------------
def training_documents(seed: int, task: str, spec: ModelSpec, *, steps: int = STEPS, batch: int = BATCH
                       ) -> tuple[Int[Array, "steps batch T"], Int[Array, "steps batch"]]:
    """Seed `seed`'s training stream: `steps` batches of fresh `task` documents and their labels.

    Made eagerly, outside the compiled training loop: the loop is then one program for every
    task and seed (its compilation, not its 300 small steps, is what costs time on a CPU)."""
    check_task(task, spec)
    k_data = jax.random.split(jax.random.PRNGKey(seed), 3)[1]
    tokens = documents(k_data, steps * batch, task, spec)
    return tokens.reshape(steps, batch, -1), labels(tokens, task, spec).reshape(steps, batch)


def initial_params(seed: int, spec: ModelSpec) -> nm.Params:
    """Seed `seed`'s initial model: the paper's init (`draws.draw_params`) from split(PRNGKey(seed), 3)[0]."""
    return draw_params(jax.random.split(jax.random.PRNGKey(seed), 3)[0], spec)


def fit(init: nm.Params, loss, tokens: Int[Array, "steps batch T"], y: Int[Array, "steps batch"], *,
        learning_rate: float = LEARNING_RATE) -> nm.Params:
    """Adam on ``loss(params, tokens, y)``, one step per batch of the stream (a `lax.scan`)."""
    optimiser = optax.adam(learning_rate)

    def step(carry, batch):
        params, state = carry
        updates, state = optimiser.update(jax.grad(loss)(params, *batch), state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (init, optimiser.init(init)), (tokens, y))[0][0]


@functools.partial(jax.jit, static_argnames=("spec", "learning_rate"))
def _fit_arms(inits: nm.Params, tokens, y, uniform, *, spec: ModelSpec, learning_rate: float) -> nm.Params:
    """`fit` with cross-entropy, vmapped over runs; `uniform[r]` freezes run r's attention at 1/T."""
    def one(init, tokens, y, frozen):
        def loss(params, x, labels_):
            z = jnp.where(frozen, batch_logits(params, x, spec, "uniform"), batch_logits(params, x, spec, "learned"))
            return optax.softmax_cross_entropy_with_integer_labels(z, labels_).mean()

        return fit(init, loss, tokens, y, learning_rate=learning_rate)

    return jax.vmap(one)(inits, tokens, y, uniform)


def _stack(trees: list) -> nm.Params:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def trained_runs(spec: ModelSpec, runs: tuple[tuple[str, str, int], ...], *, steps: int = STEPS,
                 batch: int = BATCH, learning_rate: float = LEARNING_RATE) -> nm.Params:
    """Models of `spec`, one per run ``(task, attention, seed)``, stacked in the order given:
    cross-entropy on the averaged logits, Adam, seed `seed`'s init and document stream, with
    the model's own attention ("learned") or with alpha frozen at 1/T ("uniform"). All runs train
    in one vmapped program; the result is cached per (spec, runs, recipe)."""
    return _trained_runs(spec, tuple(map(tuple, runs)), steps, batch, learning_rate)


@functools.lru_cache(maxsize=16)  # positional arguments only: one cache entry per model set
@stored_results.on_disk  # a later run reads the weights back
def _trained_runs(spec: ModelSpec, runs: tuple[tuple[str, str, int], ...], steps: int, batch: int,
                  learning_rate: float) -> nm.Params:
    if not runs:
        raise InputError("give at least one training run")
    for task, attention, _ in runs:
        check_task(task, spec)
        check_attention(attention)
    streams = [training_documents(seed, task, spec, steps=steps, batch=batch) for task, _, seed in runs]
    inits = _stack([initial_params(seed, spec) for _, _, seed in runs])
    uniform = jnp.asarray([attention == "uniform" for _, attention, _ in runs])
    return _fit_arms(inits, jnp.stack([t for t, _ in streams]), jnp.stack([y for _, y in streams]), uniform,
                     spec=spec, learning_rate=learning_rate)


def unstack(models: nm.Params, index: int) -> nm.Params:
    """Model `index` of a stack made by `trained_runs` or `adversaries`."""
    return jax.tree_util.tree_map(lambda x: x[index], models)


@functools.partial(jax.jit, static_argnames=("spec", "learning_rate"))
def _fit_adversaries(init: nm.Params, base: nm.Params, tokens, y, lambdas, *, spec: ModelSpec,
                     learning_rate: float) -> nm.Params:
    def loss(params, x, _labels, lam):
        alpha_adv = jax.vmap(lambda d: attention_of(params, d, spec))(x)
        alpha_base = jax.vmap(lambda d: attention_of(base, d, spec))(x)
        divergence = kl(alpha_adv, alpha_base).sum(axis=-1)  # summed over heads (one head: that head's)
        return tvd(batch_logits(params, x, spec), batch_logits(base, x, spec)).mean() - lam * divergence.mean()

    return jax.vmap(lambda lam: fit(init, functools.partial(loss, lam=lam), tokens, y,
                                    learning_rate=learning_rate))(lambdas)


def adversaries(spec: ModelSpec, runs: tuple[tuple[str, str, int], ...], base: int = 0,
                lambdas: tuple[float, ...] = LAMBDAS, *, seed: int = 10, steps: int = STEPS, batch: int = BATCH,
                learning_rate: float = LEARNING_RATE) -> nm.Params:
    """W&P's model-consistent adversaries, one per lambda, stacked. The base model is run `base`
    of ``trained_runs(spec, runs)`` (frozen); each adversary trains from scratch on the base's
    task (seed `seed`'s init and documents, the same for every lambda) to minimise
    ``mean TVD(y_adv, y_base) - lambda * mean KL(alpha_adv || alpha_base)``. Cached."""
    return _adversaries(spec, tuple(map(tuple, runs)), base, tuple(lambdas), seed, steps, batch, learning_rate)


@functools.lru_cache(maxsize=16)
@stored_results.on_disk
def _adversaries(spec: ModelSpec, runs: tuple[tuple[str, str, int], ...], base: int, lambdas: tuple[float, ...],
                 seed: int, steps: int, batch: int, learning_rate: float) -> nm.Params:
    check_lambdas(lambdas)
    if not 0 <= base < len(runs):
        raise InputError(f"base run {base} is not one of the {len(runs)} runs")
    base_model = unstack(trained_runs(spec, runs, steps=steps, batch=batch, learning_rate=learning_rate), base)
    tokens, y = training_documents(seed, runs[base][0], spec, steps=steps, batch=batch)
    init = initial_params(seed, spec)
    return _fit_adversaries(init, base_model, tokens, y, jnp.asarray(lambdas, init.embedding.dtype),
                            spec=spec, learning_rate=learning_rate)


# -- per-document comparisons ---------------------------------------------------------------------
def attention_jsd(params: nm.Params, reference: nm.Params, tokens: Int[Array, "n T"], spec: ModelSpec
                  ) -> Float[Array, " n"]:
    """JSD(alpha, alpha_ref) per document (exact, natural log; mean over heads when K > 1)."""
    def one(x):
        return jsd(attention_of(params, x, spec), attention_of(reference, x, spec)).mean()

    return jax.vmap(one)(tokens)


def output_tvd(params: nm.Params, reference: nm.Params, tokens: Int[Array, "n T"], spec: ModelSpec
               ) -> Float[Array, " n"]:
    """TVD(y, y_ref) per document between the two models' class distributions."""
    return tvd(batch_logits(params, tokens, spec), batch_logits(reference, tokens, spec))


def jw_adversary(base: nm.Params, tokens: Int[Array, "n T"], spec: ModelSpec, epsilon: float
                 ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """J&W's per-instance adversary on `base` (check 20): per document, the exact eps-max JSD of
    head 0 (`adversarial.exact_max_jsd`, vertex enumeration) and the TVD its optimum causes."""
    def one(x):
        e = nm.embed(base, x, spec)
        optimum = exact_max_jsd(head_slab(base, e, spec, 0), epsilon)
        alpha = nm.attention(base, e, spec)
        z = logits_from(base, spec, alpha.at[0].set(optimum.vertex), nm.readouts(base, e, spec))
        return optimum.jsd, tvd(z, logits_from(base, spec, alpha, nm.readouts(base, e, spec)))

    return jax.lax.map(one, tokens, batch_size=CHUNK)  # O(T^2) candidates per document: bounded memory


# -- the trade-off curve (check 24) ----------------------------------------------------------------
def tradeoff_increments(tvds: Float[Array, " L"], jsds: Float[Array, " L"]) -> Float[Array, ""]:
    """The smallest step up the curve: min over consecutive lambdas of the increase in TVD and in
    JSD (>= 0 iff both grow with lambda; the points are in increasing lambda)."""
    return jnp.minimum(jnp.min(jnp.diff(tvds)), jnp.min(jnp.diff(jsds)))


def curve_reach(tvds: Float[Array, " L"], jsds: Float[Array, " L"], budget: Float[Array, ""]) -> Float[Array, ""]:
    """The largest JSD a trained model reaches within an output change `budget`:
    max({0} u {JSD_l : TVD_l <= budget}) (the base model itself is the point (0, 0))."""
    return jnp.max(jnp.where(tvds <= budget, jsds, 0.0), initial=0.0)
