"""`askbatch resume JOB`, and `run --retry-failed`: ask the rows of a job without a result."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs import batches, control
from jobs.cli.finish import execute, say_for
from jobs.cli.parser import overrides
from jobs.csvout import check_output_path
from jobs.record import check_worksheet
from jobs.submit import pending_groups, task_groups
from worker.errors import ConfigError
from worker.settings import Settings, mask_url


def command(args: argparse.Namespace) -> int:
    settings = Settings.load(overrides(args))
    return resume(control.locate(settings, args.job), args, args.retry_failed)


def retry_failed(settings: Settings, args: argparse.Namespace) -> int:
    """`run --retry-failed`: resume the worksheet's newest job, asking its failed rows again."""
    job_id = control.latest_job(settings, args.input)
    if job_id is None:
        where = settings.state_dir + (
            f" or {mask_url(settings.broker_url)}" if settings.broker_url else ""
        )
        raise ConfigError(
            f"{args.input}: no earlier job of this worksheet in {where}; "
            "run it without --retry-failed first"
        )
    return resume(control.locate(settings, job_id), args, retry_failed=True)


def resume(job: control.Job, args: argparse.Namespace, retry_failed: bool) -> int:
    say = say_for(args)
    sheet = check_worksheet(job.record, job.id)
    out = args.output or Path(job.record.output)
    check_output_path(out, sheet.path, args.overwrite)
    settings = job.settings
    settings.with_(base_url=job.spec.base_url).require_credentials()
    if job.spec.provider == "local" and not settings.broker_url:
        raise ConfigError(
            f"job {job.id} ran on a local model server that is gone; resuming --provider local "
            "jobs is not supported yet: run the worksheet again"
        )
    with job.store.hold(job.id):
        pending, dropped = control.prepare_resume(job, sheet, retry_failed)
        if job.spec.batch:
            batches.ensure_prepared(job.store, job.spec, task_groups(sheet))
        again = f" ({dropped} of them ended failed, expired or cancelled before)" if dropped else ""
        say(f"job {job.id} ({job.where}): {len(pending)} of {job.spec.total} rows to ask{again}")
        groups = pending_groups(sheet, pending)
        return execute(settings, job.store, job.spec, sheet, groups, out, args, say)
