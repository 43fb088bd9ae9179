"""The Files and Batches calls of the Batch API route, through the openai SDK.

Output and error files are streamed line by line (a 50,000-line file is never held whole);
input files are uploaded from disk as an open file, which the HTTP client sends in chunks.
A batch is read as plain JSON (records.BatchRecord.follow), not as the SDK's typed model:
servers leave fields out or send them null, and a missing field must not stop a look.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import openai

from worker.fatal import error_fields, one_line

# The metadata every batch of a job is created with: how a process that died between
# creating a batch and recording it finds the batch again (find_batch).
JOB_KEY = "askbatch_job"
FILE_KEY = "askbatch_file"
# How far back to look for such a batch: created after its file was uploaded, give or take
# the clocks of two machines.
CLOCK_SLACK_S = 600


def upload(client: openai.OpenAI, path: str) -> str:
    with open(path, "rb") as handle:
        uploaded = client.files.create(file=(os.path.basename(path), handle), purpose="batch")
    return uploaded.id


def create(client: openai.OpenAI, job_id: str, file_id: str, endpoint: str) -> dict[str, Any]:
    return _json(
        client.batches.with_raw_response.create(
            input_file_id=file_id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            metadata={JOB_KEY: job_id, FILE_KEY: file_id},
        )
    )


def find_batch(client: openai.OpenAI, job_id: str, file_id: str, since: float) -> Any | None:
    """The batch created for this file, if one was (newest first, back to `since`)."""
    for batch in client.batches.list(limit=100):
        meta = getattr(batch, "metadata", None)
        meta = meta if isinstance(meta, dict) else {}
        if meta.get(JOB_KEY) == job_id and meta.get(FILE_KEY) == file_id:
            return batch.to_dict()
        if getattr(batch, "input_file_id", None) == file_id:
            return batch.to_dict()
        created = getattr(batch, "created_at", None)
        if isinstance(created, int | float) and created < since - CLOCK_SLACK_S:
            return None
    return None


def retrieve(client: openai.OpenAI, batch_id: str) -> dict[str, Any]:
    return _json(client.batches.with_raw_response.retrieve(batch_id))


def cancel(client: openai.OpenAI, batch_id: str) -> None:
    client.batches.with_raw_response.cancel(batch_id)


def _json(raw: Any) -> dict[str, Any]:
    """A batch's JSON object; a body that is no JSON object reads as an empty one (a look
    then keeps what it knew, and a batch that never reads well is given up in time)."""
    try:
        body = raw.http_response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


_ENDPOINT = re.compile(r"/v1/[A-Za-z0-9_/.-]*[A-Za-z0-9_]")


def endpoint_refused(exc: BaseException, url: str) -> str | None:
    """The message for a server whose Batch API refuses the endpoint of the job's lines
    (a 400 on POST /batches about `endpoint`), naming the endpoints it takes; else None."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 404, 422):
        return None
    try:
        path = exc.request.url.path.rstrip("/")
    except AttributeError:
        return None
    code, _, param, message = error_fields(exc)
    message = message or (exc.body if isinstance(exc.body, str) else "") or str(exc.message)
    if not path.endswith("/batches") or not (param == "endpoint" or "endpoint" in message):
        return None
    taken = list(dict.fromkeys(e for e in _ENDPOINT.findall(message) if e != url))
    said = f"it takes {', '.join(taken)}" if taken else "it did not say which it takes"
    fix = (
        "run with --provider chat (its lines go to /v1/chat/completions), or without --batch"
        if url != "/v1/chat/completions"
        else "run without --batch"
    )
    detail = one_line(f"HTTP {exc.status_code}" + (f" {code}" if code else "") + f": {message}")
    return (
        f"the server's Batch API does not take {url} lines ({said}): {fix}. The server said: "
        f"{detail}"
    )


def lines(client: openai.OpenAI, file_id: str) -> Iterator[str]:
    """The lines of a file, as they arrive."""
    with client.files.with_streaming_response.content(file_id) as response:
        for line in response.iter_lines():
            if line.strip():
                yield line
