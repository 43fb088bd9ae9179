"""The throughput benchmark: askbatch against the project's HTTP double, and a baseline.

    python -m bench                  # every group below, about 30 minutes on 2 cores
    python -m bench latency cpu      # some groups; --scale 0.2 for a quick look

Groups:
  latency  latency 1 s, concurrency 64, 2,000 questions: responses, chat, assistants;
           embedded, 1 worker and 4 workers (16 threads each), and the asyncio baseline
  cpu      latency 200 ms, concurrency 64, 5,000 questions: the machine's CPU is the bound
  rpm      the double allows 600 requests/min; 4 workers with --rpm 600
  tpm      the double allows 12,000 tokens/min; 4 workers with --tpm 12000
  large    100,000 rows, one worker, no latency: peak memory of each process
  local    (alone) the local model: tokens and rows/s on 1 and N slots, cold start
  answers  (alone) the local model: 12 school-maths questions, how many it gets right
  autolimit  (alone) no tuning flags: the limit learned from headers (bench/autolimit.py)
  batch    (alone) 100,000 rows through --batch: upload time, memory, CPU while waiting
  store    (alone) 1,000,000 results saved into Redis: bytes a row (bench/store.py)
  grading  (alone) grading against a key: import cost, the teacher's table, rows/s
  hostile  (alone) a 1 GB line, 8 parallel 45 MB uploads, 2.5 M tiny rows (bench/hostile.py)

Columns: q/s over the whole command (start to CSV written); steady = q/s between the first
and the last request the double saw (start-up and the final report left out); ideal =
concurrency / latency, or the rate limit when lower; eff = q/s / ideal (s.eff: steady / ideal);
x base = q/s / the baseline's q/s at the same load; cpu ms/q = user+system CPU of every
askbatch process (the run command and the workers) per question; peak MB = the high-water RSS
of the run command / of the busiest worker; 429s = as counted by the double; double / redis =
their CPU as a share of one core.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.cases import Case, Outcome, cases
from tests.double.fixture import start_double

ROOT = Path(__file__).resolve().parents[1]


def write_questions(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question"])
        for i in range(count):
            writer.writerow([f"q{i}", f"What is {i} plus {i + 1}? Explain it in one line."])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_child(proc: subprocess.Popen) -> tuple[int, float, float]:
    """(exit code, CPU seconds, peak RSS in MB) of a finished child, from wait4."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.double = start_double(timeout=30, check_contract=False)  # measure, not check
        self.double_proc = psutil.Process(self.double.process.pid)
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
        self.redis_proc = psutil.Process(self.redis.pid)
        self.broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.workers: list[subprocess.Popen] = []
        time.sleep(0.5)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASKBATCH_", "OPENAI_"))}
        env.update(
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=self.double.base_url,
            ASKBATCH_STATE_DIR=str(self.work / "state"),
            PYTHONPATH=str(ROOT),
            **extra,
        )
        return env

    def close(self) -> None:
        for w in self.workers:
            w.kill()
            w.wait()
        self.double.stop()
        self.redis.terminate()
        self.redis.wait()

    def start_workers(self, k: int, threads: int, env: dict[str, str]) -> list[subprocess.Popen]:
        procs, logs = [], []
        for i in range(k):
            log = self.work / f"worker{i}.log"
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "jobs", "worker"),
                        *("--concurrency", str(threads), "-n", f"bench{i}@%h"),
                        *("--loglevel", "WARNING"),
                    ],
                    cwd=self.work,
                    env=env,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                )
            )
        # Ready once each worker's consumer is connected: Celery then logs nothing at
        # WARNING, so ask the broker how many consumers listen on the queue.
        deadline = time.monotonic() + 60
        import redis

        r = redis.Redis(port=self.redis_port)
        while time.monotonic() < deadline:
            clients = r.client_list()
            blocked = sum(1 for c in clients if c.get("cmd") in ("brpop", "blpop"))
            if blocked >= k:
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited: " + logs[0].read_text()[-2000:])
            time.sleep(0.2)
        return procs

    def run(self, case: Case) -> Outcome:
        out = Outcome(case)
        tag = f"{case.group}-{case.provider}-{case.mode}{case.workers or ''}"
        src = self.work / f"{tag}.csv"
        dst = self.work / f"{tag}.answers.csv"
        write_questions(src, case.n)
        self.double.reset()
        self.double.configure(latency=case.latency, rpm=case.rpm, tpm=case.tpm)
        env = self.env()
        workers: list[subprocess.Popen] = []
        if case.mode == "workers":
            env = self.env(ASKBATCH_BROKER_URL=self.broker)
            threads = case.concurrency // case.workers
            workers = self.workers = self.start_workers(case.workers, threads, env)
        if case.mode == "baseline":
            command = [sys.executable, "-m", "bench.baseline", str(src), str(dst)]
            command += ["--provider", case.provider, "--concurrency", str(case.concurrency)]
        else:
            command = [sys.executable, "-m", "jobs", "run", str(src), "-o", str(dst)]
            command += ["--provider", case.provider, "--overwrite", "-q"]
            command += ["--concurrency", str(case.concurrency)]
            if case.rpm:
                command += ["--rpm", str(case.rpm)]
            if case.tpm:
                command += ["--tpm", str(case.tpm)]
        wprocs = [psutil.Process(w.pid) for w in workers]
        w_cpu0 = [cpu_s(p) for p in wprocs]
        d_cpu0, r_cpu0 = cpu_s(self.double_proc), cpu_s(self.redis_proc)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            command, cwd=self.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # The double's stats list every question: too big to poll for the large job.
        sampler = Sampler(self.double) if case.n <= 20_000 else None
        code, run_cpu, out.run_mb = wait_child(proc)
        out.wall_s = time.monotonic() - t0
        steady_rps = sampler.stop() if sampler else 0.0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if code not in (0, 1):
            out.notes.append(f"exit {code}: {err.strip()[-300:]}")
        worker_cpu = sum(cpu_s(p) - c for p, c in zip(wprocs, w_cpu0, strict=True))
        out.worker_mb = max((peak_mb(w.pid) for w in workers), default=0.0)
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        self.workers = []
        stats = self.double.stats()
        out.double_cpu = (cpu_s(self.double_proc) - d_cpu0) / out.wall_s
        out.redis_cpu = (cpu_s(self.redis_proc) - r_cpu0) / out.wall_s
        out.n429 = stats["status_429"]
        out.requests = sum(stats["requests"].values())
        out.cpu_ms_q = (run_cpu + worker_cpu) * 1000 / case.n
        out.qps = case.n / out.wall_s
        out.steady_qps = steady_rps * case.n / max(1, out.requests)
        out.completed, out.tokens_q = completed(dst, case.mode)
        if out.completed < case.n:
            out.notes.append(f"only {out.completed} of {case.n} completed")
        out.ideal = ideal(case, out.tokens_q)
        return out


