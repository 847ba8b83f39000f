"""File I/O with user-facing errors: JSONL reading that names file and line, atomic writes, and
append-only result files that let a killed run resume where it stopped."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from primekit.errors import InputError

Record = dict[str, Any]


def _not_utf8(raw: bytes, error: UnicodeDecodeError, path: Path, line: int | None,
              line_start: int = 0) -> InputError:
    """The one-line error for a file that is not UTF-8 (a Latin-1 or UTF-16 export, a binary
    file): file, line, and the column and value of the first bad byte."""
    return InputError(f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                      f"{error.start - line_start + 1}); re-save the file as UTF-8",
                      path=path, line=line)


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 text file; a file that is not UTF-8 is an :class:`InputError` with its line."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(raw, err, path, raw.count(b"\n", 0, err.start) + 1,
                        raw.rfind(b"\n", 0, err.start) + 1) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Record]]:
    """Yield ``(line_number, record)`` for each non-blank line; malformed JSON, a line that is not
    UTF-8 or a non-object line raises :class:`InputError` naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _not_utf8(raw, err, path, line_number) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"malformed JSON ({err.msg} at column {err.colno})",
                                 path=path, line=line_number) from None
            if not isinstance(record, dict):
                raise InputError(f"expected a JSON object, got {type(record).__name__}",
                                 path=path, line=line_number)
            yield line_number, record


def read_jsonl(path: str | os.PathLike) -> list[Record]:
    """All records of a JSONL file (see :func:`iter_jsonl` for the errors)."""
    return [record for _, record in iter_jsonl(path)]


def read_json_or_jsonl(path: str | os.PathLike) -> list[Record]:
    """Records from a ``.jsonl`` file, or from a ``.json`` file holding a list of objects."""
    path = Path(path)
    if path.suffix != ".json":
        return read_jsonl(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON ({err.msg})", path=path, line=err.lineno) from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise InputError("expected a JSON list of objects", path=path)
    return data


def require_field(record: Record, field: str, *, path: str | os.PathLike | None, line: int | None,
                  kind: type | tuple[type, ...] | None = None) -> Any:
    """``record[field]``, or an :class:`InputError` naming file, line and field when it is missing
    or (with ``kind``) of the wrong type."""
    if field not in record or record[field] is None:
        raise InputError("missing", path=path, line=line, field=field)
    value = record[field]
    if kind is not None and not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"expected {expected}, got {type(value).__name__}",
                         path=path, line=line, field=field)
    return value


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half of it.

    The file gets the usual permissions (0666 less the umask), not ``mkstemp``'s private 0600:
    reports and results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[Record]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class ResumableJsonl:
    """An append-only JSONL result file keyed by a string id.

    Each finished sample is appended and flushed at once, so a run killed at any moment keeps every
    record written before it; a torn last line (killed mid-write) is dropped on reopen. ``done``
    holds the ids already present, which the caller skips.
    """

    def __init__(self, path: str | os.PathLike, key: Callable[[Record], str]):
        self.path = Path(path)
        self.key = key
        self.records: dict[str, Record] = {}
        if self.path.exists():
            self._load_and_repair()

    def _load_and_repair(self) -> None:
        good_lines: list[str] = []
        torn = False
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    torn = True  # only a crash mid-append produces this; drop it
                    continue
                self.records[self.key(record)] = record
                good_lines.append(line if line.endswith("\n") else line + "\n")
        if torn:
            atomic_write_text(self.path, "".join(good_lines))

    @property
    def done(self) -> set[str]:
        return set(self.records)

    def append(self, record: Record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records[self.key(record)] = record
