"""The Files and Batches calls of the Batch API route, through the openai SDK.

Output and error files are streamed line by line (a 50,000-line file is never held whole);
input files are uploaded from disk as an open file, which the HTTP client sends in chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import openai

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


def create(client: openai.OpenAI, job_id: str, file_id: str, endpoint: str) -> Any:
    return client.batches.create(
        input_file_id=file_id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata={JOB_KEY: job_id, FILE_KEY: file_id},
    )


def find_batch(client: openai.OpenAI, job_id: str, file_id: str, since: float) -> Any | None:
    """The batch created for this file, if one was (newest first, back to `since`)."""
    for batch in client.batches.list(limit=100):
        meta = batch.metadata or {}
        if meta.get(JOB_KEY) == job_id and meta.get(FILE_KEY) == file_id:
            return batch
        if batch.input_file_id == file_id:
            return batch
        if batch.created_at < since - CLOCK_SLACK_S:
            return None
    return None


def retrieve(client: openai.OpenAI, batch_id: str) -> Any:
    return client.batches.retrieve(batch_id)


def cancel(client: openai.OpenAI, batch_id: str) -> Any:
    return client.batches.cancel(batch_id)


def lines(client: openai.OpenAI, file_id: str) -> Iterator[str]:
    """The lines of a file, as they arrive."""
    with client.files.with_streaming_response.content(file_id) as response:
        for line in response.iter_lines():
            if line.strip():
                yield line
