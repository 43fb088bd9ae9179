"""What the page sends to start a job, taken as data: a worksheet and maybe a profile, kept
under `<state_dir>/uploads/<id>/`, read with the CLI's intake, deleted when no job uses it.

An upload cannot name a module the server imports (its profile's tools must be on
ASKBATCH_UI_TOOLS, checked by name first; workers check again, worker/runtime.py) or a file it
opens (no `schema_file`); cannot hold the server's memory (Starlette spools each file part to
a temporary file past 1 MB, copied here in chunks); cannot cost more than ASKBATCH_UI_MAX_ROWS
rows and ASKBATCH_UI_ESTIMATE_CPU seconds of CPU; cannot fill the disk (uploads no job uses
go after ASKBATCH_UI_UPLOAD_DAYS, and the oldest first past ASKBATCH_UI_UPLOADS_MB or
MAX_UNUSED uploads). Every refusal is one message, and leaves nothing behind.

Layout: `<id>/worksheet/<name>`, `<id>/profile/<name>`, the answers CSV of each job started
from it beside them, and `<id>/.used` once a job uses it. Folders of older versions (a
worksheet right in `<id>/`) are left alone: their jobs may still need them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from jobs.intake import TooManyRows, Worksheet, open_worksheet
from worker.errors import AskbatchError, ConfigError, InputError
from worker.private import FILE_MODE, private_dir
from worker.profile import Profile, check_allowed, load_profile, tool_allowlist
from worker.settings import Settings
from worker.tools import ToolBox

PROFILE_MAX_BYTES = 1_000_000  # a profile is a page of TOML, not a data file
MAX_NAME_BYTES = 255  # no file system takes a longer name: longer is not a file's name
KEPT_NAME_BYTES = 120  # room for ".<job>.answers.csv" beside it
MAX_UNUSED = 1000  # uploads no job uses, at most
SWEEP_EVERY_S = 3600.0  # between two sweeps with no upload coming in
USED = ".used"
_ID = re.compile(r"[0-9a-f]{16}")


@dataclass
class Upload:
    id: str
    folder: Path
    sheet: Worksheet
    profile: str  # path of the uploaded profile, or ""


def shown(message: str, folder: Path) -> str:
    """A message about an upload as the page says it: the file's own name, not where the
    server keeps it."""
    for part in ("worksheet/", "profile/", ""):
        message = message.replace(f"{folder}/{part}", "")
    return message


def page_profile(settings: Settings, uploaded: bool, imports: bool = False) -> Profile:
    """The profile of a job from the page. An `uploaded` one is data: it names no file to open,
    and its tools must be on ASKBATCH_UI_TOOLS, checked by name before any is imported
    (`imports`: then imported, so that a missing one fails before the job starts)."""
    if not settings.assistant_profile:
        return Profile()
    profile = load_profile(settings.assistant_profile, uploaded=uploaded)
    if uploaded:
        allowed = tool_allowlist(settings.ui_tools)
        check_allowed(profile.tools, allowed, settings.assistant_profile)
    if imports:
        ToolBox(profile.tools)
    return profile


class Uploads:
    """The uploads folder of a server; `taking` gives the upload of a request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.state_dir) / "uploads"
        self.lock = threading.Lock()
        self.busy: set[str] = set()  # uploads a request is reading or starting right now
        self.swept = float("-inf")  # the first list of jobs sweeps

    @contextlib.contextmanager
    def taking(self, form: dict[str, Any]) -> Iterator[Upload]:
        """The form's upload: a new worksheet (and profile) kept and read, or one kept before
        (`upload`, its id). A new one whose reading or estimate fails is deleted."""
        sheet, profile = _file(form, "worksheet"), _file(form, "profile")
        upload_id = secrets.token_hex(8) if sheet is not None else str(form.get("upload") or "")
        if not upload_id:
            raise ConfigError("choose a worksheet (a CSV file with a `question` column) first")
        with self.lock:
            self.busy.add(upload_id)
        try:
            if sheet is not None:
                self._receive(upload_id, sheet, profile)
            yield self._open(upload_id)
        except BaseException:
            if sheet is not None:
                shutil.rmtree(self.root / upload_id, ignore_errors=True)
            raise
        finally:
            with self.lock:
                self.busy.discard(upload_id)

    @contextlib.contextmanager
    def using(self, upload: Upload) -> Iterator[None]:
        """A job is started from this upload in the block: from then on it is kept for as long
        as the job is (marked before the job exists, unmarked if none was started)."""
        marker = upload.folder / USED
        before = marker.exists()
        _write_new(marker, b"")
        try:
            yield
        except BaseException:
            if not before:
                marker.unlink(missing_ok=True)
            raise

    def _receive(self, upload_id: str, sheet: Any, profile: Any) -> None:
        name = _file_name(sheet.filename, "worksheet")
        if name.lower().endswith(".toml"):
            raise InputError(
                f"{name} is an assistant profile, not a worksheet: choose it under the profile, "
                "and a CSV file of questions as the worksheet"
            )
        profile_name = _file_name(profile.filename, "profile") if profile is not None else ""
        if profile is not None and (profile.size or 0) > PROFILE_MAX_BYTES:
            raise InputError(f"{profile_name}: a profile is at most {PROFILE_MAX_BYTES:,} bytes")
        self.sweep(incoming=(sheet.size or 0) + (profile.size if profile is not None else 0))
        folder = private_dir(self.root / upload_id / "worksheet", top=self.root.parent)
        try:
            _copy(sheet.file, folder / name)
            if profile is not None:
                _copy(profile.file, private_dir(folder.parent / "profile") / profile_name)
        except OSError as exc:
            raise InputError(f"{name}: the server could not keep it: {exc.strerror}") from None

    def _open(self, upload_id: str) -> Upload:
        folder = self.root / upload_id
        sheets = sorted((folder / "worksheet").glob("*")) if _ID.fullmatch(upload_id) else []
        if not sheets:
            raise InputError("that upload is gone; choose the worksheet again")
        profiles = sorted((folder / "profile").glob("*"))
        try:
            sheet = open_worksheet(sheets[0], max_rows=self.settings.ui_max_rows)
        except TooManyRows as exc:
            raise InputError(f"{shown(str(exc), folder)} (ASKBATCH_UI_MAX_ROWS)") from None
        except AskbatchError as exc:
            raise type(exc)(shown(str(exc), folder)) from None
        return Upload(upload_id, folder, sheet, str(profiles[0]) if profiles else "")

    def sweep_now_and_then(self) -> None:
        """Sweep if no sweep was made for SWEEP_EVERY_S: old uploads go without a new one."""
        if time.monotonic() - self.swept > SWEEP_EVERY_S:
            self.sweep()

    def sweep(self, incoming: int = 0) -> None:
        """Delete the uploads no job uses that are older than ASKBATCH_UI_UPLOAD_DAYS, then the
        oldest of them while they, with `incoming` bytes more, pass ASKBATCH_UI_UPLOADS_MB or
        MAX_UNUSED uploads."""
        s = self.settings
        now, cap = time.time(), s.ui_uploads_mb * 1e6
        with self.lock:
            self.swept = time.monotonic()
            unused = sorted(_unused(self.root, self.busy))
            total = incoming + sum(size for _, _, size in unused)
            for n, (made, folder, size) in enumerate(unused):
                left = len(unused) - n  # this one and the newer ones
                if now - made > s.ui_upload_days * 86400 or total > cap or left >= MAX_UNUSED:
                    shutil.rmtree(folder, ignore_errors=True)
                    total -= size


