"""Tasks the broker lost: found while a distributed job waits, and sent again.

kombu's Redis transport takes a message off the queue (BRPOP) and records it as
unacknowledged with a later, separate command. A Redis restart between the two loses the
message without a trace (celery/kombu#305): its rows never get a result, nothing redelivers
it, and `askbatch run` would wait forever. Seen here in tests/test_faults.py: the append-only
file showed the row's message popped as the last write before the restart, and never again.

So the job's owner watches. When the job has made no progress for longer than the broker takes
to redeliver a dead worker's task (visibility timeout, restore interval, row lease), with no
row claimed, the queue empty and none of the job's messages unacknowledged, the rows without
a result are sent again. Sending a row that was only slow is harmless: its claim and the
store's first-writer-wins keep it from being asked twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import redis

from worker.limits.leases import lease_for
from worker.models import Row
from worker.store import Claims, JobControl, Progress, Results

log = logging.getLogger(__name__)

MARGIN_S = 10.0


def quiet_for(visibility_timeout_s: float) -> float:
    """How long a job must stand still before its missing rows count as lost."""
    restore = max(1.0, min(10.0, visibility_timeout_s / 4))  # worker/app.py's interval
    return visibility_timeout_s + restore + lease_for(visibility_timeout_s) + MARGIN_S


def broker_holds(client: redis.Redis, job_id: str, queue: str) -> bool:
    """Whether the broker still has a message that could answer a row of the job: any message
    queued (the job's or not: its turn will come), or one of the job's unacknowledged ones
    (being answered, or held for a retry's countdown). A task's args, the job id first, are
    in its headers' `argsrepr` in plain text."""
    if client.llen(queue):
        return True
    needle = job_id.encode()
    return any(needle in raw for raw in client.hvals("unacked"))


class Watched(JobControl, Claims, Results, Protocol):
    """The store's roles the watch reads: the job's stop, its live claims, its missing rows."""


class LostTasks:
    """Called on each poll of a distributed job; re-sends the tasks of rows the broker lost."""

    def __init__(
        self,
        broker_url: str,
        store: Watched,
        job_id: str,
        total: int,
        regroup: Callable[[Iterable[int]], Iterator[list[Row]]],
        send: Callable[[Iterator[list[Row]]], int],
        after_s: float,
        tell: Callable[[str], None] = log.warning,
    ) -> None:
        self.client = redis.Redis.from_url(broker_url)
        from worker.app import app  # Celery: imported only when a distributed job waits

        self.queue = app.conf.task_default_queue
        self.store = store
        self.job_id = job_id
        self.total = total
        self.regroup = regroup
        self.send = send
        self.after_s = after_s
        self.tell = tell
        self._done = -1
        self._since = time.monotonic()
        self.resent = 0  # rows sent again, for the caller's summary

    def check(self, progress: Progress, now: float | None = None) -> int:
        """Rows sent again by this look (0 almost always)."""
        now = time.monotonic() if now is None else now
        if progress.done != self._done:
            self._done, self._since = progress.done, now
            return 0
        if progress.done >= self.total or now - self._since < self.after_s:
            return 0
        self._since = now  # look again only after another quiet spell
        try:
            if self.store.stopped(self.job_id) or self.store.in_flight(self.job_id):
                return 0
            if broker_holds(self.client, self.job_id, self.queue):
                return 0
            missing = self.store.missing(self.job_id, self.total)
            if not missing:
                return 0
            self.send(self.regroup(missing))
        except redis.RedisError as exc:  # Redis away again: the next quiet spell looks again
            log.warning("could not look for lost tasks of job %s: %s", self.job_id, exc)
            return 0
        self.resent += len(missing)
        self.tell(
            f"\nwarning: {len(missing)} rows of job {self.job_id} had no result, no worker on "
            "them and no task in the broker (lost in a Redis restart?); sent them again"
        )
        return len(missing)
