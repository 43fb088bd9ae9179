"""What the user sees while a job runs and when it ends."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from worker.store import Progress


class ProgressLine:
    """Rows done of total, failures and tokens so far: one line redrawn on a terminal,
    a plain line every few seconds otherwise (logs, CI)."""

    def __init__(self, stream: TextIO = sys.stderr, quiet: bool = False, every_s: float = 5.0):
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
        text = (
            f"{p.done}/{p.total} rows done, {p.not_completed} not completed, "
            f"{p.total_tokens:,} tokens, {time.monotonic() - self.t0:.0f}s"
        )
        now = time.monotonic()
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
