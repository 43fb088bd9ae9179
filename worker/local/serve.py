"""The local model server process: llama.cpp's HTTP server from the prebuilt xllamacpp wheel.

    python -m worker.local.serve --model FILE.gguf [--host H] [--port P] [--parallel N] ...

It serves /v1/models and /v1/chat/completions (with `response_format` JSON schemas) with
--parallel slots answering at once, --ctx tokens of context each, on --threads CPU threads;
it runs until SIGTERM, SIGINT or SIGHUP. askbatch starts it (worker/local/server.py), and so
does the compose `local-model` service.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def free_cores() -> int:
    """Cores that other work leaves idle (the last minute's load average), at least one:
    llama.cpp slows down sharply, not up, when its threads outnumber them."""
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores(), round(cores() - busy)))


def default_slots() -> int:
    """Requests answered at once: two per core (continuous batching makes the second one on
    a core nearly free), at most 8."""
    return max(1, min(8, 2 * cores()))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m worker.local.serve")
    p.add_argument("--model", required=True, type=Path, help="GGUF file")
    p.add_argument("--alias", default="", help="model name it answers with (default: file stem)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ctx", type=int, default=4096, help="context tokens per slot")
    p.add_argument("--parallel", type=int, default=0, help="slots (0: two per core, at most 8)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: the free cores)")
    return p.parse_args(argv)


def params(args: argparse.Namespace):  # -> xllamacpp.CommonParams
    import xllamacpp

    slots = args.parallel or default_slots()
    threads = args.threads or free_cores()
    p = xllamacpp.CommonParams()
    p.model.path = str(args.model)
    p.model_alias = {args.alias or args.model.name.removesuffix(".gguf")}
    p.hostnames = [args.host]
    p.port = args.port
    p.n_parallel = slots
    p.n_ctx = args.ctx * slots  # split evenly across the slots
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.ui = False  # no web page: only the API
    return p


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not args.model.is_file():
        sys.exit(f"no model file {args.model}")
    p = params(args)
    print(
        f"serving {args.model} on {args.host}:{args.port}: {p.n_parallel} slots of "
        f"{args.ctx} tokens, {p.cpuparams.n_threads} threads ({cores()} cores)",
        flush=True,
    )
    import xllamacpp

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = xllamacpp.Server(p)  # returns once the model is loaded and it listens
    except Exception as e:
        print(f"error: the server did not start: {e}", flush=True)
        sys.exit(1)
    print(f"listening on {server.listening_address}", flush=True)
    while not stop.wait(1):
        pass
    # Requests in progress are dropped: the caller is stopping it. Skip the slow teardown.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
