"""The `askbatch` command. `main(argv)` returns the exit code, so tests call it directly.

Exit codes: 0 every row completed; 1 the CSV was written but some rows did not complete;
2 bad input, usage or configuration, or the API refused the key, the model or a setting every
row sends (worker/fatal: the rows not asked stay `pending`, for `askbatch resume`); 3 a
spending limit stopped the job: the spending cap (--max-cost; rows not started are `skipped`)
or the account's own credit or quota (rows not asked are `pending`); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import openai

# estimate, report and report_html are imported where used: they bring in pandas, which
# costs a `run` about half a second of start-up (python -m bench).
from jobs import control
from jobs.csvout import check_output_path, default_output_path, write_answers
from jobs.intake import Worksheet, open_worksheet
from jobs.progress import ProgressLine
from jobs.record import check_worksheet, record_for
from jobs.submit import (
    EmbeddedRun,
    create_job,
    load_job_profile,
    run_distributed,
    task_groups,
    wait,
)
from worker import local, pricing, runtime
from worker.errors import AskbatchError, ConfigError
from worker.fatal import Halt, classify, is_halt
from worker.limits import spending
from worker.models import CANCELLED, COMPLETED, JobSpec, Row
from worker.profile import Profile
from worker.retry import short_error
from worker.settings import DEFAULT_MODEL, PROVIDERS, Settings, mask_url
from worker.store import Store

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
    p.add_argument(
        "--rpm",
        metavar="N[,MODEL=N]",
        help="requests per minute for the whole job, shared by every worker (default: none)",
    )
    p.add_argument(
        "--tpm",
        metavar="N[,MODEL=N]",
        help="tokens per minute for the whole job, shared by every worker (default: none)",
    )


def _cost_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prices", metavar="PRICES.toml", help="price file: overrides and adds model prices"
    )
    p.add_argument(
        "--answer-tokens",
        dest="answer_tokens",
        metavar="N|LOW-HIGH",
        help="answer length assumed by the estimate and the cap (default 200-2000)",
    )
    p.add_argument(
        "--max-cost",
        dest="max_cost",
        metavar="USD",
        help="spending cap: no new row starts once it would be passed (exit code 3)",
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
    run.add_argument(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="go back to this worksheet's last job and ask again only its rows that ended "
        "failed, expired or cancelled (the job's own settings are kept)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print the cost estimate and stop; call no API"
    )
    _settings_flags(run)
    _local_flags(run)
    _cost_flags(run)

    est = sub.add_parser("estimate", help="what a worksheet would cost; calls no API")
    est.add_argument("input", type=Path, help="CSV with a `question` column")
    est.add_argument("--encoding", help="input encoding (default: UTF-8, else CP949 if it fits)")
    _settings_flags(est)
    _cost_flags(est)

    rep = sub.add_parser("report", help="usage and cost summary of answers CSVs, and charts")
    rep.add_argument("inputs", type=Path, nargs="+", metavar="answers.csv")
    rep.add_argument("--html", type=Path, metavar="REPORT.html", help="also write an HTML report")
    rep.add_argument("--overwrite", action="store_true", help="replace an existing HTML file")
    rep.add_argument(
        "--prices", metavar="PRICES.toml", help="price file, for CSVs written without cost_usd"
    )
    rep.add_argument(
        "--base-url",
        dest="base_url",
        help="server those older CSVs were answered by (prices them as self-hosted, etc.)",
    )

    _job_commands(sub)

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


def _job_commands(sub: Any) -> None:
    """status, collect, resume, cancel: coming back to a job by the id `run` printed."""

    def job_parser(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("job", help="the job id printed when the job started")
        p.add_argument(
            "--broker", dest="broker_url", help="redis:// URL, for a job that ran on workers"
        )
        return p

    def output_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", type=Path, help="answers CSV (default: the job's own)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
        p.add_argument(
            "--no-sanitize",
            action="store_true",
            help="write answers that look like spreadsheet formulas as they are",
        )

    job_parser("status", "a job's rows by status, its tokens and cost so far")
    output_flags(job_parser("collect", "write a job's answers CSV from the rows done so far"))
    resume = job_parser("resume", "ask the rows of a job that have no result yet")
    output_flags(resume)
    resume.add_argument(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="also ask again the rows that ended failed, expired or cancelled",
    )
    resume.add_argument("--concurrency", type=int, help="runs in flight for an embedded job")
    resume.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    job_parser("cancel", "stop a job: no new run starts, rows not started end `cancelled`")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags: every parsed argument named like a Settings field
    (argparse's `dest`). Flags left out are None and fall through to env and defaults."""
    return {f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)}


