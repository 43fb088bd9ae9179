"""Benchmark group `hostile`: what hostile input costs (issue 23), in memory, CPU and disk.

    python -m bench hostile                          # all three, about two minutes
    python -m bench hostile line --line-mb 200       # one of: line, uploads, rows
    python -m bench hostile --askbatch /other/venv/bin/askbatch   # another askbatch

line     a worksheet with one line of --line-mb MB: `askbatch estimate`'s exit code, peak RSS
         and time (the line is refused; the memory it costs is the point)
uploads  `askbatch serve`, and eight parallel uploads of 45 MB with no question column: the
         server's RSS before and its peak after, the answers, and what is left in uploads/
         (with the default limit, four are received at once and the others get 429)
rows     `askbatch serve`, and one upload of 2.5 M tiny rows (5 MB): the answer, its time and
         the server's CPU for it
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil

from bench.__main__ import ROOT, free_port, peak_mb, wait_child


def _env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASKBATCH_", "OPENAI_"))}
    env.update(OPENAI_API_KEY="sk-bench", ASKBATCH_STATE_DIR=str(work / "state"), **extra)
    env.pop("PYTHONPATH", None)  # this checkout comes from the command (-m jobs, run from it)
    return env


def line(command: list[str], work: Path, line_mb: int) -> None:
    sheet = work / "line.csv"
    with sheet.open("w") as f:
        f.write("id,question\n1,")
        for _ in range(line_mb):
            f.write("x" * 1_000_000)
        f.write("\n")
    started = time.monotonic()
    proc = subprocess.Popen(
        [*command, "estimate", str(sheet)],
        cwd=ROOT,
        env=_env(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    code, cpu, peak = wait_child(proc)
    said = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
    print(f"line {line_mb} MB: exit {code}, peak RSS {peak:.0f} MB, CPU {cpu:.1f} s, "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    print(f"  {said[-1][:160] if said else ''}")
    sheet.unlink()


class Served:
    """`askbatch serve` with a token of the benchmark's."""

    def __init__(self, command: list[str], work: Path, **env: str) -> None:
        self.token = secrets.token_urlsafe(24)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*command, "serve", "--port", str(port)],
            cwd=ROOT,
            env=_env(work, ASKBATCH_UI_TOKEN=self.token, **env),
            stdout=(work / "serve.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        self.uploads = work / "state" / "uploads"
        for _ in range(300):
            try:
                if self.client().get("/api/config").status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.1)
        self.process = psutil.Process(self.proc.pid)

    def client(self) -> httpx2.Client:
        headers = {"authorization": f"Bearer {self.token}"}
        return httpx2.Client(base_url=self.url, timeout=600, headers=headers)

    def upload(self, data: bytes) -> tuple[int, str]:
        with self.client() as c:
            r = c.post("/api/estimate", files={"worksheet": ("sheet.csv", data)})
        return r.status_code, r.text[:120]

    def left_mb(self) -> float:
        files = self.uploads.rglob("*") if self.uploads.exists() else []
        return sum(f.stat().st_size for f in files if f.is_file()) / 1e6

    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def uploads(command: list[str], work: Path, max_upload_mb: str) -> None:
    server = Served(command, work, ASKBATCH_UI_MAX_UPLOAD_MB=max_upload_mb)
    # No question column: the intake refuses each, after reading all of it.
    data = b"prompt\n" + b"a line of forty-five megabytes in all..\n" * 1_125_000
    before = server.rss_mb()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.upload(data), range(8)))
    codes = sorted(code for code, _ in answers)
    print(f"uploads 8 x {len(data) / 1e6:.0f} MB: answers {codes}; server RSS {before:.0f} MiB "
          f"before, peak {peak_mb(server.proc.pid):.0f} MiB; "
          f"{server.left_mb():.0f} MB left in uploads/")  # fmt: skip
    print(f"  {answers[0][1]}")
    server.stop()


def rows(command: list[str], work: Path, _: str) -> None:
    server = Served(command, work)
    data = b"question\n" + b"a\n" * 2_500_000
    cpu = server.process.cpu_times()
    started = time.monotonic()
    code, text = server.upload(data)
    after = server.process.cpu_times()
    used = after.user + after.system - cpu.user - cpu.system
    print(f"rows 2.5 M tiny rows ({len(data) / 1e6:.0f} MB): answer {code} in "
          f"{time.monotonic() - started:.1f} s, server CPU {used:.1f} s")  # fmt: skip
    print(f"  {text}")
    server.stop()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench hostile", description=__doc__)
    parser.add_argument("what", nargs="*", default=["line", "uploads", "rows"])
    parser.add_argument("--line-mb", type=int, default=1000)
    parser.add_argument("--askbatch", help="an askbatch executable (default: this checkout)")
    parser.add_argument(
        "--max-upload-mb",
        default="50",
        help="ASKBATCH_UI_MAX_UPLOAD_MB (100: all eight uploads are received at once)",
    )
    args = parser.parse_args(argv)
    command = [args.askbatch] if args.askbatch else [sys.executable, "-m", "jobs"]
    for what in args.what:
        with tempfile.TemporaryDirectory(prefix="askbatch-bench-") as tmp:
            if what == "line":
                line(command, Path(tmp), args.line_mb)
            else:
                {"uploads": uploads, "rows": rows}[what](command, Path(tmp), args.max_upload_mb)
