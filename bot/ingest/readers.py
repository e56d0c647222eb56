"""Streaming readers for CSV, TSV, JSONL and plain-text item files.

``read_items`` yields one ``Row`` per good record and one ``RowError`` (with its line number
and reason) per bad one, reading the file line by line so its size does not matter. A problem
with the whole file (unreadable, unknown format, a named column missing from the header)
raises ``IngestError`` before anything is yielded. Nothing here writes anywhere, but for a
note about the whole file once it is read (``read_items``' ``on_note``; by default one line on
standard error): the Prodigy rows skipped, labels that may be class ids.

Other tools' files are read as they are meant: a Prodigy export's rows by their answer, a
one-element list label as its label, a ``.json`` of JSON lines, a gzip file as what it holds;
those that would import wrong are refused in one line with the command that converts them (a
JSON array, `hitl export --answers`' file, a header naming a column twice).

At ~720 lines it is over the house's ~400: it is one job (a file in, rows or row errors
out), and its parts share the row checks (``_make_row``, the field limits, ``_unfit`` for JSON
values the store cannot keep) that make a CSV row and a JSONL record of the same item read the
same; the CSV reader's recovery from an unterminated quote is most of the length. Splitting by
format would scatter those checks.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import math
import re
import shlex
import sys
import unicodedata
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from bot.errors import IngestError
from bot.ingest.stream import STDIN
from bot.labelnames import invisible_character, label_problem, shows_nothing
from bot.store import cwd_gone
from bot.store.records import canonical_text

MAX_TEXT_CHARS = 40_000
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # refused in ids, as the producer API refuses them
LINE_SEPARATORS = re.compile("[\u2028\u2029]")  # line breaks too (Zl, Zp): refused in ids
# A row whose quoted field runs over lines for longer than this is taken as an unterminated quote
# (the text itself is limited to MAX_TEXT_CHARS): reading holds at most this much at a time.
MAX_RECORD_CHARS = 1_000_000
# A line is read at most this far (any line of MAX_RECORD_CHARS characters fits): the rest of a
# longer one (a file with no line breaks, a binary file) is skipped and its row refused, so
# memory stays bounded whatever the file holds.
MAX_LINE_BYTES = 4 * MAX_RECORD_CHARS
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
WORKBOOKS = frozenset({".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".numbers"})
# The rows a JSONL file's first look covers: when none of its objects has the text field, the
# import stops before anything is written, as a CSV header without the text column does.
FIRST_ROWS = 20
# Columns that `hitl export` adds: how each label was decided. In a row that has them all and a
# "meta" object (an export) they are read back into ``Row.provenance`` rather than kept as meta,
# so that importing an export gives back the same items and labels: who decided, when, how they
# agreed. In a row without them all ("votes" of a forum post, beside a Prodigy "meta"), they are
# meta as any other field is.
PROVENANCE_FIELDS = ("votes", "agreement", "annotators", "resolved_at")  # all or none
_WHOLE_NUMBER = re.compile(r"\s*[0-9]{1,18}\s*")  # a CSV's votes: digits int() reads at once
EXPORT_ONLY_FIELDS = frozenset({*PROVENANCE_FIELDS, "answers"})  # "answers" may be left out

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Vote:
    """One person's answer that counted when an exported label was decided."""

    user_id: str
    label: str
    created_at: str


@dataclass(frozen=True)
class Provenance:
    """How an exported label was decided, as `hitl export` wrote it."""

    votes: int
    agreement: float
    annotators: tuple[str, ...]
    resolved_at: str
    answers: tuple[Vote, ...] = ()  # empty in exports made before it was written


@dataclass(slots=True)  # not frozen: a frozen dataclass is built 3x slower (100k rows/import)
class Row:
    line: int
    id: str
    text: str
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None  # a labeled row of an export
    gold: str | None = None  # an export's gold label, which only `hitl import --gold` keeps
    # a JSONL number label as versions before kept it ("1.5" for 1.50), when that differs from
    # ``label`` (as written): the import takes it where it is the stored spelling
    number: str | None = None


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def message(self, path: str | Path) -> str:
        return f"{Path(path).name} line {self.line}: {self.reason}, row skipped"


def item_id_for_text(text: str) -> str:
    """A stable id for an item that came without one: a hash of its text in the form
    ``same_text`` compares (``canonical_text``: ``\\n`` line breaks, NFC), so the forms of one
    text ("café" composed or, as macOS writes it, decomposed; ``\\r\\n``) get one id. A text
    already in that form hashes as it did before this was so."""
    canonical = canonical_text(text)
    return "t" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def legacy_item_ids(text: str) -> list[str]:
    """The ids an item without one may have got before ids were hashed from the text's one form
    (the hash of the text as it came): of ``text`` as it is, and of the forms it likely came in
    (decomposed, as macOS writes it; ``\r\n`` line breaks, as a web form or a CSV sends them),
    each that differs from ``item_id_for_text``'s. Empty for a one-line ASCII text."""
    if text.isascii() and "\n" not in text and "\r" not in text:  # one form only
        return []
    canonical = canonical_text(text)
    forms = {text}
    for form in (canonical, unicodedata.normalize("NFD", canonical)):
        forms.add(form)
        if "\n" in form:
            forms.add(form.replace("\n", "\r\n"))
    forms.discard(canonical)
    return sorted(
        "t" + hashlib.sha256(form.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        for form in forms
    )


def id_problem(item_id: str) -> str | None:
    """What makes an id (trimmed) unusable, or None: a control character (a URL could not name
    it), a line separator, or an invisible character (a zero-width space, a right-to-left
    override: two ids would look the same, or one would show reversed), as labels refuse it.
    Said after "the id" or a field's name."""
    if CONTROL.search(item_id):
        return "has a control character (a newline, a tab, NUL, …)"
    if item_id.isascii():
        return None
    if found := LINE_SEPARATORS.search(item_id):
        char = found.group()
        return f"has a line break (U+{ord(char):04X} {unicodedata.name(char)})"
    return invisible_character(item_id)


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise IngestError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if Path(path).is_dir():
        raise IngestError(f"{path} is a folder; give a file")
    suffix = Path(path).suffix.lower()
    if suffix == ".gz":  # read through gzip (read_items): its format is the name's before .gz
        suffix = Path(path).with_suffix("").suffix.lower() or suffix
    if suffix == ".json":  # JSON lines (Hugging Face's to_json); an array is refused when read
        return "jsonl"
    if suffix in WORKBOOKS:
        raise IngestError(
            f'{path} is a spreadsheet workbook, not a text file; save it as "CSV UTF-8" '
            "(Excel: File > Save As) and import that"
        )
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
    on_note: Callable[[str], None] | None = None,
    stream: io.RawIOBase | None = None,
) -> Iterator[Row | RowError]:
    """Yield the rows of an item file. ``progress`` gets the bytes read since its last call.
    With ``stream`` (standard input: ``bot.ingest.stream``), the rows are read from it as it
    arrives, and ``path`` only names it (``STDIN``).

    ``id_column`` and ``label_column`` default to ``id`` and ``label`` when the file has such a
    column; naming one that the file lacks is an error. Items without an id get a hash of
    their text, so re-importing a file adds nothing.

    ``on_note`` gets, once the file is read, a line for what the whole file says a person
    should know (rows of a Prodigy export that were not accepted and so were skipped; labels
    that are all whole numbers, maybe class ids; a column that looks like the id or label
    column kept as meta; a .txt read as tab-separated); without one, the line goes to
    standard error.

    The text column ("text" unless named otherwise), and the id and label columns when not
    named, are found in any case and with spaces around when the file has no column of that
    exact name and only one so spelled ("Text", "ID", "Label"). A text file (.txt) whose first
    line is a header split by tabs with a text column, and whose next lines split into as many
    fields, is read as TSV (Excel's "Text (Tab delimited)"), unless ``fmt`` says "text".
    """
    asked = fmt
    fmt = detect_format(path, fmt)
    try:
        if stream is not None:  # standard input, as it arrives
            handle: BinaryIO = io.BufferedReader(stream, 64 * 1024)
        else:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    except FileNotFoundError as exc:
        if not Path(path).is_absolute() and (gone := cwd_gone()) is not None:
            raise IngestError(
                f"{path}: {gone}, so {path} cannot be found from it: cd to a folder that"
                " exists, or give the file's absolute path"
            ) from exc
        raise IngestError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    except OSError as exc:
        raise IngestError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    try:
        if _is_gzip(path, handle):  # read as what it holds; progress counts the file's bytes
            handle, progress = _Gunzipped(path, handle, progress), None
        _refuse_wide(path, handle)
        tabbed = fmt == "text" and asked is None and _tab_separated(handle, _nfc(text_column))
    except BaseException:
        handle.close()
        raise
    columns = _Columns(*(_nfc(name) for name in (text_column, id_column, label_column)))
    notes = _Notes()
    if tabbed:  # Excel's "Text (Tab delimited)": its header and labels are no item text
        fmt = "tsv"
        notes.columns.append(
            f"{_shown_name(path)}: read as tab-separated (its first line is a header with a"
            f" {tabbed} column, split by tabs, and so are the lines after it); --format text"
            " reads it as one item a line"
        )
    if fmt in ("csv", "tsv"):
        # Decoded by the io module in large chunks rather than line by line in Python; bytes
        # that are not UTF-8 become surrogates that the row check below reports. The reader
        # notes whether any byte so far was not ASCII: until then no row can hold a bad byte
        # and the per-row check is skipped (most files are clean).
        raw = _ByteReader(handle, progress)
        text = io.TextIOWrapper(
            io.BufferedReader(raw),
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline="",
        )
        lines = _bounded_text(text)
        try:
            header = next(lines, "")  # damaged gzip data may be found here (IngestError)
        except BaseException:
            text.close()
            handle.close()
            raise
        try:
            sample = list(itertools.islice(lines, 5))  # the first rows, to tell the delimiter
        except BaseException:
            text.close()
            handle.close()
            raise
        delimiter = "\t" if fmt == "tsv" else csv_delimiter(header, sample)
        lines = itertools.chain([header] if header else [], sample, lines)
        rows = _csv_rows(path, lines, columns, delimiter, lambda: raw.non_ascii, notes)
        return _closing(_noting(path, rows, notes, on_note), text, handle)
    if fmt == "jsonl":
        rows = _jsonl_rows(path, _lines(handle, progress), columns, notes)
        return _closing(_noting(path, rows, notes, on_note), handle)
    ended = io.BufferedReader(_LineEnds(handle, progress), 64 * 1024)  # "\r" ends a line too
    return _closing(_text_rows(path, _lines(ended, None)), ended, handle)


