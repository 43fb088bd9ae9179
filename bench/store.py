"""Benchmark group `store`: what a large job's rows cost at its end: Redis, and the report.

    python -m bench store                      # 1,000,000 rows, about two minutes
    python -m bench store --rows 100000 --answer-chars 500

Saves N results through RedisStore.save_many (the workers' path: save.lua) into a fresh
redis-server and prints Redis's used memory per row and its RSS, with the size of one row as
stored and as it would be stored by name. A row: status completed, a short answer (or one of
--answer-chars), OpenAI-length conversation and response ids, usage, model, latency, tier and
cost, as a Responses run records it. Then writes those rows as an answers CSV (jobs/csvout)
and prints the peak RSS and time of `askbatch report` on it: the summary every run ends with.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import redis

from bench.__main__ import free_port
from jobs.csvout import write_answers
from jobs.intake import open_worksheet
from worker.models import COMPLETED, Result, Usage
from worker.store.redis import RedisStore

SERVER = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def result(i: int, answer_chars: int) -> Result:
    answer = f"The answer is {2 * i + 1}."
    if answer_chars:
        answer = (answer + " ") * (answer_chars // (len(answer) + 1) + 1)
        answer = answer[:answer_chars]
    return Result(
        index=i,
        status=COMPLETED,
        answer=answer,
        usage=Usage(28, 41, 69),
        model="gpt-5-mini-2025-08-07",
        thread_id=f"conv_{i:048x}",  # OpenAI's ids: a prefix and 48 hex digits
        run_id=f"resp_{i:048x}",
        latency_s=1.234,
        attempts=1,
        service_tier="default",
        cost_usd=Decimal("0.000089000"),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench store")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--answer-chars", type=int, default=0, help="0: a short answer")
    args = parser.parse_args(argv)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="askbatch-store-") as folder:
        server = subprocess.Popen(
            [*SERVER, "--port", str(port), "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            for _ in range(50):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            before = client.info("memory")["used_memory"]
            store, job, t0 = RedisStore(url), "20261202-000000-abcdef", time.monotonic()
            for start in range(0, args.rows, 2000):
                rows = range(start, min(start + 2000, args.rows))
                store.save_many(job, [result(i, args.answer_chars) for i in rows])
            took = time.monotonic() - t0
            memory = client.info("memory")
            one = result(args.rows // 2, args.answer_chars)
            print(
                f"{args.rows:,} rows saved in {took:.1f} s: Redis used "
                f"{(memory['used_memory'] - before) / args.rows:.0f} B a row, RSS "
                f"{memory['used_memory_rss'] / 1e6:.0f} MB; a row is {len(one.stored())} B "
                f"stored ({len(json.dumps(one.to_json()))} B by name)"
            )
            for key in sorted(client.scan_iter()):
                used = client.memory_usage(key, samples=0) or 0
                print(f"  {key.decode()}: {used / args.rows:.0f} B a row")
            report(store, job, args.rows, Path(folder))
        finally:
            server.terminate()
            server.wait(10)


def report(store: RedisStore, job: str, rows: int, folder: Path) -> None:
    questions = folder / "questions.csv"
    with questions.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question"])
        writer.writerows([f"q{i}", f"What is {i} plus {i + 1}?"] for i in range(rows))
    answers = folder / "answers.csv"
    t0 = time.monotonic()
    write_answers(open_worksheet(questions), lambda idx: store.get(job, idx), answers)
    wrote = time.monotonic() - t0
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "report", str(answers)], capture_output=True, text=True
    )
    took = time.monotonic() - t0
    # The report's: redis-server, not waited for yet, does not count.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"answers CSV ({answers.stat().st_size / 1e6:.0f} MB) written from Redis in {wrote:.1f} s; "
        f"`askbatch report` on it: exit {done.returncode}, {took:.1f} s, "
        f"peak RSS of the child processes {peak:.0f} MB"
    )
    print("  " + (done.stdout.splitlines() or ["(no output)"])[0])
