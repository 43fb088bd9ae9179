"""The jobs layer's errors: what each is raised for. The worker layer's are worker/errors.py.

`TooLarge` and `UnknownJob` are user-facing (`AskbatchError`): the page answers them with their
message and a 4xx status. `Unsent` is a Ctrl-C that says how far a distributed job got.
"""

from __future__ import annotations

from worker.errors import AskbatchError, ConfigError


class TooLarge(AskbatchError):
    """Raised when a request body passes the page's upload limit while it is being read
    (jobs/web/guard.py); the page answers 413."""

    def __init__(self, mb: float) -> None:
        super().__init__(f"the upload is larger than {mb:g} MB (ASKBATCH_UI_MAX_UPLOAD_MB)")


class ServerBusy(AskbatchError):
    """Raised when the page is reading as many uploads as it may at once and another waited
    its time out (jobs/web/app.py); the page answers 429."""

    def __init__(self) -> None:
        super().__init__("the server is reading other uploads; try again in a moment")


class UnknownJob(ConfigError):
    """Raised when no job has the id asked for (the page answers 404)."""


class Unsent(KeyboardInterrupt):
    """Raised for Ctrl-C while rows of a distributed job were still to be sent: how many were
    sent (`askbatch resume` sends the rest)."""

    def __init__(self, sent_rows: int) -> None:
        super().__init__()
        self.sent_rows = sent_rows
