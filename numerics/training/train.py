"""Training the paper's model on a labelled corpus with optax (docs/theory.md §7).

AdamW with the paper's learning rate 1e-4 and batch 16, and PyTorch's default weight decay
1e-2 set explicitly (optax's default is 1e-4); cross-entropy on the C averaged-head logits;
the best-validation checkpoint is kept. Training runs in float32 (the model file stores
float32; `modelfile.load` reads it back as float64 for the identity checks).

Determinism: training always runs in 32-bit mode (see `train`); the initial parameters
come from ``fold_in(PRNGKey(seed), 0)`` and the shuffle of epoch ``k`` from
``fold_in(PRNGKey(seed), k + 1)``; each epoch drops its last partial batch (fixed shapes,
one compilation). One seed gives one model, bit for bit, on one machine.

Speed: an epoch is one compiled `lax.scan` over its shuffled batches (no host round trip
per batch), and the paper's model is evaluated with its maps folded first
(`numerics.training.factored`: the same logits and gradients, ~30x fewer multiply-adds).
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from attnverify.numerics import model as nm
from attnverify.numerics import modelfile
from attnverify.numerics.draws import draw_params
from attnverify.numerics.training import factored
from attnverify.numerics.training.corpora import Corpus, build_vocab, documents_for, encode_texts, load_corpus
from tqdm.auto import tqdm

from attnverify.errors import InputError, warn_once
from attnverify.spec import PAPER, ModelSpec

#: The default trained model (`attnverify train`, the report's tweet model): the paper's widths
#: (d_e = 128, d_att = d_out = 64, K = 6) with T = 64 (tweets have <= 62 words) and the 5,000
#: most frequent training words instead of the full vocabulary. About 1 minute on 2 CPU cores.
DEFAULT_SPEC = PAPER.replace(max_len=64, vocab_size=5000)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings. Defaults are the paper's (10 epochs, AdamW lr 1e-4, batch 16)."""

    epochs: int = 10
    lr: float = 1e-4
    batch: int = 16
    seed: int = 0
    weight_decay: float = 1e-2  # PyTorch's AdamW default, stated because optax's differs

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}", parameter="epochs")
        if self.batch < 1:
            raise InputError(f"batch must be >= 1, got {self.batch}", parameter="batch")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}", parameter="lr")
        if self.weight_decay < 0:
            raise InputError(f"weight decay must be >= 0, got {self.weight_decay}")


@dataclass
class TrainResult:
    """The best-validation model, its vocabulary and the metrics dictionary (JSON-ready)."""

    spec: ModelSpec
    params: nm.Params
    vocab: list[str]
    metrics: dict


def cross_entropy(params: nm.Params, tokens: jnp.ndarray, labels: jnp.ndarray,
                  spec: ModelSpec) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Mean cross-entropy of the C logits over a batch, and the batch's correct predictions."""
    z = jax.vmap(lambda x: factored.logits(params, x, spec))(tokens)
    loss = optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()
    return loss, jnp.sum(jnp.argmax(z, axis=-1) == labels)


def optimiser(config: TrainConfig) -> optax.GradientTransformation:
    return _adamw(config.lr, config.weight_decay)


def _adamw(lr: float, weight_decay: float) -> optax.GradientTransformation:
    return optax.adamw(lr, weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnames=("spec", "lr", "weight_decay"))
def train_steps(params, opt_state, tokens, labels, batches, *, spec: ModelSpec, lr: float, weight_decay: float):
    """Run one AdamW step per row of `batches` (indices into tokens/labels) with `lax.scan`:
    an epoch in one call. Returns the new params and optimiser state, and per-step losses
    and correct counts."""
    opt = _adamw(lr, weight_decay)

    def step(carry, index):
        params, opt_state = carry
        (loss, correct), grads = jax.value_and_grad(cross_entropy, has_aux=True)(
            params, tokens[index], labels[index], spec)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, correct)

    (params, opt_state), (losses, correct) = jax.lax.scan(step, (params, opt_state), batches)
    return params, opt_state, losses, correct


