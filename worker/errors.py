"""Errors askbatch raises on purpose. Each one carries a message meant for the user."""


class AskbatchError(Exception):
    """Base class: a user-facing error; the CLI prints its message and exits with `exit_code`."""

    exit_code = 2


class ConfigError(AskbatchError):
    """Raised when settings, flags or the environment do not describe a runnable job."""


class InputError(AskbatchError):
    """Raised when the worksheet or the output path cannot be used; names file, row, column."""


class LookStopped(AskbatchError):
    """Raised when a look at a --batch job's batches met an error askbatch did not expect:
    the look stops, the job is kept as the look left it, and `resume` looks again."""

    exit_code = 1
