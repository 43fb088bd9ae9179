"""The Redis store's part for the Batch API route (worker/batch): the job's rows, kept so that
any worker can build a later round's lines, its batch records, and the lease on its looks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import redis

from worker.store.base import JOB_TTL_S, chunks


class RedisBatches:
    """The `Batches` role, mixed into RedisStore, whose client and keys it uses."""

    redis: redis.Redis
    _key: Callable[[str, str], str]

    def rows_put(self, job_id: str, rows: list[dict]) -> None:
        key = self._key(job_id, "rows")
        pipe = self.redis.pipeline(transaction=False)
        for chunk in chunks(rows):
            pipe.hset(key, mapping={r["index"]: json.dumps(r, ensure_ascii=False) for r in chunk})
        pipe.expire(key, JOB_TTL_S)
        pipe.execute()

    def rows_get(self, job_id: str, indices: Iterable[int]) -> dict[int, dict]:
        key = self._key(job_id, "rows")
        found: dict[int, dict] = {}
        for chunk in chunks(list(indices)):
            raws = self.redis.hmget(key, [str(i) for i in chunk])
            found.update({i: json.loads(r) for i, r in zip(chunk, raws, strict=True) if r})
        return found

    def batch_put(self, job_id: str, key: str, record: dict) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self._key(job_id, "batches"), key, json.dumps(record))
        pipe.expire(self._key(job_id, "batches"), JOB_TTL_S)
        pipe.execute()

    def batch_records(self, job_id: str) -> dict[str, dict]:
        raw = self.redis.hgetall(self._key(job_id, "batches"))
        return {key: json.loads(value) for key, value in raw.items()}

    def look_lease(self, job_id: str, token: str, ttl_s: float) -> bool:
        key = self._key(job_id, "look")
        if self.redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
            return True
        return self.redis.get(key) == token

    def look_release(self, job_id: str, token: str) -> None:
        key = self._key(job_id, "look")
        if self.redis.get(key) == token:  # a lapsed lease may be someone else's by now
            self.redis.delete(key)
