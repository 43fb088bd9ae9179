"""`askbatch serve`: a web page and JSON API to start, follow and collect jobs (jobs/web)."""

from __future__ import annotations

import argparse

from jobs.cli.parser import overrides
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    from jobs.web.server import serve  # the web stack only for this command

    serve(Settings.load(overrides(args)), args.host, args.port)
    return 0
