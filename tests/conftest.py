"""Shared fixtures: the API double, a real redis-server, real `askbatch worker` processes,
and a way to run the real `askbatch` command as a user would."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.double.fixture import BATCH_OPTIONS, describe_contract_errors, start_double

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-test-0123456789abcdef"  # planted: must never show up in outputs or logs

# The virtual environment that holds only what `pip install .` puts there (scripts/test builds
# it): every `askbatch` process the tests start comes from it, so a dependency that only the
# test packages bring along cannot hide. Without it (a bare `pytest`), this interpreter is used.
RUNTIME = os.environ.get("ASKBATCH_TEST_RUNTIME", "")
# The function tools the tests' profiles name live in `tests/`: worker processes of the runtime
# environment see that one package through PYTHONPATH, and not the source tree's worker/ and
# jobs/, so that they run the installed askbatch.
_TOOLS_PATH = ROOT / ".pytest-path"


def askbatch_command() -> list[str]:
    """The `askbatch` command as a user runs it."""
    if RUNTIME:
        return [str(Path(RUNTIME) / "bin" / "askbatch")]
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the tests through scripts/test (ASKBATCH_TEST_RUNTIME)")
    return [sys.executable, "-m", "jobs"]


def _tools_path() -> str:
    _TOOLS_PATH.mkdir(exist_ok=True)
    link = _TOOLS_PATH / "tests"
    if not link.exists():
        link.symlink_to(ROOT / "tests", target_is_directory=True)
    return str(_TOOLS_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    url: str
    port: int
    dir: Path
    proc: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A real redis-server: the one CI started (ASKBATCH_TEST_REDIS_URL), else one of our own
    on a free port, append-only persistence on."""
    if url := os.environ.get("ASKBATCH_TEST_REDIS_URL"):
        server = RedisServer(url, int(url.rsplit(":", 1)[1].split("/")[0]), Path("."))
        server.client().flushdb()
        yield server
        return
    port = free_port()
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def double() -> Iterator:
    with start_double() as d:
        yield d


# The double's global options as it starts; a test that changes them must not leak them.
DOUBLE_OPTIONS = {
    "latency": 0.0,
    "rate_429": 0.0,
    "rate_500": 0.0,
    "seed": 0,
    "rpm": 0,
    "tpm": 0,
    "quota": 0,
    **BATCH_OPTIONS,
}


@pytest.fixture
def api(double):
    """The double, with its options, faults and statistics reset for this test; the test fails
    if the double saw a request, or sent an answer, off the openai SDK's published types."""
    double.configure(**DOUBLE_OPTIONS)
    double.reset()
    yield double
    errors = double.contract_errors()
    double.configure(**DOUBLE_OPTIONS)
    double.reset()
    if errors:
        pytest.fail(describe_contract_errors(errors), pytrace=False)


@pytest.fixture(autouse=True)
def contract_kept(request):
    """The contract check for a test that drives a ``double`` itself, without ``api``: its
    requests and the double's answers must keep to the SDK's types as well."""
    if "double" not in request.fixturenames or "api" in request.fixturenames:
        yield
        return
    double = request.getfixturevalue("double")
    yield
    errors = double.contract_errors()
    if errors:
        double.reset()  # the next test starts clean
        pytest.fail(describe_contract_errors(errors), pytrace=False)


def base_env(tmp_path: Path, double) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ASKBATCH_"))}
    env.update(
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=double.base_url,
        ASKBATCH_STATE_DIR=str(tmp_path / "state"),
        ASKBATCH_BACKOFF="0.05",
        ASKBATCH_BACKOFF_CAP="0.5",
        PYTHONUNBUFFERED="1",
    )
    if RUNTIME:
        env["PYTHONPATH"] = _tools_path()
    return env


@dataclass
class Workers:
    procs: list[subprocess.Popen]
    logs: list[Path]

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_workers(
    env: dict[str, str],
    n: int,
    log_dir: Path,
    concurrency: int = 16,
    loglevel: str = "INFO",
    name: str = "w",
) -> Workers:
    procs, logs = [], []
    for i in range(n):
        log = log_dir / f"worker{i}{name.removeprefix('w')}.log"
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    *askbatch_command(),
                    "worker",
                    "--concurrency",
                    str(concurrency),
                    "-n",
                    f"{name}{i}-{os.getpid()}@%h",
                    "--loglevel",
                    loglevel,
                ],
                cwd=ROOT,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
    # Ready when each has logged that it is connected and listening.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all("ready" in p.read_text(errors="replace") for p in logs if p.exists()) and all(
            p.exists() for p in logs
        ):
            return Workers(procs, logs)
        for p in procs:
            if p.poll() is not None:
                pytest.fail("worker exited at start:\n" + Workers(procs, logs).log_text())
        time.sleep(0.1)
    w = Workers(procs, logs)
    w.stop()
    pytest.fail("workers did not become ready:\n" + w.log_text())


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    output: Path

    def rows(self) -> list[dict[str, str]]:
        with self.output.open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f))


def askbatch(args: list[str], env: dict[str, str], output: Path, timeout: float = 240) -> Run:
    proc = subprocess.run(
        [*askbatch_command(), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, output)


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding="utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def workers(redis_server, double, tmp_path_factory):
    """Two real `askbatch worker` processes on the test Redis, for one test module."""
    tmp = tmp_path_factory.mktemp("workers")
    env = base_env(tmp, double)
    env["ASKBATCH_BROKER_URL"] = redis_server.url
    w = start_workers(env, 2, tmp, concurrency=8)
    yield w
    w.stop()
    assert API_KEY not in w.log_text()