class _Notes:
    """What reading a file noted for one line at its end: the Prodigy rows skipped (by their
    answer), and the labels while every one is a whole number (None once one is not)."""

    CLASS_IDS_KEPT = 1000  # distinct whole-number labels held; past it, not taken as class ids

    def __init__(self) -> None:
        self.skipped: dict[str, int] = {}
        self.numbers: set[int] | None = set()
        self.columns: list[str] = []  # how the file was read: its format, columns kept as meta

    def label(self, label: str) -> None:
        if self.numbers is None:
            return
        if label.isascii() and label.isdigit() and len(self.numbers) < self.CLASS_IDS_KEPT:
            self.numbers.add(int(label))
        else:
            self.numbers = None

    def lines(self, path: str | Path) -> Iterator[str]:
        stdin = _is_stdin(Path(path))
        name = "standard input" if stdin else Path(path).name
        yield from self.columns
        if self.skipped:
            answers = ", ".join(f"{n:,} {answer}" for answer, n in sorted(self.skipped.items()))
            total = sum(self.skipped.values())
            source = "the file" if stdin else shlex.quote(name)
            yield (
                f"{name}: a Prodigy export: {total:,} {'row' if total == 1 else 'rows'} not"
                f" accepted ({answers}) skipped, so that no rejected label is taken for an"
                " item's; only accepted rows give labels (to add the skipped texts without a"
                ' label: jq -c \'select(.answer != "accept")'
                " | del(.label, .accept, .answer, ._input_hash, ._task_hash)'"
                f" {source} | hitl import - --format jsonl)"
            )
        if self.numbers:
            shown = sorted(self.numbers)
            numbers = ", ".join(map(str, shown[:6])) + (
                f", … {shown[-1]}" if len(shown) > 6 else ""
            )
            yield (
                f"{name}: every label is a whole number ({numbers}): if they are class ids (a"
                " Hugging Face ClassLabel), name them once imported: hitl labels rename 0 NAME"
                " for each"
            )


def _noting(
    path: str | Path,
    rows: Iterator[Row | RowError],
    notes: _Notes,
    on_note: Callable[[str], None] | None,
) -> Iterator[Row | RowError]:
    """``rows``, then ``notes``' lines (once the file is read to its end) to ``on_note``."""
    for row in rows:
        if type(row) is Row and row.label is not None:
            notes.label(row.label)
        yield row
    for line in notes.lines(path):
        if on_note is not None:
            on_note(line)
        else:
            print(line, file=sys.stderr)


# The first bytes of a file in UTF-16 or UTF-32 (Excel's "Unicode Text", Notepad's "Unicode",
# PowerShell 5's `>`): a byte-order mark, longest first, and iconv's name for the encoding.
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Without a byte-order mark: the file's first two characters are ASCII (a CSV header, a JSONL
# "{", most texts) written in one of these, each its byte and NULs. A NUL byte elsewhere in a
# UTF-8 file is read as it was (a row's NUL character, as JSONL's "\\u0000").
_WIDE_STARTS = (
    (re.compile(b"(?s)[\x01-\x7f]\x00{3}[\x01-\x7f]\x00{3}"), "utf-32le"),
    (re.compile(b"(?s)\x00{3}[\x01-\x7f]\x00{3}[\x01-\x7f]"), "utf-32be"),
    (re.compile(b"(?s)[\x01-\x7f]\x00[\x01-\x7f]\x00"), "utf-16le"),
    (re.compile(b"(?s)\x00[\x01-\x7f]\x00[\x01-\x7f]"), "utf-16be"),
)


def _refuse_wide(path: str | Path, handle: BinaryIO) -> None:
    """Raise ``IngestError`` for a file that is UTF-16 or UTF-32, not UTF-8 (its byte-order
    mark says so, or, without one, its first characters are ASCII with NUL bytes between), with
    how to convert it. Read as UTF-8 it gave a column named "\\x00i\\x00d", or items of
    NULs, and a row at a time the advice to convert from cp1252, which makes it worse."""
    try:
        sample = handle.peek(4096)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc
    head = sample[:16]
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            fix = utf8_fix(path, encoding, _wide_suffix(path, sample, encoding))
            raise IngestError(
                f"{_shown(path)} is {encoding.upper()} (its byte-order mark says so), not UTF-8: "
                f"{fix}"
            )
    for start, encoding in _WIDE_STARTS:
        if start.match(head):
            fix = utf8_fix(path, encoding, _wide_suffix(path, sample, encoding))
            raise IngestError(
                f"{_shown(path)} is not UTF-8 but {encoding.upper()} (it has a NUL byte beside"
                f" each character): {fix}"
            )


_LINE_END = re.compile(r"\r\n|\r|\n")


def _tab_separated(handle: BinaryIO, text_column: str | None) -> str | None:
    """The text column's name when the file starts as a TSV (Excel's "Text (Tab delimited)",
    saved as .txt): its first line split by tabs (at least two fields) has a column named
    ``text_column`` or, in any case or with spaces around, "text", and each of the next
    non-blank lines (up to 5, of those the first bytes hold) splits into as many fields; else
    None (a plain text file, one whose lines have a tab here and there among them)."""
    try:
        sample = handle.peek(64 * 1024)
    except OSError:
        return None
    text = sample.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    lines = _LINE_END.split(text)  # as the text reader ends lines: \n, \r\n or a lone \r
    if len(lines) < 2 or "\t" not in lines[0]:  # one line, maybe cut short: not told
        return None
    try:
        records = list(
            csv.reader(
                [line.rstrip("\r") for line in lines[:-1] if line.strip()][:6], delimiter="\t"
            )
        )
    except csv.Error:
        return None
    if not records:
        return None
    header = [name.strip() for name in records[0]]
    names = [name for name in header if _looks_like(name, "text")]
    if text_column in header:
        names = [text_column]
    if len(header) < 2 or len(names) != 1:
        return None
    if any(len(record) != len(header) for record in records[1:]):
        return None
    return names[0]


def _wide_suffix(path: str | Path, sample: bytes, encoding: str) -> str | None:
    """The suffix the converted file needs: ``.tsv`` for a text file (``.txt``) whose first
    line has tabs (Excel's "Unicode Text" is tab-separated), read as TSV then, not as an item
    a line with the header and each row's id and label inside its text; else None (its own)."""
    if EXTENSIONS.get(Path(path).suffix.lower()) != "text":
        return None
    first = sample[: len(sample) - len(sample) % 4].decode(encoding, "replace").split("\n")[0]
    return ".tsv" if "\t" in first else None


