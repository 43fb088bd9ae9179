"""`askbatch collect JOB`: write a job's answers CSV from the rows done so far."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs import control
from jobs.cli.parser import overrides
from jobs.csvout import check_output_path
from worker.models import COMPLETED
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(overrides(args)), args.job)
    out = args.output or Path(job.record.output)
    check_output_path(out, Path(job.record.input), args.overwrite)
    progress = control.collect(job, out, sanitize=not args.no_sanitize)
    left = job.spec.total - progress.done
    print(
        f"job {job.id}: {progress.done} of {job.spec.total} rows have a result"
        + (f"; {left} without one are written `pending`" if left else ""),
        file=sys.stderr,
    )
    print(f"answers: {out}", file=sys.stderr)
    return 0 if progress.by_status.get(COMPLETED, 0) == job.spec.total else 1
