"""The SQLite store: schema, migrations and every query. The only module that speaks SQL.

One ``Store`` wraps one sqlite-utils ``Database`` (one connection, bound to the thread that
opened it). Every change that touches more than one row runs inside ``db.atomic()``, so it
is committed whole or not at all.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database, Migrations

from bot.errors import StoreError

logger = logging.getLogger(__name__)

ITEM_STATUSES = ("new", "queued", "posted", "resolved", "skipped", "auto")
IMPORT_USER = "import"


def utc_now() -> str:
    """The current time as a UTC ISO-8601 string with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- schema ---------------------------------------------------------------------------------
#
# Migrations are applied in order and recorded by name in ``_sqlite_migrations``. Never edit
# one that has shipped: add the next number. A database that records a name this code does
# not know was written by a newer slack-hitl, and is refused.

migrations = Migrations("hitl")


@migrations(name="m001_core")
def m001_core(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE items (
            id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            source TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'new',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            ranked TEXT,
            callback_url TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE answers (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            user_id TEXT NOT NULL,
            label TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            dedupe_key TEXT NOT NULL UNIQUE
        )"""
    )
    db.execute("CREATE INDEX answers_item ON answers(item_id, user_id)")
    db.execute(
        """
        CREATE TABLE labels (
            item_id TEXT PRIMARY KEY REFERENCES items(id),
            label TEXT NOT NULL,
            votes INTEGER NOT NULL,
            agreement REAL NOT NULL,
            annotators TEXT NOT NULL DEFAULT '[]',
            resolved_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            reason TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            posted_at TEXT NOT NULL,
            closed_at TEXT,
            UNIQUE (channel, ts)
        )"""
    )
    db.execute("CREATE INDEX posts_item ON posts(item_id)")
    db.execute(
        """
        CREATE TABLE models (
            version INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            n_train INTEGER NOT NULL,
            label_set TEXT NOT NULL,
            metrics TEXT NOT NULL DEFAULT '{}',
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            reason TEXT
        )"""
    )
    db.execute(
        "CREATE UNIQUE INDEX models_one_champion ON models(status) WHERE status = 'champion'"
    )


@migrations(name="m002_runs_deliveries")
def m002_runs_deliveries(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            triggered_by TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX runs_kind ON runs(kind, started_at)")
    db.execute(
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            url TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at)")
    db.execute("CREATE INDEX items_status_confidence ON items(status, confidence)")


@migrations(name="m003_post_redraw")
def m003_post_redraw(db: Database) -> None:
    # A post's Slack message is a view of the database: every change bumps redraw_seq and the
    # redrawer updates the message until drawn_seq catches up, so failed updates are retried.
    db.execute("ALTER TABLE posts ADD COLUMN redraw_seq INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE posts ADD COLUMN drawn_seq INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX posts_open ON posts(channel, closed_at)")


@migrations(name="m004_locks")
def m004_locks(db: Database) -> None:
    # One retrain at a time across processes; a crashed holder's lock expires.
    db.execute(
        """
        CREATE TABLE locks (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )"""
    )


@migrations(name="m005_label_decided_by")
def m005_label_decided_by(db: Database) -> None:
    # The last answer that counted when the item was decided: later answers are history,
    # and the message shows the tally that decided it.
    db.execute("ALTER TABLE labels ADD COLUMN decided_by INTEGER")


@migrations(name="m006_margin")
def m006_margin(db: Database) -> None:
    # The gap between the model's two best guesses: the queue's order ("most uncertain first")
    # read from an index, so picking the next question does not scan every item.
    db.execute("ALTER TABLE items ADD COLUMN margin REAL")
    db.execute(
        "UPDATE items SET margin = json_extract(ranked, '$[0][1]')"
        " - coalesce(json_extract(ranked, '$[1][1]'), 0) WHERE ranked IS NOT NULL"
    )
    db.execute("CREATE INDEX items_status_margin ON items(status, margin)")


KNOWN_MIGRATIONS = tuple(m.name for m in migrations._migrations)


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
    (the item was already decided; the answer is kept as history) or unknown_item."""

    status: str
    item_id: str
    label: str | None = None
    tally: Tally | None = None

    @property
    def is_stored(self) -> bool:
        return self.status in ("recorded", "resolved", "skipped", "closed")


# -- the store ------------------------------------------------------------------------------


class Store:
    """The slack-hitl database. Open with ``Store.open(path)``; close with ``close()``."""

    def __init__(self, db: Database, clock: Callable[[], str] = utc_now):
        self.db = db
        self.now = clock

    @classmethod
    def open(cls, path: str | Path, clock: Callable[[], str] = utc_now) -> Store:
        """Open (creating or upgrading) the database at ``path``.

        Raises ``StoreError`` for a file that is not a database or was written by a newer
        slack-hitl.
        """
        path = Path(path)
        if path.parent and not path.parent.exists():
            raise StoreError(
                f"{path}: folder {path.parent} does not exist; create it or set HITL_DB"
            )
        try:
            conn = sqlite3.connect(str(path), timeout=10)
            db = Database(conn)
            _configure(db, memory=False)
            store = cls(db, clock)
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a slack-hitl database ({exc})") from exc
        return store

    @classmethod
    def memory(cls, clock: Callable[[], str] = utc_now) -> Store:
        db = Database(memory=True)
        _configure(db, memory=True)
        store = cls(db, clock)
        store.migrate()
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --

    def migrate(self) -> None:
        applied = [m.name for m in migrations.applied(self.db)]
        unknown = [name for name in applied if name not in KNOWN_MIGRATIONS]
        if unknown:
            raise StoreError(
                f"this database was written by a newer slack-hitl (schema {unknown[-1]}); "
                "upgrade slack-hitl (pip install -U slack-hitl) or point HITL_DB at another file"
            )
        pending = [m.name for m in migrations.pending(self.db)]
        if pending:
            logger.info("applying migrations: %s", ", ".join(pending))
            migrations.apply(self.db)

    def schema_version(self) -> list[str]:
        """Names of the applied migrations, oldest first."""
        return [m.name for m in migrations.applied(self.db)]

    def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    # -- items --

    def existing_item_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self.db.execute(f"SELECT id FROM items WHERE id IN ({marks})", chunk)
            )
        return found

    def add_items(self, rows: Iterable[NewItem], source: str) -> AddResult:
        """Insert new items in one transaction; ids already stored (or repeated) are duplicates.

        A row with a label is stored as a human answer by ``import`` and resolved at once,
        so it can serve as a seed label.
        """
        rows = list(rows)
        now = self.now()
        seen = self.existing_item_ids([r.id for r in rows])
        items, answers, labels = [], [], []
        duplicates = 0
        for row in rows:
            if row.id in seen:
                duplicates += 1
                continue
            seen.add(row.id)
            items.append(
                {
                    "id": row.id,
                    "text": row.text,
                    "meta": json.dumps(row.meta, ensure_ascii=False),
                    "source": source,
                    "status": "resolved" if row.label is not None else "new",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if row.label is not None:
                answers.append(
                    {
                        "item_id": row.id,
                        "user_id": IMPORT_USER,
                        "label": row.label,
                        "source": source,
                        "created_at": now,
                        "dedupe_key": f"{source}:{row.id}",
                    }
                )
                labels.append(
                    {
                        "item_id": row.id,
                        "label": row.label,
                        "votes": 1,
                        "agreement": 1.0,
                        "annotators": json.dumps([IMPORT_USER]),
                        "resolved_at": now,
                    }
                )
        with self.db.atomic():
            if items:
                self.db["items"].insert_all(items, batch_size=500)
            if answers:
                self.db["answers"].insert_all(answers, batch_size=500)
            if labels:
                self.db["labels"].insert_all(labels, batch_size=500)
        return AddResult(imported=len(items), duplicates=duplicates, labeled=len(labels))

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        rows = list(self.db["items"].rows_where("id = ?", [item_id]))
        return _decode_item(rows[0]) if rows else None

    def count_items(self) -> dict[str, int]:
        counts = dict.fromkeys(ITEM_STATUSES, 0)
        for status, n in self.db.execute("SELECT status, count(*) FROM items GROUP BY status"):
            counts[status] = n
        return counts

    # -- labels and answers --

    def label_set(self) -> list[str]:
        """Labels people (or imports) have given, sorted."""
        return [
            row[0]
            for row in self.db.execute(
                "SELECT DISTINCT label FROM labels UNION SELECT DISTINCT label FROM answers "
                "WHERE label IS NOT NULL ORDER BY 1"
            )
        ]

    def iter_resolved(self) -> Iterator[dict[str, Any]]:
        """Resolved items with their label, oldest resolution first (what export reads)."""
        cursor = self.db.execute(
            "SELECT i.id, i.text, l.label, l.votes, l.agreement, l.annotators, l.resolved_at,"
            " i.meta FROM labels l JOIN items i ON i.id = l.item_id ORDER BY l.resolved_at, i.rowid"
        )
        for row in cursor:
            yield {
                "id": row[0],
                "text": row[1],
                "label": row[2],
                "votes": row[3],
                "agreement": row[4],
                "annotators": json.loads(row[5]),
                "resolved_at": row[6],
                "meta": json.loads(row[7]),
            }

    def iter_answers(self) -> Iterator[dict[str, Any]]:
        """Every raw answer, in the order it was given."""
        cursor = self.db.execute(
            "SELECT a.item_id, i.text, a.user_id, a.label, a.source, a.created_at"
            " FROM answers a JOIN items i ON i.id = a.item_id ORDER BY a.id"
        )
        for row in cursor:
            yield {
                "item_id": row[0],
                "text": row[1],
                "user_id": row[2],
                "label": row[3],
                "source": row[4],
                "created_at": row[5],
            }

    def count_labels(self) -> int:
        return self.db["labels"].count

    def count_answers(self) -> int:
        return self.db["answers"].count

    # -- runs --

    def start_run(self, kind: str, triggered_by: str | None = None) -> int:
        with self.db.atomic():
            table = self.db["runs"].insert(
                {
                    "kind": kind,
                    "started_at": self.now(),
                    "status": "running",
                    "triggered_by": triggered_by,
                    "detail": "{}",
                }
            )
        return int(table.last_pk)

    def finish_run(self, run_id: int, status: str, detail: dict[str, Any]) -> None:
        with self.db.atomic():
            self.db["runs"].update(
                run_id,
                {"status": status, "finished_at": self.now(), "detail": json.dumps(detail)},
            )

    def runs(self, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, args = ("kind = ?", [kind]) if kind else (None, [])
        rows = self.db["runs"].rows_where(where, args, order_by="id desc", limit=limit)
        return [{**row, "detail": json.loads(row["detail"])} for row in rows]

    # -- the queue: scoring, posting, answering --

    def pool(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Unlabeled items that may be asked about (new, queued or auto), oldest first."""
        rows = self.db.execute(
            "SELECT id, text, status, model_version, predicted_label, confidence, ranked"
            " FROM items WHERE status IN ('new', 'queued', 'auto') ORDER BY rowid"
            + (f" LIMIT {int(limit)}" if limit else "")
        )
        columns = ("id", "text", "status", "model_version", "predicted_label", "confidence")
        return [
            {**dict(zip(columns, row[:6], strict=True)), "ranked": _json_or_none(row[6])}
            for row in rows
        ]

    _POOL_COLUMNS = "id, text, status, model_version, predicted_label, confidence, ranked"

    def _pool_rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        columns = ("id", "text", "status", "model_version", "predicted_label", "confidence")
        return [
            {**dict(zip(columns, row[:6], strict=True)), "ranked": _json_or_none(row[6])}
            for row in self.db.execute(sql, list(args))
        ]

    def most_uncertain(self, limit: int) -> list[dict[str, Any]]:
        """The scored items waiting for people, smallest margin first (read from an index)."""
        return self._pool_rows(
            f"SELECT {self._POOL_COLUMNS} FROM items INDEXED BY items_status_margin"
            " WHERE status = 'queued' ORDER BY margin LIMIT ?",
            [limit],
        )

    def sample_unlabeled(self, size: int, rng: random.Random) -> list[dict[str, Any]]:
        """A uniform random sample of the unlabeled items (new, queued or auto), without
        reading them all: random rowids, kept when they hit an unlabeled item."""
        row = self.db.execute("SELECT max(rowid) FROM items").fetchone()
        top = row[0] or 0
        unlabeled = self.db.execute(
            "SELECT count(*) FROM items WHERE status IN ('new', 'queued', 'auto')"
        ).fetchone()[0]
        if unlabeled <= 4 * size or top <= 4 * size:  # few: read them all, then sample
            rows = self._pool_rows(
                f"SELECT {self._POOL_COLUMNS} FROM items"
                " WHERE status IN ('new', 'queued', 'auto') ORDER BY rowid",
                [],
            )
            return rng.sample(rows, min(size, len(rows)))
        picked: dict[str, dict[str, Any]] = {}
        for _ in range(20):
            rowids = sorted({rng.randint(1, top) for _ in range(2 * size)})
            marks = ",".join("?" * len(rowids))
            for found in self._pool_rows(
                f"SELECT {self._POOL_COLUMNS} FROM items WHERE rowid IN ({marks})"
                " AND status IN ('new', 'queued', 'auto')",
                rowids,
            ):
                picked.setdefault(found["id"], found)
            if len(picked) >= size:
                break
        rows = list(picked.values())
        rng.shuffle(rows)
        return rows[:size]

    def unscored_ids(self, model_version: int | None) -> list[str]:
        """Unlabeled items not yet scored by ``model_version``."""
        return [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM items WHERE status IN ('new', 'queued', 'auto')"
                " AND (model_version IS NOT ? OR confidence IS NULL) ORDER BY rowid",
                [model_version],
            )
        ]

    def texts_of(self, ids: Sequence[str]) -> list[str]:
        by_id: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            by_id.update(
                self.db.execute(f"SELECT id, text FROM items WHERE id IN ({marks})", chunk)
            )
        return [by_id[i] for i in ids]

    def set_predictions(
        self, predictions: Iterable[tuple[str, int, str, float, list]], threshold: float
    ) -> int:
        """Store (id, model_version, label, confidence, ranked) for unlabeled items, in one
        transaction. An item at or above ``threshold`` becomes ``auto``; below it, ``queued``."""
        now = self.now()
        n = 0
        with self.db.atomic():
            for item_id, version, label, confidence, ranked in predictions:
                second = float(ranked[1][1]) if len(ranked) > 1 else 0.0
                cursor = self.db.execute(
                    "UPDATE items SET model_version = ?, predicted_label = ?, confidence = ?,"
                    " margin = ?, ranked = ?, updated_at = ?, status = CASE"
                    " WHEN status = 'posted' THEN status WHEN ? >= ? THEN 'auto' ELSE 'queued' END"
                    " WHERE id = ? AND status IN ('new', 'queued', 'auto', 'posted')",
                    [
                        version,
                        label,
                        confidence,
                        confidence - second,
                        json.dumps(ranked),
                        now,
                        confidence,
                        threshold,
                        item_id,
                    ],
                )
                n += cursor.rowcount
        return n

    def set_aside(self, item_id: str, reason: str) -> None:
        """Stop asking about an item Slack will not show (status skipped), and say why."""
        with self.db.atomic():
            self.db.execute(
                "UPDATE items SET status = 'skipped', updated_at = ? WHERE id = ?"
                " AND status IN ('new', 'queued', 'auto')",
                [self.now(), item_id],
            )
            self.db["runs"].insert(
                {
                    "kind": "dispatch",
                    "started_at": self.now(),
                    "finished_at": self.now(),
                    "status": "failed",
                    "triggered_by": "dispatcher",
                    "detail": json.dumps({"item_id": item_id, "reason": reason}),
                }
            )

    def open_post_counts(self) -> dict[str, int]:
        """Unanswered posts per channel."""
        return dict(
            self.db.execute(
                "SELECT channel, count(*) FROM posts WHERE closed_at IS NULL GROUP BY channel"
            ).fetchall()
        )

    def record_post(
        self,
        item_id: str,
        channel: str,
        ts: str,
        reason: str,
        model_version: int | None,
        predicted_label: str | None,
        confidence: float | None,
    ) -> int:
        """Record a question Slack has accepted (it returned ``ts``); the item is now posted."""
        now = self.now()
        with self.db.atomic():
            post = self.db["posts"].insert(
                {
                    "item_id": item_id,
                    "channel": channel,
                    "ts": ts,
                    "reason": reason,
                    "model_version": model_version,
                    "predicted_label": predicted_label,
                    "confidence": confidence,
                    "posted_at": now,
                }
            )
            self.db.execute(
                "UPDATE items SET status = 'posted', updated_at = ? WHERE id = ?", [now, item_id]
            )
        return int(post.last_pk)

    def post(self, post_id: int) -> dict[str, Any] | None:
        rows = list(self.db["posts"].rows_where("id = ?", [post_id]))
        return rows[0] if rows else None

    def post_for_item(self, item_id: str) -> dict[str, Any] | None:
        """The item's most recent post (open or closed)."""
        rows = list(
            self.db["posts"].rows_where("item_id = ?", [item_id], order_by="id desc", limit=1)
        )
        return rows[0] if rows else None

    def open_posts(self) -> list[dict[str, Any]]:
        return list(self.db["posts"].rows_where("closed_at IS NULL", order_by="id"))

    def record_answer(
        self,
        item_id: str,
        user_id: str,
        label: str | None,
        *,
        source: str,
        dedupe_key: str,
        votes_needed: int = 1,
    ) -> AnswerResult:
        """Store one answer (``label=None`` is a skip) and resolve the item when it has enough
        votes, all in one transaction, before anything is acknowledged.

        The same ``dedupe_key`` twice (a retried request) and an answer equal to the user's
        latest one (a double click) are stored once. A user's latest answer is the one that
        counts. With ``votes_needed`` n, the item resolves when one label has a majority of n
        (more than n/2 votes); it is skipped when n people skipped it.
        """
        with self._immediate():
            item = self.db.execute("SELECT status FROM items WHERE id = ?", [item_id]).fetchone()
            if item is None:
                return AnswerResult("unknown_item", item_id)
            exists = self.db.execute(
                "SELECT 1 FROM answers WHERE dedupe_key = ?", [dedupe_key]
            ).fetchone()
            if exists:
                return AnswerResult("duplicate", item_id, tally=self.tally(item_id))
            latest = self._latest_answer(item_id, user_id)
            closed = item[0] in ("resolved", "skipped")
            if latest is not None and latest == (label, source == "undo") and not closed:
                return AnswerResult("unchanged", item_id, tally=self.tally(item_id))
            now = self.now()
            self.db["answers"].insert(
                {
                    "item_id": item_id,
                    "user_id": user_id,
                    "label": label,
                    "source": source,
                    "created_at": now,
                    "dedupe_key": dedupe_key,
                }
            )
            if closed:
                return AnswerResult("closed", item_id, tally=self.tally(item_id))
            tally = self.tally(item_id)
            self._touch_post(item_id)
            winner = tally.majority(votes_needed)
            if winner is not None:
                self._resolve(item_id, winner, tally, now)
                return AnswerResult("resolved", item_id, label=winner, tally=tally)
            if len(tally.skips) >= votes_needed and not tally.votes:
                self._close(item_id, "skipped", now)
                return AnswerResult("skipped", item_id, tally=tally)
            return AnswerResult("recorded", item_id, label=label, tally=tally)

    def undo_resolution(self, item_id: str, user_id: str, since: str) -> bool:
        """Reopen an item ``user_id`` resolved at or after ``since``; their answer is retracted.

        The undo is itself an answer (source ``undo``), so history stays append-only.
        """
        with self._immediate():
            row = self.db.execute(
                "SELECT l.resolved_at, l.annotators FROM labels l WHERE l.item_id = ?", [item_id]
            ).fetchone()
            if row is None or row[0] < since or user_id not in json.loads(row[1]):
                return False
            now = self.now()
            self.db["answers"].insert(
                {
                    "item_id": item_id,
                    "user_id": user_id,
                    "label": None,
                    "source": "undo",
                    "created_at": now,
                    "dedupe_key": f"undo:{item_id}:{user_id}:{now}",
                }
            )
            self.db.execute("DELETE FROM labels WHERE item_id = ?", [item_id])
            self.db.execute(
                "UPDATE items SET status = 'posted', updated_at = ? WHERE id = ?", [now, item_id]
            )
            self.db.execute(
                "UPDATE posts SET closed_at = NULL, redraw_seq = redraw_seq + 1 WHERE id = ("
                "SELECT max(id) FROM posts WHERE item_id = ?)",
                [item_id],
            )
            return True

    def tally(self, item_id: str, through: int | None = None) -> Tally:
        """Each user's latest answer to the item (up to answer id ``through``, if given):
        votes by label, and who skipped."""
        rows = self.db.execute(
            "SELECT user_id, label, source FROM answers WHERE id IN ("
            " SELECT max(id) FROM answers WHERE item_id = ? AND source != 'import'"
            " AND id <= ? GROUP BY user_id) ORDER BY id",
            [item_id, through if through is not None else 2**62],
        ).fetchall()
        votes: dict[str, list[str]] = {}
        skips: list[str] = []
        for user_id, label, source in rows:
            if label is not None:
                votes.setdefault(label, []).append(user_id)
            elif source != "undo":
                skips.append(user_id)
        return Tally(votes=votes, skips=skips)

    def _latest_answer(self, item_id: str, user_id: str) -> tuple[str | None, bool] | None:
        row = self.db.execute(
            "SELECT label, source FROM answers WHERE item_id = ? AND user_id = ?"
            " ORDER BY id DESC LIMIT 1",
            [item_id, user_id],
        ).fetchone()
        return None if row is None else (row[0], row[1] == "undo")

    def _resolve(self, item_id: str, label: str, tally: Tally, now: str) -> None:
        voters = tally.votes[label]
        total = sum(len(users) for users in tally.votes.values())
        self.db["labels"].insert(
            {
                "item_id": item_id,
                "label": label,
                "votes": len(voters),
                "agreement": len(voters) / total,
                "annotators": json.dumps(voters),
                "resolved_at": now,
                "decided_by": self.db.execute(
                    "SELECT max(id) FROM answers WHERE item_id = ?", [item_id]
                ).fetchone()[0],
            },
            replace=True,
        )
        self._close(item_id, "resolved", now)
        # The webhook outbox is written in the same transaction as the label it reports.
        self.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at)"
            " SELECT id, callback_url, ?, ? FROM items"
            " WHERE id = ? AND callback_url IS NOT NULL AND callback_url != ''",
            [now, now, item_id],
        )

    def _close(self, item_id: str, status: str, now: str) -> None:
        self.db.execute(
            "UPDATE items SET status = ?, updated_at = ? WHERE id = ?", [status, now, item_id]
        )
        self.db.execute(
            "UPDATE posts SET closed_at = ? WHERE item_id = ? AND closed_at IS NULL",
            [now, item_id],
        )

    def _touch_post(self, item_id: str) -> None:
        self.db.execute(
            "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE id = ("
            "SELECT max(id) FROM posts WHERE item_id = ?)",
            [item_id],
        )

    def posts_to_redraw(self) -> list[dict[str, Any]]:
        return list(self.db["posts"].rows_where("redraw_seq > drawn_seq", order_by="id"))

    def mark_drawn(self, post_id: int, seq: int) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE posts SET drawn_seq = max(drawn_seq, ?) WHERE id = ?", [seq, post_id]
            )

    def resolution(self, item_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT label, votes, agreement, annotators, resolved_at, decided_by FROM labels"
            " WHERE item_id = ?",
            [item_id],
        ).fetchone()
        if row is None:
            return None
        return {
            "label": row[0],
            "votes": row[1],
            "agreement": row[2],
            "annotators": json.loads(row[3]),
            "resolved_at": row[4],
            "decided_by": row[5],
        }

    # -- the learning loop: training data, locks, models, live accuracy --

    def training_data(self) -> list[tuple[str, str, str, str]]:
        """(item id, text, label, resolved_at) of every resolved item, oldest first."""
        return self.db.execute(
            "SELECT l.item_id, i.text, l.label, l.resolved_at FROM labels l"
            " JOIN items i ON i.id = l.item_id ORDER BY l.resolved_at, l.rowid"
        ).fetchall()

    def labels_watermark(self) -> dict[str, Any]:
        """How many labels there are and the newest resolution: "anything new?" compares it."""
        n, newest = self.db.execute("SELECT count(*), max(resolved_at) FROM labels").fetchone()
        return {"n_labels": n, "newest": newest}

    def acquire_lock(self, name: str, owner: str, now: str, expires_at: str) -> str | None:
        """Take lock ``name`` unless someone else holds it unexpired; return the holder then."""
        with self._immediate():
            row = self.db.execute(
                "SELECT owner, expires_at FROM locks WHERE name = ?", [name]
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return row[0]
            self.db.execute(
                "INSERT OR REPLACE INTO locks (name, owner, acquired_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                [name, owner, now, expires_at],
            )
            return None

    def release_lock(self, name: str, owner: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", [name, owner])

    def record_model(self, meta: dict[str, Any]) -> None:
        """Mirror a registry version (and its status) into the models table."""
        row = {
            "version": meta["version"],
            "status": meta["status"],
            "created_at": meta["created_at"],
            "n_train": meta["n_train"],
            "label_set": json.dumps(meta["label_set"], ensure_ascii=False),
            "metrics": json.dumps(meta["metrics"]),
            "path": meta["model_file"],
            "sha256": meta["sha256"],
            "reason": meta.get("reason") or "",
        }
        with self.db.atomic():
            if row["status"] == "champion":
                self.db.execute(
                    "UPDATE models SET status = 'retired' WHERE status = 'champion'"
                    " AND version != ?",
                    [row["version"]],
                )
            self.db["models"].insert(row, replace=True)

    def champion_version(self) -> int | None:
        row = self.db.execute("SELECT version FROM models WHERE status = 'champion'").fetchone()
        return row[0] if row else None

    def models(self) -> list[dict[str, Any]]:
        return [
            {**m, "label_set": json.loads(m["label_set"]), "metrics": json.loads(m["metrics"])}
            for m in self.db["models"].rows_where(order_by="version")
        ]

    def last_run(self, kind: str, statuses: Sequence[str] | None = None) -> dict[str, Any] | None:
        where, args = "kind = ?", [kind]
        if statuses:
            where += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        rows = list(self.db["runs"].rows_where(where, args, order_by="id desc", limit=1))
        return {**rows[0], "detail": json.loads(rows[0]["detail"])} if rows else None

    def live_accuracy(
        self, model_version: int, reason: str, since: str | None = None
    ) -> tuple[int, int]:
        """(answered, matched): posts of ``reason`` shown with ``model_version``'s guess whose
        item people resolved, and how many of those the guess got right."""
        sql = (
            "SELECT count(*), coalesce(sum(p.predicted_label = l.label), 0) FROM posts p"
            " JOIN labels l ON l.item_id = p.item_id"
            " WHERE p.model_version = ? AND p.reason = ? AND p.predicted_label IS NOT NULL"
        )
        args: list[Any] = [model_version, reason]
        if since:
            sql += " AND p.posted_at >= ?"
            args.append(since)
        n, correct = self.db.execute(sql, args).fetchone()
        return int(n), int(correct)

    # -- what people see: stats, leaderboard, next item --

    def answers_by_user(self, since: str | None = None) -> list[tuple[str, int]]:
        """(user, answers given) since a time, most first; imports and undos not counted."""
        where = "source NOT IN ('import', 'undo')" + (" AND created_at >= ?" if since else "")
        return self.db.execute(
            f"SELECT user_id, count(*) AS n FROM answers WHERE {where}"
            " GROUP BY user_id ORDER BY n DESC, user_id LIMIT 50",
            [since] if since else [],
        ).fetchall()

    def mean_agreement(self, min_votes: int = 2) -> tuple[float | None, int]:
        """Mean agreement over labels decided by at least ``min_votes`` votes, and their number."""
        row = self.db.execute(
            "SELECT avg(agreement), count(*) FROM labels WHERE votes >= ?", [min_votes]
        ).fetchone()
        return row[0], row[1]

    def next_for_user(self, user_id: str, exclude: Sequence[str] = ()) -> str | None:
        """The next item for ``user_id`` to label in the modal: open posts they have not
        answered first (oldest first), then the queue, least confident first."""
        skip = list(exclude)
        marks = ",".join("?" * len(skip)) or "''"
        row = self.db.execute(
            "SELECT p.item_id FROM posts p JOIN items i ON i.id = p.item_id"
            " WHERE p.closed_at IS NULL AND i.status = 'posted'"
            f" AND p.item_id NOT IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id = p.item_id"
            " AND a.user_id = ?) ORDER BY p.id LIMIT 1",
            [*skip, user_id],
        ).fetchone()
        if row:
            return row[0]
        row = self.db.execute(
            "SELECT id FROM items WHERE status IN ('new', 'queued')"
            f" AND id NOT IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id = items.id"
            " AND a.user_id = ?) ORDER BY confidence IS NOT NULL, confidence, rowid LIMIT 1",
            [*skip, user_id],
        ).fetchone()
        return row[0] if row else None

    def waiting_count(self) -> int:
        return self.db.execute(
            "SELECT count(*) FROM items WHERE status IN ('new', 'queued')"
        ).fetchone()[0]

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """A write transaction that takes the lock up front (no read-then-upgrade deadlock)."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- producer API and webhooks --

    def add_api_items(self, items: Iterable[Any], source: str = "api") -> list[str]:
        """Insert items a producer sent (each with ``id``, ``text``, ``meta``, ``callback_url``)
        in one transaction; return the ids that were new, in order. Known ids are left alone."""
        now = self.now()
        created: list[str] = []
        with self._immediate():
            for item in items:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO items (id, text, meta, source, status, created_at,"
                    " updated_at, callback_url) VALUES (?, ?, ?, ?, 'new', ?, ?, ?)",
                    [
                        item.id,
                        item.text,
                        json.dumps(item.meta, ensure_ascii=False),
                        source,
                        now,
                        now,
                        item.callback_url,
                    ],
                )
                if cursor.rowcount:
                    created.append(item.id)
        return created

    def claim_due_deliveries(self, now: str, lease_until: str, limit: int) -> list[dict[str, Any]]:
        """Pending webhook deliveries due at ``now``, each with its attempt counted and hidden
        until ``lease_until`` (so a crash mid-send retries it, and no two senders share one)."""
        with self._immediate():
            rows = self.db.execute(
                "SELECT id, item_id, url, attempts FROM deliveries"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT ?",
                [now, limit],
            ).fetchall()
            for row in rows:
                self.db.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?"
                    " WHERE id = ?",
                    [lease_until, row[0]],
                )
        return [
            {"id": row[0], "item_id": row[1], "url": row[2], "attempts": row[3] + 1} for row in rows
        ]

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        *,
        error: str | None = None,
        next_attempt_at: str | None = None,
    ) -> None:
        """Record how an attempt ended: ``delivered``, ``pending`` (retry at
        ``next_attempt_at``), ``failed`` (gave up) or ``cancelled``."""
        with self.db.atomic():
            self.db.execute(
                "UPDATE deliveries SET status = ?, last_error = ?,"
                " next_attempt_at = coalesce(?, next_attempt_at) WHERE id = ?",
                [status, error, next_attempt_at, delivery_id],
            )

    def webhook_payload(self, item_id: str) -> dict[str, Any] | None:
        """What a webhook reports about a resolved item; None when it is not resolved (now)."""
        row = self.db.execute(
            "SELECT l.label, l.votes, l.resolved_at, i.predicted_label FROM labels l"
            " JOIN items i ON i.id = l.item_id WHERE l.item_id = ?",
            [item_id],
        ).fetchone()
        if row is None:
            return None
        return {
            "id": item_id,
            "label": row[0],
            "votes": row[1],
            "resolved_at": row[2],
            "model_label": row[3],
        }

    def next_delivery_at(self) -> str | None:
        """When the next pending delivery falls due (None when nothing is pending)."""
        return self.db.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'"
        ).fetchone()[0]

    def deliveries(self, item_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("item_id = ?", [item_id]) if item_id is not None else (None, [])
        return list(self.db["deliveries"].rows_where(where, args, order_by="id"))

    def metrics_counts(self) -> dict[str, Any]:
        """Counts /metrics reports: posts, deliveries by status, and runs by kind and status
        with the total duration of the finished ones."""
        posts, open_posts = self.db.execute(
            "SELECT count(*), coalesce(sum(closed_at IS NULL), 0) FROM posts"
        ).fetchone()
        deliveries = dict(
            self.db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
        )
        runs = self.db.execute(
            "SELECT kind, status, count(*), count(finished_at),"
            " coalesce(sum(round((julianday(finished_at) - julianday(started_at)) * 86400, 3)), 0)"
            " FROM runs GROUP BY kind, status ORDER BY kind, status"
        ).fetchall()
        return {
            "posts": posts,
            "open_posts": open_posts,
            "deliveries": deliveries,
            "runs": [
                {"kind": r[0], "status": r[1], "count": r[2], "finished": r[3], "seconds": r[4]}
                for r in runs
            ],
        }


def _configure(db: Database, memory: bool) -> None:
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 10000")
    if not memory:
        db.enable_wal()
        # FULL: a commit is on disk before we acknowledge anything to Slack.
        db.execute("PRAGMA synchronous = FULL")


def _json_or_none(value: str | None) -> Any:
    return json.loads(value) if value else None


def _decode_item(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["meta"] = json.loads(item["meta"] or "{}")
    item["ranked"] = json.loads(item["ranked"]) if item.get("ranked") else None
    return item
