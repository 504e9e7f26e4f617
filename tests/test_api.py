"""The Python API (attnverify.derive / verify / explain): the same records as the CLI's JSON,
readable reprs, notebook-defined variants, and a light `import attnverify`."""

import json
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from attnverify.verification import register

import attnverify
from attnverify import validate
from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.spec import SMALL, ModelSpec

TINY = ModelSpec(max_len=5, d_embed=6, d_att=3, d_out=4, heads=2, vocab_size=30)
FLAGS = ["--max-len", "5", "--d-embed", "6", "--d-att", "3", "--d-out", "4", "--heads", "2", "--vocab-size", "30"]
VARIANT = """
from attnverify.theory import SymbolicModel

class Model(SymbolicModel):
    def score(self, i, t):
        return super().score(i, t) / self.constant("temperature", 3.0)
"""


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "hot.py"
    path.write_text(textwrap.dedent(VARIANT))
    return path


def test_import_attnverify_stays_light():
    code = ("import sys, attnverify; assert callable(attnverify.derive.__call__); "
            "print(sorted(m for m in ('jax', 'sympy', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_derive_records_are_the_cli_json(variant, capsys):
    result = attnverify.derive(plugin=variant)
    assert main(["derive", "gradient", "--json", "--plugin", str(variant)]) == 0
    assert result.records == json.loads(capsys.readouterr().out)
    assert result.proofs["theorem1 (t >= 1)"] == "not proved"
    assert result.records["plugin"]["constants"] == {"temperature": 3.0}
    text = repr(result)
    assert text.startswith("Gradient of the explained output") and "forward = the paper's model: not proved" in text


def test_verify_records_are_the_cli_json(variant, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["verify", "thm1.derived", "thm1.gradient", "--trials", "4", "--quiet", "--json", str(out), *FLAGS]
    assert main([*argv, "--plugin", str(variant)]) == 0
    table = capsys.readouterr().out
    result = attnverify.verify(["thm1.derived", "thm1.gradient"], plugin=variant, spec=TINY, trials=4)
    assert result.records == json.loads(out.read_text())
    assert result.verdicts == {"thm1.derived": "pass", "thm1.gradient": "hyp_unmet"}
    assert "claim" in repr(result) and "thm1.gradient" in repr(result)
    assert repr(result).splitlines()[-1] == table.strip().splitlines()[-1]  # the same summary line


def test_a_class_defined_in_a_notebook_and_a_re_registered_claim():
    from attnverify.numerics import autodiff_gradient
    from attnverify.theory import SymbolicModel
    from attnverify.verification import REGISTRY, Claim, register

    class Same(SymbolicModel):
        def query(self, i, a):
            return super().query(i, a)

    def claim(tolerance):
        def build(spec):
            g = autodiff_gradient(spec)
            return lambda params, tokens: (g(params, tokens), g(params, tokens) * (1 + tolerance))

        return Claim(id="notebook.self", group="notebook", statement="a gradient equals itself (scaled)",
                     source="test", lhs="g", rhs="g (1 + tol)", build=build,
                     tolerance={"float64": 1e-3, "float32": 1e-3}, tolerance_reason="test",
                     provenance="measured")

    register(claim(0.0))
    register(claim(0.5))  # the re-run cell: replaces, and the new claim is the one run
    result = attnverify.verify("notebook.self", plugin=Same, spec=TINY, trials=4)
    assert result.verdicts == {"notebook.self": "fail"}  # 1/1.5 off: the replaced claim is what ran
    assert REGISTRY["notebook.self"].statement.startswith("a gradient")


def test_explain_records_are_the_cli_json(variant, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["init-model", "--plugin", str(variant), "--out", str(model), "--seed", "2", *FLAGS]) == 0
    capsys.readouterr()
    argv = ["explain", "--model", str(model), "--text", "attention is not popular", "--json", "--lime-samples", "64"]
    assert main([*argv, "--plugin", str(variant)]) == 0
    cli = json.loads(capsys.readouterr().out)
    result = attnverify.explain("attention is not popular", model=model, plugin=variant, lime_samples=64)
    assert result.records == cli
    # and its repr is the command's text (it lacked the closed forms' columns and the blank line)
    assert main([*argv[:-3], "--lime-samples", "64", "--plugin", str(variant)]) == 0
    assert repr(result) == capsys.readouterr().out.rstrip("\n")
    assert cli["lime_settings"]["path"] == "generic" and cli["eq19"] is None and cli["eq19_reason"]
    assert set(cli["lime_paths_refused"]) == {"ratio", "structured"}
    # Without the plugin the file is refused, in one line.
    assert main(["explain", "--model", str(model), "--text", "attention is not popular"]) == 2
    assert "`explain --plugin FILE` reads it, given the plugin file that wrote it" in capsys.readouterr().err


def test_api_bad_input_is_an_input_error(variant):
    with pytest.raises(InputError, match="spec: unknown field"):
        attnverify.derive(plugin=variant, heads_count=3)
    with pytest.raises(InputError, match="no such file"):
        attnverify.derive(plugin=variant.with_name("missing.py"))
    with pytest.raises(InputError, match="plugin must be a file path or a SymbolicModel subclass"):
        attnverify.verify(plugin=42, spec=TINY)


@pytest.mark.parametrize(("call", "kwargs", "text"), [
    # Each of these ran (seed 1.5 as seed 1, recorded as 1.5; scale_scores="no" as True), raised a
    # TypeError from deep inside, or ran for minutes where the command line refuses in one line.
    ("verify", {"seed": 1.5}, "seed must be an integer, got 1.5"),
    ("verify", {"seed": -1}, "seed must be in 0..4294967295, got -1"),
    ("verify", {"trials": 2.5}, "trials must be an integer, got 2.5"),
    ("verify", {"trials": 10**13}, "trials 10000000000000 (the errors of one claim) needs at least"),  # not --trials
    ("verify", {"scale": "1"}, "scale must be a number, got '1'"),
    ("verify", {"claims": None}, "claims must be a name or a list of names, got None"),
    ("verify", {"claims": []}, "claims: an empty list names nothing (give 'all' for every claim)"),
    ("verify", {"progress": "no"}, "progress must be True or False, got 'no'"),
    ("derive", {"explicit_check": "no"}, "explicit_check must be True or False, got 'no'"),
    ("verify", {"heads": "2"}, "spec: field heads must be int, got '2'"),
    ("verify", {"scale_scores": "no"}, "spec: field scale_scores must be bool, got 'no'"),
    ("verify", {"vocab_size": 10**9, "d_embed": 10**4}, "a sweep block"),
    ("explain", {"text": None}, "text must be a string, got NoneType"),
    ("explain", {"nu": -1}, "nu must be > 0, got -1"),
    ("explain", {"removal": "bogus"}, "removal must be delete or replace, got 'bogus'"),
    ("explain", {"lime_samples": 10**12}, "lime_samples 1000000000000 x lime_runs 1 needs at least"),
    ("derive", {"heads": 2.5}, "spec: field heads must be int, got 2.5"),
    # Each of these was accepted and ignored, where the command line refuses it
    ("derive", {"max_len": 5}, "derive: max_len: the derivation holds for every size; only the switches change it"),
    ("explain", {"nu": 0.5, "lime_runs": 3}, "lime_runs, nu apply to LIME: give lime_samples too"),
    ("explain", {"removal": "replace"}, "removal applies to LIME: give lime_samples too"),
    # Without a model file: a max_len of 1e8 hung in the float-range check, 2**40 heads raised from the draws
    ("explain", {"max_len": 10**11}, "the model (V=64, T=100000000000"),  # terabytes: no machine has them free
    ("explain", {"heads": 2**40}, "K=1099511627776"),
    # TypeErrors from pathlib
    ("explain", {"model": 5}, "model must be a model file's path, got int"),
    ("explain", {"model": b"m.npz"}, "model must be a model file's path, got bytes"),
    # accepted, and changing nothing, where the command line refuses it
    ("explain", {"lime_samples": 10, "lime_limit_samples": 5},
     "lime_limit_samples: the limit at d = 2 is enumerated exactly (4 masks)"),
    ("explain", {"lime_samples": 10, "lime_limit_samples": 2**18},  # the default, given: refused as on the CLI
     "lime_limit_samples: the limit at d = 2 is enumerated exactly (4 masks)"),
    # 17 distinct words, past the structured path's enumeration: 5 samples for 16 batches, printed as "undefined"
    ("explain", {"text": "attention based explanations are popular but questionable the a an and or not no is was be",
                 "max_len": 20, "lime_samples": 10,
                 "lime_limit_samples": 5}, "lime_limit_samples: the Monte-Carlo limit at d = 17 needs at least 288"),
])
def test_bad_arguments_are_one_line_input_errors_as_on_the_command_line(call, kwargs, text):
    args = {"verify": ("thm1.gradient",), "explain": ("attention based",), "derive": ()}[call]
    if "text" in kwargs or "claims" in kwargs:  # given by keyword
        args = ()
    if call == "verify":
        kwargs = {"trials": 2, **kwargs}
    with pytest.raises(InputError, match=re.escape(text)):
        getattr(attnverify, call)(*args, **kwargs)


@pytest.mark.parametrize(("fields", "message"), [
    ({"scale_scores": "no"}, "spec: field scale_scores must be bool, got 'no'"),
    ({"heads": 2.0}, "spec: field heads must be int, got 2.0"),
    ({"heads": np.int64(2)}, "spec: field heads must be int, got np.int64(2)"),
])
def test_a_spec_built_with_a_wrong_type_is_refused_as_it_is_built(fields, message):
    # Can fail: verify(spec=ModelSpec(scale_scores="no")) ran the scaled model ("no" is true) and
    # recorded "no"; heads=2.0 ended in JAX's TypeError; np.int64(2) failed only when the results
    # were written, after the whole sweep.
    with pytest.raises(InputError, match=re.escape(message)):
        ModelSpec(**fields)
    assert ModelSpec(heads=2, scale_scores=False).heads == 2


# -- what a notebook passes: NumPy and JAX numbers, None for "not given", wrong types --------------------
def test_numbers_of_any_kind_are_the_numbers_they_hold(capsys):
    # Can fail: scale=np.array(0.5) crashed in the sweep's cache (unhashable), np.float32(0.5) after the whole
    # sweep (its records not JSON), nu=np.float32(0.5) left explain's to_json() unwritable, nu=None a TypeError;
    # trials=np.int64(2), a size or lime_samples as a NumPy or JAX integer was refused as "not an integer".
    from fractions import Fraction

    import numpy as np

    tiny = dict(max_len=6, d_embed=4, d_att=2, d_out=2, heads=1, vocab_size=12)
    plain = attnverify.verify("thm1.derived", trials=2, scale=0.5, **tiny).records
    for scale in (np.array(0.5), jax.numpy.asarray(0.5), np.float32(0.5), Fraction(1, 2)):
        assert attnverify.verify("thm1.derived", trials=2, scale=scale, **tiny).records == plain
    base = attnverify.explain("good movie", lime_samples=20, nu=0.5, **tiny).records
    for nu in (np.float32(0.5), np.array(0.5)):
        records = attnverify.explain("good movie", lime_samples=20, nu=nu, **tiny).records
        assert records == base and json.loads(json.dumps(records)) == records
    default = attnverify.explain("good movie", lime_samples=20, **tiny).records
    assert attnverify.explain("good movie", lime_samples=20, nu=None, **tiny).records == default
    counts = dict(tiny, max_len=np.int32(6), heads=np.array(1), d_embed=jax.numpy.asarray(4))
    assert attnverify.verify("thm1.derived", trials=np.int64(2), seed=np.uint8(0), scale=0.5, **counts).records \
        == plain
    assert attnverify.explain("good movie", lime_samples=np.int64(20), lime_runs=np.int16(1), **counts).records \
        == default
    for trials in (np.True_, np.array([2, 2]), 2.0):  # a truth value, several numbers, a float: still refused
        with pytest.raises(InputError, match="trials must be an integer"):
            attnverify.verify("thm1.derived", trials=trials, **tiny)


@pytest.mark.parametrize("call, message", [
    (lambda: attnverify.verify("thm1.derived", trials=2, dtype=["float64"]),
     "dtype must be float64 or float32, got ['float64']"),
    (lambda: attnverify.verify("thm1.derived", trials=2, scale=1e300), "scale 1e+300 (float64, draw 0)"),
    (lambda: SMALL.replace(bogus=1), "spec: unknown field(s) bogus"),
    (lambda: ModelSpec.from_dict(None), "spec: expected a dict of fields, got NoneType"),
    (lambda: ModelSpec.from_dict({1: 2}), "spec: unknown field(s) 1"),
    (lambda: ModelSpec.from_json(None), "spec: expected JSON text, got NoneType"),
    (lambda: register(None), "register takes a Claim, got NoneType"),
])
def test_a_wrong_argument_is_an_input_error_naming_it(call, message):
    # Can fail: each raised TypeError, AttributeError or an InputError naming the CLI's --scale.
    with pytest.raises(InputError) as caught:
        call()
    assert message in str(caught.value) and "--" not in str(caught.value)


def test_running_out_of_memory_is_an_input_error(monkeypatch):
    # Can fail: XLA's allocator error reached the notebook as a JaxRuntimeError with its JAX frames, where the
    # command line refuses it in one line.
    from attnverify.numerics import explanations

    class JaxRuntimeError(RuntimeError):  # what jaxlib raises, by its name
        pass

    def exhausted(*args, **kwargs):
        raise JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 53264000576 bytes")

    monkeypatch.setattr(explanations, "explain", exhausted)
    with pytest.raises(InputError, match=r"^out of memory \(use smaller sizes\)$"):
        attnverify.explain("good movie", max_len=6, d_embed=4, d_att=2, d_out=2, heads=1, vocab_size=12)


@pytest.mark.parametrize("scorer", ["dot", "additive", "deep"])
def test_a_models_memory_counts_the_arrays_it_draws(scorer):
    # Can fail: U_score (K x A x A) was counted for every scorer, so a dot model with d_att = 2048 was refused as
    # needing 33.6 GiB. The oracle: the arrays `draw_params` draws, by scorer, against the dot model's.
    import numpy as np
    from attnverify.numerics.draws import draw_params

    spec = ModelSpec(max_len=6, d_embed=4, d_att=3, d_out=2, heads=2, vocab_size=12, scorer=scorer)
    dot = spec.replace(scorer="dot")
    size = {s: sum(np.size(x) for x in jax.tree.leaves(draw_params(jax.random.PRNGKey(0), s))) for s in (spec, dot)}
    assert validate.spec_bytes(spec) - validate.spec_bytes(dot) == 8 * (size[spec] - size[dot])

