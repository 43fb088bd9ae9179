"""What keeps `askbatch serve` safe by default: loopback unless `--host` says otherwise, and
then a token on every request; no request from another site's page; bodies size-limited.

The token (ASKBATCH_UI_TOKEN) is accepted as `Authorization: Bearer TOKEN`, or once in the
address (`?token=TOKEN`, which sets an HTTP-only cookie and sends the browser on without it).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs.errors import TooLarge
from worker.errors import ConfigError
from worker.settings import Settings

COOKIE = "askbatch_token"
NEEDS_TOKEN = (
    "this askbatch server needs its token: open the address with ?token=… (the value of "
    "ASKBATCH_UI_TOKEN)"
)
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Every response: nothing but this server's own scripts and styles (the report's inline
# <style> and SVG included), framed only by its own pages, never sniffed as another type.
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'self'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: Settings) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not settings.ui_token:
        raise ConfigError(
            f"--host {host} makes the page reachable from other machines: set ASKBATCH_UI_TOKEN "
            "(a long random string, e.g. from `openssl rand -hex 24`) so that every request must "
            "carry it, or leave --host at 127.0.0.1"
        )


class Guard:
    """ASGI middleware: token, same-origin for changes, and the body size limit."""

    def __init__(self, app: ASGIApp, token: str, max_body: int) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = Headers(scope=scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        if self.token:
            given = query.get("token")
            if given is not None and self._ok(given) and scope["method"] == "GET":
                await self._enter(scope, query, send)
                return
            if not self._authorised(headers):
                await _json(send, 401, NEEDS_TOKEN)
                return
        if scope["method"] in UNSAFE:
            if not _same_origin(headers, scope):
                await _json(send, 403, "requests from another site's page are refused")
                return
            length = headers.get("content-length")
            if length is None and headers.get("transfer-encoding"):
                await _json(send, 411, "send the request with a Content-Length")
                return
            if length is not None and int(length) > self.max_body:
                await _json(send, 413, self._too_large())
                return
            receive = self._limited(receive)  # the app answers 413 if TooLarge is raised
        await self.app(scope, receive, send)

    def _too_large(self) -> str:
        mb = self.max_body / 1e6
        return f"the upload is larger than {mb:g} MB (ASKBATCH_UI_MAX_UPLOAD_MB on the server)"

    def _ok(self, given: str) -> bool:
        return secrets.compare_digest(given.encode(), self.token.encode())

    def _authorised(self, headers: Headers) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self._ok(auth[7:].strip()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and self._ok(value):
                return True
        return False

    async def _enter(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        """The token came in the address: keep it in a cookie, and drop it from the address."""
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        location = scope["path"] + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise TooLarge(self.max_body / 1e6)
            return message

        return limited


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
        await send(message)

    return sending


def _same_origin(headers: Headers, scope: Scope) -> bool:
    """A browser names the page a request comes from; it must be one of ours. (A client that
    is not a browser sends no Origin, and needs the token off loopback.)"""
    if headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def _json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
