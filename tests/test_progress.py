"""What a person sees while a job runs, end to end through the real `askbatch`: the plain
line in a log, the live bar in a (pseudo-)terminal, nothing with -q, and `askbatch status
--watch` following a distributed job on real workers and an embedded one from another
process. The numbers shown are checked against the answers CSV the job wrote."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from decimal import Decimal

from jobs.progress import duration
from tests.conftest import (
    API_KEY,
    ROOT,
    askbatch,
    askbatch_command,
    base_env,
    start_workers,
    write_csv,
)
from tests.jobtools import Background, fresh_db, read_rows
from worker.pricing import usd

MODEL = "tutor"
PRICES = f'[models."{MODEL}"]\ninput = 1000\noutput = 2000\n'  # dollars per million tokens
PLAIN = re.compile(
    r"^(\d+)/(\d+) rows done, (\d+) not completed, ([\d,]+) tokens, \S+; (.*?), "
    r"(\$[\d.,]+|\$0) so far, (\d+) failed, (\d+) retries"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Totals:
    """What the answers CSV adds up to, as the progress should show it."""

    rows: int
    tokens: int
    cost: str
    failed: int
    retries: int

    @classmethod
    def of(cls, path) -> Totals:
        got = read_rows(path)
        return cls(
            rows=len(got),
            tokens=sum(int(r["total_tokens"] or 0) for r in got),
            cost=usd(sum((Decimal(r["cost_usd"] or 0) for r in got), Decimal(0))),
            failed=sum(r["status"] in ("failed", "incomplete", "expired") for r in got),
            retries=sum(max(0, int(r["attempts"]) - 1) for r in got),
        )


def _sheet(tmp_path, n, sleep=0.3):
    """n rows: two of them retried twice after a 500, one failed, each taking `sleep` s."""
    rows = []
    for i in range(n):
        marker = "[[500:2]]" if i in (1, 2) else "[[fail]]" if i == 3 else ""
        rows.append([f"r{i}", f"question {i} {marker} [[sleep:{sleep}]]"])
    return write_csv(tmp_path / "sheet.csv", ["id", "question"], rows)


def _run_args(tmp_path, sheet, out, concurrency=2) -> list[str]:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    args = ["run", str(sheet), "-o", str(out), "--provider", "chat", "--model", MODEL]
    return [*args, "--prices", str(prices), "--concurrency", str(concurrency)]


def _plain_lines(text: str) -> list[re.Match]:
    return [m for line in text.splitlines() if (m := PLAIN.match(line))]


def _check_final(m: re.Match, want: Totals) -> None:
    done, total, _, tokens, speed, cost, failed, retries = m.groups()
    assert (int(done), int(total)) == (want.rows, want.rows), m.group(0)
    assert int(tokens.replace(",", "")) == want.tokens, m.group(0)
    assert cost == want.cost and speed == "all rows done", m.group(0)
    assert (int(failed), int(retries)) == (want.failed, want.retries), m.group(0)


def test_plain_line_when_not_a_terminal(tmp_path, api):
    out = tmp_path / "out.csv"
    env = base_env(tmp_path, api)
    run = askbatch(_run_args(tmp_path, _sheet(tmp_path, 40), out), env, out)
    assert run.code == 1, run.stderr  # the [[fail]] row
    want = Totals.of(out)
    assert (want.failed, want.retries) == (1, 4) and want.cost != "$0"
    lines = _plain_lines(run.stderr)
    assert len(lines) >= 3, run.stderr  # the first look, one 5 s later at least, the end
    _check_final(lines[-1], want)
    # Lines in between: rows done only go up, and once measured, a rate and a time left.
    done = [int(m.group(1)) for m in lines]
    assert done == sorted(done) and done[0] < 40, done
    measured = [m.group(5) for m in lines[1:-1]]
    assert measured and all(re.fullmatch(r"[\d.]+ rows/s, .+ left", s) for s in measured), lines
    assert "\r" not in run.stderr and "\x1b[" not in run.stderr, "no terminal codes in a log"
    assert API_KEY not in run.stderr + run.stdout


def _in_pty(args: list[str], env: dict[str, str], timeout: float = 180) -> tuple[int, str]:
    """Run the real askbatch with a pseudo-terminal 160 columns wide as its stdout/stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [*askbatch_command(), *args],
        cwd=ROOT,
        env=env | {"TERM": "xterm-256color"},
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError as e:  # EIO: the child closed the terminal
            if e.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode("utf-8", errors="replace")


