"""Small synthetic tasks and a trainer for the §1 model (docs/theory.md §8.7: "add small models
trained on synthetic tasks: a needle token, XOR, or a sparse bag-of-words").

* ``needle``: label 1 iff the needle word appears (one token decides: attention should find it);
* ``bag_of_words``: label 1 iff the document has more "positive" than "negative" words
  (many tokens count a little: no small support decides);
* ``planted``: label 1 iff the word at one planted position is in the upper half of the
  vocabulary (a position decides: the mutual information sits there).

Documents are [CLS] + T - 1 words drawn uniformly from ids 2..V-1 (no UNK), so they are
exchangeable except for the task's own structure. Training minimises the cross-entropy of
the averaged logits (as the authors do) with Adam, for a fixed number of steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics import stored_results
from attnverify.numerics.draws import draw_document, draw_params
from attnverify.numerics.token_keys import token_key
from jaxtyping import Array, Int, PRNGKeyArray

from attnverify.errors import InputError
from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

optax = lazy_module("optax")  # loaded on first use: `attnverify.lazy`

TASKS = ("needle", "bag_of_words", "planted")
NEEDLE = 2  # the needle word's id
PLANTED_POSITION = 2
SENTIMENT_WORDS = 4  # ids 3..6 count +1, ids 7..10 count -1


def check_task(task: str, spec: ModelSpec, who: str | None = None) -> None:
    """`task` is known and can be built at `spec`; a refusal names `who` (the claim or figure that
    trains on it) first, when given."""
    by = f"{who}: " if who else ""
    if task not in TASKS:
        raise InputError(f"{by}unknown synthetic task {task!r} (known: {', '.join(TASKS)})")
    if spec.vocab_size < 3 + 2 * SENTIMENT_WORDS or spec.max_len <= PLANTED_POSITION:
        raise InputError(f"{by}the synthetic tasks (task {task!r}, which claims of the groups identifiability, info, "
                         f"jw, saliency and wp, and some figures, train on) need --vocab-size >= "
                         f"{3 + 2 * SENTIMENT_WORDS} and --max-len > {PLANTED_POSITION}, got {spec.vocab_size} and "
                         f"{spec.max_len}: raise them, or leave out what trains on them")


def labels(tokens: Int[Array, "n T"], task: str, spec: ModelSpec) -> Int[Array, " n"]:
    """The task's label of each document."""
    return _labels(tokens, task, spec.vocab_size)


