"""JAX options from a user's environment: those that change what a program means are set to the
values the programs are written for, with a warning; the debugging stops at NaN are refused; a
value JAX cannot read is one line (numerics/jax_options.py, attnverify/cli.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from attnverify.numerics.jax_options import PINNED, STOP_AT_NAN
from helpers import assert_one_line_error, cli

_BESIDE = Path(sys.executable).with_name("attnverify")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("attnverify")

#: A value of each pinned option other than attnverify's, as a researcher's shell might set it.
OTHER = {"jax_numpy_rank_promotion": "raise", "jax_numpy_dtype_promotion": "strict",
         "jax_default_prng_impl": "rbg", "jax_threefry_partitionable": False,
         "jax_default_matmul_precision": "bfloat16"}


@pytest.fixture
def pinned_afterwards():
    yield
    for option, (value, *_) in PINNED.items():  # as tests/conftest.py set them, whatever the test did
        jax.config.update(option, value)


def test_options_that_change_a_program_are_set_back_with_a_warning(pinned_afterwards, capsys):
    # Can fail: under JAX_NUMPY_RANK_PROMOTION=raise, JAX_NUMPY_DTYPE_PROMOTION=strict or
    # JAX_DEFAULT_PRNG_IMPL=rbg, `verify theorem1` ended in JAX's traceback (measured, each alone).
    assert set(OTHER) == set(PINNED)
    for option, value in OTHER.items():
        jax.config.update(option, value)
    code, out, err = cli(capsys, "verify", "theorem1", "--trials", "1", "--quiet")
    assert code == 0, err
    assert "4 pass, 0 fail (unexpected), 2 expected fail" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == len(PINNED), err
    for (option, (value, variable, _)), line in zip(PINNED.items(), warnings, strict=True):
        assert line.startswith(f"attnverify: warning: {variable}=") and "is not used" in line, line
        assert getattr(jax.config, option) == value
    assert cli(capsys, "verify", "thm1.gradient", "--trials", "1", "--quiet")[2] == ""  # set: no warning again


@pytest.mark.parametrize(("option", "variable"), list(STOP_AT_NAN.items()))
def test_jax_stopping_at_a_nan_is_a_one_line_error(option, variable, capsys):
    # Can fail: under JAX_DEBUG_NANS=1 `verify theorem1` ended in JAX's FloatingPointError traceback
    # (the embedding rows no token of a draw reads are NaN on purpose: numerics.draws).
    jax.config.update(option, True)
    try:
        code, _, err = cli(capsys, "verify", "theorem1", "--trials", "1")
    finally:
        jax.config.update(option, False)
    assert_one_line_error(code, err, f"{variable} is on: ")
    assert f"unset {variable}" in err


@pytest.mark.parametrize(("setting", "message"), [
    ("JAX_NUMPY_RANK_PROMOTION=bogus", 'Invalid value "bogus" for JAX flag jax_numpy_rank_promotion'),
    ("JAX_ENABLE_X64=bogus", "invalid truth value 'bogus' for environment 'JAX_ENABLE_X64'"),
])
def test_an_option_jax_cannot_read_is_a_one_line_error(setting, message):
    # Can fail: JAX reads its options when it is first imported, and a value it does not accept
    # raised a ValueError traceback from wherever that import was (here: the claim registry's).
    variable, value = setting.split("=")
    env = {**os.environ, variable: value}
    proc = subprocess.run([EXE, "claims"], capture_output=True, text=True, env=env, timeout=300)
    assert_one_line_error(proc.returncode, proc.stderr,
                          f"JAX could not read its options from the environment: {message}")


@pytest.fixture
def restored_afterwards():
    yield
    for option in (*STOP_AT_NAN, "jax_numpy_rank_promotion"):
        jax.config.update(option, PINNED.get(option, (False,))[0])
    jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize(("line", "code", "said"), [
    ('jax.config.update("jax_numpy_rank_promotion", "raise")', 0,
     "attnverify: warning: jax_numpy_rank_promotion='raise', set by {path}, is not used: "),
    ('jax.config.update("jax_enable_x64", False)', 2,
     "attnverify: error: {path} turned JAX's 64-bit mode off (jax_enable_x64): the float64 checks need it"),
    ('jax.config.update("jax_debug_nans", True)', 2, "attnverify: error: {path} turned jax_debug_nans on: "),
])
def test_a_claims_module_that_changes_jax_options_is_answered_naming_it(line, code, said, tmp_path, capsys,
                                                                       restored_afterwards):
    # Can fail: a claims module (or plugin file) that set an option for its own code made
    # `verify` end in JAX's traceback: a broadcast refused, or "float64 sweeps need jax_enable_x64".
    path = tmp_path / "mine.py"
    path.write_text(f"import jax\n{line}\n")
    got, out, err = cli(capsys, "verify", "thm1.gradient", "--trials", "1", "--quiet", "--claims-module", path)
    assert got == code and err.startswith(said.format(path=path)) and err.count("\n") == 1, err
    assert "Traceback" not in err and (code != 0 or "1 pass, 0 fail (unexpected)" in out)


X64_OFF = 'jax.config.update("jax_enable_x64", False)'


@pytest.mark.parametrize("where", ["plugin_method", "claim_build"])
def test_64_bit_mode_turned_off_after_loading_is_one_line(where, tmp_path, capsys, restored_afterwards):
    # Can fail: a plugin method that turned 64-bit mode off ended `verify` in a traceback
    # ("float64 sweeps need jax_enable_x64"); a claim's build that did was run a second time when
    # its first trace was refused, and then its "float64" sweep ran in float32 and passed.
    path = tmp_path / "late.py"
    if where == "plugin_method":
        path.write_text("import jax\nfrom attnverify.theory import SymbolicModel\n\nclass Model(SymbolicModel):\n"
                        f"    def score(self, i, t):\n        {X64_OFF}\n        return super().score(i, t)\n")
        argv, said = ("thm1.derived", "--plugin", path), f"attnverify: error: {path} turned JAX's 64-bit mode off"
    else:
        path.write_text("import jax\nfrom attnverify.numerics import autodiff_gradient\n"
                        "from attnverify.verification import Claim, register\n\ndef build(spec):\n"
                        f"    {X64_OFF}\n    g = autodiff_gradient(spec)\n"
                        "    return lambda p, t: (g(p, t), g(p, t))\n\n"
                        'register(Claim(id="late.off", group="late", statement="s", source="s", lhs="l", rhs="r", '
                        'build=build, tolerance={"float64": 1e-10, "float32": 1e-4}, tolerance_reason="r", '
                        'provenance="measured"))\n')
        argv, said = ("late.off", "--claims-module", path), "attnverify: error: claim 'late.off': build turned JAX's"
    got, out, err = cli(capsys, "verify", *argv, "--trials", "1", "--quiet")
    assert got == 2 and err.startswith(said) and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["derive", "claims"])
def test_derive_and_claims_keep_the_options_a_plugin_changes(command, tmp_path):
    # Can fail: `derive gradient --plugin` and `claims --plugin` (which leave 64-bit mode off, so
    # in a process of their own) checked the plugin's model under the rank promotion it had set
    # ("raise"), and ended in JAX's traceback; `verify` warned.
    path = tmp_path / "strict.py"
    path.write_text('import jax\njax.config.update("jax_numpy_rank_promotion", "raise")\n'
                    "from attnverify.theory import SymbolicModel\n\nclass Model(SymbolicModel):\n    pass\n")
    argv = ["derive", "gradient", "--plugin", path] if command == "derive" else ["claims", "--plugin", path]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run([EXE, *map(str, argv)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"attnverify: warning: jax_numpy_rank_promotion='raise', set by {path}, is not "
                                  "used"), proc.stderr


def test_a_plugin_is_not_blamed_for_the_shells_options_nor_stopped_by_a_nan_check_it_cannot_meet(tmp_path):
    # Can fail: under JAX_NUMPY_RANK_PROMOTION=raise, `claims --plugin identity.py` warned that the
    # plugin had set it (JAX was first imported while the file ran), and under JAX_DEBUG_NANS=1 it
    # refused "identity.py turned jax_debug_nans on"; `claims` traces nothing, so it cannot stop.
    identity = Path(__file__).resolve().parents[1] / "examples" / "identity.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run([EXE, "claims", "--plugin", str(identity)], capture_output=True, text=True,
                          env={**env, "JAX_NUMPY_RANK_PROMOTION": "raise", "JAX_DEBUG_NANS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("attnverify: warning: JAX_NUMPY_RANK_PROMOTION='raise' is not used: attnverify's programs "
                           "run with 'allow' (they broadcast as NumPy does)\n")
