"""Benchmark group `autolimit`: no --rpm, --tpm or --concurrency; the limit learned from headers.

    python -m bench autolimit                 # rpm, tpm and large (about 100 minutes)
    python -m bench autolimit rpm tpm         # some of them; --rows N for the large one

The double allows 1,200 requests or 60,000 tokens a minute, enforced per second (20 requests
or 1,000 tokens in any second) and sends OpenAI's x-ratelimit-* headers on every response;
latency 1 s, `chat`. Each case runs `askbatch run` embedded, then on 2 and 4 workers, with no
tuning flag. reached = the steady rate (between the double's first and last request) / the
limit; whole = questions over the whole command / the limit; 429s as a share of requests.
`large`: 1,000,000 rows (--rows) through one worker, no latency and no limit: questions per
second and every process's peak memory (VmHWM, Redis included).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from bench import session
from bench.__main__ import Bench, Sampler, peak_mb, wait_child, write_questions

RPM, TPM, PERIOD_S, LATENCY_S = 1200, 60000, 1.0, 1.0


def _tokens(path: Path) -> tuple[int, float]:
    done, tokens = 0, 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("status") == "completed":
                done += 1
                tokens += int(row.get("total_tokens") or 0)
    return done, tokens / max(done, 1)


def run_case(bench: Bench, kind: str, workers: int, n: int) -> dict:
    tag = f"auto-{kind}-{workers}"
    src, dst = bench.work / f"{tag}.csv", bench.work / f"{tag}.answers.csv"
    write_questions(src, n)
    bench.double.reset()
    limits = {"rpm": RPM, "tpm": 0} if kind == "rpm" else {"rpm": 0, "tpm": TPM}
    if kind == "large":
        limits = {"rpm": 0, "tpm": 0}
    latency = 0.0 if kind == "large" else LATENCY_S
    bench.double.configure(latency=latency, rate_period=PERIOD_S, **limits)
    env = bench.env()
    procs: list[subprocess.Popen] = []
    if workers:
        env = bench.env(ASKBATCH_BROKER_URL=bench.broker)
        procs = bench.workers = bench.start_workers(workers, 64, env)
    command = [sys.executable, "-m", "jobs", "run", str(src), "-o", str(dst)]
    command += ["--provider", "chat", "--overwrite"]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=bench.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    sampler = Sampler(bench.double) if n <= 20_000 else None
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    code, _, run_mb = wait_child(proc)
    wall = time.monotonic() - t0
    steady_rps = sampler.stop() if sampler else 0.0
    worker_mb = session.stop_workers(bench, procs)
    stats = bench.double.stats() if n <= 20_000 else {"status_429": 0, "requests": {}}
    done, tokens_q = _tokens(dst) if dst.exists() else (0, 0.0)
    requests = sum(stats["requests"].values()) or n
    limit_rps = TPM / 60 / max(tokens_q, 1) if kind == "tpm" else RPM / 60
    summary = [line for line in err.splitlines() if line.startswith("rate:")]
    return {
        "case": f"{kind} {'embedded' if not workers else f'{workers} workers'}",
        "n": n,
        "code": code,
        "done": done,
        "q/s": n / wall,
        "reached": steady_rps / limit_rps if kind != "large" else 0.0,
        "whole": n / wall / limit_rps if kind != "large" else 0.0,
        "429s": stats["status_429"] / requests,
        "n429": stats["status_429"],
        "requests": requests,
        "tokens/q": tokens_q,
        "run MB": run_mb,
        "worker MB": worker_mb,
        "double MB": peak_mb(bench.double.process.pid),
        "redis MB": peak_mb(bench.redis.pid),
        "says": summary[-1] if summary else err.strip().splitlines()[-1:],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.autolimit", description=__doc__)
    parser.add_argument("groups", nargs="*", default=["rpm", "tpm", "large"])
    parser.add_argument("--questions", type=int, default=1500, help="per rpm/tpm case")
    parser.add_argument("--rows", type=int, default=1_000_000, help="for the large case")
    parser.add_argument(
        "--workers", default="0,2,4", help="worker counts of the rpm/tpm cases (0: embedded)"
    )
    args = parser.parse_args(argv)
    counts = tuple(int(n) for n in args.workers.split(","))
    cases = [
        (group, workers, args.rows if group == "large" else args.questions)
        for group in args.groups
        for workers in (counts if group != "large" else (1,))
    ]
    session.run_all(cases, lambda bench, case: run_case(bench, *case), _line)


def _line(o: dict) -> str:
    workers = "/".join(f"{mb:.0f}" for mb in o["worker MB"]) or "-"
    return (
        f"{o['case']:18} n={o['n']:>7} exit={o['code']} done={o['done']:>7} "
        f"q/s={o['q/s']:7.1f} reached={o['reached']:.2f} whole={o['whole']:.2f} "
        f"429s={o['n429']}/{o['requests']} ({o['429s']:.2%}) tokens/q={o['tokens/q']:.0f} "
        f"peak MB run={o['run MB']:.0f} workers={workers} double={o['double MB']:.0f} "
        f"redis={o['redis MB']:.0f}\n    says: {o['says']}"
    )


if __name__ == "__main__":
    main()
