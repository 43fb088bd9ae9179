"""`askbatch run`: answer every question of a worksheet (or, with --dry-run, estimate it)."""

from __future__ import annotations

import argparse

from jobs import job
from jobs.cli import estimate, terminal
from jobs.cli.parser import overrides
from jobs.intake import open_worksheet
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    settings = Settings.load(overrides(args))
    if args.retry_failed:  # the worksheet's newest job, its failed rows asked again
        return terminal.resume(job.latest(settings, args.input), args, retry_failed=True)
    if args.dry_run:
        return estimate.show(settings, open_worksheet(args.input, encoding=args.encoding))
    start = job.Start(
        args.input,
        settings,
        output=args.output,
        encoding=args.encoding,
        overwrite=args.overwrite,
        sanitize=not args.no_sanitize,
    )
    ui = terminal.Terminal(quiet=args.quiet)
    return terminal.finish(job.start(start, ui), ui)
