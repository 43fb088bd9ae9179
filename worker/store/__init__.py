"""Per-row results, stored the moment they are known: the protocol and its two backends.

`base.py` is the interface, `redis.py` the distributed backend, `sqlite.py` the embedded one.
"""

from worker.store.base import JOB_TTL_S, Progress, RowStart, Store
from worker.store.redis import REDIS_RETRY, RedisStore
from worker.store.sqlite import LocalStore

__all__ = [
    "JOB_TTL_S",
    "REDIS_RETRY",
    "LocalStore",
    "Progress",
    "RedisStore",
    "RowStart",
    "Store",
]
