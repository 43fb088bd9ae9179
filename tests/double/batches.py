"""The Batch API: batches over uploaded JSONL files, answered line by line on the double's
clock, with output and error files.

A batch advances lazily: every request that touches it (create, retrieve, cancel, list)
moves it on to where the clock says it is, as assistants runs do; no background task runs.
validating (``batch_validating_s``) -> in_progress (``batch_lines_per_s``, plus any
``[[sleep:S]]`` of a line) -> finalizing (``batch_finalizing_s``) -> completed; or failed
(validation), expired (``batch_expire_next``), cancelling (``batch_cancelling_s``) ->
cancelled. Lines are answered by the functions that answer /v1/responses and
/v1/chat/completions (``Surface``), in a deterministic shuffle of the input order.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from . import accounts, batchfile, files, watch
from .core import (
    ApiError,
    ConnectionReset,
    Double,
    api,
    json_body,
    json_response,
    list_page,
    rate_limited,
    server_error,
)
from .faults import parse_markers
from .state import new_id, now_s

WINDOW_S = 24 * 3600
ENQUEUED = frozenset({"validating", "in_progress", "finalizing"})
CANCELLABLE = ENQUEUED
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Refused inside a batch: OpenAI does not document them there, so askbatch must not use them.
UNBATCHABLE = ("conversation", "previous_response_id")


class Surface(NamedTuple):
    """How lines for one endpoint are answered: the accounts kind ("response", "chat"), the
    server's answering function ``answer(double, body, batch=True) -> (object, headers)``,
    and the line body's dialogue (for the input tokens a batch enqueues)."""

    kind: str
    answer: Callable[..., Awaitable[object]]
    dialogue: batchfile.Dialogue
    contract: tuple[str, str]  # the contract's endpoint for a line's body, its answer's kind


SURFACES = web.AppKey("batch_surfaces", dict)


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


def new_object(body: dict, model: str | None) -> dict:
    created = now_s()
    return {
        "id": new_id("batch"),
        "object": "batch",
        "endpoint": body["endpoint"],
        "model": model,
        "errors": None,
        "input_file_id": body["input_file_id"],
        "completion_window": body["completion_window"],
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": created,
        "in_progress_at": None,
        "expires_at": created + WINDOW_S,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": body.get("metadata"),
    }


# --- the lifecycle ---


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
            job.obj["request_counts"]["total"] = len(job.scan.order)
            job.clock = ended
            _set_status(double, job, "in_progress", ended)
        if job.status == "in_progress":
            await _answer_due(double, job, surface, now)
        if job.status == "finalizing" and now >= job.deadline:
            _finish(double, job, "completed", job.deadline)
        elif job.status == "cancelling" and now >= job.deadline:
            _write_not_run(job, "batch_cancelled", double)
            _finish(double, job, "cancelled", job.deadline)


def _set_status(double: Double, job: BatchJob, status: str, at: float) -> None:
    job.obj["status"] = status
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
    if job.done < len(order):  # this batch was made to expire
        _write_not_run(job, "batch_expired", double)
        _finish(double, job, "expired", job.clock)
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
        double.stats.batch_lines["answered"] += 1
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


# --- handlers ---


def _surface(request: web.Request, job: BatchJob) -> Surface:
    return request.app[SURFACES][job.obj["endpoint"]]


async def _advance_all(double: Double, request: web.Request) -> None:
    for job in list(double.store.batches.values()):
        if job.live:
            await advance(double, job, _surface(request, job))


def _get(double: Double, request: web.Request) -> BatchJob:
    batch_id = request.match_info["batch_id"]
    job = double.store.batches.get(batch_id)
    if job is None:
        raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    return job


def _check_create(request: web.Request, body: dict) -> Surface:
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
    surfaces = request.app[SURFACES]
    if body["endpoint"] not in surfaces:
        raise ApiError(
            400,
            f"Invalid value for 'endpoint': the double batches {', '.join(surfaces)}.",
            param="endpoint",
        )
    if body["completion_window"] != "24h":
        raise ApiError(
            400,
            "Invalid value for 'completion_window': only '24h' is supported.",
            param="completion_window",
        )
    return surfaces[body["endpoint"]]


