"""The review queue: items people should look at again, until an admin (or the votes) decides.

An item goes to review for a reason (``REVIEW_REASONS``), one pending row per item and reason:
a split vote (``HITL_VOTES`` people answered and no label has a majority: its post stops counting
as open, so the channel gets the next question; a Skip that leaves fewer voters ends it, and
the post counts again), a decision with low agreement, a confident
model that says otherwise, a gold miss (an answer on a gold question that is not its gold label:
its detail names every counted answer that misses, as they stand after each answer, each Undo
and each change of the label set, and it goes when none does, or while its gold label is retired).
``flag_review`` is the one way in, for any reason: the answer path calls it through
``review_after_answer``, where gold answers are scored too; retiring a label
(``bot.store.labelset``) sends the items decided with it. ``set_label`` / ``remove_label``
(``bot.store.labels``) close an item's pending reviews with the decision; a later vote that
decides a split closes it, and so does a merge that gives a split's votes a majority
(``bot.store.labelset``); a decision by votes with a label in force closes a pending
``retired`` review.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from bot.store.records import Tally

logger = logging.getLogger("bot.store")

REVIEW_REASONS = {
    "split": "split vote",
    "low_agreement": "low agreement",
    "contradicted": "the model says otherwise",
    "gold_miss": "a gold answer missed",
    "retired": "its label was retired",
}
"""Why an item is in review: reason → how the review modal words it."""


@dataclass(frozen=True)
class ReviewRules:
    """When a decided item goes to review: its agreement below ``min_agreement``, or the
    model's guess another label with confidence at or above ``contradict_confidence``."""

    min_agreement: float = 0.0
    contradict_confidence: float = 1.01


