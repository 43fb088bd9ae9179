"""What a job remembers about its worksheet, so that it can be collected or resumed later.

Results are stored by row position, so a job can only be finished against the very file it
started from: the record holds the worksheet's absolute path, the encoding it was read with and
a hash of its bytes, and `check_worksheet` refuses a file that has changed since. No setting and
no secret is kept here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from jobs.intake import Worksheet, open_worksheet
from worker.errors import InputError

EMBEDDED = "embedded"
DISTRIBUTED = "distributed"


@dataclass(frozen=True)
class JobRecord:
    input: str  # absolute path of the worksheet
    encoding: str
    sha256: str
    size: int
    output: str  # absolute path of the answers CSV the run was asked to write
    mode: str  # EMBEDDED or DISTRIBUTED
    created: str  # local time, ISO 8601

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise KeyError(f"job record lacks {', '.join(missing)}")
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def fingerprint(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror}") from None
    return digest.hexdigest(), size


def input_key(path: Path) -> str:
    """The key under which the latest job of a worksheet path is found (`run --retry-failed`)."""
    return hashlib.sha256(os.fsencode(Path(path).resolve())).hexdigest()[:32]


def record_for(sheet: Worksheet, output: Path, mode: str) -> JobRecord:
    sha, size = fingerprint(sheet.path)
    return JobRecord(
        input=str(Path(sheet.path).resolve()),
        encoding=sheet.encoding,
        sha256=sha,
        size=size,
        output=str(Path(output).resolve()),
        mode=mode,
        created=datetime.now().isoformat(timespec="seconds"),
    )


def check_worksheet(record: JobRecord, job_id: str) -> Worksheet:
    """The job's worksheet, read as it was; InputError if it is gone or has changed."""
    path = Path(record.input)
    if not path.is_file():
        raise InputError(
            f"{path}: the worksheet of job {job_id} is no longer there; put it back (unchanged) "
            "to collect or resume the job"
        )
    sha, size = fingerprint(path)
    if (sha, size) != (record.sha256, record.size):
        raise InputError(
            f"{path}: the worksheet changed since job {job_id} started (its content differs), so "
            "its stored answers cannot be matched to the rows any more. Restore the file as it "
            "was, or start a new job with `askbatch run`."
        )
    return open_worksheet(path, encoding=record.encoding)
