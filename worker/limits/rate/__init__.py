"""One rate budget per job and model (--rpm, --tpm), shared by every thread, worker and process.

The budget is a GCRA (generic cell rate algorithm: a token bucket kept as one "theoretical
arrival time" per limit). Every API request books its place before it is sent: one request,
and for a run its tokens (the prompt counted locally plus the answer expected), and waits
exactly until its place comes. After the call the booking is settled with the usage the server
reported, so an estimate too high is given back and one too low is paid for by later requests.

Distributed jobs keep the state in Redis and book with one Lua script (on the server's clock,
so workers on other machines agree); embedded jobs keep the same arithmetic in memory.

The limit is paced, not granted in bursts: at most `burst` (1 % of the limit) at once, then
(limit - 2 x burst) per minute, so that any 60-second window - the way servers count - holds
at most the limit even when requests arrive a little late. Bookings are made at most
HORIZON_S ahead, so a thread never commits to a place long before it can use it.

The server is listened to: a 429 (or 503) pauses the whole budget for its Retry-After and
lowers its rate by 30 % (at most once a second), which then recovers by 2 % of the limit per
second while no 429 comes; `x-ratelimit-remaining-*` headers running low pace the next
requests so that what remains lasts until `x-ratelimit-reset-*`.

Limits not given are learned: the first answer's x-ratelimit-limit-* headers set them (paced
at 95 %, 50 ms worth at once, for servers that enforce them per second); until that answer
one probe goes alone, and a server that sends none is not paced. flight.py sets how many rows
are in flight from the limit and the latency, for every process of the job.

Why not `limits` or `pyrate-limiter`: settling needs tokens given back and the rate lowered on
a live shared budget; their strategies can only add hits, and their moving windows keep one
Redis list entry per token (600,000 entries for a 600k TPM budget).

The modules: `gcra.py` the arithmetic, `memory.py` and `redis.py` where its state lives (one
backend each), `headers.py` what the server's headers say, `budget.py` a job's budget,
`flight.py` the rows in flight.
"""

from worker.limits.rate.budget import (
    HORIZON_S,
    Booking,
    Budget,
    budget_for,
    expected_answer,
    limit_for,
    parse_limits,
    request_texts,
)
from worker.limits.rate.gcra import State, book, recovered, settle, shape, slow
from worker.limits.rate.headers import duration_s, low_remaining_pause, remember_headers
from worker.limits.rate.memory import MemoryBucket
from worker.limits.rate.redis import RedisBucket

__all__ = [
    "HORIZON_S",
    "Booking",
    "Budget",
    "MemoryBucket",
    "RedisBucket",
    "State",
    "book",
    "budget_for",
    "duration_s",
    "expected_answer",
    "limit_for",
    "low_remaining_pause",
    "parse_limits",
    "recovered",
    "remember_headers",
    "request_texts",
    "settle",
    "shape",
    "slow",
]
