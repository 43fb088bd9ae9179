"""Which text encoding a worksheet is in: UTF-8 (with or without BOM) or, failing that, CP949
(Korean Excel's "CSV"), or the one given, checked over every byte before a row is read."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from worker.errors import InputError

DEFAULT_ENCODING = "utf-8"
# Excel's "CSV" (not "CSV UTF-8") on Korean Windows writes CP949, a superset of EUC-KR.
FALLBACK_ENCODING = "cp949"

_CHUNK_BYTES = 1 << 20
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

_SAVE_AS_HINT = "in Excel use File > Save As > 'CSV UTF-8 (Comma delimited) (*.csv)'"


def choose_encoding(path: Path, encoding: str | None) -> str:
    """Return the codec name to read `path` with, after checking the whole file decodes."""
    if encoding is not None:
        name = _codec_name(path, encoding)
        bad = _scan(path, name)
        if bad is not None:
            hint = _encoding_hint()
            raise InputError(f"{path}: {bad.describe()} is not valid {encoding}. {hint}")
        return name
    head = _read_head(path)
    if head.startswith(_UTF16_BOMS):
        raise InputError(
            f"{path}: the file is UTF-16 text (Excel's 'Unicode Text'); {_SAVE_AS_HINT}, "
            "or pass --encoding utf-16"
        )
    has_bom = head.startswith(_UTF8_BOM)
    bad = _scan(path, "utf-8-sig" if has_bom else DEFAULT_ENCODING)
    if bad is None:
        return "utf-8-sig" if has_bom else DEFAULT_ENCODING
    # A BOM says UTF-8 for sure: a bad byte then is damage, not another encoding.
    if not has_bom and _scan(path, FALLBACK_ENCODING) is None:
        return FALLBACK_ENCODING
    raise InputError(
        f"{path}: {bad.describe()} is not valid UTF-8, and the file is not CP949 (Korean "
        f"Excel) either. {_encoding_hint()}"
    )


def _encoding_hint() -> str:
    return (
        f"Save the file as UTF-8 ({_SAVE_AS_HINT}), or pass its encoding with --encoding, "
        "e.g. --encoding cp949 or --encoding latin-1"
    )


def _codec_name(path: Path, encoding: str) -> str:
    try:
        "a".encode(encoding)  # also rejects bytes-to-bytes codecs such as base64
    except LookupError:
        raise InputError(
            f"{path}: unknown encoding {encoding!r}; use a name such as utf-8, cp949 or euc-kr"
        ) from None
    return codecs.lookup(encoding).name


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror}") from None


@dataclass(frozen=True)
class _BadBytes:
    """The first byte that does not decode (`byte` is None if the file ends mid-character)."""

    offset: int
    line: int
    byte: int | None

    def describe(self) -> str:
        where = f"line {self.line} (byte offset {self.offset})"
        if self.byte is None:
            return f"the end of the file, at {where},"
        return f"byte 0x{self.byte:02X} at {where}"


def _scan(path: Path, encoding: str) -> _BadBytes | None:
    """Decode the whole file in chunks; return the first bad byte, or None if all decodes.

    Raises `InputError` at once for NUL characters: CSV text never has them, binary files do.
    """
    # utf-8-sig reports error positions after its BOM; plain UTF-8 gives true offsets.
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    offset = lines = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    # e.start counts from the bytes the decoder held back from the last chunk.
                    line = lines + chunk.count(b"\n", 0, max(e.start - pending, 0)) + 1
                    return _BadBytes(offset + e.start - pending, line, e.object[e.start])
                if "\x00" in text:
                    raise _binary(path, lines + text.count("\n", 0, text.index("\x00")) + 1)
                offset += len(chunk)
                lines += text.count("\n")
            tail = decoder.getstate()[0]
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:  # the file ends inside a multi-byte character
        return _BadBytes(offset - len(tail), lines + 1, tail[0] if tail else None)
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror}") from None
    return None


def _binary(path: Path, line: int) -> InputError:
    return InputError(
        f"{path}: this is not a CSV text file (it contains NUL bytes, first at line {line}). "
        f"If it is an Excel workbook (.xlsx), {_SAVE_AS_HINT}"
    )
