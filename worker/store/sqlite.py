"""Per-row results, stored the moment they are known, keyed by job and row.

Two backends with one interface: Redis for distributed jobs (shared by every worker) and a
SQLite file per job for embedded ones (so a job stopped by Ctrl-C or kill -9 keeps its rows).
Saving is first-writer-wins: a row that already has a final result is never overwritten, which
is what makes a redelivered task harmless.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from worker.errors import AskbatchError
from worker.leases import Leases
from worker.models import JobSpec, Result
from worker.settings import mask_url

JOB_TTL_S = 30 * 24 * 3600  # results outlive the job long enough to collect them later


class _RideOut(Retry):
    """Every Redis call is retried with backoff for about a minute, so that a redis-server
    restart stalls the job instead of failing it; a refused password is not retried."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        def retryable(error: Exception) -> bool:
            if isinstance(error, AuthenticationError | AuthorizationError):
                return False
            return is_retryable is None or is_retryable(error)

        return super().call_with_retry(do, fail, retryable, with_failure_count)


REDIS_RETRY = _RideOut(ExponentialBackoff(cap=2.0, base=0.1), retries=40)


class JobBusy(AskbatchError):
    """Raised when another process is running the embedded job right now."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id} is running in another askbatch process; wait for it to end, or "
            f"stop it with `askbatch cancel {job_id}`"
        )


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


@dataclass(slots=True)
class RowStart:
    """What a worker finds when it comes to a row, read and acted on in one step: the row's
    stored result, else the job's stop, else the claim it took (or could not take)."""

    done: Result | None = None
    stop: tuple[str, str] | None = None
    claimed: bool = False


class Store(Protocol):
    def create_job(self, spec: JobSpec) -> None: ...
    def job(self, job_id: str) -> JobSpec: ...
    def release(self, job_id: str, index: int) -> None: ...
    def save(self, job_id: str, result: Result) -> bool: ...
    # The two calls a worker makes per row (one round trip each): look at the row and claim
    # it (`first`: the first row of a task, which also counts the task as started), then
    # save its result and let go of the claim.
    def begin(self, job_id: str, index: int, ttl_s: float, first: bool) -> RowStart: ...
    def finish(self, job_id: str, result: Result) -> bool: ...
    def get(self, job_id: str, indices: Iterable[int]) -> dict[int, Result]: ...
    def progress(self, job_id: str) -> Progress: ...
    def stop(self, job_id: str, status: str, reason: str) -> None: ...
    def stopped(self, job_id: str) -> tuple[str, str] | None: ...
    # The spending ledger, in whole nano-dollars (worker.spending): hold, then settle.
    # Holds are kept per row: a row asked again after its worker died replaces the dead
    # worker's hold instead of adding to it.
    def reserve(self, job_id: str, index: int, amount: int, cap: int) -> bool: ...
    def settle(self, job_id: str, index: int, spent: int) -> None: ...
    def spending(self, job_id: str) -> tuple[int, int]: ...

    # Coming back to a job (jobs.control): its record, which rows lack a result, dropping
    # results to ask them again, and cancelling the rows nobody is answering.
    lease_s: float

    def set_meta(self, job_id: str, meta: dict, input_key: str) -> None: ...
    def meta(self, job_id: str) -> dict: ...
    def latest_job(self, input_key: str) -> str | None: ...
    def missing(self, job_id: str, total: int) -> list[int]: ...
    def drop(self, job_id: str, statuses: Iterable[str], indices: Iterable[int]) -> int: ...
    def mark_unstarted(
        self, job_id: str, indices: Iterable[int], status: str, reason: str
    ) -> int: ...
    def clear_stop(self, job_id: str) -> None: ...
    def hold(self, job_id: str) -> contextlib.AbstractContextManager: ...
    def busy(self, job_id: str) -> bool: ...
    # Rows being answered right now (live claims): a halted job is over once none is left.
    def in_flight(self, job_id: str) -> int: ...


# Save a result only if the row has none, and count it once: atomic on the Redis server.
# Then drop the row's claim KEYS[3] if it is still ours (token ARGV[7]; '' when none is held).
_SAVE_LUA = """
local saved = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if saved == 1 then
  redis.call('HINCRBY', KEYS[2], 'done', 1)
  redis.call('HINCRBY', KEYS[2], 'status:' .. ARGV[3], 1)
  redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[8], 'NX')
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[3]) == ARGV[7] then redis.call('DEL', KEYS[3]) end
return saved
"""

# A worker coming to a row: its result if it has one, else the job's stop, else claim it as
# a lease (KEYS[3], token ARGV[2] for ARGV[3] ms). All in one step, so a cancel, which marks
# only unclaimed rows, and a worker can never both give the row a result.
_BEGIN_LUA = """
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[4], 'started', 1) end
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done then return {'done', done} end
local stop = redis.call('GET', KEYS[2])
if stop then return {'stop', stop} end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'claimed', ''} end
return {'busy', ''}
"""


