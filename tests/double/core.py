"""Shared machinery of the double: errors, fault admission, the handler wrapper, parsing."""

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps

from aiohttp import web

from . import watch
from .faults import FaultCounter, Markers
from .ratelimit import SlidingWindow
from .state import Config, Stats, Store


class ApiError(Exception):
    """An OpenAI-style JSON error; handlers raise it, the wrapper renders it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = headers

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers)


class ConnectionReset(Exception):
    """Raised to drop the connection without any HTTP response."""


def rate_limited(
    seconds: float, headers: dict[str, str] | None = None, message: str = ""
) -> ApiError:
    retry = {
        "retry-after": str(math.ceil(seconds)),
        "retry-after-ms": str(round(seconds * 1000)),
    }
    return ApiError(
        429,
        message or "Rate limit reached",
        type="requests",
        code="rate_limit_exceeded",
        headers={**(headers or {}), **retry},
    )


def server_error() -> ApiError:
    return ApiError(500, "The server had an error (injected).", type="server_error")


class Double:
    """The whole mutable state of one double server."""

    def __init__(self, config: Config | None = None, *, check_contract: bool = False) -> None:
        self.config = config or Config()
        # Check every /v1 request and answer against the SDK's types (see ``watch``).
        self.check_contract = check_contract
        self.contract_errors: list[dict] = []
        if check_contract:
            from . import contract

            contract.warm()  # load the SDK's types now, not inside the first request
        self.stats = Stats()
        self.store = Store()
        self.faults = FaultCounter()
        self.rng = random.Random(self.config.seed)
        self.limiter = SlidingWindow(self.config.rpm, self.config.tpm, self.config.rate_period)

    def configure(self, options: dict) -> None:
        self.config.update(options)
        if "seed" in options:
            self.rng.seed(self.config.seed)
        self.limiter.rpm = self.config.rpm
        self.limiter.tpm = self.config.tpm
        self.limiter.period = self.config.rate_period

    def reset(self) -> None:
        in_flight = self.stats.in_flight  # requests still running will decrement it
        self.stats = Stats(in_flight=in_flight)
        self.contract_errors = []
        self.store.clear()
        self.faults.clear()
        self.rng.seed(self.config.seed)
        self.limiter.clear()

    def admit(
        self, kind: str, question: str, markers: Markers, tokens: int, *, run_creating: bool = True
    ) -> dict[str, str]:
        """Apply marker faults, random faults and rpm/tpm limits to a request.

        Raises ApiError or ConnectionReset for a rejected request; returns the
        rate-limit headers for an accepted one. Runs before any state changes, so a
        retried request sees the same thread or conversation.
        """
        if markers.bad_request:
            raise ApiError(400, "Invalid request (injected).")
        if markers.no_retry:
            raise ApiError(
                503,
                "The engine is currently overloaded (injected).",
                type="server_error",
                headers={"x-should-retry": "false"},
            )
        fault = self.faults.transport_fault(question, kind, markers)
        if fault == "429":
            raise rate_limited(markers.retry_after)
        if fault == "500":
            raise server_error()
        if fault == "reset":
            raise ConnectionReset
        if not run_creating:
            return {}
        config = self.config
        # One draw per request keeps the sequence independent of which rates are set.
        draw = self.rng.random()
        if draw < config.rate_429:
            raise rate_limited(0)
        if draw < config.rate_429 + config.rate_500:
            raise server_error()
        limiter = self.limiter
        if not limiter.active:
            return {}
        now = time.monotonic()
        wait = limiter.admit(now, tokens)
        headers = limiter.headers(now)
        if wait is not None:
            raise rate_limited(wait, headers)
        return headers

    def delay_s(self, markers: Markers) -> float:
        """Seconds until a run-creating request reaches its answer."""
        return self.config.latency + markers.sleep

    async def delay(self, markers: Markers) -> None:
        # [[never]] waits until the client goes away (the handler is then cancelled).
        seconds = 3600.0 if markers.outcome == "never" else self.delay_s(markers)
        if seconds > 0:
            await asyncio.sleep(seconds)


DOUBLE = web.AppKey("double", Double)
Handler = Callable[[Double, web.Request], Awaitable[web.StreamResponse]]


def api(kind: str) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap an /v1 handler: count it by kind, track concurrency, check auth, render errors;
    with contract checking on, check the request and (through ``json_response``,
    ``sse_response`` and the error branch) everything answered."""

    def decorate(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            double = request.app[DOUBLE]
            stats = double.stats
            stats.requests[kind] += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            checking = watch.begin(double, request) if double.check_contract else None
            try:
                if not request.headers.get("Authorization", "").startswith("Bearer "):
                    raise ApiError(
                        401,
                        "You didn't provide an API key.",
                        code="invalid_api_key",
                    )
                from . import accounts  # it builds on this module

                await accounts.check(double, kind, request)
                if checking is not None:
                    await watch.current().check_request(request)
                return _with_limits(double, await handler(double, request))
            except ApiError as error:
                double.stats.errors[error.status] += 1
                if checking is not None:
                    watch.current().check_body(error.status, error.body)
                if error.status == 429:
                    double.stats.status_429 += 1
                elif error.status == 500:
                    double.stats.status_500 += 1
                elif error.status == 400:
                    double.stats.status_400 += 1
                return _with_limits(double, error.response())
            except ConnectionReset:
                double.stats.resets += 1
                if request.transport is not None:
                    request.transport.abort()
                # aiohttp treats a cancelled handler as a client disconnect: no
                # response is written and nothing is logged.
                raise asyncio.CancelledError from None
            finally:
                # Look the stats up again: a reset may have replaced them meanwhile.
                double.stats.in_flight -= 1
                if checking is not None:
                    watch.end(checking)

        return wrapped

    return decorate


def _with_limits(double: Double, response: web.StreamResponse) -> web.StreamResponse:
    """OpenAI sends its x-ratelimit-* headers on every answer: so does the double, with a
    limit set (a stream already sent has them from its handler)."""
    if double.limiter.active and not response.prepared:
        for name, value in double.limiter.headers(time.monotonic()).items():
            response.headers.setdefault(name, value)
    return response


async def json_body(request: web.Request) -> dict:
    if not request.body_exists:
        return {}
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def content_text(content: object) -> str:
    """Text of a message content: a string, or a list of parts with a "text" string."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def dialogue(instructions: object, items: Sequence[tuple[str, ...]]) -> tuple[str, int, list[str]]:
    """(question, turn, prompt messages) for a history of (role, text, ...) items.

    The question is the last user message; the turn counts user messages. Every item's
    text joins the prompt: messages, function call arguments and tool outputs alike.
    """
    users = [item[1] for item in items if item[0] == "user"]
    if not users:
        raise ApiError(400, "The input must contain at least one user message.")
    prompt = [instructions] if isinstance(instructions, str) and instructions else []
    prompt.extend(item[1] for item in items)
    return users[-1], len(users), prompt


def list_page(objects: list[dict], start: int, limit: int) -> dict:
    """The published list envelope of ``limit`` objects from ``start`` (cursor pages)."""
    page = objects[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(objects) > start + limit,
    }


def json_response(
    obj: dict, headers: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    exchange = watch.current()  # set only for a /v1 request under contract checking
    if exchange is not None:
        exchange.check_body(status, obj)
    return web.Response(
        body=json.dumps(obj).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def sse_response(headers: dict[str, str] | None = None) -> web.StreamResponse:
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
    exchange = watch.current()
    if exchange is not None:  # checks each event as it is written
        return watch.CheckedStream(exchange, headers=headers)
    return web.StreamResponse(headers=headers)
