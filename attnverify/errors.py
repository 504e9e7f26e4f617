"""The one exception type the CLI turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad user input: a malformed file, an impossible size, an unknown name."""