class ReviewsMixin:
    """Methods of ``Store``; they use ``self.db`` and ``self.now``."""

    db: Database
    now: Callable[[], str]
    tally: Callable[..., Tally]

    def flag_review(self, item_id: str, reason: str, detail: str = "") -> bool:
        """Put the item in review for ``reason`` (once while it is pending); inside the
        caller's transaction, if any. Returns whether it was added."""
        if reason not in REVIEW_REASONS:
            raise ValueError(f"unknown review reason {reason!r}")
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO reviews (item_id, reason, detail, created_at)"
            " VALUES (?, ?, ?, ?)",
            [item_id, reason, detail, self.now()],
        )
        if cursor.rowcount:
            logger.info("item %s goes to review: %s", item_id, reason)
        return bool(cursor.rowcount)

    def review_after_answer(
        self, item_id: str, tally: Tally, winner: str | None, votes_needed: int, rules: ReviewRules
    ) -> None:
        """The answer path's checks, inside its transaction: an answer on a gold question that
        misses its gold label sends the item to review; a split vote goes to review; a vote that
        decides closes a pending split, and the decision goes to review if its agreement is low
        or a confident model says otherwise."""
        self._review_gold_miss(item_id, tally)
        n_voters = sum(len(users) for users in tally.votes.values())
        if winner is None:
            self.flag_split(item_id, tally, votes_needed)
            return
        self.close_reviews_by_votes(item_id, winner)
        agreement = len(tally.votes[winner]) / n_voters
        if agreement < rules.min_agreement:
            self.flag_review(item_id, "low_agreement", f"{agreement:.0%}: {_tally_text(tally)}")
        row = self.db.execute(
            "SELECT predicted_label, confidence, model_version FROM items WHERE id = ?", [item_id]
        ).fetchone()
        if row and row[0] not in (None, winner) and (row[1] or 0) >= rules.contradict_confidence:
            self.flag_review(item_id, "contradicted", f"model v{row[2]}: {row[0]} ({row[1]:.0%})")

    def flag_split(self, item_id: str, tally: Tally, votes_needed: int) -> None:
        """``tally`` has no majority: when as many people as ``votes_needed`` (two at least)
        voted, the item goes to review as a split (a pending one shows the votes as they are
        now), inside the caller's transaction. With fewer voters it is no split: one pending
        (a voter took their vote back with Skip) is closed, and its question holds a channel
        place again, as before the vote that split it."""
        n_voters = sum(len(users) for users in tally.votes.values())
        if votes_needed > 1 and n_voters >= votes_needed:
            if not self.flag_review(item_id, "split", _tally_text(tally)):
                # pending already: a voter changed their vote to another label ("Other…")
                self.db.execute(
                    "UPDATE reviews SET detail = ? WHERE item_id = ? AND reason = 'split'"
                    " AND decided_at IS NULL",
                    [_tally_text(tally), item_id],
                )
            # Answered by as many as it asked: it no longer holds one of the channel's
            # HITL_MAX_OPEN places (a team that all voted would wait on it for good). Its
            # message keeps its buttons: a later vote that makes a majority decides it.
            self.db.execute(
                "UPDATE posts SET closed_at = ? WHERE item_id = ? AND closed_at IS NULL",
                [self.now(), item_id],
            )
            return
        pending = self.db.execute(
            "SELECT id FROM reviews WHERE item_id = ? AND reason = 'split' AND decided_at IS NULL",
            [item_id],
        ).fetchall()
        if pending:  # (most answers find none: no write, and no time read, for them)
            self.db.execute(
                "UPDATE reviews SET decided_at = ?, decided_by = 'votes', decision = 'undone'"
                f" WHERE id IN ({', '.join('?' * len(pending))})",
                [self.now(), *(row[0] for row in pending)],
            )
            # Its question (still shown with its buttons, not taken back) is open again.
            self.db.execute(
                "UPDATE posts SET closed_at = NULL WHERE id = (SELECT max(p.id) FROM posts p"
                " WHERE p.item_id = ?) AND expired_at IS NULL AND EXISTS (SELECT 1 FROM items"
                " WHERE id = ? AND status = 'posted')",
                [item_id, item_id],
            )

    def close_reviews_by_votes(self, item_id: str, winner: str) -> None:
        """The votes decided ``item_id`` as ``winner``: its pending split is decided, and so is
        a pending ``retired`` review when ``winner`` is a label in force (the label it was
        about is no longer the item's: an Undo took it back and people decided again)."""
        reasons = ["split"]
        if winner not in self._retired_for_review():
            reasons.append("retired")
        self.db.execute(
            "UPDATE reviews SET decided_at = ?, decided_by = 'votes', decision = ?"
            f" WHERE item_id = ? AND reason IN ({','.join('?' * len(reasons))})"
            " AND decided_at IS NULL",
            [self.now(), winner, item_id, *reasons],
        )

    def _retired_for_review(self) -> set[str]:
        rows = self.db.execute("SELECT name FROM label_set WHERE status = 'retired'")
        return {row[0] for row in rows}

    def _review_gold_miss(self, item_id: str, tally: Tally) -> None:
        row = self.db.execute(  # under the label set in force, as the tally's labels are
            "SELECT coalesce(m.new, g.label) FROM gold g LEFT JOIN label_aliases m"
            " ON m.old = g.label WHERE g.item_id = ?",
            [item_id],
        ).fetchone()
        if row is None:
            return
        if row[0] in self.labels_not_in_force():
            # No button could be right (a gold question asked before its label retired): its
            # answers are not scored while the label is retired, so a miss waits in review no
            # longer; `hitl labels add` scores them again (``restate_gold_misses``).
            self.drop_gold_miss(item_id)
            return
        missed = {label: users for label, users in tally.votes.items() if label != row[0]}
        if not missed:
            # Nobody's counted answer misses it now (the one who missed changed it or took it
            # back with Undo): a pending review of a miss has nothing left to show.
            self.drop_gold_miss(item_id)
            return
        # ``<@U…> label, …; gold: G``, each label escaped (``gold_miss_label``): a label
        # may hold ", <@U…> ", and a raw ``<`` here is then always a voter's mention
        who = ", ".join(
            f"<@{u}> {gold_miss_label(label)}" for label, users in missed.items() for u in users
        )
        detail = f"{who}; gold: {gold_miss_label(row[0])}"
        if not self.flag_review(item_id, "gold_miss", detail):
            # One pending already: it names every miss as the answers stand now (a second
            # person's miss, a changed answer), not only those of the first one.
            self.db.execute(
                "UPDATE reviews SET detail = ? WHERE item_id = ? AND reason = 'gold_miss'"
                " AND decided_at IS NULL",
                [detail, item_id],
            )

    def drop_gold_miss(self, item_id: str) -> None:
        """Take the item's pending gold-miss review out of review (nothing left to show, or its
        gold label retired or changed: its answers are scored again, or not at all)."""
        self.db.execute(
            "DELETE FROM reviews WHERE item_id = ? AND reason = 'gold_miss' AND decided_at IS NULL",
            [item_id],
        )

    def restate_gold_misses(self, added: str | None = None) -> None:
        """After a change of the label set, inside its transaction: each pending gold miss is
        scored again under the labels in force, so its detail names them as renamed or merged
        (it is text, written when the miss happened), a merge that made every missed answer
        the gold label closes it, and a retire of its gold label takes it out of review. An
        ``added`` label (`hitl labels add`) scores again the answers on the gold questions it
        is the gold label of: a miss held back while it was retired is back in review."""
        rows = self.db.execute(
            "SELECT item_id FROM reviews WHERE reason = 'gold_miss' AND decided_at IS NULL"
        ).fetchall()
        items = {row[0] for row in rows}
        if added is not None:
            rows = self.db.execute(
                "SELECT g.item_id FROM gold g LEFT JOIN label_aliases m ON m.old = g.label"
                " WHERE coalesce(m.new, g.label) = ?"
                " AND EXISTS (SELECT 1 FROM answers a WHERE a.item_id = g.item_id)",
                [added],
            ).fetchall()
            items.update(row[0] for row in rows)
        for item_id in sorted(items):
            self._review_gold_miss(item_id, self.tally(item_id))

    def pending_review_count(self) -> int:
        return self.db.execute(
            "SELECT count(DISTINCT item_id) FROM reviews WHERE decided_at IS NULL"
        ).fetchone()[0]

    def next_review(self, exclude: Sequence[str] = ()) -> dict[str, Any] | None:
        """The item waiting longest in review (not in ``exclude``), with its reasons (reason,
        detail), current label and tally; None when nothing waits."""
        skip = list(exclude)
        marks = ",".join("?" * len(skip)) or "''"
        row = self.db.execute(
            "SELECT item_id FROM reviews INDEXED BY reviews_open WHERE decided_at IS NULL"
            f" AND item_id NOT IN ({marks}) ORDER BY id LIMIT 1",
            skip,
        ).fetchone()
        if row is None:
            return None
        item_id = row[0]
        reasons = self.db.execute(
            "SELECT reason, detail FROM reviews WHERE item_id = ? AND decided_at IS NULL"
            " ORDER BY id",
            [item_id],
        ).fetchall()
        return {"item_id": item_id, "reasons": [tuple(r) for r in reasons]}

    def reviews_of(self, item_id: str) -> list[dict[str, Any]]:
        """Every review of the item, oldest first, decided or not."""
        rows = self.db["reviews"].rows_where("item_id = ?", [item_id], order_by="id")
        return [dict(row) for row in rows]


def gold_miss_label(label: str) -> str:
    """A label as a ``gold_miss`` detail holds it: its ``&``, ``<`` and ``>`` escaped as Slack
    escapes them, so it reads as the label and never as a mention or a link, and the voters'
    mentions are the only ``<`` in the detail (``bot.slack.review.why_detail``). A plain
    label is stored as it is."""
    return label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tally_text(tally: Tally) -> str:
    return ", ".join(f"{label} {len(users)}" for label, users in tally.votes.items())