class Sampler:
    """Polls the double's request count, for the steady rate: requests per second between
    the first request and the last (the command's start-up and its final report left out)."""

    def __init__(self, double, every_s: float = 0.5) -> None:
        self.double = double
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            stats = self.double.stats()
            self.samples.append((time.monotonic(), sum(stats["requests"].values())))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        moving = [s for s in self.samples if s[1] > 0]
        if len(moving) < 2:
            return 0.0
        final = moving[-1][1]
        first = moving[0]
        last = next(s for s in moving if s[1] == final)
        return (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0


def completed(path: Path, mode: str) -> tuple[int, float]:
    if not path.exists():
        return 0, 0.0
    done, tokens = 0, 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            if mode == "baseline" or row.get("status") == "completed":
                done += 1
                tokens += int(row.get("total_tokens") or 0)
    return done, tokens / max(done, 1)


def ideal(case: Case, tokens_q: float) -> float:
    rates = []
    if case.latency > 0:
        rates.append(case.concurrency / case.latency)
    if case.rpm:
        rates.append(case.rpm / 60)
    if case.tpm and tokens_q:
        rates.append(case.tpm / 60 / tokens_q)
    return min(rates) if rates else 0.0


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def table(outcomes: list[Outcome]) -> str:
    base = {(o.case.group, o.case.provider): o.qps for o in outcomes if o.case.mode == "baseline"}
    head = (
        f"{'case':34} {'q':>6} {'q/s':>7} {'steady':>6} {'ideal':>6} {'eff':>5} {'s.eff':>5} "
        f"{'x base':>6} "
        f"{'cpu ms/q':>8} {'peak MB run/wkr':>15} {'429s':>5} {'reqs':>6} "
        f"{'double':>6} {'redis':>6}"
    )
    lines = [head, "-" * len(head)]
    for o in outcomes:
        c = o.case
        mode = f"{c.workers} worker{'s' if c.workers > 1 else ''}" if c.workers else c.mode
        limit = f" rpm {c.rpm}" if c.rpm else f" tpm {c.tpm}" if c.tpm else ""
        name = f"{c.group} {c.latency:g}s {c.provider} {mode}{limit}"
        b = base.get((c.group, c.provider))
        ratio = f"{o.qps / b:.2f}" if b and c.mode != "baseline" else ""
        eff = f"{o.qps / o.ideal:.2f}" if o.ideal else ""
        s_eff = f"{o.steady_qps / o.ideal:.2f}" if o.ideal and o.steady_qps else ""
        steady = f"{o.steady_qps:.1f}" if o.steady_qps else ""
        mem = f"{o.run_mb:.0f}" + (f"/{o.worker_mb:.0f}" if o.worker_mb else "")
        lines.append(
            f"{name:34} {c.n:>6} {o.qps:>7.1f} {steady:>6} {o.ideal:>6.1f} {eff:>5} {s_eff:>5} "
            f"{ratio:>6} "
            f"{o.cpu_ms_q:>8.2f} {mem:>15} {o.n429:>5} {o.requests:>6} "
            f"{o.double_cpu:>6.0%} {o.redis_cpu:>6.0%}"
        )
        lines += [f"    ! {note}" for note in o.notes]
    return "\n".join(lines)


def main() -> None:
    # The groups run alone, each in its own module.
    alone = {
        "local": "local_model",
        "answers": "local_answers",
        "autolimit": "autolimit",
        "batch": "batch",
        "store": "store",
        "grading": "grading",
        "hostile": "hostile",
    }
    if sys.argv[1:2] and sys.argv[1] in alone:
        return importlib.import_module(f"bench.{alone[sys.argv[1]]}").main(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="*", default=["latency", "cpu", "rpm", "tpm", "large"])
    parser.add_argument("--scale", type=float, default=1.0, help="scale every question count")
    parser.add_argument("--provider", action="append", help="only these providers")
    parser.add_argument("--mode", action="append", help="only these modes")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    args = parser.parse_args()
    todo = [
        c
        for c in cases(args.groups, args.scale)
        if (not args.provider or c.provider in args.provider)
        and (not args.mode or c.mode in args.mode)
    ]
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (scripts/test installs it)")
    # Stopped with SIGTERM: still stop the double, Redis and the workers (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"{os.cpu_count()} cores; load before: {load()}", flush=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="askbatch-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            for case in todo:
                outcome = bench.run(case)
                outcomes.append(outcome)
                print(table([outcome]).splitlines()[-1 - len(outcome.notes)], flush=True)
                for note in outcome.notes:
                    print(f"    ! {note}", flush=True)
        finally:
            bench.close()
    print(f"\nload after: {load()}\n")
    print(table(outcomes))
    if args.json:
        args.json.write_text(
            json.dumps(
                [{**o.__dict__, "case": o.case.__dict__} for o in outcomes], indent=1, default=str
            )
        )


if __name__ == "__main__":
    main()