def _check_rate(double: Double) -> None:
    cap = double.config.batch_creations_per_hour
    if cap <= 0:
        return
    since = time.monotonic() - 3600
    made = sum(1 for job in double.store.batches.values() if job.created > since)
    if made >= cap:
        oldest = min(job.created for job in double.store.batches.values() if job.created > since)
        raise rate_limited(
            oldest - since,
            message=f"Too many batches created: the limit is {cap:,} per hour. Try again later.",
        )


@api("batch_create")
async def create_batch(double: Double, request: web.Request) -> web.Response:
    body = await json_body(request)
    surface = _check_create(request, body)
    stored = double.store.files.get(body["input_file_id"])
    if stored is None:
        raise ApiError(404, f"No such File object: {body['input_file_id']}", param="input_file_id")
    if stored.obj["purpose"] != "batch":
        raise ApiError(
            400,
            f"The input file {stored.id} has purpose {stored.obj['purpose']!r}; a batch's "
            "input file must be uploaded with purpose 'batch'.",
            param="input_file_id",
        )
    _check_rate(double)
    await _advance_all(double, request)  # the enqueued tokens of the batches still live
    config = double.config
    scan = batchfile.scan(stored.path, body["endpoint"], surface.dialogue, config, stored.id)
    if not scan.errors and config.batch_enqueued_tokens > 0:
        enqueued = sum(
            job.scan.tokens
            for job in double.store.batches.values()
            if job.status in ENQUEUED and not job.scan.errors
        )
        if enqueued + scan.tokens > config.batch_enqueued_tokens:
            scan.errors.append(
                batchfile.error(
                    "token_limit_exceeded",
                    f"Enqueued token limit reached for {scan.model} in organization "
                    f"org-double. Limit: {config.batch_enqueued_tokens:,} enqueued tokens. "
                    "Please try again once some in_progress batches have been completed.",
                )
            )
    # The batch reads its own link to the bytes: deleting the input file does not stop it.
    own_input = files.new_path()
    os.link(stored.path, own_input)
    job = BatchJob(new_object(body, scan.model), own_input, scan, time.monotonic())
    if not scan.errors and config.batch_expire_next > 0:
        config.batch_expire_next -= 1
        job.expire_after = len(scan.order) // 2
    double.store.batches[job.obj["id"]] = job
    double.stats.batches["created"] += 1
    await advance(double, job, surface)  # with no validating time it is in_progress already
    return json_response(job.obj)


@api("batch_retrieve")
async def retrieve_batch(double: Double, request: web.Request) -> web.Response:
    job = _get(double, request)
    await advance(double, job, _surface(request, job))
    return json_response(job.obj)


@api("batch_cancel")
async def cancel_batch(double: Double, request: web.Request) -> web.Response:
    job = _get(double, request)
    await advance(double, job, _surface(request, job))
    if job.status not in CANCELLABLE:
        raise ApiError(400, f"Cannot cancel a batch with status '{job.status}'.")
    now = time.monotonic()
    if not job.scan.errors:
        job.obj["request_counts"]["total"] = len(job.scan.order)
    job.obj["status"] = "cancelling"
    job.obj["cancelling_at"] = wall(now)
    job.deadline = now + double.config.batch_cancelling_s
    await advance(double, job, _surface(request, job))
    return json_response(job.obj)


@api("batch_list")
async def list_batches(double: Double, request: web.Request) -> web.Response:
    await _advance_all(double, request)
    try:
        limit = min(max(int(request.query.get("limit", "20")), 1), 100)
    except ValueError:
        raise ApiError(400, "'limit' must be an integer.", param="limit") from None
    newest = [job.obj for job in reversed(double.store.batches.values())]
    start = 0
    after = request.query.get("after")
    if after is not None:
        ids = [obj["id"] for obj in newest]
        if after not in ids:
            raise ApiError(400, f"No batch found with id '{after}'.", param="after")
        start = ids.index(after) + 1
    return json_response(list_page(newest, start, limit))


def add_routes(app: web.Application, surfaces: dict[str, Surface]) -> None:
    """Serve the Files and Batch APIs, answering lines for the endpoints in ``surfaces``."""
    app[SURFACES] = surfaces
    files.add_routes(app.router)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", retrieve_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
