"""When to stop: the stop set (a fixed sample of items every model update predicts) and each
update's check (its kappa with the update before on the stop set, its extrapolation).

The stop set is drawn once, from the items without a label, and kept (an item labelled later
stays in it); the draws read every such id, so they happen in a worker
thread (``bot.learning.stopping`` opens a connection of its own there). Only the newest check
keeps its predictions (up to 2,000 labels): the next update compares with them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlite_utils import Database


class StoppingMixin:
    """Methods of ``Store``; they use ``self.db`` and ``self.now``."""

    db: Database
    now: Callable[[], str]

    def stop_set(self) -> tuple[int, list[tuple[str, str]]]:
        """The stop set's draw (0: none drawn yet) and its items as ``(id, text)``, in order
        (bounded: at most the size it was drawn at)."""
        rows = self.db.execute(
            "SELECT s.draw, s.item_id, i.text FROM stop_set s JOIN items i ON i.id = s.item_id"
            " ORDER BY s.position"
        ).fetchall()
        return (rows[0][0] if rows else 0), [(i, t) for _, i, t in rows]

    def unlabeled_ids(self) -> list[str]:
        """The ids of the items without a label (waiting, asked, or left to the model), in the
        order stored (reads them all: for a worker thread)."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT id FROM items WHERE status IN ('new', 'queued', 'posted', 'auto')"
                " ORDER BY rowid"
            )
        ]

    def draw_stop_set(self, item_ids: Sequence[str]) -> int:
        """Replace the stop set with ``item_ids`` (one transaction); returns the new draw."""
        with self._immediate():
            (last,) = self.db.execute("SELECT coalesce(max(draw), 0) FROM stop_set").fetchone()
            (checked,) = self.db.execute(
                "SELECT coalesce(max(draw), 0) FROM stop_checks"
            ).fetchone()
            draw = max(last, checked) + 1
            self.db.execute("DELETE FROM stop_set")
            self.db.conn.executemany(
                "INSERT INTO stop_set (position, item_id, draw) VALUES (?, ?, ?)",
                [(n, item_id, draw) for n, item_id in enumerate(item_ids)],
            )
        return draw

    def last_stop_predictions(self) -> tuple[int, list[str]] | None:
        """The newest check's draw and predictions on the stop set, or None before any."""
        row = self.db.execute(
            "SELECT draw, predictions FROM stop_checks WHERE predictions IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def record_stop_check(
        self,
        *,
        kind: str,
        model_version: int | None,
        n_train: int,
        draw: int,
        predictions: Sequence[str],
        kappa: float | None,
        extrapolation: dict[str, Any] | None,
    ) -> None:
        """Store a model update's check; older checks drop their predictions (one transaction)."""
        with self._immediate():
            self.db.execute(
                "UPDATE stop_checks SET predictions = NULL WHERE predictions IS NOT NULL"
            )
            self.db.execute(
                "INSERT INTO stop_checks (created_at, kind, model_version, n_train, draw, n_stop,"
                " kappa, predictions, extrapolation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.now(),
                    kind,
                    model_version,
                    n_train,
                    draw,
                    len(predictions),
                    kappa,
                    json.dumps(list(predictions), ensure_ascii=False),
                    json.dumps(extrapolation) if extrapolation is not None else None,
                ],
            )

    def last_curve(self) -> dict[str, Any] | None:
        """The newest check that measured a learning curve: its kind, model version, label
        count and extrapolation (None before any, or when none fitted)."""
        row = self.db.execute(
            "SELECT kind, model_version, n_train, extrapolation FROM stop_checks"
            " WHERE extrapolation IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        kind, version, n_train, found = row
        return {"kind": kind, "model_version": version, "n_train": n_train,
                "extrapolation": json.loads(found)}  # fmt: skip

    def stop_checks(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest ``limit`` checks, oldest first, without their predictions."""
        rows = self.db.execute(
            "SELECT id, created_at, kind, model_version, n_train, draw, n_stop, kappa,"
            " extrapolation FROM stop_checks ORDER BY id DESC LIMIT ?",
            [limit],
        ).fetchall()
        keys = ("id", "created_at", "kind", "model_version", "n_train", "draw", "n_stop")
        out = []
        for row in reversed(rows):
            check = dict(zip(keys, row[:7], strict=True))
            check["kappa"] = row[7]
            check["extrapolation"] = json.loads(row[8]) if row[8] else None
            out.append(check)
        return out
