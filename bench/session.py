"""What the benchmark groups that run alone share: one double and one Redis for all their
cases, stopped however the run ends (SIGTERM included), and their workers stopped per case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.__main__ import Bench, load, peak_mb


def run_all(
    cases: Iterable[Any], run_one: Callable[[Bench, Any], dict], line: Callable[[dict], str]
) -> None:
    """Run each case on one Bench, printing `line` of each outcome as it comes."""
    # Stopped with SIGTERM: still stop the double, Redis and the workers (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"{os.cpu_count()} cores; load before: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="askbatch-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            for case in cases:
                print(line(run_one(bench, case)), flush=True)
        finally:
            bench.close()
    print(f"load after: {load()}")


def stop_workers(bench: Bench, procs: list[subprocess.Popen]) -> list[float]:
    """Stop a case's workers; returns each one's peak memory in MB."""
    worker_mb = [peak_mb(w.pid) for w in procs]
    for w in procs:
        w.terminate()
    for w in procs:
        w.wait(30)
    bench.workers = []
    return worker_mb
