"""Per-row results, stored the moment they are known: the protocol by role and its two backends.

`base.py` is the interface (one protocol per role), `redis.py` the distributed backend,
`sqlite.py` the embedded one; each backend keeps its limits' and Batch route's parts beside it.
"""

from worker.store.base import (
    JOB_TTL_S,
    Batches,
    Claims,
    JobControl,
    Jobs,
    Ledger,
    Pacing,
    Progress,
    Results,
    RowStart,
    Spending,
    Store,
    Tallies,
)
from worker.store.redis import REDIS_RETRY, RedisStore
from worker.store.sqlite import LocalStore

__all__ = [
    "JOB_TTL_S",
    "REDIS_RETRY",
    "Batches",
    "Claims",
    "JobControl",
    "Jobs",
    "Ledger",
    "LocalStore",
    "Pacing",
    "Progress",
    "RedisStore",
    "Results",
    "RowStart",
    "Spending",
    "Store",
    "Tallies",
]
