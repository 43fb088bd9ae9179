"""Start the double as a subprocess from tests and talk to its control endpoints.

Only the standard library is used here, so any test process can import it.
"""

import atexit
import json
import os
import selectors
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import TracebackType

from .state import Config  # standard library only

REPO_ROOT = Path(__file__).resolve().parents[2]
_FLAGS = {
    "latency": "--latency",
    "rate_429": "--rate-429",
    "rate_500": "--rate-500",
    "seed": "--seed",
    "rpm": "--rpm",
    "tpm": "--tpm",
    "rate_period": "--rate-period",
}
# The Batch API's options at their defaults (pace, limits, expiry): pass them to
# ``configure`` to undo a test's changes (``reset`` keeps options).
BATCH_OPTIONS = {
    name: value for name, value in asdict(Config()).items() if name.startswith("batch_")
}
# Loopback control calls must not go through any proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DoubleProcess:
    """A running double: ``base_url`` for the openai client, control calls, ``stop()``.

    Used as a context manager, it stops the double on exit, and when the block ended without
    an exception it raises AssertionError for any contract mismatch still recorded.
    """

    def __init__(self, process: subprocess.Popen, host: str, port: int) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/v1"

    def _control(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.root_url}/_double/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with _OPENER.open(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        """Counters since the last reset (see ``GET /_double/stats``)."""
        return self._control("GET", "stats")

    def contract_errors(self) -> list[dict]:
        """Contract mismatches since the last reset: method, path, check, messages."""
        return self.stats().get("contract_errors", [])

    def configure(self, **options: float) -> dict:
        """Change global options (latency, rate_429, rate_500, seed, rpm, tpm, quota, and
        the batch_* ones: see ``BATCH_OPTIONS`` and ``tests.double.state.Config``)."""
        return self._control("POST", "config", options)

    def reset(self) -> None:
        """Clear stats, fault counters, rate windows and all stored objects."""
        self._control("POST", "reset", {})

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> "DoubleProcess":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        errors = self.contract_errors() if exc_type is None else []
        self.stop()
        if errors:
            raise AssertionError(describe_contract_errors(errors))


def describe_contract_errors(errors: list[dict]) -> str:
    """A readable report of contract mismatches, one request or answer a paragraph."""
    lines = [f"the double saw {len(errors)} contract mismatch(es) with the openai SDK's types:"]
    for error in errors:
        lines.append(f"  {error['method']} {error['path']} ({error['check']}):")
        lines.extend(f"    {message}" for message in error["messages"])
    return "\n".join(lines)


def start_double(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 20.0,
    check_contract: bool = True,
    **options: float,
) -> DoubleProcess:
    """Launch ``python -m tests.double`` with the given options and wait until it is READY.

    ``options`` are the global options: latency, rate_429, rate_500, seed, rpm, tpm (flags
    of the command), and any other option of ``POST /_double/config`` (e.g. the batch_*
    ones), set through it once the double is ready.
    ``check_contract`` (on for tests; benchmarks turn it off) checks all /v1 traffic
    against the openai SDK's types.
    """
    command = [sys.executable, "-m", "tests.double", "--host", host, "--port", str(port)]
    if check_contract:
        command.append("--check-contract")
    later = {}
    for name, value in options.items():
        if name in _FLAGS:
            command += [_FLAGS[name], str(value)]
        elif name in Config.__dataclass_fields__:
            later[name] = value
        else:
            raise TypeError(f"unknown double option {name!r}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        bufsize=0,  # unbuffered, so select() sees every line that is not yet read
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                process.kill()
                process.wait()
                raise TimeoutError(f"the double did not get ready within {timeout} s")
            line = process.stdout.readline().decode()
            if not line:  # EOF: it exited
                code = process.wait()
                raise RuntimeError(f"the double exited with code {code} before getting ready")
            if line.startswith("READY "):
                bound = int(line.split()[1].rsplit(":", 1)[1].split("/", 1)[0])
                double = DoubleProcess(process, host, bound)
                atexit.register(double.stop)  # no orphan server if the caller forgets
                if later:
                    double.configure(**later)
                return double
