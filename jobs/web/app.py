"""The Starlette app of `askbatch serve`: two pages (the job list with the start form, and one
job) and the JSON API they poll.

Every handler is a thin layer over jobs/control, jobs/web's catalog and launcher, and the
report; every asset is served from `static/`.

API: GET /api/config, GET /api/jobs, GET /api/jobs/{id}, GET /api/jobs/{id}/answers.csv,
GET /api/jobs/{id}/report.html, POST /api/jobs/{id}/cancel|resume|retry,
POST /api/estimate, POST /api/jobs. Errors are `{"error": "..."}` with a 4xx status.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobs import control
from jobs.job import cancel
from jobs.web import facts
from jobs.web.catalog import Catalog, UnknownJob
from jobs.web.guard import Guard, TooLarge
from jobs.web.launch import PAGE_PROVIDERS, Launcher, optional_choices
from worker.errors import AskbatchError, ConfigError
from worker.providers import registry
from worker.settings import DEFAULT_MODEL, Settings
from worker.store import JobBusy, Store

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
log = logging.getLogger("askbatch.serve")


class Api:
    """The handlers, over the server's catalog of jobs and its launcher."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.catalog = Catalog(settings, store)
        self.tallies = facts.Tallies()
        self.launcher = Launcher(settings, self.catalog, self.tallies)

    def _facts(self, job: control.Job, detail: bool = False) -> dict[str, Any]:
        out = facts.describe(job, self.tallies, detail)
        here = self.launcher.is_running(job.id)
        out["can_resume"] = self.catalog.runs_here(job) and not here
        if detail and here and out["state"] == "running":
            out["status_line"] = f"running in this server; {out['total'] - out['done']} rows to go"
        if detail and (note := self.launcher.note(job.id)):
            out["note"] = note
        return out

    async def config(self, request: Request) -> Response:
        s = self.settings
        return JSONResponse(
            {
                "mode": "distributed" if s.broker_url else "embedded",
                "where": self.launcher.where(),
                "providers": list(PAGE_PROVIDERS),
                "optional": optional_choices(),
                "defaults": {
                    "provider": s.provider if s.provider in PAGE_PROVIDERS else registry.DEFAULT,
                    "model": s.model or DEFAULT_MODEL,
                    "instructions": s.instructions,
                    "max_cost": s.max_cost,
                    "answer_tokens": s.answer_tokens,
                },
                "max_upload_mb": s.ui_max_upload_mb,
            }
        )

    def _list(self) -> dict[str, Any]:
        ids, problems = self.catalog.job_ids()
        jobs = []
        for job_id in ids:
            try:
                jobs.append(self._facts(self.catalog.locate(job_id)))
            except AskbatchError:
                continue  # a job being created has no record yet; it shows at the next poll
        return {"jobs": jobs, "problems": problems}

    async def jobs(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._list))

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job"]
        return JSONResponse(
            await run_in_threadpool(lambda: self._facts(self.catalog.locate(job_id), True))
        )

    def _collected(self, job_id: str) -> tuple[control.Job, Path, Path]:
        job = self.catalog.locate(job_id)
        folder = Path(tempfile.mkdtemp(prefix="askbatch-serve-"))
        out = folder / Path(job.record.output).name
        try:
            control.collect(job, out)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return job, folder, out

    async def answers(self, request: Request) -> Response:
        """The answers CSV as `askbatch collect` writes it, from what is done so far."""
        _, folder, out = await run_in_threadpool(self._collected, request.path_params["job"])
        return FileResponse(
            out,
            media_type="text/csv; charset=utf-8",
            filename=out.name,
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    def _report(self, job_id: str) -> str:
        from jobs import report  # pandas comes with the report: only when one is made
        from jobs.report import html

        _, folder, out = self._collected(job_id)
        try:
            answers = report.load(out)  # named by its file, not the server's temporary folder
            return html.page([(answers, report.summarize(answers, name=out.name))])
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def report(self, request: Request) -> Response:
        """The HTML report of the answers so far (`askbatch report --html`)."""
        job_id = request.path_params["job"]
        page = await run_in_threadpool(self._report, job_id)
        headers = {}
        if request.query_params.get("download"):
            headers["content-disposition"] = f'attachment; filename="{job_id}.report.html"'
        return HTMLResponse(page, headers=headers)

    async def act(self, request: Request) -> Response:
        job_id, action = request.path_params["job"], request.path_params["action"]
        if action not in ("cancel", "resume", "retry"):
            return JSONResponse({"error": f"no action {action!r}"}, status_code=404)

        def do() -> str:
            job = self.catalog.locate(job_id)
            if action == "cancel":
                return cancel(job)
            return self.launcher.resume(job, retry_failed=action == "retry")

        return JSONResponse({"message": await run_in_threadpool(do)})

    async def _form(self, request: Request) -> dict[str, Any]:
        try:
            async with request.form(max_files=2, max_fields=20) as form:
                out: dict[str, Any] = {}
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        out[name] = (value.filename or "", await value.read())
                    else:
                        out[name] = value
                return out
        except TooLarge:
            raise _TooLargeError(self.settings.ui_max_upload_mb) from None

    def _upload_of(self, form: dict[str, Any]):
        sheet = form.get("worksheet")
        if isinstance(sheet, tuple) and sheet[1]:
            profile = form.get("profile")
            profile = profile if isinstance(profile, tuple) and profile[1] else None
            return self.launcher.receive(sheet[0], sheet[1], profile)
        if upload_id := form.get("upload"):
            return self.launcher.upload(upload_id)
        raise ConfigError("choose a worksheet (a CSV file with a `question` column) first")

    async def estimate(self, request: Request) -> Response:
        """Keep a worksheet and read it (the CLI's intake); its estimate with the choices."""
        form = await self._form(request)

        def do() -> dict[str, Any]:
            upload = self._upload_of(form)
            return {"name": upload.sheet.path.name, **self.launcher.estimate(upload, form)}

        return JSONResponse(await run_in_threadpool(do))

    async def start(self, request: Request) -> Response:
        form = await self._form(request)

        def do() -> str:
            return self.launcher.start(self._upload_of(form), form)

        job_id = await run_in_threadpool(do)
        return JSONResponse({"job": job_id, "url": f"/jobs/{job_id}"}, status_code=201)


class _TooLargeError(AskbatchError):
    def __init__(self, mb: float) -> None:
        super().__init__(f"the upload is larger than {mb:g} MB (ASKBATCH_UI_MAX_UPLOAD_MB)")


def _page(name: str):
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8")

    return page


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UnknownJob):
        status = 404
    elif isinstance(exc, JobBusy):
        status = 409
    elif isinstance(exc, _TooLargeError):
        status = 413
    elif isinstance(exc, AskbatchError):
        status = 400
    else:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error; see the server's log"}, status_code=500)
    return JSONResponse({"error": str(exc)}, status_code=status)


def build_app(settings: Settings, store: Store, loopback: bool) -> Starlette:
    api = Api(settings, store)
    routes = [
        Route("/", _page("index.html")),
        Route("/jobs/{job}", _page("job.html")),
        Route("/api/config", api.config),
        Route("/api/jobs", api.jobs),
        Route("/api/jobs", api.start, methods=["POST"]),
        Route("/api/estimate", api.estimate, methods=["POST"]),
        Route("/api/jobs/{job}", api.job),
        Route("/api/jobs/{job}/answers.csv", api.answers),
        Route("/api/jobs/{job}/report.html", api.report),
        Route("/api/jobs/{job}/{action:str}", api.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(
            Guard,
            token=str(settings.ui_token),
            max_body=int(settings.ui_max_upload_mb * 1e6),
        ),
    ]
    if loopback:  # a page on another site cannot reach us through a name it resolves here
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={AskbatchError: _error, Exception: _error},
    )
    app.state.api = api
    return app
