"""A run or a worker on `--provider local`: its settings, its server, and the stand-in
provider of a worker that has none."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from worker.local.install import check_installed, model_path
from worker.local.server import LocalServer, Say
from worker.models import FAILED, JobSpec, Row
from worker.profile import Profile
from worker.providers.base import Thread, Turn
from worker.retry import Retrier
from worker.settings import Settings


def _say_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _model_label(settings: Settings, server: LocalServer | None) -> str:
    # The server answers with its one model whatever name is sent; name it truthfully.
    if settings.model:
        return settings.model
    if server is not None:
        return server.alias
    if settings.local_model:
        return Path(settings.local_model).name.removesuffix(".gguf")
    return settings.provider  # the provider's own name: nothing better is known


def start_server(settings: Settings, say: Say) -> LocalServer:
    """Check the install and the model, then start a server and wait until it is ready."""
    if settings.local_model:  # a wrong path is the first thing to hear of
        model_path(settings)
    check_installed()
    server = LocalServer(
        model_path(settings, say),
        port=settings.local_port,
        ctx=settings.local_ctx,
        threads=settings.local_threads,
        parallel=settings.local_parallel,
        log_dir=Path(settings.state_dir),
    )
    server.start(settings.local_start_timeout_s, say)
    return server


def prepare_run(settings: Settings, quiet: bool = False, say: Say | None = None) -> Settings:
    """Settings for `askbatch run --provider local`: a server started here (embedded mode) or
    one given by --base-url; distributed jobs are answered by each worker's own server.
    What it says goes to `say` (stderr unless `quiet`)."""
    say = say or ((lambda msg: None) if quiet else _say_stderr)
    if settings.broker_url and not settings.base_url:
        say("local provider: rows are answered by workers started with --provider local")
        return settings.with_(model=_model_label(settings, None))
    server = None if settings.base_url else start_server(settings, say)
    return settings.with_(
        base_url=server.base_url if server else settings.base_url,
        model=_model_label(settings, server),
        concurrency=_within_slots(server, settings.concurrency, "concurrency", say),
        # A request given up on goes on generating in the server, and a retry may wait for a
        # slot behind it: so a request may take as long as its row.
        request_timeout_s=max(settings.request_timeout_s, settings.timeout_s),
    )


def _within_slots(server: LocalServer | None, concurrency: int, name: str, say: Say) -> int:
    """No more rows in flight than the server has slots: more would only wait in its queue."""
    if server is None or concurrency <= server.slots:
        return concurrency
    say(
        f"the local model server answers {server.slots} requests at once: "
        f"{name} {concurrency} → {server.slots}"
    )
    return server.slots


def cap_answers(profile: Profile, settings: Settings) -> Profile:
    """Answers on the local model stop at local_max_tokens, unless the profile says otherwise:
    a small model may otherwise go on until its context is full."""
    if profile.max_output_tokens:
        return profile
    return replace(profile, max_output_tokens=settings.local_max_tokens)


def prepare_worker(settings: Settings) -> Settings:
    """Settings for `askbatch worker --provider local`: this host's own server (or the shared
    one given by --base-url), as many tasks at a time as the server has slots."""
    server = None if settings.base_url else start_server(settings, _say_stderr)
    concurrency = settings.worker_concurrency
    return settings.with_(
        base_url=server.base_url if server else settings.base_url,
        worker_concurrency=_within_slots(server, concurrency, "worker concurrency", _say_stderr),
    )


class NoLocalServer:
    """The provider for a local job on a worker that has no local server: each row fails
    with what to do, rather than asking some other API."""

    MESSAGE = (
        "this worker has no local model server: start workers for --provider local jobs with "
        "`askbatch worker --provider local` (or give the job --base-url of a shared server)"
    )

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def open_thread(self, retrier: Retrier) -> Thread:
        return Thread()

    def ask(self, thread: Thread, row: Row, retrier: Retrier, *args: object) -> Turn:
        return Turn(FAILED, error=self.MESSAGE)
