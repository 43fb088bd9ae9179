"""Real servers nobody here wrote (OGX, the LiteLLM proxy) run on loopback for the tests."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "127.0.0.1"

# What scripts/real-servers installs; scripts/test exports these, a developer may set others.
OGX_ENV, LITELLM_ENV = "ASKBATCH_TEST_OGX", "ASKBATCH_TEST_LITELLM"
OGX_DEFAULT = ROOT / ".venv-ogx" / "bin" / "ogx"
LITELLM_DEFAULT = ROOT / ".venv-litellm" / "bin" / "litellm"


def executable(variable: str, default: Path) -> Path:
    return Path(os.environ.get(variable) or default)


def server_env(**extra: str) -> dict[str, str]:
    """This environment without settings meant for askbatch, an OpenAI client, OpenTelemetry
    export or either server, so that each server runs on its config file alone."""
    prefixes = ("OPENAI_", "ASKBATCH_", "OTEL_", "OGX_", "LITELLM_", "LLAMA_STACK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", **extra)
    return env


def render(template: str, target: Path, **values: object) -> Path:
    """tests/real_servers/<template> with its $-placeholders filled in, written to target."""
    text = Template((HERE / template).read_text()).substitute(values)
    target.write_text(text)
    return target


def _die_with_parent() -> None:
    # In the child before exec: the kernel sends it SIGTERM should the test process die, even
    # by SIGKILL, so that no server outlives a killed test run.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def get_json(url: str, key: str = "", timeout: float = 5) -> dict:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Server:
    """One server process, in its own process group, logging to a file."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    base_url: str  # the OpenAI-compatible root askbatch is given, ending in /v1
    key: str = ""  # sent to GET {base_url}/models while waiting
    proc: subprocess.Popen | None = None
    models: list[str] = field(default_factory=list)
    ready_s: float = 0.0

    def start(self, want_model: bool = True, timeout_s: float = 120.0) -> None:
        """Start, then wait until GET /v1/models answers (listing a model, if want_model)."""
        t0 = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = t0 + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if (code := self.proc.poll()) is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {code} while starting:\n{self.tail()}"
                )
            try:
                listed = get_json(f"{self.base_url}/models", self.key)
                self.models = [m["id"] for m in listed.get("data") or ()]
                if self.models or not want_model:
                    self.ready_s = time.monotonic() - t0
                    return
                last = f"GET /v1/models listed no model: {listed}"
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = f"GET /v1/models: {e}"
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout_s:g}s ({last}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 10 s; idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()


def ogx(executable_path: Path, upstream_url: str, port: int, workdir: Path) -> Server:
    """OGX in front of the OpenAI-compatible server at upstream_url (ending in /v1)."""
    state = workdir / "state"
    state.mkdir(parents=True, exist_ok=True)
    config = render(
        "ogx.yaml", workdir / "ogx.yaml", upstream_url=upstream_url, port=port, state_dir=state
    )
    return Server(
        name=f"OGX ({executable_path})",
        command=[str(executable_path), "run", str(config)],
        # Its config dir not ~/.ogx; its log as JSON lines: the default rich rendering of a
        # request's traceback (a refused batch, say) holds the server up for 20 s and more.
        env=server_env(OGX_CONFIG_DIR=str(workdir / "config"), OGX_LOG_FORMAT="json"),
        log_path=workdir / "ogx.log",
        base_url=f"http://{HOST}:{port}/v1",
    )


def litellm(
    executable_path: Path,
    upstream_url: str,
    upstream_model: str,
    model_name: str,
    port: int,
    workdir: Path,
    master_key: str,
) -> Server:
    """The LiteLLM proxy serving model_name from the OpenAI-compatible server at upstream_url."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = render(
        "litellm.yaml",
        workdir / "litellm.yaml",
        upstream_url=upstream_url,
        upstream_model=upstream_model,
        model_name=model_name,
    )
    env = server_env(
        LITELLM_MASTER_KEY=master_key,
        # Its own copy of the model price list, not the one it would fetch at start.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    return Server(
        name=f"LiteLLM proxy ({executable_path})",
        command=[
            str(executable_path),
            *("--config", str(config), "--host", HOST, "--port", str(port)),
            *("--num_workers", "1"),
        ],
        env=env,
        log_path=workdir / "litellm.log",
        base_url=f"http://{HOST}:{port}/v1",
        key=master_key,
    )


def job_batches(server: Server, job_id: str) -> list[dict]:
    """The batches the server lists for an askbatch job (by the metadata askbatch gives them),
    oldest first."""
    listed = get_json(f"{server.base_url}/batches?limit=100", server.key).get("data") or []
    mine = [b for b in listed if (b.get("metadata") or {}).get("askbatch_job") == job_id]
    return sorted(mine, key=lambda b: b["created_at"])


def file_lines(server: Server, file_id: str) -> list[dict]:
    """The JSON lines of a file the server keeps (a batch's output or error file)."""
    request = urllib.request.Request(f"{server.base_url}/files/{file_id}/content")
    if server.key:
        request.add_header("Authorization", f"Bearer {server.key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def uploads(server: Server) -> list[str]:
    """The ids of the files askbatch uploaded to the server (its names: askbatch-*.jsonl)."""
    listed = get_json(f"{server.base_url}/files?limit=10000", server.key).get("data") or []
    return [f["id"] for f in listed if str(f.get("filename", "")).startswith("askbatch-")]
