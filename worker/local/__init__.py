"""`--provider local`: a llama-cpp-python server on loopback that askbatch starts and stops.

The server speaks the OpenAI Chat Completions API, so rows go through the ordinary `chat`
provider with the server as its base URL; this package only owns the server's lifetime. It
answers one request at a time, so a job on it runs one row at a time.

`install.py` checks what the server needs and finds the model, `server.py` runs the server
process, `prepare.py` sets up a run or a worker on it.
"""

from worker.local.install import (
    INSTALL,
    MODEL_PACKAGE,
    SERVER_MODULES,
    bundled_model,
    check_installed,
    missing_modules,
    model_path,
)
from worker.local.prepare import (
    ONE_AT_A_TIME,
    NoLocalServer,
    cap_answers,
    prepare_run,
    prepare_worker,
    start_server,
)
from worker.local.server import (
    HOST,
    Interrupted,
    LocalServer,
    Say,
    _servers,
    free_port,
    lifetime,
    port_in_use,
    stop_all,
)

__all__ = [
    "HOST",
    "INSTALL",
    "MODEL_PACKAGE",
    "ONE_AT_A_TIME",
    "SERVER_MODULES",
    "Interrupted",
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
    "model_path",
    "port_in_use",
    "prepare_run",
    "prepare_worker",
    "start_server",
    "stop_all",
]
