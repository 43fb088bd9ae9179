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

Why not `limits` or `pyrate-limiter`: settling needs tokens given back and the rate lowered on
a live shared budget; their strategies can only add hits, and their moving windows keep one
Redis list entry per token (600,000 entries for a 600k TPM budget).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker import tokens
from worker.errors import ConfigError
from worker.retry import RowTimeout, retry_after

HORIZON_S = 0.5  # bookings are made at most this far ahead
RETRY_MAX_S = 1.0  # a refused booking asks again within this (settlements free tokens)
BURST_SHARE = 0.01  # of the limit, may go at once
SLOWDOWN = 0.7  # the rate after a 429, as a share of the rate before it
MIN_FACTOR = 0.1
RECOVER_PER_S = 0.02  # of the limit, regained each second without a 429
LOW_WATER = 0.05  # of the server's limit: below this remaining, pace what is left
PAUSE_READ_S = 1.0  # without limits of our own, how often the shared pause is looked up

REQUESTS, TOKENS = 0, 1


# --- parsing "--rpm 600" / "--rpm 600,gpt-4o=100" ---------------------------------------


def parse_limits(text: str, what: str = "--rpm") -> dict[str, int]:
    """ "600" → {"": 600}; "600,gpt-4o=100" → {"": 600, "gpt-4o": 100}; "" → {}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        model, _, value = part.rpartition("=")
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise ConfigError(
                f"{what} {text!r}: give a number per minute, optionally per model, such as "
                "600 or 600,gpt-4o=100"
            )
        out[model.strip()] = number
    return out


def limit_for(text: str, model: str) -> int:
    """The limit that applies to `model` (its own, else the default); 0 for none."""
    limits = parse_limits(text)
    return limits.get(model, limits.get("", 0))


# --- the arithmetic -----------------------------------------------------------------------


def shape(limit: int, factor: float) -> tuple[float, float]:
    """(burst, rate per second) for a limit per minute and the current slow-down factor."""
    burst = max(1.0, float(int(limit * BURST_SHARE)))
    rate = max(limit - 2 * burst, limit / 2) / 60.0 * factor
    return burst, rate


def recovered(factor: float, since_s: float) -> float:
    return min(1.0, factor + RECOVER_PER_S * max(0.0, since_s))


@dataclass(slots=True)
class State:
    """One budget's state (the same fields the Redis hash holds); times in seconds."""

    tat: tuple[float, float] = (0.0, 0.0)  # theoretical arrival time: requests, tokens
    factor: float = 1.0  # the rate as a share of the limit, after 429s
    hit_at: float = 0.0  # when the factor was last lowered
    pause: float = 0.0  # no request starts before this
    # Answer tokens seen so far, by every worker: their mean is the answer expected.
    out_sum: float = 0.0
    out_n: int = 0

    def expected(self, seed: float) -> float:
        return self.out_sum / self.out_n if self.out_n else seed


def book(
    state: State,
    now: float,
    limits: tuple[int, int],
    need: tuple[float, float],
    horizon: float,
    seed: float = 0.0,
) -> tuple[float, float]:
    """Book a request of `need` = (requests, prompt tokens): the tokens booked are the prompt
    plus the answer expected (the mean of the answers so far, else `seed`).

    Returns (start delay >= 0, tokens booked) with the state updated, or (-w, 0) when it cannot
    start within `horizon`: nothing is booked, try again in w."""
    costs = (need[REQUESTS], need[TOKENS] + state.expected(seed) if limits[TOKENS] else 0.0)
    factor = recovered(state.factor, now - state.hit_at)
    start = max(now, state.pause)
    shapes = []
    for i in (REQUESTS, TOKENS):
        if limits[i] <= 0:
            shapes.append(None)
            continue
        burst, rate = shape(limits[i], factor)
        tat = max(state.tat[i], now)
        # A request larger than the burst starts once the bucket is full.
        start = max(start, tat + (costs[i] - max(burst, costs[i])) / rate)
        shapes.append((tat, rate))
    wait = start - now
    if wait > horizon:
        return -(wait - horizon), 0.0
    tat = list(state.tat)
    for i, got in enumerate(shapes):
        if got is not None:
            tat[i] = max(got[0], start) + costs[i] / got[1]
    state.tat = (tat[0], tat[1])
    return wait, costs[TOKENS]


