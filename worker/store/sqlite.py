"""The SQLite store: embedded jobs, one file per job, so a stopped job keeps its rows.

This module keeps the jobs, results, tallies, claims and stops; `sqlite_limits.py` the spending
ledger and pace reports, `sqlite_batches.py` the Batch API route's part.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from worker.errors import JobBusy
from worker.models import JobSpec, Result, Stop
from worker.private import private_dir, private_file
from worker.store.base import Progress, RowStart, RowTally, chunks
from worker.store.sqlite_batches import SqliteBatches, create_batch_tables
from worker.store.sqlite_limits import SqliteLimits

_COLUMNS = "idx, status, prompt, completion, total, json, cost, unpriced, retries"


def _tally(result: Result) -> tuple[int, int, int]:
    t = RowTally.of(result)
    return t.cost_nusd, t.unpriced, t.retries


# The sums `progress` reads, per status, kept by triggers as rows are inserted and deleted
# (results rows are never updated), so that a poll reads a few rows, not every result.
_SUMS = ("prompt", "completion", "total", "cost", "unpriced", "retries")
_TALLY_SCHEMA = (
    "DROP TABLE IF EXISTS tally",
    f"CREATE TABLE tally (status TEXT PRIMARY KEY, n INTEGER NOT NULL,"
    f" {', '.join(f'{c} INTEGER NOT NULL' for c in _SUMS)})",
    f"CREATE TRIGGER tally_insert AFTER INSERT ON results BEGIN"
    f" INSERT INTO tally VALUES (NEW.status, 1, {', '.join(f'NEW.{c}' for c in _SUMS)})"
    f" ON CONFLICT (status) DO UPDATE SET n = n + 1,"
    f" {', '.join(f'{c} = {c} + excluded.{c}' for c in _SUMS)}; END",
    f"CREATE TRIGGER tally_delete AFTER DELETE ON results BEGIN"
    f" UPDATE tally SET n = n - 1, {', '.join(f'{c} = {c} - OLD.{c}' for c in _SUMS)}"
    f" WHERE status = OLD.status; END",
    f"INSERT INTO tally SELECT status, COUNT(*),"
    f" {', '.join(f'COALESCE(SUM({c}), 0)' for c in _SUMS)} FROM results GROUP BY status",
)


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a job file to today's schema, once, in one transaction: results gain cost,
    unpriced and retries columns (filled from each row's JSON in files written before them),
    and the per-status tally with its triggers (filled from the rows already there)."""

    def current() -> bool:
        found = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'tally_delete'")
        return found.fetchone() is not None

    if current():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not current():  # another process may have done it while this one waited
            columns = {row[1] for row in db.execute("PRAGMA table_info(results)")}
            if "retries" not in columns:
                for name in ("cost", "unpriced", "retries"):
                    db.execute(f"ALTER TABLE results ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0")
                rows = db.execute("SELECT idx, json FROM results").fetchall()
                db.executemany(
                    "UPDATE results SET cost = ?, unpriced = ?, retries = ? WHERE idx = ?",
                    [(*_tally(Result.from_stored(raw, idx)), idx) for idx, raw in rows],
                )
            for statement in _TALLY_SCHEMA:
                db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class LocalStore(SqliteLimits, SqliteBatches):
    """One SQLite file per job under `root`; safe to share between threads of one process.

    One process at a time runs a job (`hold`), so row claims can live in memory.
    """

    lease_s = 30.0  # only a duplicate delivery inside this process can find a row claimed

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "jobs"
        self._lock = threading.Lock()
        self._dbs: dict[str, sqlite3.Connection] = {}
        self._claims: dict[tuple[str, int], float] = {}
        self._started: dict[str, int] = {}
        # (job, row) -> nano-dollars held by a row in flight in this process; gone with it.
        self._held: dict[tuple[str, int], int] = {}

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.sqlite"

    def _db(self, job_id: str, create: bool = False) -> sqlite3.Connection:
        db = self._dbs.get(job_id)
        if db is not None:
            return db
        path = self.path(job_id)
        if not create and not path.exists():
            raise KeyError(f"no job {job_id!r} in {self.root}")
        private_file(private_dir(self.root, top=self.root.parent) / path.name)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a committed row survives a process crash
        db.execute("CREATE TABLE IF NOT EXISTS spec (json TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS stop (status TEXT NOT NULL, reason TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS spend (spent INTEGER NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS meta (json TEXT NOT NULL, input_key TEXT, created REAL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS results (idx INTEGER PRIMARY KEY, status TEXT,"
            " prompt INTEGER, completion INTEGER, total INTEGER, json TEXT NOT NULL,"
            " cost INTEGER NOT NULL DEFAULT 0, unpriced INTEGER NOT NULL DEFAULT 0,"
            " retries INTEGER NOT NULL DEFAULT 0)"
        )
        _upgrade(db)
        db.execute(
            "CREATE TABLE IF NOT EXISTS pace (proc TEXT PRIMARY KEY, at REAL, json TEXT NOT NULL)"
        )
        create_batch_tables(db)
        self._dbs[job_id] = db
        return db

    def create_job(self, spec: JobSpec) -> None:
        with self._lock:
            db = self._db(spec.job_id, create=True)
            db.execute("DELETE FROM spec")
            db.execute("INSERT INTO spec VALUES (?)", (json.dumps(spec.to_json()),))

    def spec(self, job_id: str) -> JobSpec:
        with self._lock:
            row = self._db(job_id).execute("SELECT json FROM spec").fetchone()
        if row is None:
            raise KeyError(f"job {job_id!r} has no spec in {self.path(job_id)}")
        return JobSpec.from_json(json.loads(row[0]))

    def release(self, job_id: str, index: int) -> None:
        with self._lock:
            self._claims.pop((job_id, index), None)

    def begin(self, job_id: str, index: int, ttl_s: float, first: bool) -> RowStart:
        now = time.monotonic()
        with self._lock:
            if first:
                self._started[job_id] = self._started.get(job_id, 0) + 1
            db = self._db(job_id)
            done = db.execute("SELECT json FROM results WHERE idx = ?", (index,)).fetchone()
            if done is not None:
                return RowStart(done=Result.from_stored(done[0], index))
            stop = db.execute("SELECT status, reason FROM stop").fetchone()
            if stop is not None:
                return RowStart(stop=Stop(*stop))
            if self._claims.get((job_id, index), 0) > now:
                return RowStart()
            self._claims[(job_id, index)] = now + ttl_s
            return RowStart(claimed=True)

    def finish(self, job_id: str, result: Result) -> bool:
        return self.save(job_id, result, release=True)

    def save(self, job_id: str, result: Result, release: bool = False) -> bool:
        with self._lock:
            saved = self._insert(self._db(job_id), result)
            if release:
                self._claims.pop((job_id, result.index), None)
            return saved

    def save_many(self, job_id: str, results: list[Result]) -> list[bool]:
        with self._lock:
            db = self._db(job_id)
            db.execute("BEGIN")  # one commit for the lot, not one per row
            try:
                saved = [self._insert(db, r) for r in results]
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return saved

    @staticmethod
    def _insert(db: sqlite3.Connection, result: Result) -> bool:
        u = result.usage
        cur = db.execute(
            f"INSERT OR IGNORE INTO results ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                result.index,
                result.status,
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                result.stored(),
                *_tally(result),
            ),
        )
        return cur.rowcount == 1

    def get(self, job_id: str, indices: Iterable[int]) -> dict[int, Result]:
        wanted = list(indices)
        if not wanted:
            return {}
        with self._lock:
            rows = (
                self._db(job_id)
                .execute(
                    f"SELECT idx, json FROM results WHERE idx IN ({','.join('?' * len(wanted))})",
                    wanted,
                )
                .fetchall()
            )
        return {idx: Result.from_stored(raw, idx) for idx, raw in rows}

    def stop(self, job_id: str, status: str, reason: str) -> None:
        with self._lock:
            db = self._db(job_id)
            db.execute("DELETE FROM stop")
            db.execute("INSERT INTO stop VALUES (?, ?)", (status, reason))

    def stopped(self, job_id: str) -> Stop | None:
        with self._lock:
            row = self._db(job_id).execute("SELECT status, reason FROM stop").fetchone()
        return Stop(*row) if row else None

    def progress(self, job_id: str) -> Progress:
        with self._lock:
            db = self._db(job_id)
            spec = json.loads(db.execute("SELECT json FROM spec").fetchone()[0])
            sums = ", ".join(_SUMS)
            rows = db.execute(f"SELECT status, n, {sums} FROM tally WHERE n > 0").fetchall()
            started = self._started.get(job_id, 0)
        p = Progress(total=spec.get("total", 0), started=started)
        for status, count, prompt, completion, total, cost, unpriced, retries in rows:
            p.by_status[status] = count
            p.done += count
            p.prompt_tokens += prompt
            p.completion_tokens += completion
            p.total_tokens += total
            p.cost_nusd += cost
            p.unpriced += unpriced
            p.retries += retries
        return p

    # --- coming back to a job -----------------------------------------------------------

    def set_record(self, job_id: str, record: dict, input_key: str) -> None:
        with self._lock:
            db = self._db(job_id)
            db.execute("DELETE FROM meta")
            db.execute(
                "INSERT INTO meta VALUES (?, ?, ?)",
                (json.dumps(record, ensure_ascii=False), input_key, time.time()),
            )

    def record(self, job_id: str) -> dict:
        with self._lock:
            row = self._db(job_id).execute("SELECT json FROM meta").fetchone()
        return json.loads(row[0]) if row else {}

    def latest_job(self, input_key: str) -> str | None:
        newest: tuple[float, str] | None = None
        for path in self.root.glob("*.sqlite"):
            try:
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                    row = db.execute("SELECT input_key, created FROM meta").fetchone()
            except sqlite3.Error:
                continue
            if row and row[0] == input_key and (newest is None or row[1] > newest[0]):
                newest = (row[1], path.stem)
        return newest[1] if newest else None

    def job_ids(self) -> list[str]:
        return sorted(path.stem for path in self.root.glob("*.sqlite"))

    def missing(self, job_id: str, total: int) -> list[int]:
        with self._lock:
            have = {i for (i,) in self._db(job_id).execute("SELECT idx FROM results")}
        return [i for i in range(total) if i not in have]

    def drop(self, job_id: str, statuses: Iterable[str], indices: Iterable[int]) -> int:
        marks = ",".join("?" * len(statuses := list(statuses)))
        dropped = 0
        with self._lock:
            db = self._db(job_id)
            for chunk in chunks(list(indices)):
                dropped += db.execute(
                    f"DELETE FROM results WHERE status IN ({marks})"
                    f" AND idx IN ({','.join('?' * len(chunk))})",
                    [*statuses, *chunk],
                ).rowcount
        return dropped

    def mark_unstarted(self, job_id: str, indices: Iterable[int], status: str, reason: str) -> int:
        now = time.monotonic()
        marked = 0
        with self._lock:
            db = self._db(job_id)
            for i in indices:
                if self._claims.get((job_id, i), 0) > now:
                    continue  # being answered in this process: its result will come
                result = Result(index=i, status=status, error=reason)
                marked += db.execute(
                    f"INSERT OR IGNORE INTO results ({_COLUMNS}) VALUES (?,?,0,0,0,?,0,0,0)",
                    (i, status, result.stored()),
                ).rowcount
        return marked

    def clear_stop(self, job_id: str) -> None:
        with self._lock:
            self._db(job_id).execute("DELETE FROM stop")

    def _lock_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.lock"

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[None]:
        """Run the job in this process only; raises JobBusy if another process runs it.

        The operating system lets go of the lock when the process ends, even by kill -9.
        """
        private_dir(self.root, top=self.root.parent)
        fd = os.open(self._lock_path(job_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobBusy(job_id) from None
            yield
        finally:
            os.close(fd)

    def in_flight(self, job_id: str) -> int:
        now = time.monotonic()
        with self._lock:
            claims = self._claims.items()
            return sum(1 for (job, _), until in claims if job == job_id and until > now)

    def busy(self, job_id: str) -> bool:
        try:
            fd = os.open(self._lock_path(job_id), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
