"""Per-row results, stored the moment they are known, keyed by job and row.

Two backends with one interface: Redis for distributed jobs (shared by every worker) and a
SQLite file per job for embedded ones (so a job stopped by Ctrl-C or kill -9 keeps its rows).
Saving is first-writer-wins: a row that already has a final result is never overwritten, which
is what makes a redelivered task harmless.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis

from worker.models import JobSpec, Result
from worker.settings import mask_url

JOB_TTL_S = 30 * 24 * 3600  # results outlive the job long enough to collect them later


@dataclass(slots=True)
class Progress:
    total: int = 0
    done: int = 0
    started: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @property
    def not_completed(self) -> int:
        return self.done - self.by_status.get("completed", 0)


class Store(Protocol):
    def create_job(self, spec: JobSpec) -> None: ...
    def job(self, job_id: str) -> JobSpec: ...
    def mark_started(self, job_id: str) -> None: ...
    def claim(self, job_id: str, index: int, ttl_s: float) -> bool: ...
    def release(self, job_id: str, index: int) -> None: ...
    def has_result(self, job_id: str, index: int) -> bool: ...
    def save(self, job_id: str, result: Result) -> bool: ...
    def get(self, job_id: str, indices: Iterable[int]) -> dict[int, Result]: ...
    def progress(self, job_id: str) -> Progress: ...
    def stop(self, job_id: str, status: str, reason: str) -> None: ...
    def stopped(self, job_id: str) -> tuple[str, str] | None: ...


# Save a result only if the row has none, and count it once: atomic on the Redis server.
_SAVE_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'done', 1)
redis.call('HINCRBY', KEYS[2], 'status:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[6])
return 1
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self._save = self.redis.register_script(_SAVE_LUA)

    def __repr__(self) -> str:
        return f"RedisStore({mask_url(self.url)!r})"

    @staticmethod
    def _key(job_id: str, part: str) -> str:
        return f"askbatch:{job_id}:{part}"

    def create_job(self, spec: JobSpec) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self._key(spec.job_id, "spec"), json.dumps(spec.to_json()), ex=JOB_TTL_S)
        pipe.hset(self._key(spec.job_id, "stats"), "total", spec.total)
        pipe.expire(self._key(spec.job_id, "stats"), JOB_TTL_S)
        pipe.execute()

    def job(self, job_id: str) -> JobSpec:
        raw = self.redis.get(self._key(job_id, "spec"))
        if raw is None:
            raise KeyError(f"no job {job_id!r} in {mask_url(self.url)}")
        return JobSpec.from_json(json.loads(raw))

    def mark_started(self, job_id: str) -> None:
        self.redis.hincrby(self._key(job_id, "stats"), "started", 1)

    def claim(self, job_id: str, index: int, ttl_s: float) -> bool:
        key = self._key(job_id, f"claim:{index}")
        return bool(self.redis.set(key, "1", nx=True, px=int(ttl_s * 1000)))

    def release(self, job_id: str, index: int) -> None:
        self.redis.delete(self._key(job_id, f"claim:{index}"))

    def has_result(self, job_id: str, index: int) -> bool:
        return bool(self.redis.hexists(self._key(job_id, "results"), str(index)))

    def save(self, job_id: str, result: Result) -> bool:
        results = self._key(job_id, "results")
        u = result.usage
        saved = self._save(
            keys=[results, self._key(job_id, "stats")],
            args=[
                result.index,
                json.dumps(result.to_json(), ensure_ascii=False),
                result.status,
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
            ],
        )
        if saved:
            self.redis.expire(results, JOB_TTL_S, nx=True)
        return bool(saved)

    def get(self, job_id: str, indices: Iterable[int]) -> dict[int, Result]:
        wanted = list(indices)
        if not wanted:
            return {}
        raws = self.redis.hmget(self._key(job_id, "results"), [str(i) for i in wanted])
        return {
            i: Result.from_json(json.loads(raw))
            for i, raw in zip(wanted, raws, strict=True)
            if raw is not None
        }

    def stop(self, job_id: str, status: str, reason: str) -> None:
        """No new row of the job starts from now on; unstarted rows get `status` and `reason`."""
        self.redis.set(self._key(job_id, "stop"), json.dumps([status, reason]), ex=JOB_TTL_S)

    def stopped(self, job_id: str) -> tuple[str, str] | None:
        raw = self.redis.get(self._key(job_id, "stop"))
        return tuple(json.loads(raw)) if raw else None

    def progress(self, job_id: str) -> Progress:
        stats = self.redis.hgetall(self._key(job_id, "stats"))
        p = Progress(
            total=int(stats.get("total", 0)),
            done=int(stats.get("done", 0)),
            started=int(stats.get("started", 0)),
            prompt_tokens=int(stats.get("prompt_tokens", 0)),
            completion_tokens=int(stats.get("completion_tokens", 0)),
            total_tokens=int(stats.get("total_tokens", 0)),
        )
        p.by_status = {
            k.removeprefix("status:"): int(v) for k, v in stats.items() if k.startswith("status:")
        }
        return p


class LocalStore:
    """One SQLite file per job under `root`; safe to share between threads of one process."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "jobs"
        self._lock = threading.Lock()
        self._dbs: dict[str, sqlite3.Connection] = {}
        self._claims: dict[tuple[str, int], float] = {}
        self._started: dict[str, int] = {}

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
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a committed row survives a process crash
        db.execute("CREATE TABLE IF NOT EXISTS spec (json TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS stop (status TEXT NOT NULL, reason TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS results (idx INTEGER PRIMARY KEY, status TEXT,"
            " prompt INTEGER, completion INTEGER, total INTEGER, json TEXT NOT NULL)"
        )
        self._dbs[job_id] = db
        return db

    def create_job(self, spec: JobSpec) -> None:
        with self._lock:
            db = self._db(spec.job_id, create=True)
            db.execute("DELETE FROM spec")
            db.execute("INSERT INTO spec VALUES (?)", (json.dumps(spec.to_json()),))

    def job(self, job_id: str) -> JobSpec:
        with self._lock:
            row = self._db(job_id).execute("SELECT json FROM spec").fetchone()
        if row is None:
            raise KeyError(f"job {job_id!r} has no spec in {self.path(job_id)}")
        return JobSpec.from_json(json.loads(row[0]))

    def mark_started(self, job_id: str) -> None:
        with self._lock:
            self._started[job_id] = self._started.get(job_id, 0) + 1

    def claim(self, job_id: str, index: int, ttl_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._claims.get((job_id, index), 0) > now:
                return False
            self._claims[(job_id, index)] = now + ttl_s
            return True

    def release(self, job_id: str, index: int) -> None:
        with self._lock:
            self._claims.pop((job_id, index), None)

    def has_result(self, job_id: str, index: int) -> bool:
        with self._lock:
            db = self._db(job_id)
            return db.execute("SELECT 1 FROM results WHERE idx=?", (index,)).fetchone() is not None

    def save(self, job_id: str, result: Result) -> bool:
        u = result.usage
        with self._lock:
            cur = self._db(job_id).execute(
                "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?)",
                (
                    result.index,
                    result.status,
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.total_tokens,
                    json.dumps(result.to_json(), ensure_ascii=False),
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
        return {idx: Result.from_json(json.loads(raw)) for idx, raw in rows}

    def stop(self, job_id: str, status: str, reason: str) -> None:
        with self._lock:
            db = self._db(job_id)
            db.execute("DELETE FROM stop")
            db.execute("INSERT INTO stop VALUES (?, ?)", (status, reason))

    def stopped(self, job_id: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db(job_id).execute("SELECT status, reason FROM stop").fetchone()
        return (row[0], row[1]) if row else None

    def progress(self, job_id: str) -> Progress:
        with self._lock:
            db = self._db(job_id)
            spec = json.loads(db.execute("SELECT json FROM spec").fetchone()[0])
            rows = db.execute(
                "SELECT status, COUNT(*), SUM(prompt), SUM(completion), SUM(total)"
                " FROM results GROUP BY status"
            ).fetchall()
            started = self._started.get(job_id, 0)
        p = Progress(total=spec.get("total", 0), started=started)
        for status, count, prompt, completion, total in rows:
            p.by_status[status] = count
            p.done += count
            p.prompt_tokens += prompt or 0
            p.completion_tokens += completion or 0
            p.total_tokens += total or 0
        return p
