"""`askbatch run`: answer every question of a worksheet (or, with --dry-run, estimate it)."""

from __future__ import annotations

import argparse

from jobs import batches, control
from jobs.cli import estimate, resume
from jobs.cli.finish import execute, say_for
from jobs.cli.parser import overrides
from jobs.csvout import check_output_path, default_output_path
from jobs.intake import open_worksheet
from jobs.record import record_for
from jobs.submit import load_job_profile, start_job, task_groups
from worker import local, runtime
from worker.settings import Settings, mask_url


def command(args: argparse.Namespace) -> int:
    settings = Settings.load(overrides(args))
    if args.retry_failed:
        return resume.retry_failed(settings, args)
    sheet = open_worksheet(args.input, encoding=args.encoding)
    if args.dry_run:
        return estimate.show(settings, sheet)
    out = args.output or default_output_path(args.input)
    check_output_path(out, args.input, args.overwrite)
    settings.require_credentials()
    profile = load_job_profile(settings)
    if settings.provider == "local":
        settings = local.prepare_run(settings, quiet=args.quiet)
        profile = local.cap_answers(profile, settings)
    runtime.configure(settings)
    if settings.broker_url:
        # Celery is imported only to publish: an embedded job never needs it.
        from worker import app as celery_app

        celery_app.configure(settings)
    say = say_for(args)

    if sheet.encoding.replace("-sig", "") != "utf-8":
        say(f"{args.input}: read as {sheet.encoding}")
    store = control.connect_store(settings)
    record = record_for(sheet, out, control.mode_of(settings))
    spec = start_job(settings, sheet, store, profile)
    if spec.batch:
        batches.prepare(store, spec, task_groups(sheet))

    mode = (
        f"on workers via {mask_url(settings.broker_url)}"
        if settings.broker_url
        else (f"embedded, {settings.concurrency} at a time")
    )
    if spec.batch:
        mode += ", through the Batch API (answers within 24 hours)"
    say(f"job {spec.job_id}: {spec.total} rows, {spec.provider} provider, {spec.model}, {mode}")
    if spec.max_cost:
        held = f"{spec.answer_tokens:,} answer tokens"
        say(f"spending cap ${spec.max_cost}; each row in flight holds its prompt + {held}")
    control.remember(store, spec, record)
    with store.hold(spec.job_id):
        return execute(settings, store, spec, sheet, task_groups(sheet), out, args, say)
