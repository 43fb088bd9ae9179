"""Batch lines and the JSONL files that carry them.

A line is the body a synchronous run would send for the row, as the provider's own
`BatchLines` builds it (worker/providers/base.py), with the thread's earlier turns as input
messages instead of a server-side conversation: OpenAI does not document `conversation` or
`previous_response_id` inside a batch. Its `custom_id` is `JOB:ROW:ATTEMPT`, so results are
joined on it, never on order.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.models import Row
from worker.providers import registry
from worker.providers.base import JobContext

# The API takes files up to 200 MB; stay under it with room for the multipart framing.
MAX_FILE_BYTES = 190 * 1024 * 1024


def custom_id(job_id: str, index: int, attempt: int) -> str:
    return f"{job_id}:{index}:{attempt}"


def parse_custom_id(value: str) -> tuple[str, int, int] | None:
    """(job, row, attempt), or None for an id askbatch did not write."""
    job, _, rest = value.rpartition(":")
    job, _, index = job.rpartition(":")
    if not job or not index.isdigit() or not rest.isdigit():
        return None
    return job, int(index), int(rest)


class LineBuilder:
    """The request bodies of one job, for its provider's endpoint."""

    def __init__(self, job: JobContext) -> None:
        self.job = job
        provider = registry.get(job.spec.provider)
        self.url = provider.batch_endpoint
        self.wire = provider.lines()
        self.static = self.wire.static_params(job)

    def body(
        self, row: Row, history: list[dict[str, Any]], items: Sequence[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        """`history`: the thread's earlier turns as user/assistant messages; `items`: this
        turn's tool calls and their outputs so far (worker/batch/toolrounds.py)."""
        return self.wire.body(self.job, self.static, row, history, items)

    def line(
        self,
        row: Row,
        attempt: int,
        history: list[dict[str, Any]],
        items: Sequence[dict[str, Any]] = (),
    ) -> bytes:
        return (
            json.dumps(
                {
                    "custom_id": custom_id(self.job.spec.job_id, row.index, attempt),
                    "method": "POST",
                    "url": self.url,
                    "body": self.body(row, history, items),
                },
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )


@dataclass
class LineFile:
    """A JSONL file written to disk: one model's lines, and the (row, attempt) of each."""

    path: str
    model: str
    rows: list[list[int]] = field(default_factory=list)
    size: int = 0


def write_files(
    lines: Iterable[tuple[str, int, int, bytes]],
    max_lines: int,
    directory: str | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[LineFile]:
    """Write `(model, row, attempt, line)` to JSONL files of one model each, at most
    `max_lines` lines and `max_bytes` bytes; yields each file once it is closed (the caller
    uploads it, then deletes it). Only the open files are held, as files: never all lines.
    """
    open_files: dict[str, tuple[LineFile, Any]] = {}
    try:
        for model, index, attempt, line in lines:
            current = open_files.get(model)
            if current is not None and (
                len(current[0].rows) >= max_lines or current[0].size + len(line) > max_bytes
            ):
                current[1].close()
                del open_files[model]
                yield current[0]
                current = None
            if current is None:
                fd, path = tempfile.mkstemp(prefix="askbatch-", suffix=".jsonl", dir=directory)
                current = (LineFile(path, model), os.fdopen(fd, "wb"))
                open_files[model] = current
            current[1].write(line)
            current[0].rows.append([index, attempt])
            current[0].size += len(line)
        while open_files:
            _, (done, handle) = open_files.popitem()
            handle.close()
            yield done
    finally:
        for done, handle in open_files.values():  # abandoned part way: leave nothing behind
            handle.close()
            os.unlink(done.path)
