"""Training: accuracy on the synthetic task, determinism, the checkpoint, AdamW's decay, files."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attnverify.numerics import modelfile
from attnverify.numerics.draws import draw_params
from attnverify.numerics.training import train as tr
from attnverify.numerics.training.corpora import synthetic_corpus

from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.spec import ModelSpec

# Small enough to train in a few seconds on 2 cores, big enough to learn the planted words.
SPEC = ModelSpec(max_len=16, d_embed=16, d_att=8, d_out=8, heads=2, vocab_size=64)
FAST = tr.TrainConfig(epochs=3, lr=1e-2, batch=16, seed=0)


@pytest.fixture(scope="module")
def trained():
    return tr.train(synthetic_corpus(800, seed=0), SPEC, FAST, progress=False)


def test_synthetic_task_is_learned_in_seconds(trained):
    acc = trained.metrics["accuracy"]
    # Planted words decide the label, so a model that learned them is near perfect; the
    # majority class is about 0.5 (the generator draws labels uniformly).
    assert acc["test"] >= 0.9 and acc["validation"] >= 0.9
    assert trained.metrics["majority_class_accuracy"]["test"] < 0.7
    assert trained.metrics["seconds"] < 60


def test_best_validation_checkpoint_is_kept(trained):
    history = trained.metrics["history"]
    best = max(history, key=lambda h: (h["validation_accuracy"], -h["validation_loss"]))
    assert trained.metrics["best_epoch"] == best["epoch"]
    assert trained.metrics["accuracy"]["validation"] == pytest.approx(best["validation_accuracy"])


def test_training_is_deterministic_for_a_seed(trained):
    again = tr.train(synthetic_corpus(800, seed=0), SPEC, FAST, progress=False)
    for a, b in zip(trained.params, again.params, strict=True):
        assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))
    other = tr.train(synthetic_corpus(800, seed=0), SPEC, tr.TrainConfig(epochs=1, lr=1e-2, seed=1),
                     progress=False)
    assert not np.array_equal(np.asarray(other.params.W_q), np.asarray(trained.params.W_q))


def test_training_does_not_depend_on_the_callers_x64_setting():
    corpus = synthetic_corpus(100, seed=2)
    config = tr.TrainConfig(epochs=1, lr=1e-2)
    with jax.enable_x64(True):
        a = tr.train(corpus, SPEC, config, progress=False)
    with jax.enable_x64(False):
        b = tr.train(corpus, SPEC, config, progress=False)
    for x, y in zip(a.params, b.params, strict=True):
        assert (x is None and y is None) or np.array_equal(np.asarray(x), np.asarray(y))


def test_training_progress_goes_to_stderr_and_leaves_stdout_to_the_result(capsys):
    # Can fail: tqdm's `write` prints to stdout unless given a file, so each epoch's line
    # went into whatever a user piped stdout to (`attnverify train ... > log`).
    tr.train(synthetic_corpus(100, seed=2), SPEC, tr.TrainConfig(epochs=1, lr=1e-2), progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "epoch 1/1: train loss" in err


def test_adamw_weight_decay_is_pytorchs_default():
    # PyTorch's AdamW, with a zero gradient, moves each weight by -lr * weight_decay * weight.
    config = tr.TrainConfig(lr=0.1)
    assert config.weight_decay == 1e-2
    opt = tr.optimiser(config)
    params = {"w": jnp.array([1.0, -2.0, 4.0])}
    updates, _ = opt.update({"w": jnp.zeros(3)}, opt.init(params), params)
    assert np.allclose(updates["w"], -0.1 * 1e-2 * params["w"], rtol=1e-12, atol=0)
    # and the check can fail: optax's own default decay (1e-4) is a different update
    import optax

    other, _ = optax.adamw(0.1).update({"w": jnp.zeros(3)}, optax.adamw(0.1).init(params), params)
    assert not np.allclose(other["w"], updates["w"])


def test_the_defaults_are_the_papers_recipe_and_the_steps_pytorchs_adamw():
    # The paper's recipe (docs/theory.md §7): AdamW, lr 1e-4, batch 16, 10 epochs, PyTorch's decay 1e-2.
    config = tr.TrainConfig()
    assert (config.epochs, config.lr, config.batch, config.weight_decay) == (10, 1e-4, 16, 1e-2)
    # Three steps with nonzero gradients against PyTorch's AdamW written out (betas 0.9, 0.999, eps 1e-8):
    # w <- w (1 - lr wd); m, v moments; w <- w - lr mhat / (sqrt(vhat) + eps). A zero gradient sees no beta.
    lr, wd = 1e-3, 1e-2
    opt = tr.optimiser(tr.TrainConfig(lr=lr))
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    state = opt.init(params)
    w, m, v = np.array([0.5, -1.0, 2.0]), np.zeros(3), np.zeros(3)
    for k, g in enumerate([[0.1, -0.2, 0.3], [-0.05, 0.4, 0.1], [0.2, 0.2, -0.1]], start=1):
        g = np.array(g)
        updates, state = opt.update({"w": jnp.asarray(g)}, state, params)
        params = {"w": params["w"] + updates["w"]}
        w = w * (1 - lr * wd)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        w = w - lr * (m / (1 - 0.9**k)) / (np.sqrt(v / (1 - 0.999**k)) + 1e-8)
        np.testing.assert_allclose(np.asarray(params["w"]), w, rtol=1e-12, atol=0)


def test_cross_entropy_matches_a_direct_computation(trained):
    corpus = synthetic_corpus(40, seed=5)
    from attnverify.numerics.training.corpora import encode_texts

    tokens = encode_texts(corpus.train.texts, trained.vocab, SPEC.max_len)
    labels = corpus.train.labels
    loss, correct = tr.cross_entropy(trained.params, jnp.asarray(tokens), jnp.asarray(labels), trained.spec)
    z = np.asarray(tr._predict(trained.params, jnp.asarray(tokens), trained.spec), dtype=np.float64)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert float(loss) == pytest.approx(-log_p[np.arange(len(labels)), labels].mean(), rel=1e-5)  # float32
    assert int(correct) == int((z.argmax(axis=1) == labels).sum())


def test_cli_train_writes_model_and_metrics(tmp_path, capsys):
    out = tmp_path / "m.npz"
    code = main(["train", "--data", "synthetic:200", "--out", str(out), "--epochs", "1", "--lr", "1e-2",
                 "--max-len", "12", "--d-embed", "8", "--d-att", "4", "--d-out", "4", "--heads", "2",
                 "--vocab-size", "100", "--quiet"])
    assert code == 0
    loaded = modelfile.load(out)
    assert loaded.spec.max_len == 12 and loaded.vocab[:2] == ["[CLS]", "UNK"]
    # Can fail: the corpus has fewer words than --vocab-size asks, and the smaller vocabulary was silent.
    captured = capsys.readouterr()
    assert loaded.spec.vocab_size == len(loaded.vocab) < 100
    assert f"note: the vocabulary has {len(loaded.vocab)} entries, not 100" in captured.err
    metrics = json.loads(tr.metrics_path(out).read_text())
    assert metrics["sizes"] == {"train": 160, "validation": 20, "test": 20}
    assert {"train", "validation", "test"} <= set(metrics["accuracy"])
    assert metrics["config"]["seed"] == 0 and metrics["seconds"] > 0
    assert "test accuracy" in captured.out


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs"),
    (["--lr", "-1"], "lr"),
    # 1250 documents: validation and test 125 each (10 %), train 1000; the message gave no minimum
    (["--batch", "1000"], "train split has 80 of the 100 documents (80/10/10, validation and test at least 1 each), "
                          "fewer than one batch of 1000: give at least 1250 documents (or, training with "
                          "`attnverify train`, a smaller --batch)"),
    # trained silently before: a model of 3 classes on labels 0 and 1 (test accuracy 0.2)
    (["--classes", "3"], "the labels of synthetic:100 are 0..1 (2 classes), the spec has 3: no document would teach "
                         "class 2 (give --classes 2)"),
])
def test_bad_training_arguments_are_one_line_errors(tmp_path, capsys, flags, message):
    code = main(["train", "--data", "synthetic:100", "--out", str(tmp_path / "m.npz"), "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "m.npz").exists()


def test_a_batch_too_large_for_imdb_names_its_own_split(tmp_path, capsys):
    # Can fail: the message said "80/10/10" for aclImdb, whose train folders split 80/20 and whose test is its own.
    for part in ("train", "test"):
        for name in ("neg", "pos"):
            (tmp_path / "acl" / part / name).mkdir(parents=True)
            for j in range(3):
                (tmp_path / "acl" / part / name / f"{j}.txt").write_text(f"a {name} review number {j}")
    code = main(["train", "--data", f"imdb:{tmp_path / 'acl'}", "--out", str(tmp_path / "m.npz"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "train split has 5 of the 12 documents (aclImdb's train folders split " \
        "80/20 into train and validation, its test folders kept), fewer than one batch of 16" in err, err


def test_missing_output_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        tr.train_and_save("synthetic:100", tmp_path / "no" / "m.npz", SPEC, FAST, progress=False)


def test_x64_does_not_change_the_training_dtype(trained):
    assert jax.config.jax_enable_x64  # conftest
    assert trained.params.W_q.dtype == jnp.float32


@pytest.mark.parametrize("changes", [{}, {"biases": True}, {"biases": True, "scale_scores": False},
                                     {"head_aggregation": "sum"}])
def test_factored_logits_are_the_models_logits_and_gradients(changes):
    # Training evaluates the folded form (numerics.training.factored); it must be numerics.model's
    # function and gradient. Can fail: the fold reads W_q and W_k apart, and the value bias.
    from attnverify.numerics import model as nm
    from attnverify.numerics.draws import draw_params
    from attnverify.numerics.training import factored

    spec = SPEC.replace(**changes)
    assert factored.foldable(spec)
    params = draw_params(jax.random.PRNGKey(3), spec, scale=2.0)
    tokens = jax.random.randint(jax.random.PRNGKey(4), (spec.max_len,), 1, spec.vocab_size)

    def reference(p):
        return nm.logits(p, nm.embed(p, tokens, spec), spec)

    np.testing.assert_allclose(factored.logits(params, tokens, spec), reference(params), rtol=1e-12, atol=1e-12)
    grad_f = jax.grad(lambda p: factored.logits(p, tokens, spec)[1])(params)
    grad_m = jax.grad(lambda p: reference(p)[1])(params)
    for a, b in zip(jax.tree_util.tree_leaves(grad_f), jax.tree_util.tree_leaves(grad_m), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    swapped = params._replace(W_q=params.W_k, W_k=params.W_q)
    assert not np.allclose(factored.logits(swapped, tokens, spec), reference(params), atol=1e-6)
    if spec.biases:
        no_value_bias = params._replace(b_v=jnp.zeros_like(params.b_v))
        assert not np.allclose(factored.logits(no_value_bias, tokens, spec), reference(params), atol=1e-6)
    assert not factored.foldable(spec.replace(query="mean"))


def test_a_training_record_describes_only_the_model_file_it_was_written_with(tmp_path, capsys):
    # Can fail: `init-model --out m.npz` over a trained m.npz left m.metrics.json beside it, and the
    # report's "Model used" (and the figures' "trained" label) described the random model as trained
    # on the old corpus, with its accuracy.
    out = tmp_path / "m.npz"
    params = draw_params(jax.random.PRNGKey(0), SPEC)
    vocab = ["[CLS]", "UNK", *(f"w{j}" for j in range(SPEC.vocab_size - 2))]
    tr.save(tr.TrainResult(SPEC, params, vocab, {"source": "csv:old.csv"}), out)
    assert tr.read_metrics(out)["source"] == "csv:old.csv"
    capsys.readouterr()
    assert main(["init-model", "--out", str(out), "--sizes", "small", "--seed", "1"]) == 0
    capsys.readouterr()
    assert tr.read_metrics(out) is None
    err = capsys.readouterr().err
    assert err.startswith(f"attnverify: warning: {tr.metrics_path(out)}: describes another model file than {out}")
    tr.metrics_path(out).write_text("{")
    assert tr.read_metrics(out) is None and "cannot read it (JSONDecodeError)" in capsys.readouterr().err
