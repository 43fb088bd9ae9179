"""The provider registry (worker/providers/registry.py): each entry resolves to its code, the
registry is read without the SDK, no module outside worker/providers/ compares a provider's
name (scripts/check-tree), docs/providers.md's table is the registry's, and a provider of the
tests' own (tests/echo_provider.py: one module, one entry) answers a worksheet."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from importlib.machinery import SourceFileLoader

import pytest

from tests.conftest import ROOT, write_csv
from tests.jobtools import InProcess, read_rows
from worker.models import JobSpec, Row
from worker.providers import registry
from worker.providers.base import JobContext


def check_tree():
    loader = SourceFileLoader("check_tree", str(ROOT / "scripts" / "check-tree"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_every_entry_resolves_to_its_code():
    for entry in registry.PROVIDERS.values():
        cls = registry._load(entry.provider)
        assert callable(cls.open_thread) and callable(cls.ask), entry
        assert entry.thread in (registry.CONVERSATION, registry.SERVER_THREAD, registry.HISTORY)
        assert bool(entry.batch_endpoint) == bool(entry.batch_lines), entry.name
        assert set(entry.service_tiers) <= set(registry.SERVICE_TIERS)
        if entry.batch_endpoint:
            lines = entry.lines()
            spec = JobSpec(job_id="j", provider=entry.name, model="m", total=1)
            job = JobContext(spec)
            body = lines.body(job, lines.static_params(job), Row(0, "1", "q"), [], [])
            assert body["model"] == "m", body
        else:
            with pytest.raises(LookupError):
                entry.lines()
        if entry.setup:
            assert callable(registry._load(entry.setup))
    assert registry.DEFAULT in registry.PROVIDERS


def test_the_registry_is_read_without_the_sdk():
    code = (
        "import sys, worker.providers.registry; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'worker')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['worker', 'worker.providers', 'worker.providers.registry']"


def test_check_tree_finds_a_provider_name_compared():
    tool = check_tree()
    names = tool.provider_names()
    assert names == set(registry.PROVIDERS)
    source = """
if settings.provider == "local":
    pass
if spec.provider in ("responses", "chat"):
    pass
CLASSES = {"assistants": object}
match provider:
    case "chat":
        pass
role = "chat"
label = f"--provider chat"
if kind == "conversation":
    pass
"""
    assert tool.name_comparisons(ast.parse(source), names) == [2, 4, 6, 8]


def test_no_module_outside_the_providers_compares_a_name():
    tool = check_tree()
    names = tool.provider_names()
    found = []
    for name, path in tool.modules().items():
        if not name.startswith("worker.providers"):
            lines = tool.name_comparisons(ast.parse(path.read_text(encoding="utf-8")), names)
            found += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
    assert found == []


def providers_table() -> str:
    """docs/providers.md's table, as the registry says it."""
    head = ["provider", "thread kept as", "Batch API", "service tiers", "`[check]`"]
    head += ["local server", "on the page"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for p in registry.PROVIDERS.values():
        yes = {True: "yes", False: "no"}
        cells = [
            f"`{p.name}`",
            p.thread,
            f"`{p.batch_endpoint}`" if p.batch_endpoint else "no",
            ", ".join(p.service_tiers) or "—",
            yes[p.check],
            yes[p.local_server],
            yes[p.on_page],
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def test_the_docs_table_is_the_registry():
    text = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    want = providers_table()
    assert want in text, "docs/providers.md's table differs from the registry; put in:\n" + want


def test_a_provider_is_one_module_and_one_entry(tmp_path, monkeypatch, capsys):
    from tests import echo_provider

    monkeypatch.setitem(registry.PROVIDERS, "echo", echo_provider.ENTRY)
    sheet = write_csv(
        tmp_path / "sheet.csv",
        ["id", "thread", "question"],
        [["1", "", "abc"], ["2", "t", "first"], ["3", "t", "second"]],
    )
    out = tmp_path / "out.csv"
    env = {"OPENAI_API_KEY": "sk-test", "ASKBATCH_STATE_DIR": str(tmp_path / "state")}
    cli = InProcess(env, monkeypatch, capsys, tmp_path)
    said = cli("run", sheet, "-o", out, "--provider", "echo", "--model", "echo-1")
    assert said.code == 0, said.stderr
    rows = read_rows(out)
    assert [r["answer"] for r in rows] == ["cba (turn 1)", "tsrif (turn 1)", "dnoces (turn 2)"]
    assert {r["status"] for r in rows} == {"completed"} and rows[2]["thread_id"].startswith("echo_")
    # What it does not declare, it is refused, with the providers that can.
    refused = cli("run", sheet, "-o", out, "--overwrite", "--provider", "echo", "--batch")
    assert refused.code == 2 and "--batch works with --provider responses or chat" in refused.stderr
