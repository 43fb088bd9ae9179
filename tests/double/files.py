"""The Files API: uploads (multipart, streamed to a temporary directory), retrieval, content,
deletion; the Batch API stores its output and error files here too.

File bytes live on disk, never whole in memory: a batch input file may be close to 200 MB.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import watch
from .core import ApiError, Double, api, json_response
from .state import new_id, now_s

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # OpenAI's limit for any one file
_CHUNK = 1 << 20


@dataclass(slots=True)
class StoredFile:
    """A file's public object and where its bytes are."""

    obj: dict
    path: Path

    @property
    def id(self) -> str:
        return self.obj["id"]

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


_directory: Path | None = None


def directory() -> Path:
    """The process's temporary directory for file bytes, removed when the process exits."""
    global _directory
    if _directory is None:
        _directory = Path(tempfile.mkdtemp(prefix="askbatch-double-files-"))
        atexit.register(shutil.rmtree, _directory, ignore_errors=True)
    return _directory


def new_path() -> Path:
    return directory() / new_id("blob")


def store(double: Double, path: Path, filename: str, purpose: str) -> StoredFile:
    """Register bytes already written at ``path`` as a file."""
    size = path.stat().st_size
    obj = {
        "id": new_id("file", "-"),
        "object": "file",
        "bytes": size,
        "created_at": now_s(),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
    stored = StoredFile(obj, path)
    double.store.files[stored.id] = stored
    double.stats.files[purpose] += 1
    return stored


def get(double: Double, file_id: str) -> StoredFile:
    stored = double.store.files.get(file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {file_id}", param="id")
    return stored


async def _read_form(request: web.Request, path: Path) -> tuple[dict[str, str], str | None]:
    """The form's text fields, and the uploaded file's name (its bytes written to ``path``)."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "The request must be multipart/form-data with a 'file' part.")
    fields: dict[str, str] = {}
    filename = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if part.name == "file":
            filename = part.filename or "upload"
            size = 0
            with path.open("wb") as out:
                while chunk := await part.read_chunk(_CHUNK):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise ApiError(413, "The file is larger than 512 MB.", param="file")
                    out.write(chunk)
        elif part.name:
            fields[part.name] = await part.text()
    return fields, filename


@api("file_create")
async def create_file(double: Double, request: web.Request) -> web.Response:
    path = new_path()
    try:
        fields, filename = await _read_form(request, path)
        exchange = watch.current()
        if exchange is not None:  # the watch cannot read a multipart body: checked here
            form = exchange.contract.check_form("files.create", fields, filename)
            exchange.record("request", form)
        if filename is None:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        purpose = fields.get("purpose")
        if purpose not in PURPOSES:
            raise ApiError(
                400,
                f"Invalid value for 'purpose': {purpose!r}. Expected one of "
                f"{', '.join(sorted(PURPOSES))}.",
                param="purpose",
            )
        stored = store(double, path, filename, purpose)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return json_response(stored.obj)


@api("file_retrieve")
async def retrieve_file(double: Double, request: web.Request) -> web.Response:
    return json_response(get(double, request.match_info["file_id"]).obj)


@api("file_content")
async def file_content(double: Double, request: web.Request) -> web.StreamResponse:
    stored = get(double, request.match_info["file_id"])
    return web.FileResponse(stored.path, headers={"Content-Type": "application/octet-stream"})


@api("file_delete")
async def delete_file(double: Double, request: web.Request) -> web.Response:
    stored = get(double, request.match_info["file_id"])
    del double.store.files[stored.id]
    stored.discard()
    return json_response({"id": stored.id, "object": "file", "deleted": True})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/files", create_file)
    router.add_get("/v1/files/{file_id}", retrieve_file)
    router.add_get("/v1/files/{file_id}/content", file_content)
    router.add_delete("/v1/files/{file_id}", delete_file)
