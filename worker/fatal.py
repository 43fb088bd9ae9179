"""Errors no retry can mend: which API errors stop the whole job, and what to tell the user.

A refused key, a model that does not exist, an empty account or a request parameter the model
rejects would fail every row the same way, so the first one stops the job (a job-wide stop in
the store, like cancel) and the rows not yet asked stay unasked: `askbatch resume JOB` asks
them once the cause is fixed. A 400 about one row's own content fails only that row.

What a halt is lives here: its stop statuses, `Halt` (why) and `classify` (which errors call
for one). The exception a row raises with it is `Halted`, with the other errors in errors.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import openai

from worker.masking import mask_url
from worker.models import Stop
from worker.providers import registry

# The stop statuses of a halted job (worker/store `stop`). Unlike cancel and the spending cap,
# a halt gives the rows not started no result: they are `pending` until resumed.
HALT_ACCESS = "halt:access"  # key, permission, model, endpoint: exit 2
HALT_QUOTA = "halt:quota"  # the account's money or quota: exit 3, like the spending cap
HALT_REQUEST = "halt:request"  # a parameter every row sends is refused: exit 2
HALTS = frozenset({HALT_ACCESS, HALT_QUOTA, HALT_REQUEST})
PENDING = "pending"  # the CSV's word for a row without a result

# 429 codes/types that mean money or quota, not speed. OpenAI documents insufficient_quota;
# the rest are what its billing and budget limits, and gateways in front of it, send.
_QUOTA_WORDS = ("quota", "billing", "spend_limit", "credit", "budget", "balance")
# Request parameters that are the same on every row of a job: a 400 naming one of them would
# fail every row. `input`/`messages` (the row's own text) are not among them.
JOB_PARAMS = frozenset(
    {
        "model",
        "temperature",
        "top_p",
        "service_tier",
        "max_output_tokens",
        "max_tokens",
        "max_completion_tokens",
        "reasoning",
        "reasoning_effort",
        "text",
        "text.format",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "prompt_cache_key",
        "safety_identifier",
        "store",
        "truncation",
        "stream",
        "stream_options",
    }
)
_JOB_CODES = ("unsupported_parameter", "unsupported_value", "unknown_parameter")
OPENAI_HOST = "api.openai.com"


@dataclass(frozen=True, slots=True)
class Halt:
    """Why a job must stop: its stop status, and one message with the cause and the fix."""

    status: str
    message: str

    @property
    def exit_code(self) -> int:
        return 3 if self.status == HALT_QUOTA else 2


def is_halt(stop: Stop | None) -> bool:
    return stop is not None and stop.status in HALTS


def error_fields(exc: BaseException) -> tuple[str, str, str, str]:
    """(code, type, param, message) of an API error body, each '' when absent."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        body = {}

    def text(key: str) -> str:
        value = body.get(key)
        return value if isinstance(value, str) else ""

    return text("code"), text("type"), text("param"), text("message")


def is_quota(exc: BaseException) -> bool:
    """A 429 that says the account is out of money or quota: waiting will not help."""
    if getattr(exc, "status_code", None) != 429:
        return False
    code, kind, _, _ = error_fields(exc)
    return any(word in f"{code} {kind}".lower() for word in _QUOTA_WORDS)


def is_openai(base_url: str) -> bool:
    return not base_url or urlsplit(base_url).hostname == OPENAI_HOST


def classify(exc: BaseException, *, provider: str, base_url: str, model: str) -> Halt | None:
    """The halt this error calls for, or None when it concerns only the row it came from."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    status = exc.status_code
    code, _, param, message = error_fields(exc)
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    detail = one_line(detail, 300)
    if status == 401:
        return Halt(
            HALT_ACCESS,
            f"the API refused the key ({detail}). Set a valid OPENAI_API_KEY (in the "
            "environment or .env)",
        )
    surface = registry.find(provider)
    if surface and surface.retired_at_openai and status in (404, 410) and is_openai(base_url):
        return Halt(HALT_ACCESS, surface.retired_at_openai)
    if (
        surface
        and surface.thread == registry.CONVERSATION
        and status in (404, 405)
        and _path(exc).endswith("/conversations")
    ):
        return Halt(
            HALT_ACCESS,
            f"the server at {mask_url(base_url) or 'the base URL'} has no Conversations API "
            f"({detail} on POST /conversations), which --provider {provider} needs; use "
            "--provider chat",
        )
    if status == 404 and (code == "model_not_found" or param == "model"):
        return Halt(HALT_ACCESS, model_missing(model, base_url, detail))
    if status == 403:
        return Halt(
            HALT_ACCESS,
            f"the API refused access ({detail}): the key's project may have no access to "
            f"model {model!r}, or the API is not offered in your region. Check the project's "
            "model permissions, or choose another --model",
        )
    if is_quota(exc):
        return Halt(
            HALT_QUOTA,
            f"a spending limit — yours or the account's — stopped the job: the account is out "
            f"of credit or quota ({detail}). Add credit or raise the limit in the account's "
            "billing settings",
        )
    if status in (400, 422) and (param in JOB_PARAMS or code in _JOB_CODES):
        return Halt(
            HALT_REQUEST,
            f"the API refused a setting that every row sends ({detail}). Change it in the "
            "profile or flags",
        )
    return None


def _path(exc: openai.APIStatusError) -> str:
    try:
        return exc.request.url.path.rstrip("/")
    except AttributeError:
        return ""


def model_missing(model: str, base_url: str, detail: str) -> str:
    where = (
        "https://platform.openai.com/docs/models"
        if is_openai(base_url)
        else f"{mask_url(base_url).rstrip('/')}/models"
    )
    return (
        f"model {model!r} does not exist or the key cannot use it ({detail}). Fix --model, "
        f"the profile's model or the `model` column; the models available are listed at {where}"
    )


def one_line(text: str, limit: int = 500) -> str:
    """A server's message as one line: whitespace runs folded, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
