"""Loading a file's rows into the store: batches of ``IMPORT_BATCH`` rows, each committed on
its own, and the import recorded as a run (what was read, imported, rejected and why).

The CLI (`hitl import`) only shows what this reports: each rejected row through
``on_error``, the bytes read through ``progress``, and the summary it returns.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bot.errors import IngestError, StoreError
from bot.ingest.readers import (
    Provenance,
    Row,
    RowError,
    _printable,
    detect_format,
    item_id_for_text,
    legacy_item_ids,
    read_items,
)
from bot.ingest.redact import KINDS as REDACT_STEPS
from bot.ingest.redact import ORDER as REDACT_KINDS
from bot.ingest.redact import Redactor
from bot.ingest.stream import InputStream
from bot.labelnames import case_twin, how_twins_differ, label_key, looks_the_same, only_twin
from bot.store import DatabaseError, LabelSetMoved, Store, database_problem
from bot.store.records import same_text

logger = logging.getLogger(__name__)
T = TypeVar("T")

IMPORT_BATCH = 1000  # rows committed in one transaction
ERRORS_RECORDED = 100  # rejected rows kept in the run's record
LABELS_SHOWN = 12  # of the label set, in the message of a row whose label is outside it
# How far past the store's clock a time in the file may be (another machine's clock may run a
# little ahead); a later one is refused: the store would take it as newer than all it writes.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class ImportSummary:
    """What one import did; ``errors`` holds the message of every rejected row."""

    read: int = 0
    imported: int = 0
    labeled: int = 0
    duplicates: int = 0
    labels_not_applied: int = 0  # duplicate rows whose label was not applied: item unlabeled
    labels_differ: int = 0  # duplicate rows whose label was not applied: item labeled otherwise
    rejected: int = 0
    marked_gold: int = 0  # with ``gold``: items already stored, now gold
    gold_left_out: int = 0  # without ``gold``: rows of an export that carried a gold label
    deleted_before: int = 0  # rows whose id `hitl delete` deleted: skipped
    redacted: int = 0  # texts in which HITL_REDACT replaced personal data
    # rows imported under their own id whose text was stored already under the text's hash
    # by an import (of the same file without its id column): that text is now stored twice
    stored_twice: int = 0
    twice: _Twice = field(default_factory=lambda: _Twice())  # which copy holds what
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read,
            "imported": self.imported,
            "labeled": self.labeled,
            "duplicates": self.duplicates,
            **({"labels_not_applied": self.labels_not_applied} if self.labels_not_applied else {}),
            **({"labels_differ": self.labels_differ} if self.labels_differ else {}),
            "rejected": self.rejected,
            **({"marked_gold": self.marked_gold} if self.marked_gold else {}),
            **({"gold_left_out": self.gold_left_out} if self.gold_left_out else {}),
            **({"deleted_before": self.deleted_before} if self.deleted_before else {}),
            **({"redacted": self.redacted} if self.redacted else {}),
            **({"stored_twice": self.stored_twice} if self.stored_twice else {}),
        }


def rows_of_file(
    path: Path,
    fmt: str | None = None,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    label_column: str | None = None,
    progress: Callable[[int], None] | None = None,
    stream: InputStream | None = None,
) -> Iterator[Row | RowError]:
    """``read_items``, with a problem of the whole file (``IngestError``) raised now, before
    the caller opens the store or writes anything; with ``stream``, read from it (standard
    input, as it arrives: ``path`` only names it). An input without a row is such a problem: a
    script must not take it as imported (a failed `curl` piped in), and a mistyped --db must
    not be left as a new empty database."""
    rows = read_items(
        path,
        fmt,
        text_column=text_column,
        id_column=id_column,
        label_column=label_column,
        progress=progress,
        stream=stream,
    )
    first = next(rows, None)
    if first is None:
        raise IngestError(f"{path.name}: no rows to import ({why_no_rows(path, fmt, stream)})")
    return _Chain(first, rows)


def why_no_rows(path: Path, fmt: str | None, stream: InputStream | None) -> str:
    """What an input without a row holds, for the line that refuses it: told from its first
    bytes and format (standard input, and what a gzip file holds, are not read again: "empty,
    or …")."""
    kind = detect_format(path, fmt)
    if kind == "jsonl":  # a Prodigy export's rows not accepted are skipped, as a line said
        held = "only blank lines, or rows skipped as said above"
    else:
        held = "a header only, or blank lines" if kind in ("csv", "tsv") else "only blank lines"
    if stream is not None or not path.is_file() or path.suffix.lower() == ".gz":
        return f"empty, or {held}"
    with path.open("rb") as handle:
        head = handle.read(64 * 1024).removeprefix(b"\xef\xbb\xbf")
    if not head:
        return "the file is empty"
    if kind in ("csv", "tsv"):
        return "a header only" if head.strip() else "only blank lines"
    return held


def import_rows(
    store: Store,
    path: Path,
    rows: Iterator[Row | RowError],
    *,
    triggered_by: str,
    on_error: Callable[[str], None] = lambda message: None,
    on_unapplied: Callable[[str], None] = lambda message: None,
    batch_size: int = IMPORT_BATCH,
    gold: bool = False,
    configured_labels: Sequence[str] = (),
    redact: tuple[str, ...] = (),
    on_note: Callable[[str], None] | None = None,
    stream: InputStream | None = None,
) -> ImportSummary:
    """Add ``rows`` (read from ``path``) to the store in batches, as one "import" run;
    with ``stream`` (what ``rows`` are read from as it arrives: standard input), the rows
    held are also committed when it waits for its writer (``InputStream.commit_with``), so a
    slow writer's rows are stored without waiting for a whole batch;
    ``on_error`` gets the message of each rejected row, in line order (a batch's once it is
    stored: a row is rejected there for its id stored with another text), ``on_unapplied`` one
    for each duplicate row whose label was not applied (its item is stored without a label,
    or with another one), with the command that applies it. With ``gold``, the rows are gold
    (``Store.add_gold``): each needs a label; an id already stored is marked gold.

    A row whose id is stored (by this file's earlier rows or before) with another text is
    rejected: an id names one item, and an import never changes a stored one. A row whose id
    is stored with the same text is a duplicate. A labeled row whose id an earlier labeled row
    of the file gave another label is rejected naming that row's line (as ``gold`` does): the
    file contradicts itself. Without ``gold``, the rows that carried an export's gold label
    (``Row.gold``, which a plain import leaves out) are counted (``gold_left_out``).

    ``configured_labels`` is the label set of the settings (``HITL_LABELS``). With it, or a
    label set stored by `hitl labels` (which wins over it), a row whose label is outside the set
    in force is refused, as `hitl labels set` refuses such a label: training would learn it.
    With neither, the labels are open and the imported ones make the set, one spelling each: a
    row whose label differs only in case from one stored, or from one an earlier row of the
    file stored, is refused (as `hitl labels add` refuses such a label), naming the spelling to
    write; a row rejected for another reason fixes no spelling.

    An unexpected error ends the run as failed (the batches committed before it stay) and is
    raised again; a database's (a full disk, a lock held too long) as a ``StoreError`` in one
    line that also says how many rows were stored before it, and that running the import
    again is safe: it skips them as duplicates; the input's own (``IngestError``: gzip data
    damaged past the first rows) says the same.

    A row whose ``resolved_at``, or the ``created_at`` of one of its answers, is more than
    ``CLOCK_SKEW`` past the store's clock (``store.now()`` at the start) is refused: times are
    compared as text, and a label decided "later" than anything the store writes would hide
    every label set after it from the next retrain (the readers already wrote each time in
    the store's form, so the text comparison holds).

    A row whose label was renamed or merged (`hitl labels`) into the label its item is stored
    with (the same id and text) is a duplicate: the file imported again after the rename.
    A row imported under its own id whose text is stored under the text's hash (the id a row
    without an id gets: the same file imported before without its id column) is imported, and
    counted (``stored_twice``): once the file is read, a line to ``on_note`` (by default,
    standard error) says so for each kind (``_Twice``): the `hitl delete` of the copies stored
    before where they hold nothing (no label, answer, Slack question or gold label); where
    they do, that they are to be kept, with the ids to look at, and no command."""
    latest = _latest_allowed(store.now())
    # The label set as read now; each batch's write transaction reads the set's change mark
    # again and, when `hitl labels` changed the set meanwhile (another process), the set too,
    # and checks the batch's labels again (``as_in_force_now``): read first, so a change made
    # between the two reads is seen as one made since.
    mark = store.label_set_mark()
    in_force = _label_set_in_force(store, configured_labels)
    allowed = frozenset(in_force) if in_force is not None else None
    successors = store.label_aliases() if in_force is not None else {}
    label_changes = store.label_set_changes() if successors else []  # for ``_outside``
    spellings = _Spellings(store) if in_force is None else None
    written: dict[int, str] = {}  # line: a row's label as written, where it is taken otherwise
    renamed: dict[int, str] = {}  # line: why its row is refused, unless it is a duplicate
    # Whether to look for texts stored under their hash (``_stored_under_text``): in the first
    # batch, and in each after it once that found some (the same file imported before without
    # its ids; a file none of whose first rows is so stored costs one lookup, not one a batch).
    hashed = not gold
    run_id = store.start_run("import", triggered_by=triggered_by)
    summary = ImportSummary()
    any_deleted = store.has_deleted_items()
    redactor = Redactor(redact)
    raw: dict[int, str] = {}  # line -> the text before redaction, for this batch's conflicts
    batch: list[Row] = []
    stored = _Stored()
    # With ``gold``: each id's gold label and line in this file (a later gold import may change
    # a gold answer on purpose; two in one file contradict each other). Gold files are small.
    gold_lines: dict[str, tuple[str, int]] = {}
    firsts = _FirstLabels()  # without ``gold``: each id's first label in this file, and its line
    # A row's label that looks the same as one of the set (``looks_the_same``: "card payment"
    # written with a plain space for the label imported with a no-break space) is that label,
    # as `hitl labels set` takes it: (written, stored) -> [rows, first line], said at the end
    taken: dict[tuple[str, str], list[int]] = {}
    alike: dict[str, str | None] = {}  # a label outside the set in force: the one it is
    stored_names: set[str] | None = None  # names stored otherwise: never taken for another

    def looks_like(label: str) -> str | None:
        """The one label in force that ``label`` (not one) looks the same as, or None: none,
        several, or ``label`` is stored itself (retired, renamed away, outside the set)."""
        nonlocal stored_names
        if label not in alike:
            twin = only_twin(label, in_force or [])
            if twin is not None and looks_the_same(label, twin):
                if stored_names is None:
                    stored_names = {*store.retired_labels(), *successors, *store.label_set()}
                alike[label] = None if label in stored_names else twin
            else:
                alike[label] = None
        return alike[label]

    def taken_row(row: Row, twin: str) -> Row:
        seen = taken.setdefault((row.label or "", twin), [0, row.line])
        seen[0] += 1
        return replace(row, label=twin)

    def label_checked(row: Row) -> Row | RowError:
        """``row`` under the label set in force (as last read): its label as stored, or why it
        is refused; a row whose label was renamed or merged into one in force has its line in
        ``renamed`` (decided once its batch is looked up: ``_renamed_apart``)."""
        if row.number is not None:  # 1.50 stored as "1.5" before
            row = _number_as_stored(row, allowed, successors, spellings)
        if allowed is not None and row.label is not None:
            if row.label not in allowed and (twin := looks_like(row.label)) is not None:
                row = taken_row(row, twin)
            if row.label not in allowed:
                why = _outside(row.label, in_force or [], successors, label_changes)
                # renamed into the set: maybe a duplicate; with items deleted, maybe one of
                # theirs, skipped whatever its label: decided once its batch is looked up
                if not gold and (successors.get(row.label) in allowed or any_deleted):
                    renamed[row.line] = why
                else:
                    return RowError(row.line, why)
        return row

    def as_in_force_now(rows: list[Row]) -> list[Row]:
        """``rows`` (about to be written) under the label set as it is now:
        when `hitl labels` changed it since it was read (its change mark moved: another process
        renamed, merged, retired or added a label while this import ran), the set, its aliases
        and its changes are read again and each row's label, as written, is checked again, as
        a row of an import started now would be: taken as the new set's label, refused (told
        to the user), or a duplicate of its item stored with the label it was renamed to. The
        rows stored before the change are the change's: it rewrote them."""
        nonlocal mark, in_force, allowed, successors, label_changes, spellings, stored_names
        now = store.label_set_mark()
        if now == mark:  # most batches: one read of an indexed max
            return rows
        mark = now
        in_force = _label_set_in_force(store, configured_labels)
        allowed = frozenset(in_force) if in_force is not None else None
        successors = store.label_aliases() if in_force is not None else {}
        label_changes = store.label_set_changes() if successors else []
        if in_force is not None:
            spellings = None  # a set is stored now: it, not the spellings, decides
        stored_names = None
        alike.clear()
        out: list[Row] = []
        for row in rows:
            came = written.get(row.line, row.label)
            if came is None:
                out.append(row)
                continue
            seen = taken.get((came, row.label or ""))
            if seen is not None and came != row.label:  # counted again below if still taken
                seen[0] -= 1
                if not seen[0]:
                    del taken[(came, row.label or "")]
            checked = label_checked(replace(row, label=came))
            if isinstance(checked, RowError):
                reject(checked)
                if gold:
                    unstored(row)
                continue
            out.append(checked)
        if renamed:
            out = _renamed_apart(store, out, renamed, successors, summary, reject)
        return out

    # Rows rejected and not yet told: told in line order once every row before them is decided
    # (a row of the batch is decided when the batch is stored: its id may be stored with
    # another text), at most ``batch_size`` held.
    held: list[RowError] = []

    def reject(row: RowError) -> None:
        summary.rejected += 1
        held.append(row)

    def tell() -> None:
        held.sort(key=lambda row: row.line)
        for row in held:
            message = row.message(path)
            on_error(message)
            if len(summary.errors) < ERRORS_RECORDED:  # the run's record; the rest only counted
                summary.errors.append(message)
        held.clear()

    def store_rows(rows: list[Row]) -> None:
        """Store ``rows`` (in file order), in one transaction, under the label set in force
        when it is written: checked against the set as it is now (``as_in_force_now``), then
        written only if the set's change mark is still that one inside the write's transaction
        (a change between the two: ``LabelSetMoved``, looked at again); settle the spellings
        they gave. No transaction around both: the store's write inside one would be a
        savepoint, whose journal writes every page twice (an import 20 % slower)."""
        while rows:
            rows = as_in_force_now(rows)
            if not rows:
                break
            try:  # written only if the set is still the one checked against (its mark)
                add(rows)
                break
            except LabelSetMoved:  # changed between that look and the write: look again
                continue
        if spellings is not None:  # a spelling these rows gave is the label's once stored
            spellings.settle(lambda ids: store.gold_labels() if gold else store.labels_of(ids))
        stored.rows += len(rows)

    def counted(done: Any) -> None:
        """A committed batch's ``GoldResult`` (``gold``) or ``AddResult`` in ``summary``."""
        if gold:
            summary.imported += done.added
            summary.labeled += done.added
            summary.marked_gold += done.marked
            summary.duplicates += done.unchanged
        else:
            summary.imported += done.imported
            summary.labeled += done.labeled
            summary.duplicates += done.duplicates

    def add(rows: list[Row]) -> None:
        kept = store.commits
        try:
            if gold:
                done = store.add_gold(rows, label_mark=mark)
            else:
                result = store.add_items(rows, source="import", label_mark=mark)
        except KeyboardInterrupt:
            # One that came just after the batch's commit (a signal during it is raised as it
            # returns): the batch is stored, so it counts in the rows the run kept.
            if store.commits != kept:
                counted(store.write_result)
            raise
        if gold:
            counted(done)
            for index in done.conflicts:
                reject(RowError(rows[index].line, _conflict(rows[index])))
                unstored(rows[index])
        else:
            counted(result)
            conflicting = set()
            for index in result.conflicts:
                row = rows[index]
                if _redaction_apart(store, row, raw.pop(row.line, row.text)):
                    summary.duplicates += 1  # the item as stored before HITL_REDACT changed
                    continue
                conflicting.add(index)
                reject(RowError(row.line, _conflict(row)))
            kept = [row for index, row in enumerate(rows) if index not in conflicting]
            # Deleted (`hitl delete`) since this batch was looked up: the store left them out.
            if len(rows) - result.imported - result.duplicates - len(result.conflicts):
                kept = _left_out_deleted(store, kept, summary)
            # A row whose label contradicts an earlier row's of the file was a duplicate (that
            # row's id is stored): refused instead, naming it (a text conflict comes first).
            kept, contradicting = firsts.split(kept)
            summary.duplicates -= len(contradicting)
            for row, label, line in contradicting:
                reject(RowError(row.line, _twice(row, label, line)))
            if result.duplicates:
                for unlabeled, message in _not_applied(store, path, kept):
                    if unlabeled:
                        summary.labels_not_applied += 1
                    else:
                        summary.labels_differ += 1
                    on_unapplied(message)

    def unstored(row: Row) -> None:
        """With ``gold``: ``row`` was not stored, so a later row may give its id a gold label."""
        if gold_lines.get(row.id, ("", 0))[1] == row.line:
            del gold_lines[row.id]

    def flush() -> None:
        nonlocal hashed
        if not batch:
            tell()
            return
        last = batch[-1].line
        batch[:] = with_stored_ids(store, batch)
        if any_deleted:  # deleted for good (an erasure): the same file brings nothing back,
            # whatever label its row has (renamed or retired since: skipped, not refused)
            batch[:] = _without_deleted(store, batch, summary, renamed)
        if renamed:  # a label renamed since: a duplicate, or refused as outside the set
            batch[:] = _renamed_apart(store, batch, renamed, successors, summary, reject)
        if redactor:
            before = redactor.changed
            # of the rows without an id (named by their text) whose text the setting changed:
            # the ids of their text's forms under the settings within this one (the text as it
            # came, stored before the setting was turned on, or with fewer kinds)
            others: dict[int, list[str]] = {}
            for n, row in enumerate(batch):
                raw[row.line] = row.text
                text, meta = redactor.item(row.text, row.meta)
                # a row without an id is named by its text: by the redacted one, or the id
                # (a hash of the text, shown beside it everywhere) would let the value be
                # guessed back; the same text redacted is the same id, so a re-send finds it
                named = row.id == item_id_for_text(row.text)
                new_id = item_id_for_text(text) if named else row.id
                if named and text != row.text:
                    others[row.line] = _twin_ids(row.text, new_id, redact)
                batch[n] = replace(row, text=text, meta=meta, id=new_id)
            summary.redacted += redactor.changed - before
            if any_deleted:  # an id-less row's id is the redacted text's now
                batch[:] = _without_deleted(store, batch, summary)
            if others:  # stored (or deleted) under such an id before the setting was as now
                batch[:] = _with_redaction_twins(
                    store, batch, others, summary, any_deleted, adopt=not gold
                )
        twins = _stored_under_text(store, batch) if hashed else {}
        # With open labels, a label's spelling is the first one a stored row gives: a row whose
        # label differs only in case from one given by an earlier row of this batch waits for
        # the rows before it to be stored (a row rejected for its id gives no spelling).
        segment: list[Row] = []
        for row in batch:
            twin = spellings.twin_of(row.label, row.id) if spellings and row.label else None
            if twin is _UNSETTLED:
                store_rows(segment)
                segment = []
                twin = spellings.twin_of(row.label, row.id) if spellings and row.label else None
            if isinstance(twin, str) and looks_the_same(row.label or "", twin):
                row, twin = taken_row(row, twin), None  # what it reads as: that label
            if isinstance(twin, str):
                reject(RowError(row.line, twin_label(row.label or "", twin)))
                if gold:
                    unstored(row)
                continue
            segment.append(row)
        store_rows(segment)
        if hashed:  # the copies this batch stored: what each pair holds
            hashed = summary.twice.add(store, twins) or summary.stored_twice > 0
            summary.stored_twice = summary.twice.n
        if not gold:
            logger.info("committed rows through line %d of %s", last, path.name)
        stored.through = last
        batch.clear()
        raw.clear()
        written.clear()
        tell()

    def details() -> dict[str, object]:
        return {**summary.counts(), "file": str(path), "errors": summary.errors[:ERRORS_RECORDED]}

    def commit_held() -> None:
        """The rows read so far, committed now: the input waits for its writer."""
        if batch or held:
            flush()

    if stream is not None:
        stream.commit_with(commit_held)
    try:
        for row in rows:
            summary.read += 1
            if gold and isinstance(row, Row) and row.label is None:
                row = RowError(row.line, "a gold row needs a label")
            if isinstance(row, Row) and row.provenance is not None:
                if (late := _in_future(row.provenance, latest)) is not None:
                    row = RowError(row.line, late)
            if isinstance(row, Row):
                checked = label_checked(row)
                if isinstance(checked, Row) and checked.label != row.label and row.label:
                    written[row.line] = row.label  # checked again if the set changes
                row = checked
            if gold and isinstance(row, Row):
                label, line = gold_lines.setdefault(row.id, (row.label or "", row.line))
                if label != row.label:
                    row = RowError(row.line, _twice(row, label, line, gold=True))
            if isinstance(row, RowError):
                reject(row)
                if not batch or len(held) >= batch_size:  # every row before it is decided
                    flush()
                continue
            # an export's gold label, which only `--gold` imports (``Row.gold``), on an item
            # not gold here already (a re-import into the database it came from)
            if not gold and row.gold is not None and not store.is_gold(row.id):
                summary.gold_left_out += 1
            batch.append(row)
            if len(batch) >= batch_size:
                flush()
        flush()
    except BaseException as exc:  # an interrupt too: the run must not stay "running"
        if stream is not None:
            stream.commit_with(None)
        with contextlib.suppress(Exception):  # the rows rejected before it, still to tell
            tell()
        _fail_run(store, run_id, {**details(), "error": f"{type(exc).__name__}: {exc}"})
        if isinstance(exc, DatabaseError):
            problem = database_problem(store.path or "the database", exc)
            raise StoreError(f"{problem}. {stored.told(path)}") from exc
        if isinstance(exc, IngestError):  # mid-file (damaged gzip data): what was kept, too
            raise IngestError(f"{exc}. {stored.told(path)}") from exc
        if isinstance(exc, MemoryError):  # a memory limit (ulimit -v, a container's)
            raise StoreError(
                "ran out of memory while importing (MemoryError): give hitl more memory (its"
                f" limit: `ulimit -v`, or the container's). {stored.told(path)}"
            ) from None
        raise
    if stream is not None:
        stream.commit_with(None)
    store.finish_run(run_id, "ok", details())
    for (written, twin), (n, line) in taken.items():
        rows_of = f"{n:,} rows" if n > 1 else "1 row"
        said = (
            f'{path.name}: {rows_of} labeled "{_printable(written)}" (line {line:,}'
            f'{" and others" if n > 1 else ""}) taken as the label "{_printable(twin)}": they'
            f" differ {how_twins_differ(written, twin)}"
        )
        if on_note is not None:
            on_note(said)
        else:
            print(said, file=sys.stderr)
    for line in summary.twice.lines(path):
        if on_note is not None:
            on_note(line)
        else:
            print(line, file=sys.stderr)
    return summary


def with_stored_ids(store: Store, items: Sequence[T]) -> list[T]:
    """``items`` (rows of a file, or a producer's items: each with an ``id`` and a ``text``),
    each that came without an id and is stored under an id it got before ids were hashed from
    the text's one form (``legacy_item_ids``: the text as it came then, decomposed or with
    ``\r\n``) given that id, so it is the stored item again (a duplicate, or the producer's
    item with its human answer), not a second one. One lookup of those ids; a one-line ASCII
    text has none, a database with no such item (``Store.has_legacy_text_ids``) needs none,
    and other items are as they came."""
    if not store.has_legacy_text_ids():  # a database made since: none to find
        return list(items)
    legacy = {
        n: olds
        for n, item in enumerate(items)
        if (olds := legacy_item_ids(item.text)) and item.id == item_id_for_text(item.text)
    }
    if not legacy:
        return list(items)
    stored = store.existing_item_ids(sorted({old for olds in legacy.values() for old in olds}))
    if not stored:
        return list(items)
    out = list(items)
    for n, olds in legacy.items():
        for old in olds:
            if old in stored and same_text(store.get_item(old)["text"], items[n].text):
                out[n] = replace(items[n], id=old)
                break
    return out


def _without_deleted(
    store: Store, rows: Sequence[Row], summary: ImportSummary, refused: dict[int, str] | None = None
) -> list[Row]:
    """``rows`` without those whose item `hitl delete` deleted (``deleted_items_among``),
    counted in ``summary``; the lines of those left out leave ``refused`` (a label refusal
    still to decide: a deleted item's row is skipped, whatever its label)."""
    gone = deleted_items_among(store, rows)
    if not gone:
        return list(rows)
    summary.deleted_before += len(gone)
    for n in gone:
        if refused is not None:
            refused.pop(rows[n].line, None)
    return [row for n, row in enumerate(rows) if n not in gone]


def _left_out_deleted(store: Store, rows: Sequence[Row], summary: ImportSummary) -> list[Row]:
    """``rows`` (a committed batch's, no conflicts) without those ``Store.add_items`` left out
    because `hitl delete` deleted their id while the import ran, counted in ``summary`` as
    skipped (deleted before). Read only when it left some out."""
    gone = store.deleted_among([row.id for row in rows])
    gone -= store.existing_item_ids(sorted(gone))  # stored before it was deleted: no row of ours
    summary.deleted_before += sum(1 for row in rows if row.id in gone)
    return [row for row in rows if row.id not in gone]


def deleted_items_among(store: Store, items: Sequence[Any]) -> set[int]:
    """Which of ``items`` (each with an ``id`` and a ``text``) `hitl delete` deleted, by their
    place: by the item's id, and for one that came without an id (its id is its text's), by
    each id an older version may have stored its text under (``legacy_item_ids``): deleting
    such an item recorded that id, and ``with_stored_ids`` cannot find it any more, the item
    being gone. One indexed read (in chunks)."""
    olds = {
        n: legacy
        for n, item in enumerate(items)
        if (legacy := legacy_item_ids(item.text)) and item.id == item_id_for_text(item.text)
    }
    asked = [item.id for item in items] + [old for legacy in olds.values() for old in legacy]
    gone = store.deleted_among(asked)
    if not gone:
        return set()
    return {
        n
        for n, item in enumerate(items)
        if item.id in gone or any(old in gone for old in olds.get(n, ()))
    }


def _redaction_apart(store: Store, row: Row, came: str) -> bool:
    """Whether ``row``'s id is stored with its text as it ``came`` or as redacted (any kinds of
    ``HITL_REDACT``): the same item, stored before the setting was turned on (or off), not
    another one under its id. Read only for the few rows found in conflict."""
    stored = store.get_item(row.id)
    if stored is None:
        return False
    return same_item_text(stored["text"], row.text, came)


def same_item_text(stored: str, text: str, came: str) -> bool:
    """Whether ``stored``, the text an id is stored with, is the text of the item sent again
    under that id: ``text`` (as ``HITL_REDACT`` now stores it), or ``came`` (the text as it came,
    before that) as it came or as any setting of ``HITL_REDACT`` would have stored it, each as
    ``same_text`` compares (line breaks, Unicode forms): the same item, stored before the
    setting was turned on, off or given other kinds. Else the id is stored with another text:
    `hitl import` rejects the row, the producer API the item. Pure; the forms of ``came`` are
    made only when ``text`` is not the stored one (a conflict, or redaction apart)."""
    if same_text(stored, text):
        return True
    return any(same_text(stored, form) for form in _redacted_forms(came))


# what every kind needs: an "@", or 8 digits, apart by 2 characters at most ("(020) 7946 0958")
_MAYBE_PERSONAL = re.compile(r"@|\d(?:\W{0,2}\d){7}")


def _redacted_forms(text: str) -> set[str]:
    """``text`` as it came and as each setting of ``HITL_REDACT`` would have stored it (each
    set of kinds, applied in their order). Only itself for most texts: one look tells there
    is nothing to redact; a kind that changes none of the forms adds none."""
    forms = {text}
    if not _MAYBE_PERSONAL.search(text):
        return forms
    for kind in REDACT_KINDS:
        forms |= {REDACT_STEPS[kind](form) for form in forms}
    return forms


def _forms_within(text: str, kinds: Collection[str]) -> set[str]:
    """``text`` as it came and as each setting of ``HITL_REDACT`` made of some of ``kinds``
    would have stored it (each set applied in their order). Only these name the same ticket
    as ``kinds`` do: two texts whose form under fewer kinds is the same differ only in what
    ``kinds`` replace, so they have the same redacted text (the same id) now too; a form under
    another kind (``[email]`` while ``kinds`` keep the address) is shared by tickets ``kinds``
    tell apart, so it cannot say which one it was. A kind that changes nothing in ``text``
    is not tried on its other forms: replacing leaves no more of what a kind finds."""
    forms = {text}
    for kind in REDACT_KINDS:
        if kind in kinds and (alone := REDACT_STEPS[kind](text)) != text:
            forms |= {alone, *(REDACT_STEPS[kind](form) for form in forms if form != text)}
    return forms


def _twin_ids(came: str, own: str, kinds: Collection[str]) -> list[str]:
    """The ids of the forms of ``came`` under the settings within ``kinds`` (``_forms_within``)
    other than ``own`` (its redacted text's id under ``kinds``)."""
    return sorted({item_id_for_text(form) for form in _forms_within(came, kinds)} - {own})


def _with_redaction_twins(
    store: Store,
    rows: Sequence[Row],
    others: Mapping[int, list[str]],
    summary: ImportSummary,
    any_deleted: bool,
    *,
    adopt: bool = True,
) -> list[Row]:
    """``rows``, each that came without an id and whose text ``HITL_REDACT`` changed (its line
    in ``others``, with the ids of its text's forms under the settings within the current one:
    ``_twin_ids``) whose id is not stored, but whose text is stored (or was deleted) under one
    of those ids (stored as it came before the setting was turned on, or with fewer kinds):
    given that id, so it is a duplicate of the stored item (``_redaction_apart``); left out if
    that id was deleted (counted in ``summary``), so an erased ticket does not come back with
    the setting turned on. Without ``adopt`` (a gold import: ``Store.add_gold`` would refuse
    the other text) only the deleted are left out. One lookup for the batch. With the setting
    off there are none: an id-less item is stored as it comes (its redacted form, stored
    before, names every ticket that differs from it only in the personal data)."""
    asked = sorted(
        {row.id for row in rows if row.line in others}
        | {i for row in rows for i in others.get(row.line, ())}
    )
    if not asked:
        return list(rows)
    stored = store.existing_item_ids(asked)
    gone = store.deleted_among(asked) - stored if any_deleted else set()
    out = []
    for row in rows:
        ids = others.get(row.line)
        if ids and row.id not in stored:
            if any(i in gone for i in ids):
                summary.deleted_before += 1
                continue
            twin = next((i for i in ids if i in stored), None)
            if twin is not None and adopt:
                row = replace(row, id=twin)
        out.append(row)
    return out


def redaction_twin_ids(
    items: Sequence[Any], came: Mapping[int, str], kinds: Collection[str]
) -> dict[int, list[str]]:
    """Of ``items`` (a producer's, redacted under ``kinds``: ``HITL_REDACT``), each sent without
    an id whose text the setting changed (its place in ``came``, with its text as it came): the
    ids of its text's forms under the settings within ``kinds`` (as it came, stored before the
    setting was turned on, or with fewer kinds), for ``with_redaction_twins``. Pure: for a
    worker thread; none with the setting off (an id-less item is then stored as it comes)."""
    others: dict[int, list[str]] = {}
    for n, text in came.items():
        if ids := _twin_ids(text, items[n].id, kinds):
            others[n] = ids
    return others


def with_redaction_twins(
    store: Store, items: Sequence[T], others: Mapping[int, list[str]]
) -> list[T]:
    """``items``, each whose id is not stored but whose text is stored (or was deleted) under
    one of its ``others`` (``redaction_twin_ids``: stored before ``HITL_REDACT`` was turned on,
    or with fewer kinds): given that id, so it is the stored item again, or the deleted one
    (which the API then refuses, 410), as ``hitl import`` finds it (``_with_redaction_twins``).
    One lookup of those ids; none without any."""
    if not others:
        return list(items)
    asked = sorted({items[n].id for n in others} | {i for ids in others.values() for i in ids})
    stored = store.existing_item_ids(asked)
    gone = store.deleted_among(asked) - stored if store.has_deleted_items() else set()
    out = list(items)
    for n, ids in others.items():
        if items[n].id in stored:
            continue
        twin = next((i for i in ids if i in gone), None) or next(
            (i for i in ids if i in stored), None
        )
        if twin is not None:
            out[n] = replace(items[n], id=twin)
    return out


def _renamed_apart(
    store: Store,
    rows: Sequence[Row],
    renamed: dict[int, str],
    successors: Mapping[str, str],
    summary: ImportSummary,
    reject: Callable[[RowError], None],
) -> list[Row]:
    """``rows`` without those whose label is outside the set in force (their lines in
    ``renamed``, popped, with why each is refused): one renamed or merged into another is a
    duplicate (counted so) when its id is stored with its text and labeled with that other
    label, as the file imported again after `hitl labels rename`; else refused (``reject``)."""
    mine = [row for row in rows if row.line in renamed]
    if not mine:
        return list(rows)
    labels = store.labels_of([row.id for row in mine])
    out = []
    for row in rows:
        why = renamed.pop(row.line, None)
        if why is None:
            out.append(row)
        elif (
            (successor := successors.get(row.label or "")) is not None
            and labels.get(row.id) == successor
            and _redaction_apart(store, row, row.text)
        ):
            summary.duplicates += 1
        else:
            reject(RowError(row.line, why))
    return out


TWICE_SHOWN = 20  # of the bare copies stored before, in the note's `hitl delete`
PAIRS_SHOWN = 5  # of the pairs of copies the note names where it advises no delete
# A text shorter than this many characters (white space runs as one): "thanks", "ok", "same
# here". An unrelated message reads so as often as the same row imported again does, so such
# texts are counted and nothing is advised for them. Characters, not words: a ticket written
# without spaces (Chinese, Japanese) is measured as one with them.
SHORT_TEXT = 20


def _stored_under_text(store: Store, rows: Sequence[Row]) -> dict[str, str]:
    """Of the ``rows`` with an id of their own, not stored yet, whose text is stored under the
    text's hash (the id an import gives a row without one: the same file imported before
    without its id column): each such id stored before, and the row's own id (the first
    row's, of rows that repeat a text). One lookup, before the batch is stored."""
    own: dict[str, str] = {}
    for row in rows:
        hashed = item_id_for_text(row.text)
        if row.id != hashed:
            own.setdefault(hashed, row.id)
    if not own:
        return {}
    found = store.existing_item_ids(sorted({*own, *own.values()}))
    return {hashed: mine for hashed, mine in own.items() if hashed in found and mine not in found}


def _holds(copy: Mapping[str, Any]) -> bool:
    """Whether a stored item holds what `hitl delete` would lose for good besides its text: a
    label, an answer, a Slack question or a gold label."""
    return bool(copy["label"] is not None or copy["answers"] or copy["posts"] or copy["gold"])


@dataclass
class _Twice:
    """The texts an import stored a second time, under its ids, beside a copy stored before
    under the text's hash by an import without ids, by what each copy holds (``_holds``):

    - ``bare``: the copy stored before holds nothing: deleting it loses nothing (this import's
      copy has its text, and its label if the row had one): the note gives that `hitl delete`;
    - ``kept``: the copy stored before holds a label, answers, a question or a gold label and
      this import's copy nothing: the one before is to be kept; no command;
    - ``same``: the copy stored before holds only the label an import gave it, and this
      import's copy the same label: deleting the one before loses nothing; that `hitl delete`;
    - ``both``: both copies hold labels: no copy goes without losing one; no command;
    - ``short``: a text under ``SHORT_TEXT`` characters, likely another message that reads
      the same: counted only.

    A copy under the text's hash that the API stored (a producer's item sent without an id)
    or another source is not an import's: not counted. Rows that repeat a text are counted
    once a batch (not across batches: that would keep every id of a large file)."""

    n_bare: int = 0
    bare: list[str] = field(default_factory=list)  # the first TWICE_SHOWN ids stored before
    n_kept: int = 0
    kept: list[str] = field(default_factory=list)  # the first PAIRS_SHOWN pairs, as shown
    n_same: int = 0
    same: list[str] = field(default_factory=list)  # the first TWICE_SHOWN ids stored before
    n_both: int = 0
    both: list[str] = field(default_factory=list)
    n_short: int = 0

    @property
    def n(self) -> int:
        return self.n_bare + self.n_same + self.n_kept + self.n_both + self.n_short

    def add(self, store: Store, twins: Mapping[str, str]) -> bool:
        """Count the pairs ``twins`` (id stored before: this import's id) whose second copy
        this batch stored; whether there were any."""
        if not twins:
            return False
        held = store.what_items_hold([*twins, *twins.values()])
        before = self.n
        for hashed, mine in twins.items():
            old, new = held.get(hashed), held.get(mine)
            if old is None or new is None:  # the row was refused, or the copy deleted since
                continue
            if old["source"] != "import" or item_id_for_text(old["text"]) != hashed:
                continue  # not an id-less row of an import (a producer's item, say)
            if len(" ".join(old["text"].split())) < SHORT_TEXT:
                self.n_short += 1
            elif not _holds(old):
                self.n_bare += 1
                if len(self.bare) < TWICE_SHOWN:
                    self.bare.append(hashed)
            elif _only_label(old, new["label"]):
                self.n_same += 1
                if len(self.same) < TWICE_SHOWN:
                    self.same.append(hashed)
            elif not _holds(new):
                self.n_kept += 1
                if len(self.kept) < PAIRS_SHOWN:
                    self.kept.append(f"{_held(hashed, old)} and {_held(mine, new)}")
            else:
                self.n_both += 1
                if len(self.both) < PAIRS_SHOWN:
                    self.both.append(f"{_held(hashed, old)} and {_held(mine, new)}")
        return self.n > before

    def lines(self, path: Path) -> list[str]:
        """The note's lines, one for each kind found (none: none)."""
        name = path.name
        hashed = (
            "under another id (the text's hash, as an import without an id column names an item)"
        )
        out = []
        if n := self.n_bare:
            copies = "that copy holds" if n == 1 else "those copies hold"
            out.append(
                f"{name}: {_were(n)} already stored {hashed}, and so {_are(n)} now stored twice;"
                f" {copies} no label, answer, Slack question or gold label, so deleting"
                f" {'it' if n == 1 else 'them'} loses nothing and keeps the"
                f" {'copy' if n == 1 else 'copies'} this import stored (with its ids and"
                f" labels): {_delete(self.bare, n)}"
            )
        if n := self.n_same:
            copies = "that copy holds" if n == 1 else "those copies hold"
            out.append(
                f"{name}: {_were(n)} already stored {hashed}, and so {_are(n)} now stored twice;"
                f" {copies} only the label an import gave {'it' if n == 1 else 'them'}, the"
                f" label this import's {'copy holds' if n == 1 else 'copies hold'} too (with"
                f" {'its id' if n == 1 else 'their ids'}),"
                f" so deleting {'it' if n == 1 else 'them'} loses nothing: {_delete(self.same, n)}"
            )
        if n := self.n_kept:
            out.append(
                f"{name}: {_were(n)} already stored {hashed} with labels, answers, Slack"
                f" questions or gold labels, and so {_are(n)} now stored twice, this import's"
                f" {'copy' if n == 1 else 'copies'} with none: keep the"
                f" {'copy' if n == 1 else 'copies'} stored before (`hitl delete` would delete"
                " their labels and answers for good); `hitl find ID` shows a copy, to decide:"
                f" {'; '.join(self.kept)}{' …' if n > len(self.kept) else ''}"
            )
        if n := self.n_both:
            out.append(
                f"{name}: {_were(n)} already stored {hashed} with labels, answers, Slack"
                f" questions or gold labels, and so {_are(n)} now stored twice, this import's"
                f" {'copy' if n == 1 else 'copies'} labeled too: deleting either copy deletes"
                " its labels and answers for good, so no command is given; `hitl find ID`"
                f" shows a copy, to decide: {'; '.join(self.both)}"
                f"{' …' if n > len(self.both) else ''}"
            )
        if n := self.n_short:
            texts, were = ("short text", "was") if n == 1 else ("short texts", "were")
            out.append(
                f"{name}: {n:,} {texts} (under {SHORT_TEXT} characters, as"
                f' "thanks") {were} already stored {hashed}, and so {_are(n)} now stored twice;'
                f" nothing is advised for {'it' if n == 1 else 'them'}: a text so short may be"
                " another message that reads the same"
            )
        return out


def _delete(ids: Sequence[str], n: int) -> str:
    """The `hitl delete` of the copies stored before (``ids``: the first of ``n``)."""
    delete = f'hitl delete {" ".join(ids)} --reason "imported again with its ids"'
    if n > len(ids):
        return f"the first {len(ids)}: {delete}; `hitl find TEXT` shows a text's copies"
    return delete


def _only_label(copy: Mapping[str, Any], label: str | None) -> bool:
    """Whether a stored copy holds ``label``, given by an import, and nothing else `hitl
    delete` would lose: no person's answer, label change, review, Slack question or gold."""
    return (
        label is not None
        and copy["label"] == label
        and not (copy["people"] or copy["changes"] or copy["posts"] or copy["gold"])
    )


def _were(n: int) -> str:
    return f"{n:,} text was" if n == 1 else f"{n:,} texts were"


def _are(n: int) -> str:
    return "it is" if n == 1 else "they are"


def _held(item_id: str, copy: Mapping[str, Any]) -> str:
    """An id and what its copy holds, for the note: `t3f… (label billing, 3 answers)`."""
    what = []
    if copy["label"] is not None:
        what.append(f"label {_printable(copy['label'], limit=40)}")
    # an imported label is one answer (the import's): more are people's (or an export's)
    if copy["answers"] > (1 if copy["label"] is not None else 0):
        what.append(f"{copy['answers']:,} answer{'s' if copy['answers'] != 1 else ''}")
    if copy["posts"]:
        what.append("asked in Slack")
    if copy["gold"]:
        what.append("gold")
    shown = shlex.quote(_printable(item_id, limit=80))
    return f"{shown} ({', '.join(what)})" if what else f"{shown} (nothing)"


def _conflict(row: Row) -> str:
    return (
        f'id "{_printable(row.id, limit=60)}" is stored with another text (an id names one'
        " item, and an import never changes a stored one): give this row its own id (or pass"
        " --id-column with a column of unique values), or leave it out"
    )


def _twice(row: Row, label: str, line: int, *, gold: bool = False) -> str:
    """Why a row is refused that gives its item another label (``gold``: gold label) than the
    row on ``line`` of the same file gave it."""
    kind, another = (
        ("gold label", "another")
        if gold
        else ("label", f'another, "{_printable(row.label or "")}"')
    )
    # an id from the file names its rows; one hashed from the text needs saying why it is one
    why = (
        " (without an id column, the id is the text's: the same text twice)"
        if row.id == item_id_for_text(row.text)
        else ""
    )
    return (
        f'id "{_printable(row.id, limit=60)}" has the {kind} "{_printable(label, limit=40)}" on'
        f" line {line} of this file, and this row gives it {another}{why}: one item has one"
        f" {'gold answer' if gold else 'label'}; fix one of the two rows"
    )


def _not_applied(store: Store, path: Path, rows: Sequence[Row]) -> Iterator[tuple[bool, str]]:
    """A line for each labeled row of a committed batch (``rows``: those stored or duplicates)
    that was a duplicate whose label was not applied, with the command that applies it, and
    whether its item is stored without a label (else: with another label). A gold item is left
    out: its decided label trains nothing, and `hitl labels set` would change its gold label;
    so is an item set aside (status skipped: its label was removed)."""
    labeled = [row for row in rows if row.label is not None]
    stored = store.labels_of([row.id for row in labeled])
    for row in labeled:
        stored_label = stored.get(row.id)
        if stored_label == row.label:  # this row's item, or the same label again: most rows
            continue
        if store.is_gold(row.id):
            continue
        if stored_label is None and (store.get_item(row.id) or {}).get("status") not in _UNLABELED:
            continue
        words = [row.id, row.label or ""]
        ends = "-- " if any(word.startswith("-") for word in words) else ""  # not an option
        command = _printable(f"hitl labels set {ends}{shlex.join(words)}", limit=160)
        where = f'{path.name} line {row.line}: id "{_printable(row.id, limit=60)}"'
        label = _printable(row.label or "")
        if stored_label is None:
            told = f'is stored without a label; its label "{label}"'
        else:
            told = f'is stored with the label "{_printable(stored_label)}"; this row\'s "{label}"'
        yield stored_label is None, f"{where} {told} was not applied: {command}"


class _FirstLabels:
    """The first label each id got from a row of this file, with that row's line, so a later
    row giving the id another label is refused naming it. Kept for the first ``IN_MEMORY`` ids
    met, each as one int (its line and the label's number: about 6 MB for 50,000 ids), so the
    import's memory stays bounded however big the file: a later row contradicting the row of
    an id met past that is not refused, but still named when its label differs from the stored
    one (``_not_applied``), as a row of another import would be."""

    IN_MEMORY = 50_000
    _LABELS = 1 << 16  # label numbers: a file with more labels than that keeps no more firsts

    def __init__(self) -> None:
        self._firsts: dict[str, int] = {}  # id: line * _LABELS + the label's number
        self._numbers: dict[str, int] = {}
        self._labels: list[str] = []

    def split(self, rows: Sequence[Row]) -> tuple[list[Row], list[tuple[Row, str, int]]]:
        """``rows`` (a batch, in file order: those stored or duplicates, not a row whose id is
        stored with another text) without those whose label contradicts an earlier row's, and
        those, each with that row's label and line; the first label of each id is kept."""
        firsts, numbers, labels, size = self._firsts, self._numbers, self._labels, self._LABELS
        room = self.IN_MEMORY - len(firsts)
        kept: list[Row] = []
        contradicting: list[tuple[Row, str, int]] = []
        for row in rows:
            label = row.label
            if label is not None:
                first = firsts.get(row.id)
                if first is None:
                    if room > 0:
                        number = numbers.get(label)
                        if number is None and len(labels) < size:
                            number = numbers[label] = len(labels)
                            labels.append(label)
                        if number is not None:
                            firsts[row.id] = row.line * size + number
                            room -= 1
                elif labels[first % size] != label:
                    contradicting.append((row, labels[first % size], first // size))
                    continue
            kept.append(row)
        return kept, contradicting


_UNLABELED = frozenset({"new", "queued", "auto", "posted"})  # as Store._count_unlabeled


@dataclass
class _Stored:
    """The rows of the batches committed so far: how many, and the line of the last."""

    rows: int = 0
    through: int = 0

    def told(self, path: Path) -> str:
        """What an import that failed on the database kept, and that running it again is
        safe (the rows stored are then duplicates)."""
        if not self.rows:
            return "No row was stored: run the import again once that is fixed"
        rows = "1 row, through line" if self.rows == 1 else f"{self.rows:,} rows, through line"
        return (
            f"{rows} {self.through:,} of {path.name}, {'is' if self.rows == 1 else 'are'}"
            " stored: once that is fixed, run the same import again; it skips them as"
            " duplicates and imports the rest"
        )


def _fail_run(store: Store, run_id: int, detail: dict[str, object]) -> None:
    """Record the run as failed; if even that fails (a full disk, the database gone), say so
    in one line rather than hide the error that ended the import: the next run to start ends
    it as failed (its process is gone then; ``Store.start_run``)."""
    try:
        store.finish_run(run_id, "failed", detail)
    except Exception as exc:  # noqa: BLE001 - the error that ended the import is raised next
        logger.warning(
            "could not record import run %d as failed (%s): the next import or retrain will",
            run_id,
            exc,
        )


def _latest_allowed(now: str) -> str:
    """The latest time a row may hold, in the store's form: its clock's ``now`` (a UTC ISO
    time with milliseconds) plus ``CLOCK_SKEW``."""
    moment = datetime.fromisoformat(now)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment + CLOCK_SKEW).astimezone(UTC).isoformat(timespec="milliseconds")


def _in_future(came: Provenance, latest: str) -> str | None:
    """Why a row's times are refused, or None: the first one later than ``latest``."""
    skew = f"over {CLOCK_SKEW.seconds // 60} minutes past this machine's clock"
    fix = "fix the time, or the clock of the machine that wrote it"
    if came.resolved_at > latest:
        return f'column "resolved_at" is in the future ({came.resolved_at}, {skew}): {fix}'
    for vote in came.answers:
        if vote.created_at > latest:
            return (
                f'a "created_at" in column "answers" is in the future ({vote.created_at}, '
                f"{skew}): {fix}"
            )
    return None


def _label_set_in_force(store: Store, configured: Sequence[str]) -> list[str] | None:
    """The labels an imported row may have, in order: the stored set once `hitl labels`
    changed it, else the configured one; None (any label) when there is neither. The rule of
    ``bot.labelset.current_labels``, which this layer may not import."""
    stored = store.stored_labels()
    if stored is not None:
        return stored
    return list(configured) if configured else None


def _outside(
    label: str,
    in_force: Sequence[str],
    successors: dict[str, str],
    changes: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Why a row's label is refused, and the two ways to fix it. A label renamed or merged
    away (``successors``) cannot be added back (``Store._refuse_reused``): a rename can be
    undone (`hitl labels rename NEW OLD`), which ``changes`` (the label set's, oldest first)
    tell; after a merge, or without them, the row is to be written with the new name. A
    successor retired since is to be added back (`hitl labels add NEW`) first."""
    shown = ", ".join(_printable(name) for name in in_force[:LABELS_SHOWN])
    if len(in_force) > LABELS_SHOWN:
        shown += f", … ({len(in_force)} in all: `hitl labels show`)"
    add = _printable(f"hitl labels add {shlex.quote(label)}", limit=120)
    successor = successors.get(label)
    if successor in in_force and case_twin(label, [successor]) is not None:
        # `hitl labels add` refuses a label beside its case twin: renaming it back is the way
        words = [successor, label]
        ends = "-- " if any(word.startswith("-") for word in words) else ""  # not an option
        back = _printable(f"hitl labels rename {ends}{shlex.join(words)}", limit=120)
        return (
            f'label "{_printable(label)}" is now "{_printable(successor)}" (changed with '
            f'`hitl labels`): write "{_printable(successor)}" in the file, or, to have'
            f' "{_printable(label)}" back (it differs from "{_printable(successor)}"'
            f" {how_twins_differ(label, successor)}, so it cannot be a label beside it),"
            f" rename the label back with `{back}`"
        )
    if successor in in_force:
        said = (
            f'label "{_printable(label)}" is now "{_printable(successor)}" (changed with '
            f'`hitl labels`): write "{_printable(successor)}" in the file'
        )
        if not _renamed_only(label, successor, changes):  # merged: the class is another's
            return said
        words = [successor, label]
        ends = "-- " if any(word.startswith("-") for word in words) else ""  # not an option
        back = _printable(f"hitl labels rename {ends}{shlex.join(words)}", limit=120)
        return (
            f'{said}, or, to have "{_printable(label)}" back, rename the label back with `{back}`'
        )
    if successor is not None:
        # renamed or merged into a label retired since: `hitl labels add` refuses the old name
        # (``Store._refuse_reused``), and the successor is not in the set: adding it back is
        back = _printable(f"hitl labels add {shlex.quote(successor)}", limit=120)
        return (
            f'label "{_printable(label)}" is now "{_printable(successor)}" (changed with'
            f" `hitl labels`), which was retired: add it back with `{back}` and write"
            f' "{_printable(successor)}" in the file, or fix the row'
        )
    if (twin := case_twin(label, in_force)) is not None:  # `hitl labels add` would refuse it
        return twin_label(label, twin)
    return (
        f'label "{_printable(label)}" is not in the label set ({shown}): add it with `{add}`, '
        "or fix the row"
    )


def _number_as_stored(
    row: Row,
    allowed: Collection[str] | None,
    successors: Mapping[str, str],
    spellings: _Spellings | None,
) -> Row:
    """A JSONL number label is kept as written ("1.50"), but versions before stored it as
    Python writes the number ("1.5", ``Row.number``): where that is a label of the set in force
    (or renamed away from), or with the labels open a stored one, and the written one is not,
    the row takes it, so an existing database's class is not split in two (nor its rows
    refused, nor a file imported before taken for another label)."""
    if allowed is not None:
        known = row.label in allowed or row.label in successors
        old = row.number in allowed or row.number in successors
    else:
        known = spellings is None or spellings.known(row.label or "")
        old = spellings is not None and spellings.known(row.number or "")
    return replace(row, label=row.number) if old and not known else row


def _renamed_only(label: str, successor: str, changes: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``label`` became ``successor`` by renames alone since it was last added (no
    merge on the way): renaming ``successor`` back gives ``label`` its own items back."""
    current, merged = label, False
    for change in changes:
        action = change.get("action")
        if action == "add" and change.get("label") == label:
            current, merged = label, False
        elif action in ("rename", "merge") and change.get("label") == current:
            current, merged = change.get("new_label"), merged or action == "merge"
    return current == successor and not merged


def twin_label(label: str, twin: str) -> str:
    """Why a row is refused whose label differs only in case (or character form) from the
    label ``twin`` spelled so before: one label has one spelling. `hitl demo --data` too."""
    return (
        f'label "{_printable(label)}" differs from the label "{_printable(twin)}" '
        f'{how_twins_differ(label, twin)}: write "{_printable(twin)}" in the file'
    )


class _Unsettled:
    """What ``_Spellings.twin_of`` gives for a label whose spelling waits on rows not stored
    yet."""


_UNSETTLED = _Unsettled()


class _Spellings:
    """With the labels open, the one spelling of each: the store's labels (decided and gold;
    twins stored before they were refused stay usable), then each new one a stored row gives;
    the first spelling stored wins. A row rejected for another reason (its id stored with
    another text, deleted, contradicting an earlier row) gives none: its spelling stays
    unsettled until its row is stored (``settle``)."""

    def __init__(self, store: Store) -> None:
        self._known = {*store.label_set(), *store.gold_labels().values()}
        self._by_case: dict[str, str] = {}
        for label in sorted(self._known):
            self._by_case.setdefault(label_key(label), label)
        # a new label's spelling, given by rows not stored yet: its key: spelling, their ids
        self._unsettled: dict[str, tuple[str, list[str]]] = {}

    def known(self, label: str) -> bool:
        """Whether ``label`` is a stored spelling (or one a stored row of this import gave)."""
        return label in self._known

    def twin_of(self, label: str, item_id: str) -> str | _Unsettled | None:
        """The spelling ``label`` differs from only in case, or None (the row of ``item_id``
        may be stored with it; a new spelling is then its label's once ``settle`` finds it
        stored); ``_UNSETTLED`` when it differs only in case from one an earlier row gave
        that is not stored yet: store those rows first, and ask again."""
        if label in self._known:
            return None
        key = label_key(label)
        if (twin := self._by_case.get(key)) is not None:
            return twin
        given = self._unsettled.get(key)
        if given is None:
            self._unsettled[key] = (label, [item_id])
            return None
        if given[0] == label:
            given[1].append(item_id)
            return None
        return _UNSETTLED

    def settle(self, labels: Callable[[list[str]], dict[str, str]]) -> None:
        """The rows that gave the unsettled spellings were stored, or rejected: a spelling is
        its label's when an item of those rows has it now (``labels``: the stored label of
        each of a list of ids); the others are dropped."""
        if not self._unsettled:
            return
        found = labels([item_id for _, given in self._unsettled.values() for item_id in given])
        for key, (label, given) in self._unsettled.items():
            if any(found.get(item_id) == label for item_id in given):
                self._known.add(label)
                self._by_case[key] = label
        self._unsettled.clear()


class _Chain:
    """``first``, then ``rest``; ``close()`` closes ``rest`` (the reader, and with it the file)
    whether or not iteration started: a generator never started ignores ``close()``, and a
    store that cannot be opened would leave the file open until garbage collection."""

    def __init__(self, first: Row | RowError, rest: Iterator[Row | RowError]) -> None:
        self._first: list[Row | RowError] = [first]
        self._rest = rest

    def __iter__(self) -> _Chain:
        return self

    def __next__(self) -> Row | RowError:
        if self._first:
            return self._first.pop()
        return next(self._rest)

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()
