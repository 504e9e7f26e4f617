"""One XLA CPU device per core (`numerics.host_devices`), set before JAX starts, never over the
user's choice; a bad ``$ATTNVERIFY_CPU_DEVICES`` is a one-line error. That results do not
depend on the device count is `test_scale_out`'s (1 and 4 devices, bit for bit)."""

import os
import subprocess
import sys

import pytest
from attnverify.numerics import host_devices

from attnverify.cli import main

_PROBE = ("from attnverify.numerics.host_devices import configure_host_devices\n"
          "count = configure_host_devices()\n"
          "import jax\n"
          "print(count, jax.device_count(), len(__import__('os').sched_getaffinity(0)))\n")


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", host_devices.ENV_VAR)}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


def test_one_device_per_core_by_default():
    # Can fail: without the flag XLA gives one CPU device whatever the cores.
    count, devices, cores = _probe()
    assert count == devices == cores


def test_the_environment_variable_sets_the_count():
    assert _probe(**{host_devices.ENV_VAR: "3"})[:2] == ["3", "3"]


def test_a_count_in_xla_flags_is_the_users_and_is_kept():
    count, devices, _ = _probe(XLA_FLAGS=f"{host_devices.FLAG}=5", **{host_devices.ENV_VAR: "3"})
    assert (count, devices) == ("None", "5")


def test_once_jax_is_imported_nothing_changes(monkeypatch):
    # This process imported JAX (conftest): its backend's device count is fixed, so the
    # environment is left as it was (the commands a test starts see the same).
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert host_devices.configure_host_devices() is None and "XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "1025", "1e30"])
def test_a_bad_count_is_a_one_line_error(value, monkeypatch, capsys):
    monkeypatch.setenv(host_devices.ENV_VAR, value)
    assert main(["spec"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnverify: error:")
    assert f"ATTNVERIFY_CPU_DEVICES must be a number of CPU devices in 1..1024, got {value!r}" in err


@pytest.mark.parametrize(("flags", "message"), [
    ("garbage", "XLA_FLAGS: 'garbage' is not an XLA option"),
    ("--xla_cpu_enable_fast_math=false -- ", "XLA_FLAGS: '--' is not an XLA option"),
    (f"{host_devices.FLAG}=abc", f"{host_devices.FLAG} must be a number of CPU devices in 1..1024, got 'abc'"),
    (f"{host_devices.FLAG}=0", f"{host_devices.FLAG} must be a number of CPU devices in 1..1024, got '0'"),
    # 2**31 ended XLA's flag parser in 95 lines; 2**31 - 1 was killed for memory at 23 GB
    (f"{host_devices.FLAG}=2147483647", f"{host_devices.FLAG} must be a number of CPU devices in 1..1024"),
    ("--xla_dump_to=/tmp/x\udcff", "is not UTF-8 text"),  # a non-UTF-8 byte, as Python reads it: a traceback
])
def test_a_malformed_xla_flags_is_a_one_line_error(flags, message, monkeypatch, capsys):
    # Can fail: XLA read a word that is not an option as a file of flags, or a count of 0 or 'abc',
    # and ended the process with a fatal log line or a traceback (exit code 1).
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert main(["spec"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnverify: error: ") and message in err


def test_well_formed_xla_flags_pass():
    host_devices.check_xla_flags(f" --xla_cpu_enable_fast_math=false  {host_devices.FLAG}=3 --xla_dump_to=/tmp/x ")


def test_a_backend_that_cannot_start_is_a_one_line_error(monkeypatch):
    # Can fail: JAX_PLATFORMS=bogus (or a backend XLA cannot start) raised a RuntimeError traceback.
    import jax

    from attnverify.cli_support import enable_x64
    from attnverify.errors import InputError

    def fails():
        raise RuntimeError("Unable to initialize backend 'bogus': Backend 'bogus' is not in the list\nmore")

    monkeypatch.setattr(jax, "devices", fails)
    monkeypatch.setenv("JAX_PLATFORMS", "bogus")
    with pytest.raises(InputError, match=r"^JAX could not start its backend \(JAX_PLATFORMS='bogus'\): "
                                         r"Unable to initialize backend 'bogus': .* list$"):
        enable_x64()


@pytest.mark.parametrize(("flags", "message"), [
    ("--xla_no_such_option=1", "Unknown flag in XLA_FLAGS: --xla_no_such_option=1"),
    # a value XLA cannot read printed its whole usage text (hundreds of lines) after the error
    ("--xla_cpu_enable_fast_math=maybe", "Couldn't interpret value maybe for flag xla_cpu_enable_fast_math."),
])
def test_an_option_xla_refuses_is_a_one_line_error_before_jax_starts(flags, message):
    # Can fail: XLA ended the command when its backend started, with exit code 1 and its own log line
    # (or the usage text). `verify` starts the backend; run as a command, JAX is not imported before.
    clean = {k: v for k, v in os.environ.items() if k != host_devices.ENV_VAR}
    out = subprocess.run([sys.executable, "-m", "attnverify", "verify", "thm1.gradient", "--trials", "8", "--no-cache"],
                         env={**clean, "XLA_FLAGS": flags}, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr == f"attnverify: error: XLA_FLAGS: XLA cannot read them: {message}\n"


def test_options_xla_knows_are_let_through_and_a_child_that_fails_otherwise_is_no_verdict(monkeypatch):
    # Can fail: a known option refused, or a child that failed for a reason of its own (no XLA error
    # line: a broken interpreter, say) taken for a refusal of the user's options.
    host_devices.check_xla_options_known(f"--xla_cpu_enable_fast_math=false {host_devices.FLAG}=2")
    monkeypatch.setattr(host_devices, "_START_XLA", "raise SystemExit('no XLA here')")
    host_devices.check_xla_options_known("--xla_no_such_option=1")
