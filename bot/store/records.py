"""What the store hands out and takes in: small records and JSON helpers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
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


# -- records --------------------------------------------------------------------------------


class NewItem(Protocol):
    """What ``add_items`` needs of an incoming row (``bot.ingest.Row`` is one)."""

    id: str
    text: str
    meta: dict[str, Any]
    label: str | None


@dataclass(frozen=True)
class AddResult:
    imported: int
    duplicates: int
    labeled: int


@dataclass(frozen=True)
class Tally:
    """Each person's latest answer to one item."""

    votes: dict[str, list[str]]  # label -> user ids, in answer order
    skips: list[str]

    @property
    def n_votes(self) -> int:
        return sum(len(users) for users in self.votes.values())

    def majority(self, votes_needed: int) -> str | None:
        """The label with more than ``votes_needed / 2`` votes, if any."""
        for label, users in self.votes.items():
            if len(users) > votes_needed / 2:
                return label
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