def _file(form: dict[str, Any], name: str) -> Any:
    """The form's file part `name` if it holds anything (Starlette's UploadFile), else None."""
    value = form.get(name)
    return value if hasattr(value, "file") and (value.size or 0) > 0 else None


def _file_name(name: str | None, what: str) -> str:
    """The name to keep an uploaded file under: its own, without any folder, with characters
    a file system may refuse replaced, shortened to KEPT_NAME_BYTES; InputError for a name no
    file has (control characters, longer than a file system takes)."""
    name = name or f"{what}.csv"
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InputError(f"the {what}'s file name holds control characters; rename the file")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InputError(
            f"the {what}'s file name is longer than {MAX_NAME_BYTES} bytes; rename the file"
        )
    name = re.sub(r"[^\w.-]+", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    if len(name.encode()) > KEPT_NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        if not dot or len(suffix) > 10:
            stem, dot, suffix = name, "", ""
        room = KEPT_NAME_BYTES - len(dot + suffix)
        name = stem.encode()[:room].decode(errors="ignore") + dot + suffix
    return name or f"{what}.csv"


def _unused(root: Path, busy: set[str]) -> Iterator[tuple[float, Path, int]]:
    """(made, folder, bytes) of each upload no job uses and no request holds."""
    with contextlib.suppress(FileNotFoundError):
        for folder in root.iterdir():
            sheets = folder / "worksheet"
            if folder.name in busy or (folder / USED).exists() or not sheets.is_dir():
                continue
            with contextlib.suppress(OSError):
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                yield sheets.stat().st_mtime, folder, size


def _copy(source: BinaryIO, path: Path) -> None:
    source.seek(0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _write_new(path: Path, data: bytes) -> None:
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
