"""The Redis store's part for the job's limits: the spending ledger (its scripts are `lua/`
reserve and settle), the rate budget's buckets and the processes' pace reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from worker.limits.rate.redis import RedisBucket
from worker.store.base import JOB_TTL_S, Spending


class RedisLimits:
    """The `Ledger` and `Pacing` roles, mixed into RedisStore, whose client, keys and
    scripts it uses."""

    redis: redis.Redis
    _key: Callable[[str, str], str]
    _reserve: Any  # lua/reserve.lua and lua/settle.lua, registered by RedisStore
    _settle: Any

    def reserve(self, job_id: str, index: int, amount: int, cap: int) -> bool:
        keys = [self._key(job_id, "stats"), self._key(job_id, "holds")]
        return bool(self._reserve(keys=keys, args=[amount, cap, index, JOB_TTL_S]))

    def settle(self, job_id: str, index: int, spent: int) -> None:
        keys = [self._key(job_id, "stats"), self._key(job_id, "holds")]
        self._settle(keys=keys, args=[index, spent])

    def spending(self, job_id: str) -> Spending:
        """Spent and held, as far as the cap has counted."""
        spent, held = self.redis.hmget(self._key(job_id, "stats"), ["spent_nusd", "held_nusd"])
        return Spending(int(spent or 0), int(held or 0))

    def bucket(self, job_id: str, model: str) -> RedisBucket:
        """The job's rate budget for `model`, shared by every worker of the job."""
        return RedisBucket(self.redis, self._key(job_id, f"budget:{model}"))

    def pace(self, job_id: str, proc: str, report: dict | None, within_s: float) -> list[dict]:
        key = self._key(job_id, "pace")
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        if report is not None:
            pipe.hset(key, proc, json.dumps({**report, "at": now}))
            pipe.expire(key, JOB_TTL_S)
        pipe.hgetall(key)
        reports = [json.loads(v) for v in pipe.execute()[-1].values()]
        return [r for r in reports if now - r.get("at", 0) <= within_s]
