"""Starting and resuming jobs from the page: an upload (jobs/web/uploads.py) estimated,
started, then answered on a background thread of the server.

That thread calls the same `answer_job` as `askbatch run` — on this process's threads
embedded, on the workers distributed — and writes the answers CSV when every row has a result.

The upload is the job's worksheet: `collect`, `resume` and the page's download read it
again, and refuse it if it changed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

from jobs import control, judge
from jobs.intake import Worksheet
from jobs.record import check_worksheet, record_for
from jobs.submit import answer_job, pending_groups, start_job, task_groups
from jobs.web.catalog import Catalog
from jobs.web.facts import Tallies
from jobs.web.uploads import Upload, page_profile, shown
from worker import pricing
from worker.errors import AskbatchError, ConfigError
from worker.settings import PROVIDERS, Settings, mask_url

log = logging.getLogger("askbatch.serve")

# The page's choices: what a form may set on the server's own settings. A provider that needs
# a server of its own (`local`) is for the command line.
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
PAGE_PROVIDERS = tuple(p for p in PROVIDERS if p != "local")


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
        if changes.get("provider", self.settings.provider) not in PAGE_PROVIDERS:
            raise ConfigError(
                f"provider {changes['provider']!r} cannot be chosen here; choose one of "
                f"{', '.join(PAGE_PROVIDERS)} (--provider local is for the command line)"
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
        """Create the job from an upload and answer it in the background; returns its id."""
        settings = self.job_settings(upload, form)
        settings.require_credentials()
        profile = page_profile(settings, uploaded=bool(upload.profile), imports=True)
        store = self.catalog.own
        spec = start_job(settings, upload.sheet, store, profile, bool(upload.profile))
        sheet = upload.sheet
        out = upload.folder / f"{sheet.path.stem}.{spec.job_id}.answers.csv"
        control.remember(store, spec, record_for(sheet, out, control.mode_of(settings)))
        job = self.catalog.locate(spec.job_id)
        hold = contextlib.ExitStack()
        hold.enter_context(store.hold(job.id))
        self._run(job, settings, hold, sheet, lambda: task_groups(sheet))
        return job.id

    def resume(self, job: control.Job, retry_failed: bool) -> str:
        """Ask the rows of a job without a result (and, with retry_failed, its failed ones)."""
        if not self.catalog.runs_here(job):
            here = "distributed" if self.settings.broker_url else "embedded"
            raise ConfigError(
                f"job {job.id} is {job.record.mode} and this server runs {here} jobs "
                f"({self.where()}): resume it with `askbatch resume {job.id}`"
            )
        if self.is_running(job.id):
            raise ConfigError(f"job {job.id} is already running here")
        sheet = check_worksheet(job.record, job.id)
        job.settings.with_(base_url=job.spec.base_url).require_credentials()
        if job.spec.provider == "local" and not job.settings.broker_url:
            raise ConfigError(
                f"job {job.id} ran on a local model server that is gone; resuming "
                "--provider local jobs is not supported yet"
            )
        hold = contextlib.ExitStack()
        hold.enter_context(job.store.hold(job.id))  # JobBusy if another process runs it
        try:
            pending, dropped = control.prepare_resume(job, sheet, retry_failed)
        except BaseException:
            hold.close()
            raise
        self.tallies.forget(job.id)
        self._run(job, self.settings, hold, sheet, lambda: pending_groups(sheet, pending))
        again = f" ({dropped} of them ended failed, expired or cancelled before)" if dropped else ""
        return f"job {job.id}: {len(pending)} of {job.spec.total} rows to ask{again}"

    def where(self) -> str:
        if self.settings.broker_url:
            return f"workers via {mask_url(self.settings.broker_url)}"
        return f"this process, {self.settings.state_dir}"

    def is_running(self, job_id: str) -> bool:
        with self.lock:
            thread = self.running.get(job_id)
        return thread is not None and thread.is_alive()

    def _run(self, job: control.Job, settings: Settings, hold, sheet: Worksheet, groups) -> None:
        def work() -> None:
            with hold:
                try:
                    answer_job(
                        settings,
                        job.store,
                        job.spec,
                        groups(),
                        show=lambda progress: None,
                        on_idle=lambda: self._note(
                            job.id,
                            f"no worker has picked up a task after {settings.idle_warning_s:g}s;"
                            f" is `askbatch worker` running against "
                            f"{mask_url(settings.broker_url)}?",
                        ),
                        sheet=sheet,
                        tell=lambda message: self._note(job.id, message.strip()),
                    )
                    self._note(job.id, "")
                    judge.judge(settings, job.store, job.spec, sheet, lambda m: None)
                    control.collect(job, Path(job.record.output))
                except AskbatchError as exc:
                    self._note(job.id, str(exc))
                except Exception as exc:  # the server goes on; the page says what happened
                    log.exception("job %s failed", job.id)
                    self._note(job.id, f"the job stopped on an unexpected error: {exc!r}")

        thread = threading.Thread(target=work, name=f"askbatch-job-{job.id}", daemon=True)
        with self.lock:
            self.running[job.id] = thread
            self.notes.pop(job.id, None)
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
