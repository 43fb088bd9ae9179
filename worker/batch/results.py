"""A line that came back (from a batch's output or error file) as the row's result.

Each line is read on its own, from a file streamed line by line (api.lines), and matched to its
row by `custom_id`, never by its place in the file. The cells are those a synchronous run
gives, parsed by the providers' own functions; `latency_s` runs from the batch's submission.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from worker.batch.lines import parse_custom_id
from worker.batch.toolrounds import Continuing, run_tools
from worker.fatal import one_line
from worker.models import BATCH_TIER, EXPIRED, FAILED, FINAL_STATUSES, Result, Row, Usage
from worker.providers import registry
from worker.providers.base import BatchLines, JobContext, Turn, too_many_rounds
from worker.runner import result_of

# Line errors that mean "not asked before the batch ended": the line goes into a later batch.
UNFINISHED = ("batch_expired", "batch_cancelled")
# An error line without a status code (OGX: {"type": "request_failed", "message": ...}) is
# asked again when its words say waiting may help: a status in its text (the openai SDK's
# "Error code: 503 - ..."), or words for a busy, slow or unreachable server. Money never is.
_STATUS_IN_TEXT = re.compile(r"\b(?:error code|status code|status|http)\W{0,3}([1-5]\d\d)\b", re.I)
_RETRYABLE_WORDS = (
    "rate limit", "rate_limit", "too many requests", "timeout", "timed out", "temporarily",
    "try again", "overloaded", "unavailable", "connection", "server_error", "server error",
    "internal_error", "bad gateway",
)  # fmt: skip
_NEVER_WORDS = ("quota", "billing", "insufficient")
_CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"([^"\\]{1,300})"')


class Unreadable(Exception):
    """Raised when a line that names a row of the job says nothing askbatch can read."""


@dataclass(slots=True)
class Outcome:
    """What one line says about its row: a result to keep, or `again` (a retryable error,
    or a line the batch never got to) with the reason."""

    index: int
    attempt: int
    result: Result | None = None
    again: str = ""
    unfinished: bool = False  # not asked at all (the batch expired or was cancelled first)
    continuing: Continuing | None = None  # it asked for tools: they ran, the row goes on


def parse(raw: bytes | str, job_id: str) -> tuple[int, int, dict[str, Any] | str] | None:
    """(row, attempt, line) of one of this job's lines, the line being its JSON object or,
    when it is none, why; None for a line that names no row of this job."""
    try:
        line: Any = json.loads(raw)
    except ValueError:
        line = None
    if isinstance(line, dict):
        given = line.get("custom_id")
        ident = parse_custom_id(given if isinstance(given, str) else "")
        if ident is None or ident[0] != job_id:
            return None
        return ident[1], ident[2], line
    # Not a JSON object; if it still names a row of the job, that row learns why.
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    found = _CUSTOM_ID.search(text)
    ident = parse_custom_id(found.group(1)) if found else None
    if ident is None or ident[0] != job_id:
        return None
    return ident[1], ident[2], "it is not a JSON object"


def read(
    job: JobContext,
    row: Row,
    attempt: int,
    line: dict[str, Any] | str,
    latency_s: float,
    thread_id: str,
    so_far: Continuing | None = None,
) -> Outcome:
    """`outcome`, for a line of any shape: one askbatch cannot read fails its row with the
    cause, and never stops the reading of the rest of its batch."""
    try:
        if isinstance(line, str):
            raise Unreadable(line)
        out = outcome(job, row, attempt, line, latency_s, thread_id, so_far)
        if out.result is not None:
            _check(out.result)
        return out
    except Exception as exc:  # whatever the line held: that row's failure, not the batch's
        cause = str(exc) if isinstance(exc, Unreadable) else f"{type(exc).__name__}: {exc}"
        result = Result(
            row.index,
            FAILED,
            error=one_line(f"the server's line for this row could not be read: {cause}", 300),
            attempts=attempt,
            service_tier=BATCH_TIER,
            thread_id=thread_id,
            latency_s=latency_s,
        )
        return Outcome(row.index, attempt, result)


def outcome(
    job: JobContext,
    row: Row,
    attempt: int,
    line: dict[str, Any],
    latency_s: float,
    thread_id: str,
    so_far: Continuing | None = None,
) -> Outcome:
    """`so_far`: the row's tool rounds before this line, if it had any."""
    spec = job.spec
    so_far = so_far or Continuing()

    def made(turn: Turn, schema: dict | None = None) -> Outcome:
        turn.service_tier = BATCH_TIER  # the Batch API's own tier: batch prices
        if so_far.rounds:  # every round's usage is the row's
            total = Usage(**{name: getattr(so_far.usage, name) for name in Usage.__slots__})
            total.add(turn.usage)
            turn.usage = total
        result = result_of(spec, row, turn, schema, so_far.log())
        result.thread_id, result.latency_s, result.attempts = thread_id, latency_s, attempt
        return Outcome(row.index, attempt, result)

    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    code = _status(response.get("status_code"))
    body = _body(response.get("body"))
    if code is None and body and "error" not in body:
        code = 200  # an answer without its status code
    if code == 200:
        wire = registry.get(spec.provider).lines()
        _check_answer(wire, body)
        turn = wire.turn(body, row.model or spec.model)
        calls = wire.tool_calls(body) if job.toolbox else []
        if not calls:
            return made(turn, job.profile.schema)
        if so_far.rounds == spec.max_tool_rounds:
            turn.status, turn.error = FAILED, too_many_rounds(so_far.rounds)
            return made(turn)
        going_on = run_tools(job, wire, body, calls, so_far, turn.usage, attempt)
        return Outcome(row.index, attempt, continuing=going_on)
    if code is not None:
        error = body.get("error")
        error = error if isinstance(error, dict) else {}
        said = error.get("message") or error.get("code") or body or "no message"
        message = one_line(f"{code}: {said}")
        if code in (408, 429) or code >= 500:
            return Outcome(row.index, attempt, again=message)
        return made(Turn(FAILED, error=message))
    error = line.get("error") or body.get("error")
    if not error:
        raise Unreadable("it has neither a response nor an error")
    if not isinstance(error, dict):
        error = {"message": str(error)}
    word = str(error.get("code") or error.get("type") or "")
    message = one_line(f"{word or 'error'}: {error.get('message') or 'no message'}")
    if word in UNFINISHED:
        return Outcome(row.index, attempt, again=message, unfinished=True)
    if retryable(word, str(error.get("message") or "")):
        return Outcome(row.index, attempt, again=message)
    return made(Turn(FAILED, error=message))