def settle(state: State, now: float, tpm: int, delta: float, output: int | None = None) -> None:
    """Give back (delta < 0) or pay for (delta > 0) tokens once the real usage is known, and
    learn the answer's length (`output` tokens)."""
    if output is not None:
        state.out_sum += output
        state.out_n += 1
    if tpm > 0 and delta and state.tat[TOKENS]:
        rate = shape(tpm, recovered(state.factor, now - state.hit_at))[1]
        state.tat = (state.tat[REQUESTS], state.tat[TOKENS] + delta / rate)


def slow(state: State, now: float, pause_s: float, limited: bool) -> None:
    """The server said slow down: pause every request for `pause_s`; after a 429
    (`limited`) also lower the rate, once for a run of 429s within a second."""
    state.pause = max(state.pause, now + pause_s)
    if limited and now - state.hit_at > 1.0:
        state.factor = max(MIN_FACTOR, recovered(state.factor, now - state.hit_at) * SLOWDOWN)
        state.hit_at = now


# --- where the state lives -----------------------------------------------------------------


class MemoryBucket:
    """The state in this process (embedded jobs)."""

    def __init__(self) -> None:
        self.state = State()
        self.lock = threading.Lock()

    def book(
        self, limits: tuple[int, int], need: tuple[float, float], horizon: float, seed: float = 0
    ) -> tuple[float, float]:
        with self.lock:
            return book(self.state, time.monotonic(), limits, need, horizon, seed)

    def settle(self, tpm: int, delta: float, output: int | None = None) -> None:
        with self.lock:
            settle(self.state, time.monotonic(), tpm, delta, output)

    def slow(self, pause_s: float, limited: bool) -> None:
        with self.lock:
            slow(self.state, time.monotonic(), pause_s, limited)

    def pause_left(self) -> float:
        with self.lock:
            return self.state.pause - time.monotonic()


# The same arithmetic as book/settle/slow above, on the Redis server's clock (milliseconds
# there, seconds in the replies). Keep the two in step; tests run both on the same cases.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'tat_r', 'tat_t', 'factor', 'hit_at', 'pause', 'out_sum',
                    'out_n')
local tat = {tonumber(h[1]) or 0, tonumber(h[2]) or 0}
local factor = tonumber(h[3]) or 1
local hit_at = tonumber(h[4]) or 0
local pause = tonumber(h[5]) or 0
local out_sum, out_n = tonumber(h[6]) or 0, tonumber(h[7]) or 0
local function recovered()
  return math.min(1, factor + RECOVER * math.max(0, now - hit_at))
end
local function shape(limit, f)
  local burst = math.max(1, math.floor(limit * BURST))
  return burst, math.max(limit - 2 * burst, limit / 2) / 60 * f
end
"""
_BOOK_LUA = (
    _PRELUDE
    + """
local limits = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local costs = {tonumber(ARGV[2]), 0}
if limits[2] > 0 then
  local expected = tonumber(ARGV[6])
  if out_n > 0 then expected = out_sum / out_n end
  costs[2] = tonumber(ARGV[4]) + expected
end
local horizon = tonumber(ARGV[5])
local f = recovered()
local start = math.max(now, pause)
local rates = {}
for i = 1, 2 do
  if limits[i] > 0 then
    local burst, rate = shape(limits[i], f)
    tat[i] = math.max(tat[i], now)
    start = math.max(start, tat[i] + (costs[i] - math.max(burst, costs[i])) / rate)
    rates[i] = rate
  end
end
local wait = start - now
if wait > horizon then return {tostring(-(wait - horizon)), '0'} end
local fields = {'tat_r', 'tat_t'}
for i = 1, 2 do
  if rates[i] then
    redis.call('HSET', KEYS[1], fields[i], math.max(tat[i], start) + costs[i] / rates[i])
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
return {tostring(wait), tostring(costs[2])}
"""
)
_SETTLE_LUA = (
    _PRELUDE
    + """
local tpm, delta, output = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if output >= 0 then
  redis.call('HSET', KEYS[1], 'out_sum', out_sum + output, 'out_n', out_n + 1)
end
if tpm > 0 and delta ~= 0 and tat[2] ~= 0 then
  local burst, rate = shape(tpm, recovered())
  redis.call('HSET', KEYS[1], 'tat_t', tat[2] + delta / rate)
end
return 1
"""
)
_SLOW_LUA = (
    _PRELUDE
    + """
