"""The `askbatch` command line: every command's arguments, apart from what the commands do.

`build_parser` is the whole grammar; `overrides` turns the parsed flags into Settings fields.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from worker.providers import registry
from worker.settings import Settings


def _settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--provider",
        choices=registry.names(),
        help=f"API surface (default: {registry.DEFAULT}; docs/providers.md)",
    )
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
    p.add_argument(
        "--service-tier",
        dest="service_tier",
        metavar="auto|default|flex|priority",
        help="the API's service tier for every run; flex: batch prices, slower answers",
    )
    p.add_argument(
        "--batch",
        action="store_true",
        default=None,
        help="ask through the Batch API: half price, answers within 24 hours "
        "(--provider responses or chat)",
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


def _grade_flags(p: argparse.ArgumentParser, judge: bool = True) -> None:
    """The answer key (jobs/grade.py, docs/grading.md)."""
    p.add_argument(
        "--expected",
        metavar="COLUMN",
        help="the column holding each row's answer key (default: `expected`, if there is one); "
        "graded rows get `correct` and `grade_note`",
    )
    p.add_argument(
        "--grade-field",
        dest="grade_field",
        metavar="FIELD",
        help="structured answers: grade `answer.FIELD` against the key",
    )
    if judge:
        p.add_argument(
            "--grade-with",
            dest="grade_with",
            metavar="MODEL",
            help="ask MODEL to judge the rows the key does not decide exactly (free text)",
        )


def _local_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--local-model",
        dest="local_model",
        metavar="NAME|PATH",
        help="--provider local: the model to serve: qwen2.5-coder-1.5b (the bundled default), "
        "smollm2 (small: the local-small extra) or a GGUF file",
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
    run.add_argument("--concurrency", type=int, help="most runs in flight, embedded (default 256)")
    run.add_argument("--encoding", help="input encoding (default: UTF-8, else CP949 if it fits)")
    run.add_argument(
        "--no-sanitize",
        action="store_true",
        help="write answers that look like spreadsheet formulas as they are",
    )
    run.add_argument(
        "-q", "--quiet", action="store_true", help="no progress; only errors and the summary"
    )
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
    _grade_flags(run)

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
        help="server the CSVs were answered by: prices older CSVs (self-hosted, etc.) and "
        "names rows a gateway's list price priced",
    )
    _grade_flags(rep, judge=False)
    rep.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="COLUMN",
        help="with an answer key: the HTML report's right/wrong chart by this column too",
    )

    _job_commands(sub)

    serve = sub.add_parser("serve", help="a web page and JSON API to start and follow jobs")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); every request needs the page's token",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--broker", dest="broker_url", help="redis:// URL: list its jobs, send new ones to workers"
    )
    serve.add_argument(
        "--concurrency", type=int, help="most runs in flight per embedded job (default 256)"
    )

    worker = sub.add_parser("worker", help="run a Celery worker for distributed jobs")
    worker.add_argument("--broker", dest="broker_url", help="redis:// URL (or ASKBATCH_BROKER_URL)")
    worker.add_argument(
        "--concurrency",
        dest="worker_concurrency",
        type=int,
        help="threads, i.e. the most runs in flight (default 64)",
    )
    worker.add_argument(
        "--provider",
        choices=registry.names(),
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

    status = job_parser("status", "a job's rows by status, its tokens and cost so far")
    status.add_argument(
        "--watch",
        action="store_true",
        help="follow the job live (the progress bar, or a line every few seconds when not a "
        "terminal) until it ends or Ctrl-C",
    )
    status.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="with --watch: seconds between looks (default 0.5 in a terminal, 5 otherwise)",
    )
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
    resume.add_argument(
        "-q", "--quiet", action="store_true", help="no progress; only errors and the summary"
    )
    job_parser("cancel", "stop a job: no new run starts, rows not started end `cancelled`")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags: every parsed argument named like a Settings field
    (argparse's `dest`). Flags left out are None and fall through to env and defaults."""
    return {f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)}
