"""The `askbatch` command. `main(argv)` returns the exit code, so tests call it directly.

Exit codes: 0 every row completed; 1 the CSV was written but some rows did not complete;
2 bad input, usage or configuration, or the API refused the key, the model or a setting every
row sends (worker/fatal: the rows not asked stay `pending`, for `askbatch resume`); 3 a
spending limit stopped the job: the spending cap (--max-cost; rows not started are `skipped`)
or the account's own credit or quota (rows not asked are `pending`); 130 interrupted.

`parser.py` holds every command's arguments; each command is one module here, a thin layer
over plain functions of jobs/ and worker/ that another front end can call as well.
"""

from __future__ import annotations

import logging
import sys

from jobs.cli import cancel, collect, estimate, report, resume, run, serve, status, worker
from jobs.cli.parser import build_parser
from worker import local
from worker.errors import AskbatchError

COMMANDS = {
    "run": run.command,
    "worker": worker.command,
    "status": status.command,
    "collect": collect.command,
    "resume": resume.command,
    "cancel": cancel.command,
    "estimate": estimate.command,
    "report": report.command,
    "serve": serve.command,
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