local pause_s, limited = tonumber(ARGV[1]), ARGV[2] == '1'
redis.call('HSET', KEYS[1], 'pause', math.max(pause, now + pause_s))
if limited and now - hit_at > 1 then
  redis.call('HSET', KEYS[1], 'factor', math.max(MIN_FACTOR, recovered() * SLOWDOWN),
             'hit_at', now)
end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""
)
_PAUSE_LUA = _PRELUDE + "return tostring(pause - now)"


def _lua(source: str) -> str:
    constants = {
        "RECOVER": RECOVER_PER_S,
        "BURST": BURST_SHARE,
        "MIN_FACTOR": MIN_FACTOR,
        "SLOWDOWN": SLOWDOWN,
    }
    names = r"\b(RECOVER|BURST|MIN_FACTOR|SLOWDOWN)\b"
    return re.sub(names, lambda m: repr(constants[m[1]]), source)


class RedisBucket:
    """The state in one Redis hash (distributed jobs): every worker books from it."""

    def __init__(self, client: Any, key: str) -> None:
        self.key = key
        self._book = client.register_script(_lua(_BOOK_LUA))
        self._settle = client.register_script(_lua(_SETTLE_LUA))
        self._slow = client.register_script(_lua(_SLOW_LUA))
        self._pause = client.register_script(_lua(_PAUSE_LUA))

    def book(
        self, limits: tuple[int, int], need: tuple[float, float], horizon: float, seed: float = 0
    ) -> tuple[float, float]:
        args = [limits[0], need[0], limits[1], need[1], horizon, seed]
        wait, booked = self._book(keys=[self.key], args=args)
        return float(wait), float(booked)

    def settle(self, tpm: int, delta: float, output: int | None = None) -> None:
        self._settle(keys=[self.key], args=[tpm, delta, -1 if output is None else output])

    def slow(self, pause_s: float, limited: bool) -> None:
        self._slow(keys=[self.key], args=[pause_s, int(limited)])

    def pause_left(self) -> float:
        return float(self._pause(keys=[self.key]))


# --- what the server says ------------------------------------------------------------------

_seen = threading.local()


def remember_headers(response: Any) -> None:
    """httpx response hook: keep the last response's headers of this thread (the SDK calls
    are synchronous, so the thread that sent a request reads them right after)."""
    _seen.headers = response.headers


