"""The local model server process: llama.cpp's HTTP server from the prebuilt xllamacpp wheel.

    python -m worker.local.serve --model FILE.gguf|NAME [--host H] [--port P] [--parallel N] ...

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

from worker.local.cpus import cores, default_slots, free_cores


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m worker.local.serve")
    p.add_argument("--model", required=True, help="GGUF file, or qwen2.5-coder-1.5b or smollm2")
    p.add_argument("--alias", default="", help="model name it answers with (default: file stem)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ctx", type=int, default=4096, help="context tokens per slot")
    p.add_argument("--parallel", type=int, default=0, help="slots (0: two per core, at most 8)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: the free cores)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="sampling temperature of requests that send none (default 0: greedy)",
    )
    p.add_argument(
        "--repeat-penalty",
        type=float,
        default=1.1,
        help="penalty on tokens repeated in the last 64 (default 1.1; 1 turns it off)",
    )
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
    # llama.cpp's default is 0.8 with a random seed: the same question then came out right in
    # one run and wrong in the next. Greedy (unless the request, i.e. a profile's temperature,
    # says otherwise) with a 1.1 repeat penalty: greedy alone looped on Korean questions until
    # the answer cap. On 12 school-maths questions (python -m bench answers): greedy
    # 7 right, greedy + DRY 6, greedy + 1.1 repeat penalty 11, llama.cpp's default 11 on one
    # draw. The penalty's known cost: a one-digit answer whose digit is in the question can be
    # pushed to another ("answer with the number only" gave 7 for 3x + 11 = 14).
    p.sampling.temp = args.temperature
    p.sampling.penalty_repeat = args.repeat_penalty
    return p


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    from worker.errors import AskbatchError
    from worker.local.install import model_path
    from worker.settings import Settings

    try:  # a name is assembled or found as for --provider local (ASKBATCH_STATE_DIR/models)
        args.model = model_path(Settings.load({"local_model": args.model}, dotenv=False), print)
    except AskbatchError as e:
        print(f"error: {e}", flush=True)
        sys.exit(2)
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
