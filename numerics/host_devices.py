"""One XLA CPU device per core, so that a sweep's blocks run side by side.

XLA runs the programs of one CPU device one after another. A sweep's programs are small (a
block of 128 draws, `verification.blocks`), and with one device the draw program of the next
block waits for the measure program of the last: Theorem 1's sweep used one core of two. A
sweep spreads a chunk's blocks round-robin over the devices (`verification.sweep`), each block
one call of the same executable, so results are bit-identical for any device count. With one
device per core, XLA runs them in parallel (docs/benchmarks.md: 7,482 -> 11,067 models/s on 2
cores).

The cost: an XLA executable belongs to its device, so a sweep of more than one block compiles
its programs once for each device it uses (once: the persistent cache keeps them). A sweep of
one block (``--trials`` up to 128, as in the quick report) uses one device and compiles once.

The count is ``$ATTNVERIFY_CPU_DEVICES`` if set, else the number of cores this process may run
on. XLA reads it when JAX starts its backend, so it is set before JAX's import, and never over
a count the user gave in ``XLA_FLAGS``. Nothing here imports JAX.

XLA ends the process when its backend starts on an option it does not know or a value it cannot
read (exit code 1, after a fatal log line, or its whole usage text: hundreds of lines). Only XLA
knows its options, so before JAX starts, ``XLA_FLAGS`` naming any option other than the device
count is tried in a child process that starts an XLA CPU client and nothing else (0.15 s), and
what XLA says there becomes a one-line `InputError`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from attnverify.errors import InputError
from attnverify.validate import MAX_COUNT, env_count, is_utf8

ENV_VAR = "ATTNVERIFY_CPU_DEVICES"
FLAG = "--xla_force_host_platform_device_count"


def host_device_count() -> int:
    """``$ATTNVERIFY_CPU_DEVICES`` (a positive integer), else the cores this process may use."""
    count = env_count(ENV_VAR, "CPU devices")
    if count is not None:
        return count
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_xla_flags(flags: str) -> None:
    """One-line `InputError` for an ``XLA_FLAGS`` that XLA would end the process over: a word
    that is not an option (XLA reads it as a file of flags), or a device count that is not a
    positive integer. (Options XLA does not know: `check_xla_options_known`.)"""
    if not is_utf8(flags):  # XLA takes its options as UTF-8 text
        raise InputError(f"XLA_FLAGS: {flags!r} is not UTF-8 text")
    for word in flags.split():
        if not word.startswith("--") or len(word) < 3:
            raise InputError(f"XLA_FLAGS: {word!r} is not an XLA option (--name or --name=value)")
        name, _, value = word.partition("=")
        if name == FLAG and not (value.isdigit() and 0 < int(value) <= MAX_COUNT):
            # as $ATTNVERIFY_CPU_DEVICES: 2**31 ends XLA's flag parser, 2**31 - 1 ran out of memory
            raise InputError(f"XLA_FLAGS: {FLAG} must be a number of CPU devices in 1..{MAX_COUNT}, got {value!r}")


#: The child of `check_xla_options_known`: an XLA CPU client, which reads ``XLA_FLAGS``; JAX's own
#: start (a second more) where a jaxlib has no ``xla_client.make_cpu_client``.
_START_XLA = """\
try:
    from jaxlib.xla_client import make_cpu_client
except ImportError:
    import jax
    make_cpu_client = lambda: jax.devices("cpu")
make_cpu_client()
"""
#: XLA's log lines: severity (E, F), date, time, thread, file:line, then the message.
_XLA_LOG_LINE = re.compile(r"[EF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\] (.+)")


def check_xla_options_known(flags: str) -> None:
    """One-line `InputError` where XLA would end the process over `flags`: an option it does not
    know or a value it cannot read. A child process starts an XLA CPU client with them; its first
    error line is the message. A child that fails without one (no such line: an import error, say)
    is not taken as a verdict on `flags`, and the command goes on to meet the failure itself."""
    if not [w for w in flags.split() if w.partition("=")[0] != FLAG]:
        return  # nothing but the device count, which `check_xla_flags` read
    env = dict(os.environ, XLA_FLAGS=flags, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        child = subprocess.run([sys.executable, "-c", _START_XLA], env=env, capture_output=True, text=True,
                               errors="replace", timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return
    said = _XLA_LOG_LINE.search(child.stderr) if child.returncode != 0 else None
    if said is not None:
        raise InputError(f"XLA_FLAGS: XLA cannot read them: {said.group(1).strip()}")


def configure_host_devices() -> int | None:
    """Ask XLA for `host_device_count` CPU devices. Returns the count set, or None when it was
    left alone: JAX is already imported (its backend may have started: a notebook, the tests),
    or ``XLA_FLAGS`` already names a count. A malformed ``XLA_FLAGS``, or one XLA refuses (tried
    only before JAX's import: after it, XLA may have read them already), is an `InputError`."""
    count = host_device_count()  # a bad $ATTNVERIFY_CPU_DEVICES is an error wherever it is read
    flags = os.environ.get("XLA_FLAGS", "")
    check_xla_flags(flags)
    if "jax" in sys.modules:
        return None
    check_xla_options_known(flags)
    if FLAG in flags:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={count}".strip()
    return count