def test_bar_in_a_terminal(tmp_path, api):
    out = tmp_path / "out.csv"
    env = base_env(tmp_path, api)
    code, raw = _in_pty(_run_args(tmp_path, _sheet(tmp_path, 16, sleep=0.2), out), env)
    assert code == 1, raw
    want = Totals.of(out)
    text = ANSI.sub("", raw)
    # Redrawn in place: several frames, the last one with every row done and the cost.
    frames = re.findall(r"(\d+)/16 rows", text)
    assert len(set(frames)) >= 2 and frames[-1] == "16", frames
    assert f"{want.cost} so far" in text, text
    assert f"{want.failed} failed, {want.retries} retries" in text, text
    assert f"{want.tokens:,} tokens" in text
    assert not _plain_lines(text), "the terminal gets the bar, not the log line"
    assert "answers: " in text and "16 of 16 rows" in text, "the summary after the bar"


def test_quiet_shows_no_progress_only_the_summary(tmp_path, api):
    out = tmp_path / "out.csv"
    env = base_env(tmp_path, api)
    run = askbatch([*_run_args(tmp_path, _sheet(tmp_path, 6, sleep=0), out), "-q"], env, out)
    assert run.code == 1, run.stderr
    assert "rows done" not in run.stderr and not run.stderr.startswith("job "), run.stderr
    assert "6 of 6 rows: 5 completed, 1 failed" in run.stderr
    assert run.stderr.rstrip().endswith(f"answers: {out}"), run.stderr
    assert run.stdout == ""


def test_watch_follows_a_distributed_job_to_the_end(tmp_path, api, redis_server):
    url = fresh_db(redis_server.url, 13)
    env = base_env(tmp_path, api) | {"ASKBATCH_BROKER_URL": url}
    out = tmp_path / "out.csv"
    workers = start_workers(env, 2, tmp_path, concurrency=1)  # 2 rows at a time: 6 s at least
    try:
        run = Background.start(_run_args(tmp_path, _sheet(tmp_path, 40), out), env, tmp_path / "r")
        job = run.job_id()
        watch = subprocess.run(
            [*askbatch_command(), "status", job, "--watch", "--interval", "0.5"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.wait() == 1, run.text()
    finally:
        workers.stop()
    assert watch.returncode == 0, watch.stderr
    assert watch.stderr == "", watch.stderr
    first, *_ = watch.stdout.splitlines()
    assert first.startswith(f"job {job} (distributed, redis://"), watch.stdout
    lines = _plain_lines(watch.stdout)
    done = [int(m.group(1)) for m in lines]
    assert done == sorted(done) and done[0] < 40, f"followed it live: {done}"
    _check_final(lines[-1], Totals.of(out))
    assert f"job {job}: finished" in watch.stdout
    assert "rows: 40 of 40 have a result: 39 completed, 1 failed" in watch.stdout, watch.stdout
    assert "  retries: 4\n" in watch.stdout
    assert API_KEY not in watch.stdout + workers.log_text()


def test_watch_an_embedded_job_from_another_process_and_stop_with_ctrl_c(tmp_path, api):
    out = tmp_path / "out.csv"
    env = base_env(tmp_path, api)
    sheet = _sheet(tmp_path, 30, sleep=1.0)
    run = Background.start(_run_args(tmp_path, sheet, out, 1), env, tmp_path / "run.log")
    job = run.job_id()
    try:
        watch = subprocess.Popen(
            [*askbatch_command(), "status", job, "--watch", "--interval", "0.3"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = watch.stdout.readline()
        assert first.startswith(f"job {job} (embedded, "), first
        seen = watch.stdout.readline()
        assert PLAIN.match(seen), seen
        watch.send_signal(signal.SIGINT)
        rest, err = watch.communicate(timeout=30)
    finally:
        run.kill(signal.SIGINT)
    assert watch.returncode == 0, err
    assert "Traceback" not in err and err == "", err
    assert f"stopped watching; the job goes on: `askbatch status {job} --watch`" in rest


def test_durations_for_people():
    assert [duration(s) for s in (0, 44.6, 186, 7500, 3 * 86400 + 4 * 3600 + 59)] == [
        "0s",
        "45s",
        "3m 06s",
        "2h 05m",
        "3d 4h",
    ]
