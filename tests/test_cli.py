"""The CLI through its real entry point (the installed `attnverify` console script)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli

# The console script installed next to this interpreter (the venv's bin/), else on PATH.
_BESIDE = Path(sys.executable).with_name("attnverify")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("attnverify")
SMALL_MODEL = ["--max-len", "12", "--d-embed", "8", "--d-att", "4", "--d-out", "4", "--heads", "2"]
SENTENCE = "attention based explanations are popular but questionable"


def run(*args, check=True):
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.npz"
    run("init-model", "--seed", "1", "--out", str(path), *SMALL_MODEL)
    return path


def assert_one_line_error(proc, text):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_python_dash_m_runs_the_command_line():
    # Can fail: `python -m attnverify` said "'attnverify' is a package and cannot be directly executed".
    proc = subprocess.run([sys.executable, "-m", "attnverify", "spec", "--heads", "2"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and json.loads(proc.stdout)["heads"] == 2, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "attnverify", "spec", "--heads", "0"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("attnverify: error: spec: heads must be >= 1")


def test_python_dash_m_imports_a_claims_module_as_the_script_does(tmp_path):
    # Can fail: `python -m` put the current folder on sys.path, so `--claims-module NAME` found a
    # module there that the `attnverify` script could not.
    (tmp_path / "here_only.py").write_text("")
    for command in ([sys.executable, "-m", "attnverify"], [EXE]):
        proc = subprocess.run([*command, "claims", "--claims-module", "here_only"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)
        assert proc.returncode == 2 and "here_only: no such claims module" in proc.stderr, (command, proc.stderr)


def test_derive_gradient_text_and_json():
    text = run("derive", "gradient").stdout
    assert "derived by sympy.diff" in text and "proved for all sizes" in text
    data = json.loads(run("derive", "gradient", "--json").stdout)
    assert data["proofs"]["theorem1 (t >= 1)"]["general"] is True
    assert data["proofs"]["theorem1 at [CLS] (t = 0)"]["general"] is False
    variant = json.loads(run("derive", "gradient", "--json", "--output-link", "sigmoid").stdout)
    assert variant["derived_word"] != data["derived_word"]
    assert variant["proofs"]["theorem1 (t >= 1)"]["general"] is False
    assert "\\sum" in run("derive", "gradient", "--latex").stdout


def test_verify_theorem1_json(tmp_path):
    out = tmp_path / "r.json"
    proc = run("verify", "theorem1", "--trials", "16", "--quiet", "--json", str(out), *SMALL_MODEL)
    assert "thm1.gradient_cls_row" in proc.stdout and "Findings" in proc.stdout
    records = {r["id"]: r for r in json.loads(out.read_text())}
    keys = {"id", "statement", "dtype", "tolerance", "trials", "max_error", "median_error", "passed", "finding"}
    assert all(keys <= set(r) for r in records.values())
    assert records["thm1.gradient"]["passed"] and not records["thm1.gradient_cls_row"]["passed"]
    assert records["thm1.gradient_cls_row"]["finding"]
    # ... and says what was measured: the spec swept (the size flags given) and each claim's sides.
    gradient = records["thm1.gradient"]
    assert gradient["spec"]["max_len"] == int(SMALL_MODEL[SMALL_MODEL.index("--max-len") + 1])
    assert gradient["group"] == "theorem1" and gradient["lhs"] and gradient["rhs"] and gradient["source"]


def test_explain_json(model_file):
    data = json.loads(run("explain", "--model", str(model_file), "--text", SENTENCE, "--json").stdout)
    assert data["tokens"] == SENTENCE.split()
    for name in ("alpha_avg", "alpha_max", "grad_avg", "grad_l1", "grad_l2", "grad_x_input"):
        assert len(data[name]) == len(data["tokens"])
    assert sum(data["alpha_avg"]) < 1  # [CLS] and padding take the rest (docs/theory.md §2)
    assert all(m >= a for m, a in zip(data["alpha_max"], data["alpha_avg"], strict=True))
    table = run("explain", "--model", str(model_file), "--text", SENTENCE).stdout
    assert "questionable" in table and "grad_x_input" in table


def test_a_text_longer_than_the_model_reads_is_explained_with_a_note(model_file, capsys):
    # Can fail: the words past max_len - 1 were dropped without a word to the user.
    long_text = " ".join([SENTENCE] * 3)  # 21 words; max_len 12 reads 11
    code, out, err = cli(capsys, "explain", "--model", model_file, "--text", long_text, "--json")
    assert code == 0 and len(json.loads(out)["tokens"]) == 11
    assert err.strip() == ("attnverify: note: the text has 21 words; a model with max_len 12 reads the first 11 "
                           "([CLS] is its first token), so the rest are not explained")
    code, _, err = cli(capsys, "explain", "--model", model_file, "--text", SENTENCE, "--json")
    assert code == 0 and err == ""


def test_words_the_model_does_not_know_are_named_in_a_note(model_file, capsys, tmp_path):
    # Can fail: a text of unknown words was explained as if its words were read; every one is UNK.
    code, _, err = cli(capsys, "explain", "--model", model_file, "--text", "qqq www", "--json")
    assert code == 0 and err.strip() == (
        "attnverify: note: no word of the text is in the model's vocabulary (qqq, www): every one reads as UNK, so "
        "what is explained is the model's response to UNK at these positions, not to these words")
    code, _, err = cli(capsys, "explain", "--model", model_file, "--text", "attention qqq based", "--json")
    assert code == 0 and err.strip() == ("attnverify: note: 1 distinct word of the text is not in the model's "
                                         "vocabulary and reads as UNK: qqq")
    # figures say so too, with the truncation `explain` notes (they said nothing)
    long_text = " ".join([SENTENCE] * 3)
    code, _, err = cli(capsys, "figures", "fig3", "--model", model_file, "--out", tmp_path / "f", "--text", long_text)
    assert code == 0 and err.strip() == ("attnverify: note: fig3: the text has 21 words; a model with max_len 12 "
                                         "reads the first 11 ([CLS] is its first token), so the rest are not explained")


@pytest.mark.parametrize(
    "args, text",
    [
        (["verify", "thm9.nothing", "--trials", "2"], "unknown claim"),
        (["verify", "--trials", "0", "theorem1"], "--trials"),
        (["verify", "--max-len", "1", "theorem1"], "max_len"),
        (["explain", "--model", "missing.npz", "--text", "x"], "no such model file"),
        (["verify", "--dtype", "float16"], "invalid choice"),
        # a flag no command knows is refused by its command, as a bad value is (it read "attnverify: error:")
        (["verify", "--bogus"], "attnverify verify: error: unrecognized arguments: --bogus"),
        (["report", "--plugin", "x.py"], "attnverify report: error: unrecognized arguments: --plugin x.py"),
    ],
)
def test_bad_input_is_one_line(args, text):
    assert_one_line_error(run(*args, check=False), text)


def test_bad_model_files(tmp_path, model_file):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    assert_one_line_error(run("explain", "--model", str(garbage), "--text", "x", check=False), "not a readable")
    with np.load(model_file) as data:
        content = dict(data)
    nan = dict(content, W_k=np.full_like(content["W_k"], np.nan))
    np.savez(tmp_path / "nan.npz", **nan)
    assert_one_line_error(run("explain", "--model", str(tmp_path / "nan.npz"), "--text", "x", check=False), "NaN")
    shape = dict(content, W_v=content["W_v"][:, :-1])
    np.savez(tmp_path / "shape.npz", **shape)
    assert_one_line_error(run("explain", "--model", str(tmp_path / "shape.npz"), "--text", "x", check=False),
                          "W_v has shape")
    assert_one_line_error(run("explain", "--model", str(model_file), "--text", " ,;! ", check=False), "no words")


def test_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "missing-dir" / "model.npz"
    assert_one_line_error(run("init-model", "--out", str(out), *SMALL_MODEL, check=False), "does not exist")
    assert not out.exists()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_init_model_draw_writes_the_model_and_document_a_sweep_measured(tmp_path, capsys, dtype):
    # Can fail: the draw's index, seed, dtype or spec defaults not the sweep's, or its document not the one
    # swept. The sweep's own per-draw error of a negative control (O(1), so any other model or document
    # gives another number) is measured again on the written model and the printed document, re-tokenised.
    import jax
    import jax.numpy as jnp
    from attnverify.numerics import modelfile
    from attnverify.numerics.tokenize import encode
    from attnverify.verification import claims as _claims  # noqa: F401
    from attnverify.verification.blocks import measure_program
    from attnverify.verification.registry import REGISTRY
    from attnverify.verification.sweep import run_claim

    from attnverify.spec import SMALL

    spec = SMALL.replace(max_len=6, d_embed=4, d_att=2, d_out=2, heads=2)  # SMALL's vocabulary: verify's default
    sizes = ["--max-len", "6", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "2"]
    claim = REGISTRY["thm1.control_no_jacobian"]
    result = run_claim(claim, spec, trials=8, seed=3, dtype=dtype, progress=False)
    worst = result.worst_draw
    assert worst == int(np.argmax(result.errors)) and f"Worst: draw {worst} (seed 3)" not in (result.finding or "")
    path = tmp_path / "m.npz"
    code, out, _ = cli(capsys, "init-model", "--draw", worst, "--seed", 3, "--dtype", dtype, "--out", path, *sizes)
    assert code == 0
    model = modelfile.load(path)
    text = out.strip().splitlines()[-1].split("document: ", 1)[1]
    tokens, _ = encode(text, model.vocab, spec.max_len)
    cast = {"float64": jnp.float64, "float32": jnp.float32}[dtype]
    params = jax.tree.map(lambda x: jnp.asarray(x, cast)[None], model.params)
    again = float(measure_program(claim, spec, dtype=dtype)(params, jnp.asarray(tokens)[None])[claim.id][0])
    assert model.spec == spec and again == pytest.approx(result.errors[worst], rel=1e-5 if dtype == "float32" else 1e-9)
    others = [e for j, e in enumerate(result.errors) if j != worst]
    assert min(abs(e - again) for e in others) > 1e-3 * again  # another draw would have been told apart