# Hold `amount` only if spent + held + amount stays within the cap: one atomic step, so two
# workers can never both take the last of the budget.
# KEYS[2] holds each row's hold (ARGV[3] the row): a hold left by a worker that died with the
# row is given back first, since the row is being asked again now.
_RESERVE_LUA = """
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
if old > 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'held_nusd', -old)
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent_nusd') or '0')
local held = tonumber(redis.call('HGET', KEYS[1], 'held_nusd') or '0')
if spent + held + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'held_nusd', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# Swap row ARGV[1]'s hold for what it cost (ARGV[2]).
_SETTLE_LUA = """
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'held_nusd', -held)
redis.call('HINCRBY', KEYS[1], 'spent_nusd', ARGV[2])
return held
"""

# Forget the results of rows whose status is one of ARGV[1] (",failed,expired,"), taking back
# what _SAVE_LUA counted for them (keep the two in step). ARGV[2..]: row indices.
_DROP_LUA = """
local n = 0
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw then
    local r = cjson.decode(raw)
    if string.find(ARGV[1], ',' .. r.status .. ',', 1, true) then
      local u = r.usage or {}
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HINCRBY', KEYS[2], 'done', -1)
      redis.call('HINCRBY', KEYS[2], 'status:' .. r.status, -1)
      redis.call('HINCRBY', KEYS[2], 'prompt_tokens', -(u.prompt_tokens or 0))
      redis.call('HINCRBY', KEYS[2], 'completion_tokens', -(u.completion_tokens or 0))
      redis.call('HINCRBY', KEYS[2], 'total_tokens', -(u.total_tokens or 0))
      n = n + 1
    end
  end
