"""A line that came back (from a batch's output or error file) as the row's result.

Each line is read on its own, from a file streamed line by line (api.lines), and matched to its
row by `custom_id`, never by its place in the file. The cells are those a synchronous run
gives, parsed by the providers' own functions; `latency_s` runs from the batch's submission.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.batch.lines import parse_custom_id
from worker.batch.toolrounds import Continuing, run_tools
from worker.fatal import one_line
from worker.models import BATCH_TIER, EXPIRED, FAILED, Result, Row, Usage
from worker.providers import registry
from worker.providers.base import JobContext, Turn, too_many_rounds
from worker.runner import result_of

# Line errors that mean "not asked before the batch ended": the line goes into a later batch.
UNFINISHED = ("batch_expired", "batch_cancelled")


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


def parse(raw: bytes | str, job_id: str) -> tuple[int, int, dict[str, Any]] | None:
    """(row, attempt, line) of one of this job's lines; None for anything else."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None  # not a line of ours (the file is the API's; one bad line loses one row)
    if not isinstance(line, dict):
        return None
    ident = parse_custom_id(str(line.get("custom_id") or ""))
    if ident is None or ident[0] != job_id:
        return None
    return ident[1], ident[2], line


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

    response = line.get("response") or {}
    code = response.get("status_code")
    body = response.get("body") or {}
    if code == 200:
        wire = registry.get(spec.provider).lines()
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
        error = body.get("error") or {}
        message = one_line(f"{code}: {error.get('message') or error.get('code') or body}")
        if code == 429 or code >= 500:
            return Outcome(row.index, attempt, again=message)
        return made(Turn(FAILED, error=message))
    error = line.get("error") or {}
    code_word = str(error.get("code") or "")
    message = one_line(f"{code_word or 'error'}: {error.get('message') or 'no message'}")
    if code_word in UNFINISHED:
        return Outcome(row.index, attempt, again=message, unfinished=True)
    return made(Turn(FAILED, error=message))


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
