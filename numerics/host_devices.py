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
"""

from __future__ import annotations

import os
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
    positive integer. (An option XLA does not know still ends it: XLA alone knows its options.)"""
    if not is_utf8(flags):  # XLA takes its options as UTF-8 text
        raise InputError(f"XLA_FLAGS: {flags!r} is not UTF-8 text")
    for word in flags.split():
        if not word.startswith("--") or len(word) < 3:
            raise InputError(f"XLA_FLAGS: {word!r} is not an XLA option (--name or --name=value)")
        name, _, value = word.partition("=")
        if name == FLAG and not (value.isdigit() and 0 < int(value) <= MAX_COUNT):
            # as $ATTNVERIFY_CPU_DEVICES: 2**31 ends XLA's flag parser, 2**31 - 1 ran out of memory
            raise InputError(f"XLA_FLAGS: {FLAG} must be a number of CPU devices in 1..{MAX_COUNT}, got {value!r}")


def configure_host_devices() -> int | None:
    """Ask XLA for `host_device_count` CPU devices. Returns the count set, or None when it was
    left alone: JAX is already imported (its backend may have started: a notebook, the tests),
    or ``XLA_FLAGS`` already names a count. A malformed ``XLA_FLAGS`` is an `InputError`."""
    count = host_device_count()  # a bad $ATTNVERIFY_CPU_DEVICES is an error wherever it is read
    flags = os.environ.get("XLA_FLAGS", "")
    check_xla_flags(flags)
    if "jax" in sys.modules or FLAG in flags:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={count}".strip()
    return count