def retryable(code: str, message: str) -> bool:
    """Whether an error line without a status code says that asking again may help."""
    text = f"{code} {message}".lower()
    if any(word in text for word in _NEVER_WORDS):
        return False
    if found := _STATUS_IN_TEXT.search(text):
        status = int(found.group(1))
        return status in (408, 429) or status >= 500
    return any(word in text for word in _RETRYABLE_WORDS)


def _status(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if value is None:
        return None
    raise Unreadable(f"its status_code is {one_line(repr(value), 40)}")


def _body(value: Any) -> dict[str, Any]:
    """The line's `response.body`: an object, or (OGX) that object as a JSON string."""
    if isinstance(value, bytes | str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError:
            raise Unreadable("its response.body is a string that is not JSON") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unreadable(f"its response.body is a {type(value).__name__}, not an object")
    return value


_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens")


def _check_answer(wire: BatchLines, body: dict[str, Any]) -> None:
    usage = body.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise Unreadable(f"its usage is a {type(usage).__name__}, not an object")
    for name in _TOKENS:
        value = (usage or {}).get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise Unreadable(f"its usage {name} is {one_line(repr(value), 40)}")
    if why := wire.unreadable(body):
        raise Unreadable(why)


def _check(result: Result) -> None:
    """A result holds what the answers file and the report can write: text as text, token
    counts as whole numbers, and a final status."""
    for name in ("answer", "error", "model", "run_id", "service_tier"):
        if not isinstance(getattr(result, name), str):
            raise Unreadable(f"its {name} is not text")
    for f in fields(Usage):
        value = getattr(result.usage, f.name)
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if f.name != "reported" and not whole:
            raise Unreadable(f"its usage {f.name} is {one_line(repr(value), 40)}")
    if result.status not in FINAL_STATUSES:
        result.error = one_line(f"the answer ended with status {result.status!r}", 300)
        result.status = FAILED


def gave_up(row: Row, attempt: int, reason: str, expired: bool) -> Result:
    """The result of a row asked `attempt` times without an answer."""
    status = EXPIRED if expired else FAILED
    return Result(
        row.index,
        status,
        error=one_line(f"{reason} (after {attempt} attempts)"),
        attempts=attempt,
        service_tier=BATCH_TIER,
    )
