"""An embedded job's rows answered on threads of this process, with the function the Celery
task wraps (worker/runtime.answer): what `answer_job` runs when no broker is configured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from worker import runtime
from worker.models import JobSpec, Row

STOP_POLL_S = 0.2  # how often the threads look whether the job was stopped


class EmbeddedRun:
    """The job's tasks on `concurrency` threads of this process. Each thread takes the next
    thread of rows from the worksheet when it is free and answers it with the same function
    the Celery task calls: no queue, no hand-off thread, no futures. At 64 threads that
    hand-off and Celery's eager `apply` cost more CPU than the store (bench/, `cpu` group)."""

    def __init__(
        self,
        spec: JobSpec,
        groups: Iterator[list[Row]],
        concurrency: int,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.spec = spec
        self.groups = groups
        self.stopped = stopped  # the job was cancelled: take no more rows
        self.lock = threading.Lock()  # guards the worksheet, the stop look and the fields below
        self.looked = 0.0
        self.halted = False
        self.failures: list[BaseException] = []
        self.ended = threading.Event()  # set by the last thread to leave: wakes `wait`
        self.alive = max(1, concurrency)
        self.threads = [
            threading.Thread(target=self._work, name=f"askbatch-{i}", daemon=True)
            for i in range(max(1, concurrency))
        ]
        for thread in self.threads:
            thread.start()

    def _next(self) -> list[Row] | None:
        with self.lock:
            if self.halted or self.failures:
                return None
            now = time.monotonic()
            if now - self.looked > STOP_POLL_S:
                self.looked = now
                if self.stopped():
                    self.halted = True  # the rows not taken are marked by the caller, in one go
                    return None
            try:
                return next(self.groups, None)
            except BaseException as exc:  # a worksheet that changed under us, for one
                self.failures.append(exc)
                return None

    def _work(self) -> None:
        try:
            while (rows := self._next()) is not None:
                runtime.answer(self.spec.job_id, rows)
        except BaseException as exc:
            with self.lock:
                self.failures.append(exc)
        finally:
            with self.lock:
                self.alive -= 1
                if self.alive == 0:
                    self.ended.set()

    def finished(self) -> bool:
        """True once every thread has ended; re-raises the first task that crashed."""
        if self.failures:
            raise self.failures[0]
        return self.ended.is_set()
