"""When to stop: the stop set (a fixed sample of items every model update predicts) and each
update's check (the share of the stop set it predicts otherwise than an older model, the labels
between the two, its extrapolation, its accuracy now, and for a retrain the labels its
cross-validation held out, which calibrate that accuracy for the refreshes of its model).

The stop set is drawn once, from the items without a label, and kept (an item labelled later
stays in it); the draws read every such id, so they happen in a worker
thread (``bot.learning.stopping`` opens a connection of its own there). A check keeps its
predictions (up to 2,000 labels) while a later update may still compare with it: the checks of
the stop set's draw from the newest one at or below ``keep_since`` labels on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from sqlite_utils import Database

from bot.store.migrations import UNLABELED as UNLABELED_INDEXED  # new, queued, auto

# The checks of the models that served: a retrain's candidate the gate rejected never asked or
# answered, so its check is not what `hitl accuracy`, App Home or the next refresh go by (a
# month's test: a champion's report forecast with a rejected candidate's learning curve).
SERVED = (
    "NOT (kind = 'retrain' AND model_version IN"
    " (SELECT version FROM models WHERE status = 'rejected'))"
)


# How ``stop_checks``/``last_curve`` choose checks: ``True``, the model served now (``_now``);
# ``"ever"``, every model that served (``SERVED``); ``False``, every check
Served = bool | Literal["ever"]


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

    def last_item_rowid(self) -> int:
        """The rowid of the newest item (0: none), read before a draw's ids."""
        return self.db.execute("SELECT coalesce(max(rowid), 0) FROM items").fetchone()[0]

    def arrived_since_draw(self) -> int:
        """How many items without a label arrived after the stop set was drawn (so none of
        them is in it), counted on the unlabeled items' index from the newest item of the
        draw on: the work grows with the arrivals, not with the items. 0 with no stop set."""
        draw = self.db.execute("SELECT max(draw) FROM stop_set").fetchone()[0]
        if draw is None:
            return 0
        found = self.db.execute(
            "SELECT last_rowid FROM stop_draws WHERE draw = ?", [draw]
        ).fetchone()
        last = (
            found[0]
            if found
            else self.db.execute(  # a draw from before m029
                "SELECT coalesce(max(i.rowid), 0) FROM stop_set s JOIN items i ON i.id = s.item_id"
            ).fetchone()[0]
        )
        return self.db.execute(
            f"SELECT count(*) FROM items INDEXED BY items_unlabeled"
            f" WHERE {UNLABELED_INDEXED} AND ({UNLABELED_INDEXED}) = 1 AND rowid > ?",
            [last],
        ).fetchone()[0]

    def draw_stop_set(self, item_ids: Sequence[str], last_rowid: int | None = None) -> int:
        """Replace the stop set with ``item_ids`` (one transaction), drawn from the items up
        to rowid ``last_rowid`` (None: the newest now); returns the new draw."""
        if last_rowid is None:
            last_rowid = self.last_item_rowid()
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
            self.db.execute(
                "INSERT OR REPLACE INTO stop_draws (draw, drawn_at, last_rowid) VALUES (?, ?, ?)",
                [draw, self.now(), last_rowid],
            )
        return draw

    def stop_predictions(
        self, draw: int, item_ids: Sequence[str] | None = None
    ) -> list[tuple[int, list[Any]]]:
        """The label counts and stop-set predictions of the checks that keep them, oldest
        first (a handful: ``record_stop_check`` drops the rest), of the models that served: an
        update compares with what asked, not with a candidate the gate rejected. Without
        ``item_ids``, the checks of ``draw``, their predictions in the order they were made.
        With them (the stop set's items now, in order), the checks of every draw kept, each
        looked up by item: a list in the order of ``item_ids``, None for an item the model did
        not predict (not in its draw); a check stored as a bare list (before predictions were
        kept by item) only when of ``draw`` and as long."""
        if item_ids is None:
            rows = self.db.execute(
                "SELECT n_train, predictions FROM stop_checks WHERE predictions IS NOT NULL"
                f" AND draw = ? AND {SERVED} ORDER BY id",
                [draw],
            ).fetchall()
            out = []
            for n, predictions in rows:
                found = json.loads(predictions)
                out.append((n, list(found.values()) if isinstance(found, dict) else found))
            return out
        rows = self.db.execute(
            "SELECT n_train, draw, predictions FROM stop_checks WHERE predictions IS NOT NULL"
            f" AND {SERVED} ORDER BY id"
        ).fetchall()
        kept: list[tuple[int, list[Any]]] = []
        for n, of, predictions in rows:
            found = json.loads(predictions)
            if isinstance(found, dict):
                kept.append((n, [found.get(item_id) for item_id in item_ids]))
            elif of == draw and len(found) == len(item_ids):
                kept.append((n, found))
        return kept

    def record_stop_check(
        self,
        *,
        kind: str,
        model_version: int | None,
        n_train: int,
        draw: int,
        predictions: Sequence[str],
        changed: float | None,
        span: int | None,
        extrapolation: dict[str, Any] | None,
        keep_since: int,
        accuracy: dict[str, Any] | None = None,
        curve: bool | None = None,
        base_version: int | None = None,
        dropped: bool | None = None,
        item_ids: Sequence[str] | None = None,
    ) -> None:
        """Store a model update's check (one transaction). Older checks drop their
        predictions unless a later update may compare with them: of the checks of models that
        served, the newest at or below ``keep_since`` labels and every one above, of any draw
        (a draw keeps the items of the one before still without a label, and the predictions
        are compared by item), a rejected candidate's dropped (nothing compares with them).
        With ``item_ids`` (the stop set's items, in the order of ``predictions``) the
        predictions are kept by item, so a later draw can still be compared on the items it
        kept; without, as a list (only the same draw can use it).

        ``curve``: whether the update measured a learning curve (its forecast, when refused,
        is None: "no forecast" for this model, not "not measured"). For a refresh, whose it
        is (``_served``): ``base_version``, the champion it was refreshed from, and
        ``dropped``, whether it was dropped because the champion changed while it fitted;
        with them the run that made the champion now (``_champion_run``) is recorded.
        ``dropped`` None: not known (whose it is then goes by the time it was recorded)."""
        with self._immediate():
            base_run = None
            if kind == "refresh" and dropped is not None:
                made = self._champion_run()
                base_run = made[0] if made is not None else 0
            self.db.execute(
                "INSERT INTO stop_checks (created_at, kind, model_version, n_train, draw, n_stop,"
                " changed, span, predictions, extrapolation, accuracy, curve, base_version,"
                " base_run, dropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.now(),
                    kind,
                    model_version,
                    n_train,
                    draw,
                    len(predictions),
                    changed,
                    span,
                    json.dumps(
                        dict(zip(item_ids, predictions, strict=True))
                        if item_ids is not None and len(item_ids) == len(predictions)
                        else list(predictions),
                        ensure_ascii=False,
                    ),
                    json.dumps(extrapolation) if extrapolation is not None else None,
                    json.dumps(accuracy) if accuracy is not None else None,
                    None if curve is None else int(curve),
                    base_version if base_run is not None else None,
                    base_run,
                    None if base_run is None else int(bool(dropped)),
                ],
            )
            oldest_kept = self.db.execute(
                "SELECT max(id) FROM stop_checks WHERE predictions IS NOT NULL"
                f" AND n_train <= ? AND {SERVED}",
                [keep_since],
            ).fetchone()[0]
            # a bare list (not kept by item) of another draw is of no use to anyone
            self.db.execute(
                "UPDATE stop_checks SET predictions = NULL WHERE predictions IS NOT NULL"
                " AND ((draw != ? AND predictions LIKE '[%') OR (n_train <= ? AND id < ?)"
                f" OR NOT {SERVED})",
                [draw, keep_since, oldest_kept or 0],
            )

    def _champion_run(self) -> tuple[int, str] | None:
        """The id and end of the newest run that made a champion (a promoted retrain, a
        rollback), by the order runs were made in, not by their time (None: none)."""
        return self.db.execute(
            "SELECT id, finished_at FROM runs WHERE ((kind = 'retrain' AND status = 'promoted')"
            " OR (kind = 'rollback' AND status = 'ok')) AND finished_at IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def _served(self, served: Served) -> tuple[str, list[Any]]:
        """The SQL condition (and its arguments) on stop_checks of ``served`` (``Served``).

        The model served now is the champion until a refresh is adopted, and a refresh asks
        from its champion's making on (a promotion or rollback ends it): the champion's own
        retrain check, and the checks of the refreshes fitted from it since the newest run
        that made it champion (a promoted retrain or a rollback, by the order runs were made
        in) and kept. Whose a refresh's check is goes by identity, recorded with it
        (``record_stop_check``): the champion it was refreshed from, that run, and whether it
        was dropped because the champion changed while it fitted. After ``hitl rollback 1``
        that is v1's check, not the newer v2's nor its refreshes' (an outside test: "Model v1"
        over v2's "When to stop" and "learning curve of v2"), even the check of a refresh of
        v2 that the rollback dropped, recorded after it, or one recorded by a clock that ran
        ahead. A check from before m036 (none of that recorded) counts when recorded since
        that run ended, by time. With no champion the refreshes' checks all count; with no
        run that made it, those of refreshes fitted from it (from before m036: all)."""
        if served == "ever":
            return SERVED, []
        if not served:
            return "1", []
        found = self.db.execute("SELECT version FROM models WHERE status = 'champion'").fetchone()
        if found is None:
            return SERVED, []
        made = self._champion_run()
        run_id, since = made if made is not None else (0, None)
        kept = "(base_run = ? AND base_version IS ? AND dropped = 0)"
        before = "1" if since is None else "created_at >= ?"
        return (
            "((kind = 'retrain' AND model_version = ?) OR (kind = 'refresh' AND"
            f" (CASE WHEN base_run IS NULL THEN {before} ELSE {kept} END)))",
            [found[0], *([] if since is None else [since]), run_id, found[0]],
        )

    def last_curve(self, *, served: Served = False) -> dict[str, Any] | None:
        """The newest check that measured a learning curve: its kind, model version, label
        count, extrapolation (None when its forecast was refused: a step, a range of zero
        width; not an older check's then) and, a refresh's, the champion it was refreshed
        from (``base_version``), or None before any. ``served``: True, only the checks of the
        model served now (``_served``); ``"ever"``, of every model that served (``SERVED``),
        not a rejected candidate's."""
        where, args = self._served(served)
        row = self.db.execute(
            "SELECT kind, model_version, n_train, extrapolation, base_version FROM stop_checks"
            f" WHERE (extrapolation IS NOT NULL OR curve = 1) AND {where}"
            " ORDER BY id DESC LIMIT 1",
            args,
        ).fetchone()
        if row is None:
            return None
        kind, version, n_train, found, base = row
        return {"kind": kind, "model_version": version, "n_train": n_train,
                "extrapolation": json.loads(found) if found else None,
                "base_version": base}  # fmt: skip

    def model_accuracy(self, version: int | None) -> float | None:
        """The cross-validated accuracy recorded for model ``version`` (its metrics'
        ``accuracy``; None: no such model, or not evaluated)."""
        if version is None:
            return None
        row = self.db.execute(
            "SELECT json_extract(metrics, '$.accuracy') FROM models WHERE version = ?", [version]
        ).fetchone()
        if row is None or not isinstance(row[0], int | float):
            return None
        return float(row[0])

    def asked_count(self, limit: int) -> int:
        """How many questions a model asked with a guess people answered, counted up to
        ``limit``: a bounded read. (Accuracy now was calibrated on them before the held-out
        labels: a check stored then, refused for too few, says today's count.)"""
        (n,) = self.db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM posts p JOIN labels l ON l.item_id = p.item_id"
            " WHERE p.confidence IS NOT NULL AND p.predicted_label IS NOT NULL LIMIT ?)",
            [limit],
        ).fetchone()
        return int(n)

    def stop_checks(self, limit: int = 10, *, served: Served = False) -> list[dict[str, Any]]:
        """The newest ``limit`` checks, oldest first, without their predictions. ``served``:
        True, only the checks of the model served now (``_served``); ``"ever"``, of every
        model that served (``SERVED``)."""
        where, args = self._served(served)
        rows = self.db.execute(
            "SELECT id, created_at, kind, model_version, n_train, draw, n_stop, changed, span,"
            " extrapolation, accuracy, (SELECT drawn_at FROM stop_draws d"
            f" WHERE d.draw = stop_checks.draw) FROM stop_checks WHERE {where}"
            " ORDER BY id DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
        keys = ("id", "created_at", "kind", "model_version", "n_train", "draw", "n_stop")
        keys += ("changed", "span")
        out = []
        for row in reversed(rows):
            check = dict(zip(keys, row[:9], strict=True))
            check["extrapolation"] = json.loads(row[9]) if row[9] else None
            check["accuracy"] = json.loads(row[10]) if row[10] else None
            check["drawn_at"] = row[11]  # when its stop set was drawn (None: not recorded)
            out.append(check)
        return out

    def stop_set_unlabeled(self) -> list[bool]:
        """Per stop-set item, in order: whether it is still without a label."""
        return [
            bool(r[0])
            for r in self.db.execute(
                "SELECT i.status IN ('new', 'queued', 'posted', 'auto') FROM stop_set s"
                " JOIN items i ON i.id = s.item_id ORDER BY s.position"
            )
        ]

    def held_out_pairs(self, version: int | None) -> tuple[list[float], list[bool]] | None:
        """The labels model ``version``'s retrain held out in cross-validation, as its check
        stored them: each one's confidence and whether the guess was right (None: no such
        check, or one stored before they were). A refresh of that champion calibrates its
        accuracy now on them (``bot.learning.stopping.compute_stop``)."""
        if version is None:
            return None
        row = self.db.execute(
            "SELECT json_extract(accuracy, '$.held_out') FROM stop_checks WHERE kind = 'retrain'"
            " AND model_version = ? AND json_extract(accuracy, '$.held_out') IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            [version],
        ).fetchone()
        if row is None:
            return None
        found = json.loads(row[0])
        return [float(c) for c in found["confidence"]], [bool(r) for r in found["right"]]

    def rejected_in_a_row(self) -> tuple[int, str | None]:
        """The retrains rejected since the champion was made, and when it was made (the newest
        retrain that promoted a model or rollback that made one champion; None: none
        recorded). Failed retrains, and ones with nothing new, do not count."""
        # the newest by the order runs were made in, not by their time: a promotion stamped
        # by a clock that ran ahead stayed "newest" after rollbacks made once it was set right
        made = self.db.execute(
            "SELECT id, finished_at FROM runs WHERE (kind = 'retrain' AND status = 'promoted')"
            " OR (kind = 'rollback' AND status = 'ok') ORDER BY id DESC LIMIT 1"
        ).fetchone()
        run_id, since = made if made is not None else (0, None)
        (rejected,) = self.db.execute(
            "SELECT count(*) FROM runs WHERE kind = 'retrain' AND status = 'rejected' AND id > ?",
            [run_id],
        ).fetchone()
        return int(rejected), since
