"""The local model's numbers: time to the first answer from a cold start, and answer tokens and
rows per second with 1 slot and with N slots in flight.

    python -m bench local                          # the bundled model, 8 questions
    python -m bench local --model smollm2 --slots 4 --threads 2 --questions 16

Starts llama.cpp's server through worker.local (as `--provider local` does): once with one
slot, asked one question at a time, then with N slots, asked N at a time; each question asks
for an explanation of about a hundred tokens (temperature 0, at most --max-tokens). The load
average is printed with the numbers: on a shared machine llama.cpp's speed depends on it more
than on anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from worker import local
from worker.local.cpus import cores, default_slots, free_cores
from worker.settings import Settings

TOPICS = [
    "why the sum of a triangle's angles is 180 degrees",
    "how to solve 3x + 11 = 14",
    "what a derivative is",
    "how to factor x^2 - 5x + 6",
    "why 1 + 2 + ... + 100 = 5050",
    "what a prime number is",
    "how to find the area of a circle",
    "what the Pythagorean theorem says",
]


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def ask(base_url: str, question: str, max_tokens: int) -> tuple[float, int]:
    """One chat completion: (seconds, answer tokens)."""
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    t0 = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    return time.monotonic() - t0, int(answer["usage"]["completion_tokens"])


def questions(n: int) -> list[str]:
    return [f"In about 80 words, explain {TOPICS[i % len(TOPICS)]}." for i in range(n)]


def measure(settings: Settings, slots: int, n: int, max_tokens: int) -> str:
    """Start a server of `slots` slots, ask n questions `slots` at a time; one line of numbers."""
    t0 = time.monotonic()
    with local.start_server(settings.with_(local_parallel=slots), lambda msg: None) as server:
        ask(server.base_url, "What is 17 * 23?", 16)
        cold = time.monotonic() - t0
        t1 = time.monotonic()
        with ThreadPoolExecutor(slots) as pool:
            done = list(pool.map(lambda q: ask(server.base_url, q, max_tokens), questions(n)))
        wall = time.monotonic() - t1
    tokens = sum(t for _, t in done)
    per_request = sum(t / s for s, t in done) / len(done)
    return (
        f"{slots:>5} {server.threads:>7} {n:>4} {tokens:>6} {wall:>7.1f} {tokens / wall:>8.1f} "
        f"{per_request:>8.1f} {n / wall:>7.3f} {server.ready_s:>7.1f} {cold:>7.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench local")
    parser.add_argument("--model", default="", help="name or GGUF file (default: the bundled)")
    parser.add_argument("--slots", type=int, default=0, help="N (default: two per core, max 8)")
    parser.add_argument("--threads", type=int, default=0, help="0: the free cores")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args(argv)

    local.check_installed()
    # The default state directory: the bundled model is assembled there once, as for a run.
    settings = Settings(provider="local", local_model=args.model, local_threads=args.threads)
    t0 = time.monotonic()
    model = local.model_path(settings, print)
    size = model.stat().st_size
    print(
        f"model: {model}, {size:,} bytes ({size / 2**20:.0f} MiB; found in "
        f"{time.monotonic() - t0:.1f}s)"
    )
    print(f"{cores()} cores, {free_cores()} free; before: {load()}")
    print(
        f"{'slots':>5} {'threads':>7} {'rows':>4} {'tokens':>6} {'wall s':>7} {'tok/s':>8} "
        f"{'tok/s/rq':>8} {'rows/s':>7} {'ready s':>7} {'first s':>7}"
    )
    for slots in dict.fromkeys((1, args.slots or default_slots())):
        print(measure(settings, slots, args.questions, args.max_tokens), flush=True)
    print(f"after: {load()}")
    print(
        "tok/s: answer tokens per second in total; tok/s/rq: per request; ready s: server "
        "start to GET /v1/models answering; first s: start to the first answer (cold start)"
    )


if __name__ == "__main__":
    main()
