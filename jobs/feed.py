"""A distributed job's tasks, sent to the broker as the workers need them.

Sending every task at once put a million-row job's million messages in Redis (about 1.3 kB
each with Celery's headers: 1.3 GB) before the first thousand were answered. The job's owner
keeps `ahead` rows queued beyond those answered instead, topping up on each poll, so Redis
holds a window of the job, not all of it. The owner must then stay to the end: `run`
interrupted says how many rows were never sent, and `askbatch resume` sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from worker.models import Row
from worker.store import Progress


class Feeder:
    """Sends the tasks of `groups` (one per thread of rows) while fewer than `ahead` rows are
    sent and unanswered; `done_before` is the job's count of rows with a result before."""

    def __init__(
        self,
        groups: Iterator[list[Row]],
        send: Callable[[Iterator[list[Row]]], int],
        ahead: int,
        done_before: int,
    ) -> None:
        self.groups = groups
        self.send = send
        self.ahead = ahead
        self.done_before = done_before
        self.sent_rows = 0
        self.exhausted = False

    def top_up(self, progress: Progress) -> int:
        """Send what the window has room for; returns the rows sent."""
        if self.exhausted:
            return 0
        answered = max(0, progress.done - self.done_before)
        room = self.ahead - (self.sent_rows - answered)
        picked: list[list[Row]] = []
        while room > 0:
            rows = next(self.groups, None)
            if rows is None:
                self.exhausted = True
                break
            picked.append(rows)
            room -= len(rows)
        if picked:
            self.send(iter(picked))
            self.sent_rows += sum(len(rows) for rows in picked)
        return sum(len(rows) for rows in picked)
