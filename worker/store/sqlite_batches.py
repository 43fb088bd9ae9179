"""The embedded store's part for the Batch API route (worker/batch): the job's rows, kept so
that any round's lines can be built from them, and its batch records, in the job's SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable

from worker.store.base import chunks


def create_batch_tables(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS rows (idx INTEGER PRIMARY KEY, json TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS batches (key TEXT PRIMARY KEY, json TEXT NOT NULL)")


class SqliteBatches:
    """The `Batches` role, mixed into LocalStore, whose lock and per-job connections it uses."""

    _lock: threading.Lock
    _db: Callable[..., sqlite3.Connection]

    def rows_put(self, job_id: str, rows: list[dict]) -> None:
        with self._lock:
            self._db(job_id).executemany(
                "INSERT OR REPLACE INTO rows VALUES (?, ?)",
                [(r["index"], json.dumps(r, ensure_ascii=False)) for r in rows],
            )

    def rows_get(self, job_id: str, indices: Iterable[int]) -> dict[int, dict]:
        found: dict[int, dict] = {}
        with self._lock:
            db = self._db(job_id)
            for chunk in chunks(list(indices)):
                marks = ",".join("?" * len(chunk))
                for idx, raw in db.execute(
                    f"SELECT idx, json FROM rows WHERE idx IN ({marks})", chunk
                ):
                    found[idx] = json.loads(raw)
        return found

    def batch_put(self, job_id: str, key: str, record: dict) -> None:
        with self._lock:
            self._db(job_id).execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?)", (key, json.dumps(record))
            )

    def batch_records(self, job_id: str) -> dict[str, dict]:
        with self._lock:
            rows = self._db(job_id).execute("SELECT key, json FROM batches").fetchall()
        return {key: json.loads(raw) for key, raw in rows}

    def look_lease(self, job_id: str, token: str, ttl_s: float) -> bool:
        return True  # one process runs an embedded job (`hold`), and it looks from one thread

    def look_release(self, job_id: str, token: str) -> None:
        return None
