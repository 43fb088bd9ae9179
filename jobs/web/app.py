"""The Starlette app of `askbatch serve`: two pages (the job list with the start form, and one
job) and the JSON API they poll.

Every handler is a thin layer over jobs/control, jobs/web's catalog and launcher, and the
report; every asset is served from `static/`.

API: GET /api/config, GET /api/jobs, GET /api/jobs/{id}, GET /api/jobs/{id}/answers.csv,
GET /api/jobs/{id}/report.html, POST /api/jobs/{id}/cancel|resume|retry,
POST /api/estimate, POST /api/jobs. Errors are `{"error": "..."}` with a 4xx status, any
credential in them masked.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobs import control
from jobs.bounds import cpu_budget
from jobs.errors import ServerBusy, TooLarge, UnknownJob
from jobs.job import cancel
from jobs.web import facts
from jobs.web.catalog import Catalog
from jobs.web.guard import Guard
from jobs.web.launch import PAGE_PROVIDERS, Launcher, optional_choices
from jobs.web.uploads import Uploads
from worker.errors import AskbatchError, JobBusy
from worker.providers import registry
from worker.settings import DEFAULT_MODEL, Settings, mask_url
from worker.store import Store

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
ESTIMATES_AT_ONCE = 2  # uploads read and estimated at once; the others wait
WAIT_S = 15.0  # how long one waits for its turn before a 429
FIELD_BYTES = 256 * 1024  # a form field that is not a file (instructions, model...)
log = logging.getLogger("askbatch.serve")


class Api:
    """The handlers, over the server's catalog of jobs and its launcher."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.catalog = Catalog(settings, store)
        self.tallies = facts.Tallies()
        self.launcher = Launcher(settings, self.catalog, self.tallies)
        self.uploads = Uploads(settings)
        self.turns = asyncio.Semaphore(ESTIMATES_AT_ONCE)

    def _facts(self, job: control.Job, detail: bool = False) -> dict[str, Any]:
        out = facts.describe(job, self.tallies, detail)
        here = self.launcher.is_running(job.id)
        out["can_resume"] = self.catalog.runs_here(job) and not here
        if detail and here and out["state"] == "running":
            out["status_line"] = f"running in this server; {out['total'] - out['done']} rows to go"
        if detail and (note := self.launcher.note(job.id)):
            out["note"] = mask_url(note)
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
        await run_in_threadpool(self.uploads.sweep_now_and_then)
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

        job, folder, out = self._collected(job_id)
        try:
            # Named by its file, not the server's temporary folder; graded by the job's key.
            answers = report.load(out, key=job.spec.grade.get("expected", ""))
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

    async def _with_form(self, request: Request, work: Callable[[dict[str, Any]], Any]) -> Any:
        """`work(form)` on a thread, with the request's form (its files spooled to disk by
        Starlette), in its turn (ESTIMATES_AT_ONCE) and within the CPU an upload may take."""
        s = self.settings
        # Past the upload limit, the guard's reading raises TooLarge (answered 413).
        async with request.form(max_files=2, max_fields=20, max_part_size=FIELD_BYTES) as form:
            try:
                async with asyncio.timeout(WAIT_S):
                    await self.turns.acquire()
            except TimeoutError:
                raise ServerBusy() from None
            try:
                fields = dict(form.multi_items())
                with_budget = _budgeted(work, s.ui_estimate_cpu_s)
                return await run_in_threadpool(with_budget, fields)
            finally:
                self.turns.release()

    async def estimate(self, request: Request) -> Response:
        """Keep a worksheet and read it (the CLI's intake); its estimate with the choices."""

        def work(form: dict[str, Any]) -> dict[str, Any]:
            with self.uploads.taking(form) as upload:
                return {"name": upload.sheet.path.name, **self.launcher.estimate(upload, form)}

        return JSONResponse(await self._with_form(request, work))

    async def start(self, request: Request) -> Response:
        def work(form: dict[str, Any]) -> str:
            with self.uploads.taking(form) as upload, self.uploads.using(upload):
                return self.launcher.start(upload, form)

        job_id = await self._with_form(request, work)
        return JSONResponse({"job": job_id, "url": f"/jobs/{job_id}"}, status_code=201)


def _budgeted(work: Callable[[dict[str, Any]], Any], cpu_s: float) -> Callable[..., Any]:
    def run(form: dict[str, Any]) -> Any:
        with cpu_budget(cpu_s, "ASKBATCH_UI_ESTIMATE_CPU"):
            return work(form)

    return run


def _page(name: str):
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8")

    return page


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UnknownJob):
        status = 404
    elif isinstance(exc, JobBusy):
        status = 409
    elif isinstance(exc, TooLarge):
        status = 413
    elif isinstance(exc, ServerBusy):
        status = 429
    elif isinstance(exc, HTTPException):  # Starlette's own: a malformed form, no such page
        return JSONResponse({"error": mask_url(str(exc.detail))}, status_code=exc.status_code)
    elif isinstance(exc, AskbatchError):
        status = 400
    else:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error; see the server's log"}, status_code=500)
    return JSONResponse({"error": mask_url(str(exc))}, status_code=status)


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
            token=str(settings.ui_token),  # made by serve when none is set (guard.with_token)
            max_body=int(settings.ui_max_upload_mb * 1e6),
        ),
    ]
    if loopback:  # a page on another site cannot reach us through a name it resolves here
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={AskbatchError: _error, HTTPException: _error, Exception: _error},
    )
    app.router.redirect_slashes = False  # its redirects name the Host header's host
    app.state.api = api
    return app
