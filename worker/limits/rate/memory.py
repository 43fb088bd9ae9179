"""The rate budget's state in this process, behind a lock (embedded jobs)."""

from __future__ import annotations

import threading
import time

from worker.limits.rate import gcra


class MemoryBucket:
    """The state in this process (embedded jobs)."""

    def __init__(self) -> None:
        self.state = gcra.State()
        self.lock = threading.Lock()

    def book(
        self, limits: tuple[int, int], need: tuple[float, float], horizon: float, seed: float = 0
    ) -> tuple[float, float]:
        with self.lock:
            return gcra.book(self.state, time.monotonic(), limits, need, horizon, seed)

    def settle(self, tpm: int, delta: float, output: int | None = None) -> None:
        with self.lock:
            gcra.settle(self.state, time.monotonic(), tpm, delta, output)

    def slow(self, pause_s: float, limited: bool) -> None:
        with self.lock:
            gcra.slow(self.state, time.monotonic(), pause_s, limited)

    def pause_left(self) -> float:
        with self.lock:
            return self.state.pause - time.monotonic()
