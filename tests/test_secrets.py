"""Secrets and safe output: the planted API key is looked for everywhere askbatch writes or
sends anything (answers CSVs, the commands' output, worker logs at DEBUG level, task payloads
waiting in Redis, stored results and job records, embedded jobs' SQLite files); a broker
password never shows; task payloads are JSON; `rediss://` works against a real TLS
redis-server with a password."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time

import pytest
import redis

from tests.conftest import (
    API_KEY,
    askbatch,
    base_env,
    free_port,
    start_workers,
    write_csv,
)
from tests.jobtools import Background, fresh_db, read_rows, wait_for

ROWS = [[f"r{i}", f"question {i} [[sleep:0.5]]"] for i in range(6)]


def _dump(r: redis.Redis) -> str:
    """Every key of the database and its whole value, as text."""
    out = []
    for key in r.scan_iter("*"):
        kind = r.type(key)
        if kind == "string":
            value = r.get(key)
        elif kind == "hash":
            value = r.hgetall(key)
        elif kind == "list":
            value = r.lrange(key, 0, -1)
        elif kind == "set":
            value = r.smembers(key)
        elif kind == "zset":
            value = r.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        out.append(f"{key}={value}")
    return "\n".join(out)


def _task_bodies(r: redis.Redis) -> list[object]:
    """The task messages waiting in the queue or handed out but not acknowledged yet."""
    queued = [json.loads(m) for m in r.lrange("askbatch", 0, -1)]
    handed_out = [json.loads(v)[0] for v in r.hvals("unacked")]  # [message, exchange, key]
    bodies = []
    for envelope in queued + handed_out:
        assert envelope["content-type"] == "application/json", envelope["content-type"]
        assert envelope["properties"]["body_encoding"] == "base64"
        bodies.append(json.loads(base64.b64decode(envelope["body"])))
    return bodies


def test_planted_key_is_nowhere_distributed(tmp_path, api, redis_server):
    url = fresh_db(redis_server.url, 10)
    env = base_env(tmp_path, api) | {"ASKBATCH_BROKER_URL": url}
    r = redis.Redis.from_url(url, decode_responses=True)
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], ROWS)
    out = tmp_path / "out.csv"
    workers = start_workers(env, 1, tmp_path, concurrency=1, loglevel="DEBUG")
    try:
        run = Background.start(["run", str(sheet), "-o", str(out)], env, tmp_path / "run.log")
        job = run.job_id()
        # Catch tasks in flight: one is being answered, the others wait in the queue.
        wait_for("a task handed out", lambda: r.hlen("unacked") >= 1)
        bodies = _task_bodies(r)
        in_flight_dump = _dump(r)
        assert run.wait() == 0, run.text()
        status = askbatch(["status", job], env, out)
        collect = askbatch(["collect", job, "-o", str(tmp_path / "c.csv")], env, out)
    finally:
        workers.stop()
    assert bodies, "there were task payloads to look at"
    for args, kwargs, _embed in bodies:
        assert kwargs == {} and args[0] == job
        assert {key for row in args[1] for key in row} <= {
            "index",
            "id",
            "question",
            "thread",
            "model",
            "instructions",
        }, "a task carries the rows, and nothing else"
    texts = {
        "task payloads": json.dumps(bodies) + in_flight_dump,
        "stored results and job records": _dump(r),
        "answers CSV": out.read_text(encoding="utf-8-sig"),
        "collected CSV": (tmp_path / "c.csv").read_text(encoding="utf-8-sig"),
        "run output": run.text(),
        "status and collect output": status.stdout + status.stderr + collect.stderr,
        "worker log (DEBUG)": workers.log_text(),
    }
    assert "askbatch:" + job + ":meta" in texts["stored results and job records"]
    assert "HTTP Request" in texts["worker log (DEBUG)"], "the log did record the requests"
    for where, text in texts.items():
        assert API_KEY not in text, f"the API key is in the {where}"
        assert API_KEY[-8:] not in text, f"part of the API key is in the {where}"


def test_planted_key_is_nowhere_embedded(tmp_path, api):
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], ROWS[:2])
    out = tmp_path / "out.csv"
    run = askbatch(["run", str(sheet), "-o", str(out), "--provider", "assistants"], env, out)
    assert run.code == 0, run.stderr
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files)
    for path in [*files, out]:
        assert API_KEY.encode() not in path.read_bytes(), path
    assert API_KEY not in run.stdout + run.stderr


# --- TLS and a broker password ----------------------------------------------------------


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that only speaks TLS and wants a password; a throwaway CA signed its
    certificate. Yields the rediss:// URL, with the CA passed in the query."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "tls"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=askbatch test CA",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    port, password = free_port(), "pw-Secr3t-broker-x"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(d),
        ],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = (
        f"rediss://:{password}@127.0.0.1:{port}/0"
        f"?ssl_cert_reqs=required&ssl_ca_certs={d / 'ca.crt'}"
    )
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("this redis-server cannot serve TLS (built without it?)")
                time.sleep(0.1)
        yield url, password
    finally:
        proc.terminate()
        proc.wait(10)


def test_rediss_with_password_works_and_the_password_never_shows(tmp_path, api, tls_redis):
    url, password = tls_redis
    env = base_env(tmp_path, api) | {"ASKBATCH_BROKER_URL": url}
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], [["1", "one"], ["2", "two"]])
    out = tmp_path / "out.csv"
    workers = start_workers(env, 1, tmp_path, concurrency=2)
    try:
        run = askbatch(["run", str(sheet), "-o", str(out), "--provider", "chat"], env, out)
        job = run.stderr.split("job ", 1)[1].split(":")[0]
        status = askbatch(["status", job], env, out)
    finally:
        workers.stop()
    assert run.code == 0, run.stderr
    assert [r["status"] for r in read_rows(out)] == ["completed"] * 2
    assert "via rediss://:***@127.0.0.1" in run.stderr
    assert status.code == 0 and "rediss://:***@" in status.stdout

    wrong = url.replace(password, "not-the-" + password)
    refused = askbatch(["status", job, "--broker", wrong], env, out)
    assert refused.code == 2 and "cannot reach Redis" in refused.stderr, refused.stderr
    for text in (run.stderr, run.stdout, status.stdout, refused.stderr, workers.log_text()):
        assert password not in text
