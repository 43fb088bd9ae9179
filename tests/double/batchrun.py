"""A batch's lifecycle on the double's clock: the lines answered so far, the statuses it
passes through, its output and error files.

A batch advances lazily: every request that touches it (create, retrieve, cancel, list)
moves it on to where the clock says it is, as assistants runs do; no background task runs.
validating (``batch_validating_s``) -> in_progress (``batch_lines_per_s``, plus any
``[[sleep:S]]`` of a line) -> finalizing (``batch_finalizing_s``) -> completed; or failed
(validation), expired (``batch_expire_next``), cancelling (``batch_cancelling_s``) ->
cancelled; or in_progress for ever, and cancelling for ever once cancelled
(``batch_stall_next``). With ``batch_ogx``, as OGX 1.5.0 runs batches (all within the
published API): no finalizing and no in_progress_at, and a cancelled batch keeps no output.
Lines are answered by the functions that answer /v1/responses and /v1/chat/completions
(``Surface``), in the shuffled order of ``batchfile.scan``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import accounts, batchfile, files, watch
from .core import ApiError, ConnectionReset, Double, server_error
from .faults import parse_markers

ENQUEUED = frozenset({"validating", "in_progress", "finalizing"})
CANCELLABLE = ENQUEUED
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Refused inside a batch: OpenAI does not document them there, so askbatch must not use them.
UNBATCHABLE = ("conversation", "previous_response_id")
YIELD_EVERY = 100  # lines answered between turns of the event loop


class Surface(NamedTuple):
    """How lines for one endpoint are answered: the accounts kind ("response", "chat"), the
    server's answering function ``answer(double, body, batch=True) -> (object, headers)``,
    and the line body's dialogue (for the input tokens a batch enqueues)."""

    kind: str
    answer: Callable[..., Awaitable[object]]
    dialogue: batchfile.Dialogue
    contract: tuple[str, str]  # the contract's endpoint for a line's body, its answer's kind


@dataclass(slots=True, eq=False)
class BatchJob:
    """A batch's public object plus what the double needs to move it on."""

    obj: dict
    input_path: Path
    scan: batchfile.Scan
    created: float  # monotonic
    clock: float = 0.0  # monotonic time the answering has reached
    done: int = 0  # lines of scan.order answered
    expire_after: int | None = None  # lines answered before it expires
    stalled: bool = False  # never ends (batch_stall_next)
    deadline: float = 0.0  # end of finalizing or cancelling
    output_path: Path = field(default_factory=files.new_path)
    error_path: Path = field(default_factory=files.new_path)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def status(self) -> str:
        return self.obj["status"]

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL

    def discard(self) -> None:
        for path in (self.input_path, self.output_path, self.error_path):
            path.unlink(missing_ok=True)


def wall(monotonic: float) -> int:
    """The Unix time of a moment on the monotonic clock."""
    return int(time.time() - (time.monotonic() - monotonic))


async def advance(double: Double, job: BatchJob, surface: Surface) -> None:
    """Move a batch on to where the clock says it is."""
    async with job.lock:
        now = time.monotonic()
        config = double.config
        if job.status == "validating":
            ended = job.created + config.batch_validating_s
            if now < ended:
                return
            if job.scan.errors:
                job.obj["errors"] = {"object": "list", "data": job.scan.errors}
                _set_status(double, job, "failed", ended)
                return
            job.obj["request_counts"] = {"total": len(job.scan.order), "completed": 0, "failed": 0}
            job.clock = ended
            _set_status(double, job, "in_progress", ended)
        if job.status == "in_progress" and not job.stalled:
            await _answer_due(double, job, surface, now)
        if job.status == "finalizing" and now >= job.deadline:
            _finish(double, job, "completed", job.deadline)
        elif job.status == "cancelling" and now >= job.deadline:
            if config.batch_ogx:  # OGX: the lines answered before the cancel are lost
                job.output_path.unlink(missing_ok=True)
            else:
                _write_not_run(job, "batch_cancelled", double)
            _finish(double, job, "cancelled", job.deadline)


def start_cancelling(double: Double, job: BatchJob) -> None:
    """Cancel: no line starts any more; after ``batch_cancelling_s`` the batch is cancelled."""
    now = time.monotonic()
    if not job.scan.errors and job.obj["request_counts"] is not None:
        job.obj["request_counts"]["total"] = len(job.scan.order)
    job.obj["status"] = "cancelling"
    job.obj["cancelling_at"] = wall(now)
    job.deadline = float("inf") if job.stalled else now + double.config.batch_cancelling_s


def _set_status(double: Double, job: BatchJob, status: str, at: float) -> None:
    job.obj["status"] = status
    if not (double.config.batch_ogx and status == "in_progress"):
        job.obj[f"{status}_at"] = wall(at)
    if status in TERMINAL:
        double.stats.batches[status] += 1


