"""Test configuration: float64 before any array exists; shared fixtures (helpers: `tests/helpers.py`)."""

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

# As the command line (numerics.compilation_cache): XLA's C++ log lines off. JAX's import sets level 1
# when none is set, and the commands the tests start inherit this process's level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# A report sweeps its claims in the calling process here and in the commands the tests start
# (verification.workers): the suite's processes already use every core, and a test that replaces
# a claim's code must see it run. tests/test_workers.py starts workers.
os.environ.setdefault("ATTNVERIFY_JOBS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
# The options every command and API call sets (numerics.jax_options), set here from the start, so
# that every test traces the programs users run, whichever test first calls a command in-process.
from attnverify.numerics.jax_options import pin_jax_options  # noqa: E402

pin_jax_options(jax.config)

import pytest  # noqa: E402
from attnverify.numerics import compilation_cache  # noqa: E402

# The persistent compilation cache starts empty in every test session, so the suite never
# depends on, nor fills, the user's cache: runs are cold and reproducible. The session's
# processes share it (the first one, pytest itself, makes the folder and its xdist workers and
# the commands the tests start inherit it), so a program is compiled once per session, not once
# per process. Tests that need a cache of their own (cold, warm, corrupt) make one.
_SESSION_CACHE = "ATTNVERIFY_TEST_SESSION_CACHE"
if _SESSION_CACHE in os.environ:
    _CACHE = Path(os.environ[_SESSION_CACHE])
else:
    _CACHE = Path(tempfile.mkdtemp(prefix="attnverify-test-xla-"))
    os.environ[_SESSION_CACHE] = str(_CACHE)
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ[compilation_cache.ENV_VAR] = str(_CACHE)
compilation_cache.configure_cache(_CACHE)

from attnverify.numerics import stored_programs  # noqa: E402
from attnverify.theory import memo  # noqa: E402
from attnverify.verification.registry import BUILTIN, REGISTRY  # noqa: E402

from attnverify.spec import ModelSpec  # noqa: E402


def _nothing_stored() -> None:
    """Derivations, results and traced programs neither read from nor written to the disk."""
    memo.set_derivations_folder(None)
    stored_programs.set_programs_folder(None)


# `configure_cache` also points the stores at the folder; a module fixture runs before the
# first test's fixtures do, so it must not find them on.
_nothing_stored()


@pytest.fixture(autouse=True)
def _derivations_afresh():
    """SymPy derivations, stored results (the same folder: `numerics.stored_results`) and traced
    sweep programs are never read back from disk in the test processes, nor kept in memory from
    an earlier test: a test may replace a statement and derive again. A command run in-process
    turns the stores on (`numerics.compilation_cache.configure_cache`); they are turned off again
    after the test, so a module fixture of the next test file (one that replaces code, say)
    never writes to them."""
    _nothing_stored()
    memo.forget()
    yield
    _nothing_stored()
    memo.forget()


@pytest.fixture(autouse=True)
def _registry_restored():
    """A test that registers claims (a plugin file, the example notebook) takes them out again,
    so a later test in the same worker sees the same claims whatever the order. Built-in claims
    stay: the first test that needs them imports them, once per process."""
    before = dict(REGISTRY)
    yield
    for claim_id in [c for c in REGISTRY if c not in before and c not in BUILTIN]:
        del REGISTRY[claim_id]
    REGISTRY.update(before)


@pytest.fixture
def tiny_spec() -> ModelSpec:
    """A small paper-switch model: fast to compile, big enough to be generic."""
    return ModelSpec(max_len=8, d_embed=6, d_att=4, d_out=5, heads=3, vocab_size=30)


@pytest.fixture
def default_signals():
    """Tests that send SIGINT or SIGTERM start from Python's own handling of them, whatever an
    earlier test in this worker process left: an ignored SIGINT stays ignored under `Interrupts`
    (as under nohup) and is inherited by the commands a test starts, so Ctrl-C would never reach
    them (seen in full-suite runs only: SIGINT ignored in the worker, SIGTERM not)."""
    handled = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handled.items()}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, set(handled))  # children inherit the mask too
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
