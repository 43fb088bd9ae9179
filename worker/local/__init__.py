"""`--provider local`: llama.cpp's server (prebuilt, from xllamacpp) on loopback, which askbatch
starts and stops, on a bundled model or any GGUF file.

The server speaks the OpenAI Chat Completions API, so rows go through the ordinary `chat`
provider with the server as its base URL; this package only owns the server's lifetime and
its model. It answers several requests at once (one per slot).

`model.py` assembles the bundled model from its packages, `install.py` checks what the server
needs and picks the model, `serve.py` is the server process, `server.py` runs and stops it,
`prepare.py` sets up a run or a worker on it.
"""

from worker.local.install import (
    MODEL_MODULES,
    SERVER_MODULES,
    bundled_model,
    check_installed,
    missing_modules,
    model_cache,
    model_path,
)
from worker.local.model import DEFAULT, INSTALL, INSTALL_SMALL, QWEN, SMALL, SMALL_PACKAGE, Chunked
from worker.local.prepare import (
    NoLocalServer,
    cap_answers,
    prepare_run,
    prepare_worker,
    start_server,
)
from worker.local.server import (
    HOST,
    LocalServer,
    Say,
    _servers,
    free_port,
    lifetime,
    port_in_use,
    stop_all,
)

__all__ = [
    "DEFAULT",
    "HOST",
    "INSTALL",
    "INSTALL_SMALL",
    "MODEL_MODULES",
    "QWEN",
    "SERVER_MODULES",
    "SMALL",
    "SMALL_PACKAGE",
    "Chunked",
    "LocalServer",
    "NoLocalServer",
    "Say",
    "_servers",
    "bundled_model",
    "cap_answers",
    "check_installed",
    "free_port",
    "lifetime",
    "missing_modules",
    "model_cache",
    "model_path",
    "port_in_use",
    "prepare_run",
    "prepare_worker",
    "start_server",
    "stop_all",
]
