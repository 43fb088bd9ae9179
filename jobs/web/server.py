"""`askbatch serve` as a process: this process configured for its jobs (embedded, or on the
workers of the configured Redis), the app built, and uvicorn serving it until Ctrl-C."""

from __future__ import annotations

import socket

import uvicorn

from jobs import control
from jobs.web.app import build_app
from jobs.web.guard import check_exposure, is_loopback
from worker import runtime
from worker.errors import ConfigError
from worker.settings import Settings, mask_url


def serve(settings: Settings, host: str, port: int) -> None:
    check_exposure(host, settings)
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
    token = "" if not settings.ui_token else " (add ?token=… with ASKBATCH_UI_TOKEN's value)"
    print(f"askbatch serve: http://{_shown(host)}:{port}/{token}; jobs run {where}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


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
