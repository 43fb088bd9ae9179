"""Owner-only folders and files for the state directory (0700 and 0600): the results, uploads
and answers askbatch keeps there are nobody else's to read on a shared machine."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path, top: str | Path | None = None) -> Path:
    """Make `path` and every folder from `top` (default: `path` alone) down to it owner-only,
    creating them as needed; the folders above `top` are made as usual."""
    path = Path(path)
    top = Path(top) if top is not None else path
    chain = [path, *(p for p in path.parents if p == top or top in p.parents)]
    top.parent.mkdir(parents=True, exist_ok=True)
    for folder in reversed(chain):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        info = folder.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            folder.chmod(DIR_MODE)  # made by an older askbatch, readable by others
    return path


def private_file(path: str | Path) -> Path:
    """Create `path` empty and owner-only if it does not exist (SQLite then keeps the mode
    for its -wal and -shm files)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return Path(path)
