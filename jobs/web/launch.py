"""Starting and resuming jobs from the page: an upload (jobs/web/uploads.py) estimated,
started, then answered on a background thread of the server.

Starting and resuming are jobs/job.py's, as for `askbatch run` and `resume`; the thread runs
`Run.answer` — on this process's threads embedded, on the workers distributed, through the
Batch API with --batch — which writes the answers CSV when every row has a result.

The upload (jobs/web/uploads.py) is the job's worksheet: `collect`, `resume` and the page's
download read it again, and refuse it if it changed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import fields
from typing import Any

from jobs import control
from jobs.job import Run, Start, Ui, resume, start
from jobs.web.catalog import Catalog
from jobs.web.facts import Tallies
from jobs.web.uploads import Upload, page_profile, shown
from worker import pricing
from worker.errors import AskbatchError, ConfigError
from worker.providers import registry
from worker.settings import Settings, mask_url

log = logging.getLogger("askbatch.serve")

# The page's choices: what a form may set on the server's own settings. A provider that needs
# a server of its own (`local`) is for the command line (registry: `on_page`).
CHOICES = (
    "provider",
    "model",
    "instructions",
    "max_cost",
    "answer_tokens",
    "expected",
    "grade_with",
)
OPTIONAL_CHOICES = ("service_tier", "batch")  # where the settings have them
PAGE_PROVIDERS = registry.names(lambda p: p.on_page)


def optional_choices() -> list[str]:
    names = {f.name for f in fields(Settings)}
    return [name for name in OPTIONAL_CHOICES if name in names]


class Launcher:
    def __init__(self, settings: Settings, catalog: Catalog, tallies: Tallies) -> None:
        self.settings = settings
        self.catalog = catalog
        self.tallies = tallies
        self.lock = threading.Lock()
        self.running: dict[str, threading.Thread] = {}
        self.notes: dict[str, str] = {}  # job → what went wrong running it here, or a warning

    def job_settings(self, upload: Upload, form: dict[str, Any]) -> Settings:
        """The server's settings with the page's choices; checked as the CLI checks flags."""
        changes: dict[str, Any] = {}
        for name in (*CHOICES, *optional_choices()):
            value = form.get(name)
            if isinstance(value, str) and value.strip():
                changes[name] = value.strip()
        if "batch" in changes:
            changes["batch"] = changes["batch"] in ("1", "true", "on", "yes")
        if (chosen := changes.get("provider", self.settings.provider)) not in PAGE_PROVIDERS:
            others = " or ".join(registry.names(lambda p: not p.on_page))
            raise ConfigError(
                f"provider {chosen!r} cannot be chosen here; choose one of "
                f"{', '.join(PAGE_PROVIDERS)} (--provider {others} is for the command line)"
            )
        if upload.profile:
            changes["assistant_profile"] = upload.profile
        try:
            settings = self.settings.with_(**changes)
            settings.validate()
            page_profile(settings, uploaded=bool(upload.profile))
        except AskbatchError as exc:
            raise type(exc)(shown(str(exc), upload.folder)) from None
        return settings

    def estimate(self, upload: Upload, form: dict[str, Any]) -> dict[str, Any]:
        from jobs import estimate  # pandas comes with it: only when an estimate is made

        settings = self.job_settings(upload, form)
        profile = page_profile(settings, uploaded=bool(upload.profile))
        est = estimate.for_settings(settings, upload.sheet, profile)
        cap = pricing.parse_usd(settings.max_cost, "max cost") if settings.max_cost else None
        return {
            "upload": upload.id,
            "rows": est.rows,
            "blank": est.blank,
            "low_usd": f"{est.total(high=False):.6f}",
            "high_usd": f"{est.total(high=True):.6f}",
            "unpriced_rows": est.unpriced_rows,
            "text": shown(estimate.text(est, cap), upload.folder),
        }

    # --- running ------------------------------------------------------------------------

    def start(self, upload: Upload, form: dict[str, Any]) -> str:
        """Create the job from an upload (jobs/job.py, as `askbatch run` does) and answer it
        in the background; returns its id. The answers file goes beside the upload."""
        sheet = upload.sheet
        settings = self.job_settings(upload, form)
        settings.require_credentials()  # before the profile's tools are imported
        request = Start(
            sheet,
            settings,
            output=lambda job_id: upload.folder / f"{sheet.path.stem}.{job_id}.answers.csv",
            profile=page_profile(settings, uploaded=bool(upload.profile), imports=True),
            profile_from_page=bool(upload.profile),
        )
        run = start(request, Ui(), store=self.catalog.own)
        self._run(run)
        return run.job.id

    def resume(self, job: control.Job, retry_failed: bool) -> str:
        """Ask the rows of a job without a result (and, with retry_failed, its failed ones),
        as `askbatch resume` does."""
        if not self.catalog.runs_here(job):
            here = "distributed" if self.settings.broker_url else "embedded"
            raise ConfigError(
                f"job {job.id} is {job.record.mode} and this server runs {here} jobs "
                f"({self.where()}): resume it with `askbatch resume {job.id}`"
            )
        if self.is_running(job.id):
            raise ConfigError(f"job {job.id} is already running here")
        # The answers file is the page's own, beside the upload: written again at the end.
        run = resume(job, Ui(), retry_failed, overwrite=True)  # JobBusy if another runs it
        self.tallies.forget(job.id)
        self._run(run)
        return run.about

    def where(self) -> str:
        if self.settings.broker_url:
            return f"workers via {mask_url(self.settings.broker_url)}"
        return f"this process, {self.settings.state_dir}"

    def is_running(self, job_id: str) -> bool:
        with self.lock:
            thread = self.running.get(job_id)
        return thread is not None and thread.is_alive()

    def _run(self, run: Run) -> None:
        """Answer the run on a thread of the server; what it says to act on is the job's note."""
        job_id = run.job.id
        shown = _Noted(self, job_id)

        def work() -> None:
            try:
                run.answer(shown)
                if not shown.stopped:
                    self._note(job_id, "")
            except AskbatchError as exc:
                self._note(job_id, str(exc))
            except Exception as exc:  # the server goes on; the page says what happened
                log.exception("job %s failed", job_id)
                self._note(job_id, f"the job stopped on an unexpected error: {exc!r}")

        thread = threading.Thread(target=work, name=f"askbatch-job-{job_id}", daemon=True)
        with self.lock:
            self.running[job_id] = thread
            self.notes.pop(job_id, None)
        thread.start()

    def _note(self, job_id: str, text: str) -> None:
        with self.lock:
            if text:
                self.notes[job_id] = text
            else:
                self.notes.pop(job_id, None)

    def note(self, job_id: str) -> str:
        with self.lock:
            return self.notes.get(job_id, "")


class _Noted(Ui):
    """A job run by the page: its warnings and the error that stopped it are the job's note
    (GET /api/jobs/{id}); its progress is what the page polls, not shown as it goes."""

    summarize = False  # the page makes its report when asked (GET …/report.html)

    def __init__(self, launcher: Launcher, job_id: str) -> None:
        self.launcher, self.job_id = launcher, job_id
        self.stopped = False

    def warn(self, message: str) -> None:
        self.launcher._note(self.job_id, message.strip())

    def error(self, message: str) -> None:
        self.stopped = True
        self.launcher._note(self.job_id, message)
