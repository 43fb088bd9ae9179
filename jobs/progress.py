"""What the user sees while a job runs and when it ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from jobs import pace
from worker.store import Progress

PACE_EVERY_S = 1.0


class ProgressLine:
    """Rows done of total, failures and tokens so far, and the rate limit, rate reached and rows
    in flight (from `reports`, read once a second): one line redrawn on a terminal, a plain
    line every few seconds otherwise (logs, CI)."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        quiet: bool = False,
        every_s: float = 5.0,
        reports: Callable[[], list[dict]] | None = None,
    ):
        self.reports = reports
        self._pace = ""
        self._pace_at = 0.0
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.every_s = every_s
        self.t0 = time.monotonic()
        self._last_text = ""
        self._last_at = 0.0

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.reports is not None and now - self._pace_at >= PACE_EVERY_S:
            self._pace_at = now
            self._pace = pace.line(self.reports())
        text = (
            f"{p.done}/{p.total} rows done, {p.not_completed} not completed, "
            f"{p.total_tokens:,} tokens, {now - self.t0:.0f}s"
            + (f"; {self._pace}" * bool(self._pace))
            + (f"; {p.note}" * bool(p.note))
        )
        if self.tty:
            if text != self._last_text:
                self.stream.write("\r" + text.ljust(len(self._last_text)))
                self.stream.flush()
        elif text != self._last_text and (now - self._last_at >= self.every_s or p.done >= p.total):
            self.stream.write(text + "\n")
            self._last_at = now
        self._last_text = text

    def close(self) -> None:
        if self.tty and self._last_text and not self.quiet:
            self.stream.write("\n")
