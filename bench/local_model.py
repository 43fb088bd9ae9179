"""The local model's numbers: its file size, the server's start time, seconds per answer.

    python -m bench.local_model                       # data/worksheet.csv on the bundled model
    python -m bench.local_model --threads 1 --starts 5 --worksheet my.csv

Starts the server through worker.local (as `--provider local` does) a few times for the start
time, then runs the worksheet with the real `askbatch run --provider local` and reads the
answers CSV. The load average is printed with the numbers: on a shared machine llama.cpp's
speed depends on it more than on anything else.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker import local
from worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ("--provider", "local")


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_model")
    parser.add_argument("--worksheet", type=Path, default=ROOT / "data" / "worksheet.csv")
    parser.add_argument("--model", default="", help="GGUF file (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=0, help="0: llama.cpp's default")
    parser.add_argument("--starts", type=int, default=3, help="server starts to time")
    args = parser.parse_args()

    local.check_installed()
    tmp = Path(tempfile.mkdtemp(prefix="askbatch-local-bench-"))
    settings = Settings(local_model=args.model, local_threads=args.threads, state_dir=str(tmp))
    model = local.model_path(settings)
    size = model.stat().st_size
    print(f"model: {model.name}, {size:,} bytes ({size / 2**20:.1f} MiB)")
    print(f"before: {load()}")

    starts = []
    for _ in range(args.starts):
        with local.start_server(settings, lambda msg: None) as server:
            starts.append(server.ready_s)
    print("server start to ready: " + ", ".join(f"{s:.2f}s" for s in starts))

    out = tmp / "answers.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ASKBATCH_"))}
    env.update(ASKBATCH_STATE_DIR=str(tmp / "state"))
    if args.model:
        env["ASKBATCH_LOCAL_MODEL"] = args.model
    if args.threads:
        env["ASKBATCH_LOCAL_THREADS"] = str(args.threads)
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "jobs", "run", str(args.worksheet), "-o", str(out), "-q", *LOCAL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    if not out.exists():
        sys.exit(f"askbatch run failed ({run.returncode}):\n{run.stderr}")
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"after: {load()}")
    print(f"{'id':>4} {'status':<10} {'prompt':>6} {'answer':>6} {'seconds':>8} {'tok/s':>6}")
    for r in rows:
        s, n, p = float(r["latency_s"]), int(r["completion_tokens"]), r["prompt_tokens"]
        print(f"{r['id']:>4} {r['status']:<10} {p:>6} {n:>6} {s:8.2f} {n / s:6.1f}")
    secs = [float(r["latency_s"]) for r in rows]
    tokens = sum(int(r["completion_tokens"]) for r in rows)
    print(
        f"{len(rows)} rows in {wall:.1f}s (the command, server start included); per answer: "
        f"mean {statistics.mean(secs):.2f}s, median {statistics.median(secs):.2f}s; "
        f"{tokens / sum(secs):.1f} answer tokens/s"
    )


if __name__ == "__main__":
    main()