def _open_store(settings: Settings):
    return control.connect_store(settings)


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.load(_overrides(args))
    if args.retry_failed:
        return _retry_failed(settings, args)
    sheet = open_worksheet(args.input, encoding=args.encoding)
    if args.dry_run:
        return _estimate(settings, sheet)
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
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))

    if sheet.encoding.replace("-sig", "") != "utf-8":
        say(f"{args.input}: read as {sheet.encoding}")
    store = _open_store(settings)
    record = record_for(sheet, out, control.mode_of(settings))
    try:
        spec = create_job(settings, sheet, store, profile)
    except openai.OpenAIError as exc:
        model = settings.model or profile.model or DEFAULT_MODEL
        if halt := classify(
            exc, provider=settings.provider, base_url=settings.base_url, model=model
        ):
            error = AskbatchError(halt.message)
            error.exit_code = halt.exit_code
            raise error from None
        raise ConfigError(f"could not set up the job: {short_error(exc)}") from None

    mode = (
        f"on workers via {mask_url(settings.broker_url)}"
        if settings.broker_url
        else (f"embedded, {settings.concurrency} at a time")
    )
    say(f"job {spec.job_id}: {spec.total} rows, {spec.provider} provider, {spec.model}, {mode}")
    if spec.max_cost:
        held = f"{spec.answer_tokens:,} answer tokens"
        say(f"spending cap ${spec.max_cost}; each row in flight holds its prompt + {held}")
    control.remember(store, spec, record)
    with store.hold(spec.job_id):
        return _execute(settings, store, spec, sheet, task_groups(sheet), out, args, say)


def _execute(
    settings: Settings,
    store: Store,
    spec: JobSpec,
    sheet: Worksheet,
    groups: Iterator[list[Row]],
    out: Path,
    args: argparse.Namespace,
    say: Callable[[str], None],
) -> int:
    """Answer the rows of `groups` (a new job's, or what a resumed one lacks), wait for every
    row of the job, write the answers CSV; the exit code says how the rows ended."""
    t0 = time.monotonic()
    show = ProgressLine(quiet=args.quiet)
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
            embedded = EmbeddedRun(
                spec,
                groups,
                settings.concurrency,
                stopped=lambda: store.stopped(spec.job_id) is not None,
            )
            progress = wait(store, spec, show, finished=embedded.finished, wake=embedded.ended)
            control.finish_stopped(store, spec)
            progress = store.progress(spec.job_id)
    except KeyboardInterrupt:
        show.close()
        job = spec.job_id
        if settings.broker_url:
            say(
                f"\ninterrupted; job {job} goes on on the workers: `askbatch status {job}`, "
                f"`askbatch collect {job}` for the CSV, or `askbatch cancel {job}`"
            )
        else:
            say(f"\ninterrupted; the rows answered are kept: `askbatch resume {job}` asks the rest")
        sys.stderr.flush()
        local.stop_all()
        os._exit(130)  # in-flight HTTP requests are abandoned, not waited for
    show.close()
    if is_halt(halt := store.stopped(spec.job_id)):
        return _halted(Halt(*halt), store, spec, sheet, out, args, say)
    _write(store, spec, sheet, out, args)
    if (stop := store.stopped(spec.job_id)) and stop[0] == CANCELLED:
        say(f"job {spec.job_id} was cancelled: rows not started are `cancelled`")
    if not args.quiet:
        from jobs import report

        say(report.text(report.summarize(report.load(out)), time.monotonic() - t0))
    say(f"answers: {out}")
    if spending.is_cap_stop(store.stopped(spec.job_id)):
        say(f"the spending cap of ${spec.max_cost} stopped the job: rows not started are skipped")
        return 3
    return 0 if progress.by_status.get(COMPLETED, 0) == spec.total else 1


def _write(
    store: Store, spec: JobSpec, sheet: Worksheet, out: Path, args: argparse.Namespace, **kw: Any
) -> None:
    write_answers(
        sheet,
        lambda idx: store.get(spec.job_id, idx),
        out,
        sanitize=not args.no_sanitize,
        extra_columns=Profile.from_json(spec.profile).answer_columns(),
        **kw,
    )


