"""The llama.cpp server process on loopback: start it, wait until it answers, stop it.

Every server this process starts is tracked, so that it is stopped when the command ends
(normally, by an error, by Ctrl-C or SIGTERM); on Linux the kernel also stops it should
askbatch itself be killed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from worker.errors import ConfigError, Interrupted
from worker.local.cpus import default_slots, free_cores
from worker.private import private_dir

HOST = "127.0.0.1"

Say = Callable[[str], None]


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM should askbatch die, even by
    # SIGKILL, so a server is never left holding a port and a model in memory.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalServer:
    """One `python -m worker.local.serve` process (llama.cpp's server): start() returns once
    it answers requests."""

    def __init__(
        self,
        model: Path,
        port: int = 0,
        ctx: int = 4096,
        threads: int = 0,
        parallel: int = 0,
        log_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.alias = model.name.removesuffix(".gguf")
        self.requested_port = port
        self.port = port
        self.ctx = ctx  # per slot
        # Threads beyond the idle cores slow llama.cpp down a lot (it spins on them).
        self.threads = threads or free_cores()
        self.slots = parallel or default_slots()
        self.log_dir = log_dir or Path.cwd()
        self.log_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self.ready_s = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "worker.local.serve",
            *("--model", str(self.model), "--alias", self.alias),
            *("--host", HOST, "--port", str(self.port)),
            *("--ctx", str(self.ctx), "--parallel", str(self.slots)),
            *("--threads", str(self.threads)),
        ]

    def start(self, timeout_s: float = 300.0, say: Say = lambda msg: None) -> None:
        if self.requested_port and port_in_use(self.requested_port):
            raise ConfigError(
                f"port {self.requested_port} on {HOST} is already in use, so the local model "
                "server cannot listen there; choose another with --local-port "
                "(ASKBATCH_LOCAL_PORT), or 0 for any free port"
            )
        self.port = self.requested_port or free_port()
        private_dir(self.log_dir)  # the state directory
        self.log_path = self.log_dir / f"local-server-{os.getpid()}-{self.port}.log"
        self._log = self.log_path.open("wb")
        size_mb = self.model.stat().st_size / 1e6
        say(
            f"starting the local model server: {self.model.name} ({size_mb:.0f} MB) on "
            f"{HOST}:{self.port}, {self.slots} slots, {self.threads} threads; waiting until it "
            "answers (GET /v1/models)..."
        )
        t0 = time.monotonic()
        _track(self)
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C reaches askbatch, which then stops the server.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            self._wait_ready(t0 + timeout_s, timeout_s)
        except KeyboardInterrupt:
            self.stop(keep_log=False)
            raise Interrupted("interrupted while the local model server was starting") from None
        except BaseException:
            self.stop(keep_log=True)
            raise
        self.ready_s = time.monotonic() - t0
        say(f"local model server ready in {self.ready_s:.1f}s (pid {self.proc.pid})")

    def _wait_ready(self, deadline: float, timeout_s: float) -> None:
        assert self.proc is not None
        url = f"{self.base_url}/models"
        while True:
            # Exit first: an answer on the port from some other process is not readiness.
            if (code := self.proc.poll()) is not None:
                raise ConfigError(self._exit_message(code))
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"the local model server did not answer GET {url} within {timeout_s:g}s "
                    f"(its log: {self.log_path}); a large model may need a longer "
                    "ASKBATCH_LOCAL_START_TIMEOUT"
                )
            time.sleep(0.2)

    def _exit_message(self, code: int) -> str:
        tail = self.log_tail()
        if any(words in tail.lower() for words in ("address already in use", "couldn't bind")):
            return (
                f"port {self.port} on {HOST} is already in use, so the local model server "
                "could not listen there; choose another with --local-port, or 0 for any free one"
            )
        return (
            f"the local model server exited with code {code} while starting "
            f"(model {self.model}); the end of its log {self.log_path}:\n{tail}"
        )

    def log_tail(self, lines: int = 12) -> str:
        if self._log is not None:
            self._log.flush()
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, keep_log: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5s); idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = proc  # kept for its pid and exit code
        _untrack(self)
        if self._log is not None:
            self._log.close()
            self._log = None
            if not keep_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(keep_log=exc[0] is not None)


# Servers of this process, so that every exit path can stop them.
_servers: set[LocalServer] = set()
_servers_lock = threading.Lock()
_hooks_installed = False


def _track(server: LocalServer) -> None:
    global _hooks_installed
    with _servers_lock:
        _servers.add(server)
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            _chain_signal(sig)


def _untrack(server: LocalServer) -> None:
    with _servers_lock:
        _servers.discard(server)


def stop_all() -> None:
    """Stop every server this process started (at exit, on a signal, on Ctrl-C)."""
    with _servers_lock:
        servers = list(_servers)
    for server in servers:
        server.stop()


def _chain_signal(sig: signal.Signals) -> None:
    previous = signal.getsignal(sig)
    if previous == signal.SIG_IGN:  # e.g. SIGHUP under nohup: askbatch goes on, so does its server
        return

    def handler(signum: int, frame: object) -> None:
        stop_all()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(sig, handler)


@contextlib.contextmanager
def lifetime() -> Iterator[None]:
    """Servers started inside are stopped on the way out, whatever way that is."""
    try:
        yield
    finally:
        stop_all()