end
return n
"""

# Give a row a result only if it has none and nobody holds its claim (a cancel must not
# overwrite a row being answered): KEYS[3..] claim keys, ARGV pairs of (index, result JSON).
_MARK_LUA = """
local n = 0
for i = 3, #KEYS do
  local idx, raw = ARGV[2 * (i - 2) - 1], ARGV[2 * (i - 2)]
  if redis.call('EXISTS', KEYS[i]) == 0 and redis.call('HSETNX', KEYS[1], idx, raw) == 1 then
    redis.call('HINCRBY', KEYS[2], 'done', 1)
    redis.call('HINCRBY', KEYS[2], 'status:' .. ARGV[#ARGV], 1)
    n = n + 1
  end
end
return n
"""


class RedisStore:
    def __init__(self, url: str, lease_s: float = 30.0) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            retry=REDIS_RETRY,
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self.lease_s = lease_s
        self._leases = Leases(self.redis, lease_s)
        self._drop = self.redis.register_script(_DROP_LUA)
        self._mark = self.redis.register_script(_MARK_LUA)
        self._save = self.redis.register_script(_SAVE_LUA)
        self._begin = self.redis.register_script(_BEGIN_LUA)
        self._reserve = self.redis.register_script(_RESERVE_LUA)
        self._settle = self.redis.register_script(_SETTLE_LUA)

    def __repr__(self) -> str:
        return f"RedisStore({mask_url(self.url)!r})"

    def check(self) -> None:
        """Ping once, at once: raises redis.RedisError when Redis cannot be used."""
        with redis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0)) as client:
            client.ping()

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

    def release(self, job_id: str, index: int) -> None:
        self._leases.drop(self._key(job_id, f"claim:{index}"))

    def save(self, job_id: str, result: Result) -> bool:
        return self._store(job_id, result, token="")

    def begin(self, job_id: str, index: int, ttl_s: float, first: bool) -> RowStart:
        claim = self._key(job_id, f"claim:{index}")
        token = self._leases.token()
        found, raw = self._begin(
            keys=[
                self._key(job_id, "results"),
                self._key(job_id, "stop"),
                claim,
                self._key(job_id, "stats"),
            ],
            args=[index, token, int(self.lease_s * 1000), "1" if first else "0"],
        )
        if found == "done":
            return RowStart(done=Result.from_json(json.loads(raw)))
        if found == "stop":
            return RowStart(stop=tuple(json.loads(raw)))
        if found == "claimed":
            self._leases.adopt(claim, token, ttl_s)
            return RowStart(claimed=True)
        return RowStart()

    def finish(self, job_id: str, result: Result) -> bool:
        token = self._leases.forget(self._key(job_id, f"claim:{result.index}"))
        return self._store(job_id, result, token=token or "")

    def _store(self, job_id: str, result: Result, token: str) -> bool:
        u = result.usage
        saved = self._save(
            keys=[
                self._key(job_id, "results"),
                self._key(job_id, "stats"),
                self._key(job_id, f"claim:{result.index}"),
            ],
            args=[
                result.index,
                json.dumps(result.to_json(), ensure_ascii=False),
                result.status,
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                token,
                JOB_TTL_S,
            ],
        )
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

    def reserve(self, job_id: str, index: int, amount: int, cap: int) -> bool:
        keys = [self._key(job_id, "stats"), self._key(job_id, "holds")]
        return bool(self._reserve(keys=keys, args=[amount, cap, index, JOB_TTL_S]))

    def settle(self, job_id: str, index: int, spent: int) -> None:
        keys = [self._key(job_id, "stats"), self._key(job_id, "holds")]
        self._settle(keys=keys, args=[index, spent])

    def spending(self, job_id: str) -> tuple[int, int]:
        """(spent, held) in nano-dollars, as far as the cap has counted."""
        spent, held = self.redis.hmget(self._key(job_id, "stats"), ["spent_nusd", "held_nusd"])
        return int(spent or 0), int(held or 0)

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

    # --- coming back to a job -----------------------------------------------------------

    def set_meta(self, job_id: str, meta: dict, input_key: str) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self._key(job_id, "meta"), json.dumps(meta, ensure_ascii=False), ex=JOB_TTL_S)
        pipe.set(f"askbatch:input:{input_key}", job_id, ex=JOB_TTL_S)
        pipe.execute()

    def meta(self, job_id: str) -> dict:
        raw = self.redis.get(self._key(job_id, "meta"))
        return json.loads(raw) if raw else {}

    def latest_job(self, input_key: str) -> str | None:
        return self.redis.get(f"askbatch:input:{input_key}")

    def missing(self, job_id: str, total: int) -> list[int]:
        have = {int(i) for i in self.redis.hkeys(self._key(job_id, "results"))}
        return [i for i in range(total) if i not in have]

    def drop(self, job_id: str, statuses: Iterable[str], indices: Iterable[int]) -> int:
        wanted = "," + ",".join(statuses) + ","
        keys = [self._key(job_id, "results"), self._key(job_id, "stats")]
        return sum(self._drop(keys=keys, args=[wanted, *chunk]) for chunk in _chunks(list(indices)))

    def mark_unstarted(self, job_id: str, indices: Iterable[int], status: str, reason: str) -> int:
        results, stats = self._key(job_id, "results"), self._key(job_id, "stats")
        marked = 0
        for chunk in _chunks(list(indices)):
            claims = [self._key(job_id, f"claim:{i}") for i in chunk]
            args: list = []
            for i in chunk:
                result = Result(index=i, status=status, error=reason)
                args += [i, json.dumps(result.to_json(), ensure_ascii=False)]
            marked += self._mark(keys=[results, stats, *claims], args=[*args, status])
        return marked

    def clear_stop(self, job_id: str) -> None:
        self.redis.delete(self._key(job_id, "stop"))

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[None]:
        # Workers anywhere may answer a distributed job; duplicate deliveries are harmless.
        yield

    def busy(self, job_id: str) -> bool:
        return False

    def in_flight(self, job_id: str) -> int:
        # Claims expire with their lease, so a dead worker's rows stop counting on their own.
        pattern = self._key(job_id, "claim:*")
        return sum(1 for _ in self.redis.scan_iter(match=pattern, count=1000))


def _chunks(items: list, size: int = 500) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LocalStore:
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
        path.parent.mkdir(parents=True, exist_ok=True)
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
                return RowStart(done=Result.from_json(json.loads(done[0])))
            stop = db.execute("SELECT status, reason FROM stop").fetchone()
            if stop is not None:
                return RowStart(stop=(stop[0], stop[1]))
            if self._claims.get((job_id, index), 0) > now:
                return RowStart()
            self._claims[(job_id, index)] = now + ttl_s
            return RowStart(claimed=True)

    def finish(self, job_id: str, result: Result) -> bool:
        return self.save(job_id, result, release=True)

    def save(self, job_id: str, result: Result, release: bool = False) -> bool:
        u = result.usage
        raw = json.dumps(result.to_json(), ensure_ascii=False)
        with self._lock:
            cur = self._db(job_id).execute(
                "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?)",
                (
                    result.index,
                    result.status,
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.total_tokens,
                    raw,
                ),
            )
            if release:
                self._claims.pop((job_id, result.index), None)
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

    def spending(self, job_id: str) -> tuple[int, int]:
        with self._lock:
            return self._spent(self._db(job_id)), self._held_total(job_id)

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

    # --- coming back to a job -----------------------------------------------------------

    def set_meta(self, job_id: str, meta: dict, input_key: str) -> None:
        with self._lock:
            db = self._db(job_id)
            db.execute("DELETE FROM meta")
            db.execute(
                "INSERT INTO meta VALUES (?, ?, ?)",
                (json.dumps(meta, ensure_ascii=False), input_key, time.time()),
            )

    def meta(self, job_id: str) -> dict:
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

    def missing(self, job_id: str, total: int) -> list[int]:
        with self._lock:
            have = {i for (i,) in self._db(job_id).execute("SELECT idx FROM results")}
        return [i for i in range(total) if i not in have]

    def drop(self, job_id: str, statuses: Iterable[str], indices: Iterable[int]) -> int:
        marks = ",".join("?" * len(statuses := list(statuses)))
        dropped = 0
        with self._lock:
            db = self._db(job_id)
            for chunk in _chunks(list(indices)):
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
                    "INSERT OR IGNORE INTO results VALUES (?,?,0,0,0,?)",
                    (i, status, json.dumps(result.to_json(), ensure_ascii=False)),
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
        self.root.mkdir(parents=True, exist_ok=True)
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
