"""Bounds on reading a worksheet: no row longer than a few full cells, so that a 1 GB line costs
the memory of the cell limit, not of the line; and a CPU budget for reading uploads.

csv.reader takes the file line by line, and Python's own line iteration reads a whole line
into memory before the reader sees its first character: `Lines` hands it lines read with
`readline(n)`, never more than what is left of the row's bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

from worker.errors import InputError

ROW_CELLS = 4  # a row in the file may be as long as four full cells, quotes included
_EVERY = 256  # lines read between two looks at the CPU budget

# (thread CPU time at which reading stops, the budget in seconds, the setting that gives it)
_budget: ContextVar[tuple[float, float, str] | None] = ContextVar("askbatch_cpu", default=None)


class TooLong(Exception):
    """Raised when a row's text in the file passes its bound while it is read."""


class Lines:
    """The lines of a text file for csv.reader, each row (one line, or several when a quoted
    cell holds line breaks) at most `most` characters; `next_row()` starts counting again."""

    def __init__(self, f: TextIO, most: int) -> None:
        self.f = f
        self.most = most
        self.used = 0  # characters of the current row read so far
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.most - self.used + 1)
        if not line:
            raise StopIteration
        self.used += len(line)
        if self.used > self.most:
            raise TooLong
        self.count += 1
        if self.count % _EVERY == 0:
            spend()
        return line

    def next_row(self) -> None:
        self.used = 0


@contextmanager
def cpu_budget(seconds: float, setting: str) -> Iterator[None]:
    """Reading worksheets in this block, and what is done with their rows between two reads,
    may take `seconds` of this thread's CPU; past that the read stops with an InputError."""
    token = _budget.set((time.thread_time() + seconds, seconds, setting))
    try:
        yield
    finally:
        _budget.reset(token)


def spend() -> None:
    """Raise InputError if the CPU budget of this block is spent."""
    budget = _budget.get()
    if budget is not None and time.thread_time() > budget[0]:
        raise InputError(
            f"reading and estimating this worksheet took more than {budget[1]:g} s of CPU, "
            f"the most this server gives one ({budget[2]}); split it into smaller worksheets"
        )
