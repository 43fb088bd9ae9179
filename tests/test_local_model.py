"""The bundled model's assembly from its chunk packages (worker/local/model.py), on small fake
parts: streamed into the cache once, size and sha256 checked, and a missing, short or corrupt
part is one clear error that leaves no file behind."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.local import model

PART = 3000  # bytes per part but the last


@pytest.fixture
def chunked(tmp_path, monkeypatch) -> model.Chunked:
    """Three importable part packages, fakepart1..3, whose slices make one file."""
    data = bytes(range(256)) * 30  # 7680 bytes: parts of 3000, 3000 and 1680
    root = tmp_path / "site"
    for n in range(1, 4):
        pkg = root / f"fakepart{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{n:02}.bin").write_bytes(data[(n - 1) * PART : n * PART])
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(__file__), 'data', 'part{n:02}.bin')\n"
        )
    monkeypatch.syspath_prepend(str(root))
    for n in range(1, 4):  # another test's parts, imported from its own folder
        monkeypatch.delitem(sys.modules, f"fakepart{n}", raising=False)
    importlib.invalidate_caches()
    return model.Chunked(
        name="fake-model",
        parts=("fakepart1", "fakepart2", "fakepart3"),
        distribution="fake-part{n}==1.0",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        part_size=PART,
    )


def part(chunked: model.Chunked, n: int) -> Path:
    return Path(importlib.import_module(chunked.parts[n - 1]).get_part_path())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_parts_are_assembled_once_in_order_and_checked(chunked, tmp_path):
    said: list[str] = []
    path = model.assemble(chunked, tmp_path / "models", said.append)
    assert path == tmp_path / "models" / "fake-model.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == chunked.sha256
    assert "3 packages" in said[0] and "once" in said[0], said
    assert leftovers(tmp_path / "models") == ["fake-model.gguf", "fake-model.gguf.sha256"]
    # Once made, the parts are not read again: the file and its stamp suffice.
    part(chunked, 2).unlink()
    said.clear()
    assert model.assemble(chunked, tmp_path / "models", said.append) == path and not said


def test_a_changed_cached_file_is_assembled_again(chunked, tmp_path):
    path = model.assemble(chunked, tmp_path / "models")
    path.write_bytes(b"GGUF" + bytes(chunked.size - 4))  # same size, other bytes, new mtime
    assert model.cached(chunked, tmp_path / "models") is None
    path = model.assemble(chunked, tmp_path / "models")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == chunked.sha256


def test_a_missing_part_package_names_it_and_how_to_install_it(chunked, tmp_path):
    broken = model.Chunked(**{**chunked.__dict__, "parts": ("fakepart1", "nopart2", "fakepart3")})
    with pytest.raises(ConfigError) as err:
        model.assemble(broken, tmp_path / "models")
    msg = str(err.value)
    assert "part 2 (fake-part2==1.0, module nopart2) is not installed" in msg, msg
    assert "pip install 'askbatch[local]'" in msg, msg
    assert leftovers(tmp_path / "models") == []


def test_a_part_of_the_wrong_size_is_refused_before_assembling(chunked, tmp_path):
    part(chunked, 1).write_bytes(b"x" * (PART - 1))
    with pytest.raises(ConfigError, match=r"part 1 .* holds 2,999 bytes, not 3,000"):
        model.assemble(chunked, tmp_path / "models")
    part(chunked, 3).unlink()
    with pytest.raises(ConfigError, match=r"part 1 .*holds"):
        model.assemble(chunked, tmp_path / "models")


def test_a_corrupt_part_fails_the_hash_and_leaves_nothing(chunked, tmp_path):
    slice_ = bytearray(part(chunked, 2).read_bytes())
    slice_[100] ^= 0xFF
    part(chunked, 2).write_bytes(bytes(slice_))
    with pytest.raises(ConfigError) as err:
        model.assemble(chunked, tmp_path / "models")
    msg = str(err.value)
    assert f"not the pinned 7,680 bytes and {chunked.sha256}" in msg, msg
    assert "a part is corrupt" in msg and "reinstall" in msg, msg
    assert leftovers(tmp_path / "models") == [], "no partial or wrong model is left"


def test_the_pinned_bundled_model_adds_up():
    assert len(model.QWEN.parts) == 22 and sum(model.QWEN.part_sizes()) == model.QWEN.size
    assert model.QWEN.part_sizes()[-1] == 16_315_968
