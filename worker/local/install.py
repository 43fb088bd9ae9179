"""What `--provider local` needs installed, and the model it serves (by name, or a GGUF file)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from worker.errors import ConfigError
from worker.local.model import DEFAULT, INSTALL, NAMES, QWEN, SMALL, assemble, small_model
from worker.settings import Settings, _default_state_dir

# The server: llama.cpp's own HTTP server, prebuilt in the xllamacpp wheel (worker/local/serve.py).
SERVER_MODULES = ("xllamacpp",)
MODEL_MODULES = QWEN.parts


def missing_modules(names: tuple[str, ...] = SERVER_MODULES) -> list[str]:
    # find_spec looks without importing: loading llama.cpp's library here would cost a second.
    return [name for name in names if importlib.util.find_spec(name) is None]


def check_installed() -> None:
    if missing := missing_modules():
        raise ConfigError(
            f"--provider local needs llama.cpp's server from the package xllamacpp (not "
            f"importable: {', '.join(missing)}). Install it with: {INSTALL}. It is prebuilt: "
            "nothing is compiled."
        )


def model_cache(state_dir: str | Path | None = None) -> Path:
    """Where the bundled model is assembled: models/ under the state directory."""
    return Path(state_dir or _default_state_dir()).expanduser() / "models"


def bundled_model(
    state_dir: str | Path | None = None, say: Callable[[str], None] = lambda msg: None
) -> Path:
    """The default model's GGUF file, assembled from its packages the first time."""
    return assemble(QWEN, model_cache(state_dir), say)


def model_path(settings: Settings, say: Callable[[str], None] = lambda msg: None) -> Path:
    """The model to serve: --local-model as a name (qwen2.5-coder-1.5b, smollm2) or a GGUF
    file (checked to be one); the bundled default without it."""
    choice = settings.local_model.strip()
    if not choice or choice.lower() == DEFAULT:
        return bundled_model(settings.state_dir, say)
    if choice.lower() == SMALL:
        return small_model()
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"local model {str(path)!r} does not exist or is not a file (--local-model or "
            f"ASKBATCH_LOCAL_MODEL: a GGUF file, or one of the names {', '.join(NAMES)})"
        )
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ConfigError(
            f"local model {str(path)!r} is not a GGUF file (llama.cpp reads only GGUF models)"
        )
    return path.resolve()
