"""Helpers for the tests of `askbatch serve`: the real command started as a user starts it,
its JSON API called over HTTP with its token, and answers CSVs compared cell by cell."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.conftest import ROOT, askbatch_command, base_env, free_port

# What differs between two runs of the same worksheet: the ids the server hands out, and time.
RUN_SPECIFIC = {"thread_id", "run_id", "latency_s"}


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path
    token: str = ""  # ASKBATCH_UI_TOKEN, or the one the server made and printed

    @classmethod
    def start(cls, env: dict[str, str], log: Path, *args: str) -> Server:
        port = free_port()
        proc = subprocess.Popen(
            [*askbatch_command(), "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        server = cls(proc, f"http://127.0.0.1:{port}", log, env.get("ASKBATCH_UI_TOKEN", ""))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"askbatch serve exited {proc.returncode}:\n{server.text}")
            if not server.token and (printed := re.search(r"\?token=([\w-]+)", server.text)):
                server.token = printed[1]
            try:
                if server.token and server.client().get("/api/config").status_code == 200:
                    return server
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        server.stop()
        raise AssertionError(f"askbatch serve did not answer:\n{server.text}")

    @property
    def text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def entry(self) -> str:
        """The address a browser opens first: the page's, with the token."""
        return f"{self.url}/?token={self.token}"

    def client(self, token: bool = True, **kwargs) -> httpx2.Client:
        """An HTTP client of the API: with the token as a Bearer header, or without."""
        headers = {"authorization": f"Bearer {self.token}"} if token else {}
        return httpx2.Client(base_url=self.url, timeout=30, headers=headers, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_job(client: httpx2.Client, job_id: str, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    facts: dict = {}
    while time.monotonic() < deadline:
        facts = client.get(f"/api/jobs/{job_id}").json()
        if until(facts):
            return facts
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout:g}s: {facts}")


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def assert_same_answers(
    got: list[dict[str, str]], want: list[dict[str, str]], ignore: set[str] = frozenset()
) -> None:
    """Every cell equal, but the ids and latency of each run (and the `ignore` columns); the
    columns in the same order."""
    assert got and len(got) == len(want)
    assert list(got[0]) == list(want[0])
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        for column in want[0]:
            if column not in RUN_SPECIFIC | ignore:
                assert a[column] == b[column], f"row {i + 1}, column {column}"


def priced_env(tmp_path, double) -> dict[str, str]:
    """The double is on loopback, which askbatch prices as self-hosted (free): a price file
    gives its models a price, so that cost so far is a number to check."""
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[models."gpt-5-mini"]\ninput = 0.25\noutput = 2.0\n'
        '[models."gpt-4o-mini"]\ninput = 0.15\noutput = 0.6\n'
    )
    return {**base_env(tmp_path, double), "ASKBATCH_PRICES": str(prices)}
