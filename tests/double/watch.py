"""Contract checking of the double's /v1 traffic: its requests, JSON answers and SSE events."""

from __future__ import annotations

import contextvars
import json
from typing import Any

from aiohttp import web

MAX_ERRORS = 500  # a long run with a systematic mismatch must not grow without bound

_CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "double_contract_exchange", default=None
)


class Exchange:
    """One /v1 request under contract checking (the api wrapper sets it for its task)."""

    def __init__(self, double: Any, request: web.Request) -> None:
        from . import contract  # the SDK's types load only when checking is on

        self.contract = contract
        self.double = double
        self.method = request.method
        self.path = request.path
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        self.endpoint = contract.ROUTES.get((request.method, template))
        if self.endpoint is None:
            self.record("route", [f"{request.method} {template} is not in the contract table"])

    def record(self, check: str, messages: list[str]) -> None:
        if not messages:
            return
        errors = self.double.contract_errors  # looked up now: a reset replaces the list
        if len(errors) < MAX_ERRORS:
            errors.append(
                {"method": self.method, "path": self.path, "check": check, "messages": messages}
            )

    async def check_request(self, request: web.Request) -> None:
        if self.endpoint is None:
            return
        spec = self.contract.ENDPOINTS[self.endpoint]
        if spec.form_files:  # a multipart upload, maybe 200 MB: its handler checks the form
            return
        if spec.query:
            body: object = dict(request.query)
        elif request.body_exists:
            try:
                body = json.loads(await request.read())
            except ValueError:
                self.record("request", [f"{self.endpoint}: the body is not JSON"])
                return
        else:
            body = {}
        self.record("request", self.contract.check_request(self.endpoint, body))

    def check_body(self, status: int, body: object) -> None:
        if status >= 400:
            check, kind = "error", "error"
        elif self.endpoint is None:
            return
        else:
            check, kind = "response", self.contract.ENDPOINTS[self.endpoint].response
        self.record(check, self.contract.check_response(kind, body))

    def check_event(self, event: str | None, data: object) -> None:
        if self.endpoint is None:
            return
        kind = self.contract.ENDPOINTS[self.endpoint].stream
        if kind is None:
            self.record("event", [f"{self.endpoint}: the endpoint does not stream"])
            return
        if kind == "assistant.event":
            data = {"event": event, "data": data}
        elif event is not None:
            self.record("event", [f"{kind}: unexpected SSE event name {event!r}"])
        self.record("event", self.contract.check_response(kind, data))


def begin(double: Any, request: web.Request) -> contextvars.Token:
    return _CURRENT.set(Exchange(double, request))


def end(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


def current() -> Exchange | None:
    return _CURRENT.get()


class CheckedStream(web.StreamResponse):
    """An SSE response that checks each event's data as it is written."""

    def __init__(self, exchange: Exchange, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exchange = exchange
        self._pending = b""

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.feed(bytes(data))
        await super().write(data)

    def feed(self, data: bytes) -> None:
        """Check every event this chunk of the stream completes."""
        self._pending += data
        *blocks, self._pending = self._pending.split(b"\n\n")
        for block in blocks:
            self._check_block(block.decode())

    def _check_block(self, block: str) -> None:
        event, lines = None, []
        for line in block.splitlines():
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                lines.append(value)
        payload = "\n".join(lines)
        if not lines or payload == "[DONE]":
            return
        try:
            data = json.loads(payload)
        except ValueError:
            self._exchange.record("event", [f"event {event!r}: data is not JSON"])
            return
        self._exchange.check_event(event, data)
