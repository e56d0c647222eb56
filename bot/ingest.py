"""Streaming readers for CSV, TSV, JSONL and plain-text item files.

``read_items`` yields one ``Row`` per good record and one ``RowError`` (with its line number
and reason) per bad one, reading the file line by line so its size does not matter. A problem
with the whole file (unreadable, unknown format, a named column missing from the header)
raises ``IngestError`` before anything is yielded. Nothing here writes anywhere.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bot.errors import IngestError

MAX_TEXT_CHARS = 40_000
MAX_LABEL_CHARS = 75
FORMATS = ("csv", "tsv", "jsonl", "text")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "text",
    ".text": "text",
}
# Columns that `hitl export` adds; ignored on import of a file that carries a "meta" object,
# so that importing an export gives back the same items rather than nesting them in meta.
EXPORT_ONLY_FIELDS = frozenset({"votes", "agreement", "annotators", "resolved_at"})

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Row:
    line: int
    id: str
    text: str
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def message(self, path: str | Path) -> str:
        return f"{Path(path).name} line {self.line}: {self.reason}, row skipped"


def item_id_for_text(text: str) -> str:
    """A stable id for an item that came without one: a hash of its text."""
    return "t" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise IngestError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise IngestError(
            f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    return EXTENSIONS[suffix]


def read_items(
    path: str | Path,
    fmt: str | None = None,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    label_column: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Row | RowError]:
    """Yield the rows of an item file. ``progress`` gets the bytes read since its last call.

    ``id_column`` and ``label_column`` default to ``id`` and ``label`` when the file has such a
    column; naming one that a CSV header lacks is an error. Items without an id get a hash of
    their text, so re-importing a file adds nothing.
    """
    fmt = detect_format(path, fmt)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    except OSError as exc:
        raise IngestError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    lines = _lines(handle, progress)
    columns = _Columns(text_column, id_column, label_column)
    if fmt in ("csv", "tsv"):
        rows = _csv_rows(path, lines, columns, delimiter="\t" if fmt == "tsv" else ",")
    elif fmt == "jsonl":
        rows = _jsonl_rows(lines, columns)
    else:
        rows = _text_rows(lines)
    return _closing(rows, handle)


@dataclass(frozen=True)
class _Columns:
    text: str
    id: str | None
    label: str | None


def _closing(rows: Iterator[Row | RowError], handle: BinaryIO) -> Iterator[Row | RowError]:
    try:
        yield from rows
    finally:
        handle.close()


def _lines(handle: BinaryIO, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    first = True
    for raw in handle:
        if progress:
            progress(len(raw))
        if first:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
            first = False
        yield raw


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _printable(name: str, limit: int = 40) -> str:
    """A column name fit for a one-line message: control characters escaped, long ones cut."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in name)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape made of undecodable bytes


def _has_bad_bytes(value: str) -> bool:
    return _BAD_BYTE.search(value) is not None


def _make_row(line: int, record: dict[str, Any], columns: _Columns) -> Row | RowError:
    if columns.text not in record:
        return RowError(line, f'column "{columns.text}" is missing')
    text = record[columns.text]
    if not isinstance(text, str):
        return RowError(line, f'column "{columns.text}" is not a string')
    text = text.strip()
    if not text:
        return RowError(line, f'column "{columns.text}" is empty')
    if len(text) > MAX_TEXT_CHARS:
        return RowError(
            line, f"text is {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}"
        )

    id_key = columns.id or ("id" if "id" in record else None)
    if id_key is None:
        item_id = item_id_for_text(text)
    else:
        raw_id = record.get(id_key)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            return RowError(line, f'column "{id_key}" (the id) is missing or empty')
        if not isinstance(raw_id, str | int):
            return RowError(line, f'column "{id_key}" (the id) is not a string or number')
        item_id = str(raw_id).strip()
        if len(item_id) > 200:
            return RowError(line, f'column "{id_key}" (the id) is over 200 characters')

    label_key = columns.label or ("label" if "label" in record else None)
    label = record.get(label_key) if label_key else None
    if isinstance(label, int | float) and not isinstance(label, bool):
        label = str(label)
    if label is not None:
        if not isinstance(label, str):
            return RowError(line, f'column "{label_key}" (the label) is not a string')
        label = label.strip() or None
    if label is not None and len(label) > MAX_LABEL_CHARS:
        return RowError(line, f"label is over {MAX_LABEL_CHARS} characters (Slack's limit)")

    used = {columns.text, id_key, label_key}
    meta: dict[str, Any] = {}
    carried = record.get("meta")
    if isinstance(carried, str) and carried.startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):  # not JSON: kept as a plain column
            carried = json.loads(carried)
    if isinstance(carried, dict):
        meta.update(carried)
        used |= EXPORT_ONLY_FIELDS | {"meta"}
    meta.update({k: v for k, v in record.items() if k not in used and k is not None})
    return Row(line=line, id=item_id, text=text, label=label, meta=meta)


def _csv_rows(
    path: str | Path, lines: Iterator[bytes], columns: _Columns, delimiter: str
) -> Iterator[Row | RowError]:
    text_lines = (raw.decode("utf-8", "surrogateescape") for raw in lines)
    reader = csv.reader(text_lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise IngestError(f"{path} line 1: the header cannot be read ({exc})") from exc
    if any(_has_bad_bytes(name) for name in header):
        raise IngestError(f"{path} line 1: the header is not valid UTF-8; save the file as UTF-8")
    header = [name.strip() for name in header]
    shown = ", ".join(_printable(name) for name in header[:12]) + (
        ", …" if len(header) > 12 else ""
    )
    for name, option in ((columns.text, "--text-column"), (columns.id, "--id-column"),
                         (columns.label, "--label-column")):  # fmt: skip
        if name is not None and name not in header:
            raise IngestError(
                f'{path}: no column "{_printable(name)}" in the header ({shown}); '
                f"pass {option} with one of these"
            )
    end = 1
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            yield RowError(start, f"malformed CSV ({exc})")
            continue
        end = reader.line_num
        if not values or values == [""]:
            continue
        if _has_bad_bytes("".join(values)):
            yield RowError(start, "not valid UTF-8")
            continue
        if len(values) != len(header):
            yield RowError(start, f"has {len(values)} fields, the header has {len(header)}")
            continue
        yield _make_row(start, dict(zip(header, values, strict=True)), columns)


def _jsonl_rows(lines: Iterator[bytes], columns: _Columns) -> Iterator[Row | RowError]:
    for number, raw in enumerate(lines, start=1):
        line = _decode(raw)
        if line is None:
            yield RowError(number, "not valid UTF-8")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowError(number, f"bad JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield RowError(number, "bad JSON (nested too deeply)")
            continue
        if not isinstance(record, dict):
            yield RowError(number, "not a JSON object")
            continue
        yield _make_row(number, record, columns)


def _text_rows(lines: Iterator[bytes]) -> Iterator[Row | RowError]:
    columns = _Columns("text", None, None)
    for number, raw in enumerate(lines, start=1):
        line = _decode(raw)
        if line is None:
            yield RowError(number, "not valid UTF-8")
            continue
        if not line.strip():
            continue
        yield _make_row(number, {"text": line}, columns)
