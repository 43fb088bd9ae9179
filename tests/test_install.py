"""askbatch installed as a user installs it: a virtual environment holding only `pip install .`
(scripts/runtime-env), its `askbatch worker` and `askbatch run`, from a folder outside the clone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY, RUNTIME, base_env, start_workers, write_csv

pytestmark = pytest.mark.skipif(not RUNTIME, reason="no runtime-only venv (run scripts/test)")


def runtime(name: str) -> str:
    return str(Path(RUNTIME) / "bin" / name)


def test_the_runtime_environment_holds_no_test_packages():
    # If it did, a missing runtime dependency could hide behind them, as `packaging` once did.
    for module in ("pytest", "aiohttp", "hypothesis", "ruff", "playwright"):
        found = subprocess.run(
            [runtime("python"), "-c", f"import {module}"], capture_output=True, check=False
        )
        assert found.returncode != 0, f"{module} is importable in the runtime environment"
    # and askbatch comes from site-packages, not from the source tree
    where = subprocess.run(
        [runtime("python"), "-c", "import worker, jobs; print(worker.__file__, jobs.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    assert where.count("site-packages") == 2, where


def sheet(tmp_path: Path) -> Path:
    rows = [[f"q{i}", "t" if i < 3 else "", f"What is {i} + {i}?"] for i in range(6)]
    return write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], rows)


def run(tmp_path: Path, env: dict[str, str], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [runtime("askbatch"), "run", str(sheet(tmp_path)), "-o", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def completed_rows(out: Path) -> list[str]:
    import csv

    with out.open(encoding="utf-8-sig", newline="") as f:
        return [row["status"] for row in csv.DictReader(f)]


def test_embedded_job_from_the_runtime_environment(tmp_path, api):
    env = base_env(tmp_path, api)
    env.pop("PYTHONPATH", None)  # nothing but the installed package
    out = tmp_path / "out.csv"
    proc = run(tmp_path, env, out)
    assert proc.returncode == 0, proc.stderr
    assert completed_rows(out) == ["completed"] * 6
    assert API_KEY not in proc.stderr + proc.stdout


def test_distributed_job_with_a_worker_from_the_runtime_environment(tmp_path, api, redis_server):
    from tests.jobtools import fresh_db

    env = base_env(tmp_path, api)
    env.pop("PYTHONPATH", None)
    env["ASKBATCH_BROKER_URL"] = fresh_db(redis_server.url, 7)
    workers = start_workers(env, 1, tmp_path, concurrency=4)
    try:
        out = tmp_path / "out.csv"
        proc = run(tmp_path, env, out)
        assert proc.returncode == 0, proc.stderr + workers.log_text()
        assert completed_rows(out) == ["completed"] * 6
        assert "distributed" in proc.stderr
    finally:
        workers.stop()
    assert API_KEY not in workers.log_text()
