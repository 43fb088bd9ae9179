"""`askbatch serve` as a process: this process configured for its jobs (embedded, or on the
workers of the configured Redis), the app built, and uvicorn serving it until Ctrl-C."""

from __future__ import annotations

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
    where = f"workers via {mask_url(settings.broker_url)}" if settings.broker_url else "embedded"
    shown = f"[{host}]" if ":" in host else host
    token = "" if not settings.ui_token else " (add ?token=… with ASKBATCH_UI_TOKEN's value)"
    print(f"askbatch serve: http://{shown}:{port}/{token}; jobs run {where}", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except SystemExit as exc:  # uvicorn exits when it cannot bind the port
        raise ConfigError(f"cannot listen on {shown}:{port} (in use?)") from exc
