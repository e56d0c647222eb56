"""The queue: scoring, posting, answering, resolving, redrawing.

Its length (~500 lines) is the life of an item in the queue (scored, posted, answered,
resolved, redrawn), each a few SQL statements over the same tables and indexes; answers and
labels changed by admins live in ``labels.py``, reviews in ``reviews.py``, gold in ``gold.py``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Collection, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlite_utils import Database

from bot.store.erasure import LOST
from bot.store.labelset import top_in_force
from bot.store.migrations import UNLABELED
from bot.store.records import AnswerResult, Tally, insert_row, json_or_none, select_rows
from bot.store.reviews import ReviewRules

logger = logging.getLogger("bot.store")
T = TypeVar("T")

# An item taken back with answers waits to be asked again with one of these statuses
# (``_take_back_all``); with ``posted``, the items whose answers ``decide_answered`` reads.
WAITING_AGAIN = "'new', 'queued', 'auto', 'gold'"
OPEN_STATUSES = ("posted", "new", "queued", "auto", "gold")
# An item nobody has answered yet (no counted answer), read by its id from answers_counted:
# only such an item is left to the model (``auto``) when its confidence is at or above
# HITL_THRESHOLD; one people have started answering waits for them (``rethreshold_step``).
UNANSWERED = (
    "NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id = items.id AND a.source != 'import'"
    " AND a.late = 0)"
)

# An item the person (the next ``?``) has not answered, for the labeling window: no answer of
# theirs on ``item``, or their latest one an Undo (``undo_resolution``, ``_reopen_answers``:
# nothing of theirs counts, and the reopened question takes their click). By answers_item.
# Whether the person (the next ``?``) has not answered item ``{item}`` (an SQL expression):
# no answer of theirs, or their latest an Undo. Read by id from the answers' index.
NOT_ANSWERED = (
    "NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id = {item} AND a.user_id = ?"
    " AND a.source != 'undo' AND NOT EXISTS (SELECT 1 FROM answers b"
    " WHERE b.item_id = a.item_id AND b.user_id = a.user_id AND b.id > a.id))"
)


def _votes_of(item: str, at: str | None = None) -> str:
    """The SQL terms on ``answers a`` of the votes in item ``item``'s tally (an SQL
    expression): each person's latest counted answer, when it is a label (not a skip, not an
    Undo). With ``at`` (an SQL expression), as the tally stood then: the answers given by
    then. Read by the item's id from ``answers_counted``."""
    then_a = f" AND a.created_at <= {at}" if at else ""
    then_b = f" AND b.created_at <= {at}" if at else ""
    return (
        f"a.item_id = {item} AND a.source != 'import' AND a.late = 0 AND a.label IS NOT NULL"
        f"{then_a} AND a.id = (SELECT max(b.id) FROM answers b WHERE b.item_id = a.item_id"
        f" AND b.user_id = a.user_id AND b.source != 'import' AND b.late = 0{then_b})"
    )


@dataclass(frozen=True)
class Undo:
    """What ``undo_resolution`` did: ``label`` is the label it took away (true: undone), or,
    refused, why: ``late`` (the window passed), ``not_yours`` (no label of theirs to undo),
    ``undone`` (they undid it already: a second click on the same Undo; the question is
    open), ``decided_again`` (the Undo's decision was undone and the item decided again since,
    by ``label``: not the decision this Undo was offered for) or ``changed`` (``changed_by``
    changed the label since, or ``kept`` it as it was:
    confirmed it; ``label`` is the label now)."""

    label: str | None
    refused: str | None = None
    changed_by: str | None = None
    kept: bool = False
    # undone: its question is open again (False: the question had been taken back, unanswered
    # past HITL_QUESTION_TTL or moved out of a channel no longer asked in, or there was none:
    # ``posted`` False, decided in the labeling window; the item waits in the queue)
    reopened: bool = True
    posted: bool = True  # the item had a question in Slack (not decided in the window alone)

    def __bool__(self) -> bool:
        return self.refused is None


class QueueMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now``, ``self._immediate`` and
    ``self._unsynced``."""

    db: Database
    now: Callable[[], str]
    review_after_answer: Callable[..., None]
    flag_split: Callable[..., None]  # the reviews mixin's
    _review_gold_miss: Callable[..., None]
    label_aliases: Callable[[], dict[str, str]]  # the label set mixin's
    retired_labels: Callable[[], set[str]]
    _queue_taken_back: Callable[[str, str], None]  # the producer mixin's
    _queue_label: Callable[[str, str], None]  # the producer mixin's
    _queue_restated: Callable[[list[int], list[int], str], None]  # the producer mixin's

    # -- the queue: scoring, posting, answering --

    _POOL_COLUMNS = "id, text, status, model_version, predicted_label, confidence, priority"
    """What the dispatcher chooses by. The model's ranked guesses (JSON) are left out of the
    rows it chooses among (600 a round) and read for the few it posts (``prediction``):
    decoding them was about half of reading the window."""

    def pool(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Unlabeled items that may be asked about (new, queued or auto), oldest first, with
        their ranked guesses: every one of them, so not for a hot path (the dispatcher reads
        ``most_uncertain`` and ``sample_unlabeled``); for the CLI, tests and benchmarks."""
        columns = [*self._POOL_COLUMNS.split(", "), "ranked"]
        rows = self.db.execute(
            f"SELECT {self._POOL_COLUMNS}, ranked FROM items"
            " WHERE status IN ('new', 'queued', 'auto') ORDER BY rowid"
            + (" LIMIT ?" if limit else ""),
            [int(limit)] if limit else [],
        )
        return [
            {**dict(zip(columns, row, strict=True)), "ranked": json_or_none(row[-1])}
            for row in rows
        ]

    def _pool_rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        """The rows of ``sql`` (selecting ``_POOL_COLUMNS``) as dicts. Written out as a dict
        display: at 600 rows a dispatcher round, ``dict(zip(columns, row))`` was a third of
        reading the window (the dispatcher runs on the event loop before every post)."""
        return [
            {
                "id": item_id,
                "text": text,
                "status": status,
                "model_version": version,
                "predicted_label": label,
                "confidence": confidence,
                "priority": priority,
            }
            for item_id, text, status, version, label, confidence, priority in self.db.execute(
                sql, list(args)
            )
        ]

    def prediction(self, item_id: str) -> dict[str, Any]:
        """The item's stored prediction as the question shows it: its model version, label and
        ranked guesses (None where it has none)."""
        row = self.db.execute(
            "SELECT model_version, predicted_label, ranked FROM items WHERE id = ?", [item_id]
        ).fetchone()
        version, label, ranked = row if row is not None else (None, None, None)
        return {"model_version": version, "predicted_label": label, "ranked": json_or_none(ranked)}

    def most_uncertain(self, limit: int) -> list[dict[str, Any]]:
        """The scored items waiting for people, highest priority (most uncertain under the
        strategy they were scored with) first, read from an index."""
        return self._pool_rows(
            f"SELECT {self._POOL_COLUMNS} FROM items INDEXED BY items_status_priority"
            " WHERE status = 'queued' ORDER BY priority DESC, rowid LIMIT ?",
            [limit],
        )

    def queued_of(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Of ``ids`` (at most a few hundred: one statement), the items waiting for people,
        highest priority first, as ``most_uncertain`` gives them."""
        if not ids:
            return []
        return self._pool_rows(
            f"SELECT {self._POOL_COLUMNS} FROM items WHERE id IN ({','.join('?' * len(ids))})"
            " AND +status = 'queued' ORDER BY priority DESC, rowid",  # by id (``unscored_of``)
            list(ids),
        )

    def unlabeled_of(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Of ``ids`` (a TypiClust order: at most a few hundred, one statement), the items still
        unlabeled and not asked (new, queued or auto), in the order of ``ids``."""
        if not ids:
            return []
        found = {
            row["id"]: row
            for row in self._pool_rows(
                f"SELECT {self._POOL_COLUMNS} FROM items WHERE id IN ({','.join('?' * len(ids))})"
                " AND +status IN ('new', 'queued', 'auto')",
                list(ids),
            )
        }
        return [found[item_id] for item_id in dict.fromkeys(ids) if item_id in found]

    def covered_texts(self, limit: int) -> list[str]:
        """The texts of at most ``limit`` items people answered or are asked (resolved or
        posted), from the status index: the clusters TypiClust counts as covered."""
        return [
            text
            for (text,) in self.db.execute(
                "SELECT text FROM items INDEXED BY items_status_priority"
                " WHERE status IN ('resolved', 'posted') LIMIT ?",
                [int(limit)],
            )
        ]

    def sample_unlabeled(self, size: int, rng: random.Random) -> list[dict[str, Any]]:
        """A uniform random sample of the unlabeled items (new, queued or auto), without
        reading them all: random rowids, kept when they hit an unlabeled item (their rowids
        and ids only: about twice the sample is hit, and only the rows kept are read, by
        rowid). When few hit (under 1 in 40: most items are labeled), the sample is drawn from
        the unlabeled items' rowids, read from their partial index (no text, no JSON), and only
        the chosen rows are read. The dispatcher calls this on the event loop before every
        post."""
        rowids, ids = _run(self._sample_rowids(size, rng, 2 * size))  # one statement a draw
        if ids is None:  # drawn from the index
            sample: list[dict[str, Any]] = []
            for start in range(0, len(rowids), 500):
                part = rowids[start : start + 500]
                sample += self._pool_rows(
                    f"SELECT {self._POOL_COLUMNS} FROM items"
                    f" WHERE rowid IN ({','.join('?' * len(part))})",
                    part,
                )
            rng.shuffle(sample)
            return sample
        found = {
            row["id"]: row
            for row in self._pool_rows(
                f"SELECT {self._POOL_COLUMNS} FROM items"
                f" WHERE rowid IN ({','.join('?' * len(rowids))})",
                rowids,
            )
        }
        # one deleted or decided by another process between the two reads is left out
        return [found[item_id] for item_id in ids if item_id in found]

    def sample_unlabeled_steps(
        self, size: int, rng: random.Random, step: int
    ) -> Generator[None, None, list[int]]:
        """The rowids of ``sample_unlabeled``'s sample (the same draws), one statement of at
        most ``step`` rowids at a time: a generator that yields between statements and returns
        the rowids, for a caller that lets the loop's other work run between them and reads
        the rows a step at a time too (``unlabeled_at``): TypiClust's 10,000
        (``bot.learning.typical``)."""
        rowids, _ = yield from self._sample_rowids(size, rng, step)
        return rowids

    def unlabeled_at(self, rowids: Sequence[int]) -> list[dict[str, Any]]:
        """The items at ``rowids`` (at most a few hundred: one statement) still unlabeled, as
        the dispatcher's pool rows."""
        if not rowids:
            return []
        return self._pool_rows(
            f"SELECT {self._POOL_COLUMNS} FROM items WHERE rowid IN ({','.join('?' * len(rowids))})"
            " AND +status IN ('new', 'queued', 'auto')",  # by rowid, not the status index
            list(rowids),
        )

    def _sample_rowids(
        self, size: int, rng: random.Random, step: int
    ) -> Generator[None, None, tuple[list[int], list[str] | None]]:
        """``sample_unlabeled``'s draw: the rowids of the sample and, when drawn by random
        rowids, their ids (in that order); None when drawn from the index (in draw order).
        Yields before each statement after the first, of at most ``step`` rowids."""
        top = self.db.execute("SELECT max(rowid) FROM items").fetchone()[0] or 0
        picked: dict[int, str] = {}  # the unlabeled items hit, rowid: id, in the order found
        drawn = 0
        while top > 4 * size and len(picked) < size and drawn < 40 * size:
            hits: set[int] = set()
            for start in range(0, 2 * size, step):  # the draws too, ``step`` at a time
                if start:
                    yield
                hits.update(rng.randint(1, top) for _ in range(min(step, 2 * size - start)))
            yield
            rowids = sorted(hits)
            drawn += len(rowids)
            # the rowids alone: about twice the sample is hit, and only the rows kept are read
            for start in range(0, len(rowids), step):
                if start:
                    yield
                part = rowids[start : start + step]
                picked.update(
                    self.db.execute(
                        "SELECT rowid, id FROM items NOT INDEXED"
                        f" WHERE rowid IN ({','.join('?' * len(part))})"
                        " AND status IN ('new', 'queued', 'auto')",
                        part,
                    )
                )
            if drawn >= 4 * size and len(picked) * 40 < drawn:
                break  # under 1 in 40 unlabeled: the draws would run out before the sample
        if len(picked) < size:
            if drawn:
                yield
            rowids = [
                rowid
                for (rowid,) in self.db.execute(
                    f"SELECT rowid FROM items INDEXED BY items_unlabeled WHERE {UNLABELED}"
                    f" AND ({UNLABELED}) = 1"
                ).fetchall()
            ]
            return rng.sample(rowids, min(size, len(rowids))), None
        kept = list(picked)
        rng.shuffle(kept)
        kept = kept[:size]
        return kept, [picked[rowid] for rowid in kept]

    def unscored_chunk(
        self, model_version: int, strategy: str, after: int, limit: int
    ) -> tuple[list[tuple[str, str]], int | None]:
        """One bounded step of a walk over the unlabeled items in rowid order: the next
        ``limit`` of them after rowid ``after`` (read from the ``items_unlabeled`` index), and
        of those the ones not scored by ``model_version`` under ``strategy`` as (id, text).
        Returns them with the last rowid read, where the next step starts (None when nothing
        is left after ``after``). The work does not grow with the number of items."""
        rows = self.db.execute(
            "SELECT rowid, id, CASE WHEN model_version IS ? AND strategy IS ?"
            " AND priority IS NOT NULL THEN NULL ELSE text END"
            f" FROM items INDEXED BY items_unlabeled WHERE {UNLABELED} AND ({UNLABELED}) = 1"
            " AND rowid > ? ORDER BY rowid LIMIT ?",
            [model_version, strategy, after, limit],
        ).fetchall()
        if not rows:
            return [], None
        return [(item_id, text) for _, item_id, text in rows if text is not None], rows[-1][0]

    # An item people decided with a label retired since: one point read of its label (the
    # labels table by its key, the label set by its name), for an item already found by id.
    _RETIRED_DECISION = (
        "(+status = 'resolved' AND EXISTS (SELECT 1 FROM labels l JOIN label_set s"
        " ON s.name = l.label WHERE l.item_id = items.id AND s.status = 'retired'))"
    )

    def unscored_of(
        self, ids: Sequence[str], model_version: int, strategy: str
    ) -> list[tuple[str, str]]:
        """Of ``ids``, the unlabeled items not scored by ``model_version`` under ``strategy``,
        as (id, text), in the order given; a question open in Slack too (posted before the
        first model, it had no prediction for a producer who asked), and an item decided with
        a label retired since (``_RETIRED_DECISION``: it waits in review, and the producer API
        answers the model's label in force, which an item labeled before any model, as an
        import's, never had). Found by id: ``+status`` keeps SQLite from the status index,
        which from 10 ids on it took, reading every queued item (2 s at a million, on the
        event loop, for a POST /api/items of 10 items or more)."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            found.update(
                self.db.execute(
                    f"SELECT id, text FROM items WHERE id IN ({','.join('?' * len(chunk))})"
                    f" AND (+{UNLABELED} OR +status = 'posted' OR {self._RETIRED_DECISION})"
                    " AND (model_version IS NOT ? OR strategy IS NOT ?"
                    " OR priority IS NULL)",
                    [*chunk, model_version, strategy],
                )
            )
        return [(i, found[i]) for i in ids if i in found]

    def unscored_count(self, model_version: int | None, strategy: str) -> int:
        """Unlabeled items not scored by ``model_version`` under ``strategy`` (reads every
        unlabeled item: for the CLI, tests and benchmarks, not a hot path)."""
        return self.db.execute(
            f"SELECT count(*) FROM items WHERE {UNLABELED} AND (model_version IS NOT ?"
            " OR strategy IS NOT ? OR priority IS NULL)",
            [model_version, strategy],
        ).fetchone()[0]

    def set_predictions(
        self,
        predictions: Iterable[tuple[str, int, str, float, list, float]],
        threshold: float,
        strategy: str,
        *,
        tell_new: bool = False,
    ) -> int:
        """Store (id, model_version, label, confidence, ranked, priority) for unlabeled items
        (and for an item decided with a label retired since, whose status and ``updated_at``
        stay: it is scored only for the producer API, ``unscored_of``), in one transaction,
        with the ``strategy`` the priorities were computed under. The label and confidence
        stored are those of the best label in force in ``ranked`` (the model's top guesses:
        ``bot.store.labelset.in_force``), read in the transaction: a label retired, renamed or
        merged since the model was trained never lends its probability to another. An item
        whose confidence is at or above ``threshold`` becomes ``auto``, unless people have
        started answering it (a counted answer: it waits for them, as
        ``rethreshold_step`` keeps it); below it, ``queued``. An item left to the model that
        waited for people (``queued``; with ``tell_new``, also one never scored: ``new``, as
        a producer whose request did not score it was told) gets its webhook
        (``_queue_settled``: one read of the statuses before, one INSERT after). Returns the
        number of items written. Not worth an fsync: predictions lost in a crash are made
        again."""
        now = self.now()
        n = 0
        predictions = list(predictions)
        waited = ("queued", "new") if tell_new else ("queued",)
        with self._unsynced():  # predictions are made again if lost
            aliases, retired = self.label_aliases(), self.retired_labels()
            waiting = [
                rowid
                for (rowid,) in self.db.execute(
                    "SELECT rowid FROM items WHERE id IN (SELECT value FROM json_each(?))"
                    f" AND +status IN ({', '.join('?' * len(waited))})",
                    [json.dumps([p[0] for p in predictions]), *waited],
                )
            ]
            for item_id, version, label, confidence, ranked, priority in predictions:
                guesses = ranked or ([(label, confidence)] if label is not None else [])
                label, confidence = top_in_force(guesses, aliases, retired)
                cursor = self.db.execute(
                    "UPDATE items SET model_version = ?, predicted_label = ?, confidence = ?,"
                    " priority = ?, strategy = ?, ranked = ?,"
                    # a decided item scored for the producer API only: not changed by that
                    " updated_at = CASE WHEN status = 'resolved' THEN updated_at ELSE ? END,"
                    " status = CASE"
                    " WHEN status IN ('posted', 'resolved') THEN status WHEN ? >= ? AND"
                    f" {UNANSWERED} THEN 'auto' ELSE 'queued' END"
                    " WHERE id = ? AND (status IN ('new', 'queued', 'auto', 'posted')"
                    f" OR {self._RETIRED_DECISION})",
                    [
                        version,
                        label,
                        confidence,
                        priority,
                        strategy,
                        json.dumps(ranked),
                        now,
                        confidence,
                        threshold,
                        item_id,
                    ],
                )
                n += cursor.rowcount
            if n:
                self._statuses_made_under(threshold)
            self._queue_settled(waiting, now)  # those now auto: their producers hear it
        return n

    def last_rowid(self) -> int:
        """The newest item's rowid (0 with none): where a pass in rowid order ends, for a
        progress bar. One step down the table's b-tree."""
        return self.db.execute("SELECT max(rowid) FROM items").fetchone()[0] or 0

    # An item's ``ranked`` when its stored prediction may not be the best label in force
    # (NULL otherwise: not scored, or its label is the model's first guess and still in force,
    # which ``set_predictions`` stored with that guess's own probability). Read by SQLite from
    # the JSON, so a step parses only the few items a change moves.
    _MAY_MOVE = (
        "CASE WHEN confidence IS NOT NULL AND (ranked IS NULL"
        " OR json_extract(ranked, '$[0][0]') IS NOT predicted_label OR predicted_label IN"
        " (SELECT name FROM label_set WHERE status = 'retired'"
        " UNION SELECT old FROM label_aliases))"
        " THEN coalesce(ranked, '[]') END"
    )

    def restate_predictions(
        self, after: int, limit: int, threshold: float, max_changes: int = 50
    ) -> tuple[int, int | None]:
        """One bounded step of the pass that puts the stored predictions under the label set
        in force after it changed (``bot.store.labelset``; a change touches no item row): the
        next ``limit`` unlabeled items after rowid ``after`` (the ``items_unlabeled`` index, as
        a walk reads them), each given the best label in force in its ``ranked`` and that
        label's own probability (``top_in_force``, as ``set_predictions`` stores them). An item
        whose stored label or confidence moves is ``auto`` at or above ``threshold`` and
        ``queued`` below it (a model-decided item whose label was retired waits for people; a
        label added back takes its items back; one people have started answering waits for
        them), as ``set_predictions`` decides; one whose
        prediction stays is left alone. The step stops after ``max_changes`` changed items, so
        its transaction (short, unsynced like ``set_predictions``: lost, the pass is run again)
        holds the write lock for a bounded time at any number of items. The priority stays:
        it is the model's, from its full probabilities, which a label change does not move
        (scoring the item again would store the same). Once past the last unlabeled item, the
        open questions' items (``posted``, a few) are put under the set too, their status kept.
        An item that waited for people (``queued``) and is left to the model now gets its
        webhook, and so does one left to the model before whose label moves (a rename's or
        merge's new name, the next label in force after a retire): its producer was told the
        label as it was; told the new one, or, when a retire sends it back to people, that it
        waits (``_queue_restated``). Returns (items changed, the last rowid read: None once
        the pass is done)."""
        changed = 0
        with self._unsynced():  # a pass lost in a crash is run again (the change count)
            aliases, retired = self.label_aliases(), self.retired_labels()
            rows = self.db.execute(
                f"SELECT rowid, predicted_label, confidence, {self._MAY_MOVE}, status"
                f" FROM items INDEXED BY items_unlabeled WHERE {UNLABELED} AND ({UNLABELED}) = 1"
                " AND rowid > ? ORDER BY rowid LIMIT ?",
                [after, limit],
            ).fetchall()
            last = rows[-1][0] if rows else None
            if not rows:
                rows = self.db.execute(
                    f"SELECT rowid, predicted_label, confidence, {self._MAY_MOVE}, status"
                    " FROM items WHERE status = 'posted'"
                ).fetchall()
            now = self.now()
            waited: list[int] = []  # changed items that waited for people (queued)
            left: list[int] = []  # and those left to the model whose label moves (auto)
            moves: list[tuple[int, str | None, float]] = []
            for rowid, label, confidence, ranked, status in rows:
                if ranked is None:
                    continue  # not scored yet, or its label is its model's first guess, in force
                guesses = json.loads(ranked) or ([(label, confidence)] if label is not None else [])
                new_label, new_confidence = top_in_force(guesses, aliases, retired)
                if (new_label, new_confidence) == (label, confidence):
                    continue
                if status == "queued":
                    waited.append(rowid)
                elif status == "auto" and new_label != label:
                    # renamed, merged or retired: its producer was told a label no longer in
                    # force (README "Webhooks"), told the new one or that it waits for people
                    left.append(rowid)
                moves.append((rowid, new_label, new_confidence))
                if len(moves) >= max_changes and last is not None:
                    last = rowid
                    break
            if moves:
                self._restate_rows(moves, threshold, now)
                changed = len(moves)
            self._queue_restated(waited, left, now)  # a statement or two a step
        return changed, last

    def _restate_rows(
        self, moves: list[tuple[int, str | None, float]], threshold: float, now: str
    ) -> None:
        """A restate step's writes (``restate_predictions``): each of ``moves`` (rowid, label,
        confidence) gets its label and confidence in one statement, and a status in a second,
        for the few whose status moves: ``auto`` at or above ``threshold`` when nobody has
        answered it, else ``queued`` (``posted`` kept). Only the status's statement touches
        the indexes on the status (four of them); a rename or merge moves none of those."""
        self.db.conn.executemany(  # bound, as stored: a confidence read back compares equal
            "UPDATE items SET predicted_label = ?, confidence = ?, updated_at = ? WHERE rowid = ?",
            [(label, confidence, now, rowid) for rowid, label, confidence in moves],
        )
        made = f"CASE WHEN confidence >= ? AND {UNANSWERED} THEN 'auto' ELSE 'queued' END"
        self.db.execute(
            f"UPDATE items SET status = {made} WHERE rowid IN (SELECT value FROM json_each(?))"
            f" AND status != 'posted' AND status IS NOT {made}",
            [threshold, json.dumps([rowid for rowid, _, _ in moves]), threshold],
        )
        self._statuses_made_under(threshold)

    def rethreshold_step(self, after: int, limit: int, threshold: float) -> tuple[int, int | None]:
        """One bounded step of the pass that puts the waiting items' statuses under
        ``threshold`` (HITL_THRESHOLD) after it changed between two starts: of the next
        ``limit`` unlabeled items after rowid ``after`` (the ``items_unlabeled`` index, as a
        walk reads them), an ``auto`` item whose stored confidence is below ``threshold`` waits
        for people (``queued``), and a ``queued`` one at or above it, that nobody has answered,
        is left to the model (``auto``), as ``set_predictions`` decides for an item it scores.
        Nothing else moves: an asked item (``posted``, audit picks among them), gold, one not
        scored yet, and a queued item people have started answering (it waits for them). A
        queued item left to the model gets its webhook (``_queue_settled``). Only
        what is wrong is written, so a step run again changes nothing; one short transaction,
        unsynced like ``set_predictions`` (lost, the pass is run again). Returns (items
        changed, the last rowid read: None once the pass is done)."""
        rows = self.db.execute(
            f"SELECT rowid FROM items INDEXED BY items_unlabeled WHERE {UNLABELED}"
            f" AND ({UNLABELED}) = 1 AND rowid > ? ORDER BY rowid LIMIT ?",
            [after, limit],
        ).fetchall()
        if not rows:
            return 0, None
        last = rows[-1][0]
        wrong = (
            "confidence IS NOT NULL AND (status = 'auto' AND confidence < ?"
            " OR status = 'queued' AND confidence >= ? AND NOT EXISTS (SELECT 1 FROM answers a"
            " WHERE a.item_id = items.id AND a.source != 'import' AND a.late = 0))"
        )
        read = self.db.execute(  # a read: no write lock when all are right
            f"SELECT rowid, status FROM items INDEXED BY items_unlabeled WHERE {UNLABELED}"
            f" AND ({UNLABELED}) = 1 AND rowid > ? AND rowid <= ? AND {wrong}",
            [after, last, threshold, threshold],
        ).fetchall()
        moved = [rowid for rowid, _ in read]
        if not moved:
            return 0, last
        with self._unsynced():  # a pass lost in a crash is run again
            now = self.now()
            # by rowid only: the status terms unary-plussed, or SQLite reads every auto and
            # queued item through items_status_priority for them (3.6 s a step at a million)
            unindexed = f"+{UNLABELED} AND " + wrong.replace("status =", "+status =")
            changed = self.db.execute(
                "UPDATE items SET updated_at = ?, status = CASE WHEN confidence >= ?"
                " THEN 'auto' ELSE 'queued' END WHERE rowid IN (SELECT value FROM json_each(?))"
                f" AND {unindexed}",  # as read, or changed since: left as it is
                [now, threshold, json.dumps(moved), threshold, threshold],
            ).rowcount
            if changed:
                self._statuses_made_under(threshold)
                # left to the model after waiting for people: one INSERT for the step's items
                self._queue_settled([rowid for rowid, status in read if status == "queued"], now)
        return changed, last

    # -- the HITL_THRESHOLD the waiting items' statuses were made under (m039) --
    def statuses_threshold(self) -> float | None:
        """The HITL_THRESHOLD every waiting item's ``auto``/``queued`` status was made under:
        the one the last threshold pass completed under (``end_rethreshold``), while no status
        was written under another since. None when that is not known: none recorded (a
        database from before m039), a pass under way or stopped midway, a status written under
        another threshold since (another process's, ``_statuses_made_under``). The server's
        start runs the pass only when this is not its threshold. One read of one row."""
        row = self.db.execute(
            "SELECT threshold FROM status_threshold WHERE id = 1 AND done = 1"
        ).fetchone()
        return None if row is None else row[0]

    def begin_rethreshold(self, threshold: float) -> None:
        """A threshold pass toward ``threshold`` begins: until it ends (``end_rethreshold``)
        the statuses are under no known threshold, so a pass stopped midway (the server
        stopped) is run again at the next start, whatever threshold that start has. Unsynced
        as the pass's steps: in WAL mode a commit lost in a crash takes every later one with
        it, never an earlier one."""
        with self._unsynced():
            self.db.execute(
                "INSERT OR REPLACE INTO status_threshold (id, threshold, done) VALUES (1, ?, 0)",
                [threshold],
            )

    def end_rethreshold(self, threshold: float) -> bool:
        """The pass that ``begin_rethreshold`` began has put every waiting item under
        ``threshold``: recorded, unless a status was written under another threshold meanwhile
        (``_statuses_made_under``: the next start runs the pass again). Returns whether it was
        recorded."""
        with self._unsynced():
            return bool(
                self.db.execute(
                    "UPDATE status_threshold SET done = 1 WHERE id = 1 AND threshold = ?"
                    " AND done = 0",
                    [threshold],
                ).rowcount
            )

    def _statuses_made_under(self, threshold: float | None) -> None:
        """Inside the caller's write transaction, which made waiting items' statuses under
        ``threshold`` (None: an item sent back to people whatever its confidence): when that
        is not the threshold recorded (``statuses_threshold``, or the pass under way's), the
        statuses are under no known threshold any more, and the next start runs the pass. A
        statement on one row; nothing written when the threshold is the recorded one."""
        self.db.execute(
            "UPDATE status_threshold SET threshold = NULL, done = 0"
            " WHERE id = 1 AND threshold IS NOT ?",
            [threshold],
        )

    # -- the HITL_VOTES the pending splits' messages were drawn under (m041) --
    def split_draws_votes(self) -> int | None:
        """The HITL_VOTES every pending split's message was drawn under: the one the last
        start's draws of them completed under (``end_split_draws``). None when that is not
        known: none recorded (a database from before m041, or a start that never drew), or
        the draws under way or stopped midway. The server's start redraws the splits only
        when this is not its HITL_VOTES. One read of one row."""
        row = self.db.execute("SELECT votes FROM split_draws WHERE id = 1 AND done = 1").fetchone()
        return None if row is None else int(row[0])

    def begin_split_draws(self, votes: int) -> None:
        """The start draws every split under ``votes``: until it is done (``end_split_draws``)
        they are under no known HITL_VOTES, so draws stopped midway are made again at the next
        start, whatever HITL_VOTES that start has."""
        with self._unsynced():
            self.db.execute(
                "INSERT OR REPLACE INTO split_draws (id, votes, done) VALUES (1, ?, 0)", [votes]
            )

    def end_split_draws(self, votes: int) -> bool:
        """The draws ``begin_split_draws`` began are done: recorded. Returns whether it was."""
        with self._unsynced():
            return bool(
                self.db.execute(
                    "UPDATE split_draws SET done = 1 WHERE id = 1 AND votes = ? AND done = 0",
                    [votes],
                ).rowcount
            )

    def set_aside(self, item_id: str, reason: str) -> None:
        """Stop asking about an item Slack will not show (status skipped), and say why. Its
        producer, if it gave a callback_url, hears it (``_queue_settled``) when it is set aside
        now (not when it already was, or was decided meanwhile)."""
        with self._immediate():
            now = self.now()
            moved = self.db.execute(
                "UPDATE items SET status = 'skipped', updated_at = ? WHERE id = ?"
                " AND status IN ('new', 'queued', 'auto', 'gold')",  # a gold question too
                [now, item_id],
            ).rowcount
            if moved:
                self._queue_settled([item_id], now, by="id")
            self.db["runs"].insert(
                {
                    "kind": "dispatch",
                    "started_at": now,
                    "finished_at": now,
                    "status": "failed",
                    "triggered_by": "dispatcher",
                    "detail": json.dumps({"item_id": item_id, "reason": reason}),
                }
            )

    def open_post_counts(self) -> dict[str, int]:
        """Unanswered posts per channel. Every dispatcher round reads it, on the event loop:
        read from the open posts' index (a few rows), not an entry for every post ever made."""
        return dict(
            self.db.execute(
                "SELECT channel, count(*) FROM posts INDEXED BY posts_open_age"
                " WHERE closed_at IS NULL GROUP BY channel"
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
        drawn_under: int | None = None,
    ) -> int:
        """Record a question Slack has accepted (it returned ``ts``, or its message was found
        in the channel's history): the item is now posted, and its post attempt is over.

        An item people decided meanwhile (they answered the message the bot had not heard
        of) stays decided: its post is recorded closed, with its message due for a redraw
        that shows the decision. ``drawn_under``: the label set's change count its buttons
        were drawn under; when a change (`hitl labels` beside the server) came since, the
        message is due for a redraw under the label set of now (the change's own redraw of
        the open questions was made before this one was recorded).

        A gold question whose gold label was retired meanwhile (`hitl labels retire` while its
        message was being posted: no button could be right) is recorded taken back, as the
        retire takes back the open ones: closed, expired (``taken_back`` 'labels'), due for a
        redraw without buttons, the item waiting as a gold question.

        An item deleted meanwhile (`hitl delete` while the message was being posted) gets no
        post: its message is left for the redrawer to delete (``erased_posts``), and 0 is
        returned."""
        now = self.now()
        with self._immediate():
            status = self.db.execute("SELECT status FROM items WHERE id = ?", [item_id]).fetchone()
            if status is None:
                self.db.execute(
                    "INSERT OR IGNORE INTO erased_posts (channel, ts, erased_at) VALUES (?, ?, ?)",
                    [channel, ts, now],
                )
                self.db.execute("DELETE FROM post_attempts WHERE item_id = ?", [item_id])
                return 0
            stale = drawn_under is not None and drawn_under != self.label_set_change_count()
            held = status[0] == "gold" and self._gold_held_back(item_id)
            moved = 0
            if not held:
                moved = self.db.execute(
                    "UPDATE items SET status = 'posted', updated_at = ? WHERE id = ?"
                    " AND status NOT IN ('resolved', 'skipped')",
                    [now, item_id],
                ).rowcount
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
                    **({} if moved else {"closed_at": now}),
                    **({"expired_at": now, "taken_back": "labels"} if held else {}),
                    **({"redraw_seq": 1} if stale or not moved else {}),
                }
            )
            self.db.execute("DELETE FROM post_attempts WHERE item_id = ?", [item_id])
        return int(post.last_pk)

    def begin_post_attempt(
        self,
        item_id: str,
        channel: str,
        reason: str,
        model_version: int | None,
        predicted_label: str | None,
        confidence: float | None,
        *,
        gold_ranked: list | None = None,
    ) -> bool:
        """Note, durably, that ``item_id`` is about to be posted to ``channel``: until
        ``record_post`` or ``end_post_attempt``, its message may exist without a record.
        False, and nothing noted, when the item is gone (`hitl delete` since it was read) or
        no longer waits to be asked (decided in the labeling modal or by `hitl labels set`,
        set aside, posted: a status other than those the dispatcher posts, new, queued, auto
        and gold) since the round read it, or is a gold question whose gold label was retired
        since (no button could be right): it must not be posted.

        ``gold_ranked``: a gold question's ranked guesses (the dispatcher's, made as it posts
        it: a gold item is never scored in the background), stored as the item's ``ranked``
        in the same transaction, as the scorer stores any other item's, so each later drawing
        of its message (a redraw, the labeling modal, a restart's) shows the guesses it was
        posted with. Only that column, and only of an item waiting as a gold question (status
        gold) that has no prediction (imported as gold, or marked gold before any model scored
        it): its status, model version, label and confidence stay as they are, so nothing
        that reads those (the queue, the scorer, gold counts, the producer API) sees a
        prediction. An item marked gold while it waited keeps the scorer's ranking with its
        prediction: the producer API and webhooks read ``ranked`` first, and would report the
        gold question's guess beside the scorer's model version; its later drawings show the
        guess it was posted with first (``posts``), then that ranking."""
        with self._immediate():
            noted = (
                self.db.execute(
                    "INSERT OR REPLACE INTO post_attempts (item_id, channel, reason,"
                    " model_version, predicted_label, confidence, attempted_at)"
                    " SELECT id, ?, ?, ?, ?, ?, ? FROM items WHERE id = ?"
                    " AND status IN ('new', 'queued', 'auto', 'gold') AND NOT (status = 'gold'"
                    f" AND ({self._HELD_BACK.format(item='items.id')}))",
                    [
                        channel,
                        reason,
                        model_version,
                        predicted_label,
                        confidence,
                        self.now(),
                        item_id,
                    ],
                ).rowcount
                > 0
            )
            if noted and gold_ranked is not None:
                self.db.execute(
                    "UPDATE items SET ranked = ? WHERE id = ? AND status = 'gold'"
                    " AND model_version IS NULL AND predicted_label IS NULL"
                    " AND confidence IS NULL",
                    [json.dumps(gold_ranked), item_id],
                )
            return noted

    def end_post_attempt(self, item_id: str) -> None:
        """Slack did not post ``item_id``'s message (it refused it, or its history shows no
        such message): the item may be posted again."""
        with self._immediate():
            self.db.execute("DELETE FROM post_attempts WHERE item_id = ?", [item_id])

    def post_attempts(self) -> list[dict[str, Any]]:
        """The posts whose outcome is unknown (see ``begin_post_attempt``), oldest first."""
        return select_rows(self.db, "SELECT * FROM post_attempts ORDER BY attempted_at")

    def pick_reason_nearest(self, version: int, post_id: int, within: int) -> str | None:
        """The reason (``warm_up``, ``typical``, ``uncertain``, ``audit``) of model
        ``version``'s ordinary question posted nearest to the post ``post_id``, within
        ``within`` posts on either side (a read of the posts' key, bounded however many there
        are); None if it posted none there."""
        row = self.db.execute(
            "SELECT reason FROM posts WHERE id BETWEEN ? AND ? AND model_version = ?"
            " AND reason IN ('warm_up', 'typical', 'uncertain', 'audit')"
            " ORDER BY abs(id - ?) LIMIT 1",
            [post_id - within, post_id + within, version, post_id],
        ).fetchone()
        return None if row is None else row[0]

    def post(self, post_id: int) -> dict[str, Any] | None:
        rows = select_rows(self.db, "SELECT * FROM posts WHERE id = ?", [post_id])
        return rows[0] if rows else None

    def post_for_item(self, item_id: str) -> dict[str, Any] | None:
        """The item's most recent post (open or closed)."""
        rows = select_rows(
            self.db, "SELECT * FROM posts WHERE item_id = ? ORDER BY id DESC LIMIT 1", [item_id]
        )
        return rows[0] if rows else None

    def open_posts(self) -> list[dict[str, Any]]:
        """The open posts, oldest first: read from the open posts' index, not every post."""
        return select_rows(
            self.db,
            "SELECT * FROM posts INDEXED BY posts_open_age WHERE closed_at IS NULL ORDER BY id",
        )

    def split_posts(self) -> list[dict[str, Any]]:
        """The posts of the splits whose buttons still take votes, oldest first: an item in
        review for a split vote, still asked (``posted``), its latest post closed to free its
        channel place (``review_after_answer``), not taken back. Read from the pending
        reviews' index, each item's posts by its id (a few rows: not every post)."""
        return select_rows(
            self.db,
            "SELECT p.* FROM reviews r INDEXED BY reviews_open JOIN items i ON i.id = r.item_id"
            " JOIN posts p ON p.id = (SELECT max(q.id) FROM posts q WHERE q.item_id = r.item_id)"
            " WHERE r.decided_at IS NULL AND r.reason = 'split' AND i.status = 'posted'"
            " AND p.closed_at IS NOT NULL AND p.expired_at IS NULL ORDER BY p.id",
        )

    def pre_model_questions(self) -> list[str]:
        """The items of the open questions asked before the first model (a post without a
        model version): the scorer scores them when a model arrives, and redraws them. Read
        from the open posts' index (a few rows), not every post ever made."""
        return [
            row[0]
            for row in self.db.execute(
                "SELECT item_id FROM posts INDEXED BY posts_open_age"
                " WHERE closed_at IS NULL AND model_version IS NULL"
            )
        ]

    def open_question_items(self) -> list[str]:
        """The items of every open question (``posted``: out of the walk's index), for the
        scorer to score with a new model as it scores the waiting items: their messages keep
        the guess they were asked with (the post's), their prediction for the producer API is
        the serving model's. Read from the open posts' index (a few rows)."""
        return [
            row[0]
            for row in self.db.execute(
                "SELECT item_id FROM posts INDEXED BY posts_open_age WHERE closed_at IS NULL"
            )
        ]

    def redraw_pre_model_questions(self, item_ids: Sequence[str]) -> int:
        """Redraw these items' open questions asked before the first model (their message
        shows the model's guess now: ``bot.slack.questions.build_question``)."""
        n = 0
        with self._immediate():
            for item_id in item_ids:
                n += self.db.execute(
                    "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE item_id = ?"
                    " AND closed_at IS NULL AND model_version IS NULL",
                    [item_id],
                ).rowcount
        return n

    def requeue_posts_outside(
        self, channels: Sequence[str], threshold: float | None = None, *, redraw: bool = False
    ) -> list[dict[str, Any]]:
        """Close the open posts in channels other than ``channels`` (the question channels
        changed since they were posted, or a question was reopened in such a channel: an Undo,
        a Skip that ends a split) and put their items back in the queue, to be posted where
        they go now; returns those posts (``id``, ``item_id``, ``channel``, ``ts``). An answer
        on an old message is still stored: answers go by item id. With none to move it only reads
        (no write lock: another process may hold it while the server starts), from the open
        posts' index: what every dispatcher round costs. ``threshold`` (HITL_THRESHOLD): an
        item the model is sure of goes back to ``auto`` (``_take_back``). ``redraw``: their
        messages are due for a redraw (the redrawer draws them as moved, from the database)."""
        marks = ",".join("?" * len(channels)) or "''"
        find = (  # from the open posts' index: a few rows, not every post ever made
            "SELECT id, item_id, channel, ts FROM posts INDEXED BY posts_open_age"
            f" WHERE closed_at IS NULL AND channel NOT IN ({marks}) ORDER BY id"
        )
        if not self.db.execute(find, list(channels)).fetchone():
            return []
        now = self.now()
        with self._immediate():
            moved = select_rows(self.db, find, list(channels))
            for post in moved:
                self._take_back(post["item_id"], now, threshold=threshold)
            if redraw:
                self.db.conn.executemany(
                    "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE channel = ? AND ts = ?",
                    [(post["channel"], post["ts"]) for post in moved],
                )
        return moved

    def expire_posts(
        self, ttl_hours: float, limit: int, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Take back the questions nobody answered for over ``ttl_hours`` (HITL_QUESTION_TTL),
        at most ``limit`` of them, the oldest first: as ``requeue_posts_outside`` does, each
        post is closed (``expired_at`` set: its message is redrawn without buttons, saying so)
        and its item goes back to the queue, in one transaction. The TTL counts from the
        question's posting or from the latest answer its item holds (a vote in its tally,
        ``_votes_of``), whichever is later: a question people are answering stays open
        (under HITL_VOTES > 1 it waits for more), one left half-way is taken back a TTL after
        its last answer, its answers still counting (``_take_back_all``: it waits for people
        again). A click stored before it decided the item and closed its post, so nothing is
        taken back; a click stored after it counts as an answer to the item (answers go by item
        id), and a decision then closes and redraws the item's new post too. Read from the
        open posts' age index (each one's answers by its item id), so a round costs the same at
        any number of posts and answers; with none to take back it only reads. Returns the
        posts taken back (``id``, ``item_id``, ``channel``, ``ts``, ``posted_at``).
        ``threshold``: as ``requeue_posts_outside``'s. A question the clock put in the future
        counts as posted now (``_stamped_ahead``)."""
        now = self.now()
        self._stamped_ahead(now)
        cutoff = (datetime.fromisoformat(now) - timedelta(hours=ttl_hours)).isoformat(
            timespec="milliseconds"
        )
        answered_since = f"SELECT 1 FROM answers a WHERE {_votes_of('posts.item_id')}"
        answered_since += " AND a.created_at >= ?"
        find = (
            "SELECT id, item_id, channel, ts, posted_at FROM posts INDEXED BY posts_open_age"
            f" WHERE closed_at IS NULL AND posted_at < ? AND NOT EXISTS ({answered_since})"
            " ORDER BY posted_at LIMIT ?"
        )
        if not self.db.execute(find, [cutoff, cutoff, limit]).fetchone():
            return []
        with self._immediate():
            expired = select_rows(self.db, find, [cutoff, cutoff, limit])
            for post in expired:
                self._take_back(post["item_id"], now, expired=True, threshold=threshold)
        return expired

    def answers_when_taken_back(self, item_id: str, expired_at: str) -> tuple[int, str | None]:
        """The answers ``item_id``'s question held when it was taken back at ``expired_at``
        (HITL_QUESTION_TTL, a retire): how many votes were in its tally then, and when the
        latest of them was given (None: none), for its expired message to say. By the item's
        id, a few rows."""
        row = self.db.execute(
            f"SELECT count(*), max(a.created_at) FROM answers a WHERE {_votes_of('?', '?')}",
            [item_id, expired_at, expired_at],
        ).fetchone()
        return int(row[0]), row[1]

    def expired_counts(self, days: float = 7) -> dict[str, int]:
        """Questions taken back unanswered (HITL_QUESTION_TTL) in the last ``days``, by
        channel: those with no answer in when they were taken back (one left half-way,
        ``expire_posts``, is no unanswered question), taken back for their time or their
        message gone (``taken_back`` 'expired'), not by a retire of their label ('labels':
        the label set changed) nor moved ('moved': asked elsewhere). Read from the expired
        posts' index, each one's answers by its item id (cheap at any number of posts and
        answers). A time the clock put in the future is brought to now by the dispatcher's
        rounds (``expire_posts``)."""
        since = (datetime.fromisoformat(self.now()) - timedelta(days=days)).isoformat(
            timespec="milliseconds"
        )
        answered = _votes_of("posts.item_id", "posts.expired_at")
        rows = self.db.execute(
            "SELECT channel, count(*) FROM posts INDEXED BY posts_expired WHERE expired_at >= ?"
            " AND taken_back = 'expired'"
            f" AND NOT EXISTS (SELECT 1 FROM answers a WHERE {answered}) GROUP BY channel",
            [since],
        )
        return {channel: n for channel, n in rows}

    def resting(self, hours: float) -> set[str]:
        """The items whose question was taken back unanswered in the last ``hours`` (one
        HITL_QUESTION_TTL; its message gone too, not a retire of its gold label): the
        dispatcher asks them after the other items it would ask, so a place an ignored
        question freed goes to another item, not to the same question again.
        Read from the expired posts' index; at most a TTL's worth of expired posts. One the
        clock put in the future was brought to now by the round's ``expire_posts`` before
        this read: it rests one TTL from then, not until the clock catches up with it and a
        TTL more."""
        since = (datetime.fromisoformat(self.now()) - timedelta(hours=hours)).isoformat(
            timespec="milliseconds"
        )
        rows = self.db.execute(
            "SELECT item_id FROM posts INDEXED BY posts_expired WHERE expired_at >= ?"
            " AND taken_back = 'expired'",  # not a retire's (``labels``): nobody ignored it
            [since],
        )
        return {item_id for (item_id,) in rows}

    def _stamped_ahead(self, now: str) -> int:
        """Bring the question times a clock that read ahead of this one stamped (set right
        since: NTP stepped it back) back to ``now``: an open question's ``posted_at``, the
        ``created_at`` of its item's answers (the TTL counts from the latest: one stamped
        ahead held the question open until the clock caught up with it, and a TTL more), a
        taken-back one's ``expired_at``, an unconfirmed post's ``attempted_at``
        (``post_attempts``) and a deleted item's lost post's (the time in its ``LOST`` row of
        ``erased_posts``) later than ``now``, all in one transaction. As a webhook retry due
        later than any of its waits is due now (``pull_forward_deliveries``) and a lost post's
        seconds count from when its time was first seen in the future (the dispatcher's
        ``_settled``), a time in the future counts as now, once seen: the question is taken
        back HITL_QUESTION_TTL after that at most (every dispatcher round looks, in
        ``expire_posts``, before it reads what rests), and a taken-back item rests one TTL from
        then (``resting``), not until the clock catches up with it and a TTL more. An item's
        take-backs and answers keep their order, a few milliseconds apart up to ``now``: a
        question taken back unanswered holds no answer given after it (below).

        The attempts' times are brought back with the posts': the look for a lost post stops
        at the newest open question recorded before its attempt (``posted_at <
        attempted_at``, strictly: redraw's ``_floor``, the dispatcher's ``_recorded_floor``),
        and a question posted after the attempt must not sort before it. Every time in the
        future becomes the same ``now``, so such a question and attempt tie, and a tie is no
        floor: the look reads further back (more history, never less), as it does for one
        posted before the attempt that ties with it now. Cheap seeks (the partial indexes, the
        open questions' answers by their item id, the lost rows' ids from 0 down, the few
        unconfirmed posts), a write only when one is found. Returns how many times were
        brought back."""
        answered_ahead = (
            "SELECT a.id FROM posts p INDEXED BY posts_open_age"
            " JOIN answers a INDEXED BY answers_item ON a.item_id = p.item_id"
            " WHERE p.closed_at IS NULL AND a.created_at > ?"
        )
        lost_ahead = (
            "SELECT id, ts FROM erased_posts WHERE id < 1 AND substr(ts, 1, ?) = ?"
            " AND substr(ts, ?, ?) > ?"
        )
        lost_args = [len(LOST), LOST, len(LOST) + 1, len(now), now]
        ahead = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM posts INDEXED BY posts_open_age"
            " WHERE closed_at IS NULL AND posted_at > ?),"
            " EXISTS (SELECT 1 FROM posts INDEXED BY posts_expired WHERE expired_at > ?),"
            " EXISTS (SELECT 1 FROM post_attempts WHERE attempted_at > ?),"
            f" EXISTS ({lost_ahead}), EXISTS ({answered_ahead})",
            [now, now, now, *lost_args, now],
        ).fetchone()
        if not any(ahead):
            return 0
        with self._immediate():
            moved = self.db.execute(
                "UPDATE posts SET posted_at = ? WHERE closed_at IS NULL AND posted_at > ?",
                [now, now],
            ).rowcount
            # A take-back and the answers of its item, all stamped ahead, keep their order: a
            # question taken back unanswered must not hold an answer given after it, nor one
            # left half-way lose those it held (``_votes_of(at=expired_at)``, ``<=``). So
            # each item's times are brought back to a few milliseconds up to ``now``, in
            # their order: its take-backs and the answers between them on steps of their own,
            # its latest time on ``now`` (a take-back followed by no answer: ``now``, as
            # before). Bringing all to the same ``now`` made a question taken back unanswered
            # hold the answer given to its item's next question (/hitl queue's taken-back-
            # unanswered count, its expired message). The answers of a taken-back item with
            # no open question come back too, with its take-back's time.
            taken = self.db.execute(
                "SELECT id, item_id, expired_at FROM posts INDEXED BY posts_expired"
                " WHERE expired_at > ?",
                [now],
            ).fetchall()
            answers = self.db.execute(
                "SELECT a.id, a.item_id, a.created_at FROM answers a INDEXED BY answers_item"
                " WHERE a.item_id IN (SELECT item_id FROM posts INDEXED BY posts_open_age"
                " WHERE closed_at IS NULL UNION SELECT item_id FROM posts INDEXED BY"
                " posts_expired WHERE expired_at > ?) AND a.created_at > ?",
                [now, now],
            ).fetchall()
            steps: dict[str, list[str]] = {}  # item -> its take-backs' times ahead, in order
            for _, item_id, at in taken:
                steps.setdefault(item_id, []).append(at)
            for item_id, times in steps.items():
                steps[item_id] = sorted(set(times))

            def step(item_id: str, at: str, *, is_answer: bool) -> int:
                """``at``'s place among its item's times ahead: 2j + 1 for its j-th take-back
                (0-based), 2j for an answer after j of them. An answer stamped at a
                take-back's very time comes after it: a take-back for the TTL is made only
                when no answer came since, so one that ties with it came after it."""
                times = steps.get(item_id, [])
                if is_answer:
                    return 2 * sum(t <= at for t in times)
                return 2 * sum(t < at for t in times) + 1

            places = [
                ("posts", "expired_at", row_id, item_id, step(item_id, at, is_answer=False))
                for row_id, item_id, at in taken
            ]
            places += [
                ("answers", "created_at", row_id, item_id, step(item_id, at, is_answer=True))
                for row_id, item_id, at in answers
            ]
            top: dict[str, int] = {}
            for *_, item_id, place in places:
                top[item_id] = max(top.get(item_id, 0), place)
            at_now = datetime.fromisoformat(now)
            for table, column, row_id, item_id, place in places:
                back = top[item_id] - place  # milliseconds before now
                when = (
                    now
                    if back == 0
                    else (at_now - timedelta(milliseconds=back)).isoformat(timespec="milliseconds")
                )
                moved += self.db.execute(
                    f"UPDATE {table} SET {column} = ? WHERE id = ?", [when, row_id]
                ).rowcount
            moved += self.db.execute(
                "UPDATE post_attempts SET attempted_at = ? WHERE attempted_at > ?", [now, now]
            ).rowcount
            for row_id, ts in self.db.execute(lost_ahead, lost_args).fetchall():
                item_id = ts[len(LOST) :].partition(" ")[2]
                moved += 1
                if not self.db.execute(  # the same item's lost post, now the same: one look
                    "UPDATE OR IGNORE erased_posts SET ts = ? WHERE id = ?",
                    [f"{LOST}{now} {item_id}", row_id],
                ).rowcount:
                    self.db.execute("DELETE FROM erased_posts WHERE id = ?", [row_id])
        logger.warning(
            "%d question time(s) later than the clock (it ran ahead and was stepped back?)"
            " count as now: questions are taken back, and rest, HITL_QUESTION_TTL from now",
            moved,
        )
        return moved

    def take_back_gone(
        self, post_ids: Collection[int], threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Take back the open questions among ``post_ids`` whose Slack message is gone (the
        redrawer's ``message_not_found``, ``cant_update_message``): as ``expire_posts`` does,
        each post is closed (``expired_at`` set) and its item goes back to the queue, its place
        free, all in one transaction of set-wide statements. Their messages are not redrawn
        (there is nothing to draw on: marked drawn). A post closed meanwhile (decided) is left
        as it is. Returns the posts taken back (``id``, ``item_id``, ``channel``, ``ts``,
        ``posted_at``). ``threshold``: as ``requeue_posts_outside``'s."""
        if not post_ids:
            return []
        ids = json.dumps(sorted({int(post_id) for post_id in post_ids}))
        now = self.now()
        with self._immediate():
            gone = select_rows(
                self.db,
                "SELECT id, item_id, channel, ts, posted_at FROM posts WHERE id IN"
                " (SELECT value FROM json_each(?)) AND closed_at IS NULL ORDER BY id",
                [ids],
            )
            if gone:
                taken = json.dumps([post["id"] for post in gone])
                self._take_back_all(
                    [str(post["item_id"]) for post in gone],
                    now,
                    expired=True,
                    threshold=threshold,
                )
                self.db.execute(
                    "UPDATE posts SET drawn_seq = redraw_seq WHERE id IN"
                    " (SELECT value FROM json_each(?))",
                    [taken],
                )
        return gone

    def _take_back(
        self, item_id: str, now: str, *, expired: bool = False, threshold: float | None = None
    ) -> None:
        """Close the item's open posts (``expired``: marked so, and due for a redraw) and put
        the item back where it waited before its post: gold, not scored, left to the model
        (``auto``: an audit pick whose confidence is at or above ``threshold``, HITL_THRESHOLD,
        as ``set_predictions`` decides it) or waiting for people. Without ``threshold`` a
        scored item waits for people."""
        self._take_back_all([item_id], now, expired=expired, threshold=threshold)

    def _take_back_all(
        self,
        item_ids: Sequence[str],
        now: str,
        *,
        expired: bool = False,
        threshold: float | None = None,
        why: str | None = None,
    ) -> None:
        """``_take_back`` for all of ``item_ids`` at once: two statements however many, each
        reading the items by id (``+status``: not the status index, every posted item); an
        audit pick people have started answering (an answer counted) waits for people
        (``queued``), not the model, as ``rethreshold_step`` keeps such an item; and
        the recorded threshold (``statuses_threshold``) forgotten when an item went back where
        it would not put it (one read of them by id first, the status terms unary-plussed: the
        status index would read every auto and queued item, 3 s at a million). Each post
        taken back notes why (``posts.taken_back``, m040): ``why``, else 'expired' or
        'moved'. With ``threshold``, an item it leaves to the model (``auto``) ended its wait
        for people without a label: its producer hears it (``_queue_settled``; the asked
        items read by id before, one INSERT after)."""
        items = json.dumps(list(item_ids))
        asked = (
            [
                rowid
                for (rowid,) in self.db.execute(
                    "SELECT rowid FROM items WHERE id IN (SELECT value FROM json_each(?))"
                    " AND +status = 'posted'",
                    [items],
                )
            ]
            if threshold is not None  # without one, none is left to the model
            else []
        )
        self.db.execute(
            "UPDATE posts SET closed_at = ?, expired_at = CASE WHEN ? THEN ? END,"
            " redraw_seq = redraw_seq + ?, taken_back = ? WHERE item_id IN"
            " (SELECT value FROM json_each(?)) AND closed_at IS NULL",
            [now, expired, now, int(expired), why or ("expired" if expired else "moved"), items],
        )
        self.db.execute(
            "UPDATE items SET updated_at = ?, status = CASE"
            " WHEN EXISTS (SELECT 1 FROM gold g WHERE g.item_id = items.id) THEN 'gold'"
            " WHEN model_version IS NULL THEN 'new'"
            " WHEN ? IS NOT NULL AND confidence >= ? AND NOT EXISTS (SELECT 1 FROM answers a"
            " WHERE a.item_id = items.id AND a.source != 'import' AND a.late = 0) THEN 'auto'"
            " ELSE 'queued' END WHERE id IN (SELECT value FROM json_each(?))"
            " AND +status = 'posted'",
            [now, threshold, threshold, items],
        )
        self._queue_settled(asked, now)  # those now auto: their producers hear it
        # one of them now where the recorded threshold would not put it (taken back under
        # another threshold, or without one): the next start's threshold pass puts it right
        if self.db.execute(  # a read: written only then
            "SELECT 1 FROM status_threshold t WHERE t.id = 1 AND t.threshold IS NOT NULL"
            " AND EXISTS (SELECT 1 FROM items i WHERE i.id IN (SELECT value FROM json_each(?))"
            " AND i.confidence IS NOT NULL AND (+i.status = 'auto' AND i.confidence < t.threshold"
            " OR +i.status = 'queued' AND i.confidence >= t.threshold AND NOT EXISTS (SELECT 1"
            " FROM answers a WHERE a.item_id = i.id AND a.source != 'import' AND a.late = 0)))",
            [items],
        ).fetchone():
            self._statuses_made_under(None)

    def record_answer(
        self,
        item_id: str,
        user_id: str,
        label: str | None,
        *,
        source: str,
        dedupe_key: str,
        votes_needed: int = 1,
        skips_to_discard: int = 2,
        review: ReviewRules = ReviewRules(),  # noqa: B008 (frozen: safe as a default)
        team_id: str | None = None,
    ) -> AnswerResult:
        """Store one answer (``label=None`` is a skip) and resolve the item when it has enough
        votes, all in one transaction, before anything is acknowledged. ``team_id``: the Slack
        team of the person answering, stored with the answer (None when the payload had none).

        The same ``dedupe_key`` twice (a retried request) and an answer equal to the user's
        latest one (a double click, on an open item or on the one it just decided) are stored
        once. A user's latest answer is the one that counts. With ``votes_needed`` n, the item
        resolves when one label has a majority of n (more than n/2 votes), counted over all its
        answers, also those given while HITL_VOTES was higher (``decide_answered`` decides at
        start the items they already decide). A skip means "not me": the item stays open for
        the others, and is set aside (status skipped) once ``skips_to_discard`` different
        people's latest answer is a skip and nobody's is a label (a vote keeps it open for more
        votes). A split vote (no majority among at least n people, two at least), and a
        decision ``review``'s rules question, go to the review queue
        (``bot.store.reviews``). An answer to a decided or set-aside item is kept as history
        (``answers.late``; its sender is told it was not counted): no vote, skip or answer in
        any count (``iter_votes``, ``answers_by_user``).
        """
        with self._immediate():
            item = self.db.execute("SELECT status FROM items WHERE id = ?", [item_id]).fetchone()
            if item is None:
                return AnswerResult("unknown_item", item_id)
            exists = self.db.execute(
                "SELECT 1 FROM answers WHERE dedupe_key = ?", [dedupe_key]
            ).fetchone()
            if exists:  # no tally on these paths: they change nothing, and a decided item
                return AnswerResult("duplicate", item_id)  # may have many late answers
            latest = self._latest_answer(item_id, user_id)
            closed = item[0] in ("resolved", "skipped")
            same = latest is not None and latest == (label, source == "undo")
            if same:  # a double click, before the decision or after it: stored once
                return AnswerResult("repeated" if closed else "unchanged", item_id)
            now = self.now()
            insert_row(
                self.db,
                "answers",
                {
                    "item_id": item_id,
                    "user_id": user_id,
                    "label": label,
                    "source": source,
                    "created_at": now,
                    "dedupe_key": dedupe_key,
                    "late": int(closed),  # told "already decided": history, counted nowhere
                    "team_id": team_id,
                },
            )
            if closed:  # kept as history: the sender is told it came too late
                return AnswerResult("closed", item_id)
            tally = self.tally(item_id)
            self._touch_post(item_id)
            if item[0] == "gold" and self._gold_held_back(item_id):
                # a click on a gold question the retire of its gold label took back (on its
                # message as Slack still showed it): kept, scored once the label is back, but
                # deciding nothing while no button could be right; asked again after `add`
                return AnswerResult("recorded", item_id, label=label, tally=tally)
            winner = self._winner(tally, votes_needed)
            # A split needs two people at least, also under HITL_VOTES=1: lowered to 1 while
            # an item held an answer, a different second answer ties them (no majority), and
            # without the review it waited, posted, for a third.
            self.review_after_answer(item_id, tally, winner, max(votes_needed, 2), review)
            if winner is not None:
                self._resolve(item_id, winner, tally, now)
                return AnswerResult("resolved", item_id, label=winner, tally=tally)
            if label is None and len(tally.skips) >= skips_to_discard and not tally.votes:
                self._close(item_id, "skipped", now)
                self._queue_settled([item_id], now, by="id")  # its producer hears it
                return AnswerResult("skipped", item_id, tally=tally)
            return AnswerResult("recorded", item_id, label=label, tally=tally)

    def decide_answered(
        self,
        votes_needed: int,
        skips_to_discard: int = 2,
        review: ReviewRules = ReviewRules(),  # noqa: B008 (frozen: safe as a default)
        chunk: int = 200,
    ) -> list[str]:
        """Decide the asked items whose answers already decide them under the settings in
        force, as ``record_answer`` would at their next answer: HITL_VOTES (or
        HITL_SKIPS_TO_DISCARD) lowered since they were answered left them open, their question
        saying "1 of 1 answers in", holding a channel place until someone clicked again. For
        each: a majority decides it (its split review closed by the votes), a tie among at
        least ``votes_needed`` people (two at least) goes to review as a split, and skips
        alone set it aside; its question is redrawn. At start, before the server listens.

        Reads the items being asked (status ``posted``: open questions and splits, from the
        status index: a few rows, not every item) and only writes what it changes, in
        transactions of ``chunk`` items; with nothing to decide it takes no write lock (another
        process may hold it while the server starts), and a second run changes nothing.

        An item whose question was taken back while it held answers, whatever took it back
        (HITL_QUESTION_TTL, its message gone, a move out of a channel no longer asked in, an
        Undo of a late decision: ``posts.taken_back``), waiting in the queue (or as a gold
        question) to be asked again, is decided by the same rule: a majority decides it (its
        expired message redrawn with the decision), skips alone set it aside, and a tie among
        enough people goes to review as a split, the item waiting to be asked again (a later
        vote that makes a majority decides it, as a split's buttons do). Read from the
        taken-back posts' index (the questions ever taken back, each item found by id).

        A pending split a voter's Skip left with fewer voters than ``votes_needed`` (stored by
        a hitl older than 2026-12-06, which kept it in review) is no split: its review is
        closed (by the votes, 'undone') and its latest question, still shown, holds a channel
        place again, as ``flag_split`` does at a Skip.
        Returns the ids it changed."""
        split_needs = max(votes_needed, 2)

        def due(item_id: str) -> bool:
            tally = self.tally(item_id)
            if self._winner(tally, votes_needed) is not None:
                return True
            n_voters = sum(len(users) for users in tally.votes.values())
            if n_voters < split_needs and self._split_skipped(item_id):
                # a voter's Skip a hitl older than 2026-12-06 stored left it in review with
                # fewer voters than HITL_VOTES: no split, as flag_split now says at a Skip
                return True
            if not tally.votes:
                return len(tally.skips) >= skips_to_discard
            return n_voters >= split_needs and not self._split_pending(item_id)

        posted = [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM items WHERE status = 'posted' AND EXISTS (SELECT 1 FROM answers"
                " a WHERE a.item_id = items.id AND a.source != 'import' AND a.late = 0)"
                " ORDER BY id"
            )
        ]
        taken_back = [
            row[0]
            for row in self.db.execute(
                # CROSS JOIN: the taken-back posts drive, each item read by id (a plain JOIN
                # let SQLite walk every waiting item from the status index: 2.5-5 s at 1M)
                "SELECT DISTINCT i.id FROM posts p INDEXED BY posts_taken_back"
                " CROSS JOIN items i ON i.id = p.item_id WHERE p.taken_back IS NOT NULL"
                f" AND +i.status IN ({WAITING_AGAIN}) AND EXISTS (SELECT 1 FROM answers a"
                " WHERE a.item_id = i.id AND a.source != 'import' AND a.late = 0)"
                " ORDER BY i.id"
            )
        ]
        todo = [item_id for item_id in dict.fromkeys(posted + taken_back) if due(item_id)]
        changed: list[str] = []
        unsplit: list[str] = []  # splits that are none now: out of review, asked again
        for start in range(0, len(todo), chunk):
            with self._immediate():
                now = self.now()
                for item_id in todo[start : start + chunk]:
                    status = self.db.execute(
                        "SELECT status FROM items WHERE id = ?", [item_id]
                    ).fetchone()
                    if status is None or status[0] not in OPEN_STATUSES or not due(item_id):
                        continue  # decided, set aside or deleted since the read
                    tally = self.tally(item_id)
                    winner = self._winner(tally, votes_needed)
                    self._touch_post(item_id)
                    # as record_answer does: the reviews first (a stale split is closed and
                    # its question reopened by flag_split), then the decision
                    self.review_after_answer(item_id, tally, winner, split_needs, review)
                    if winner is not None:
                        self._resolve(item_id, winner, tally, now)
                    elif not tally.votes and len(tally.skips) >= skips_to_discard:
                        self._close(item_id, "skipped", now)
                        self._queue_settled([item_id], now, by="id")
                    elif sum(len(users) for users in tally.votes.values()) < split_needs:
                        unsplit.append(item_id)
                    changed.append(item_id)
        decided = len(changed) - len(unsplit)
        if decided:
            logger.info(
                "%d asked item(s) decided by the answers they had (HITL_VOTES or"
                " HITL_SKIPS_TO_DISCARD lowered since they were answered)",
                decided,
            )
        if unsplit:
            logger.info(
                "%d split(s) a Skip left with fewer answers than HITL_VOTES=%d left review;"
                " their questions take answers again",
                len(unsplit),
                votes_needed,
            )
        return changed

    # Whether the gold item ``{item}`` (an SQL expression) has a gold label that is retired
    # (through a rename or merge): not asked, no button could be right (``next_gold``).
    _HELD_BACK = (
        "EXISTS (SELECT 1 FROM gold g LEFT JOIN label_aliases m ON m.old = g.label"
        " JOIN label_set s ON s.name = coalesce(m.new, g.label) WHERE g.item_id = {item}"
        " AND s.status = 'retired')"
    )

    def _gold_held_back(self, item_id: str) -> bool:
        """Whether ``item_id`` is a gold item whose gold label is retired: not asked while it
        is (``next_gold``), its answers deciding nothing (``record_answer``). By its id."""
        held = self.db.execute(f"SELECT {self._HELD_BACK.format(item='?')}", [item_id])
        return bool(held.fetchone()[0])

    def _split_skipped(self, item_id: str) -> bool:
        """Whether ``item_id`` has a pending split and someone's latest counted answer is a
        Skip given since it was flagged: a voter took theirs back (not a split kept under a
        raised HITL_VOTES, which stays one until its next answer)."""
        return (
            self.db.execute(
                "SELECT 1 FROM reviews r JOIN answers a ON a.item_id = r.item_id"
                " WHERE r.item_id = ? AND r.reason = 'split' AND r.decided_at IS NULL"
                " AND a.label IS NULL AND a.late = 0 AND a.source NOT IN ('import', 'undo')"
                " AND a.created_at >= r.created_at AND NOT EXISTS (SELECT 1 FROM answers b"
                " WHERE b.item_id = a.item_id AND b.user_id = a.user_id AND b.late = 0"
                " AND b.source != 'import' AND b.id > a.id)",
                [item_id],
            ).fetchone()
            is not None
        )

    def _split_pending(self, item_id: str) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM reviews WHERE item_id = ? AND reason = 'split'"
                " AND decided_at IS NULL",
                [item_id],
            ).fetchone()
            is not None
        )

    def undo_resolution(
        self,
        item_id: str,
        user_id: str,
        since: str,
        votes_needed: int = 1,
        decision: int | None = None,
    ) -> Undo:
        """Reopen an item ``user_id`` decided at or after ``since``; their answer is retracted.
        ``decision``: the answer whose decision the Undo was offered for (``labels.decided_by``
        then); when the item has been decided again since (that decision undone, a new one
        made), the Undo is refused (``decided_again``): an Undo offered once undoes that one
        decision, not the next (None: an offer made before it said which, any decision).

        The window runs from the decision (the time of the answer that decided it), not from
        ``resolved_at``, which an admin's change (``hitl labels set``) moves to its own time.
        Only someone who voted for the label may undo it, and only while it is still the
        people's decision: once an admin changed it (``hitl labels set``, ``/hitl review``; in
        ``label_history``), an Undo would erase the admin's decision, so it is refused.

        The undo is itself an answer (source ``undo``), so history stays append-only. Answers
        given while the item was decided stay history (their senders were told so): see
        ``_reopen_answers``. The answers left may be a split vote (the undone vote had broken
        it, under HITL_VOTES ``votes_needed``): it goes back to review as a split, and its
        question holds no channel place, as after the vote that split it.
        """
        with self._immediate():
            row = self.db.execute(
                "SELECT l.label, l.annotators, l.decided_by, coalesce(a.created_at, l.resolved_at),"
                " i.source = 'gold' FROM labels l JOIN items i ON i.id = l.item_id"
                " LEFT JOIN answers a ON a.id = l.decided_by WHERE l.item_id = ?",
                [item_id],
            ).fetchone()
            if row is None:
                status = self._undone_by(item_id, user_id)
                if status is None:
                    return Undo(None, "not_yours")
                return Undo(None, "undone", reopened=status == "posted")
            label, annotators, decided_by, decided_at, gold_question = row
            changed = self._changed_since_decided(item_id, decided_at if gold_question else None)
            # An admin's label has its own voters (``set_label``): whoever voted on the item is
            # told who changed it, not that it is not theirs.
            if (
                changed is not None
                and self.db.execute(
                    "SELECT 1 FROM answers WHERE item_id = ? AND user_id = ? AND label IS NOT NULL",
                    [item_id, user_id],
                ).fetchone()
            ):
                return Undo(label, "changed", changed_by=changed[0], kept=bool(changed[1]))
            if user_id not in json.loads(annotators):
                return Undo(None, "not_yours")
            if changed is not None:
                return Undo(label, "changed", changed_by=changed[0], kept=bool(changed[1]))
            if decision is not None and decided_by is not None and decided_by != decision:
                return Undo(label, "decided_again")
            if decided_at < since:
                return Undo(None, "late")
            now = self.now()
            if decided_by is not None:
                self._reopen_answers(item_id, decided_by, user_id)
            insert_row(
                self.db,
                "answers",
                {
                    "item_id": item_id,
                    "user_id": user_id,
                    "label": None,
                    "source": "undo",
                    "created_at": now,
                    "dedupe_key": f"undo:{item_id}:{user_id}:{now}",
                },
            )
            self.db.execute("DELETE FROM labels WHERE item_id = ?", [item_id])
            self.db.execute(
                "UPDATE items SET status = 'posted', updated_at = ? WHERE id = ?", [now, item_id]
            )
            reopened = self.db.execute(
                "UPDATE posts SET closed_at = NULL, redraw_seq = redraw_seq + 1 WHERE id = ("
                "SELECT max(id) FROM posts WHERE item_id = ?) AND expired_at IS NULL"
                " AND taken_back IS NULL",
                [item_id],
            ).rowcount
            self._touch_expired(item_id)
            if not reopened:
                # decided by a late click on a question taken back as expired: it is not
                # reopened (it would expire again at once); nor one moved out of a channel no
                # longer asked in (its message says where it is asked now: reopened, it was an
                # open question nobody is asked in, the dispatcher neither filling nor counting
                # that channel); the item waits in the queue. One
                # never posted (decided in the labeling window) waits where it waited before,
                # as the window and the dispatcher find it: 'posted' with no question, nobody
                # was asked about it again and it counted as asked for good.
                self._take_back(item_id, now)
            self._queue_taken_back(item_id, now)
            posted = self.post_for_item(item_id) is not None
            # Reviews of the decision (its agreement, the model against it, its label retired
            # since) go with it; a gold miss names the answers that miss as they stand now: the
            # Undo took the undoer's back (no longer scored), so it goes when none is left.
            self.db.execute(
                "UPDATE reviews SET decided_at = ?, decided_by = ?, decision = 'undone'"
                " WHERE item_id = ? AND decided_at IS NULL"
                " AND reason IN ('low_agreement', 'contradicted', 'retired')",
                [now, user_id, item_id],
            )
            tally = self.tally(item_id)
            self._review_gold_miss(item_id, tally)
            if self._winner(tally, votes_needed) is None:
                self.flag_split(item_id, tally, max(votes_needed, 2))
            return Undo(label, reopened=bool(reopened), posted=posted)

    def _undone_by(self, item_id: str, user_id: str) -> str | None:
        """Whether ``item_id`` is open, taken back by ``user_id``'s Undo: their latest answer
        on it is their own undo (not one ``_reopen_answers`` gave them back). Open: its
        question again, or back in the queue (the question had expired, or it was decided in
        the labeling window before it was posted: a gold question among the waiting gold
        ones). Returns the item's status then (None: not undone by them)."""
        latest = self.db.execute(
            "SELECT a.source, a.dedupe_key, i.status FROM answers a JOIN items i"
            " ON i.id = a.item_id WHERE a.item_id = ? AND a.user_id = ? AND a.source != 'import'"
            " ORDER BY a.id DESC LIMIT 1",
            [item_id, user_id],
        ).fetchone()
        undone = (
            latest is not None
            and latest[0] == "undo"
            and str(latest[1]).startswith("undo:")
            and latest[2] in ("posted", "new", "queued", "gold")  # gold: a gold question
        )
        return latest[2] if undone else None

    def _changed_since_decided(
        self, item_id: str, gold_decided_at: str | None
    ) -> tuple[str, int] | None:
        """The latest change of the item's label by an admin since people decided it (in
        ``label_history``: ``hitl labels set``, ``/hitl review``; a rename or a merge only
        carries the label over): who made it, and whether it kept the label (confirmed it).

        Latest by the history's row ids, never by the times it records, and the decision needs
        no time either: a changed label never goes back to the votes (an Undo is refused, a
        removal sets the item aside), so every change of an item people decided came after the
        decision. A wall clock stepped back between the two stamped the admin's change before
        the decision, and the Undo then erased it. The one exception is a gold question, whose
        gold label an admin may change before it is asked: only its changes are told apart by
        their times, from the time of its decision (``gold_decided_at``; None: not gold)."""
        return self.db.execute(
            "SELECT user_id, new_label IS old_label FROM label_history WHERE item_id = ?"
            " AND action NOT IN ('rename', 'merge') AND (? IS NULL OR created_at >= ?)"
            " ORDER BY id DESC LIMIT 1",
            [item_id, gold_decided_at, gold_decided_at],
        ).fetchone()

    def _reopen_answers(self, item_id: str, decided_by: int, undoer: str) -> None:
        """Give each person who answered the item after its decision (answer ``decided_by``)
        back the answer that counted when it was decided: the one they gave while it was open,
        or none (an ``undo`` row, neither a vote nor a skip).

        A late answer was told "already decided" and kept as history; counting it once the
        item reopens would let it decide the item with the next person's click. The restored
        answer is appended (history stays append-only) so that everything that reads a
        person's latest answer agrees on it: the tally, the double-click check of
        ``record_answer`` (the same click again is a new answer) and the agreement stats."""
        late = self.db.execute(
            "SELECT DISTINCT user_id FROM answers WHERE item_id = ? AND id > ? AND user_id != ?"
            " AND source != 'import' ORDER BY user_id",
            [item_id, decided_by, undoer],
        ).fetchall()
        for (user,) in late:
            before = self.db.execute(
                "SELECT label, source, created_at FROM answers WHERE item_id = ? AND user_id = ?"
                " AND id <= ? AND source != 'import' ORDER BY id DESC LIMIT 1",
                [item_id, user, decided_by],
            ).fetchone()
            label, source, created_at = before or (None, "undo", self.now())
            insert_row(
                self.db,
                "answers",
                {
                    "item_id": item_id,
                    "user_id": user,
                    "label": label,
                    "source": source,
                    "created_at": created_at,
                    "dedupe_key": f"reopen:{item_id}:{user}:{decided_by}",
                },
            )

    def next_in_channels(
        self,
        user_id: str,
        channels: Collection[str],
        routes: Mapping[str, str],
        default_channel: str | None,
        exclude: Sequence[str] = (),
        first: str | None = None,
    ) -> str | None:
        """The next item for ``user_id`` to label in the modal, kept to ``channels``: their
        open posts the user has not answered (oldest first), then the waiting items that would
        be posted there, queued (highest priority first) before not scored yet. A waiting item
        goes where ``routes`` sends its predicted label, else to ``default_channel``.
        ``first``: that item, when it is still one of those (the item a window showed, whose
        click was not stored; the item an Undo reopened), before the others, even if in
        ``exclude`` (the items other windows hold, ``bot.slack.holds``: left out by id, each
        one a step more along the same index). An item the
        person answered is theirs again once their latest answer on it is an Undo (their
        own, or the none ``_reopen_answers`` gave them back): nothing of theirs counts on it,
        and its question takes their click, as in the channel."""
        if first is not None:
            again = self._next_in_channels(
                user_id, channels, routes, default_channel, (), only=first
            )
            if again is not None:
                return again
        return self._next_in_channels(user_id, channels, routes, default_channel, exclude)

    def still_next(
        self,
        user_id: str,
        channels: Collection[str],
        routes: Mapping[str, str],
        default_channel: str | None,
        item_id: str,
    ) -> bool:
        """Whether ``item_id`` is still one ``next_in_channels`` may give ``user_id`` (held by
        other windows or not): an open post of ``channels``, or a waiting item that would be
        posted there, that they have not answered. Looked up by its key: the labeling window
        checks on the event loop what its worker thread read (``bot.slack.modal``), in case
        the item was decided, deleted or answered meanwhile."""
        found = self._next_in_channels(user_id, channels, routes, default_channel, (), item_id)
        return found == item_id

    def _next_in_channels(
        self,
        user_id: str,
        channels: Collection[str],
        routes: Mapping[str, str],
        default_channel: str | None,
        exclude: Sequence[str],
        only: str | None = None,
    ) -> str | None:
        """``next_in_channels``, of item ``only`` alone when given."""
        wanted = sorted(set(channels))
        if not wanted:
            return None
        skip = list(exclude)
        one, one_arg = (" AND i.id = ?", [only]) if only is not None else ("", [])
        skip_marks = ",".join("?" * len(skip)) or "''"
        row = self.db.execute(
            "SELECT p.item_id FROM posts p JOIN items i ON i.id = p.item_id"
            f" WHERE p.channel IN ({','.join('?' * len(wanted))}) AND p.closed_at IS NULL"
            f" AND i.status = 'posted' AND p.item_id NOT IN ({skip_marks})"
            f" AND {NOT_ANSWERED.format(item='p.item_id')}{one} ORDER BY p.id LIMIT 1",
            [*wanted, *skip, user_id, *one_arg],
        ).fetchone()
        if row:
            return row[0]
        # Which waiting items are posted to one of ``wanted``: by their predicted label.
        routed_here = sorted(label for label, channel in routes.items() if channel in wanted)
        ours, args = [], []
        if routed_here:
            ours.append(f"predicted_label IN ({','.join('?' * len(routed_here))})")
            args += routed_here
        if default_channel in wanted:
            routed = sorted(routes)
            ours.append(
                f"predicted_label IS NULL OR predicted_label NOT IN ({','.join('?' * len(routed))})"
                if routed
                else "1"
            )
            args += routed
        if not ours:
            return None
        if only is None and routed_here and default_channel not in wanted:
            return self._next_of_labels(user_id, routed_here, skip)
        # one item is looked up by its id; the next one along the status index
        items = "items" if only is not None else "items INDEXED BY items_status_priority"
        for status in ("queued", "new"):
            row = self.db.execute(
                f"SELECT id FROM {items} WHERE status = ?"
                f" AND ({' OR '.join(ours)}) AND id NOT IN ({skip_marks})"
                f" AND {NOT_ANSWERED.format(item='items.id')}{one.replace('i.id', 'items.id')}"
                " ORDER BY priority DESC, rowid LIMIT 1",
                [status, *args, *skip, user_id, *one_arg],
            ).fetchone()
            if row:
                return row[0]
        return None

    def _next_of_labels(
        self, user_id: str, labels: Sequence[str], skip: Sequence[str]
    ) -> str | None:
        """``_next_in_channels``' waiting item for channels only routes send items to: the
        first, in the status index's order (queued before new), of the heads of ``labels``
        (the predicted labels routed there), each read along m049's index from its label's
        own items, past those in ``skip`` and those ``user_id`` answered. The status index
        would be read past every item routed elsewhere: all the waiting items when none is
        the channel's (0.3 s at 100k, on the event loop)."""
        skip_marks = ",".join("?" * len(skip)) or "''"
        for status in ("queued", "new"):
            heads = [
                row
                for label in labels
                if (
                    row := self.db.execute(
                        "SELECT id, priority, rowid FROM items INDEXED BY items_status_label"
                        " WHERE status = ? AND predicted_label = ?"
                        f" AND id NOT IN ({skip_marks})"
                        f" AND {NOT_ANSWERED.format(item='items.id')}"
                        " ORDER BY priority DESC, rowid LIMIT 1",
                        [status, label, *skip, user_id],
                    ).fetchone()
                )
            ]
            if heads:  # priority DESC puts NULL last, then rowid
                return min(heads, key=lambda r: (r[1] is None, -(r[1] or 0.0), r[2]))[0]
        return None

    def votes_in(self, item_ids: Collection[str]) -> dict[str, int]:
        """How many votes each of ``item_ids`` has in its tally (each person's latest counted
        answer, when it is a label), for the labeling window's holds: items absent have none
        (or do not exist). Read by id from the items' key and ``answers_counted``."""
        wanted = sorted(set(item_ids))
        if not wanted:
            return {}
        rows = self.db.execute(
            f"SELECT items.id, (SELECT count(*) FROM answers a WHERE {_votes_of('items.id')})"
            f" FROM items WHERE items.id IN ({','.join('?' * len(wanted))})",
            wanted,
        ).fetchall()
        return {item: n for item, n in rows if n}

    def has_answered_in(self, user_id: str, channel: str) -> bool:
        """Whether ``user_id`` has answered a question posted in ``channel`` (App Home, on the
        event loop, per routed channel). Read from the smaller side: the person's answers
        (m035's index), each item's posts looked up by item, or the channel's posts, each
        one's answer by this person looked up. Which is smaller is found on their indexes
        with a bound that grows fourfold (256, 1,024, …) until one side ends, so the cost
        follows the smaller of the two, not the person's answers (a heavy labeler: 26-49 ms
        for 60k, with a routed channel of a few thousand posts) nor the channel's history. A
        person with no answers costs one index look; a few of the person's answers are
        looked at first (one step of the index each)."""
        # :user, :channel, :bound (named: Python 3.12.0-3.12.3 warned that numbered ones
        # with a list were named, gh-117995): 1 or 0 once a side is known to end
        # within the bound (read from that side), -1 when both go on past it
        answers = (
            "FROM answers INDEXED BY answers_user WHERE user_id = :user AND source != 'import'"
        )
        by_person = (
            "EXISTS (SELECT 1 FROM answers a INDEXED BY answers_user WHERE a.user_id = :user"
            " AND a.source != 'import' {} AND EXISTS (SELECT 1 FROM posts p INDEXED BY"
            " posts_item WHERE p.item_id = a.item_id AND p.channel = :channel))"
        )
        first_few = by_person.format(  # the person's first 256 answers in the index
            f"AND a.item_id <= (SELECT item_id {answers} ORDER BY item_id LIMIT 1 OFFSET 255)"
        )
        query = (
            f"SELECT CASE WHEN (SELECT 1 {answers} LIMIT 1 OFFSET :bound) IS NULL"
            f" THEN {by_person.format('')} WHEN {first_few} THEN 1"
            " WHEN (SELECT 1 FROM posts INDEXED BY posts_open WHERE channel = :channel LIMIT 1"
            " OFFSET :bound) IS NULL THEN EXISTS (SELECT 1 FROM posts p INDEXED BY posts_open"
            " WHERE p.channel = :channel AND EXISTS (SELECT 1 FROM answers a"
            " INDEXED BY answers_user WHERE a.user_id = :user AND a.item_id = p.item_id"
            " AND a.source != 'import'))"
            f" ELSE -1 END {answers} LIMIT 1"  # no row: the person has no answers
        )
        bound = 256
        while True:
            row = self.db.execute(
                query, {"user": user_id, "channel": channel, "bound": bound}
            ).fetchone()
            if row is None or row[0] >= 0:
                return bool(row and row[0])
            bound *= 4

    def tally(self, item_id: str, through: int | None = None) -> Tally:
        """Each user's latest counted answer to the item (up to answer id ``through``, if
        given): votes by label (a renamed or merged label's votes count for its successor), and
        who skipped. Counted as ``iter_votes`` counts them: an imported answer is history, and
        so is one given while the item was decided or set aside (``answers.late``: its sender
        was told it did not count), whatever decides the item later (an admin's label)."""
        rows = self.db.execute(
            "SELECT a.user_id, coalesce(m.new, a.label), a.source FROM answers a"
            " LEFT JOIN label_aliases m ON m.old = a.label WHERE a.id IN ("
            " SELECT max(id) FROM answers WHERE item_id = ? AND source != 'import'"
            " AND late = 0 AND id <= ? GROUP BY user_id) ORDER BY a.id",
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

    def _winner(self, tally: Tally, votes_needed: int) -> str | None:
        """The label ``tally``'s majority decides the item with, but never a retired one (the
        item would be decided with a label that left training and export, reported undecided
        to producers and asked nowhere again): a majority for it decides nothing, and once
        enough people answered it is a split for an admin (``review_after_answer``). The votes
        for it still count as answers: in the split, the agreement, "N of M answers in"."""
        winner = tally.majority(votes_needed)
        if winner is not None and winner in self.labels_not_in_force().retired:
            return None
        return winner

    def counted_answer(self, item_id: str, user_id: str) -> tuple[int, str] | None:
        """The person's latest answer of the item that counts (not an import's, not one too
        late): its id and its source ('modal': given in a labeling window); None when none."""
        row = self.db.execute(
            "SELECT id, source FROM answers WHERE item_id = ? AND user_id = ?"
            " AND source != 'import' AND late = 0 ORDER BY id DESC LIMIT 1",
            [item_id, user_id],
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _latest_answer(self, item_id: str, user_id: str) -> tuple[str | None, bool] | None:
        """The user's latest answer on the item: its label as it counts now (a renamed or
        merged label's successor, as the tally counts it: a click on the renamed button, or on
        a button still drawn with the old name, is the same answer again) and whether it is an
        Undo."""
        row = self.db.execute(
            "SELECT coalesce(m.new, a.label), a.source FROM answers a LEFT JOIN label_aliases m"
            " ON m.old = a.label WHERE a.item_id = ? AND a.user_id = ? ORDER BY a.id DESC LIMIT 1",
            [item_id, user_id],
        ).fetchone()
        return None if row is None else (row[0], row[1] == "undo")

    def _resolve(self, item_id: str, label: str, tally: Tally, now: str) -> None:
        voters = tally.votes[label]
        total = sum(len(users) for users in tally.votes.values())
        insert_row(
            self.db,
            "labels",
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
        self._queue_label(item_id, now)

    def _close(self, item_id: str, status: str, now: str) -> None:
        self.db.execute(
            "UPDATE items SET status = ?, updated_at = ? WHERE id = ?", [status, now, item_id]
        )
        self.db.execute(
            "UPDATE posts SET closed_at = ? WHERE item_id = ? AND closed_at IS NULL",
            [now, item_id],
        )
        self._touch_expired(item_id)  # a message that said "put back in the queue" shows it

    def _touch_expired(self, item_id: str) -> None:
        """Redraw the item's questions taken back as expired (decided or reopened since)."""
        self.db.execute(
            "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE item_id = ?"
            " AND expired_at IS NOT NULL",
            [item_id],
        )

    def _touch_post(self, item_id: str) -> None:
        self.db.execute(
            "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE id = ("
            "SELECT max(id) FROM posts WHERE item_id = ?)",
            [item_id],
        )

    def owe_redraws(self, post_ids: Sequence[int]) -> None:
        """Mark the messages of ``post_ids`` behind the database: drawn by the next pass that
        may (``posts_to_redraw``), in this run or the next."""
        with self._immediate():
            self.db.conn.executemany(
                "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE id = ?",
                [(post_id,) for post_id in post_ids],
            )

    def owe_redraw_of(self, channel: str | None, ts: str | None, item_id: str) -> bool:
        """Mark the message at (``channel``, ``ts``), if it is a post of ``item_id``, behind
        the database (``owe_redraws``): one whose buttons were clicked although its item is
        decided (a redraw Slack lost, a restore of an older backup). Whether there was one;
        no write lock taken for none (a modal, an ephemeral or threaded message)."""
        post = self.db.execute(
            "SELECT id FROM posts WHERE channel = ? AND ts = ? AND item_id = ?",
            [channel, ts, item_id],
        ).fetchone()
        if post is None:
            return False
        self.owe_redraws([post[0]])
        return True

    def posts_to_redraw(self) -> list[dict[str, Any]]:
        """The posts whose message is behind the database, oldest first (from the partial
        index of those: as many rows as there are messages to redraw, not as posts ever made)."""
        return select_rows(self.db, "SELECT * FROM posts WHERE redraw_seq > drawn_seq ORDER BY id")

    def mark_drawn(self, post_id: int, seq: int) -> None:
        """Record the version of the message Slack now shows. Not worth an fsync per message:
        if it is lost, the message is drawn once more."""
        with self._unsynced():
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


def _run(steps: Generator[None, None, T]) -> T:
    """What a generator of steps (``QueueMixin._sample_rowids``) returns, run in one go."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
