"""Cancelling runs in flight when their job is cancelled, where the API allows it.

Rows not yet started see the job's stop flag before they start (worker/runner). A row already
waiting on its run is blocked inside the SDK, so one thread per process watches the stop flag
of the jobs that have cancellable runs in flight and cancels those runs. Only Assistants runs
can be cancelled: a Responses or Chat request cannot be recalled once sent, so such a row
finishes and keeps its (paid-for) answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator

from worker.store import JobControl

log = logging.getLogger(__name__)

POLL_S = 1.0


class _Slot:
    """One row in flight: the cancel function of its run, once the provider hands it over."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.cancel: Callable[[], None] | None = None
        self.fired = False

    def set(self, cancel: Callable[[], None]) -> None:
        self.cancel = cancel
        self.fired = False  # a new run of the row (a tool round) can be cancelled again


class RunWatch:
    """Watches the stop flag of the jobs that have cancellable runs in flight in one store."""

    def __init__(self, store: JobControl, every_s: float = POLL_S) -> None:
        self.store = store
        self.every_s = every_s
        self._lock = threading.Lock()
        self._slots: set[_Slot] = set()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def row(self, job_id: str) -> Iterator[Callable[[Callable[[], None]], None]]:
        """While the block runs, a run handed to the yielded function is cancelled if the job
        is cancelled."""
        slot = _Slot(job_id)
        with self._lock:
            self._slots.add(slot)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="askbatch-cancel", daemon=True
                )
                self._thread.start()
        try:
            yield slot.set
        finally:
            with self._lock:
                self._slots.discard(slot)

    def _watch(self) -> None:
        while True:
            time.sleep(self.every_s)
            with self._lock:
                armed = [s for s in self._slots if s.cancel is not None and not s.fired]
            for job_id in {s.job_id for s in armed}:
                try:
                    if not self.store.stopped(job_id):
                        continue
                except Exception as exc:  # the store is restarting: look again next round
                    log.warning("could not read the stop flag of job %s: %s", job_id, exc)
                    continue
                for slot in armed:
                    if slot.job_id == job_id:
                        self._fire(slot)

    @staticmethod
    def _fire(slot: _Slot) -> None:
        slot.fired = True
        try:
            slot.cancel()
        except Exception as exc:  # the run may have just ended by itself
            log.info("could not cancel a run of job %s: %s", slot.job_id, exc)


_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_watches_lock = threading.Lock()


def watch_for(store: JobControl) -> RunWatch:
    """The one watch of a store (per process)."""
    with _watches_lock:
        watch = _watches.get(store)
        if watch is None:
            watch = _watches[store] = RunWatch(store)
        return watch
