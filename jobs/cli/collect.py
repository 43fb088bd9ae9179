"""`askbatch collect JOB`: write a job's answers CSV from the rows done so far."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs import control
from jobs.cli.parser import overrides
from jobs.csvout import check_output_path, write_job
from jobs.record import check_worksheet
from worker.fatal import is_halt
from worker.models import COMPLETED
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(overrides(args)), args.job)
    sheet = check_worksheet(job.record, job.id)
    out = args.output or Path(job.record.output)
    check_output_path(out, sheet.path, args.overwrite)
    stop = job.store.stopped(job.id)
    reason = f"not asked: {stop[1]}" if is_halt(stop) else ""
    write_job(job.store, job.spec, sheet, out, sanitize=not args.no_sanitize, pending_reason=reason)
    progress = job.store.progress(job.id)
    left = job.spec.total - progress.done
    print(
        f"job {job.id}: {progress.done} of {job.spec.total} rows have a result"
        + (f"; {left} without one are written `pending`" if left else ""),
        file=sys.stderr,
    )
    print(f"answers: {out}", file=sys.stderr)
    return 0 if progress.by_status.get(COMPLETED, 0) == job.spec.total else 1