def _halted(
    halt: Halt,
    store: Store,
    spec: JobSpec,
    sheet: Worksheet,
    out: Path,
    args: argparse.Namespace,
    say: Callable[[str], None],
) -> int:
    """An error no retry can mend stopped the job (worker/fatal): say the cause and the fix,
    and how to go on. The rows not asked stay `pending`; the CSV holds what was answered,
    and is not written when nothing could be (exit 2)."""
    progress = store.progress(spec.job_id)
    answered = progress.by_status.get(COMPLETED, 0)
    left = spec.total - progress.done
    print(f"askbatch: error: {halt.message}", file=sys.stderr)
    if halt.exit_code == 3 or answered:
        _write(store, spec, sheet, out, args, pending_reason=f"not asked: {halt.message}")
        say(f"answers so far: {out} ({answered} completed, {left} pending)")
    print(
        f"job {spec.job_id} stopped with {left} of {spec.total} rows not asked; once that is "
        f"fixed, `askbatch resume {spec.job_id}` asks them",
        file=sys.stderr,
    )
    return halt.exit_code


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    if getattr(args, "quiet", False):
        return lambda msg: None
    return lambda msg: print(msg, file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(_overrides(args)), args.job)
    print(control.status_report(job))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(_overrides(args)), args.job)
    sheet = check_worksheet(job.record, job.id)
    out = args.output or Path(job.record.output)
    check_output_path(out, sheet.path, args.overwrite)
    stop = job.store.stopped(job.id)
    reason = f"not asked: {stop[1]}" if is_halt(stop) else ""
    _write(job.store, job.spec, sheet, out, args, pending_reason=reason)
    progress = job.store.progress(job.id)
    left = job.spec.total - progress.done
    print(
        f"job {job.id}: {progress.done} of {job.spec.total} rows have a result"
        + (f"; {left} without one are written `pending`" if left else ""),
        file=sys.stderr,
    )
    print(f"answers: {out}", file=sys.stderr)
    return 0 if progress.by_status.get(COMPLETED, 0) == job.spec.total else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(_overrides(args)), args.job)
    print(control.cancel(job))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    settings = Settings.load(_overrides(args))
    return _resume(control.locate(settings, args.job), args, args.retry_failed)


def _retry_failed(settings: Settings, args: argparse.Namespace) -> int:
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
    return _resume(control.locate(settings, job_id), args, retry_failed=True)


def _resume(job: control.Job, args: argparse.Namespace, retry_failed: bool) -> int:
    say = _say(args)
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
        again = f" ({dropped} of them ended failed, expired or cancelled before)" if dropped else ""
        say(f"job {job.id} ({job.where}): {len(pending)} of {job.spec.total} rows to ask{again}")
        groups = control.pending_groups(sheet, pending)
        return _execute(settings, job.store, job.spec, sheet, groups, out, args, say)


def _estimate(settings: Settings, sheet) -> int:
    """Print what the worksheet would cost; nothing is sent, no job is made."""
    from jobs import estimate

    profile = load_job_profile(settings)
    prices = pricing.load_prices(settings.prices) if settings.prices else pricing.NO_PRICES
    est = estimate.estimate(
        sheet,
        model=settings.model or profile.model or DEFAULT_MODEL,
        instructions=settings.instructions or profile.instructions,
        provider=settings.provider,
        base_url=settings.base_url,
        prices=prices,
        answer_tokens=spending.answer_range(settings, profile.max_output_tokens),
    )
    cap = pricing.parse_usd(settings.max_cost, "--max-cost") if settings.max_cost else None
    print(estimate.text(est, cap))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    settings = Settings.load(_overrides(args))
    return _estimate(settings, open_worksheet(args.input, encoding=args.encoding))


def cmd_report(args: argparse.Namespace) -> int:
    from jobs import report, report_html

    prices = pricing.load_prices(args.prices) if args.prices else pricing.NO_PRICES
    if args.html is not None:
        check_output_path(args.html, args.inputs[0], args.overwrite)
    parts = []
    for path in args.inputs:
        answers = report.load(path, prices, args.base_url or "")
        parts.append((answers, report.summarize(answers)))
    total = None
    if len(parts) > 1:
        total = report.summarize(report.combine([a for a, _ in parts]))
    blocks = [(f"== {s.name} ==\n" if total else "") + report.text(s) for _, s in parts]
    if total is not None:
        blocks.append(f"== {total.name} ==\n" + report.text(total))
    print("\n\n".join(blocks))
    if args.html is not None:
        report_html.write(args.html, report_html.page(parts, total))
        print(f"HTML report: {args.html}", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings.load(_overrides(args))
    if not settings.broker_url:
        raise ConfigError(
            "`askbatch worker` needs a broker: set ASKBATCH_BROKER_URL or --broker "
            "redis://HOST:6379/0"
        )
    if settings.provider == "local":
        settings = local.prepare_worker(settings)
    runtime.configure(settings)
    from worker import app as celery_app

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


COMMANDS = {
    "run": cmd_run,
    "worker": cmd_worker,
    "status": cmd_status,
    "collect": cmd_collect,
    "resume": cmd_resume,
    "cancel": cmd_cancel,
    "estimate": cmd_estimate,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="askbatch: %(levelname)s: %(message)s")
    try:
        with local.lifetime():  # a local model server never outlives the command
            return COMMANDS[args.command](args)
    except AskbatchError as exc:
        print(f"askbatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before the job's rows were sent (that case is handled there)
        print("askbatch: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
