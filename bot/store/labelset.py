"""A label set that can change: add, rename, merge and retire labels.

Until the first change nothing is stored, and the set in force is ``HITL_LABELS`` or the
imported labels (``bot.labelset``). The first change stores that set, changed; from then on the
stored set wins. A rename or merge rewrites the decided labels (each change in
``label_history``, so training uses the new mapping) and maps the old label to its successor
(``label_aliases``): a click on an old button, and an old answer in a tally, count for the new
label; so a name renamed or merged away is not given to another label (``_refuse_reused``),
whose answers the old ones would become. A retired label's decided items leave training and go
to review (reason ``retired``) until an admin gives them a label in force, or the label is
added back (which decides those reviews); meanwhile the producer API and webhooks report them
as not decided (``NotInForce.undecides``). Answers themselves keep what people clicked. Every
change redraws the open questions, and queues in its transaction a webhook delivery for each
item with a callback_url whose reported label it changes (``_queue_relabeled``, one
statement): a rename's or merge's new name, a retired label taken back, a label added back.

The items' stored predictions are under the label set in force (``set_predictions``): their
``predicted_label`` and ``confidence`` are the best label in force and its own probability
(``in_force``), never a retired label's. A change touches no item row (it holds the write
lock for the label set's rows only, at any number of items): the predictions it moves are put
under the new set afterwards, a short transaction per chunk of items (``restate_predictions``),
by the server's scorer when it sees the change count move and by `hitl labels` after its
change (``bot.labelset.restate_all``). An item decided by the model (``auto``) whose confidence
falls below HITL_THRESHOLD then waits for people again.

A label of decided items that the set in force never had (imported before HITL_LABELS named a
narrower set, or kept by an older version beside a stored set: ``labels_outside``) is not in
force either (``NotInForce``, ``labels_not_in_force``): its items leave training and its
probability is no other label's confidence, as a retired label's; unlike those, they do not go
to review (nobody retired it). A model's guesses of such a label are not stored at all
(``without``; ``restate_outside`` takes them out of predictions stored before), and
``merge`` takes it, relabeling its items into a label in force.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlite_utils import Database

from bot.errors import StoreError
from bot.labelnames import (
    case_twin,
    how_twins_differ,
    label_key,
    label_problem,
    looks_the_same,
    only_twin,
    quoted,
    taken_as,
)
from bot.store.records import Tally

ACTIONS = ("add", "rename", "merge", "retire")


def in_force(
    guesses: Iterable[tuple[str, float]], aliases: Mapping[str, str], retired: Container[str]
) -> list[tuple[str, float]]:
    """The model's guesses under the label set in force: a renamed or merged label shows as
    its successor (once, at its best guess), a retired one not at all.

    The probabilities are the model's own, not renormalised over the labels in force: an item
    the model places in a retired label has a low confidence in every label in force, and goes
    to people. A merged label's best guess, not the sum, stands for its successor: so the
    questions (``bot.slack.questions``, which show the guess the question was asked with beside
    the newer model's) and the producer API show the same confidence."""
    kept: dict[str, float] = {}
    for label, p in guesses:
        label = aliases.get(label, label)
        if label not in retired and label not in kept:
            kept[label] = float(p)
    return list(kept.items())


class NotInForce:
    """The labels not in force, for ``in_force``'s ``retired`` and the filters of training:
    with ``kept`` (the set in force when it is a fixed one: the stored set, or HITL_LABELS),
    every label outside it (a retired one, and a label of decided items that the set never
    had: imported before HITL_LABELS named a narrower set, or by an older version); without
    (the set is the imported labels), none. Built once per read (one small query), then a
    set lookup per label: never a scan per item or per click.

    ``retired``: those of them an admin retired (``hitl labels retire``). An item decided with
    one is not decided any more (``undecides``): it left training and export and waits in
    review, so the producer API and webhooks report it as waiting, with no label. A label the
    set never had still decides its items (they are exported, and reported, with it)."""

    __slots__ = ("kept", "retired")

    def __init__(self, kept: Iterable[str] | None, retired: Iterable[str] = ()) -> None:
        self.kept = frozenset(kept) if kept is not None else None
        self.retired = frozenset(retired)

    def __contains__(self, label: object) -> bool:
        return self.kept is not None and label not in self.kept

    def undecides(self, label: str | None) -> bool:
        """Whether an item decided with ``label`` counts as not decided: the label was
        retired."""
        return label is not None and label in self.retired

    def __repr__(self) -> str:
        return f"NotInForce({sorted(self.kept) if self.kept is not None else None})"


def without(
    ranked: Iterable[Sequence[Any]], aliases: Mapping[str, str], out: Container[str]
) -> list[list[Any]]:
    """A prediction's ranked guesses without those whose label (a renamed or merged one as
    its successor) is in ``out`` (``NotInForce``), in order, each with its own probability
    (none renormalised): what is stored of a model that knows labels outside the set in
    force, so no reader (a question, the producer API, a webhook) shows one."""
    return [list(g) for g in ranked if aliases.get(str(g[0]), str(g[0])) not in out]


def top_in_force(
    ranked: Iterable[Sequence[Any]], aliases: Mapping[str, str], retired: Container[str]
) -> tuple[str | None, float]:
    """The label in force the model ranks best, with its own probability (``in_force``); None
    and 0.0 when no label in force is among the guesses (all of them were retired)."""
    kept = in_force(((str(g[0]), float(g[1])) for g in ranked), aliases, retired)
    return kept[0] if kept else (None, 0.0)


class ChangedSet(list[str]):
    """The label set in force after one change (``change_label_set``: its active labels in
    order, as a list), with the change as it was made: ``change``, its row of
    ``label_set_changes`` (``label``, ``new_label``: as stored, in NFC), ``labeled`` (a retire:
    how many items are decided with the label) and ``gold`` (a retire: how many gold items
    have it as their gold label: not asked nor scored while it is retired), read in the
    change's transaction. A caller words its answer from these, never from the newest change
    stored: another admin's change may have come after this one."""

    def __init__(
        self,
        labels: Iterable[str],
        change: Mapping[str, Any],
        labeled: int = 0,
        gold: int = 0,
        taken: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(labels)
        self.change = dict(change)
        self.labeled = labeled
        self.gold = gold
        self.taken = dict(taken or {})

    def taken_notes(self) -> list[str]:
        """A line for each name typed that the change took as the label of the set it is a
        twin of (``taken``: typed → stored; "card payment" typed with a plain space for the
        label imported with a no-break space), naming the label as stored."""
        return [taken_as(typed, stored) for typed, stored in self.taken.items()]

    @property
    def made(self) -> str:
        """The label the change made (add, rename), merged into (merge) or retired (retire),
        as stored."""
        return str(self.change["new_label"] or self.change["label"])

    def gold_note(self, shown: str) -> str:
        """After a retire: " N gold questions with the gold label X: ..." (``shown``: the
        label as the caller shows it), which are not asked nor scored while it is retired (no
        button could be right); "" when it was no gold item's label."""
        n = self.gold
        if n == 0:
            return ""
        one = n == 1
        return (
            f" {n} gold question{'' if one else 's'} with the gold label {shown}:"
            f" {'it is' if one else 'they are'} not asked, and {'its' if one else 'their'}"
            " answers not scored, while the label is retired."
        )


class LabelSetMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    _immediate: Callable[[], AbstractContextManager[None]]
    _unsynced: Callable[[], AbstractContextManager[None]]
    write_result: Any
    tally: Callable[..., Tally]
    _resolve: Callable[[str, str, Tally, str], None]
    close_reviews_by_votes: Callable[[str, str], None]
    restate_gold_misses: Callable[[str | None], None]
    _queue_relabeled: Callable[..., int]  # the producer mixin's (webhook outbox)
    _queue_restated: Callable[[list[int], list[int], str], None]  # the producer mixin's
    _statuses_made_under: Callable[[float | None], None]  # the queue mixin's
    _take_back_all: Callable[..., None]  # the queue mixin's

    def stored_labels(self) -> list[str] | None:
        """The stored label set's active labels in order, or None before the first change."""
        rows = self.db.execute("SELECT name, status FROM label_set ORDER BY position").fetchall()
        return [name for name, status in rows if status == "active"] if rows else None

    def retired_labels(self) -> set[str]:
        rows = self.db.execute("SELECT name FROM label_set WHERE status = 'retired'")
        return {row[0] for row in rows}

    def label_aliases(self) -> dict[str, str]:
        """Renamed and merged labels → the label they count for now."""
        return dict(self.db.execute("SELECT old, new FROM label_aliases").fetchall())

    def labels_not_in_force(self, configured: Sequence[str] = ()) -> NotInForce:
        """The labels not in force (``NotInForce``): outside the stored set once it was
        changed, else outside ``configured`` (HITL_LABELS) when it is set, else none (the
        imported labels are the set). One read of the label set's few rows."""
        rows = self.db.execute("SELECT name, status FROM label_set ORDER BY position").fetchall()
        if not rows:
            return NotInForce(configured or None)
        return NotInForce(
            [name for name, status in rows if status == "active"],
            [name for name, status in rows if status == "retired"],
        )

    def labels_never_in_force(self, configured: Sequence[str] = ()) -> NotInForce:
        """``labels_not_in_force`` but for the retired labels: the labels the set in force
        never had, which a model's stored guesses are stripped of (a retired label's stay,
        so adding it back takes its items back: ``restate_predictions``)."""
        out = self.labels_not_in_force(configured)
        if out.kept is None:
            return out
        return NotInForce(out.kept | out.retired)

    def labels_outside(self, configured: Sequence[str] = ()) -> list[tuple[str, int]]:
        """The labels of decided items that are not in the set in force and were not retired
        (``labels_not_in_force``): imported before HITL_LABELS named a narrower set, or by an
        older version, they never were in the set. With how many items each, most first.
        Reads the per-label counts (one row per label)."""
        out = self.labels_not_in_force(configured)
        if out.kept is None:
            return []
        gone = self.retired_labels() | set(self.label_aliases())
        rows = self.db.execute("SELECT label, n FROM label_counts WHERE n > 0 ORDER BY n DESC")
        found = [(label, n) for label, n in rows if label in out and label not in gone]
        return sorted(found, key=lambda row: (-row[1], row[0]))

    def restate_outside(
        self,
        configured: Sequence[str],
        after: int,
        limit: int,
        threshold: float,
        max_changes: int = 50,
    ) -> tuple[int, int | None]:
        """One bounded step of the pass that puts the stored predictions under a set in force
        that leaves out labels it never had (``labels_never_in_force``, ``configured``:
        HITL_LABELS; ``restate_predictions`` moves those a change moved): the next ``limit``
        unlabeled items after rowid ``after`` whose stored prediction names such a label,
        each given the best label in force in its ``ranked`` with that label's own
        probability, and ``ranked`` without the labels never in force (``without``): ``auto``
        at or above ``threshold``, ``queued`` below (a label that was never in the set decides
        nothing; one people have started answering waits for them, as ``set_predictions``
        decides). Once past the last unlabeled item, the open questions' items too, their
        status kept. An item it leaves to the model that waited for people (``queued``) ended
        its wait without a label, and one left to the model before whose label moves was told
        a label no longer in force: their producers hear it, as after a rename or a retire
        (``_queue_restated``: the statuses read with the step's rows before, a statement or
        two for the step after). Returns (items changed, the last rowid read: None once the
        pass is done), as ``restate_predictions``."""
        from bot.store.migrations import UNLABELED

        out, never = self.labels_not_in_force(configured), self.labels_never_in_force(configured)
        if never.kept is None:
            return 0, None
        # SQLite reads the few labels of each item's ``ranked`` itself: only an item that
        # names a label outside ``kept`` (or an old name, which its successor may keep) is
        # parsed here, so a pass over a million items where none moves writes nothing.
        kept = json.dumps(sorted(never.kept))
        may_move = (
            "CASE WHEN confidence IS NOT NULL AND (predicted_label NOT IN"
            " (SELECT value FROM json_each(:kept)) OR EXISTS (SELECT 1 FROM"
            " json_each(coalesce(ranked, '[]')) g WHERE json_extract(g.value, '$[0]') NOT IN"
            " (SELECT value FROM json_each(:kept)))) THEN coalesce(ranked, '[]') END"
        )
        changed = 0
        with self._unsynced():  # a pass lost in a crash is run again (at the next start)
            aliases = self.label_aliases()
            rows = self.db.execute(
                f"SELECT rowid, predicted_label, confidence, {may_move}, status"
                f" FROM items INDEXED BY items_unlabeled WHERE {UNLABELED} AND ({UNLABELED}) = 1"
                " AND rowid > :after ORDER BY rowid LIMIT :limit",
                {"kept": kept, "after": after, "limit": limit},
            ).fetchall()
            last = rows[-1][0] if rows else None
            if not rows:
                rows = self.db.execute(
                    f"SELECT rowid, predicted_label, confidence, {may_move}, status FROM items"
                    " WHERE status = 'posted'",
                    {"kept": kept},
                ).fetchall()
            now = self.now()
            waited: list[int] = []  # the step's items that waited for people (read above)
            left: list[int] = []  # and those left to the model whose label moves
            for rowid, label, confidence, ranked, status in rows:
                if ranked is None:
                    continue  # not scored yet, or every label it names is in force
                guesses = json.loads(ranked) or ([[label, confidence]] if label else [])
                named = {aliases.get(str(g[0]), str(g[0])) for g in guesses}
                if not any(name in never for name in named):
                    continue  # an old name whose successor is in force (or retired)
                kept_guesses = without(guesses, aliases, never)
                new_label, new_confidence = top_in_force(kept_guesses, aliases, out)
                self.db.execute(
                    "UPDATE items SET predicted_label = ?, confidence = ?, ranked = ?,"
                    " updated_at = ?, status = CASE WHEN status = 'posted' THEN status"
                    " WHEN ? >= ? AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id ="
                    " items.id AND a.source != 'import' AND a.late = 0) THEN 'auto'"
                    " ELSE 'queued' END WHERE rowid = ?",
                    [
                        new_label,
                        new_confidence,
                        json.dumps(kept_guesses),
                        now,
                        new_confidence,
                        threshold,
                        rowid,
                    ],
                )
                changed += 1
                if status == "queued":
                    waited.append(rowid)
                elif status == "auto" and new_label != label:
                    left.append(rowid)  # its producer was told a label left out of the set
                if changed == 1:
                    self._statuses_made_under(threshold)
                if changed >= max_changes and last is not None:
                    # their producers hear it (a statement or two for the step)
                    self._queue_restated(waited, left, now)
                    return changed, rowid
            self._queue_restated(waited, left, now)  # their producers hear it
        return changed, last

    def label_set_mark(self) -> dict[str, Any]:
        """Where the label set's changes stand (a model's training read records it, as it
        records ``label_seq``): the id of the newest change (``change``; 0: none) and its time
        (``at``; "" when none). ``merged_after`` compares by them, not by the clock."""
        change, at = self.db.execute(
            "SELECT coalesce(max(id), 0), coalesce(max(created_at), '') FROM label_set_changes"
        ).fetchone()
        return {"change": int(change), "at": str(at)}

    def merged_after(self, at: str, mark: Mapping[str, Any] | None = None) -> set[str]:
        """The items whose decided label a merge rewrote after a model's training read the
        labels. Such a label keeps its place in the label clock (``_relabel_all``: the gate's
        champion refit keeps it, under its new name), but the next model learns it in another
        class: the retrain report counts it as new. A rename is not counted: the same items in
        the same class, under another name. Reads every merge's history rows: for a worker
        thread or the CLI.

        ``mark``: the read's ``label_set_mark``; a merge is after it when its change row is
        newer by id or by time than the newest change the read saw (as ``LabelMark``: the id
        does not depend on the clock, so a merge stamped while the clock ran ahead is not new
        again once a model read it; the time does not depend on the database's history, a
        restore from an older backup). Without one (a model from before it was recorded), by
        time: the merges stamped after ``at`` (an ISO time: when the read began)."""
        if mark is None or not isinstance(mark.get("change"), int):
            rows = self.db.execute(
                "SELECT DISTINCT item_id FROM label_history WHERE action = 'merge'"
                " AND julianday(created_at) > julianday(?)",
                [at],
            )
            return {row[0] for row in rows}
        # a merge's history rows are those of its change: one transaction, one ``now``
        rows = self.db.execute(
            "SELECT DISTINCT h.item_id FROM label_set_changes c JOIN label_history h"
            " ON h.action = 'merge' AND h.old_label = c.label AND h.new_label = c.new_label"
            " AND h.created_at = c.created_at"
            " WHERE c.action = 'merge' AND (c.id > ? OR c.created_at > ?)",
            [mark["change"], str(mark.get("at") or "") or "~"],
        )
        return {row[0] for row in rows}

    def label_set_version(self, labels: Sequence[str]) -> str:
        """Which label set ``labels`` is, for exports: ``v<changes>:<hash of the labels>``."""
        n = self.db.execute("SELECT count(*) FROM label_set_changes").fetchone()[0]
        digest = hashlib.sha256(json.dumps(list(labels)).encode()).hexdigest()[:8]
        return f"v{n}:{digest}"

    def label_set_change_count(self) -> int:
        """How many changes the label set has had: one read of a count, which the server's
        scorer compares with the count it last put the predictions under the set in force at
        (``bot.learning.scoring.Scorer.restate``)."""
        return self.db.execute("SELECT count(*) FROM label_set_changes").fetchone()[0]

    def restated_change_count(self) -> int:
        """How many of the label set's changes (the oldest ones) the stored predictions have
        been put under (``mark_restated``)."""
        return self.db.execute(
            "SELECT count(*) FROM label_set_changes WHERE restated = 1"
        ).fetchone()[0]

    def mark_restated(self, count: int) -> None:
        """Say that a pass put the stored predictions under the first ``count`` changes (the
        change count it ran at; a change made meanwhile stays unmarked, and is passed again).
        Unsynced, as the pass's own steps: in WAL mode a commit lost in a crash takes every
        later one with it, never an earlier one, so a mark never outlives the steps before it."""
        with self._unsynced():
            self.db.execute(
                "UPDATE label_set_changes SET restated = 1 WHERE restated = 0 AND id IN"
                " (SELECT id FROM label_set_changes ORDER BY id LIMIT ?)",
                [count],
            )

    def label_set_changes(self) -> list[dict]:
        return [dict(r) for r in self.db["label_set_changes"].rows_where(order_by="id")]

    def change_label_set(
        self,
        action: str,
        label: str,
        new: str | None = None,
        *,
        current: Sequence[str],
        user_id: str,
        reason: str = "",
        votes_needed: int | None = None,
    ) -> ChangedSet:
        """Apply one change to the label set in force (``current``, stored first if it is not
        yet) in one transaction, and return the new set with the change made (``ChangedSet``).
        Raises ``StoreError`` saying what to fix for a change that does not fit (an unknown
        label, a name taken, a name an older label had: ``_refuse_reused``, ...).

        A merge decides, in the same transaction, the open split votes it gives a majority
        (``_decide_merged_splits``; ``votes_needed``: HITL_VOTES, else inferred safely). A
        retire takes back, in the same transaction, the gold questions whose gold label it
        retires (no button could be right: ``_take_back_all``, as a question left unanswered),
        the open ones and those in a split, whose buttons still take votes. Every change
        scores the pending gold misses again under the labels in force (``restate_gold_misses``:
        their detail names the labels as they are now, a retired gold label takes its miss out
        of review, an add puts it back)."""
        # One spelling per label: a name made here ("café" typed as e + a combining accent) is
        # stored in NFC and must be usable; a name that refers to a label already in the set is
        # taken as it is stored when it is (an older version stored labels as they came, so
        # "café" in NFD, or a label with a line break, can still be renamed, merged, retired).
        nfc = unicodedata.normalize
        if action == "add":
            label = nfc("NFC", label)
        if action == "rename" and new is not None:
            new = nfc("NFC", new)
        made = label if action == "add" else new if action == "rename" else None
        if made is not None and (problem := label_problem(made)):
            raise StoreError(f"the label {quoted(made, 40)} {problem}")
        taken: dict[str, str] = {}  # typed -> the label of the set it was taken as
        with self._immediate(), _naming(taken):
            if self.stored_labels() is None:
                self.db.execute("DELETE FROM label_set")
                self.db.conn.executemany(
                    "INSERT INTO label_set (name, position) VALUES (?, ?)",
                    [(name, n) for n, name in enumerate(current)],
                )
            active = self.stored_labels() or []
            if action != "add" and label not in active:
                label = nfc("NFC", label)
            if action == "merge" and new is not None and new not in active:
                new = nfc("NFC", new)
            # A name typed for a label of the set that looks the same as it ("card payment"
            # typed with a plain space for the label imported with a no-break space, which add
            # refuses as its twin) is that label (a retired label's, for an add: the label
            # comes back, with its items); a twin in case, ß, ... is refused, naming the label
            if action != "add":
                label = self._as_stored(label, active, taken)
            elif label not in active:
                label = self._as_stored(label, sorted(self.retired_labels()), taken, add=True)
            if action == "merge" and new is not None:
                new = self._as_stored(new, active, taken)
            now = self.now()
            labeled = gold = 0  # a retire's: its items, and its gold items
            if action in ("add", "rename"):
                added = label if action == "add" else new
                _refuse_case_twin(added, [name for name in active if name != label])
                self._refuse_reused(added, label if action == "rename" else None)
            if action == "add":
                if label in active:
                    raise StoreError(f"{quoted(label)} is in the label set already")
                # A retired label back: its items train with it again, so their reviews for
                # the retirement are decided (by this change).
                self.db.execute(
                    "UPDATE reviews SET decided_at = ?, decided_by = ?, decision = ?"
                    " WHERE reason = 'retired' AND decided_at IS NULL AND item_id IN"
                    " (SELECT item_id FROM labels WHERE label = ?)",
                    [now, user_id, label, label],
                )
                # An item whose decision was taken back (an Undo) has no label to review: a
                # review for the retirement left pending by an older version goes too.
                self.db.execute(
                    "UPDATE reviews SET decided_at = ?, decided_by = ?, decision = 'undone'"
                    " WHERE reason = 'retired' AND decided_at IS NULL AND detail = ?"
                    " AND item_id NOT IN (SELECT item_id FROM labels)",
                    [now, user_id, f"{label} was retired"],
                )
                if label in self.retired_labels():
                    # Its items are decided with it again: their producers hear the label.
                    self._queue_relabeled(label, now)
                self.db.execute(
                    "INSERT INTO label_set (name, position, status) VALUES (?,"
                    " (SELECT coalesce(max(position), -1) + 1 FROM label_set), 'active')"
                    " ON CONFLICT(name) DO UPDATE SET status = 'active'",
                    [label],
                )
                self.db.execute("DELETE FROM label_aliases WHERE old = ?", [label])
            elif action in ("rename", "merge"):
                # A label of decided items that the set never had (``labels_outside``: imported
                # before HITL_LABELS named a narrower set) can be merged into one in force: its
                # items are relabeled, as a merge relabels a label in the set.
                outside = (
                    action == "merge"
                    and label not in active
                    and self.db.execute(
                        "SELECT 1 FROM label_counts WHERE label = ? AND n > 0 AND label NOT IN"
                        " (SELECT name FROM label_set UNION SELECT old FROM label_aliases)",
                        [label],
                    ).fetchone()
                    is not None
                )
                if label not in active and not outside:
                    raise StoreError(_not_in(label, active))
                if new is None or new == label:
                    raise StoreError(f"{action} needs a second, different label")
                if action == "rename" and new in active:
                    raise StoreError(
                        f"{quoted(new)} is in the label set already; merge {quoted(label)} into"
                        " it instead"
                    )
                if action == "merge" and new not in active:
                    raise StoreError(_not_in(new, active))
                if action == "rename":
                    self.db.execute("DELETE FROM label_set WHERE name = ?", [new])
                    self.db.execute("UPDATE label_set SET name = ? WHERE name = ?", [new, label])
                else:
                    self.db.execute("DELETE FROM label_set WHERE name = ?", [label])
                self._queue_relabeled(label, now)  # their producers hear the new name
                self._relabel_all(label, new, action, user_id, reason, now)
            elif action == "retire":
                if label not in active:
                    raise StoreError(_not_in(label, active))
                if len(active) <= 2:
                    raise StoreError("a label set needs two labels; add one before retiring")
                labeled = self.db.execute(
                    "SELECT coalesce(sum(n), 0) FROM label_counts WHERE label = ?", [label]
                ).fetchone()[0]
                gold = self.db.execute(
                    "SELECT count(*) FROM gold WHERE label = ?", [label]
                ).fetchone()[0]
                self.db.execute("UPDATE label_set SET status = 'retired' WHERE name = ?", [label])
                # Its gold questions open in Slack have no right button any more: taken back
                # as a question left unanswered is (closed, redrawn without buttons, its place
                # free), each waiting as a gold question, not asked while the label is retired
                # (``next_gold``) and asked again, in a new message, once it is added back.
                asked = [
                    row[0]
                    for row in self.db.execute(
                        "SELECT DISTINCT p.item_id FROM posts p INDEXED BY posts_open_age"
                        " JOIN gold g ON g.item_id = p.item_id LEFT JOIN label_aliases m"
                        " ON m.old = g.label WHERE p.closed_at IS NULL"
                        " AND coalesce(m.new, g.label) = ?",
                        [label],
                    )
                ]
                if asked:
                    self._take_back_all(asked, now, expired=True, why="labels")
                # So are those in a split (their post closed, their buttons still taking
                # votes): the split's message is taken back as an open one's is, its review
                # left pending (a vote that makes a majority once the label is back decides it)
                split = [
                    row[0]
                    for row in self.db.execute(
                        "SELECT DISTINCT r.item_id FROM reviews r INDEXED BY reviews_open"
                        " JOIN gold g ON g.item_id = r.item_id JOIN items i ON i.id = r.item_id"
                        " LEFT JOIN label_aliases m ON m.old = g.label WHERE r.decided_at IS NULL"
                        " AND r.reason = 'split' AND i.status = 'posted'"
                        " AND coalesce(m.new, g.label) = ?",
                        [label],
                    )
                ]
                if split:
                    self.db.execute(
                        "UPDATE posts SET expired_at = ?, taken_back = 'labels',"
                        " redraw_seq = redraw_seq + 1 WHERE id IN (SELECT max(p.id) FROM posts p"
                        " WHERE p.item_id IN (SELECT value FROM json_each(?)) GROUP BY p.item_id)"
                        " AND closed_at IS NOT NULL AND expired_at IS NULL",
                        [now, json.dumps(split)],
                    )
                    self._take_back_all(split, now, expired=True, why="labels")
                # Its decided labels leave training (``bot.learning.quality.training_rows``)
                # and wait in review for an admin to give them a label in force.
                self.db.execute(
                    "INSERT OR IGNORE INTO reviews (item_id, reason, detail, created_at)"
                    " SELECT item_id, 'retired', ?, ? FROM labels WHERE label = ?",
                    [f"{label} was retired", now, label],
                )
                # Not decided any more (``NotInForce.undecides``): a producer a webhook may
                # have told the label hears it was taken back, as after `hitl labels remove`.
                self._queue_relabeled(label, now, taken_back=True)
            else:
                raise StoreError(
                    f"unknown change {quoted(action)}; use one of {', '.join(ACTIONS)}"
                )
            change = {
                "action": action,
                "label": label,
                "new_label": new,
                "user_id": user_id,
                "reason": reason,
                "created_at": now,
            }
            change["id"] = self.db["label_set_changes"].insert(change).last_pk
            # Every open question is drawn again with the new buttons (a split too: its post no
            # longer counts as open, but its buttons still take votes).
            self.db.execute(
                "UPDATE posts SET redraw_seq = redraw_seq + 1 WHERE closed_at IS NULL OR item_id"
                " IN (SELECT item_id FROM reviews WHERE reason = 'split' AND decided_at IS NULL)"
            )
            if action == "merge" and new is not None:
                self._decide_merged_splits(new, now, votes_needed)
            # A pending gold miss names the labels as they are now, and waits in review only
            # while its gold label is in force (its answers are not scored while retired).
            self.restate_gold_misses(label if action == "add" else None)
            changed = ChangedSet(self.stored_labels() or [], change, labeled, gold, taken)
            self.write_result = changed  # for a caller stopped just after the commit
        return changed

    def _as_stored(
        self, name: str, labels: Sequence[str], taken: dict[str, str], *, add: bool = False
    ) -> str:
        """``name`` (a label a change names) as ``labels`` (those in force; for an ``add``,
        the retired ones) store it: itself when it is one of them, or a name stored otherwise
        (a retired label, one renamed or merged away, a label of decided items outside the set:
        the change's own checks say what is wrong); else the one of ``labels`` it is a twin of
        (``only_twin``) when the two look the same (``looks_the_same``: "card payment" typed
        with a plain space for the label imported with a no-break space), recorded in
        ``taken``; else itself. A twin that reads otherwise ("Maße" for "Masse", Turkish "sik"
        for "sık", "BUG" for "bug": case, ß, the dot of an i, a joiner) may be another word:
        an add makes the name as typed (as before twins were taken), any other change is
        refused, naming the label ("did you mean "Masse"?"): a merge or a retire of the wrong
        label would not be undone by adding the name back."""
        if name in labels:
            return name
        twin = only_twin(name, labels)
        if twin is None:
            return name
        elsewhere = self.db.execute(
            "SELECT 1 FROM label_set WHERE name = ? UNION ALL"
            " SELECT 1 FROM label_aliases WHERE old = ? UNION ALL"
            " SELECT 1 FROM label_counts WHERE label = ? AND n > 0",
            [name, name, name],
        ).fetchone()
        if elsewhere is not None:
            return name
        if not looks_the_same(name, twin):
            if add:
                return name
            raise StoreError(f"{_not_in(name, labels)}; did you mean {quoted(twin)}?")
        taken[name] = twin
        return twin

    def _refuse_reused(self, made: str | None, renamed: str | None) -> None:
        """Refuse to make a label (``add``, a ``rename``'s new name) named as one renamed or
        merged away: answers and decided labels given with the old name count for its
        successor (``label_aliases``), and reusing the name would make them count for the new
        label instead. Renaming the successor back (``renamed``: the label being renamed) is
        fine: those answers meant it. A retired label's name is refused for a rename too (its
        items would count for the renamed label): ``add`` brings it back."""
        if made is None:
            return
        # The name itself, else a twin of it (case, white space, ...: "Billing" after "billing"
        # was renamed away), which `hitl labels set` and an import's rows would take for it. One
        # small read: a row per name ever renamed or merged away. A twin already pointing to
        # ``made`` is its own history ("Billing" renamed to "billing", which was then retired
        # and is added back), not another label's.
        row = self.db.execute(
            "SELECT old, new FROM label_aliases WHERE old = ?", [made]
        ).fetchone() or next(
            (
                (old, new)
                for old, new in self.db.execute("SELECT old, new FROM label_aliases ORDER BY old")
                if label_key(old) == label_key(made) and new not in (renamed, made)
            ),
            None,
        )
        if row is not None and row[1] != renamed:
            old, successor = row
            last = self.db.execute(
                "SELECT action, new_label, created_at FROM label_set_changes WHERE label = ?"
                " AND action IN ('rename', 'merge') ORDER BY id DESC LIMIT 1",
                [old],
            ).fetchone()
            what, was, when = last if last is not None else ("rename", successor, "")
            done = "renamed to" if what == "rename" else "merged into"
            now = f" (now {quoted(successor)})" if was != successor else ""
            on = f" on {str(when)[:10]}" if when else ""
            name = quoted(made)
            if old != made:
                name += f" differs {how_twins_differ(made, old)} from {quoted(old)}, which"
            # its successor retired since: using it is refused too; adding it back is the way
            use = (
                f"or bring {quoted(successor)} back, retired since, with `add {successor}`"
                if successor in self.retired_labels()
                else f"or use {quoted(successor)}"
            )
            raise StoreError(
                f"{name} was {done} {quoted(was)}{on}{now}; answers and labels given as {old}"
                f" count for {successor}: choose another name ({use})"
            )
        if renamed is not None and made in self.retired_labels():
            raise StoreError(
                f"{quoted(made)} is a retired label (its items wait in review): `add {made}`"
                f" brings it back; choose another name for {quoted(renamed)}"
            )

    def _decide_merged_splits(self, merged: str, now: str, votes_needed: int | None) -> None:
        """After a merge into ``merged``: each open split item whose votes (under the label set
        in force) now have a majority is decided as ``record_answer`` decides it, its split
        review closed by the votes. Without ``votes_needed`` the majority is taken of everyone
        who answered the item (at least HITL_VOTES people, or it would not be a split), so an
        item is never decided that the votes would not decide."""
        rows = self.db.execute(
            "SELECT DISTINCT r.item_id FROM reviews r JOIN items i ON i.id = r.item_id"
            " WHERE r.reason = 'split' AND r.decided_at IS NULL"
            " AND i.status NOT IN ('resolved', 'skipped')"
            " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = r.item_id)"
            " ORDER BY r.item_id"
        ).fetchall()
        for (item_id,) in rows:
            tally = self.tally(item_id)
            if merged not in tally.votes:
                continue
            answered = sum(len(users) for users in tally.votes.values()) + len(tally.skips)
            winner = tally.majority(votes_needed if votes_needed is not None else answered)
            if winner is None:
                continue
            self.close_reviews_by_votes(item_id, winner)
            self._resolve(item_id, winner, tally, now)

    def _relabel_all(
        self, old: str, new: str, action: str, user_id: str, reason: str, now: str
    ) -> None:
        """Decided labels ``old`` become ``new`` (each change in the history); ``old`` and
        whatever was mapped to it count for ``new`` from now on. ``resolved_at`` stays: the
        decision is the one people made then, only its name changed. Re-dating it made every
        renamed label "new" to the retrain, whose gate then refitted the champion without
        them (a whole class missing after a rename: 0.333 against 0.916, any candidate
        promoted); the watermark sees the change through ``label_set_changes``."""
        self.db.execute(
            "INSERT INTO label_history"
            " (item_id, old_label, new_label, action, user_id, reason, created_at)"
            " SELECT item_id, label, ?, ?, ?, ?, ? FROM labels WHERE label = ?",
            [new, action, user_id, reason, now, old],
        )
        self.db.execute("UPDATE labels SET label = ? WHERE label = ?", [new, old])
        self.db.execute("UPDATE gold SET label = ? WHERE label = ?", [new, old])  # gold too
        self.db.execute("UPDATE label_aliases SET new = ? WHERE new = ?", [new, old])
        self.db.execute("DELETE FROM label_aliases WHERE old = ?", [new])
        self.db.execute("INSERT OR REPLACE INTO label_aliases (old, new) VALUES (?, ?)", [old, new])


@contextmanager
def _naming(taken: Mapping[str, str]) -> Iterator[None]:
    """A change refused after a name typed was taken as the label of the set it is a twin of
    (``taken``) says so: "a label set needs two labels; ... ("card payment" is taken as the
    label "card payment" of the set: they differ only in white space ...)"."""
    try:
        yield
    except StoreError as exc:
        if not taken:
            raise
        notes = "; ".join(taken_as(typed, stored) for typed, stored in taken.items())
        raise StoreError(f"{exc} ({notes})") from None


def _not_in(label: str, active: Sequence[str]) -> str:
    return f"{quoted(label)} is not in the label set ({', '.join(active)})"


def _refuse_case_twin(added: str | None, active: Sequence[str]) -> None:
    """Two labels that differ only in case ("Billing", "billing") split one class in two:
    refuse the second, naming the one to use."""
    if added is None:
        return
    twin = case_twin(added, active)
    if twin is not None:
        raise StoreError(
            f"{quoted(added)} differs from the label {quoted(twin)}"
            f" {how_twins_differ(added, twin)}; use {quoted(twin)}, or rename it"
        )
