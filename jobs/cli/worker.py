"""`askbatch worker`: a Celery worker (threads) that answers the tasks of distributed jobs."""

from __future__ import annotations

import argparse
import os

from jobs import control
from jobs.cli.parser import overrides
from worker import local, runtime
from worker.errors import ConfigError
from worker.providers import registry
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    settings = Settings.load(overrides(args))
    if not settings.broker_url:
        raise ConfigError(
            "`askbatch worker` needs a broker: set ASKBATCH_BROKER_URL or --broker "
            "redis://HOST:6379/0"
        )
    if registry.get(settings.provider).local_server:
        settings = local.prepare_worker(settings)
    runtime.configure(settings)
    from worker import app as celery_app

    app = celery_app.configure(settings)
    control.connect_store(settings)
    name = args.hostname or f"askbatch-{os.getpid()}@%h"
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.worker_concurrency}",
            f"--loglevel={args.loglevel}",
            "-Q",
            "askbatch",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0
