"""`askbatch serve` as a process: configured for its jobs (embedded, or on the workers of the
configured Redis), its token, the app built, and uvicorn serving it until Ctrl-C.

When no token is set, a random one is made and printed in the page's address, as Jupyter
does. Every log line the process writes has its credentials masked.
"""

from __future__ import annotations

import copy
import logging
import socket
from typing import Any

import uvicorn
import uvicorn.config
import uvicorn.logging

from jobs import control
from jobs.web.app import build_app
from jobs.web.guard import is_loopback, with_token
from worker import runtime
from worker.errors import ConfigError
from worker.settings import Settings, mask_url


class MaskedFormatter(uvicorn.logging.DefaultFormatter):
    """uvicorn's log lines (and tracebacks) with any credential in a URL masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


def serve(settings: Settings, host: str, port: int) -> None:
    settings, made = with_token(settings)
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not 1..65535")
    runtime.configure(settings)
    if settings.broker_url:
        from worker import app as celery_app

        celery_app.configure(settings)
    store = control.connect_store(settings)
    app = build_app(settings, store, loopback=is_loopback(host))
    sock = _listen(host, port)  # bound here, so the address printed is one that answers
    where = f"workers via {mask_url(settings.broker_url)}" if settings.broker_url else "embedded"
    address = f"http://{_shown(host)}:{port}/"
    if made:  # the one place a token is shown: it is this run's, and goes with it
        address += f"?token={settings.ui_token}"
    else:
        address += " (open it with ?token=… : the value of ASKBATCH_UI_TOKEN)"
    print(f"askbatch serve: {address}; jobs run {where}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, log_config=_log_config())
    uvicorn.Server(config).run(sockets=[sock])


def _log_config() -> dict[str, Any]:
    """uvicorn's logging (its access log is off), every line masked; every other logger of
    the process (askbatch's, the libraries') through the same handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.MaskedFormatter"
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {_shown(host)}:{port}: {exc.strerror}; choose another --port, "
            "or a --host of this machine"
        ) from None
    sock.listen(128)
    return sock
