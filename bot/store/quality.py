"""What agreement and gold accuracy are computed from: each person's counted vote per item."""

from __future__ import annotations

from collections.abc import Iterator

from sqlite_utils import Database


class QualityMixin:
    """Methods of ``Store``; they use ``self.db``."""

    db: Database

    def iter_votes(self) -> Iterator[tuple[str, str, str]]:
        """(item id, user id, label) of each person's latest answer to each item, when it is a
        label, oldest first: the votes agreement is measured on. Imported answers are history,
        not votes; an answer given after its item was decided (the message then showed the
        outcome) is not counted, nor one the person took back with Undo."""
        yield from self.db.execute(
            "SELECT a.item_id, a.user_id, a.label FROM answers a WHERE a.id IN ("
            " SELECT max(b.id) FROM answers b LEFT JOIN labels l ON l.item_id = b.item_id"
            " WHERE b.source != 'import' AND (l.decided_by IS NULL OR b.id <= l.decided_by)"
            " GROUP BY b.item_id, b.user_id)"
            " AND a.label IS NOT NULL AND a.source != 'undo' ORDER BY a.id"
        )
