"""The JAX options attnverify's programs are written for, set before any array exists.

JAX reads a few process-wide options from the environment (``JAX_NUMPY_RANK_PROMOTION=raise``,
say, in a researcher's shell profile). Some change what a program means, not only how it runs:

- rank and dtype promotion (``jax_numpy_rank_promotion``, ``jax_numpy_dtype_promotion``): the
  model and the derived formulas broadcast and mix dtypes as NumPy does; under ``raise`` or
  ``strict`` a sweep ended in JAX's traceback;
- the random-number generator (``jax_default_prng_impl``, ``jax_threefry_partitionable``): a
  sweep's draws are Threefry's, in JAX's partitionable scheme (`numerics.threefry`), so that a
  seed gives the same draws on every machine; under ``rbg`` a sweep ended in a traceback;
- the precision of float32 matrix products (``jax_default_matmul_precision``): on a GPU JAX's
  default rounds their inputs to TensorFloat-32 (10 bits of mantissa), far above the float32
  tolerances, which are set for full float32 products. On the CPU it changes no number
  (measured: every Theorem 1, Theorem 2 and LIME claim, 32 draws, both dtypes).

`pin_jax_options` sets these to the values below. An option the user set to another value is
overridden with a one-line warning (unset, the default, silently). Two debugging options are
refused instead (`refuse_stopping_on_nan`). Every command and API call that computes comes here
through `attnverify.cli_support.enable_x64`, a report's worker processes through `set_pinned`,
and the test suite at its start (tests/conftest.py), so that tests trace the programs users run.
A plugin file or claims module that changes them as it is loaded is answered the same way,
naming the file (`kept_while`); one that turns 64-bit mode off is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from attnverify.errors import InputError, warn

#: option -> (the value attnverify's programs are written for, the environment variable, why).
PINNED = {
    "jax_numpy_rank_promotion": ("allow", "JAX_NUMPY_RANK_PROMOTION", "they broadcast as NumPy does"),
    "jax_numpy_dtype_promotion": ("standard", "JAX_NUMPY_DTYPE_PROMOTION", "they mix dtypes as NumPy does"),
    "jax_default_prng_impl": ("threefry2x32", "JAX_DEFAULT_PRNG_IMPL",
                              "a seed gives the same Threefry draws everywhere"),
    "jax_threefry_partitionable": (True, "JAX_THREEFRY_PARTITIONABLE",
                                   "a seed gives the same Threefry draws everywhere"),
    "jax_default_matmul_precision": ("highest", "JAX_DEFAULT_MATMUL_PRECISION",
                                     "float32 tolerances are set for full float32 products"),
}

#: Options that stop a program at its first non-finite output, and their environment variables.
STOP_AT_NAN = {"jax_debug_nans": "JAX_DEBUG_NANS", "jax_debug_infs": "JAX_DEBUG_INFS"}


def refuse_stopping_on_nan(config, origin: str | None = None, options: tuple[str, ...] = tuple(STOP_AT_NAN)) -> None:
    """JAX's NaN and infinity checks stop at the first non-finite output of a compiled program.
    The sweeps carry such values on purpose (the embedding rows that no token of a draw reads are
    NaN, so that a read of one shows: `numerics.draws`; a draw's NaN is counted and reported, never
    dropped), so under either check a command would end in JAX's traceback: a one-line error instead.
    `origin`: the user's code that turned the check on (else the environment did); `options`:
    the checks to look at."""
    for option in options:
        variable = STOP_AT_NAN[option]
        if getattr(config, option):
            who, undo = ((f"{variable} is on", f"unset {variable}") if origin is None
                         else (f"{origin} turned {option} on", "leave it off"))
            raise InputError(f"{who}: attnverify counts non-finite results itself (a NaN draw is reported, "
                             f"never dropped) and JAX would stop at the first one; {undo}")


def pin_jax_options(config, origin: str | None = None, *, changed: frozenset[str] | None = None,
                    computing: bool = True) -> None:
    """Set every `PINNED` option; warn, once per option and process, where the user chose another
    (`origin`: the user's code that set the options in `changed`, all of them when None; the
    others the environment set). `computing`: the process runs programs, so stopping at a NaN is
    refused (`derive` and `claims` only trace a plugin's model abstractly, where it cannot stop)."""
    def who(option: str) -> str | None:
        return origin if changed is None or option in changed else None

    if computing:
        for option in STOP_AT_NAN:  # one at a time, each named after whoever turned it on
            if getattr(config, option):
                refuse_stopping_on_nan(config, who(option), (option,))
    for option, (value, variable, why) in PINNED.items():
        current = getattr(config, option)
        if current == value:
            continue
        if current is not None:
            said = (f"{variable}={_shown(current)}" if who(option) is None
                    else f"{option}={_shown(current)}, set by {who(option)},")
            warn(f"{said} is not used: attnverify's programs run with {_shown(value)} ({why})")
        config.update(option, value)


def set_pinned(config) -> None:
    """Set every `PINNED` option without a word: in a worker process of a command
    (`verification.workers`), which inherits the user's environment, and whose command has
    already warned about it (`pin_jax_options`)."""
    for option, (value, _, _) in PINNED.items():
        config.update(option, value)


def _options(config) -> dict[str, object]:
    return {option: getattr(config, option) for option in (*PINNED, *STOP_AT_NAN)}


def x64_turned_off(who: str) -> str:
    """The one-line refusal of code (`who`: a file, a claim's build) that turned 64-bit mode off."""
    return f"{who} turned JAX's 64-bit mode off (jax_enable_x64): the float64 checks need it; leave it on"


@contextmanager
def kept_while(origin: str) -> Iterator[None]:
    """Run a plugin file or a claims module (`attnverify.plugins`) and answer the JAX options it
    changed as the environment's are: set back with a warning naming the file, or refused. Turning
    64-bit mode off, which cannot be taken back once arrays exist, is a one-line error where the
    process computes in float64 (`attnverify.cli_support.enable_x64` turned it on); ``derive`` and
    ``claims`` leave it off, and check a plugin's model under the pinned options all the same. An
    option the file did not change is the environment's, and named so."""
    jax = sys.modules.get("jax")
    if jax is None:  # imported now, so that what the file changes can be told from what the shell set
        import jax
    x64, before = bool(jax.config.jax_enable_x64), _options(jax.config)
    yield
    if x64 and not jax.config.jax_enable_x64:
        raise InputError(x64_turned_off(origin))
    after = _options(jax.config)
    pin_jax_options(jax.config, origin, changed=frozenset(k for k in after if after[k] != before[k]), computing=x64)


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(str(value))