# `_labels` and `_documents` are one compiled program per task and size, called eagerly (a
# study's documents) or inside a trace: eagerly, each of their operations would be an XLA
# compilation of its own (tens of ms each on CPU). Integer operations only: the same bits.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _labels(tokens: Int[Array, "n T"], task: str, vocab_size: int) -> Int[Array, " n"]:
    words = tokens[:, 1:]
    if task == "needle":
        return jnp.any(words == NEEDLE, axis=1).astype(jnp.int32)
    if task == "bag_of_words":
        positive = (words >= 3) & (words < 3 + SENTIMENT_WORDS)
        negative = (words >= 3 + SENTIMENT_WORDS) & (words < 3 + 2 * SENTIMENT_WORDS)
        return (positive.sum(axis=1) > negative.sum(axis=1)).astype(jnp.int32)
    return (tokens[:, PLANTED_POSITION] >= (vocab_size + 2) // 2).astype(jnp.int32)


def documents(key: PRNGKeyArray, n: int, task: str, spec: ModelSpec) -> Int[Array, "n T"]:
    """n documents; for ``needle`` half of them get one needle at a uniform position."""
    return _documents(key, n, task, spec.max_len, spec.vocab_size)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _documents(key: PRNGKeyArray, n: int, task: str, T: int, vocab_size: int) -> Int[Array, "n T"]:
    k_words, k_flag, k_where = jax.random.split(key, 3)
    low = NEEDLE + 1 if task == "needle" else 2
    words = jax.random.randint(k_words, (n, T - 1), low, vocab_size)
    if task == "needle":
        put = jax.random.bernoulli(k_flag, 0.5, (n,))
        where = jax.random.randint(k_where, (n,), 0, T - 1)
        hit = put[:, None] & (jnp.arange(T - 1)[None] == where[:, None])
        words = jnp.where(hit, NEEDLE, words)
    return jnp.concatenate([jnp.zeros((n, 1), words.dtype), words], axis=1)


def seeded_documents(tokens: Int[Array, " T"], task: str | None, spec: ModelSpec, n: int) -> Int[Array, "n T"]:
    """n documents of `task`'s distribution (``None``: uniform words, UNK included, as
    `draws.draw_document`), seeded by another document (a sweep's draw): each draw then
    evaluates its model on documents of its own (the key folds in every token: `token_key`)."""
    key = token_key(tokens, 5)
    if task is None:
        return jax.vmap(lambda k: draw_document(k, spec))(jax.random.split(key, n))
    return documents(key, n, task, spec)


def seeded_document(tokens: Int[Array, " T"], task: str, spec: ModelSpec) -> Int[Array, " T"]:
    """One document of `seeded_documents`."""
    return seeded_documents(tokens, task, spec, 1)[0]


def _loss(params: nm.Params, tokens, y, spec: ModelSpec):
    z = jax.vmap(lambda x: nm.logits(params, nm.embed(params, x, spec), spec))(tokens)
    return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()


def accuracy(params: nm.Params, tokens: Int[Array, "n T"], y: Int[Array, " n"], spec: ModelSpec) -> float:
    z = jax.vmap(lambda x: nm.logits(params, nm.embed(params, x, spec), spec))(tokens)
    return float(jnp.mean(jnp.argmax(z, axis=1) == y))


@functools.lru_cache(maxsize=16)
@stored_results.on_disk  # a later run reads the weights back
def trained_model(spec: ModelSpec, task: str, *, seed: int = 0, steps: int = 300, batch: int = 64,
                  learning_rate: float = 0.01) -> tuple[nm.Params, float]:
    """A model of `spec` trained on `task` (float64), and its accuracy on 1024 fresh documents.

    Cached: claims that share a (spec, task) train once per process, and a later run reads the
    weights back from the cache folder (`numerics.stored_results`). The whole recipe (init,
    training, test) is one compiled program, whose arguments are only the seed and the task:
    every seed and task of a (spec, steps, batch, learning rate) reuses it (`_training_program`).
    """
    check_task(task, spec)
    program = _training_program(spec, steps, batch, learning_rate)
    params, correct = program(jnp.asarray(seed), jnp.asarray(TASKS.index(task), jnp.int32))
    return params, float(correct)


def _task_data(key: PRNGKeyArray, task: Int[Array, ""], n: int, spec: ModelSpec):
    """n documents of the task numbered `task` in `TASKS` (a traced index), and their labels.

    The tasks differ only in how their integer documents and labels are made, so one compiled
    training program serves all three (`lax.switch`): compiling the step (forward, gradient,
    Adam) is most of a training program's cost, seconds per program on CPU."""
    def one(name):
        def make(key):
            tokens = documents(key, n, name, spec)
            return tokens, labels(tokens, name, spec)
        return make

    return jax.lax.switch(task, [one(name) for name in TASKS], key)


@functools.lru_cache(maxsize=16)
def _training_program(spec: ModelSpec, steps: int, batch: int, learning_rate: float):
    optimiser = optax.adam(learning_rate)

    def train(seed, task):
        def step(carry, key):
            params, state = carry
            tokens, y = _task_data(key, task, batch, spec)
            grads = jax.grad(_loss)(params, tokens, y, spec)
            updates, state = optimiser.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        k_init, k_data, k_test = jax.random.split(jax.random.PRNGKey(seed), 3)
        params = draw_params(k_init, spec)
        params = jax.lax.scan(step, (params, optimiser.init(params)), jax.random.split(k_data, steps))[0][0]
        test, y = _task_data(k_test, task, 1024, spec)
        z = jax.vmap(lambda x: nm.logits(params, nm.embed(params, x, spec), spec))(test)
        return params, jnp.mean(jnp.argmax(z, axis=1) == y)

    return jax.jit(train)


def cast(params: nm.Params, dtype) -> nm.Params:
    """The same parameters in another float dtype (sweeps run in float64 or float32)."""
    return jax.tree_util.tree_map(lambda x: x.astype(dtype), params)
