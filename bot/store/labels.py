"""Changing decided labels: relabel, remove, with every change kept in ``label_history``.

The labels table holds each item's current label, which is what training and export read; a
change rewrites that row and appends the change (who, when, old, new, why) to the history.
Answers are never rewritten: they keep what people clicked. A change also closes the item's
pending reviews (``bot.store.reviews``) with the decision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from bot.errors import StoreError
from bot.labelnames import quoted

logger = logging.getLogger("bot.store")

# An item's latest decision in label_history: a rename or merge of the label set only carries
# its label over (``bot.store.labelset``), so it is passed over; and whether a person made it.
_LAST_DECISION = "SELECT max(id) FROM label_history WHERE action NOT IN ('rename', 'merge')"
_BY_A_PERSON = "h.action IN ('set', 'review') AND h.new_label IS NOT NULL"


@dataclass(frozen=True)
class LabelChange:
    """What ``set_label`` / ``remove_label`` did: the item's label before and after (None:
    no label), and whether anything changed. ``confirmed``: the label stayed, and is a person's
    decision now (it was the votes' or an import's), which training keeps."""

    item_id: str
    old: str | None
    new: str | None
    confirmed: bool = False

    @property
    def is_changed(self) -> bool:
        return self.old != self.new


class LabelsMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now``, ``self._immediate`` and the
    queue's ``tally``, ``_close`` and ``_touch_post``."""

    db: Database
    now: Callable[[], str]
    _immediate: Callable[[], AbstractContextManager[None]]
    tally: Callable[..., Any]
    _close: Callable[[str, str, str], None]
    _touch_post: Callable[[str], None]
    _queue_taken_back: Callable[[str, str], None]  # the producer mixin's
    _queue_label: Callable[[str, str], None]  # the producer mixin's
    drop_gold_miss: Callable[[str], None]  # the reviews mixin's
    _review_gold_miss: Callable[[str, Any], None]  # the reviews mixin's

    def _item_status(self, item_id: str) -> str:
        row = self.db.execute("SELECT status FROM items WHERE id = ?", [item_id]).fetchone()
        if row is None:
            raise StoreError(
                f"no item with id {quoted(item_id, 200)}; `hitl export` lists the labeled ones"
            )
        return row[0]

    def labels_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The label of each of ``ids`` stored with one: one statement per 500 ids (what an
        import compares its duplicate rows' labels with; ``current_label`` per row cost twice
        as much on a re-import of 100,000 labeled rows)."""
        found: dict[str, str] = {}
        unique = sorted(set(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT item_id, label FROM labels WHERE item_id IN ({marks})", chunk
            )
            found.update(rows.fetchall())
        return found

    def current_label(self, item_id: str) -> str | None:
        row = self.db.execute("SELECT label FROM labels WHERE item_id = ?", [item_id]).fetchone()
        return row[0] if row else None

    def set_label(
        self, item_id: str, label: str, *, user_id: str, reason: str = "", action: str = "set"
    ) -> LabelChange:
        """Make ``label`` the item's label, whatever it was (an import, people's votes, none
        yet: an open or set-aside item is resolved with it), in one transaction: the change goes
        to ``label_history``, the item's message is redrawn and its pending reviews are closed.
        The label counts as decided now (``resolved_at``), so the next retrain sees a change.
        On a gold item it replaces the gold label (what answers on it are scored against) and,
        as a `--gold` import's correction does, scores the answers again: a pending miss of the
        old label goes, a miss of the new one goes to review (not after a ``review`` decision:
        the admin decided with those answers in view).
        The label the item has already, decided by votes or an import, is recorded as a
        person's decision (``confirmed``): training keeps it (``decided_by_people``) where
        Dawid–Skene would weigh the votes otherwise.
        """
        with self._immediate():
            status = self._item_status(item_id)
            row = self.current_label(item_id)
            gold = self._gold_label(item_id)
            old = gold if gold is not None else row  # its label now (gold: what is scored)
            now = self.now()
            if row == label and gold in (None, label):
                if gold is not None or self._decided_by_person(item_id):
                    self._close_reviews(item_id, label, user_id, now)
                    return LabelChange(item_id, old, label)
                # Decided now (``resolved_at``), so the next retrain sees what it trains on
                # may have changed.
                self.db.execute(
                    "UPDATE labels SET resolved_at = ? WHERE item_id = ?", [now, item_id]
                )
                self._record_change(item_id, old, label, action, user_id, reason, now)
                self._touch_post(item_id)  # no webhook: the label a producer heard of stays
                self._close_reviews(item_id, label, user_id, now)
                logger.info("label of item %s confirmed by %s (%s)", item_id, user_id, action)
                return LabelChange(item_id, old, label, confirmed=True)
            rescore = gold is not None and gold != label and action != "review"
            if gold is not None and gold != label:
                # A gold item's gold label: the admin's label replaces it, and people's
                # answers are scored against it from now on.
                self.db.execute(
                    "UPDATE gold SET label = ?, created_at = ? WHERE item_id = ?",
                    [label, now, item_id],
                )
            if rescore:
                # A pending miss was scored against the old gold label: it goes (not decided
                # with the new one), and the answers are scored again below.
                self.drop_gold_miss(item_id)
            if status == "gold" and gold is not None:
                # Not asked yet: it keeps waiting (``next_gold``) as a gold question with this
                # label; resolving it would take it out of the gold questions for good.
                if gold == label:
                    self._close_reviews(item_id, label, user_id, now)
                    return LabelChange(item_id, old, label)
                self._record_change(item_id, old, label, action, user_id, reason, now)
                self._after_change(item_id, label, user_id, now)
                if rescore:
                    self._review_gold_miss(item_id, self.tally(item_id))
                logger.info("gold label of item %s changed by %s (%s)", item_id, user_id, action)
                return LabelChange(item_id, old, label)
            # The votes and agreement are people's for the label now (none, if nobody chose
            # it): the producer API and webhooks report them beside the label. Counted answers
            # only (``tally``): a click on the decided or set-aside item was told it did not
            # count, and is no voter of the admin's label.
            tally = self.tally(item_id)
            voters = list(tally.votes.get(label, []))
            total = sum(len(users) for users in tally.votes.values())
            agreement = len(voters) / total if total else 0.0
            if row is not None:
                self.db.execute(
                    "UPDATE labels SET label = ?, votes = ?, agreement = ?, annotators = ?,"
                    " resolved_at = ? WHERE item_id = ?",
                    [label, len(voters), agreement, json.dumps(voters or [user_id]), now, item_id],
                )
            else:
                self.db["labels"].insert(
                    {
                        "item_id": item_id,
                        "label": label,
                        "votes": len(voters),
                        "agreement": agreement,
                        "annotators": json.dumps(voters or [user_id]),
                        "resolved_at": now,
                        # the last answer that counted (later, late ones are history)
                        "decided_by": self.db.execute(
                            "SELECT max(id) FROM answers WHERE item_id = ? AND late = 0",
                            [item_id],
                        ).fetchone()[0],
                    }
                )
                self._close(item_id, "resolved", now)
            self._record_change(item_id, old, label, action, user_id, reason, now)
            self._after_change(item_id, label, user_id, now)
            if rescore:
                self._review_gold_miss(item_id, self.tally(item_id))
        logger.info("label of item %s changed by %s (%s)", item_id, user_id, action)
        return LabelChange(item_id, old, label)

    def remove_label(
        self, item_id: str, *, user_id: str, reason: str = "", action: str = "remove"
    ) -> LabelChange:
        """Take the item's label away (it leaves training and export) and set the item aside
        (status skipped: not asked again), in one transaction, with the change in history.
        An open item without a label (a split vote) is set aside too; a gold item stops being
        gold (its gold label is what training read)."""
        with self._immediate():
            status = self._item_status(item_id)
            gold = self._gold_label(item_id)
            old = self.current_label(item_id) or gold
            if old is None and status in ("resolved", "skipped"):
                raise StoreError(f"item {quoted(item_id, 200)} has no label to remove")
            now = self.now()
            self.db.execute("DELETE FROM labels WHERE item_id = ?", [item_id])
            # A gold item stops being gold (nobody is scored against it).
            self.db.execute("DELETE FROM gold WHERE item_id = ?", [item_id])
            self._close(item_id, "skipped", now)
            self._record_change(item_id, old, None, action, user_id, reason, now)
            self._after_change(item_id, "removed", user_id, now)
            self._queue_settled([item_id], now, by="id")  # set aside: its producer hears it
        logger.info("label of item %s removed by %s", item_id, user_id)
        return LabelChange(item_id, old, None)

    def remove_labels(
        self, item_ids: list[str], *, user_id: str, reason: str = ""
    ) -> list[LabelChange]:
        """``remove_label`` for each item, in one transaction: all are removed, or (an unknown
        id, an item with no label) none, with the ``StoreError`` naming the item."""
        with self._immediate():
            return [self.remove_label(i, user_id=user_id, reason=reason) for i in item_ids]

    def _gold_label(self, item_id: str) -> str | None:
        row = self.db.execute("SELECT label FROM gold WHERE item_id = ?", [item_id]).fetchone()
        return row[0] if row else None

    def decided_by_people(self) -> set[str]:
        """Items whose current label a person set (``hitl labels set``, a review decision, the
        label it had too): a re-aggregation of the votes leaves them as they are. A rename or a
        merge of the label set carries the label over and leaves who decided it as it was."""
        rows = self.db.execute(
            "SELECT h.item_id FROM label_history h JOIN labels l ON l.item_id = h.item_id"
            f" WHERE h.id IN ({_LAST_DECISION} GROUP BY item_id) AND {_BY_A_PERSON}"
        )
        return {row[0] for row in rows}

    def _decided_by_person(self, item_id: str) -> bool:
        """``decided_by_people`` for one item (whose label the caller knows is there)."""
        row = self.db.execute(
            f"SELECT 1 FROM label_history h WHERE h.id = ({_LAST_DECISION} AND item_id = ?)"
            f" AND {_BY_A_PERSON}",
            [item_id],
        ).fetchone()
        return row is not None

    def label_history(self, item_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Changes to decided labels, oldest first (of one item, or of all)."""
        where, args = ("item_id = ?", [item_id]) if item_id is not None else (None, [])
        rows = self.db["label_history"].rows_where(where, args, order_by="id", limit=limit)
        return [dict(row) for row in rows]

    def _record_change(
        self,
        item_id: str,
        old: str | None,
        new: str | None,
        action: str,
        user_id: str,
        reason: str,
        now: str,
    ) -> None:
        self.db["label_history"].insert(
            {
                "item_id": item_id,
                "old_label": old,
                "new_label": new,
                "action": action,
                "user_id": user_id,
                "reason": reason,
                "created_at": now,
            }
        )

    def _after_change(self, item_id: str, decision: str, user_id: str, now: str) -> None:
        self._touch_post(item_id)
        self._close_reviews(item_id, decision, user_id, now)
        # A producer who asked about the item hears of its new label (webhook outbox), or
        # that the label it may have been told of was taken back.
        if decision == "removed":
            self._queue_taken_back(item_id, now)
        else:
            self._queue_label(item_id, now)

    def _close_reviews(self, item_id: str, decision: str, user_id: str, now: str) -> None:
        self.db.execute(
            "UPDATE reviews SET decided_at = ?, decided_by = ?, decision = ?"
            " WHERE item_id = ? AND decided_at IS NULL",
            [now, user_id, decision, item_id],
        )
