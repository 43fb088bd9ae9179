"""Batch input files: validating a JSONL file line by line, counting its input tokens, the
order its lines are answered in, and writing output and error lines.

OpenAI fails a whole batch whose file breaks a rule, naming the line: the checks here give
``errors.data`` entries ``{code, message, line, param}`` in the same way.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import expect
from .core import ApiError
from .faults import parse_markers
from .state import Config, new_id

MAX_REPORTED = 100  # errors listed for one file; the rest are not worth reading
# A surface's dialogue: (question, turn, prompt texts) of a line body; raises ApiError.
Dialogue = Callable[[dict], tuple[str, int, list[str]]]


def error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
    return {"code": code, "message": message, "line": line, "param": param}


@dataclass(slots=True)
class Scan:
    """What validating a file found: its lines' offsets in answering order, the errors,
    the input tokens it would enqueue and its one model."""

    order: list[int] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    tokens: int = 0
    model: str | None = None

    def fail(self, code: str, message: str, line: int | None = None, param: str | None = None):
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(error(code, message, line, param))

    def missing(self, param: str, what: str, line: int) -> None:
        message = f"Missing required parameter: '{param}' ({what})."
        self.fail("missing_required_parameter", message, line, param)


def scan(path: Path, endpoint: str, dialogue: Dialogue, config: Config, seed: str) -> Scan:
    """Validate the input file at ``path`` for a batch on ``endpoint``."""
    found = Scan()
    size = path.stat().st_size
    if size > config.batch_max_bytes:
        found.fail(
            "file_too_large",
            f"The input file is {size:,} bytes; a batch input file may be at most "
            f"{config.batch_max_bytes:,} bytes. Split it into several batches.",
        )
        return found
    seen: set[str] = set()
    offset = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            if len(found.order) >= config.batch_max_lines:
                found.fail(
                    "too_many_tasks",
                    f"The input file has more than {config.batch_max_lines:,} requests, "
                    "the most one batch may hold. Split it into several batches.",
                    number,
                )
                return found
            found.order.append(start)
            _check_line(found, raw, number, endpoint, dialogue, seen)
    if not found.order and not found.errors:
        found.fail("empty_file", "The input file has no requests.")
    random.Random(seed).shuffle(found.order)
    if len(found.order) > 1 and found.order == sorted(found.order):
        found.order.append(found.order.pop(0))  # never the input order: clients must join
    return found


def _check_line(
    found: Scan, raw: bytes, number: int, endpoint: str, dialogue: Dialogue, seen: set[str]
) -> None:
    try:
        line = json.loads(raw)
    except ValueError:
        line = None
    if not isinstance(line, dict):
        found.fail("invalid_json_line", "This line is not parseable as valid JSON.", number)
        return
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        found.missing("custom_id", "a non-empty string", number)
    elif custom_id in seen:
        found.fail(
            "duplicate_custom_id",
            f"The custom_id {custom_id!r} of this request is a duplicate of another "
            "request's. The custom_id must be unique for each request in a batch.",
            number,
            "custom_id",
        )
    else:
        seen.add(custom_id)
    if line.get("method") != "POST":
        found.fail(
            "invalid_method", "The method of a batch request must be POST.", number, "method"
        )
    if line.get("url") != endpoint:
        found.fail(
            "url_mismatch",
            f"The url {line.get('url')!r} of this request does not match the batch's "
            f"endpoint {endpoint!r}.",
            number,
            "url",
        )
    body = line.get("body")
    if not isinstance(body, dict):
        found.missing("body", "an object", number)
        return
    model = body.get("model")
    if not (isinstance(model, str) and model):
        found.missing("body.model", "a model name", number)
        return
    found.model = found.model or model
    if model != found.model:
        found.fail(
            "model_mismatch",
            f"The model {model!r} of this request differs from the model {found.model!r} "
            "of earlier requests: a batch file may use only one model.",
            number,
            "body.model",
        )
    with contextlib.suppress(ApiError):  # no user message: the line is refused when answered
        question, _, texts = dialogue(body)
        found.tokens += prompt_tokens(texts)
        if parse_markers(question).invalid:  # one bad line fails the whole batch, naming it
            found.fail("invalid_request", "Messages must be an array.", number, "body.messages")


def prompt_tokens(messages: list[str]) -> int:
    """Input tokens as the double counts them for an answer's prompt."""
    return expect.usage_for(messages, "")[0]


def output_line(custom_id: str, status: int, body: dict) -> bytes:
    """A line of the output file (status 200) or of the error file (any other status)."""
    record = {
        "id": new_id("batch_req"),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": new_id("req"), "body": body},
        "error": None,
    }
    return json.dumps(record).encode() + b"\n"


NOT_RUN = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


def not_run_line(custom_id: str, code: str) -> bytes:
    """A line of the error file for a request the batch never ran (expired, cancelled)."""
    record = {
        "id": new_id("batch_req"),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": NOT_RUN[code]},
    }
    return json.dumps(record).encode() + b"\n"
