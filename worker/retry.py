"""Retrying one API call: 429, 5xx, connection errors and timeouts; nothing else.

The SDK's own retries are switched off (max_retries=0) so that askbatch counts every attempt
for the `attempts` column and keeps each row inside its deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import httpx2
import openai

from worker.errors import Halted, RowTimeout, TooLate
from worker.fatal import is_quota, one_line

T = TypeVar("T")


class Pacer(Protocol):
    """What paces a row's requests, such as the job's rate budget (worker/limits/rate): a
    place booked before each attempt, and settled with what came of it."""

    def acquire(self, request: Mapping[str, Any], deadline: float) -> Any: ...
    def done(self, booking: Any, result: Any) -> None: ...
    def failed(self, booking: Any, exc: BaseException) -> None: ...


def is_retryable(exc: BaseException) -> bool:
    # Errors raised while reading a stream come from the HTTP library, not the SDK.
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return True
    if isinstance(exc, openai.APIStatusError):
        # The server's own word wins, as in the SDK's retry loop (which askbatch switches off).
        should = exc.response.headers.get("x-should-retry")
        if should in ("true", "false"):
            return should == "true"
        if is_quota(exc):  # an empty account stays empty however long we wait
            return False
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, then retry-after), if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def short_error(exc: BaseException) -> str:
    """One line for the `error` column: the status and the server's message, no request dump
    (a server's multi-line message, a traceback say, is folded into one shortened line)."""
    if isinstance(exc, openai.APIStatusError):
        message = exc.message
        body = exc.body
        if isinstance(body, dict):
            inner = body.get("error")
            message = (
                body.get("message")
                or (inner.get("message") if isinstance(inner, dict) else inner)
                # FastAPI-built servers (OGX, vLLM) answer {"detail": ...}
                or (str(body["detail"]) if body.get("detail") else None)
                or message
            )
        return one_line(f"HTTP {exc.status_code}: {message}")
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return one_line(f"connection error: {exc.__cause__ or exc}")
    return one_line(f"{type(exc).__name__}: {exc}")


class Retrier:
    """Runs API calls for one row, retrying with exponential backoff and full jitter.

    A server's Retry-After wins over our own backoff. `retries` accumulates over every call
    of the row, so `attempts = 1 + retries` is what the row cost in requests beyond the minimum.
    """

    def __init__(
        self,
        max_attempts: int,
        deadline: float,
        request_timeout: float,
        base: float = 0.5,
        cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        budget: Pacer | None = None,
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.max_attempts = max_attempts
        # True once the job is halted (worker/fatal): no further request of the row is sent.
        self.halted = halted
        # The job's shared rate budget (worker/limits/rate): every attempt books its place in it.
        self.budget = budget
        self.deadline = deadline
        self.request_timeout = request_timeout
        self.base = base
        self.cap = cap
        self.retries = 0
        self._sleep = sleep
        # A provider whose runs can be cancelled hands over a function that cancels the run
        # in flight; the runner sets this so that cancelling the job calls it (worker/cancel).
        self.on_run: Callable[[Callable[[], None]], None] = lambda cancel: None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self) -> float:
        """The timeout for the next request: never past the row's deadline."""
        left = self.remaining()
        if left <= 0:
            raise RowTimeout
        return min(self.request_timeout, left)

    def delay(self, attempt: int, exc: BaseException) -> float:
        asked = retry_after(exc)
        if asked is not None:
            return asked + random.uniform(0, min(1.0, self.base))
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 1
        budget = self.budget
        while True:
            if self.halted():
                raise Halted
            booking = budget.acquire(kwargs, self.deadline) if budget is not None else None
            try:
                result = fn(*args, timeout=self.timeout(), **kwargs)
            except Exception as exc:
                if booking is not None:
                    budget.failed(booking, exc)
                if not is_retryable(exc) or attempt >= self.max_attempts:
                    raise
                wait = self.delay(attempt, exc)
                if wait >= self.remaining():
                    if isinstance(exc, openai.APITimeoutError):
                        raise RowTimeout from exc
                    if (asked := retry_after(exc)) is not None:
                        raise TooLate(
                            f"{short_error(exc)} (the server asked to wait {asked:g}s, more "
                            f"than the {max(self.remaining(), 0):.0f}s the row has left)"
                        ) from exc
                    raise
                self._sleep(wait)
                self.retries += 1
                attempt += 1
            else:
                if booking is not None:
                    budget.done(booking, result)
                return result
