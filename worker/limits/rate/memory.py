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
        self.view = gcra.View()

    def book(
        self, limits: tuple[int, int], need: tuple[float, float], horizon: float, seed: float = 0
    ) -> tuple[float, float]:
        with self.lock:
            got = gcra.book(self.state, time.monotonic(), limits, need, horizon, seed)
            self.view = gcra.View.of(self.state, time.monotonic())
            return got

    def learn(self, rpm: int, tpm: int) -> None:
        with self.lock:
            gcra.learn(self.state, rpm, tpm)
            self.view = gcra.View.of(self.state, time.monotonic())

    def probe_failed(self) -> None:
        with self.lock:
            gcra.probe_failed(self.state)

    def settle(self, tpm: int, delta: float, output: int | None = None) -> None:
        with self.lock:
            gcra.settle(self.state, time.monotonic(), tpm, delta, output)

    def slow(self, pause_s: float, limited: bool) -> None:
        with self.lock:
            gcra.slow(self.state, time.monotonic(), pause_s, limited)

    def pause_left(self) -> float:
        with self.lock:
            return self.state.pause - time.monotonic()