@functools.partial(jax.jit, static_argnames=("spec",))
def _predict(params: nm.Params, tokens: jnp.ndarray, spec: ModelSpec) -> jnp.ndarray:
    return jax.vmap(lambda x: factored.logits(params, x, spec))(tokens)


def evaluate(params: nm.Params, tokens: np.ndarray, labels: np.ndarray, spec: ModelSpec,
             *, chunk: int = 2048) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of `params` on a whole split (chunked, fixed shapes)."""
    n = len(labels)
    pad = (-n) % chunk
    padded = np.concatenate([tokens, np.repeat(tokens[:1], pad, axis=0)]) if pad else tokens
    z = np.concatenate([np.asarray(_predict(params, jnp.asarray(padded[s: s + chunk]), spec))
                        for s in range(0, len(padded), chunk)])[:n]
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.mean(z.argmax(axis=1) == labels)), float(-log_p[np.arange(n), labels].mean())


def train(corpus: Corpus, spec: ModelSpec, config: TrainConfig = TrainConfig(),
          *, progress: bool = True) -> TrainResult:
    """Train on `corpus`: the vocabulary is the train split's ``spec.vocab_size`` most frequent
    words (fewer if it has fewer; the returned spec says how many), T is ``spec.max_len``.

    Runs with 64-bit JAX types switched off whatever the caller's setting (with x64 on, the
    model's ``sqrt(d_att)`` would silently promote parts of the float32 step to float64), so
    one seed gives one model from `attnverify train` and from `attnverify report` alike."""
    with jax.enable_x64(False):
        return _train(corpus, spec, config, progress=progress)


def _train(corpus: Corpus, spec: ModelSpec, config: TrainConfig, *, progress: bool) -> TrainResult:
    start = time.perf_counter()
    vocab = build_vocab(corpus.train.texts, spec.vocab_size)
    spec = spec.replace(vocab_size=len(vocab))
    n_classes = 1 + max(int(part.labels.max()) for part in (corpus.train, corpus.validation, corpus.test))
    if n_classes > spec.classes:
        raise InputError(f"the labels need {n_classes} classes, the spec has {spec.classes}")
    if n_classes < spec.classes:  # a class no document has: trained to be never predicted, without a word
        raise InputError(f"the labels of {corpus.source} are 0..{n_classes - 1} ({n_classes} classes), the spec has "
                         f"{spec.classes}: no document would teach class {n_classes} (give --classes {n_classes})")
    data = {name: (encode_texts(part.texts, vocab, spec.max_len), part.labels)
            for name, part in (("train", corpus.train), ("validation", corpus.validation),
                               ("test", corpus.test))}
    n_train = len(corpus.train)
    if n_train < config.batch:
        total = n_train + len(corpus.validation) + len(corpus.test)
        split = ("aclImdb's train folders split 80/20 into train and validation, its test folders kept"
                 if corpus.source.startswith("imdb:") else "80/10/10, validation and test at least 1 each")
        raise InputError(f"train split has {n_train} of the {total} documents ({split}), fewer than one batch of "
                         f"{config.batch}: give at least {documents_for(config.batch)} documents (or, training with "
                         "`attnverify train`, a smaller --batch)")
    steps = n_train // config.batch
    root = jax.random.PRNGKey(config.seed)
    params = draw_params(jax.random.fold_in(root, 0), spec, dtype=jnp.float32)
    opt_state = optimiser(config).init(params)
    tokens, labels = jnp.asarray(data["train"][0]), jnp.asarray(data["train"][1])

    best = (-1.0, np.inf)
    best_params, best_epoch, history = params, 0, []
    bar = tqdm(total=config.epochs * steps, desc="train", unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    for epoch in range(1, config.epochs + 1):
        order = jax.random.permutation(jax.random.fold_in(root, epoch), n_train)
        batches = order[: steps * config.batch].reshape(steps, config.batch)
        params, opt_state, losses, correct = train_steps(
            params, opt_state, tokens, labels, batches, spec=spec, lr=config.lr,
            weight_decay=config.weight_decay)
        loss_sum, correct_sum = float(losses.sum()), int(correct.sum())
        bar.update(steps)
        bar.set_postfix(epoch=epoch, loss=f"{loss_sum / steps:.4f}", acc=f"{correct_sum / (steps * config.batch):.3f}")
        val_acc, val_loss = evaluate(params, *data["validation"], spec)
        history.append({"epoch": epoch, "train_loss": loss_sum / steps,
                        "train_accuracy_running": correct_sum / (steps * config.batch),
                        "validation_accuracy": val_acc, "validation_loss": val_loss})
        if progress:
            bar.write(f"epoch {epoch}/{config.epochs}: train loss {loss_sum / steps:.4f}, "
                      f"validation accuracy {val_acc:.4f}", file=sys.stderr)  # tqdm writes to stdout unless told
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best, best_params, best_epoch = (val_acc, val_loss), params, epoch
    bar.close()

    accuracy = {name: evaluate(best_params, *arrays, spec)[0] for name, arrays in data.items()}
    majority = {name: float(np.bincount(arrays[1]).max() / len(arrays[1])) for name, arrays in data.items()}
    metrics = {
        "source": corpus.source,
        "sizes": corpus.sizes(),
        "accuracy": accuracy,
        "majority_class_accuracy": majority,
        "seed": config.seed,
        "best_epoch": best_epoch,
        "history": history,
        "config": asdict(config),
        "spec": asdict(spec),
        "seconds": time.perf_counter() - start,
        "versions": {"jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__},
        "device": str(jax.devices()[0]),
        "dtype": "float32",
    }
    return TrainResult(spec, best_params, vocab, metrics)


def metrics_path(model_path: str | Path) -> Path:
    """Where the metrics JSON of a model file goes: ``model.npz`` -> ``model.metrics.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".metrics.json")


