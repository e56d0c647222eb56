"""What the store hands out and takes in: small records and JSON helpers."""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


def count_new_items(conn: sqlite3.Connection, by_status: Mapping[str, int]) -> None:
    """Add newly inserted items to ``item_counts`` (``{status: n}``), inside the caller's
    transaction: every INSERT INTO items must be followed by this (m009 dropped the trigger)."""
    conn.executemany(
        "INSERT INTO item_counts (status, n) VALUES (?, ?)"
        " ON CONFLICT(status) DO UPDATE SET n = n + excluded.n",
        [(status, n) for status, n in by_status.items() if n],
    )


def select_rows(db: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The rows of one SELECT as dicts, in one statement: for reads on the event loop, where
    sqlite-utils' ``db[table].rows_where`` first reads the schema (three queries of
    ``sqlite_master``) and ``db.query`` wraps the read in a savepoint."""
    cursor = db.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def insert_row(db: Any, table: str, row: Mapping[str, Any], *, replace: bool = False) -> int:
    """INSERT one row (``table`` and the keys are the code's names, never input) in one
    statement; the new rowid. For the writes of a click, on the event loop: sqlite-utils'
    ``db[table].insert`` first reads the schema (three queries of ``sqlite_master``) and wraps
    the row in a savepoint of its own."""
    columns = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("?" for _ in row)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    sql = f'{verb} INTO "{table}" ({columns}) VALUES ({marks})'
    return db.execute(sql, list(row.values())).lastrowid


def provenance_answers(
    item_id: str, label: str, provenance: Any, source: str
) -> list[tuple[Any, ...]]:
    """Answer rows (item_id, user_id, label, source, created_at, dedupe_key) for a label read
    back from an export (``bot.ingest.Provenance``): the people's own answers with their times
    when the export has them, else one answer per annotator at the time it was decided. They
    are stored with ``source`` (``import``), so they are history and count in no one's stats."""
    if provenance.answers:
        given = [(a.user_id, a.label, a.created_at) for a in provenance.answers]
    else:
        given = [(user, label, provenance.resolved_at) for user in provenance.annotators]
    return [
        (item_id, user, answer, source, when, f"{source}+answer:" + json.dumps([user, item_id]))
        for user, answer, when in given
    ]


def provenance_label(item_id: str, label: str, provenance: Any) -> tuple[Any, ...]:
    """The labels row (item_id, label, votes, agreement, annotators, resolved_at) as exported."""
    return (
        item_id,
        label,
        provenance.votes,
        provenance.agreement,
        json.dumps(list(provenance.annotators)),
        provenance.resolved_at,
    )


# -- records --------------------------------------------------------------------------------


class NewItem(Protocol):
    """What ``add_items`` needs of an incoming row (``bot.ingest.Row`` is one)."""

    id: str
    text: str
    meta: dict[str, Any]
    label: str | None


def same_text(a: str, b: str) -> bool:
    """Whether two texts are one item's: equal once their line breaks (``\r\n``, ``\r``) and
    Unicode forms (NFC) are made alike. A CSV keeps a quoted cell's ``\r\n`` where JSONL has
    ``\n``, and macOS writes "café" decomposed: the same ticket, not another item."""
    return a == b or canonical_text(a) == canonical_text(b)


def canonical_text(text: str) -> str:
    """The one form of a text that ``same_text`` compares: line breaks as ``\n``, Unicode NFC.
    An item without an id is named by a hash of it (``bot.ingest.item_id_for_text``)."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass(frozen=True)
class AddResult:
    imported: int
    duplicates: int
    labeled: int
    labels_not_applied: int = 0  # duplicates stored without a label, given one in the rows
    conflicts: tuple[int, ...] = ()  # positions of rows whose id is stored with another text


@dataclass(frozen=True)
class Tally:
    """Each person's latest answer to one item."""

    votes: dict[str, list[str]]  # label -> user ids, in answer order
    skips: list[str]

    def majority(self, votes_needed: int) -> str | None:
        """The label with more than ``votes_needed / 2`` votes and more than any other, if any.

        Two labels over half are a tie, not a decision for whichever was answered first (a tally
        can hold more answers than ``votes_needed``: a split that took more votes)."""
        counts = sorted((len(users) for users in self.votes.values()), reverse=True)
        for label, users in self.votes.items():
            if len(users) > votes_needed / 2 and len(users) == counts[0]:
                return label if counts[1:2] != [counts[0]] else None
        return None


@dataclass(frozen=True)
class AnswerResult:
    """What ``record_answer`` did: recorded, resolved, skipped, duplicate, unchanged, closed
    (the item was already decided; the answer is kept as history), repeated (the item was
    already decided and this is the person's own latest answer again, a double click: kept as
    history, nothing to say) or unknown_item."""

    status: str
    item_id: str
    label: str | None = None
    tally: Tally | None = None

    @property
    def is_stored(self) -> bool:
        return self.status in ("recorded", "resolved", "skipped", "closed", "repeated")

    @property
    def is_counted(self) -> bool:
        """Stored, and not the same person's same answer again."""
        return self.is_stored and self.status != "repeated"


def json_or_none(value: str | None) -> Any:
    return json.loads(value) if value else None


@dataclass(frozen=True)
class LabelMark:
    """Where a model's training read the labels: the count of label writes then (``seq``,
    m034; None for a model from before it) and the newest label's time (``at``; "" when not
    known). A label is newer when written after the read by either: the count does not
    depend on the clock (a clock that ran ahead, fixed, stamps later labels before the
    read's newest), the time does not depend on the database's history (a database restored
    from an older backup counts again from less). Every label the read saw is at or below
    both."""

    seq: int | None = None
    at: str = ""

    def after(self, table: str) -> tuple[str, list[Any]]:
        """A WHERE clause (and its arguments) for the rows of ``table`` (labels) after it."""
        if self.seq is None:
            return f"{table}.resolved_at > ?", [self.at]
        return f"({table}.seq > ? OR {table}.resolved_at > ?)", [self.seq, self.at or "~"]


class LabelSetMoved(Exception):
    """A write given the label set's change mark (``label_mark``) found that `hitl labels`
    changed the set since (another process): nothing was written; look at the rows again."""
