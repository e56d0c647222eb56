"""Loading a file's rows into the store: batches of ``IMPORT_BATCH`` rows, each committed on
its own, and the import recorded as a run (what was read, imported, rejected and why).

The CLI (`hitl import`) only shows what this reports: each rejected row through
``on_error``, the bytes read through ``progress``, and the summary it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.ingest.readers import Row, RowError, read_items
from bot.store import Store

logger = logging.getLogger(__name__)

IMPORT_BATCH = 1000  # rows committed in one transaction
ERRORS_RECORDED = 100  # rejected rows kept in the run's record


@dataclass
class ImportSummary:
    """What one import did; ``errors`` holds the message of every rejected row."""

    read: int = 0
    imported: int = 0
    labeled: int = 0
    duplicates: int = 0
    rejected: int = 0
    marked_gold: int = 0  # with ``gold``: items already stored, now gold
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read,
            "imported": self.imported,
            "labeled": self.labeled,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            **({"marked_gold": self.marked_gold} if self.marked_gold else {}),
        }


def rows_of_file(
    path: Path,
    fmt: str | None = None,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    label_column: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Row | RowError]:
    """``read_items``, with a problem of the whole file (``IngestError``) raised now, before
    the caller opens the store or writes anything."""
    rows = read_items(
        path,
        fmt,
        text_column=text_column,
        id_column=id_column,
        label_column=label_column,
        progress=progress,
    )
    first = next(rows, None)
    if first is None:
        return iter(())
    return _chain(first, rows)


def import_rows(
    store: Store,
    path: Path,
    rows: Iterator[Row | RowError],
    *,
    triggered_by: str,
    on_error: Callable[[str], None] = lambda message: None,
    batch_size: int = IMPORT_BATCH,
    gold: bool = False,
) -> ImportSummary:
    """Add ``rows`` (read from ``path``) to the store in batches, as one "import" run;
    ``on_error`` gets the message of each rejected row as it is met. With ``gold``, the rows
    are gold (``Store.add_gold``): each needs a label; an id already stored is marked gold."""
    run_id = store.start_run("import", triggered_by=triggered_by)
    summary = ImportSummary()
    batch: list[Row] = []

    def flush() -> None:
        if not batch:
            return
        if gold:
            done = store.add_gold(batch)
            summary.imported += done.added
            summary.labeled += done.added
            summary.marked_gold += done.marked
            summary.duplicates += done.unchanged
            batch.clear()
            return
        result = store.add_items(batch, source="import")
        summary.imported += result.imported
        summary.labeled += result.labeled
        summary.duplicates += result.duplicates
        logger.info("committed rows through line %d of %s", batch[-1].line, path.name)
        batch.clear()

    for row in rows:
        summary.read += 1
        if gold and isinstance(row, Row) and row.label is None:
            row = RowError(row.line, "a gold row needs a label")
        if isinstance(row, RowError):
            summary.rejected += 1
            message = row.message(path)
            on_error(message)
            summary.errors.append(message)
            continue
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    flush()
    details = {**summary.counts(), "file": str(path), "errors": summary.errors[:ERRORS_RECORDED]}
    store.finish_run(run_id, "ok", details)
    return summary


def _chain(first: Row | RowError, rest: Iterator[Row | RowError]) -> Iterator[Row | RowError]:
    yield first
    yield from rest
