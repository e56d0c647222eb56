"""Gold items: items whose right label is known, mixed into the questions to score people.

An item imported as gold is stored with status ``gold`` (out of the queue, never scored in
the background) and a row in ``gold``; the dispatcher takes them one at a time
(``next_gold``) at HITL_GOLD_RATE and posts each once, as it posts any item. An item already
stored (an export read back, say) is marked gold: it keeps its votes, and those votes are
scored too (one that misses the gold label sends the item to review). One rule for every
count: a gold item not asked yet waits with status ``gold`` (``GOLD_WAITING``), so a stored
item marked gold while it waited in the queue (new, queued) becomes a gold question too; one
posted, decided (by people, or by the model: ``auto``, what the producer API said, with no
webhook to come) or set aside keeps its status. With HITL_GOLD_RATE=0 nothing draws gold
questions, but one that waited in the queue when it was marked is still asked
(``next_gold(marked=True)``, in the dispatcher's pick's place): marking it does not take it
out of labelling. The items waiting to be asked are those of ``WAITING``
(``Store.waiting_count``, `/hitl stats`, App Home), gold questions among them.
A gold item whose gold label is not in force (a retired one: no button could be right) is not
asked, and the answers given to it are not scored, until the label is back (``next_gold``,
``gold_in_force``); one open in Slack at the retire is taken back as an unanswered question is
(``Store.change_label_set``), and a retired label's gold questions not asked yet are held back,
not waiting (``gold_held_back``). ``training_data`` leaves gold items out: a model that
learned a gold answer would give it away in its guess on the gold question; ``training_rows``
also leaves out the labelled items that repeat a gold text under another id (up to case,
spacing and punctuation).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from bot.store.labelset import NotInForce
from bot.store.queue import NOT_ANSWERED
from bot.store.records import LabelSetMoved, NewItem, count_new_items, same_text

# The statuses of the items waiting to be asked, and of the gold questions among them.
WAITING = ("new", "queued", "gold")
GOLD_WAITING = "gold"


# Where a page of gold items ended (``GoldMixin.gold_page``): its last item's priority and rowid.
GoldCursor = tuple[float | None, int]


@dataclass(frozen=True)
class GoldResult:
    added: int  # new items, waiting to be asked
    marked: int  # items already stored, now gold
    unchanged: int  # already gold with this label
    conflicts: tuple[int, ...] = ()  # positions of rows whose id is stored with another text


class GoldMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and the queue's ``tally`` and
    the reviews' ``_review_gold_miss``."""

    db: Database
    now: Callable[[], str]
    tally: Callable[..., Any]
    _review_gold_miss: Callable[[str, Any], None]
    drop_gold_miss: Callable[[str], None]  # the reviews mixin's
    label_aliases: Callable[[], dict[str, str]]  # the label set's (``LabelSetMixin``)
    labels_not_in_force: Callable[..., NotInForce]
    write_result: Any

    def add_gold(
        self, rows: Iterable[NewItem], *, label_mark: dict[str, Any] | None = None
    ) -> GoldResult:
        """Store gold rows (each with a label) in one transaction: new ids as items waiting to
        be asked (status gold), ids already stored marked gold with the row's label. A row
        whose id is stored with another text (``same_text``) is a conflict, left out: its label
        is not that item's answer (``GoldResult.conflicts``, as ``add_items``)."""
        now = self.now()
        added = marked = unchanged = 0
        conflicts: list[int] = []
        with self._immediate():
            if label_mark is not None and self.label_set_mark() != label_mark:
                raise LabelSetMoved  # the caller checked the labels against another set
            out = self.labels_not_in_force()
            for index, row in enumerate(rows):
                assert row.label is not None, "a gold row has a label"
                known = self.db.execute(
                    "SELECT g.label, i.text FROM items i LEFT JOIN gold g ON g.item_id = i.id"
                    " WHERE i.id = ?",
                    [row.id],
                ).fetchone()
                if known is not None and not same_text(known[1], row.text):
                    conflicts.append(index)
                    continue
                if known is None:
                    meta = json.dumps(row.meta, ensure_ascii=False) if row.meta else "{}"
                    self.db.execute(
                        "INSERT INTO items (id, text, meta, source, status, created_at,"
                        " updated_at) VALUES (?, ?, ?, 'gold', 'gold', ?, ?)",
                        [row.id, row.text, meta, now, now],
                    )
                    count_new_items(self.db.conn, {"gold": 1})
                    added += 1
                elif known[0] == row.label:
                    unchanged += 1
                    self._wait_as_gold(row.id, now)  # one marked before gold items waited so
                    continue
                else:
                    marked += 1
                    if known[0] is not None:
                        # Its gold label changes: a pending miss was scored against the old
                        # one (the answer may be right now); it is scored again just below.
                        self.drop_gold_miss(row.id)
                self.db.execute(
                    "INSERT OR REPLACE INTO gold (item_id, label, created_at) VALUES (?, ?, ?)",
                    [row.id, row.label, now],
                )
                if known is not None:
                    # its earlier answers are scored now: a miss to review (not while its gold
                    # label is not in force, a retired one: no answer could be right)
                    if row.label not in out:
                        self._review_gold_miss(row.id, self.tally(row.id))
                    self._wait_as_gold(row.id, now)
            result = GoldResult(added, marked, unchanged, tuple(conflicts))
            self.write_result = result  # for a caller stopped just after the commit
        return result

    def _wait_as_gold(self, item_id: str, now: str) -> None:
        """A gold item waiting in the queue (new, queued) waits as a gold question (status
        gold: ``GOLD_WAITING``). One posted, decided or set aside keeps its status, and so does
        one the model decided (auto): the producer API said ``auto`` and would turn to
        ``needs_review`` with no webhook to come (nothing asks it with HITL_GOLD_RATE=0)."""
        self.db.execute(
            "UPDATE items SET status = 'gold', updated_at = ? WHERE id = ?"
            " AND status IN ('new', 'queued')",
            [now, item_id],
        )

    def next_gold(
        self,
        limit: int,
        exclude: Sequence[str] = (),
        *,
        marked: bool = False,
        configured: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` gold items not asked yet, oldest first (read from an index).
        ``marked``: only the stored items marked gold while they waited in the queue (not one
        imported as gold, source ``gold``), which the dispatcher asks with HITL_GOLD_RATE=0:
        marking one gold does not take it out of labelling. A gold item whose gold label is
        not in force (``labels_not_in_force``; ``configured``: HITL_LABELS) is not asked: no
        button could be right (a retired label's; asked once `hitl labels add` brings it
        back)."""
        return self.gold_page(limit, exclude, marked=marked, configured=configured)[0]

    def gold_page(
        self,
        limit: int,
        exclude: Sequence[str] = (),
        *,
        marked: bool = False,
        configured: Sequence[str] = (),
        after: GoldCursor | None = None,
        sources: bool = False,
        unanswered_by: str | None = None,
        item_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], GoldCursor | None]:
        """``next_gold``'s items a page at a time: up to ``limit`` of them, from the one after
        ``after`` (the cursor a page before returned) in the same order, and the cursor of this
        page's last item (None when no item follows). The dispatcher reads pages until one of
        them holds a gold question for the channel it posts to (its route follows the
        champion's guess, made in a worker thread). Each page reads the index from where the
        last one ended: a seek among the gold items imported as gold (no priority, by rowid),
        so a look costs the items it reads however many wait before them; the few marked gold
        while they waited (with a priority) are passed over again. ``sources``: each item also
        says whether it was ``marked`` gold while it waited (True) or imported as gold.
        ``unanswered_by``: only the items that person has not answered (their latest answer on
        it an Undo, or none: the labeling window's gold, ``bot.slack.windowgold``), each looked
        up by id in the answers' index; ``item_id``: that item alone, if it is one of them."""
        skip = list(exclude)
        marks = ",".join("?" * len(skip)) or "''"
        # marked: m037's partial index holds them alone (not every gold item imported as new)
        index, only = (
            ("items_marked_gold", " AND source != 'gold'")
            if marked
            else ("items_status_priority", "")
        )
        args: list[Any] = [*skip]
        if after is not None:  # in index order: priority DESC (NULL last), then rowid
            priority, rowid = after
            if priority is None:
                only += " AND priority IS NULL AND rowid > ?"
                args.append(rowid)
            else:
                only += " AND (priority < ? OR (priority = ? AND rowid > ?) OR priority IS NULL)"
                args += [priority, priority, rowid]
        if unanswered_by is not None:
            only += f" AND {NOT_ANSWERED.format(item='items.id')}"
            args.append(unanswered_by)
        if item_id is not None:  # by its key, not along the index past every gold item
            only += " AND id = ?"
            args.append(item_id)
        kept = self.labels_not_in_force(configured).kept
        if kept is not None:  # one lookup per gold item read: gold items are few
            only += (
                " AND NOT EXISTS (SELECT 1 FROM gold g LEFT JOIN label_aliases m"
                " ON m.old = g.label WHERE g.item_id = items.id"
                " AND coalesce(m.new, g.label) NOT IN (SELECT value FROM json_each(?)))"
            )
            args.append(json.dumps(sorted(kept)))
        by_index = f" INDEXED BY {index}" if item_id is None else ""
        rows = self.db.execute(
            f"SELECT id, text, priority, rowid, source FROM items{by_index}"
            f" WHERE status = 'gold' AND id NOT IN ({marks}){only}"
            " ORDER BY priority DESC, rowid LIMIT ?",
            [*args, limit],
        ).fetchall()
        page = [
            {"id": i, "text": t, "model_version": None, "predicted_label": None, "ranked": None}
            | ({"marked": source != "gold"} if sources else {})
            for i, t, _, _, source in rows
        ]
        cursor = (rows[-1][2], rows[-1][3]) if rows and len(rows) >= limit else None
        return page, cursor

    def gold_held_back(self) -> int:
        """The gold questions not asked yet (status gold) whose gold label is retired: held
        back, not asked (``next_gold``) while it is (the retire's reply counts them), so not
        waiting (``Store.waiting_count``, `/hitl stats`). 0 at once, without reading an item,
        while no label is retired; else one lookup per gold item (gold items are few)."""
        retired = self.db.execute(
            "SELECT json_group_array(name) FROM label_set WHERE status = 'retired'"
        ).fetchone()[0]
        if retired in (None, "[]"):
            return 0
        return self.db.execute(
            "SELECT count(*) FROM gold g LEFT JOIN label_aliases m ON m.old = g.label"
            " JOIN items i ON i.id = g.item_id WHERE i.status = 'gold'"
            " AND coalesce(m.new, g.label) IN (SELECT value FROM json_each(?))",
            [retired],
        ).fetchone()[0]

    def gold_texts(self) -> list[str]:
        """Every gold item's text (reads them all: for a worker thread or the CLI). Training
        leaves out a labelled item whose text is one of these up to case, spacing and
        punctuation (``bot.learning.quality.training_rows``): the same ticket under another id,
        a reviewer's sheet imported without ids."""
        rows = self.db.execute("SELECT i.text FROM gold g JOIN items i ON i.id = g.item_id")
        return [text for (text,) in rows]

    def gold_labels(self, unseen_by: str | None = None) -> dict[str, str]:
        """Every gold item's label (reads them all: for a worker thread or the CLI); with
        ``unseen_by`` (an ISO time: when a model's training rows were read), only the items
        that model cannot have trained on: gold by then (gold never trains), or without a label
        decided by then (new gold, or decided since). An item decided, then made gold after
        (`hitl export`, then `hitl import --gold`) was among that model's training rows."""
        if unseen_by is None:
            return dict(self.db.execute("SELECT item_id, label FROM gold"))
        return dict(
            self.db.execute(
                "SELECT g.item_id, g.label FROM gold g LEFT JOIN labels l ON l.item_id = g.item_id"
                " WHERE julianday(g.created_at) <= julianday(:at) OR l.item_id IS NULL"
                " OR julianday(l.resolved_at) > julianday(:at)",
                {"at": unseen_by},
            )
        )

    def is_gold(self, item_id: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM gold WHERE item_id = ?", [item_id]).fetchone()
            is not None
        )

    def gold_votes_of(
        self, user_id: str, configured: Sequence[str] = ()
    ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
        """``user_id``'s counted votes on gold items (as ``iter_votes`` counts them: not an
        answer given while the item was decided or set aside, ``answers.late``) and those
        items' gold labels: one person's gold answers, for their App Home. Not those of a gold
        item whose gold label is not in force (``labels_not_in_force``; ``configured``:
        HITL_LABELS), a retired one: they are not scored while it is (``gold_in_force``)."""
        rows = self.db.execute(
            "SELECT a.item_id, a.user_id, a.label, g.label FROM answers a"
            " JOIN gold g ON g.item_id = a.item_id WHERE a.id IN ("
            " SELECT max(b.id) FROM answers b JOIN gold g2 ON g2.item_id = b.item_id"
            " WHERE b.user_id = ? AND b.source != 'import' AND b.late = 0 GROUP BY b.item_id)"
            " AND a.label IS NOT NULL AND a.source != 'undo'",
            [user_id],
        ).fetchall()
        gold = self.gold_in_force({i: g for i, _, _, g in rows}, configured)
        return [(i, u, lb) for i, u, lb, _ in rows if i in gold], gold

    def gold_in_force(
        self, gold: Mapping[str, str], configured: Sequence[str] = ()
    ) -> dict[str, str]:
        """``gold`` (item → gold label, as ``gold_labels`` reads it) under the label set in
        force: a renamed or merged label as its successor, and without the items whose gold
        label is not in force (``labels_not_in_force``; ``configured``: HITL_LABELS): a
        retired label's gold question is not asked (``next_gold``) and the answers given to it
        are not scored, so nobody is counted wrong where no button could be right. They are
        kept, and count again once the label is added back. One read of the label set."""
        aliases = self.label_aliases()
        out = self.labels_not_in_force(configured)
        mapped = {item: aliases.get(label, label) for item, label in gold.items()}
        return {item: label for item, label in mapped.items() if label not in out}
