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
from worker.fatal import one_line
from worker.models import BATCH_TIER, EXPIRED, FAILED, JobSpec, Result, Row
from worker.providers.base import Turn
from worker.providers.chat import turn_from_completion
from worker.providers.responses import turn_from_response
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
    spec: JobSpec,
    row: Row,
    attempt: int,
    line: dict[str, Any],
    schema: dict | None,
    latency_s: float,
    thread_id: str,
) -> Outcome:
    def made(turn: Turn, use_schema: dict | None = None) -> Result:
        turn.service_tier = BATCH_TIER  # the Batch API's own tier: batch prices
        result = result_of(spec, row, turn, use_schema)
        result.thread_id, result.latency_s, result.attempts = thread_id, latency_s, attempt
        return result

    response = line.get("response") or {}
    code = response.get("status_code")
    body = response.get("body") or {}
    if code == 200:
        if spec.provider == "responses":
            turn = turn_from_response(body)
        else:
            turn = turn_from_completion(body, row.model or spec.model)
        return Outcome(row.index, attempt, made(turn, schema))
    if code is not None:
        error = body.get("error") or {}
        message = one_line(f"{code}: {error.get('message') or error.get('code') or body}")
        if code == 429 or code >= 500:
            return Outcome(row.index, attempt, again=message)
        turn = Turn(FAILED, error=message)
        return Outcome(row.index, attempt, made(turn))
    error = line.get("error") or {}
    code_word = str(error.get("code") or "")
    message = one_line(f"{code_word or 'error'}: {error.get('message') or 'no message'}")
    if code_word in UNFINISHED:
        return Outcome(row.index, attempt, again=message, unfinished=True)
    turn = Turn(FAILED, error=message)
    return Outcome(row.index, attempt, made(turn))


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
