"""What people see: answers by person, agreement, the next item to label."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlite_utils import Database

from bot.store.gold import WAITING
from bot.store.queue import QueueMixin

logger = logging.getLogger("bot.store")

# An answer of a period (from ``?`` on) that counts in the answers per person: a vote or
# a skip given while its item was open (the period's partial index, m021), whose person has
# not taken it back with Undo since: the person's latest counted answer to the item is not an
# undo (undo rows are few, and read from their own index).
_IN_PERIOD = (
    "source NOT IN ('import', 'undo') AND late = 0 AND created_at >= ?"
    " AND NOT EXISTS (SELECT 1 FROM answers u WHERE u.item_id = answers.item_id"
    " AND u.user_id = answers.user_id AND u.source = 'undo' AND u.late = 0"
    " AND NOT EXISTS (SELECT 1 FROM answers v WHERE v.item_id = u.item_id"
    " AND v.user_id = u.user_id AND v.source != 'import' AND v.late = 0 AND v.id > u.id"
    " AND v.source != 'undo'))"
)

# Each person's latest answer to each item in the period (``_IN_PERIOD``), with its label (None:
# a skip): SQLite gives a bare column the values of the row ``max(id)`` picked.
_LATEST_IN_PERIOD = (
    f"SELECT user_id, label, max(id) FROM answers INDEXED BY answers_by_people WHERE {_IN_PERIOD}"
    " GROUP BY user_id, item_id"
)


class ViewsMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    gold_held_back: Callable[[], int]  # the gold mixin's

    # -- what people see: stats, leaderboard, next item --

    def answers_by_user(self, since: str | None = None) -> list[tuple[str, int]]:
        """(user, items answered) since a time, most first; imports, undos and late answers
        not counted.

        One person's answers to one item count once: a double click or a change of mind stay
        in the history, not in the count. An answer counts as the vote or skip it was: not one
        given after the item was decided or set aside (its sender was told it was not
        counted), nor one taken back with Undo (unless answered again). Since a time: the
        answers of that period, from their index; all time: the counts kept per person."""
        if not since:
            return self.db.execute(
                "SELECT user_id, n FROM answered_by_user WHERE n > 0"
                " ORDER BY n DESC, user_id LIMIT 50"
            ).fetchall()
        return self.db.execute(
            "SELECT user_id, count(DISTINCT item_id) AS n FROM answers"
            f" WHERE {_IN_PERIOD} GROUP BY user_id ORDER BY n DESC, user_id LIMIT 50",
            [since],
        ).fetchall()

    def answers_since(self, since: str) -> int:
        """How many answers were given since a time, counted as ``answers_by_user`` counts
        them (one per person and item), by everyone: not only its top 50."""
        return self.db.execute(  # one pair as one value: a range of the period's index
            f"SELECT count(DISTINCT user_id || char(31) || item_id) FROM answers"
            f" WHERE {_IN_PERIOD}",
            [since],
        ).fetchone()[0]

    def labels_by_user(self, since: str | None = None) -> list[tuple[str, int, int]]:
        """(user, items labeled, items skipped) since a time, most labels first: the answers
        ``answers_by_user`` counts, each as the person's latest answer to the item in the
        period was, a vote (a label) or a skip. The leaderboard ranks by labels, so skipping
        does not climb it. All time: the counts kept per person (m023). Since a time: the
        period's index has no label column, so each of the period's answers is read from the
        table too: call it off the event loop."""
        if not since:
            return self.db.execute(
                "SELECT user_id, labeled, n - labeled FROM answered_by_user WHERE n > 0"
                " ORDER BY labeled DESC, user_id LIMIT 50"
            ).fetchall()
        return self.db.execute(
            "SELECT user_id, sum(label IS NOT NULL) AS labeled, sum(label IS NULL) AS skipped"
            f" FROM ({_LATEST_IN_PERIOD}) GROUP BY user_id"
            " ORDER BY labeled DESC, user_id LIMIT 50",
            [since],
        ).fetchall()

    def labels_since(self, since: str | None, user_id: str | None = None) -> tuple[int, int]:
        """(labels, skips) given since a time (None: all time, from the counts kept per
        person), counted as ``labels_by_user`` counts them: by everyone (not only its top
        50), or by ``user_id``."""
        if not since:
            one = "" if user_id is None else " WHERE user_id = ?"
            labeled, answered = self.db.execute(
                f"SELECT coalesce(sum(labeled), 0), coalesce(sum(n), 0) FROM answered_by_user{one}",
                [] if user_id is None else [user_id],
            ).fetchone()
            return labeled, answered - labeled
        one = "" if user_id is None else "user_id = ? AND "
        labeled, skipped = self.db.execute(
            "SELECT coalesce(sum(label IS NOT NULL), 0), coalesce(sum(label IS NULL), 0) FROM"
            f" (SELECT label, max(id) FROM answers INDEXED BY answers_by_people"
            f" WHERE {one}{_IN_PERIOD}"
            " GROUP BY user_id, item_id)",
            [since] if user_id is None else [user_id, since],
        ).fetchone()
        return labeled, skipped

    def people_since(self, since: str) -> int:
        """How many people answered since a time (an answer counted as ``labels_by_user``
        counts them): everyone, where ``labels_by_user`` keeps 50."""
        return self.db.execute(
            f"SELECT count(DISTINCT user_id) FROM answers WHERE {_IN_PERIOD}", [since]
        ).fetchone()[0]

    def answers_of(self, user_id: str, since: str | None = None) -> int:
        """How many items ``user_id`` answered since a time (counted as ``answers_by_user``
        counts them), whether or not they are among its top 50."""
        if not since:
            row = self.db.execute(
                "SELECT n FROM answered_by_user WHERE user_id = ?", [user_id]
            ).fetchone()
            return row[0] if row else 0
        return self.db.execute(
            f"SELECT count(DISTINCT item_id) FROM answers WHERE user_id = ? AND {_IN_PERIOD}",
            [user_id, since],
        ).fetchone()[0]

    def mean_agreement(self, min_votes: int = 2) -> tuple[float | None, int]:
        """Mean agreement over labels decided by at least ``min_votes`` votes, and their number."""
        row = self.db.execute(
            "SELECT avg(agreement), count(*) FROM labels WHERE votes >= ?", [min_votes]
        ).fetchone()
        return row[0], row[1]

    def first_labelled(self) -> dict[tuple[str, str], int]:
        """When each person first gave each item a label: the id of their first counted answer
        (as ``iter_votes`` counts them: not imported, not late, not an undo) that is a label, by
        (item id, user id). Agreement on each item's first two answerers
        (``model.agreement.first_two_votes``) places a person there, not at their latest answer:
        a changed answer does not move them behind a third answer that was asked only because
        the first two disagreed. Reads every counted answer: for a worker thread or the CLI."""
        rows = self.db.execute(
            "SELECT b.item_id, b.user_id, min(b.id) FROM answers b"
            " WHERE b.source != 'import' AND b.late = 0"  # the terms of ``answers_counted``
            " AND b.label IS NOT NULL AND b.source != 'undo' GROUP BY b.item_id, b.user_id"
        )
        return {(item, user): first for item, user, first in rows}

    def next_for_user(self, user_id: str, exclude: Sequence[str] = ()) -> str | None:
        """The next item for ``user_id`` to label in the modal: open posts they have not
        answered first (oldest first), then the queue, highest priority (most uncertain) first,
        then items no model has scored yet."""
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
        # The queue as the dispatcher sees it (highest priority first), then items not scored
        # yet in the order they came; each walks the priority index and stops at the first hit.
        for status in ("queued", "new"):
            row = self.db.execute(
                "SELECT id FROM items INDEXED BY items_status_priority WHERE status = ?"
                f" AND id NOT IN ({marks})"
                " AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id = items.id"
                " AND a.user_id = ?) ORDER BY priority DESC, rowid LIMIT 1",
                [status, *skip, user_id],
            ).fetchone()
            if row:
                return row[0]
        return None

    def waiting_count(self) -> int:
        """The items waiting to be asked (``WAITING``: the queue and the gold questions), as
        `/hitl stats` counts them: not the gold questions held back while their gold label is
        retired (``gold_held_back``: they are not asked until it is added back)."""
        marks = ",".join("?" * len(WAITING))
        waiting = self.db.execute(
            f"SELECT coalesce(sum(n), 0) FROM item_counts WHERE status IN ({marks})", WAITING
        ).fetchone()[0]
        return waiting - self.gold_held_back()

    def most_uncertain_routed(
        self, labels: Collection[str], *, among: bool, limit: int, depth: int, step: int = 500
    ) -> list[dict[str, Any]]:
        """The queued items whose top guess is one of ``labels`` (``among``; else none of them,
        or no guess), highest priority first as ``most_uncertain`` gives them, up to ``limit``,
        looked for among the ``depth`` most uncertain queued items only: a channel's own window
        when the most uncertain of all are another channel's. Read ``step`` rowids at a time
        from the priority index (no row read), then those rows; it stops as soon as ``limit``
        are found, so the cost is at most ``depth`` row reads whatever the backlog."""
        columns = QueueMixin._POOL_COLUMNS
        marks = ",".join("?" * len(labels))
        if among:
            which = f"predicted_label IN ({marks})" if labels else "0"
        else:
            which = (
                f"(predicted_label IS NULL OR predicted_label NOT IN ({marks}))" if labels else "1"
            )
        found: list[dict[str, Any]] = []
        for offset in range(0, depth, step):
            rowids = [
                rowid
                for (rowid,) in self.db.execute(
                    "SELECT rowid FROM items INDEXED BY items_status_priority"
                    " WHERE status = 'queued' ORDER BY priority DESC, rowid LIMIT ? OFFSET ?",
                    [min(step, depth - offset), offset],
                )
            ]
            if not rowids:
                break
            rows = self.db.execute(
                f"SELECT {columns} FROM items WHERE rowid IN ({','.join('?' * len(rowids))})"
                f" AND {which} ORDER BY priority DESC, rowid",
                [*rowids, *labels],
            )
            names = columns.split(", ")
            found += [dict(zip(names, row, strict=True)) for row in rows]
            if len(found) >= limit or len(rowids) < step:
                break
        return found[:limit]