def _file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(result: TrainResult, model_path: str | Path) -> Path:
    """Write the model file (`numerics.modelfile`) and its metrics JSON, each atomically; the
    metrics name the model file they describe by its SHA-256 (`read_metrics`)."""
    modelfile.save(model_path, result.spec, result.params, result.vocab)
    out = metrics_path(model_path)
    metrics = {**result.metrics, "model_sha256": _file_sha256(model_path)}
    modelfile.atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n"))
    return out


def read_metrics(model_path: str | Path) -> dict | None:
    """The training record beside a model file (`save`), or None when there is none, or when it
    describes another model file (one written over it since, e.g. by ``init-model``: warned) or
    cannot be read (warned)."""
    path = metrics_path(model_path)
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
        described = metrics.get("model_sha256")
        if described is not None and described != _file_sha256(model_path):
            warn_once(f"{path}: describes another model file than {model_path} (written over since it was "
                       "trained); not used")
            return None
    except (OSError, ValueError) as err:
        warn_once(f"{path}: cannot read it ({type(err).__name__}); the model's training is not reported")
        return None
    return metrics


def train_and_save(source: str, model_path: str | Path, spec: ModelSpec,
                   config: TrainConfig = TrainConfig(), *, progress: bool = True) -> TrainResult:
    """Load the corpus `source` names (`numerics.training.corpora.load_corpus`), train, write both files."""
    model_path = Path(model_path)
    if not model_path.parent.is_dir():
        raise InputError(f"{model_path}: folder {model_path.parent} does not exist")
    corpus = load_corpus(source)
    if progress:
        print(f"data {corpus.source}: " + ", ".join(f"{n} {part}" for part, n in corpus.sizes().items()) + " documents",
              file=sys.stderr)
    result = train(corpus, spec, config, progress=progress)
    save(result, model_path)
    return result
