"""Run the double: ``python -m tests.double --host 127.0.0.1 --port 0``.

Prints ``READY http://HOST:PORT/v1`` once listening and serves until SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
from pathlib import Path

from .server import serve
from .state import Config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--rate-429", type=float, default=0.0, help="probability of a 429")
    parser.add_argument("--rate-500", type=float, default=0.0, help="probability of a 500")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    parser.add_argument("--rpm", type=int, default=0, help="requests per minute (0: no limit)")
    parser.add_argument("--tpm", type=int, default=0, help="tokens per minute (0: no limit)")
    parser.add_argument(
        "--rate-period",
        type=float,
        default=60.0,
        help="seconds over which --rpm/--tpm are enforced, pro rata (1: 1,200 RPM is 20 a second)",
    )
    parser.add_argument("--port-file", type=Path, help="write the bound port to this file")
    parser.add_argument(
        "--check-contract",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="check every /v1 request and answer against the openai SDK's types "
        "(mismatches in GET /_double/stats as contract_errors)",
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    config = Config(
        latency=args.latency,
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        seed=args.seed,
        rpm=args.rpm,
        tpm=args.tpm,
        rate_period=args.rate_period,
    )
    runner, port = await serve(args.host, args.port, config, args.check_contract)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.port_file:
        args.port_file.write_text(f"{port}\n")
    print(f"READY http://{args.host}:{port}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
