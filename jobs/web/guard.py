"""What keeps `askbatch serve` to the people it is for: a token on every request, no request
from another site's page, bodies size-limited, no redirect off the page's own origin.

The token (ASKBATCH_UI_TOKEN, at least 16 characters) is accepted as `Authorization: Bearer
TOKEN`, or once in the address (`?token=TOKEN`), which sets a session cookie and sends the
browser on to the same path without it. The cookie holds a random session value of this
process, never the token: another service on the same host name receives the cookie, not the
token, and a restart ends every session.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs.errors import TooLarge
from worker.errors import ConfigError
from worker.settings import Secret, Settings

MIN_TOKEN = 16
NEEDS_TOKEN = (
    "this askbatch server needs its token: open the address `askbatch serve` printed (with "
    "?token=…), or send Authorization: Bearer TOKEN (the value of ASKBATCH_UI_TOKEN)"
)
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Request bodies being received at once, in upload limits: what they spool to disk is bounded.
BODIES_AT_ONCE = 4
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


def with_token(settings: Settings) -> tuple[Settings, bool]:
    """The settings with a token: the one set (refused if shorter than MIN_TOKEN characters),
    else a new random one; and whether it is new (to be printed in the page's address)."""
    token = settings.ui_token
    if token and len(token) < MIN_TOKEN:
        raise ConfigError(
            f"ASKBATCH_UI_TOKEN has {len(token)} characters; a token needs at least {MIN_TOKEN} "
            "(a long random string, e.g. from `openssl rand -hex 24`), or leave it unset and "
            "askbatch serve makes one"
        )
    if token:
        return settings, False
    return settings.with_(ui_token=Secret(secrets.token_urlsafe(24))), True


class Guard:
    """ASGI middleware: token, same-origin for changes, and the body size limits."""

    def __init__(self, app: ASGIApp, token: str, max_body: int) -> None:
        self.app = app
        self.token = token
        self.session = secrets.token_urlsafe(32)  # what the cookie holds
        self.max_body = max_body
        self.receiving = 0  # bytes of the request bodies being received

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = Headers(scope=scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and self._ok(given, self.token) and scope["method"] == "GET":
            await self._enter(scope, query, send)
            return
        if not self._authorised(headers, scope):
            await _json(send, 401, NEEDS_TOKEN)
            return
        if scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        if not _same_origin(headers, scope):
            await _json(send, 403, "requests from another site's page are refused")
            return
        length = headers.get("content-length")
        if length is None and headers.get("transfer-encoding"):
            await _json(send, 411, "send the request with a Content-Length")
            return
        size = int(length) if length and length.isdigit() else 0
        if size > self.max_body:
            await _json(send, 413, self._too_large())
            return
        if self.receiving + size > BODIES_AT_ONCE * self.max_body:
            await _json(send, 429, "the server is receiving other uploads; try again shortly")
            return
        self.receiving += size
        try:
            await self.app(scope, self._limited(receive), send)  # 413 if TooLarge is raised
        finally:
            self.receiving -= size

    def _too_large(self) -> str:
        mb = self.max_body / 1e6
        return f"the upload is larger than {mb:g} MB (ASKBATCH_UI_MAX_UPLOAD_MB on the server)"

    @staticmethod
    def _ok(given: str, secret: str) -> bool:
        return secrets.compare_digest(given.encode(), secret.encode())

    def cookie(self, scope: Scope) -> str:
        """The session cookie's name: one per port, as cookies do not tell ports apart."""
        server = scope.get("server") or ("", 0)
        return f"askbatch_session_{server[1]}"

    def _authorised(self, headers: Headers, scope: Scope) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self._ok(auth[7:].strip(), self.token):
            return True
        name = self.cookie(scope)
        for part in headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name and self._ok(value, self.session):
                return True
        return False

    async def _enter(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        """The token came in the address: a session cookie in its place, and the same path
        without it. The path is sent back as a path of this origin only (never `//host`)."""
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        path = "/" + scope["path"].lstrip("/\\")
        location = quote(path, safe="/-._~!$&'()*+,;=:@") + (f"?{rest}" if rest else "")
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{self.cookie(scope)}={self.session}; HttpOnly; SameSite=Strict; Path=/{secure}"
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
    is not a browser sends no Origin, and needs the token.)"""
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
