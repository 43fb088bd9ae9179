"""What the user sees while a job runs: a live bar in a terminal, plain lines in a log.

Both show the same `jobs.snapshot.Snapshot`: rows done of total, rows per second, time left,
cost so far (and at what tier), failures and retries, rows in flight and the rate limit.

- A terminal: a bar redrawn in place by rich (its Live display: it redraws the lines in
  place, fits them to the terminal's width, and prints messages above them meanwhile).
- Not a terminal (CI logs, nohup, a pipe): one plain line every few seconds, starting as the
  line always has (`209/600 rows done, 0 not completed, 3,035 tokens, 10s`) so that log greps
  still work, then the new facts.
- quiet (`-q`): nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobs.snapshot import Sampler, Snapshot, snapshot
from worker.models import JobSpec
from worker.pricing import usd
from worker.store import Progress, Store

TTY_EVERY_S = 0.5  # the bar is redrawn at most this often
LINE_EVERY_S = 5.0  # a plain line at most this often


def duration(seconds: float) -> str:
    """ "45s", "3m 06s", "2h 05m", "3d 4h": two units at most, for people."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def head(snap: Snapshot) -> str:
    """The line's start, worded as it always was (log greps depend on it)."""
    return (
        f"{snap.done}/{snap.total} rows done, {snap.not_completed} not completed, "
        f"{snap.total_tokens:,} tokens, {duration(snap.elapsed_s)}"
    )


def speed(snap: Snapshot) -> str:
    """ "2.1 rows/s, 3m 06s left", or what is not known yet."""
    if snap.done >= snap.total:
        return "all rows done"
    if snap.rows_per_s is None:
        return "rows/s not measured yet"
    if snap.eta_s is None:
        return "0 rows/s lately, time left not known"
    return f"{snap.rows_per_s:,.1f} rows/s, {duration(snap.eta_s)} left"


def cost(snap: Snapshot) -> str:
    """ "$0.012345 so far", with the tier and the rows of models without a price."""
    text = f"{usd(snap.cost_usd)} so far"
    if snap.tier == "batch":
        text += " at Batch API prices"
    elif snap.tier:
        text += f" at {snap.tier} tier"
    if snap.unpriced:
        text += f" (+ {snap.unpriced:,} rows unpriced)"
    return text


def trouble(snap: Snapshot) -> str:
    return f"{snap.failures:,} failed, {snap.retries:,} retries"


def line(snap: Snapshot) -> str:
    """The plain line: today's start, then rate and time left, cost, failures, pace."""
    facts = f"{head(snap)}; {speed(snap)}, {cost(snap)}, {trouble(snap)}"
    return (
        facts + (f"; {snap.pace}" if snap.pace else "") + (f"; {snap.batches}" * bool(snap.batches))
    )


def frame(snap: Snapshot) -> Group:
    """The terminal's two lines: the bar with rows, rate and time left; then the money,
    failures, retries and pace."""
    top = Table.grid(padding=(0, 1))
    top.add_row(
        ProgressBar(total=max(1, snap.total), completed=snap.done, width=30),
        Text(f"{snap.done:,}/{snap.total:,} rows", style="bold"),
        Text(f"{snap.done / max(1, snap.total):.0%}"),
        Text(speed(snap)),
        Text(duration(snap.elapsed_s), style="dim"),
    )
    facts = [cost(snap), trouble(snap), f"{snap.total_tokens:,} tokens"]
    if snap.pace:
        facts.append(snap.pace)
    elif snap.in_flight:
        facts.append(f"{snap.in_flight} in flight")
    if snap.batches:
        facts.append(snap.batches)
    return Group(top, Text("  " + " · ".join(facts)))


class ProgressView:
    """Shows a job's progress as the store says it: called with each `Progress` the wait
    loop reads (or, for `status --watch`, with None: it reads its own)."""

    def __init__(
        self,
        store: Store,
        job_id: str,
        stream: TextIO = sys.stderr,
        quiet: bool = False,
        every_s: float | None = None,
        spec: JobSpec | None = None,
    ) -> None:
        self.store, self.job_id, self.spec = store, job_id, spec
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.every_s = (
            every_s if every_s is not None else (TTY_EVERY_S if self.tty else LINE_EVERY_S)
        )
        self.sampler = Sampler()
        self.last: Snapshot | None = None
        self._shown_at = -float("inf")
        self._last_line = ""
        self._live: Live | None = None

    def __call__(self, progress: Progress | None = None) -> Snapshot | None:
        """Look at the job and show it if it is time; returns the snapshot taken (if any)."""
        if self.quiet:
            return None
        now = time.monotonic()
        finished = progress is not None and progress.done >= progress.total
        if now - self._shown_at < self.every_s and not finished:
            return None
        self._shown_at = now
        snap = snapshot(self.store, self.job_id, self.sampler, progress, self.spec)
        self.show(snap)
        return snap

    def show(self, snap: Snapshot) -> None:
        self.last = snap
        if self.tty:
            if self._live is None:
                console = Console(file=self.stream, force_terminal=True, highlight=False)
                # stdout is left alone: it may be a pipe that a script reads.
                self._live = Live(
                    frame(snap), console=console, auto_refresh=False, redirect_stdout=False
                )
                self._live.start()
            self._live.update(frame(snap), refresh=True)
            return
        text = line(snap)
        if text != self._last_line:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_line = text

    def close(self) -> None:
        """Leave the last frame on the screen; safe to call twice."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def follow(view: ProgressView, sleep: Callable[[float], None] = time.sleep) -> Snapshot:
    """Show the job every `view.every_s` until it is over (finished, halted, or an embedded
    job no process runs)."""
    while True:
        snap = snapshot(view.store, view.job_id, view.sampler, spec=view.spec)
        view.show(snap)
        if snap.over:
            return snap
        sleep(view.every_s)
