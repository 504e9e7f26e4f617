"""A user's claims module, claim or plugin that fails (raises, exits, has fields that cannot work)
is one line on stderr and exit 2, naming the claim or file; Ctrl-C stays an interrupt (130);
an error in the package's own code is still a bug, with its traceback."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from attnverify.verification.registry import REGISTRY, Claim, register
from helpers import cli

from attnverify.cli import main
from attnverify.errors import InputError
from attnverify.spec import ModelSpec

TINY = ["--max-len", "6", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "1", "--vocab-size", "12"]

HEAD = """\
import sys
import jax.numpy as jnp
from attnverify.verification import Claim, register

def ok(spec):
    return lambda params, tokens: (jnp.zeros(3), jnp.zeros(3))

def claim(**changes):
    fields = dict(id="mine.c", group="mine", statement="s", source="x", lhs="a", rhs="b", build=ok,
                  tolerance={"float64": 1e-10, "float32": 1e-4}, tolerance_reason="r", provenance="measured")
    register(Claim(**{**fields, **changes}))
"""


def module(tmp_path, body: str, name: str = "my_claims.py"):
    path = tmp_path / name
    path.write_text(HEAD + textwrap.dedent(body))
    return str(path)


def one_line(capsys, argv, *texts, status=2):
    assert main(argv) == status
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for text in texts:
        assert text in err, err
    return err


BROKEN = {
    # at run time: the claim's own code
    "build raises": ("def b(spec):\n    raise ValueError('boom')\nclaim(build=b)\n",
                     "claim 'mine.c': build raised ValueError: boom"),
    "build exits": ("def b(spec):\n    sys.exit(3)\nclaim(build=b)\n", "claim 'mine.c': build raised SystemExit"),
    "build returns no function": ("claim(build=lambda spec: 42)\n", "claim 'mine.c': build returned int"),
    "comparison raises": ("def b(spec):\n    def c(p, t):\n        raise ValueError('cmp')\n    return c\n"
                          "claim(build=b)\n", "claim 'mine.c': comparison raised ValueError: cmp"),
    "comparison exits": ("claim(build=lambda spec: lambda p, t: sys.exit('bye'))\n",
                         "claim 'mine.c': comparison raised SystemExit: bye"),
    "shapes differ": ("claim(build=lambda spec: lambda p, t: (jnp.zeros(3), jnp.zeros(4)))\n",
                      "claim 'mine.c': comparison returned lhs of shape (3,) and rhs of shape (4,)"),
    # (T, d) against (d,) broadcast, compared entries the claim never paired: a FAIL "of the mathematics"
    "shapes broadcast": ("claim(build=lambda spec: lambda p, t: (jnp.zeros((3, 4)), jnp.zeros(4)))\n",
                         "claim 'mine.c': comparison returned lhs of shape (3, 4) and rhs of shape (4,): they must "
                         "have the same shape (or one side be a single number)"),
    "not a pair": ("claim(build=lambda spec: lambda p, t: jnp.zeros(3))\n",
                   "claim 'mine.c': comparison returned"),
    "measure raises": ("def m(lhs, rhs):\n    raise RuntimeError('measure')\nclaim(measure=m)\n",
                       "claim 'mine.c': measure raised RuntimeError: measure"),
    "summary without an error": ("claim(summary=lambda values: {'mean': 1.0})\n",
                                 "claim 'mine.c': summary raised KeyError: 'error'"),
    # Each of these was a PASS (integer sides wrap: |0 - (-128)| = -128 in int8; a negative or complex
    # error is below any tolerance) or a traceback and exit 1 (empty or boolean sides, a proof that is
    # not a sentence)
    "integer sides": ("claim(build=lambda spec: lambda p, t: (jnp.array([0], jnp.int8),\n"
                      "                                       jnp.array([-128], jnp.int8)))\n",
                      "claim 'mine.c': comparison returned lhs of dtype int8, not floating point"),
    "boolean sides": ("claim(build=lambda spec: lambda p, t: (jnp.ones(3, bool), jnp.ones(3, bool)))\n",
                      "claim 'mine.c': comparison returned lhs of dtype bool, not floating point"),
    "empty sides": ("claim(build=lambda spec: lambda p, t: (jnp.zeros(0), jnp.zeros(0)))\n",
                    "claim 'mine.c': comparison returned an empty lhs (shape (0,))"),
    "complex error": ("claim(measure=lambda lhs, rhs: jnp.asarray(1e3j))\n",
                      "claim 'mine.c': measure raised TypeError: returned complex"),
    "negative error": ("claim(measure=lambda lhs, rhs: -1e6 + 0 * jnp.sum(lhs))\n",
                       "claim 'mine.c': its measure returned a negative error (-1e+06)"),
    "proof not a sentence": ("claim(proof=lambda spec: 3)\n", "claim 'mine.c': proof returned int, not a sentence"),
    # a line break split the table's row in two; an empty proof printed an empty cell (exit 0 both)
    "proof on two lines": ("claim(proof=lambda spec: 'one\\ntwo')\n",
                           "claim 'mine.c': proof returned 'one\\ntwo', not a sentence on one line"),
    "proof blank": ("claim(proof=lambda spec: ' ')\n",
                    "claim 'mine.c': proof returned ' ', not a sentence on one line"),
    # at registration: named with the file and the claim
    "build is None": ("claim(build=None)\n", "claim 'mine.c': build must be a function"),
    "tolerance is a string": ("claim(tolerance={'float64': 'tiny', 'float32': 1e-4})\n",
                              "claim 'mine.c': the float64 tolerance must be a number, got 'tiny'"),
    "requires an unknown field": ("claim(requires={'no_such_field': 1})\n",
                                  "claim 'mine.c': requires names 'no_such_field'"),
    # a value no spec takes, or no expectation: the claim could never be judged (it read "hyp. unmet")
    "requires a value no spec takes": ("claim(requires={'output_link': 'logt'})\n",
                                       "claim 'mine.c': requires output_link='logt', not one of logit, sigmoid"),
    "requires a string for a switch": ("claim(requires={'scale_scores': 'yes'})\n",
                                       "claim 'mine.c': requires scale_scores='yes', not True or False"),
    "holds is None": ("claim(holds=None)\n", "claim 'mine.c': holds must be True or False, got None"),
    "tolerance is an array": ("claim(tolerance={'float64': jnp.array(1e-10), 'float32': 1e-4})\n",
                              "claim 'mine.c': the float64 tolerance must be a Python number, got ArrayImpl"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_user_claim_is_one_line_and_exit_2(tmp_path, capsys, case):
    body, text = BROKEN[case]
    one_line(capsys, ["verify", "mine", "--claims-module", module(tmp_path, body), "--trials", "2", "--quiet", *TINY],
             "attnverify: error: ", text)


def test_a_claim_that_fails_mid_sweep_says_so_on_a_line_of_its_own(tmp_path, capsys):
    # Can fail: with the progress bar on, the error was written at the end of the bar's line
    # ("mine.c:   0%| | 0/2 [00:00<?, ?draw/s]attnverify: error: ...").
    body, _ = BROKEN["comparison raises"]
    assert main(["verify", "mine", "--claims-module", module(tmp_path, body), "--trials", "2", *TINY]) == 2
    shown = capsys.readouterr().err.rstrip("\n").split("\r")[-1]  # what a terminal shows last
    assert shown.startswith("attnverify: error: claim 'mine.c': comparison raised"), shown


@pytest.mark.parametrize(("body", "text"), [("sys.exit(3)\n", "sys.exit(3)"), ("raise SystemExit('bye')\n", "bye"),
                                            ("sys.exit()\n", "sys.exit(0)")])
@pytest.mark.parametrize("command", ["verify", "claims"])
def test_a_claims_module_that_exits_is_one_line_and_exit_2(tmp_path, capsys, body, text, command):
    path = module(tmp_path, body)
    argv = ["verify", "thm1.gradient", "--trials", "2", "--quiet", *TINY] if command == "verify" else ["claims"]
    one_line(capsys, [*argv, "--claims-module", path], f"{path}: SystemExit (line ", text)


def test_an_exception_whose_message_itself_raises_is_named_by_its_type(tmp_path, capsys):
    # Can fail: the one-line message called str() on the user's exception, whose __str__ raised in turn:
    # a 32-line traceback ("During handling of the above exception...") and exit code 1.
    body = """\
        class Unspeakable(Exception):
            def __str__(self):
                raise ValueError("not this either")
        raise Unspeakable()
        """
    path = module(tmp_path, body)
    one_line(capsys, ["claims", "--claims-module", path], f"{path}: Unspeakable (line ")


def test_a_plugin_that_exits_is_one_line_and_exit_2(tmp_path, capsys):
    plugin = tmp_path / "variant.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    one_line(capsys, ["derive", "gradient", "--plugin", str(plugin)], f"{plugin}: SystemExit (line 2)", "sys.exit(3)")
    plugin.write_text(textwrap.dedent("""\
        import sys
        from attnverify.theory import SymbolicModel
        class Model(SymbolicModel):
            def score(self, i, t):
                sys.exit(4)
        """))
    one_line(capsys, ["derive", "gradient", "--plugin", str(plugin)], "Model.score raised SystemExit: exit code 4")


@pytest.mark.parametrize("body", ["raise KeyboardInterrupt\n",
                                  "def b(spec):\n    raise KeyboardInterrupt\nclaim(build=b)\n"])
def test_ctrl_c_in_user_code_stays_an_interrupt(tmp_path, capsys, body):
    assert main(["verify", "mine", "--claims-module", module(tmp_path, body), "--trials", "2", "--quiet", *TINY]) == 130
    assert capsys.readouterr().err.strip() == "attnverify: interrupted"


def test_a_plugin_whose_forward_is_not_finite_is_refused(tmp_path, capsys):
    # Can fail: SymPy folds output() + nan to nan, a constant: its derived gradient and jax.grad were
    # both 0 and thm1.derived PASSed with no NaN draw.
    plugin = tmp_path / "variant.py"
    for body, name, value in [("def output(self):\n        return super().output() + sympy.nan", "output", "nan"),
                              ("def score(self, i, t):\n        return sympy.oo", "score", "oo")]:
        plugin.write_text(f"import sympy\nfrom attnverify.theory import SymbolicModel\nclass Model(SymbolicModel):\n"
                          f"    {body}\n")
        one_line(capsys, ["verify", "thm1.derived", "--plugin", str(plugin), "--trials", "2", "--quiet", *TINY],
                 f"Model.{name} is not finite: SymPy made it {value}")


def test_a_finding_that_cannot_be_formatted_falls_back_to_the_generic_one_with_a_warning(capsys):
    # Can fail: finding="fails by {0}" raised IndexError after the sweep: a traceback and exit 1;
    # then a typo ("{max_eror}") was swallowed without a word.
    import dataclasses

    import numpy as np
    from attnverify.verification.sweep import judge_claim

    mine = Claim(id="mine.f", group="mine", statement="s", source="x", lhs="a", rhs="b", build=lambda spec: None,
                 tolerance={"float64": 1e-10, "float32": 1e-4}, tolerance_reason="r", provenance="measured",
                 finding="fails by {0} and {max_error.x}")
    for finding in ("fails by {0} and {max_error.x}", "fails by {max_eror:.3g}"):
        result = judge_claim(dataclasses.replace(mine, finding=finding), ModelSpec(), np.full(4, 0.5), trials=4)
        assert result.finding == "FAILS where it is claimed to hold: max error 0.5 > 1e-10. Worst: draw 0 (seed 0)."
        err = capsys.readouterr().err
        assert err.startswith("attnverify: warning: claim mine.f: its finding does not format (") and \
            err.count("\n") == 1 and "the generic one is shown" in err, err


def test_the_generic_finding_of_a_claim_expected_to_fail_says_so():
    # Can fail: a user's claim with holds=False that failed, as expected, read "FAILS where it is
    # claimed to hold" under a table that said "FAIL (expected)".
    import numpy as np
    from attnverify.verification.sweep import judge_claim

    mine = Claim(id="mine.x", group="mine", statement="s", source="x", lhs="a", rhs="b", build=lambda spec: None,
                 tolerance={"float64": 1e-10, "float32": 1e-4}, tolerance_reason="r", provenance="measured",
                 holds=False)
    result = judge_claim(mine, ModelSpec(), np.full(4, 0.5), trials=4)
    assert result.verdict == "expected_fail"
    assert result.finding == "Fails as expected (measured): max error 0.5 > 1e-10."


@pytest.mark.parametrize("how", ["file", "module"])
def test_a_claims_module_that_fails_while_loading_registers_nothing(how, tmp_path, capsys, monkeypatch):
    # Can fail: the claims registered before the module's error stayed in the process, and the
    # next command without the module (a notebook's next cell) ran them.
    body = 'claim(id="half.a", group="half")\nraise RuntimeError("broken below the first claim")\n'
    path = module(tmp_path, body, name="half_loaded.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = path if how == "file" else "half_loaded"
    code, _, err = cli(capsys, "claims", "--claims-module", name)
    assert code == 2 and "broken below the first claim" in err
    assert "half.a" not in REGISTRY


def test_a_claims_file_that_unregisters_and_then_fails_changes_no_registration(tmp_path, capsys):
    # Can fail: only the claims a failing file added were undone, so the claim it had unregistered
    # before its error stayed out of the process (and its origin was forgotten).
    from attnverify.verification.registry import _ORIGIN

    fields = dict(group="keep", statement="s", source="x", lhs="a", rhs="b", build=lambda spec: None,
                  tolerance={"float64": 1e-3, "float32": 1e-3}, tolerance_reason="r", provenance="measured")
    kept = register(Claim(id="keep.me", **fields))
    register(Claim(id="keep.last", **fields))  # after it: put back at the end, keep.me would move
    order, origin = list(REGISTRY), _ORIGIN["keep.me"]
    body = 'from attnverify.verification import unregister\nunregister("keep.me")\nraise RuntimeError("after")\n'
    code, _, err = cli(capsys, "claims", "--claims-module", module(tmp_path, body, name="drops_one.py"))
    assert code == 2 and "after" in err
    assert REGISTRY.get("keep.me") is kept and list(REGISTRY) == order and _ORIGIN["keep.me"] == origin


def test_a_plugin_refused_after_it_ran_changes_no_registration(tmp_path):
    # Can fail: only an error while the file ran was undone; a file refused afterwards (its model
    # does not compile) kept the claim it registered, which then ran, unowned, under any spec.
    from attnverify.plugins import load_plugin

    body = ('claim(id="regfail.c", group="regfail")\nimport sympy as sp\n'
            "from attnverify.theory import SymbolicModel\n\nclass Model(SymbolicModel):\n"
            "    def score(self, i, t):\n        return sp.erf(super().score(i, t))\n")
    with pytest.raises(InputError, match="cannot be compiled"):
        load_plugin(module(tmp_path, body, name="regfail.py"))
    assert "regfail.c" not in REGISTRY


def test_a_helper_of_a_file_that_failed_runs_again_when_the_file_is_mended(tmp_path, monkeypatch):
    # Can fail: the helper module stayed imported after the file's error, so loading the mended file
    # did not run it again: the claim it registers, taken out with the failed file's, stayed gone.
    from attnverify.plugins import load_plugin

    (tmp_path / "helper_claims.py").write_text(HEAD + 'claim(id="helper.c", group="helper")\n')
    monkeypatch.delitem(sys.modules, "helper_claims", raising=False)
    model = "from attnverify.theory import SymbolicModel\n\nclass Model(SymbolicModel):\n    pass\n"
    path = tmp_path / "mine.py"
    path.write_text("import helper_claims\n" + model + "raise RuntimeError('not yet')\n")
    with pytest.raises(InputError, match="not yet"):
        load_plugin(path)
    assert "helper.c" not in REGISTRY
    path.write_text("import helper_claims\n" + model)
    assert load_plugin(path).claims == ("helper.c",) and "helper.c" in REGISTRY
    monkeypatch.delitem(sys.modules, "helper_claims", raising=False)


def test_registration_checks_what_it_can():
    base = dict(id="mine.r", group="mine", statement="s", source="x", lhs="a", rhs="b", build=lambda spec: None,
                tolerance={"float64": 1e-3, "float32": 1e-3}, tolerance_reason="r", provenance="measured")
    for changes, text in [({"build": None}, "build must be a function"),
                          ({"tolerance": {"float64": "1e-3", "float32": 1e-3}}, "float64 tolerance must be a number"),
                          ({"tolerance": {"float64": 1e-3, "float32": None}}, "no tolerance for float32"),
                          ({"tolerance": {"float64": True, "float32": 1e-3}}, "float64 tolerance must be a number"),
                          ({"requires": {"scorr": "dot"}}, "requires names 'scorr'"),
                          ({"context": 3}, "context must be None or a function")]:
        with pytest.raises(InputError, match=f"claim 'mine.r': .*{text}"):
            register(Claim(**{**base, **changes}))
        assert "mine.r" not in REGISTRY
    with pytest.raises(InputError, match="requires names 'nope'"):
        ModelSpec().satisfies({"nope": 1})


def test_the_packages_own_errors_stay_bugs():
    from attnverify.verification.registry import build_comparison, user_code

    builtin = REGISTRY["thm1.gradient"]
    with pytest.raises(ZeroDivisionError):
        with user_code(builtin, "build"):
            raise ZeroDivisionError
    import dataclasses

    copy = dataclasses.replace(builtin, id="mine.copy")  # a user's claim, the package's build
    with pytest.raises(ZeroDivisionError):
        with user_code(copy, "build", copy.build):
            raise ZeroDivisionError
    mine = dataclasses.replace(builtin, id="mine.copy", build=lambda spec: 1 / 0)
    with pytest.raises(InputError, match="claim 'mine.copy': build raised ZeroDivisionError"):
        build_comparison(mine, ModelSpec())


def test_report_records_a_broken_user_claim_in_one_line(tmp_path, capsys):
    """The report keeps going and records the claim that could not run (exit 1, as for any claim
    that could not run), with one log line for it and no traceback."""
    path = module(tmp_path, "def b(spec):\n    raise ValueError('boom')\nclaim(build=b)\n")
    init = tmp_path / "m.npz"
    assert main(["init-model", "--out", str(init), *TINY]) == 0
    capsys.readouterr()
    out = tmp_path / "rep"
    assert main(["report", "--claims-module", path, "--model", str(init), "--out", str(out), "--claims", "mine",
                 "--figures", "architecture", "--trials", "2", "--jobs", "1", *TINY]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if "mine.c" in line]) == 1, err
    (recorded,) = json.loads((out / "results.json").read_text())["errors"]
    assert "mine.c" in recorded and "build raised ValueError: boom" in recorded


@pytest.mark.parametrize("body, text", [
    # each was accepted: `verify thm1.gradient` then ran the user's claim instead of the built-in one,
    # a claim `theorem1` could never be selected, a blank id was listed as an empty row
    ("claim(group='thm1.gradient')\n", "its group 'thm1.gradient' is another claim's id"),
    ("claim(id='theorem1')\n", "claim id 'theorem1' is the name of the group 'theorem1'"),
    ("claim(id='', group='')\n", "id '' cannot be selected"),
    ("claim(id='mine.all', group='all')\n", "group 'all' cannot be selected"),
    # accepted: the table broke over two lines, and `verify` could not name the claim
    ("claim(id='mine ok\\nsecond')\n", "id 'mine ok\\nsecond' holds a space or a control character"),
    ("claim(group='my group')\n", "group 'my group' holds a space"),
    ("claim(statement='')\n", "statement '' is empty"),
    # accepted: the statement's second line broke the table's row in two
    ("claim(statement='line one\\nline two')\n", "statement 'line one\\nline two' holds a line break"),
])
def test_a_users_claim_names_must_select_it_and_hide_no_other(tmp_path, capsys, body, text):
    one_line(capsys, ["claims", "--claims-module", module(tmp_path, body)], text)


def test_an_id_registered_by_another_module_is_not_taken_over(tmp_path, capsys):
    # Can fail: the second module's claim silently replaced the first's (only B's was listed, exit 0); the
    # message then named the first by its generated module name (attnverify_claims_dup_a_...), not its file.
    first, second = (module(tmp_path, "claim()\n", name) for name in ("dup_a.py", "dup_b.py"))
    one_line(capsys, ["claims", "--claims-module", first, "--claims-module", second],
             f"claim id 'mine.c' is already registered by {first} (")
    # the same module loaded again (a re-run notebook cell, a repeated flag) still replaces its claim
    assert main(["claims", "--claims-module", first, "--claims-module", first]) == 0


def test_a_free_index_without_a_piecewise_is_not_blamed_on_one(tmp_path, capsys):
    # Can fail: "SymPy moves a Piecewise out of a Sum" was the reason given for any free index.
    plugin = tmp_path / "free.py"
    plugin.write_text("from attnverify.theory import SymbolicModel, symbols\nclass Model(SymbolicModel):\n"
                      "    def score(self, i, t):\n        return super().score(i, t) + symbols.e[t, symbols.k]\n")
    err = one_line(capsys, ["derive", "gradient", "--plugin", str(plugin)],
                   "has the free index k: a method uses an index that no sum of the forward runs over")
    assert "Piecewise" not in err
    with pytest.raises(InputError, match="the plugin or claims-module path is empty"):
        __import__("attnverify").derive(plugin="")


@pytest.mark.parametrize("argv", [["verify", "theorem1", "--plugin", ""], ["derive", "gradient", "--plugin", " "],
                                  ["claims", "--claims-module", ""]])
def test_an_empty_plugin_or_claims_module_is_an_error_not_a_run_without_it(argv, capsys):
    # Can fail: `--plugin ""` (an unset shell variable) ran the built-in model and exited 0, and
    # `--claims-module ""` said "attnverify: error: : ValueError: Empty module name".
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err.startswith(f"attnverify {argv[0]}: error: argument {argv[-2]}: empty: give "), err
    assert len(err.splitlines()) == 1


def test_an_empty_claims_module_name_is_refused_by_the_api_too():
    from attnverify.plugins import load_claims_module

    for name in ("", " "):  # the same words as for an empty plugin path (derive(plugin=""), above)
        with pytest.raises(InputError, match="the plugin or claims-module path is empty"):
            load_claims_module(name)


def test_a_plugin_that_prints_leaves_the_json_on_stdout_alone(tmp_path, capsys):
    # Can fail: `claims --plugin F --json` (and derive, explain) began with the plugin's own lines,
    # and json.loads of the output failed at line 1.
    path = tmp_path / "prints.py"
    path.write_text("from attnverify.theory import SymbolicModel\nprint('hello from the file')\n\n"
                    "class Model(SymbolicModel):\n    def score(self, i, t):\n"
                    "        print('hello from a method')\n        return super().score(i, t)\n")
    code, out, err = cli(capsys, "claims", "--plugin", path, "--json")
    assert code == 0 and "thm1.gradient" in {record["id"] for record in json.loads(out)}
    assert "hello from the file" in err and "hello from a method" in err
    assert "hello from a method" in cli(capsys, "claims", "--plugin", path)[1]  # a table: printed where it was


def test_a_claims_file_imports_a_helper_module_beside_it(tmp_path, capsys):
    # Can fail: `from base import GROUP` in a claims file raised ModuleNotFoundError under the
    # `attnverify` script (its folder was not searched) and worked under `python -m attnverify`.
    (tmp_path / "helper_beside.py").write_text("GROUP = 'beside'\n")
    path = module(tmp_path, "from helper_beside import GROUP\nclaim(id='beside.one', group=GROUP)\n")
    code, out, err = cli(capsys, "claims", "--claims-module", path)
    assert code == 0 and "beside.one" in out, err
    assert str(tmp_path) not in sys.path  # searched while the file ran, not after


def test_nan_draws_of_an_identity_leave_its_error_to_the_finite_draws(tmp_path, capsys):
    # Can fail: a measure NaN on some draws was reported as "max inf, median nan", with every
    # quantile 0 and max_error null in the JSON, though no draw was inf: the NaN draws are counted
    # apart (and fail the claim, undeclared); the error is that of the others.
    body = ("claim(build=lambda spec: lambda p, t: (p.embedding[t[1]], jnp.zeros_like(p.embedding[t[1]])),\n"
            "      measure=lambda lhs, rhs: jnp.where(lhs[0] > 0, jnp.nan, 0.0))\n")
    out = tmp_path / "r.json"
    code, text, err = cli(capsys, "verify", "mine", "--claims-module", module(tmp_path, body), "--trials", "32",
                          "--json", out, *TINY)
    (record,) = json.loads(out.read_text())
    assert code == 1 and record["verdict"] == "fail" and 0 < record["nonfinite"] < 32, (text, err)
    assert record["max_error"] == 0.0 and record["median_error"] == 0.0
    assert f"max 0.00e+00, median 0.00e+00 ({32 - record['nonfinite']} of 32 draws used; " in text
    assert "NaN/inf: a draw that cannot be computed is no evidence" in record["finding"]
