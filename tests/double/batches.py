"""The Batch API's routes: create, retrieve, cancel and list batches over files uploaded with
the Files API (``files``); a file is validated by ``batchfile``, and a batch moved on by
``batchrun``, whenever a request touches it.
"""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web

from . import batchfile, files
from .batchrun import CANCELLABLE, ENQUEUED, BatchJob, Surface, advance, start_cancelling
from .core import ApiError, Double, api, json_body, json_response, list_page, rate_limited
from .state import Config, new_id, now_s

MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
SURFACES = web.AppKey("batch_surfaces", dict)


OGX_ENDPOINTS = ("/v1/chat/completions",)  # OGX also takes completions and embeddings lines


def new_object(body: dict, model: str | None, config: Config) -> dict:
    created = now_s()
    ogx = bool(config.batch_ogx)  # no expiry, and no counts before validation
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
        "expires_at": None if ogx else created + int(config.batch_window_s),
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": None if ogx else {"total": 0, "completed": 0, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": body.get("metadata"),
    }


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


def _check_create(request: web.Request, body: dict, config: Config) -> Surface:
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            raise ApiError(400, f"Missing required parameter: '{name}'.", param=name)
    surfaces = request.app[SURFACES]
    if config.batch_ogx and body["endpoint"] not in OGX_ENDPOINTS:
        raise ApiError(
            400,
            f"Invalid endpoint: {body['endpoint']}. Supported values: {', '.join(OGX_ENDPOINTS)}.",
            param="endpoint",
        )
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
    _check_metadata(body.get("metadata"))
    return surfaces[body["endpoint"]]


def _check_metadata(metadata: object) -> None:
    """OpenAI's metadata rules: at most 16 string pairs, keys to 64 characters, values to 512."""
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA:
        raise ApiError(
            400,
            f"Invalid 'metadata': expected an object with at most {MAX_METADATA} properties.",
            param="metadata",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise ApiError(
                400,
                f"Invalid 'metadata': the key {key[:20]!r}... is longer than "
                f"{MAX_METADATA_KEY} characters.",
                param="metadata",
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise ApiError(
                400,
                f"Invalid 'metadata.{key}': expected a string of at most "
                f"{MAX_METADATA_VALUE} characters.",
                param=f"metadata.{key}",
            )


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


def _check_enqueued(double: Double, scan: batchfile.Scan) -> None:
    """Fail the file if its input tokens would pass the organisation's enqueued-token limit
    beside those of the batches still validating, in progress or finalizing."""
    limit = double.config.batch_enqueued_tokens
    if limit <= 0:
        return
    enqueued = sum(
        job.scan.tokens
        for job in double.store.batches.values()
        if job.status in ENQUEUED and not job.scan.errors
    )
    if enqueued + scan.tokens > limit:
        message = (
            f"Enqueued token limit reached for {scan.model} in organization org-double. "
            f"Limit: {limit:,} enqueued tokens. "
            "Please try again once some in_progress batches have been completed."
        )
        scan.errors.append(batchfile.error("token_limit_exceeded", message))


@api("batch_create")
async def create_batch(double: Double, request: web.Request) -> web.Response:
    body = await json_body(request)
    surface = _check_create(request, body, double.config)
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
    # The batch reads its own link to the bytes: deleting the input file does not stop it.
    own_input = files.new_path()
    os.link(stored.path, own_input)
    try:
        # A 200 MB file takes seconds to read: in a thread, so other requests are answered.
        scan = await asyncio.to_thread(
            batchfile.scan, own_input, body["endpoint"], surface.dialogue, config, stored.id
        )
    except BaseException:
        own_input.unlink()
        raise
    if not scan.errors:
        _check_enqueued(double, scan)
    job = BatchJob(new_object(body, scan.model, config), own_input, scan, time.monotonic())
    if not scan.errors and config.batch_expire_next > 0:
        config.batch_expire_next -= 1
        job.expire_after = len(scan.order) // 2
    if not scan.errors and config.batch_stall_next > 0:
        config.batch_stall_next -= 1
        job.stalled = True
    double.store.batches[job.obj["id"]] = job
    double.stats.batches["created"] += 1
    return json_response(job.obj)  # validating, as OpenAI answers: the next look moves it on


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
    start_cancelling(double, job)
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
