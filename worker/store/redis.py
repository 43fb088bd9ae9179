"""The Redis store: distributed jobs, shared by every worker; its scripts are in `lua/`.

Every step that must not interleave with another worker's (save a row once, claim it, hold
against the spending cap) is one Lua script, run atomically on the Redis server. This module
keeps the jobs, results, tallies, claims and stops; `redis_limits.py` the spending ledger and
pace reports, `redis_batches.py` the Batch API route's part.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from worker import lua
from worker.limits.leases import Leases
from worker.models import JobSpec, Result, Stop
from worker.settings import mask_url
from worker.store.base import JOB_TTL_S, Progress, RowStart, RowTally, chunks
from worker.store.redis_batches import RedisBatches
from worker.store.redis_limits import RedisLimits


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


class RedisStore(RedisLimits, RedisBatches):
    """A distributed job's results, stop, spending ledger and row claims in one Redis."""

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
        self._drop = self._script("drop")
        self._mark = self._script("mark")
        self._save = self._script("save")
        self._begin = self._script("begin")
        self._reserve = self._script("reserve")
        self._settle = self._script("settle")

    def _script(self, name: str):
        return self.redis.register_script(lua.script(__package__, name))

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
        # `tallied`: save.lua counts cost and retries for this job (see `progress`).
        pipe.hset(self._key(spec.job_id, "stats"), mapping={"total": spec.total, "tallied": 1})
        pipe.expire(self._key(spec.job_id, "stats"), JOB_TTL_S)
        pipe.execute()

    def spec(self, job_id: str) -> JobSpec:
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
            return RowStart(done=Result.from_stored(raw, index))
        if found == "stop":
            return RowStart(stop=Stop(*json.loads(raw)))
        if found == "claimed":
            self._leases.adopt(claim, token, ttl_s)
            return RowStart(claimed=True)
        return RowStart()

    def finish(self, job_id: str, result: Result) -> bool:
        token = self._leases.forget(self._key(job_id, f"claim:{result.index}"))
        return self._store(job_id, result, token=token or "")

    def save_many(self, job_id: str, results: list[Result]) -> list[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for result in results:
            self._store(job_id, result, token="", client=pipe)
        return [bool(saved) for saved in pipe.execute()]

    def _store(self, job_id: str, result: Result, token: str, client=None) -> bool:
        u = result.usage
        tally = RowTally.of(result)
        saved = self._save(
            client=client,
            keys=[
                self._key(job_id, "results"),
                self._key(job_id, "stats"),
                self._key(job_id, f"claim:{result.index}"),
                self._key(job_id, "tallies"),
            ],
            args=[
                result.index,
                result.stored(),
                result.status,
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                token,
                JOB_TTL_S,
                tally.cost_nusd,
                tally.unpriced,
                tally.retries,
            ],
        )
        return bool(saved)

    def get(self, job_id: str, indices: Iterable[int]) -> dict[int, Result]:
        wanted = list(indices)
        if not wanted:
            return {}
        raws = self.redis.hmget(self._key(job_id, "results"), [str(i) for i in wanted])
        return {
            i: Result.from_stored(raw, i)
            for i, raw in zip(wanted, raws, strict=True)
            if raw is not None
        }

    def stop(self, job_id: str, status: str, reason: str) -> None:
        """No new row of the job starts from now on; unstarted rows get `status` and `reason`."""
        self.redis.set(self._key(job_id, "stop"), json.dumps([status, reason]), ex=JOB_TTL_S)

    def stopped(self, job_id: str) -> Stop | None:
        raw = self.redis.get(self._key(job_id, "stop"))
        return Stop(*json.loads(raw)) if raw else None

    def progress(self, job_id: str) -> Progress:
        stats = self.redis.hgetall(self._key(job_id, "stats"))
        p = Progress(
            total=int(stats.get("total", 0)),
            done=int(stats.get("done", 0)),
            started=int(stats.get("started", 0)),
            prompt_tokens=int(stats.get("prompt_tokens", 0)),
            completion_tokens=int(stats.get("completion_tokens", 0)),
            total_tokens=int(stats.get("total_tokens", 0)),
            cost_nusd=int(stats.get("cost_nusd", 0)),
            unpriced=int(stats.get("unpriced", 0)),
            retries=int(stats.get("retries", 0)),
        )
        p.by_status = {
            k.removeprefix("status:"): int(v) for k, v in stats.items() if k.startswith("status:")
        }
        if p.done and "tallied" not in stats:
            self._tally_rows(job_id, p)
        return p

    def _tally_rows(self, job_id: str, p: Progress) -> None:
        """A job created before save.lua counted cost and retries: add them up from its rows."""
        for index, raw in self.redis.hscan_iter(self._key(job_id, "results")):
            tally = RowTally.of(Result.from_stored(raw, int(index)))
            p.cost_nusd += tally.cost_nusd
            p.unpriced += tally.unpriced
            p.retries += tally.retries

    # --- coming back to a job -----------------------------------------------------------

    def set_record(self, job_id: str, record: dict, input_key: str) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self._key(job_id, "meta"), json.dumps(record, ensure_ascii=False), ex=JOB_TTL_S)
        pipe.set(f"askbatch:input:{input_key}", job_id, ex=JOB_TTL_S)
        pipe.execute()

    def record(self, job_id: str) -> dict:
        raw = self.redis.get(self._key(job_id, "meta"))
        return json.loads(raw) if raw else {}

    def latest_job(self, input_key: str) -> str | None:
        return self.redis.get(f"askbatch:input:{input_key}")

    def job_ids(self) -> list[str]:
        found = self.redis.scan_iter(match=self._key("*", "spec"), count=1000)
        return sorted(key.split(":")[1] for key in found)

    def missing(self, job_id: str, total: int) -> list[int]:
        have = {int(i) for i in self.redis.hkeys(self._key(job_id, "results"))}
        return [i for i in range(total) if i not in have]

    def drop(self, job_id: str, statuses: Iterable[str], indices: Iterable[int]) -> int:
        wanted = "," + ",".join(statuses) + ","
        keys = [self._key(job_id, p) for p in ("results", "stats", "tallies")]
        return sum(self._drop(keys=keys, args=[wanted, *chunk]) for chunk in chunks(list(indices)))

    def mark_unstarted(self, job_id: str, indices: Iterable[int], status: str, reason: str) -> int:
        results, stats = self._key(job_id, "results"), self._key(job_id, "stats")
        marked = 0
        for chunk in chunks(list(indices)):
            claims = [self._key(job_id, f"claim:{i}") for i in chunk]
            args: list = []
            for i in chunk:
                result = Result(index=i, status=status, error=reason)
                args += [i, result.stored()]
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
