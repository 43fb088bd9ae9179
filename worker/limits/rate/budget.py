"""A job's rate budget for one model, as one process sees it: book before a request, settle after.

`budget_for` gives each job and model one `Budget` per process, over the bucket the job's store
gives it (`Buckets`): in Redis for a distributed job (redis.py), in memory for an embedded one
(memory.py). A `Bucket` is all a budget needs of where its state lives.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from worker import tokens
from worker.errors import ConfigError, RowTimeout
from worker.limits.rate import gcra
from worker.limits.rate.gcra import AUTO, LEARNED, PLAIN, UNSEEN
from worker.limits.rate.headers import last_headers, low_remaining_pause, server_limits
from worker.retry import retry_after

HORIZON_S = 0.5  # bookings are made at most this far ahead
RETRY_MAX_S = 1.0  # a refused booking asks again within this (settlements free tokens)
PAUSE_READ_S = 1.0  # without limits of our own, how often the shared pause is looked up


# --- "--rpm 600" / "--rpm 600,gpt-4o=100" ------------------------------------------------


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


def limit_for(text: str, model: str, unset: int = 0) -> int:
    """The limit that applies to `model` (its own, else the default); `unset` when none is
    given (0: none; AUTO: the one the server's headers say), 0 when it is given as 0."""
    limits = parse_limits(text)
    return limits.get(model, limits.get("", unset))


# --- a job's budget ---------------------------------------------------------------------


class Limits(NamedTuple):
    """Requests and tokens per minute (0: none)."""

    rpm: int
    tpm: int


class Bucket(Protocol):
    """Where a budget's state lives, and the steps taken on it (gcra.py's arithmetic, done
    atomically): memory.py in this process, redis.py shared by every worker."""

    view: gcra.View  # what the last step saw

    def book(
        self, limits: tuple[int, int], need: tuple[float, float], horizon: float, seed: float = 0
    ) -> tuple[float, float]: ...
    def learn(self, rpm: int, tpm: int) -> None: ...
    def probe_failed(self) -> None: ...
    def settle(self, tpm: int, delta: float, output: int | None = None) -> None: ...
    def slow(self, pause_s: float, limited: bool) -> None: ...
    def pause_left(self) -> float: ...


class Buckets(Protocol):
    """What gives a job's budgets their buckets: the store the job runs on (its `Pacing`)."""

    def bucket(self, job_id: str, model: str) -> Bucket: ...


@dataclass(slots=True)
class Booking:
    tokens: float  # reserved: the prompt counted locally plus the answer expected
    at: float = 0.0  # when the request went (monotonic)


class _Row(threading.local):
    """What the requests of the row on this thread cost: how many, and the seconds spent
    waiting for the budget (worker/limits/rate/flight.py reads it per row)."""

    requests = 0
    waited_s = 0.0


row_costs = _Row()


class Budget:
    """The budget of one job and model, as one process sees it.

    A limit is a number per minute, 0 for none, or AUTO: the one the server's x-ratelimit-*
    headers say, learned from the job's first answer (before it, one probe goes alone) and
    kept in the bucket so that every worker, even one that joins later, paces by it."""

    def __init__(self, bucket: Bucket, rpm: int, tpm: int, model: str, expect_output: int) -> None:
        self.bucket = bucket
        self.rpm = rpm
        self.tpm = tpm
        self.model = model
        self.learning = AUTO in (rpm, tpm)
        self.limited = bool(rpm or tpm)
        # The answer expected: the user's assumption until answers come, then their mean
        # (kept in the bucket, so that every worker learns from the first answers).
        self.seed = expect_output
        self._pause_until = 0.0
        self._pause_read = 0.0
        self._told: tuple[int, int] | None = None  # the limits this process last passed on
        # Measured here: seconds from sending a request to its answer, and tokens per request.
        self._lock = threading.Lock()
        self.latency_s = (0.0, 0)  # (sum, count) since the flight gate last took them
        self.tokens_per_request = 0.0
        # What the server counts beyond our local count of a request (its own tokenizer, the
        # chat format's tokens): booked on top, so that a limit enforced per second is not
        # overrun before the settlements come back.
        self.undercount = 0.0

    @property
    def view(self) -> gcra.View:
        return self.bucket.view

    def _counting(self) -> bool:
        """Whether the prompt's tokens are booked: a token limit given or learned."""
        return self.tpm > 0 or (self.tpm == AUTO and self.view.learned[1] > 0)

    def _prompt(self, request: Mapping[str, Any]) -> float:
        local = tokens.prompt_tokens(request_texts(request), self.model)
        return local + max(0.0, self.undercount)

    def acquire(self, request: Mapping[str, Any], deadline: float) -> Booking:
        """Wait until the request may be sent; never past `deadline` (monotonic)."""
        row_costs.requests += 1
        t0 = time.monotonic()
        booking = self._acquire(request, deadline)
        booking.at = time.monotonic()
        row_costs.waited_s += booking.at - t0
        return booking

    def _acquire(self, request: Mapping[str, Any], deadline: float) -> Booking:
        if not self.limited or (self.view.seen == PLAIN and self.rpm <= 0 and self.tpm <= 0):
            # No limit given, and none said by the server (or not to be learned).
            self._wait_pause(deadline)
            return Booking(0.0)
        prompt = self._prompt(request) if self._counting() else 0
        while True:
            limits = (self.rpm, self.tpm)
            wait, booked = self.bucket.book(limits, (1.0, prompt), HORIZON_S, self.seed)
            if wait >= 0:
                _sleep_until(time.monotonic() + wait, deadline)
                return Booking(booked)
            if not prompt and self._counting():  # a token limit was learned meanwhile
                prompt = self._prompt(request)
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
        self._measured(booking, total)
        if isinstance(total, int) and self.tpm and booking.tokens:
            out = _field(usage, "completion_tokens")
            if out is None:
                out = _field(usage, "output_tokens")
            output = out if isinstance(out, int) else None
            self.bucket.settle(self.tpm, total - booking.tokens, output)
            if output is not None:  # the answer's part of the booking was a guess; not this
                # booked already holds the undercount so far: step by a fifth of what is left
                self.undercount = max(0.0, self.undercount + 0.2 * (total - booking.tokens))
        headers = last_headers()
        if self.learning:
            self._learn(headers, answered=True)
        self._heed(headers)

    def _measured(self, booking: Booking, total: Any) -> None:
        if not booking.at:
            return
        with self._lock:
            spent, n = self.latency_s
            self.latency_s = (spent + time.monotonic() - booking.at, n + 1)
            if isinstance(total, int) and total > 0:
                mean = self.tokens_per_request
                self.tokens_per_request = total if not mean else 0.9 * mean + 0.1 * total

    def _learn(self, headers: Mapping[str, str] | None, answered: bool) -> None:
        """Pass on what an answer's headers say of the limits, when it is news here; an
        answer with no such header tells the bucket the server has none."""
        limits = server_limits(headers)
        if limits is not None:
            if limits != self._told or self.view.seen != LEARNED:
                self.bucket.learn(*limits)
                self._told = limits
        elif self.view.seen == UNSEEN:
            if answered:
                self.bucket.learn(0, 0)
            else:
                self.bucket.probe_failed()

    def failed(self, booking: Booking, exc: BaseException) -> None:
        """The request failed: its tokens were not used; a 429 or 503 slows everyone."""
        last_headers()
        self._measured(booking, None)
        if self.tpm and booking.tokens:
            self.bucket.settle(self.tpm, -booking.tokens)
        response = getattr(exc, "response", None)
        if self.learning:
            self._learn(getattr(response, "headers", None), answered=False)
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

    def limits(self) -> Limits:
        """The requests and tokens per minute in effect: given, else learned (0: none)."""
        learned = self.view.learned
        return Limits(
            learned[0] if self.rpm == AUTO else self.rpm,
            learned[1] if self.tpm == AUTO else self.tpm,
        )

    def allowed_rps(self) -> float | None:
        """Requests per second the limits in effect allow now (after 429s): None without
        any limit, 0.0 while the first answer, which says what it is, is awaited."""
        view = self.view
        rates = []
        pairs = zip((self.rpm, self.tpm), self.limits(), strict=True)
        for kind, (given, limit) in enumerate(pairs):
            if limit <= 0:
                continue
            rate = gcra.shape(limit, view.factor, learned=given == AUTO)[1]
            if kind == gcra.TOKENS:
                rate /= max(1.0, self.tokens_per_request or self.seed)
            rates.append(rate)
        if rates:
            return min(rates)
        if self.learning and view.seen == UNSEEN and self.rpm <= 0 and self.tpm <= 0:
            return 0.0
        return None

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


def budget_for(buckets: Buckets, spec: Any, model: str) -> Budget:
    """The process's budget for a job's model, over the bucket `buckets` (the job's store)
    gives it."""
    key = (id(buckets), spec.job_id, model)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            if len(_budgets) > 256:  # a long-lived worker sees many jobs
                _budgets.clear()
            # Limits not given are learned from the server's headers.
            budget = _budgets[key] = Budget(
                buckets.bucket(spec.job_id, model),
                limit_for(getattr(spec, "rpm", ""), model, AUTO),
                limit_for(getattr(spec, "tpm", ""), model, AUTO),
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
