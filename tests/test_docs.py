"""The docs against the code: the generated parts are current, and every relative link lands."""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from worker.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "docs"
FIX = "run scripts/docs (it rewrites the generated blocks of README.md and docs/*.md), then commit"


@pytest.fixture(scope="module")
def docs() -> ModuleType:
    """scripts/docs, loaded as a module (it is a script without a .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("docs_script", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_generated_docs_match_the_code(docs):
    diffs = docs.stale()
    assert not diffs, "the generated docs differ from the code; " + FIX + ":\n" + "\n".join(diffs)


def test_every_setting_has_a_description(docs):
    missing = docs.undescribed()
    assert not missing, (
        f"settings without a `#:` description in worker/settings.py: {missing}; add one line "
        "above each field, then run scripts/docs"
    )


def test_every_relative_link_lands(docs):
    broken = docs.broken_links()
    assert not broken, "broken links in the docs:\n" + "\n".join(broken)


def test_the_docs_have_blocks_for_every_generator(docs):
    text = "".join(p.read_text(encoding="utf-8") for p in docs.doc_files())
    found = {m["name"] for m in docs.BLOCK.finditer(text)}
    assert found == set(docs.RENDERERS), found


def test_a_hand_edit_inside_a_block_is_caught_and_undone(docs, tmp_path):
    page = tmp_path / "configuration.md"
    original = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    page.write_text(original.replace("| `256` |", "| `512` |"), encoding="utf-8")
    assert "| `512` |" in page.read_text(encoding="utf-8")
    diffs = docs.stale([page])
    assert len(diffs) == 1 and "-| `ASKBATCH_CONCURRENCY`" in diffs[0] and "`256`" in diffs[0]
    rendered = docs.rendered_blocks()
    again = docs.generate(page.read_text(encoding="utf-8"), rendered)
    assert again == original
    assert docs.generate(again, rendered) == again  # idempotent


def test_the_config_table_follows_the_declarations(docs):
    table = docs.render_config()
    rows = {line.split(" | ")[0].strip("| `"): line for line in table.splitlines()[2:]}
    assert set(rows) == set(ENV_VARS.values())
    for f in dataclasses.fields(Settings):
        row = rows[ENV_VARS[f.name]]
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            shown = int(f.default) if float(f.default).is_integer() else f.default
            assert f"| `{shown}` |" in row, row
    # Flags come from the parser, with the commands named where one flag sets two settings.
    assert "| `--concurrency` (worker) |" in rows["ASKBATCH_WORKER_CONCURRENCY"]
    assert "| `--broker` |" in rows["ASKBATCH_BROKER_URL"]
    assert rows["OPENAI_API_KEY"].startswith("| `OPENAI_API_KEY` | — | secret |")  # no flag
    # `{NAME}` in a description is the constant's value, never the placeholder.
    assert "{" not in table and "`gpt-5-mini`" in rows["ASKBATCH_MODEL"]
    assert str(Path.home()) not in table  # a computed default is described, not evaluated


def test_the_tree_names_every_module_with_its_opening_line(docs):
    tree = docs.render_tree()
    for package in ("worker", "jobs"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "__init__.py":
                assert f"`{path.parent.name}/` — " in tree, path
                continue
            line = f"`{path.name}` — {docs._plain(docs.opening(path))}"
            assert line in tree, path


def test_link_checker_finds_missing_files_and_anchors(docs, tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Half price: `--batch`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#half-price---batch) [ok too](#page) [web](https://example.com/x#y)\n"
        "[no file](missing.md) [no anchor](other.md#nowhere) ![no image](img.png)\n"
        "`[in code](missing2.md)`\n\n```\n[in a fence](missing3.md)\n```\n"
    )
    broken = docs.broken_links([page])
    assert len(broken) == 3, broken
    assert "missing.md" in broken[0] and "#nowhere" in broken[1] and "img.png" in broken[2]


def test_check_command_passes_on_this_tree():
    """The command itself, as run after a merge: the same checks, through its own start-up."""
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