async def _answer_due(double: Double, job: BatchJob, surface: Surface, now: float) -> None:
    """Answer the lines whose time has come; then finalize, or expire."""
    rate = double.config.batch_lines_per_s
    step = 1 / rate if rate > 0 else 0.0
    order = job.scan.order
    with (
        job.input_path.open("rb") as source,
        job.output_path.open("ab") as output,
        job.error_path.open("ab") as errors,
    ):
        while job.done < len(order):
            if job.expire_after is not None and job.done >= job.expire_after:
                break
            source.seek(order[job.done])
            line = json.loads(source.readline())
            due = job.clock + step + _sleep_s(surface, line["body"])
            if due > now:
                return
            job.clock = due
            await _answer_line(double, job, surface, line, output, errors)
            job.done += 1
            if job.done % YIELD_EVERY == 0:  # thousands of lines due: let other requests in
                await asyncio.sleep(0)
    if job.done < len(order):  # this batch was made to expire
        _write_not_run(job, "batch_expired", double)
        _finish(double, job, "expired", job.clock)
    elif double.config.batch_ogx:  # straight from in_progress to completed
        _finish(double, job, "completed", job.clock)
    else:
        _set_status(double, job, "finalizing", job.clock)
        job.deadline = job.clock + double.config.batch_finalizing_s


def _sleep_s(surface: Surface, body: dict) -> float:
    try:
        return parse_markers(surface.dialogue(body)[0]).sleep
    except ApiError:
        return 0.0


async def _answer_line(
    double: Double, job: BatchJob, surface: Surface, line: dict, output, errors
) -> None:
    body = line["body"]
    exchange = watch.current()
    if exchange is not None:  # a line keeps to the SDK's types like a synchronous request
        checks = exchange.contract
        exchange.record("batch line", checks.check_request(surface.contract[0], body))
    try:
        for param in UNBATCHABLE:
            if body.get(param) is not None:
                raise ApiError(
                    400,
                    f"'{param}' is not supported in a batch request: send the earlier turns "
                    "in the request's input instead.",
                    param=param,
                )
        if body.get("stream"):
            raise ApiError(400, "A batch request cannot stream.", param="stream")
        accounts.check_body(double, surface.kind, body)
        answer, _ = await surface.answer(double, body, batch=True)
        status = 200
    except ApiError as refused:
        status, answer = refused.status, refused.body
    except ConnectionReset:  # inside a batch a dropped connection is a server error
        status, answer = 500, server_error().body
    if exchange is not None:
        kind = surface.contract[1] if status == 200 else "error"
        exchange.record("batch answer", checks.check_response(kind, answer))
    counts = job.obj["request_counts"]
    if status == 200:
        output.write(batchfile.output_line(line["custom_id"], status, answer))
        counts["completed"] += 1
        stats = double.stats
        stats.batch_lines["answered"] += 1
        if line["custom_id"] in stats.batch_answered:  # paid twice
            stats.batch_repeats += 1
        stats.batch_answered.add(line["custom_id"])
        _add_usage(job.obj["usage"], answer.get("usage") or {})
    else:
        errors.write(batchfile.output_line(line["custom_id"], status, answer))
        counts["failed"] += 1
        double.stats.batch_lines["failed"] += 1


def _add_usage(total: dict, usage: dict) -> None:
    """Add a line's usage (Responses' or Chat's names) to the batch's."""
    given = usage.get("input_tokens", usage.get("prompt_tokens", 0))
    made = usage.get("output_tokens", usage.get("completion_tokens", 0))
    inputs = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    outputs = usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}
    total["input_tokens"] += given
    total["input_tokens_details"]["cached_tokens"] += inputs.get("cached_tokens", 0)
    total["output_tokens"] += made
    total["output_tokens_details"]["reasoning_tokens"] += outputs.get("reasoning_tokens", 0)
    total["total_tokens"] += given + made


def _write_not_run(job: BatchJob, code: str, double: Double) -> None:
    """The error-file lines of every line not answered (none for a file that failed)."""
    if job.scan.errors:
        return
    order = job.scan.order
    with job.input_path.open("rb") as source, job.error_path.open("ab") as errors:
        for offset in order[job.done :]:
            source.seek(offset)
            custom_id = json.loads(source.readline())["custom_id"]
            errors.write(batchfile.not_run_line(custom_id, code))
            double.stats.batch_lines[code.removeprefix("batch_")] += 1
    job.done = len(order)


def _finish(double: Double, job: BatchJob, status: str, at: float) -> None:
    """End the batch: its output and error files (each only if it has lines)."""
    batch_id = job.obj["id"]
    for path, key, suffix in (
        (job.output_path, "output_file_id", "output"),
        (job.error_path, "error_file_id", "error"),
    ):
        if path.exists() and path.stat().st_size > 0:
            stored = files.store(double, path, f"{batch_id}_{suffix}.jsonl", "batch_output")
            job.obj[key] = stored.id
        else:
            path.unlink(missing_ok=True)
    _set_status(double, job, status, at)
