"""The one exception type the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a malformed file, an impossible size, an unknown name.

    `parameter` names the library parameter at fault (e.g. ``"trials"``), never a CLI flag:
    the command line maps it to its flag (``--trials``) when it reports the error.
    """

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter
