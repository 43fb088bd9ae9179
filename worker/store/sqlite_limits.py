"""The SQLite store's part for the job's limits: the spending ledger (what was spent in the
job's file, what rows in flight hold in memory), the rate budget's buckets and pace reports.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable

from worker.limits.rate.memory import MemoryBucket
from worker.store.base import Spending


class SqliteLimits:
    """The `Ledger` and `Pacing` roles, mixed into LocalStore, whose lock and per-job
    connections it uses."""

    _lock: threading.Lock
    _db: Callable[..., sqlite3.Connection]
    _held: dict[tuple[str, int], int]  # (job, row) -> nano-dollars held by a row in flight

    def _spent(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT spent FROM spend").fetchone()
        return row[0] if row else 0

    def _held_total(self, job_id: str) -> int:
        return sum(amount for (job, _), amount in self._held.items() if job == job_id)

    def reserve(self, job_id: str, index: int, amount: int, cap: int) -> bool:
        with self._lock:
            self._held.pop((job_id, index), None)  # a duplicate delivery's hold of the row
            if self._spent(self._db(job_id)) + self._held_total(job_id) + amount > cap:
                return False
            self._held[(job_id, index)] = amount
            return True

    def settle(self, job_id: str, index: int, spent: int) -> None:
        with self._lock:
            db = self._db(job_id)
            self._held.pop((job_id, index), None)
            if db.execute("UPDATE spend SET spent = spent + ?", (spent,)).rowcount == 0:
                db.execute("INSERT INTO spend VALUES (?)", (spent,))

    def spending(self, job_id: str) -> Spending:
        with self._lock:
            return Spending(self._spent(self._db(job_id)), self._held_total(job_id))

    def bucket(self, job_id: str, model: str) -> MemoryBucket:
        """The job's rate budget for `model`, in this process: one process runs the job."""
        return MemoryBucket()

    def pace(self, job_id: str, proc: str, report: dict | None, within_s: float) -> list[dict]:
        db = self._db(job_id)
        now = time.time()
        with self._lock:
            if report is not None:
                db.execute(
                    "INSERT OR REPLACE INTO pace VALUES (?, ?, ?)",
                    (proc, now, json.dumps({**report, "at": now})),
                )
            rows = db.execute("SELECT json FROM pace WHERE at >= ?", (now - within_s,))
            return [json.loads(r[0]) for r in rows.fetchall()]
