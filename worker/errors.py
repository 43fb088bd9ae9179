"""The worker layer's errors, in one hierarchy: what each is raised for, and who catches it.

`AskbatchError` and its kind carry a message meant for the user (the CLI prints it and exits
with `exit_code`); the others are signals between the worker's own parts and never reach one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.fatal import Halt


class AskbatchError(Exception):
    """Base class: a user-facing error; the CLI prints its message and exits with `exit_code`."""

    exit_code = 2


class ConfigError(AskbatchError):
    """Raised when settings, flags or the environment do not describe a runnable job."""


class InputError(AskbatchError):
    """Raised when the worksheet or the output path cannot be used; names file, row, column."""


class JobBusy(AskbatchError):
    """Raised when another process is running the embedded job right now."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id} is running in another askbatch process; wait for it to end, or "
            f"stop it with `askbatch cancel {job_id}`"
        )


class Interrupted(AskbatchError):
    """Raised when Ctrl-C comes while the local model server is starting (exit 130)."""

    exit_code = 130


class LookStopped(AskbatchError):
    """Raised when a look at a --batch job's batches met an error askbatch did not expect:
    the look stops, the job is kept as the look left it, and `resume` looks again."""

    exit_code = 1


# --- signals between the worker's parts ---------------------------------------------------


class Halted(Exception):
    """Raised when the job is halted (worker/fatal): out of the row whose API error no retry
    can mend, with that `halt` (the job stops with it), or before a request of any row once
    the job has been halted meanwhile, without one. The row keeps no result either way."""

    def __init__(self, halt: Halt | None = None) -> None:
        super().__init__(halt.message if halt is not None else "")
        self.halt = halt


class RowBusy(Exception):
    """Raised when another delivery of the same task is answering a row right now."""

    def __init__(self, index: int, wait_s: float) -> None:
        super().__init__(f"row {index} is being answered elsewhere")
        self.wait_s = wait_s


class RowTimeout(Exception):
    """Raised when a row's deadline passes before its API calls could finish."""


class TooLate(Exception):
    """Raised when the server asks to wait longer than the row has left: the row fails now
    instead of sleeping into its deadline."""


class LookBusy(Exception):
    """Raised when another look at the same --batch job is under way (distributed)."""