def _last_headers() -> Mapping[str, str] | None:
    headers = getattr(_seen, "headers", None)
    _seen.headers = None
    return headers


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration_s(text: str) -> float | None:
    """OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s"; or plain seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNITS[u] for n, u in parts) if parts else None


def low_remaining_pause(headers: Mapping[str, str]) -> float:
    """Seconds to hold the next request when the server says little is left, else 0: what
    remains is spread evenly over the time until it resets."""
    pause = 0.0
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        limit = headers.get(f"x-ratelimit-limit-{kind}")
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        if remaining is None or limit is None or reset is None:
            continue
        try:
            left, whole = int(remaining), int(limit)
        except ValueError:
            continue
        reset_s = duration_s(reset)
        if reset_s is None or left > max(1, whole * LOW_WATER):
            continue
        pause = max(pause, reset_s / (left + 1))
    return pause


# --- a job's budget -------------------------------------------------------------------------


@dataclass(slots=True)
class Booking:
    tokens: float  # reserved: the prompt counted locally plus the answer expected


class Budget:
    """The budget of one job and model, as one process sees it."""

    def __init__(self, bucket: Any, rpm: int, tpm: int, model: str, expect_output: int) -> None:
        self.bucket = bucket
        self.rpm = rpm
        self.tpm = tpm
        self.model = model
        self.limited = bool(rpm or tpm)
        # The answer expected: the user's assumption until answers come, then their mean
        # (kept in the bucket, so that every worker learns from the first answers).
        self.seed = expect_output
        self._pause_until = 0.0
        self._pause_read = 0.0

    def _prompt(self, request: Mapping[str, Any]) -> int:
        return tokens.prompt_tokens(request_texts(request), self.model)

    def acquire(self, request: Mapping[str, Any], deadline: float) -> Booking:
        """Wait until the request may be sent; never past `deadline` (monotonic)."""
        if not self.limited:
            self._wait_pause(deadline)
            return Booking(0.0)
        prompt = self._prompt(request) if self.tpm else 0
        while True:
            limits = (self.rpm, self.tpm)
            wait, booked = self.bucket.book(limits, (1.0, prompt), HORIZON_S, self.seed)
            if wait >= 0:
                _sleep_until(time.monotonic() + wait, deadline)
                return Booking(booked)
            # Not within the horizon: come back when it will be, or sooner when tokens may be
            # given back meanwhile (spread a little, so that threads told the same time do not
            # all ask at once).
            again = min(-wait, RETRY_MAX_S) + random.uniform(0, HORIZON_S / 4)
            if time.monotonic() + again >= deadline:
                raise RowTimeout  # the row's deadline comes before its place in the budget
            _sleep_until(time.monotonic() + again, deadline)

    def done(self, booking: Booking, result: Any) -> None:
        """Settle the booking with the usage the server reported; heed its headers."""
        usage = _field(result, "usage")
        total = _field(usage, "total_tokens")
        if isinstance(total, int) and self.tpm and booking.tokens:
            out = _field(usage, "completion_tokens")
            if out is None:
                out = _field(usage, "output_tokens")
            output = out if isinstance(out, int) else None
            self.bucket.settle(self.tpm, total - booking.tokens, output)
        self._heed(_last_headers())

    def failed(self, booking: Booking, exc: BaseException) -> None:
        """The request failed: its tokens were not used; a 429 or 503 slows everyone."""
        _last_headers()
        if self.tpm and booking.tokens:
            self.bucket.settle(self.tpm, -booking.tokens)
        response = getattr(exc, "response", None)
        status = getattr(exc, "status_code", None)
        if status in (429, 503) and response is not None:
            asked = retry_after(exc)
            self.bucket.slow(asked if asked is not None else 1.0, limited=status == 429)
            self._pause_until = 0.0
            self._pause_read = 0.0
        elif response is not None:
            self._heed(response.headers)

    def _heed(self, headers: Mapping[str, str] | None) -> None:
        if headers is None:
            return
        pause = low_remaining_pause(headers)
        if pause > 0:
            self.bucket.slow(pause, limited=False)
            self._pause_read = 0.0

    def _wait_pause(self, deadline: float) -> None:
        """Without limits of our own, only the shared pause (429s, headers) applies; it is
        looked up once a second, not on every request."""
        now = time.monotonic()
        if now - self._pause_read > PAUSE_READ_S:
            self._pause_read = now
            self._pause_until = now + self.bucket.pause_left()
        if self._pause_until > now:
            _sleep_until(self._pause_until, deadline)


def _sleep_until(at: float, deadline: float) -> None:
    delay = min(at, deadline) - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _field(value: Any, name: str) -> Any:
    """A field of an SDK object or of the plain JSON a provider read (responses)."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def request_texts(request: Mapping[str, Any]) -> list[str]:
    """The text a request sends (instructions, messages, input items, tool outputs), for a
    local token count. History a server keeps (a conversation, a thread) is not here; the
    settlement after the call makes up for it."""
    texts: list[str] = []
    for name in ("instructions", "messages", "input", "additional_messages", "tool_outputs"):
        _collect(request.get(name), texts)
    thread = request.get("thread")
    if isinstance(thread, Mapping):
        _collect(thread.get("messages"), texts)
    return texts


def _collect(value: Any, texts: list[str]) -> None:
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, Mapping):
        for key in ("content", "output", "text", "arguments"):
            _collect(value.get(key), texts)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, texts)


# --- one budget per job and model in each process --------------------------------------------

_budgets: dict[tuple[int, str, str], Budget] = {}
_budgets_lock = threading.Lock()


def budget_for(store: Any, spec: Any, model: str) -> Budget:
    """The process's budget for a job's model: in the store's Redis for a distributed job,
    in memory for an embedded one."""
    key = (id(store), spec.job_id, model)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            if len(_budgets) > 256:  # a long-lived worker sees many jobs
                _budgets.clear()
            client = getattr(store, "redis", None)
            bucket = (
                RedisBucket(client, f"askbatch:{spec.job_id}:budget:{model}")
                if client is not None
                else MemoryBucket()
            )
            budget = _budgets[key] = Budget(
                bucket,
                limit_for(getattr(spec, "rpm", ""), model),
                limit_for(getattr(spec, "tpm", ""), model),
                model,
                expected_answer(spec),
            )
        return budget


def expected_answer(spec: Any) -> int:
    """Answer tokens to book before any answer is seen: the profile's max_output_tokens,
    else the high end of --answer-tokens."""
    cap = (getattr(spec, "profile", None) or {}).get("max_output_tokens")
    answer = getattr(spec, "answer_tokens", 0) or 2000
    return min(answer, cap) if isinstance(cap, int) and cap > 0 else answer
