"""How many rows of a job are in flight: Little's law over the rate allowed, for every process.

The rows a job needs in flight are the requests per second its limits allow (given, or learned
from the headers, and lowered after 429s: budget.py) times the seconds a row holds its place per
request (measured: the row's time less its waits for the budget), with headroom. That target is
for the whole job; each process takes its share (the target over the processes that reported in
the last LIVE_S seconds, through the store), between a floor and its own threads (--concurrency,
the ceiling). Before the first answer says what the limit is, the job keeps to the floor; a job
on a server that says none (a local llama.cpp, vLLM) runs every thread, as before.

While rows wait here and the rate reached stays under what is allowed, the share grows by a
fifth a second (up to 4x), for answers whose latency varies; a 429 lowers the budget's rate
(gcra.slow), and with it the target, multiplicatively, and both recover together.

Every second a process writes its report into the store (`Pacing.pace`): the progress line,
`askbatch status` and the end-of-run summary read them.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from worker.limits.rate.budget import Budget, row_costs
from worker.store import Pacing

FLOOR = 4  # rows in flight for the whole job before the limit is known
HEADROOM = 1.5
MAX_BOOST = 4.0
REFRESH_S = 1.0
LIVE_S = 5.0  # a process that has not reported for this long has left the job
IDLE_S = 30.0  # a process's reports stop this long after its last row of the job


class Flight:
    """One process's gate for one job: at most `limit` of its rows in flight here."""

    def __init__(self, store: Pacing, job_id: str, ceiling: int) -> None:
        self.store = store
        self.job_id = job_id
        self.ceiling = max(1, ceiling)
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.cond = threading.Condition()
        self.active = 0
        self.waiting = 0
        self.limit = min(FLOOR, self.ceiling)
        self.budgets: dict[str, Budget] = {}
        self.occupancy_s = 0.0  # a row's seconds in flight per request (this process)
        self.boost = 1.0
        self.rate = 0.0  # requests per second this process reached lately
        self._busy_s, self._requests = 0.0, 0  # since the last refresh
        self.sent = 0  # requests of the job's rows sent from this process
        self.first_at = self.last_at = 0.0  # wall time of the first and latest row here
        self.cpu0 = 0.0
        self.peers: list[dict] = []
        self._thread: threading.Thread | None = None
        self._used = time.monotonic()

    @contextlib.contextmanager
    def row(self, budget: Budget) -> Iterator[None]:
        """Hold a place in flight for one row, waiting for one if the share is taken."""
        self.budgets.setdefault(budget.model, budget)
        with self.cond:
            self._start()
            self.waiting += 1
            while self.active >= self.limit:
                self.cond.wait(REFRESH_S)
            self.waiting -= 1
            self.active += 1
        row_costs.requests, row_costs.waited_s = 0, 0.0
        t0 = time.monotonic()
        try:
            yield
        finally:
            held = time.monotonic() - t0
            with self.cond:
                self.active -= 1
                self._busy_s += max(0.0, held - row_costs.waited_s)
                self._requests += row_costs.requests
                self.sent += row_costs.requests
                self.last_at = time.time()
                self._used = time.monotonic()
                self.cond.notify()

    def _start(self) -> None:
        self._used = time.monotonic()
        if self._thread is None or not self._thread.is_alive():
            if not self.first_at:
                self.first_at, self.cpu0 = time.time(), time.process_time()
            self._thread = threading.Thread(
                target=self._run, name=f"askbatch-flight-{self.job_id}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(REFRESH_S)
            # The store hiccuped: keep the last share, try again.
            with contextlib.suppress(Exception):
                self.refresh()
            with self.cond:
                if not self.active and time.monotonic() - self._used > IDLE_S:
                    self._thread = None
                    return

    # --- the share --------------------------------------------------------------------

    def allowed_rps(self) -> float | None:
        """Requests per second the job's limits allow now: None without any, 0.0 until the
        first answer says (the sum over the models this process has seen)."""
        rates = [b.allowed_rps() for b in list(self.budgets.values())]
        if not rates or any(r is None for r in rates):
            return None
        return sum(rates)

    def refresh(self) -> None:
        """Measure, report, read the other processes' reports, and set the share."""
        with self.cond:
            busy, requests = self._busy_s, self._requests
            self._busy_s, self._requests = 0.0, 0
            waiting = self.waiting
        if requests:
            sample = busy / requests
            old = self.occupancy_s
            self.occupancy_s = sample if not old else 0.7 * old + 0.3 * sample
        self.rate = 0.5 * self.rate + 0.5 * requests / REFRESH_S
        allowed = self.allowed_rps()
        self.peers = self.store.pace(self.job_id, self.proc, self.report(allowed), LIVE_S)
        processes = max(1, len(self.peers))
        occupancy = [p["occupancy_s"] for p in self.peers if p.get("occupancy_s")]
        occupancy_s = sum(occupancy) / len(occupancy) if occupancy else self.occupancy_s
        job_rate = sum(p.get("rate", 0.0) for p in self.peers) or self.rate
        factor = min((b.view.factor for b in list(self.budgets.values())), default=1.0)
        if allowed is None:
            limit = self.ceiling
        elif not allowed or not occupancy_s:
            limit = math.ceil(FLOOR / processes)
        else:
            if factor < 0.999:
                self.boost = 1.0  # 429s: the budget's rate is down, and the target with it
            elif waiting and job_rate < 0.9 * allowed:
                self.boost = min(MAX_BOOST, self.boost * 1.2)
            need = allowed * occupancy_s * HEADROOM * self.boost + 1
            limit = max(math.ceil(need / processes), math.ceil(FLOOR / processes))
        with self.cond:
            self.limit = max(1, min(self.ceiling, limit))
            self.cond.notify_all()

    def report(self, allowed: float | None) -> dict:
        """What this process says of the job (read by progress, status and the summary)."""
        budgets = list(self.budgets.values())
        rpm = max((b.limits().rpm for b in budgets), default=0)
        tpm = max((b.limits().tpm for b in budgets), default=0)
        learned = any(
            (b.rpm < 0 and b.limits().rpm) or (b.tpm < 0 and b.limits().tpm) for b in budgets
        )
        wall = max(1e-6, time.time() - self.first_at) if self.first_at else 0.0
        return {
            "active": self.active,
            "waiting": self.waiting,
            "limit": self.limit,
            "ceiling": self.ceiling,
            "rate": round(self.rate, 3),
            "allowed": allowed,
            "occupancy_s": round(self.occupancy_s, 4),
            "rpm": rpm,
            "tpm": tpm,
            "learned": bool(learned),
            "sent": self.sent,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "cpu": round((time.process_time() - self.cpu0) / wall, 3) if wall else 0.0,
        }


_flights: dict[tuple[int, str], Flight] = {}
_lock = threading.Lock()


def flight_for(store: Pacing, job_id: str, ceiling: int) -> Flight:
    """The process's gate for a job (one per store and job)."""
    key = (id(store), job_id)
    with _lock:
        flight = _flights.get(key)
        if flight is None:
            if len(_flights) > 64:  # a long-lived worker sees many jobs
                for old in [k for k, f in _flights.items() if not f.active]:
                    del _flights[old]
            flight = _flights[key] = Flight(store, job_id, ceiling)
        return flight
