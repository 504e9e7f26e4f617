"""The exceptions the CLI turns into a one-line message and exit code 2 (`InputError`, and
`UserCodeError` for a researcher's own code), and the one-line warnings and notes on stderr."""

from __future__ import annotations

import sys


class InputError(ValueError):
    """Bad user input: a malformed file, an impossible size, an unknown name.

    `parameter` names the library parameter at fault (e.g. ``"trials"``), never a CLI flag:
    the command line maps it to its flag (``--trials``) when it reports the error.
    """

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class UserCodeError(InputError):
    """A user's claim whose code fails or returns what cannot work (`verification.registry.user_code`):
    found only once a sweep runs it, so a sweep refused for it takes back what it began."""


def describe(err: BaseException) -> str:
    """An exception raised by a user's code, on one line: ``Type: first line of its message``
    (``Type`` alone when it says nothing; a `SystemExit` without a message: ``exit code N``)."""
    if isinstance(err, SystemExit) and not isinstance(err.code, str):
        return f"SystemExit: exit code {0 if err.code is None else err.code}"
    text = first_line(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def first_line(err: BaseException) -> str:
    """The first line of `err`'s message that says something ("" when none does, or when a user's
    exception cannot even say it: its ``__str__`` raises)."""
    try:
        text = str(err)
    except Exception:
        return ""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def out_of_memory(err: BaseException) -> bool:
    """XLA's allocator ran out (JAX raises its own error, not MemoryError): sizes the checks before
    the work let through, e.g. the intermediates of a very long document."""
    return type(err).__name__ == "JaxRuntimeError" and ("RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err))


def warn(message: str) -> None:
    """A one-line warning on stderr (the work goes on)."""
    print(f"attnverify: warning: {message}", file=sys.stderr, flush=True)


#: The kinds of warning already given in this process (`warn_once`).
WARNED: set[str] = set()


def warn_once(message: str, kind: str | None = None) -> None:
    """`warn`, the first time only for each `kind` (e.g. every unreadable cache entry of a run: one
    line); without one, for each message (a report reads a model's training record twice)."""
    kind = message if kind is None else kind
    if kind not in WARNED:
        WARNED.add(kind)
        warn(message)


def note(message: str) -> None:
    """A one-line note on stderr: how an input was read (the work goes on)."""
    print(f"attnverify: note: {message}", file=sys.stderr, flush=True)
