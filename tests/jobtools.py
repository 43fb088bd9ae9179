"""Helpers for the tests of jobs that are interrupted, resumed, cancelled or hit by faults:
a background `askbatch` process, waiting on a condition, a Redis database of a test's own."""

from __future__ import annotations

import csv
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.conftest import ROOT, askbatch_command
from worker.models import JobSpec
from worker.store import LocalStore, RedisStore

JOB_ID = re.compile(r"job (\d{8}-\d{6}-[0-9a-f]{6})")


def db_url(url: str, db: int) -> str:
    """The same Redis server, another database: a test's queue and keys of its own."""
    return re.sub(r"/\d+$", f"/{db}", url) if re.search(r"/\d+$", url) else f"{url}/{db}"


def fresh_db(url: str, db: int) -> str:
    url = db_url(url, db)
    redis.Redis.from_url(url).flushdb()
    return url


def backend_store(request, tmp_path: Path, db: int):
    """For a fixture with params ["redis", "sqlite"]: a store of that backend, empty."""
    if request.param == "redis":
        url = fresh_db(request.getfixturevalue("redis_server").url, db)
        return RedisStore(url, lease_s=2.0)
    return LocalStore(tmp_path)


def new_job(store, total: int = 6):
    """A job of `total` rows created in `store`, with an id of its own."""
    spec = JobSpec(
        job_id=f"20250101-000000-{time.monotonic_ns() % 0xFFFFFF:06x}",
        provider="chat",
        model="m",
        total=total,
    )
    store.create_job(spec)
    return spec


def wait_for(what: str, check: Callable[[], object], timeout: float = 120, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Background:
    """An `askbatch` command running in the background, its stderr going to a file."""

    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, args: list[str], env: dict[str, str], log: Path) -> Background:
        proc = subprocess.Popen(
            [*askbatch_command(), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        return cls(proc, log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def job_id(self, timeout: float = 60) -> str:
        def found():
            if self.proc.poll() is not None and not JOB_ID.search(self.text()):
                raise AssertionError(f"askbatch exited {self.proc.returncode}:\n{self.text()}")
            m = JOB_ID.search(self.text())
            return m.group(1) if m else None

        return wait_for("the job id", found, timeout)

    def wait(self, timeout: float = 240) -> int:
        return self.proc.wait(timeout)

    def kill(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(30)


def sqlite_statuses(state_dir: Path, job_id: str) -> dict[int, str]:
    """Row index -> status stored so far for an embedded job (read-only, while it runs)."""
    path = state_dir / "jobs" / f"{job_id}.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return dict(db.execute("SELECT idx, status FROM results").fetchall())
        except sqlite3.OperationalError:  # tables not made yet
            return {}


def redis_statuses(url: str, job_id: str) -> dict[int, str]:
    from worker.models import Result

    r = redis.Redis.from_url(url, decode_responses=True)
    raw = r.hgetall(f"askbatch:{job_id}:results")
    return {int(k): Result.from_stored(v, int(k)).status for k, v in raw.items()}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def asked(api) -> dict[str, int]:
    """How many times the double answered each question."""
    return api.stats()["questions"]


@dataclass
class Said:
    code: int
    stdout: str
    stderr: str


class InProcess:
    """The real CLI entry point, `jobs.cli.main`, run in the test's own process with a test's
    environment: for the quick commands (status, collect, cancel, refusals), which would
    otherwise spend most of their time starting Python."""

    def __init__(self, env: dict[str, str], monkeypatch, capsys, cwd: Path) -> None:
        self.capsys = capsys
        monkeypatch.chdir(cwd)  # no .env but the test's own
        for name in list(os.environ):
            if name.startswith(("OPENAI_", "ASKBATCH_")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            if name.startswith(("OPENAI_", "ASKBATCH_")):
                monkeypatch.setenv(name, value)

    def __call__(self, *args: str) -> Said:
        from jobs.cli import main

        self.capsys.readouterr()
        code = main([str(a) for a in args])
        out = self.capsys.readouterr()
        return Said(code, out.out, out.err)