def _is_gzip(path: str | Path, handle: BinaryIO) -> bool:
    """Whether the file starts with gzip's magic bytes (1f 8b): `gzip items.jsonl`, or such a
    file piped in. Read as text, it gave a row error a line and the advice to convert it from
    cp1252."""
    try:
        return handle.peek(2)[:2] == b"\x1f\x8b"
    except OSError as exc:
        raise IngestError(f"{path}: cannot read the file ({exc.strerror}); check the path") from exc


class _Gunzipped(gzip.GzipFile):
    """A gzip file read as the bytes it holds, for the readers (``read``, ``read1``,
    ``readline``, ``peek``); damaged gzip data is an ``IngestError`` naming the file.
    ``progress`` gets the bytes of the file itself (its size is what a progress bar knows);
    closing closes the file."""

    def __init__(
        self, path: str | Path, raw: BinaryIO, progress: Callable[[int], None] | None
    ) -> None:
        self._path, self._raw = path, raw
        # unbuffered: each read gives what is there, so a pipe's rows come as it sends them
        super().__init__(fileobj=_ByteReader(raw, progress), mode="rb")

    def _damaged(self, exc: Exception) -> IngestError:
        return IngestError(
            f"{_shown(self._path)}: the gzip data is damaged ({exc or type(exc).__name__}): "
            "check it with gzip -t, or import the file it was made from"
        )

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(-1 if size is None else size)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._damaged(exc) from exc

    def read1(self, size: int = -1) -> bytes:
        try:
            return super().read1(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._damaged(exc) from exc

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return super().readline(-1 if size is None else size)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._damaged(exc) from exc

    def peek(self, n: int = 0) -> bytes:
        try:
            return super().peek(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._damaged(exc) from exc

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _nfc(name: str | None) -> str | None:
    """A column name in Unicode NFC, as the header's names are compared: "Überschrift" typed
    with one character or, as macOS may write it, with U and a combining mark, is one name."""
    return unicodedata.normalize("NFC", name) if name is not None else None


def csv_delimiter(header: str, sample: Sequence[str] = ()) -> str:
    """The delimiter of a .csv file: of comma, semicolon (what Excel writes where the comma is
    the decimal separator) and tab, the one the header has most of outside quotes among those
    that split the ``sample`` lines (the first data lines) into as many fields as the header; a
    comma on a tie or when the header has none. ("id;text;Betrag, EUR" is separated by
    semicolons, though it has a comma; "text,notes;a;b" by commas, though it has more
    semicolons, when its rows have two fields.)"""
    counts = dict.fromkeys((",", ";", "\t"), 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted  # "" inside a quoted name closes and opens again: no change
        elif not quoted and char in counts:
            counts[char] += 1
    lines = [line for line in sample if line.strip()]

    def splits_alike(delimiter: str) -> bool:
        fields = counts[delimiter] + 1
        return all(len(row) == fields for row in csv.reader(lines, delimiter=delimiter))

    found = [d for d in counts if counts[d] and splits_alike(d)] or list(counts)
    return max(found, key=lambda delimiter: counts[delimiter])  # the first of the most


class _ByteReader(io.RawIOBase):
    """A binary file that tells ``progress`` how many bytes each read returned, and notes
    whether any byte it returned was not ASCII (``non_ascii``); each read returns what one read
    of the file gives (``read1``), so standard input's rows are read as they arrive."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self._raw = raw
        # what is there (a pipe: what its writer sent so far), not a read that waits to fill
        self._read = getattr(raw, "read1", raw.read)
        self._progress = progress
        self.non_ascii = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        if not self.non_ascii and not data.isascii():
            self.non_ascii = True
        if self._progress is not None:
            self._progress(len(data))
        return len(data)


@dataclass(frozen=True)
class _Columns:
    """The columns named (``id`` and ``label`` None when not named), and the names a row's id
    and label are read from when they are not: "id" and "label", or the one column of the
    file that is so named in another case or with spaces around ("ID", " Label ")."""

    text: str
    id: str | None
    label: str | None
    id_default: str = "id"
    label_default: str = "label"


# The columns a file may name in any case (``_resolved``): the text's (when --text-column was
# not given another name), the id's and the label's, with the option that names each.
_ROLES = (("text", "--text-column"), ("id", "--id-column"), ("label", "--label-column"))


def _resolved(
    path: str | Path, names: Sequence[Any], columns: _Columns, *, what: str = "column"
) -> tuple[_Columns, list[str]]:
    """``columns`` with each default (the text column "text", and the id and label columns
    when not named) matched in any case and with spaces around: a file's "Text", "ID" and
    "Label" are its text, id and label columns. A column of exactly that name wins; two that
    differ only in case (and none exact) are refused (``IngestError``) naming them. Also the
    note lines for the file: each column that looks like the id or label column (so named in
    any case) but is kept as meta, the option naming another one.

    ``names``: the header's names (a CSV's, trimmed), or the fields of a JSONL file's first
    rows; ``what``: "column" or "field", as the messages name them."""
    shown = _shown(path)
    found: dict[str, str | None] = {}  # role: the name used for it (None: none)
    for role, option in _ROLES:
        given = {"text": columns.text, "id": columns.id, "label": columns.label}[role]
        if given is not None and not (role == "text" and given == "text"):
            found[role] = given  # named: used as it is
            continue
        if role in names:
            found[role] = role
            continue
        alike = [name for name in names if _looks_like(name, role)]
        if len(alike) > 1:
            listed = ", ".join(f'"{_printable(name)}"' for name in alike)
            raise IngestError(
                f"{shown}: the {what}s {listed} differ only in case or spaces, and each may be"
                f" the {role} {what}: pass {option} with the one to use"
            )
        found[role] = alike[0] if alike else None
    text = found["text"] or columns.text
    # a hitl export read with --label-column gold (README's recipe for its gold): its "label",
    # the team's decided label, is neither meta nor gold (``_row``), so it is no note's
    export = "meta" in names and all(name in names for name in PROVENANCE_FIELDS)
    notes = []
    for role, option in _ROLES[1:]:
        used = found[role]
        for name in names:
            if name == used or not _looks_like(name, role):
                continue
            if export and role == "label" and used == "gold" and name == "label":
                continue
            why = (
                f'{option} named "{_printable(used or "")}"'
                if (columns.id if role == "id" else columns.label) is not None
                else f'"{_printable(used or "")}" is the {role} {what}'
            )
            notes.append(
                f'{_shown_name(path)}: {what} "{_printable(name)}" looks like the {role} {what}'
                f" but is kept as meta ({why}); {option} {shlex.quote(name)} reads the"
                f" {role}s from it"
            )
    resolved = _Columns(
        text,
        columns.id,
        columns.label,
        id_default=found["id"] if columns.id is None and found["id"] else "id",
        label_default=found["label"] if columns.label is None and found["label"] else "label",
    )
    return resolved, notes


def _looks_like(name: Any, role: str) -> bool:
    """Whether a column or field ``name`` is ``role`` ("text", "id", "label") in another case or
    with spaces around."""
    return isinstance(name, str) and name.strip().casefold() == role


def _shown_name(path: str | Path) -> str:
    """The file's name, as a note line starts (standard input as such)."""
    return "standard input" if _is_stdin(Path(path)) else Path(path).name


def _closing(rows: Iterator[Row | RowError], *files: IO[Any]) -> Iterator[Row | RowError]:
    try:
        yield from rows
    finally:
        for file in files:  # outermost wrapper first
            file.close()


def _lines(handle: BinaryIO, progress: Callable[[int], None] | None) -> Iterator[bytes | None]:
    """The file's lines; None for a line over MAX_LINE_BYTES, whose rest is skipped unread."""
    first = True
    for raw in iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""):
        if progress:
            progress(len(raw))
        if first:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
            first = False
        if len(raw) > MAX_LINE_BYTES:
            while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                if progress:
                    progress(len(rest))
            if progress and rest:
                progress(len(rest))
            yield None
            continue
        yield raw


class _LineEnds(io.RawIOBase):
    """A text file's bytes with every line end as "\n": "\r\n" and a lone "\r" (old Mac OS,
    some exports) end a line as "\n" does, as Python's universal newlines read them, so a .txt
    is one item a line whatever wrote it. A chunk without "\r" (nearly every file) passes as it
    is read, one search per 64 KB, and the lines are still split by ``readline`` in C.
    ``progress`` gets the bytes of the file as they are read."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._progress = progress
        self._after_cr = False  # the last chunk ended with "\r": a "\n" next is its "\r\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            chunk = self._raw.read1(len(buffer))  # what is there: a pipe is read as it comes
            if not chunk:
                return 0
            if self._progress:
                self._progress(len(chunk))
            if self._after_cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self._after_cr = chunk.endswith(b"\r")
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if chunk:  # a lone "\n" of a split "\r\n" gives nothing: read on, not an end
                break
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _bounded_text(text: IO[str]) -> Iterator[str]:
    """A CSV file's lines, each cut at MAX_RECORD_CHARS characters (and its rest skipped): the
    row of a cut line is refused (its text too long, or its quote never closed)."""
    for line in iter(lambda: text.readline(MAX_RECORD_CHARS + 1), ""):
        if len(line) > MAX_RECORD_CHARS and not line.endswith(("\n", "\r")):
            for rest in iter(lambda: text.readline(MAX_RECORD_CHARS), ""):  # the rest, unkept
                if rest.endswith(("\n", "\r")):
                    break
            line += "\n"
        yield line


def _long_line(number: int, limit: str = f"{MAX_LINE_BYTES:,} bytes") -> RowError:
    return RowError(
        number,
        f"the line is over {limit} (a text has at most "
        f"{MAX_TEXT_CHARS:,} characters); its rest was not read",
    )


def _was_cut(line: str) -> bool:
    """Whether ``_bounded_text`` cut this line: only a cut line is longer than the
    MAX_RECORD_CHARS + 1 characters it reads at most (it gets a line break added). Its row is
    refused as such, whatever its cut fields would read as: a quote that looks unterminated,
    a field missing, or a meta value silently cut short."""
    return len(line) > MAX_RECORD_CHARS + 1


def _cut_row(number: int) -> RowError:
    return _long_line(number, f"{MAX_RECORD_CHARS:,} characters")


def _decode(raw: bytes) -> str | UnicodeDecodeError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc


def utf8_fix(path: str | Path, encoding: str = "cp1252", suffix: str | None = None) -> str:
    """What to do about a file that is not UTF-8 but ``encoding`` (iconv's name; most often
    Windows-1252: what Excel's plain "CSV" writes on Windows); the converted file gets
    ``suffix`` (by default the file's own)."""
    name = Path(path)
    if _is_stdin(name):  # `hitl import -`: the pipe is what to convert
        return f"convert it on its way in: … | iconv -f {encoding} -t utf-8 | hitl import - …"
    fixed = shlex.quote(f"{name.stem}-utf8{suffix or name.suffix}")
    return (
        'save the file as UTF-8 (Excel: "CSV UTF-8"; or '
        f"iconv -f {encoding} -t utf-8 {shlex.quote(name.name)} > {fixed})"
    )


def _is_stdin(path: Path) -> bool:
    """Whether ``path`` names standard input (`hitl import -`: ``STDIN``)."""
    return path == STDIN


def _shown(path: str | Path) -> str:
    """``path`` as a message names it: standard input as such, not as /dev/stdin."""
    return "standard input" if _is_stdin(Path(path)) else str(path)


class _NotUtf8:
    """The reason for each row that is not UTF-8: where its first bad byte is; the first such
    row of a file also says how to fix the file (once: a file in another encoding has many)."""

    def __init__(self, path: str | Path) -> None:
        self._fix: str | None = utf8_fix(path)

    def error(self, line: int, byte: int, column: int, where: str = "") -> RowError:
        reason = f"not valid UTF-8 (byte 0x{byte:02X} at column {column}{where})"
        if self._fix is not None:
            reason, self._fix = f"{reason}; {self._fix}", None
        return RowError(line, reason)

    def in_bytes(self, line: int, exc: UnicodeDecodeError) -> RowError:
        """A line's first bad byte, at its column as an editor shows it (the characters before
        it, as the CSV reader counts them), not its byte offset."""
        before = bytes(exc.object[: exc.start]).decode("utf-8", "replace")  # valid up to it
        return self.error(line, exc.object[exc.start], len(before) + 1)

    def in_text(self, line: int, lines: list[str]) -> RowError:
        """A CSV row read with ``surrogateescape``: its first escaped byte, in ``lines``, the
        physical lines of the row (its first is ``line``)."""
        for at, text in enumerate(lines):
            if found := _BAD_BYTE.search(text):
                where = f" of line {line + at}" if at else ""
                return self.error(line, ord(found.group()) - 0xDC00, found.start() + 1, where)
        return self.error(line, 0, 0)  # not reached: the row has a bad byte


def _printable(name: str, limit: int = 40) -> str:
    """A column name fit for a one-line message: control characters escaped, long ones cut."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in name)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape made of undecodable bytes


def _has_bad_bytes(value: str) -> bool:
    return _BAD_BYTE.search(value) is not None


def _make_row(line: int, record: dict[str, Any], columns: _Columns) -> Row | RowError:
    if columns.text not in record:
        return RowError(
            line,
            f'no field "{_printable(columns.text)}" (this row has: {_field_names(record)}); '
            "pass --text-column with one of these",
        )
    text = record[columns.text]
    if not isinstance(text, str):
        return RowError(line, f'column "{columns.text}" is not a string')
    text = text.strip()
    if error := _text_error(line, columns.text, text):
        return error

    id_key = columns.id
    if id_key is None:  # "id", or the one field so named in another case (``_resolved``)
        if "id" in record:
            id_key = "id"
        elif columns.id_default in record:
            id_key = columns.id_default
    if id_key is None:
        item_id = item_id_for_text(text)
    else:
        raw_id = record.get(id_key)
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            return RowError(line, f'column "{id_key}" (the id) is missing or empty')
        if isinstance(raw_id, float):  # pandas writes an integer column with gaps as 1.0
            written = record.literal(id_key, raw_id) if isinstance(record, _Numbers) else raw_id
            return RowError(
                line,
                f'column "{id_key}" (the id) is {written}, not a string or whole number: '
                f'write it as "{written}" (pandas writes an integer column with gaps as 1.0; '
                f'df["{id_key}"].astype("Int64") keeps it whole)',
            )
        if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
            return RowError(line, f'column "{id_key}" (the id) is not a string or whole number')
        item_id = str(raw_id).strip()
        if error := _id_error(line, id_key, item_id):
            return error

    label_key = columns.label
    if label_key is None:
        if "label" in record:
            label_key = "label"
        elif columns.label_default in record:
            label_key = columns.label_default
    label = record.get(label_key) if label_key else None
    if isinstance(label, list):  # doccano's ["x"] ([] unlabeled), Prodigy's "accept": ["x"]
        if len(label) > 1:
            return RowError(line, _many_labels(label_key, label))
        label = label[0] if label else None
    number = None  # a number label as versions before read it (``Row.number``)
    if isinstance(label, int | float) and not isinstance(label, bool):
        # a label is text, as written: 1.50 is "1.50" and 1e3 "1e3", as the CSV cells are
        number = str(label)
        label = record.literal(label_key, label) if isinstance(record, _Numbers) else number
    if label is not None:
        if not isinstance(label, str):
            return RowError(line, f'column "{label_key}" (the label) is not a string')
        label = unicodedata.normalize("NFC", label.strip()) or None  # one spelling of é
    if number == label:
        number = None
    if error := _label_error(line, label):
        return error

    used = {columns.text, id_key, label_key}
    meta: dict[str, Any] = {}
    carried = record.get("meta")
    if isinstance(carried, str) and carried.startswith("{"):
        parsed = _json_cell(carried)  # not JSON: kept as a plain column
        if isinstance(parsed, dict):
            if reason := _unfit(parsed):
                return RowError(line, f'column "meta" {reason}')
            carried = parsed
    provenance = gold = None
    if isinstance(carried, dict):  # an item's meta, as `hitl export` and Prodigy write it
        meta.update(carried)
        used.add("meta")
    if isinstance(carried, dict) and all(name in record for name in PROVENANCE_FIELDS):
        # a row of `hitl export` (as a CSV header with them all is, ``own_export``): another
        # file's "votes" or "answers" beside a "meta" object are its meta, as other fields are
        used |= EXPORT_ONLY_FIELDS | {"label_set", "gold"}
        if label_key == "gold":  # --label-column gold: the team's decided label is no meta
            used.add("label")
        if label_key != "gold" and isinstance(record.get("gold"), str):
            gold = unicodedata.normalize("NFC", record["gold"].strip()) or None
        if label is not None:
            provenance = _provenance(line, record)
            if isinstance(provenance, RowError):
                return provenance
    meta.update({k: v for k, v in record.items() if k not in used and k is not None})
    return Row(
        line=line,
        id=item_id,
        text=text,
        label=label,
        meta=meta,
        provenance=provenance,
        gold=gold,
        number=number,
    )


class _Numbers(dict):
    """A JSONL row's object that holds a number (at its top, or alone in a list there), with
    its line: a number in the label column is the label as written there (``literal``), not
    as Python writes the float (1.50 is "1.50", not "1.5"; 1e3 "1e3", not "1000.0"; -0 "-0").
    Every other field keeps its decoded value."""

    __slots__ = ("line",)

    @classmethod
    def of(cls, record: Any, line: str) -> Any:
        """``record`` itself, or so kept when it holds a number."""
        if isinstance(record, dict) and any(map(_holds_number, record.values())):
            kept = cls(record)
            kept.line = line
            return kept
        return record

    def literal(self, key: str | None, number: float) -> str:
        """The text of ``number``, the value of the field ``key`` (alone in a list there), as
        the line writes it."""
        record = _LITERAL_JSON.decode(self.line)
        value = {unicodedata.normalize("NFC", name): v for name, v in record.items()}.get(key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value if isinstance(value, str) else str(number)


def _holds_number(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) == 1 and _holds_number(value[0])
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_names(record: dict[str, Any], limit: int = 12) -> str:
    """A record's field names for a one-line message, the first ``limit`` of them."""
    names = [_printable(str(name)) for name in record if name is not None]
    if not names:
        return "no fields"
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def _provenance(line: int, record: dict[str, Any]) -> Provenance | RowError:
    """An export's votes, agreement, annotators, resolved_at and answers, checked; CSV gives
    them as text (numbers, and JSON for the lists).

    A label an admin set (`hitl labels set`) that no vote was for is exported with 0 votes and
    agreement 0 (``Store.set_label``): it reads back so. Any other label had votes for it, so
    more than 0 votes goes with an agreement over 0, and 0 votes with agreement 0 only."""
    for name in PROVENANCE_FIELDS:
        if record.get(name) in (None, ""):
            return RowError(
                line,
                f'column "{name}" is missing or empty (an export has votes, agreement, '
                "annotators and resolved_at)",
            )
    votes = record["votes"]
    if isinstance(votes, str) and _WHOLE_NUMBER.fullmatch(votes):
        votes = int(votes)
    if not isinstance(votes, int) or isinstance(votes, bool) or votes < 0:
        return RowError(line, 'column "votes" is not a whole number of 0 or more')
    agreement = record["agreement"]
    with contextlib.suppress(ValueError):
        agreement = float(agreement) if isinstance(agreement, str) else agreement
    if (
        not isinstance(agreement, int | float)
        or isinstance(agreement, bool)
        or not (0 <= agreement <= 1)
    ):
        return RowError(line, 'column "agreement" is not a number from 0 to 1')
    if (votes == 0) != (agreement == 0):
        return RowError(
            line,
            f'columns "votes" ({votes}) and "agreement" ({agreement:g}) disagree: a label with '
            "no votes for it has agreement 0, any other one more than 0",
        )
    annotators = _json_value(record["annotators"])
    answers = _json_value(record.get("answers") or [])
    for name, value in (("annotators", annotators), ("answers", answers)):
        if reason := _unfit(value):
            return RowError(line, f'column "{name}" {reason}')
    if (
        not isinstance(annotators, list)
        or not annotators
        or not all(isinstance(user, str) and 0 < len(user) <= 200 for user in annotators)
        or len(set(annotators)) != len(annotators)
    ):
        return RowError(line, 'column "annotators" is not a list of different user ids')
    try:
        resolved_at = utc_time(record["resolved_at"])
    except BadTime as exc:
        return RowError(line, f'column "resolved_at" {exc}')
    votes_given = _votes(answers)
    if isinstance(votes_given, str):
        return RowError(line, votes_given)
    if votes_given is None:
        return RowError(
            line,
            'column "answers" is not a list of {"user_id", "label", "created_at"} '
            "with one answer a person",
        )
    return Provenance(votes, float(agreement), tuple(annotators), resolved_at, votes_given)


def _json_value(value: Any) -> Any:
    return _json_cell(value) if isinstance(value, str) else value


class BadTime(Exception):
    """Why a time read from a file is refused; the message follows the field's name."""


def utc_time(value: Any) -> str:
    """An ISO 8601 time with its UTC offset (``Z``, ``+02:00``, …), in the store's own form:
    UTC, ``+00:00``, milliseconds, as ``bot.store.utc_now`` writes it. The store compares its
    times as text (the newest label, a retrain's watermark, Undo's window), which holds only
    when every one is written the same way. A date alone or a time without an offset is
    refused (``BadTime``): which zone it meant cannot be told, and guessing one would move it
    by hours."""
    if not isinstance(value, str) or len(value) > 64:
        raise BadTime("is not an ISO 8601 time")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError):  # OverflowError: a +01:00 on 0001-01-01, say
        raise BadTime("is not an ISO 8601 time") from None
    shown = _printable(text)
    with contextlib.suppress(ValueError):
        day = date.fromisoformat(text).isoformat()
        raise BadTime(
            f"is a date without a time ({shown}): write a time with its UTC offset, as "
            f"`hitl export` does ({day}T00:00:00.000+00:00 for midnight UTC)"
        )
    example = moment.isoformat(timespec="milliseconds") + "+00:00"
    raise BadTime(
        f"has no UTC offset ({shown}): add it, as `hitl export` does ({example} if it is UTC)"
    )


def _votes(answers: Any) -> tuple[Vote, ...] | str | None:
    """The answers of an export, each ``created_at`` in the store's form (``utc_time``); the
    reason a time is refused, or None when the list is not one of answers."""
    if not isinstance(answers, list):
        return None
    votes = []
    for answer in answers:
        if not isinstance(answer, dict):
            return None
        user, label, when = answer.get("user_id"), answer.get("label"), answer.get("created_at")
        if not (isinstance(user, str) and 0 < len(user) <= 200 and isinstance(when, str)):
            return None
        if not isinstance(label, str) or label_problem(label):
            return None
        try:
            when = utc_time(when)
        except BadTime as exc:
            return f'a "created_at" in column "answers" {exc}'
        votes.append(Vote(user, label, when))
    if len({vote.user_id for vote in votes}) != len(votes):
        return None
    return tuple(votes)


def _csv_rows(
    path: str | Path,
    text: Iterator[str],
    columns: _Columns,
    delimiter: str,
    may_have_bad_bytes: Callable[[], bool],
    notes: _Notes | None = None,
) -> Iterator[Row | RowError]:
    """The rows of a CSV or TSV file, numbered by the line each starts on. The text, id and
    label columns are matched in any case (``_resolved``); its notes go to ``notes``.

    A quoted field may run over several lines. When such a row cannot be read (the file ends
    inside the quotes, the quotes close in a way CSV does not allow, or it runs on for
    ``MAX_RECORD_CHARS``), or it has the wrong number of fields and its lines look like rows
    the quote ran over (``_quote_swallowed_rows``), the quote is taken as never closed: the
    row is reported on its first line and the lines after it are read again as rows, so an
    unterminated quote costs one row, not the rest of the file. A properly quoted text over
    lines in a row with a field too many or too few is one rejected row: its second line is
    not read again as a row (it gave a junk item, even a label).
    ``may_have_bad_bytes()`` False means no row read so far can hold a byte that is not UTF-8.
    """
    pending: list[str] = []  # the lines of the row being read
    not_utf8 = _NotUtf8(path)
    replay: deque[str] = deque()  # lines to read again after an unterminated quote

    def feed() -> Iterator[str]:
        """The lines for ``csv.reader``: those to read again first, then the file's."""
        held = 0  # characters after the first line of a row that runs over several lines
        while replay:
            line = replay.popleft()
            pending.append(line)
            held = held + len(line) if len(pending) > 1 else 0
            if held > MAX_RECORD_CHARS:
                raise _RunOnError
            yield line
        append = pending.append
        for line in text:  # the hot loop of a CSV import: one list append and a length check
            append(line)
            if len(pending) > 1:
                held = len(line) if len(pending) == 2 else held + len(line)
                if held > MAX_RECORD_CHARS:
                    raise _RunOnError
            yield line

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
        while not header:  # blank lines before the header (a file of them reads as empty)
            header = next(reader)
    except StopIteration:
        return
    except (csv.Error, _RunOnError) as exc:
        field = _open_quote_field(pending[0], delimiter) if pending else None
        reason = f"unterminated quote in field {field + 1}" if field is not None else exc
        raise IngestError(f"{_shown(path)} line 1: the header cannot be read ({reason})") from exc
    if any(_has_bad_bytes(name) for name in header):
        raise IngestError(f"{_shown(path)} line 1: the header is not valid UTF-8; {utf8_fix(path)}")
    header = [unicodedata.normalize("NFC", name.strip()) for name in header]  # as _nfc
    _refuse_repeated(path, header)
    header, unnamed = _name_unnamed(path, header)
    columns, told = _resolved(path, header, columns)
    if notes is not None:
        notes.columns.extend(told)
    shown = ", ".join(_printable(name) for name in header[:12]) + (
        ", …" if len(header) > 12 else ""
    )
    for name, option in (
        (columns.text, "--text-column"),
        (columns.id, "--id-column"),
        (columns.label, "--label-column"),
    ):
        if name is not None and name not in header:
            raise IngestError(
                f'{_shown(path)}: no column "{_printable(name)}" in the header ({shown}); '
                f"pass {option} with one of these"
            )
    if ANSWERS_EXPORT <= {*header}:
        raise IngestError(_answers_export(path))
    make_row = _csv_row_maker(header, columns, unnamed)
    # `hitl export` guards a cell a spreadsheet would run as a formula with a ' (an export has
    # its provenance columns and "meta"): taken off again there only, a text of another file
    # that starts with ' (as "'-5 EUR' fee") is kept as it is, as its JSONL twin is.
    own_export = "meta" in header and all(name in header for name in PROVENANCE_FIELDS)

    def field_name(at: int) -> str:
        return f'"{_printable(header[at])}"' if at < len(header) else str(at + 1)

    def read_again() -> Iterator[list[str]]:
        """A reader that starts at the line after the row's first: its other lines first."""
        replay.extendleft(reversed(pending[1:]))
        return csv.reader(feed(), delimiter=delimiter, strict=True)

    start = 1 + len(pending)
    while True:
        pending.clear()
        try:
            values = next(reader)
        except StopIteration:
            return
        except (csv.Error, _RunOnError) as exc:
            field = _open_quote_field(pending[0], delimiter) if pending else None
            if pending and _was_cut(pending[0]):
                yield _cut_row(start)
            elif field is not None:
                yield RowError(start, f"unterminated quote in field {field_name(field)}")
            else:
                yield RowError(start, _malformed(exc))
            if field is not None or len(pending) > 1 or isinstance(exc, _RunOnError):
                reader, start = read_again(), start + 1
            else:
                start += 1
            continue
        line, start = start, start + len(pending)
        if not values or values == [""]:
            continue
        if _was_cut(pending[0]):
            yield _cut_row(line)
            if len(pending) > 1:  # the lines after it are rows of their own
                reader, start = read_again(), line + 1
            continue
        if may_have_bad_bytes() and _has_bad_bytes("".join(values)):
            yield not_utf8.in_text(line, pending)
            continue
        if len(values) != len(header):
            reason = f"has {len(values)} fields, the header has {len(header)}"
            field = _open_quote_field(pending[0], delimiter) if len(pending) > 1 else None
            if field is not None and _quote_swallowed_rows(pending, delimiter, len(header)):
                reason += f"; a quote in field {field_name(field)} may be unterminated"
                reader, start = read_again(), line + 1
            elif len(pending) > 1:
                reason += f" (the row runs over lines {line}-{line + len(pending) - 1})"
            yield RowError(line, reason)
            continue
        yield make_row(
            line, [formula_unguarded(value) for value in values] if own_export else values
        )


def _refuse_repeated(path: str | Path, header: list[str]) -> None:
    """Raise ``IngestError`` for a header that names a column twice (an empty name aside:
    Excel's trailing separators): one of the two columns was silently dropped."""
    first: dict[str, int] = {}
    for at, name in enumerate(header, start=1):
        if name and (before := first.setdefault(name, at)) != at:
            raise IngestError(
                f'{_shown(path)}: the header names the column "{_printable(name)}" twice (columns'
                f" {before} and {at}): rename one of them, so each is read"
            )


def _name_unnamed(path: str | Path, header: list[str]) -> tuple[list[str], frozenset[str]]:
    """``header`` with each column that has no name (Excel's trailing separators, pandas'
    index) named by its place, "column 3", so that a value in it is kept in meta under that
    name (two such columns were one key "", and one of them was dropped), and those names: an
    empty cell of such a column is not kept (the trailing separators gave every item a meta
    ``{"": ""}``). A header that also names a column so is refused."""
    if all(header):
        return header, frozenset()
    named = [name or f"column {at}" for at, name in enumerate(header, start=1)]
    unnamed = frozenset(name for name, was in zip(named, header, strict=True) if not was)
    for name in unnamed:
        if header.count(name):
            raise IngestError(
                f"{_shown(path)}: the header has a column without a name ({name}) and one"
                f' named "{name}": name the first, so each is read'
            )
    return named, unnamed


def _malformed(exc: Exception) -> str:
    """The reason for a row ``csv`` cannot read, on one line (a tab shown as ``\\t``), with
    what to do for a quote in the middle of a field that starts with one."""
    reason = f"malformed CSV ({_printable(str(exc), limit=80)})"
    if "expected after '\"'" in str(exc):
        reason += '; a field that starts with a quote must end with one, with "" for each " inside'
    return reason


class _RunOnError(Exception):
    """A row's quoted field ran on for more than ``MAX_RECORD_CHARS``: taken as unterminated."""


def _quote_swallowed_rows(lines: list[str], delimiter: str, fields: int) -> bool:
    """Whether a row of several physical ``lines`` (its first ends inside a quoted field), read
    with the wrong number of fields, looks like an unterminated quote that ran over rows of
    the file, rather than a text properly quoted over lines in a row with a field too many or
    too few: its first line, with that quote taken as a plain character, has the header's
    ``fields``, and so does a line wholly inside the quote. Only then are its lines read
    again as rows; otherwise they would give junk items (the text's second line as a row)."""

    def count(line: str) -> int | None:
        try:
            return len(next(csv.reader([line], delimiter=delimiter, strict=True), []))
        except csv.Error:
            return None

    first = lines[0].rstrip("\r\n")
    opened = _open_quote_at(first, delimiter)
    if opened is None:
        return False
    field, at = opened
    if field + 1 + first[at:].count(delimiter) != fields:
        return False
    return any(count(line) == fields for line in lines[1:-1])


def _open_quote_field(line: str, delimiter: str) -> int | None:
    """The index of the field whose quotes are still open at the end of ``line``, if any
    (CSV's rules: a quote opens a field only at its start; ``""`` inside is a quote)."""
    opened = _open_quote_at(line, delimiter)
    return opened[0] if opened is not None else None


def _open_quote_at(line: str, delimiter: str) -> tuple[int, int] | None:
    """The index of the field whose quotes are still open at the end of ``line``, and where in
    ``line`` that quote is, if any."""
    field, quoted, can_open, at = 0, False, True, 0
    for n, char in enumerate(line):
        if quoted:
            if char == '"':
                quoted = False
                can_open = True  # a second quote right after is an escaped one
            continue
        if char == '"' and can_open:
            quoted = True
            if n == 0 or line[n - 1] == delimiter:  # not the second quote of a ""
                at = n
        elif char == delimiter:
            field += 1
            can_open = True
        else:
            can_open = False
    return (field, at) if quoted else None


def _csv_row_maker(
    header: list[str], columns: _Columns, unnamed: frozenset[str] = frozenset()
) -> Callable[[int, list[str]], Row | RowError]:
    """``_make_row`` for one CSV header, by column position instead of a dict per row.

    Every CSV value is a string, so most of ``_make_row``'s checks cannot fail; what is left
    is done once per file here. A header with a "meta" column (an export) or a repeated name
    goes through ``_make_row`` itself. ``test_ingest`` checks both give the same rows. An empty
    cell of a column in ``unnamed`` (``_name_unnamed``) is not kept in meta."""
    text_name = columns.text
    id_name = columns.id or (columns.id_default if columns.id_default in header else None)
    label_name = columns.label or (
        columns.label_default if columns.label_default in header else None
    )
    if "meta" in header or len(set(header)) != len(header):

        def via_record(line: int, values: list[str]) -> Row | RowError:
            record = dict(zip(header, values, strict=True))
            for name in unnamed:
                if not record[name]:
                    del record[name]
            if label_name is not None:
                record[label_name] = _csv_label(record[label_name].strip())
            return _make_row(line, record, columns)

        return via_record
    text_at = header.index(text_name)
    id_at = header.index(id_name) if id_name is not None else None
    label_at = header.index(label_name) if label_name is not None else None
    used = {text_name, id_name, label_name}
    meta_at = [(name, i) for i, name in enumerate(header) if name not in used]

    def make_row(line: int, values: list[str]) -> Row | RowError:
        text = values[text_at].strip()
        if error := _text_error(line, text_name, text):
            return error
        if id_at is None:
            item_id = item_id_for_text(text)
        elif error := _id_error(line, id_name, item_id := values[id_at].strip()):
            return error
        label = _label_text(values[label_at]) if label_at is not None else None
        if error := _label_error(line, label):
            return error
        meta = {name: values[i] for name, i in meta_at} if meta_at else {}
        if unnamed:
            meta = {name: value for name, value in meta.items() if value or name not in unnamed}
        return Row(line, item_id, text, label, meta)

    return make_row


# The checks both paths share, on values already stripped.


def _text_error(line: int, name: str, text: str) -> RowError | None:
    if not text:
        return RowError(line, f'column "{name}" is empty')
    if "\x00" in text and not text.replace("\x00", "").strip():
        return RowError(line, f'column "{name}" holds only NUL characters (is the file UTF-16?)')
    if shows_nothing(text.replace("\x00", "")):  # as the producer API refuses it
        return RowError(
            line,
            f'column "{name}" has no visible characters (only invisible ones: a zero-width '
            "space, a byte-order mark, a soft hyphen, …)",
        )
    if len(text) > MAX_TEXT_CHARS:
        return RowError(
            line, f"text is {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}"
        )
    return None


def _id_error(line: int, name: str | None, item_id: str) -> RowError | None:
    if not item_id:
        return RowError(line, f'column "{name}" (the id) is missing or empty')
    if len(item_id) > 200:
        return RowError(line, f'column "{name}" (the id) is over 200 characters')
    if problem := id_problem(item_id):  # as the producer API refuses them
        return RowError(line, f'column "{name}" (the id) {problem}')
    return None


def _label_error(line: int, label: str | None) -> RowError | None:
    if label is None:
        return None
    if label.startswith(("[", "{")) and (reason := _listed_labels(label)):
        return RowError(line, reason)
    if problem := label_problem(label):
        return RowError(line, f"the label {problem}")
    return None


def _many_labels(key: str | None, labels: list[Any]) -> str:
    shown = ", ".join(_printable(json.dumps(label, ensure_ascii=False), 30) for label in labels[:4])
    return (
        f'column "{key}" has {len(labels)} labels ({shown}{", …" if len(labels) > 4 else ""}):'
        f" {_ONE_LABEL} (keep one, or write a row for each)"
    )


_ONE_LABEL = "multi-label rows are not supported: one label per row"


def _listed_labels(label: str) -> str | None:
    """Why a label written as a list or an object is refused (pandas writes a list column as
    ``['a', 'b']``, JSON ``["a"]``, Label Studio's CSV ``{"choices": ["a"]}``), or None when
    it is neither (a label such as "[draft]"): taken as a name, it made a label "['a']"."""
    value: Any = None
    if len(label) <= 10_000:  # a label is at most MAX_LABEL characters: no long parse
        try:
            value = json.loads(label)
        except ValueError:
            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(label)
    what = "a list"
    if isinstance(value, dict):
        what, value = "an object", value.get("choices", [*value.values()])
    if not isinstance(value, list | tuple):
        return None
    shown = _printable(label, 50)
    if len(value) == 1 and isinstance(value[0], str | int) and not isinstance(value[0], bool):
        return (
            f"the label {shown} is {what}: {_ONE_LABEL} (write the label itself:"
            f" {_printable(str(value[0]))})"
        )
    return (
        f"the label {shown} is {what} of {len(value)}: {_ONE_LABEL} (keep one, or write a row"
        " for each)"
    )


def _jsonl_rows(
    path: str | Path, lines: Iterator[bytes | None], columns: _Columns, notes: _Notes
) -> Iterator[Row | RowError]:
    """The rows of a JSONL file. Its first ``FIRST_ROWS`` non-blank lines are read before the
    first row is given: when they hold JSON objects and none has the text field (or the id or
    label field named), the file is refused (``IngestError``) naming the fields they have, as
    a CSV header without the column is, rather than every row being refused one by one; so is
    an answers export (``ANSWERS_EXPORT``).

    A row of a Prodigy export (``_prodigy``) gives a label only when its answer is "accept";
    the others are skipped, counted in ``notes``."""
    not_utf8 = _NotUtf8(path)

    def parsed() -> Iterator[tuple[int, RowError | dict[str, Any]]]:
        """Each non-blank line's number and its object, or why it is none."""
        for number, raw in enumerate(lines, start=1):
            if raw is None:
                yield number, _long_line(number)
                continue
            line = _decode(raw)
            if isinstance(line, UnicodeDecodeError):
                yield number, not_utf8.in_bytes(number, line)
                continue
            if not line.strip():
                continue
            if not seen:
                seen.append(number)
                _refuse_whole_json(path, line, lines)
            record = _json_record(number, line)
            if isinstance(record, dict) and not all(map(str.isascii, record)):
                record = {unicodedata.normalize("NFC", key): value for key, value in record.items()}
            yield number, _Numbers.of(record, line)

    seen: list[int] = []  # the first non-blank line's number, once met
    read = parsed()
    first = list(itertools.islice(read, FIRST_ROWS))
    records = [record for _, record in first if isinstance(record, dict)]
    if records:
        names = {name: None for record in records for name in record}  # in order, once each
        if any(ANSWERS_EXPORT <= record.keys() for record in records):
            raise IngestError(_answers_export(path))
        columns, told = _resolved(path, [*names], columns, what="field")
        notes.columns.extend(told)
        for name, option in (
            (columns.text, "--text-column"),
            (columns.id, "--id-column"),
            (columns.label, "--label-column"),
        ):
            if name is not None and not any(name in record for record in records):
                raise IngestError(
                    f'{_shown(path)}: no field "{_printable(name)}" in the first '
                    f"{len(first)} rows (they have: {_field_names(names)}); pass {option} with "
                    "one of these"
                )
    del records
    prodigy_choice = replace(columns, label="accept")
    for number, record in itertools.chain(first, read):
        if isinstance(record, RowError):
            yield record
            continue
        answer = _prodigy_answer(record)
        if answer is not None and answer != "accept":
            notes.skipped[answer] = notes.skipped.get(answer, 0) + 1
        elif (
            answer is not None
            and columns.label is None
            and "label" not in record
            and columns.label_default not in record
        ):
            yield _make_row(number, record, prodigy_choice)  # its "accept" list
        else:
            yield _make_row(number, record, columns)


# The fields of `hitl export --answers` (bot.cli.ANSWER_FIELDS, "text" and "late" aside): one
# row per answer, not per item. Imported, each answer became a second copy of its item.
ANSWERS_EXPORT = frozenset({"item_id", "user_id", "label", "source", "created_at"})


def _answers_export(path: str | Path) -> str:
    return (
        f"{_shown(path)} is an answers export (`hitl export --answers`: a row per answer, not"
        " per item), which `hitl import` does not read; import the label export instead:"
        " `hitl export > labels.jsonl` (without --answers) gives the file `hitl import` reads"
    )


def _prodigy_answer(record: dict[str, Any]) -> str | None:
    """The answer of a row of a Prodigy export ("accept", "reject", "ignore"), or None when
    the row is not one (a Prodigy row has "answer" and its "_input_hash" or "_task_hash")."""
    answer = record.get("answer")
    if isinstance(answer, str) and ("_input_hash" in record or "_task_hash" in record):
        return _printable(answer.strip(), limit=20) or "(empty)"
    return None


_LABEL_STUDIO = re.compile(r'"data"\s*:\s*\{[^{}]*"text"\s*:')


def _refuse_whole_json(path: str | Path, line: str, lines: Iterator[bytes | None]) -> None:
    """Raise ``IngestError`` when a JSONL file's first non-blank ``line`` shows the file is one
    JSON value, not a JSON object a line: an array (``json.dump``, Label Studio's export:
    named so, with a jq command that writes its text and first choice as JSONL), or an object
    written over several lines. Otherwise each of its lines was refused as bad JSON."""
    start = line.strip()
    if not start.startswith("[") and start != "{":
        return
    name = _shown(path)
    stem = Path(path).stem if not _is_stdin(Path(path)) else "items"
    output = shlex.quote(stem + ("-lines" if Path(path).suffix == ".jsonl" else "") + ".jsonl")
    source = "…" if _is_stdin(Path(path)) else shlex.quote(Path(path).name)
    head = start + "".join(
        raw.decode("utf-8", "replace") for raw in itertools.islice(lines, 60) if raw is not None
    )
    if start.startswith("[") and _LABEL_STUDIO.search(head):
        program = ".[] | {id, text: .data.text, label: .annotations[0].result[0].value.choices[0]}"
        what = "a Label Studio JSON export (an array of tasks, each text in data.text)"
    elif start.startswith("["):
        program, what = ".[]", "a JSON array"
    else:
        program, what = ".", "JSON written over several lines"
    fix = (
        f"… | jq -c {shlex.quote(program)} | hitl import - --format jsonl"
        if _is_stdin(Path(path))
        else f"jq -c {shlex.quote(program)} {source} > {output}, and import that"
    )
    raise IngestError(f"{name} is {what}, not JSON lines (one object a line): {fix}")


# JSON that parses but cannot be stored: a lone surrogate escape ("\ud83d", half of an emoji),
# which UTF-8 and so SQLite cannot hold; NaN and the infinities, which Python reads but JSON
# (and SQLite's json functions) do not allow; an integer longer than int() reads (4,300 digits).
# Each would fail the import far from its line, so the row is refused naming its column.


class _Unfit(ValueError):
    """Raised by the strict decoder's hooks at NaN, an infinity or a float too large."""


@dataclass(frozen=True)
class _UnfitNumber:
    """What the marking decoder leaves where such a number was, for ``_unfit`` to report."""

    reason: str


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unfit(text)
    return value


def _no_constant(text: str) -> Any:
    raise _Unfit(text)


def _marked_float(text: str) -> float | _UnfitNumber:
    value = float(text)
    if math.isfinite(value):
        return value
    return _UnfitNumber(f"holds {text[:20]}, a number too large to store (write it as a string)")


def _marked_int(text: str) -> int | _UnfitNumber:
    try:
        return int(text)
    except ValueError:  # longer than sys.get_int_max_str_digits()
        digits = len(text.lstrip("-"))
        return _UnfitNumber(
            f"holds a whole number of {digits:,} digits, over the limit of "
            f"{sys.get_int_max_str_digits():,} (write it as a string)"
        )


def _marked_constant(text: str) -> _UnfitNumber:
    return _UnfitNumber(f"holds {text}, which JSON does not allow (use null or a number)")


# The fast path: plain decoding, except at a float (rare in item files) or NaN/Infinity.
class _Repeated(dict):
    """A JSON object that names a key twice with different values (``{"label": "spam", …,
    "label": "ham"}``): a JSON reader keeps either one, so which the file meant is unknown.
    ``repeated`` is that key and its first two values."""

    __slots__ = ("repeated",)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    first: dict[str, Any] = {}
    for key, value in pairs:
        if key in first and first[key] != value:
            repeated = _Repeated(record)
            repeated.repeated = (key, first[key], value)
            return repeated
        first.setdefault(key, value)
    return record  # the same value twice: nothing is ambiguous


_STRICT_JSON = json.JSONDecoder(
    parse_float=_finite_float, parse_constant=_no_constant, object_pairs_hook=_json_object
)
# Only once that failed: every unfit number becomes a marker, so its column can be named.
_MARKING_JSON = json.JSONDecoder(
    parse_float=_marked_float,
    parse_int=_marked_int,
    parse_constant=_marked_constant,
    object_pairs_hook=_json_object,
)
# A line decoded again for the text of a number as written (``_Numbers.literal``).
_LITERAL_JSON = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # may make one: then ``_unfit`` looks


def _json_record(number: int, line: str) -> dict[str, Any] | RowError:
    """A JSONL line's object, or the row error that says what is wrong with it (naming the
    column when a value in it parses but cannot be stored)."""
    try:
        try:
            record = _STRICT_JSON.decode(line)
            suspect = "\\u" in line and _SURROGATE_ESCAPE.search(line) is not None
        except json.JSONDecodeError:
            raise
        except ValueError:  # _Unfit, or an integer too long for int()
            record, suspect = _MARKING_JSON.decode(line), True
    except json.JSONDecodeError as exc:
        return RowError(number, _bad_json(line, exc))
    except RecursionError:
        return RowError(number, "bad JSON (nested too deeply)")
    if not isinstance(record, dict):
        return RowError(number, "not a JSON object")
    if suspect:
        for key, value in record.items():
            if reason := _unfit(key) or _unfit(value):
                return RowError(number, f'column "{_printable(key)}" {reason}')
    if isinstance(record, _Repeated):
        key, one, other = record.repeated
        return RowError(
            number,
            f'column "{_printable(key)}" is given twice, as {_shown_value(one)} and then '
            f"{_shown_value(other)}: keep the right one",
        )
    return record


def _shown_value(value: Any) -> str:
    """A JSON value for a one-line message, cut short when long."""
    return _printable(json.dumps(value, ensure_ascii=False, default=str))


def _bad_json(line: str, exc: json.JSONDecodeError) -> str:
    """Why a JSONL line is not JSON, at the column of the line where it went wrong; an object
    not closed before the line ends (a line cut short) is said so."""
    content = line.rstrip("\r\n")
    column = min(exc.pos, len(content)) + 1  # past its end: where the line's newline was
    said = exc.msg.removesuffix(" at")  # "Invalid control character at": not "at at"
    reason = f"bad JSON ({said} at column {column}"
    if exc.pos >= len(content.rstrip()) or said.startswith("Unterminated string"):
        reason += "; the line ends before the JSON is closed"
    return reason + ")"


def _unfit(value: Any) -> str | None:
    """Why a decoded JSON value (a marking decoder's) cannot be stored, or None if it can;
    it looks through lists and objects, keys included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if found := _SURROGATE.search(item):
                escape = found.group().encode("unicode_escape").decode()
                return (
                    f"holds a lone surrogate {escape} (half of a character such as an emoji): "
                    "fix or remove it"
                )
        elif isinstance(item, _UnfitNumber):
            return item.reason
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _json_cell(text: str) -> Any:
    """A JSON value written in a CSV cell (an export's meta, annotators, answers), with any
    unfit number marked for ``_unfit``; None when it is not JSON."""
    try:
        return _MARKING_JSON.decode(text)
    except (ValueError, RecursionError):
        return None


def _text_rows(path: str | Path, lines: Iterator[bytes | None]) -> Iterator[Row | RowError]:
    columns = _Columns("text", None, None)
    not_utf8 = _NotUtf8(path)
    for number, raw in enumerate(lines, start=1):
        if raw is None:
            yield _long_line(number)
            continue
        line = _decode(raw)
        if isinstance(line, UnicodeDecodeError):
            yield not_utf8.in_bytes(number, line)
            continue
        if not line.strip() or shows_nothing(line):  # blank, or as blank (a lone U+2800, ZWSP)
            continue
        yield _make_row(number, {"text": line}, columns)


def _label_text(raw: str) -> str | None:
    """A label as stored: trimmed, in one Unicode spelling (NFC: "café" with a combining
    accent is "café"), None when empty."""
    return unicodedata.normalize("NFC", _csv_label(raw.strip())) or None


def _csv_label(label: str) -> str:
    """A CSV's label cell (trimmed): the label as written, a number too ("1.0" is the label
    "1.0", as `hitl export` writes it: a label is text, and turned into "1" it came back
    changed from its own export); an empty list ("[]", pandas' for a row without labels) is
    no label."""
    if not label or label[-1] != "]":
        return label
    return "" if label.replace(" ", "") == "[]" else label


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): item
# texts come from producers, so `hitl export --format csv` writes such a cell after a ', which
# spreadsheets show as text and hide, and a CSV import takes the ' off again. A text that
# starts with 's and then one of these gets one more ' too, so that every text reads back as
# it was ("'=1" is written "''=1"; "'plain" is written as it is).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_guarded(value: Any) -> Any:
    """``value`` for a CSV cell: text that is a formula after any leading 's gets one more '."""
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def formula_unguarded(value: str) -> str:
    """A CSV cell as ``formula_guarded`` wrote it, back to its text: one ' less on a cell that
    is 's then a formula."""
    if value.startswith("'") and value.lstrip("'").startswith(FORMULA_STARTS):
        return value[1:]
    return value
