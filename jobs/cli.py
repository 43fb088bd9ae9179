"""The `askbatch` command. `main(argv)` returns the exit code, so tests call it directly.

Exit codes: 0 every row completed; 1 the CSV was written but some rows did not complete;
2 bad input, usage or configuration (nothing was sent); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import openai
import redis

from jobs.csvout import check_output_path, default_output_path, write_answers
from jobs.intake import open_worksheet
from jobs.progress import ProgressLine, summary
from jobs.submit import (
    EmbeddedRun,
    create_job,
    load_job_profile,
    run_distributed,
    task_groups,
    wait,
)
from worker import app as celery_app
from worker import local, runtime
from worker.errors import AskbatchError, ConfigError
from worker.models import COMPLETED
from worker.retry import short_error
from worker.settings import PROVIDERS, Settings, mask_url

log = logging.getLogger("askbatch")


def _settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provider", choices=PROVIDERS, help="API surface (default: responses)")
    p.add_argument("--model", help="model for every row without its own `model` cell")
    p.add_argument("--base-url", dest="base_url", help="OpenAI-compatible base URL")
    p.add_argument("--instructions", help="system instructions for every run")
    p.add_argument("--assistant-id", dest="assistant_id", help="reuse this assistant")
    p.add_argument("--broker", dest="broker_url", help="redis:// URL: run on askbatch workers")
    p.add_argument("--timeout", dest="timeout_s", type=float, help="seconds a row may take")
    p.add_argument("--max-attempts", dest="max_attempts", type=int, help="tries per API call")
    p.add_argument(
        "--assistant",
        dest="assistant_profile",
        metavar="PROFILE.toml",
        help="assistant profile: model, instructions, sampling, tools, answer schema",
    )
    p.add_argument(
        "--continue-on-error",
        dest="continue_on_error",
        action="store_true",
        default=None,
        help="ask a thread's later turns even after one failed",
    )


def _local_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--local-model",
        dest="local_model",
        metavar="PATH",
        help="--provider local: GGUF model to serve (default: the bundled SmolLM2-135M)",
    )
    p.add_argument(
        "--local-port",
        dest="local_port",
        type=int,
        help="--provider local: port of its server on 127.0.0.1 (default: any free one)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="askbatch",
        description="Answer a CSV of questions with an LLM assistant, with usage per row.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="answer every question of a worksheet")
    run.add_argument("input", type=Path, help="CSV with a `question` column")
    run.add_argument("-o", "--output", type=Path, help="answers CSV (default: <input>.answers.csv)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    run.add_argument("--concurrency", type=int, help="runs in flight in embedded mode (default 8)")
    run.add_argument("--encoding", help="input encoding (default: UTF-8, else CP949 if it fits)")
    run.add_argument(
        "--no-sanitize",
        action="store_true",
        help="write answers that look like spreadsheet formulas as they are",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    _settings_flags(run)
    _local_flags(run)

    worker = sub.add_parser("worker", help="run a Celery worker for distributed jobs")
    worker.add_argument("--broker", dest="broker_url", help="redis:// URL (or ASKBATCH_BROKER_URL)")
    worker.add_argument(
        "--concurrency",
        dest="worker_concurrency",
        type=int,
        help="threads, i.e. runs in flight (default 64)",
    )
    worker.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="local: start a local model server on this host for --provider local jobs",
    )
    worker.add_argument(
        "--base-url",
        dest="base_url",
        help="with --provider local: a shared local model server to use instead of starting one",
    )
    _local_flags(worker)
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("-n", "--hostname", help="Celery node name (default askbatch-PID@host)")
    return parser


def _overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in names}


SETTING_FLAGS = (
    "provider",
    "model",
    "base_url",
    "instructions",
    "assistant_id",
    "broker_url",
    "timeout_s",
    "max_attempts",
    "concurrency",
    "worker_concurrency",
    "local_model",
    "local_port",
)


def _open_store(settings: Settings):
    store = runtime.store()
    if settings.broker_url:
        try:
            store.redis.ping()
        except redis.RedisError as exc:
            raise ConfigError(
                f"cannot reach Redis at {mask_url(settings.broker_url)}: {exc}. "
                "Start redis-server, or fix --broker / ASKBATCH_BROKER_URL."
            ) from None
    return store


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.load(_overrides(args, SETTING_FLAGS))
    sheet = open_worksheet(args.input, encoding=args.encoding)
    out = args.output or default_output_path(args.input)
    check_output_path(out, args.input, args.overwrite)
    settings.require_credentials()
    profile = load_job_profile(settings)
    if settings.provider == "local":
        settings = local.prepare_run(settings, quiet=args.quiet)
    runtime.configure(settings)
    celery_app.configure(settings)
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))

    if sheet.encoding.replace("-sig", "") != "utf-8":
        say(f"{args.input}: read as {sheet.encoding}")
    store = _open_store(settings)
    try:
        spec = create_job(settings, sheet, store, profile)
    except openai.AuthenticationError as exc:
        msg = f"the API refused the key ({short_error(exc)}); check OPENAI_API_KEY"
        raise ConfigError(msg) from None
    except openai.OpenAIError as exc:
        raise ConfigError(f"could not set up the job: {short_error(exc)}") from None

    mode = (
        f"on workers via {mask_url(settings.broker_url)}"
        if settings.broker_url
        else (f"embedded, {settings.concurrency} at a time")
    )
    say(f"job {spec.job_id}: {spec.total} rows, {spec.provider} provider, {spec.model}, {mode}")
    t0 = time.monotonic()
    show = ProgressLine(quiet=args.quiet)
    groups = task_groups(sheet)
    try:
        if settings.broker_url:
            run_distributed(spec, groups)
            progress = wait(
                store,
                spec,
                show,
                on_idle=lambda: say(
                    f"\nwarning: no worker has picked up a task after "
                    f"{settings.idle_warning_s:g}s; is `askbatch worker` running against "
                    f"{mask_url(settings.broker_url)}?"
                ),
                idle_after_s=settings.idle_warning_s,
            )
        else:
            embedded = EmbeddedRun(spec, groups, settings.concurrency)
            progress = wait(store, spec, show, finished=embedded.finished)
    except KeyboardInterrupt:
        show.close()
        say(f"\ninterrupted; answered rows of job {spec.job_id} are kept in {store!r}")
        sys.stderr.flush()
        local.stop_all()
        os._exit(130)  # in-flight HTTP requests are abandoned, not waited for
    show.close()
    write_answers(
        sheet,
        lambda idx: store.get(spec.job_id, idx),
        out,
        sanitize=not args.no_sanitize,
        extra_columns=profile.answer_columns(),
    )
    say(summary(progress, time.monotonic() - t0))
    say(f"answers: {out}")
    return 0 if progress.by_status.get(COMPLETED, 0) == spec.total else 1


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings.load(_overrides(args, SETTING_FLAGS))
    if not settings.broker_url:
        raise ConfigError(
            "`askbatch worker` needs a broker: set ASKBATCH_BROKER_URL or --broker "
            "redis://HOST:6379/0"
        )
    if settings.provider == "local":
        settings = local.prepare_worker(settings)
    runtime.configure(settings)
    app = celery_app.configure(settings)
    _open_store(settings)
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


COMMANDS = {"run": cmd_run, "worker": cmd_worker}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="askbatch: %(levelname)s: %(message)s")
    try:
        with local.lifetime():  # a local model server never outlives the command
            return COMMANDS[args.command](args)
    except AskbatchError as exc:
        print(f"askbatch: error: {exc}", file=sys.stderr)
        return exc.exit_code


def entry() -> None:
    sys.exit(main())
