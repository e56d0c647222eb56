"""What agreement and gold accuracy are computed from: each person's counted vote per item."""

from __future__ import annotations

from collections.abc import Iterator

from sqlite_utils import Database

# The counted answers (``bot.store.migrations.COUNTED``) as ``b``: the terms of the partial
# index ``answers_counted`` (SQLite uses it only when the query repeats them).
_COUNTED_B = "b.source != 'import' AND b.late = 0"


class QualityMixin:
    """Methods of ``Store``; they use ``self.db``."""

    db: Database

    def iter_votes(self) -> Iterator[tuple[str, str, str]]:
        """(item id, user id, label) of each person's latest counted answer to each item,
        when it is a label, oldest first: the votes agreement, gold accuracy and Dawid-Skene
        are measured on. Imported answers are history, not votes; an answer given while the
        item was decided or set aside (``answers.late``: ``record_answer`` found it closed and
        told its sender it was not counted) is not counted, however the item was closed (by
        votes, by skips, by an admin before anyone voted) and whether or not it has a label
        now; nor is one the person took back with Undo. One pass over the counted answers'
        index (m021)."""
        yield from self.db.execute(
            "SELECT a.item_id, a.user_id, a.label FROM answers a WHERE a.id IN ("
            f" SELECT max(b.id) FROM answers b WHERE {_COUNTED_B} GROUP BY b.item_id, b.user_id)"
            " AND a.label IS NOT NULL AND a.source != 'undo' ORDER BY a.id"
        )
