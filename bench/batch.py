"""Benchmark group `batch`: 100,000 rows through `--batch` against the double's Batch API.

    python -m bench batch                 # embedded, then one worker (about 3 minutes)
    python -m bench batch --rows 20000    # fewer rows

Each case runs `askbatch run --batch` (responses, 50,000 lines a file) and measures: the time
to build and upload the files (run start to the last batch created, as the double counts),
the time to the CSV written, every process's peak memory (the run command, the worker, the
double), and the CPU the askbatch processes use while they only wait: the double holds every
batch `validating` for --wait-s seconds, and the CPU of each process over that window is its
share of one core.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil

from bench import session
from bench.__main__ import Bench, peak_mb, wait_child, write_questions
from tests.double.fixture import BATCH_OPTIONS


def _cpu(procs: list[psutil.Process]) -> list[float]:
    out = []
    for p in procs:
        try:
            t = p.cpu_times()
            out.append(t.user + t.system)
        except psutil.NoSuchProcess:
            out.append(0.0)
    return out


def run_case(bench: Bench, workers: int, n: int, wait_s: float) -> dict:
    tag = f"batch-{workers}"
    src, dst = bench.work / f"{tag}.csv", bench.work / f"{tag}.answers.csv"
    write_questions(src, n)
    bench.double.reset()
    files = -(-n // 50_000)
    bench.double.configure(
        **(BATCH_OPTIONS | {"batch_validating_s": wait_s, "batch_lines_per_s": 0}), latency=0.0
    )
    env = bench.env(ASKBATCH_BATCH_POLL_S="5")
    procs: list[subprocess.Popen] = []
    if workers:
        env = bench.env(ASKBATCH_BROKER_URL=bench.broker, ASKBATCH_BATCH_POLL_S="5")
        procs = bench.workers = bench.start_workers(workers, 8, env)
    command = [sys.executable, "-m", "jobs", "run", str(src), "-o", str(dst), "--batch"]
    command += ["--provider", "responses", "--overwrite", "--quiet"]
    t0 = time.monotonic()
    proc = subprocess.Popen(command, cwd=bench.work, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    watched = [psutil.Process(proc.pid), *(psutil.Process(w.pid) for w in procs)]
    while bench.double.stats()["batches"].get("created", 0) < files:
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    uploaded_s = time.monotonic() - t0
    # Every batch is validating now, for wait_s: the askbatch processes only poll.
    time.sleep(1.0)
    c0, w0 = _cpu(watched), time.monotonic()
    time.sleep(max(1.0, wait_s - uploaded_s - 3.0))
    c1, w1 = _cpu(watched), time.monotonic()
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    code, _, run_mb = wait_child(proc)
    wall = time.monotonic() - t0
    worker_mb = session.stop_workers(bench, procs)
    done = 0
    if dst.exists():
        with dst.open(encoding="utf-8-sig") as f:
            done = sum(1 for line in f if ",completed," in line)
    return {
        "case": "embedded" if not workers else f"{workers} worker",
        "n": n,
        "code": code,
        "done": done,
        "upload_s": uploaded_s,
        "wall_s": wall,
        "after_wait_s": wall - wait_s,
        "waiting_cpu": [(b - a) / (w1 - w0) for a, b in zip(c0, c1, strict=True)],
        "run MB": run_mb,
        "worker MB": worker_mb,
        "double MB": peak_mb(bench.double.process.pid),
        "batches": bench.double.stats()["batches"],
        "err": err.strip().splitlines()[-1:] if code else "",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench batch", description=__doc__)
    parser.add_argument("cases", nargs="*", default=["embedded", "worker"])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--wait-s", type=float, default=40.0, help="seconds validating")
    args = parser.parse_args(argv)
    cases = [1 if case == "worker" else 0 for case in args.cases]
    session.run_all(cases, lambda bench, workers: run_case(bench, workers, args.rows,
                                                           args.wait_s), _line)  # fmt: skip


def _line(o: dict) -> str:
    workers = "/".join(f"{mb:.0f}" for mb in o["worker MB"]) or "-"
    cpu = "/".join(f"{c:.1%}" for c in o["waiting_cpu"])
    return (
        f"{o['case']:9} n={o['n']} exit={o['code']} done={o['done']} "
        f"build+upload={o['upload_s']:.1f}s wall={o['wall_s']:.1f}s "
        f"(after the {o['wall_s'] - o['after_wait_s']:.0f}s wait: {o['after_wait_s']:.1f}s) "
        f"cpu while waiting (run/worker)={cpu} peak MB run={o['run MB']:.0f} "
        f"workers={workers} double={o['double MB']:.0f} batches={o['batches']} {o['err']}"
    )


if __name__ == "__main__":
    main()
