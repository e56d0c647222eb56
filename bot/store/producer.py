"""The producer API and the webhook outbox."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlite_utils import Database

from bot.store.labelset import NotInForce, top_in_force
from bot.store.migrations import DELIVERY_KEY_SQL, DELIVERY_RECEIVER_SQL
from bot.store.records import count_new_items, same_text

logger = logging.getLogger("bot.store")

# Conditions on an item's deliveries (``{item}``: the item's id in the statement), for the
# statements that queue a webhook: one of them may have told its producer (delivered, an
# attempt made, or a restore's restatement: ``_maybe_told``), and one waits unsent (it tells
# the item as it is when it first goes, so no second one is queued beside it).
_MAY_HAVE_TOLD = (
    "EXISTS (SELECT 1 FROM deliveries d WHERE d.item_id = {item}"
    " AND (d.status = 'delivered' OR d.attempts > 0 OR d.restates IS NOT NULL))"
)
_WAITS_UNSENT = (
    "EXISTS (SELECT 1 FROM deliveries d WHERE d.item_id = {item}"
    " AND d.status = 'pending' AND d.attempts = 0)"
)


class ApiAdded(list[str]):
    """What ``add_api_items`` stored: the ids that were new, in order (a list, as it was), and
    ``conflicts``, the places in the items sent of those whose id is stored with another
    text (neither stored nor given their callback_url)."""

    def __init__(self, created: Iterable[str] = (), conflicts: Iterable[int] = ()) -> None:
        super().__init__(created)
        self.conflicts = tuple(conflicts)


class ProducerMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    labels_not_in_force: Callable[..., NotInForce]  # the label set mixin's
    _texts_of: Callable[[Sequence[str]], dict[str, str]]  # Store's: 500 ids a statement

    # -- producer API and webhooks --

    def add_api_items(
        self, items: Iterable[Any], source: str = "api", *, tell_settled: bool = False
    ) -> ApiAdded:
        """Insert items a producer sent (each with ``id``, ``text``, ``meta``, ``callback_url``)
        in one transaction; return the ids that were new, in order. A known item keeps its
        text and meta; it takes the ``callback_url`` sent only while it has none and people
        have not decided it (a label since retired decides nothing: the item waits in review;
        a registered URL is never replaced; ``callback_urls`` tells the producer which URL
        the item has).

        An item whose id is stored (before, or by an earlier item of ``items``) with another
        text is a conflict, as in ``add_items``: an id names one item, and the API never
        changes a stored one. It is neither stored nor given its ``callback_url``; the
        answer's ``conflicts`` holds its place in ``items``. The texts are compared as
        ``same_text`` does, and, for an item that has it, by its ``same_text_as(stored)``
        (the API's: its text as ``HITL_REDACT`` stored it before, ``bot.ingest.same_item_text``).
        The stored texts are read in this transaction, in one statement per 500 items not new
        (none while every item is), so of two texts sent at once under one new id, the first
        written is stored and the other is the conflict.

        An id `hitl delete` deleted is not stored again, nor returned: looked up in this write
        transaction, so a ``DELETE`` that came after the caller's own check (``/api/predict``
        awaits its turn to write) still wins. The caller answers 410 for it.

        ``tell_settled`` (``POST /api/items``, whose results carry no status): an item whose
        wait for people had already ended (``auto``, ``skipped``) when this call registered
        its callback_url gets a delivery telling it (``_queue_settled``), in this transaction;
        otherwise its producer, told ``registered``, would wait for a webhook that never
        comes. ``/api/predict`` answers the status itself."""
        items = list(items)
        now = self.now()
        created: list[str] = []
        conflicts: list[int] = []
        registered: list[str] = []
        with self._immediate():
            known: list[int] = []  # stored before, an earlier item's, or deleted
            for n, item in enumerate(items):
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO items (id, text, meta, source, status, created_at,"
                    " updated_at, callback_url) SELECT ?, ?, ?, ?, 'new', ?, ?, ?"
                    " WHERE NOT EXISTS (SELECT 1 FROM deleted_items WHERE item_id = ?)",
                    [
                        item.id,
                        item.text,
                        json.dumps(item.meta, ensure_ascii=False),
                        source,
                        now,
                        now,
                        item.callback_url,
                        item.id,
                    ],
                )
                if cursor.rowcount:
                    created.append(item.id)
                else:
                    known.append(n)
            texts = self._texts_of(sorted({items[n].id for n in known}))  # 500 a statement
            for n in known:
                item = items[n]
                stored = texts.get(item.id)
                if stored is None:  # deleted: not stored again
                    continue
                if not same_text(stored, item.text) and not (
                    (same := getattr(item, "same_text_as", None)) is not None and same(stored)
                ):
                    conflicts.append(n)
                elif item.callback_url:
                    cursor = self.db.execute(
                        "UPDATE items SET callback_url = ?, updated_at = ? WHERE id = ?"
                        " AND coalesce(callback_url, '') = ''"
                        " AND NOT EXISTS (SELECT 1 FROM labels WHERE item_id = items.id"
                        "  AND label NOT IN (SELECT name FROM label_set WHERE status = 'retired'))",
                        [item.callback_url, now, item.id],
                    )
                    if cursor.rowcount:
                        registered.append(item.id)
            if tell_settled and registered:  # only those already auto or skipped are queued
                self._queue_settled(registered, now, by="id")
            count_new_items(self.db.conn, {"new": len(created)})
        return ApiAdded(created, conflicts)

    def callback_urls(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Each stored item's ``callback_url`` (None: none), by id: what the API tells a producer
        about the callback_url it sent. One statement, by key."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT id, nullif(callback_url, '') FROM items WHERE id IN ({marks})", list(ids)
        ).fetchall()
        return dict(rows)

    def claim_due_deliveries(
        self,
        now: str,
        lease_until: str,
        limit: int,
        per_receiver: int | None = None,
        *,
        busy: Mapping[str, int] | None = None,
        busy_items: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Pending webhook deliveries due at ``now``, each with its attempt counted and hidden
        until ``lease_until`` (so a crash mid-send retries it, and no two senders share one).
        With ``per_receiver``, at most that many go to one receiver (host and port), oldest
        first: a receiver with a long backlog, or one that hangs, cannot fill a round and hold
        back everyone else's. ``busy``: the sends already under way to each receiver, which
        count toward its ``per_receiver`` (a receiver with that many takes none);
        ``busy_items``: items with a send under way, whose other deliveries wait for it (one
        item's webhooks go one after the other). Each comes with its ``receiver`` and its
        ``key`` (its X-HITL-Delivery header: m046). Nothing due is found by a read: the idle
        worker's look every few seconds takes no write lock (and so neither waits for nor
        fails on another process's).

        People's labels go first: the deliveries due that tell a label or its take-back
        (``notice`` 0) are claimed before the notices that an item's wait ended without one
        (``notice`` 1, ``_queue_settled``: a threshold pass queues one per item it moves),
        each class read from its own index range (m045), so a label's webhook never waits
        behind a backlog of notices. An item's deliveries keep their order and go one at a
        time: a claim takes at most one delivery of an item, its oldest due (an older notice
        goes before its label's delivery, an older label's before a take-back queued after
        it; the next waits for it, as any item's next delivery waits for its send under
        way). An older delivery of the item that is still pending holds the newer ones back
        while it is not due too (waiting out its backoff, or claimed): they go once it is
        delivered, given up or cancelled, never before it. Each comes with its ``body``, the
        bytes its first attempt sent (m048; None before its first attempt)."""
        due = "FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
        if limit <= 0 or (
            not self.db.conn.in_transaction
            and not self.db.execute(
                f"SELECT 1 {due} AND NOT EXISTS ({_OLDER_PENDING} AND older.next_attempt_at > ?)"
                " LIMIT 1",
                [now, now],
            ).fetchone()
        ):
            return []  # nothing due, or only what waits behind its item's older delivery
        with self._immediate():
            rows: list[tuple[Any, ...]] = []
            taken, items = dict(busy or {}), set(busy_items)
            for notice in (0, 1):  # people's labels, then the notices (auto, skipped)
                room = limit - len(rows)
                if room <= 0:
                    break
                # each item's oldest of the class due, no other: an item's backlog takes one
                # row of a read (and of a receiver's share), not all of it (by the item's
                # index, a probe for each row passed over). Nor one queued after a delivery of
                # its item still pending and not due (waiting out its backoff, or under way):
                # that one goes first, whenever it is due, and the next waits until it is
                # delivered or given up.
                of_class = (
                    f"{due} AND notice = {notice} AND NOT EXISTS ({_OLDER_PENDING}"
                    f" AND (older.notice = {notice} OR older.next_attempt_at > ?))"
                )
                if per_receiver is None:
                    found = self.db.execute(
                        f"SELECT id, item_id, url, attempts, receiver {of_class}"
                        " ORDER BY next_attempt_at, id LIMIT ?",
                        [now, now, room + len(items)],
                    ).fetchall()
                    found = _one_per_item(row for row in found if row[1] not in items)[:room]
                else:
                    found = self._fair_share_due(
                        of_class, now, room, per_receiver, dict(taken), frozenset(items)
                    )
                for row in found:  # the next class counts them as sends under way
                    if row[1] in items:
                        continue  # one of its item's deliveries goes in this claim already
                    # an item's oldest delivery due goes first (a notice before a label's)
                    first = self._older_due(row, now) or row
                    taken[first[4]] = taken.get(first[4], 0) + 1
                    items.add(first[1])
                    rows.append(first)
            keys: dict[int, tuple[str, bytes | None]] = {}
            for row in rows:
                # A row written without its key (by SQL outside the store's inserts) gets one
                # before its first attempt, kept for every retry.
                self.db.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?,"
                    f" key = coalesce(key, {DELIVERY_KEY_SQL}) WHERE id = ?",
                    [lease_until, row[0]],
                )
                keys[row[0]] = self.db.execute(
                    "SELECT key, body FROM deliveries WHERE id = ?", [row[0]]
                ).fetchone()
        return [
            {
                "id": row[0],
                "key": keys[row[0]][0],  # its X-HITL-Delivery header (m046)
                "body": keys[row[0]][1],  # what its first attempt sent (m048), None before it
                "item_id": row[1],
                "url": row[2],
                "attempts": row[3] + 1,
                "receiver": row[4],
            }
            for row in rows
        ]

    def _older_due(self, row: tuple[Any, ...], now: str) -> tuple[Any, ...] | None:
        """The oldest delivery due at ``now`` of the item of ``row`` queued before it (a
        notice or a label's: a retry of an older one may be due later than a newer one's
        first try); None when there is none. By the item's index: a few rows."""
        return self.db.execute(
            "SELECT id, item_id, url, attempts, receiver FROM deliveries"
            " WHERE item_id = ? AND status = 'pending' AND id < ?"
            " AND next_attempt_at <= ? ORDER BY id LIMIT 1",
            [row[1], row[0], now],
        ).fetchone()

    def _fair_share_due(
        self,
        due: str,
        now: str,
        limit: int,
        per_receiver: int,
        busy: dict[str, int],
        busy_items: frozenset[str],
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit`` of the deliveries ``due`` at ``now`` (id, item, url, attempts,
        receiver), oldest first, at most ``per_receiver`` to one receiver (less the ``busy``
        sends under way to it), none for ``busy_items``, chosen from all of them (not from
        the oldest few: one receiver's backlog would fill those). The oldest few do when they
        fill the round or are all there is; otherwise the receivers' index (m031) gives each
        receiver with deliveries pending, one after the other, and its oldest due. Neither
        reads the rest of a backlog: the cost grows with the number of receivers (and the
        few sends under way), not with their backlogs."""
        # A pending row written without its receiver (by a process older than m031) gets it
        # first: none, normally, found in the index at once.
        self.db.execute(
            f"UPDATE deliveries SET receiver = {DELIVERY_RECEIVER_SQL.format(url='url')}"
            " WHERE status = 'pending' AND receiver IS NULL"
        )

        def share(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            taken: list[tuple[Any, ...]] = []
            per = dict(busy)
            for row in _one_per_item(row for row in rows if row[1] not in busy_items):
                if per.get(row[4], 0) < per_receiver:
                    per[row[4]] = per.get(row[4], 0) + 1
                    taken.append(row)
                    if len(taken) == limit:
                        break
            return taken

        batch = limit * 4
        at = [now] * due.count("?")  # ``due`` may read ``now`` more than once
        oldest = self.db.execute(
            f"SELECT id, item_id, url, attempts, receiver {due} ORDER BY next_attempt_at, id"
            " LIMIT ?",
            [*at, batch],
        ).fetchall()
        taken = share(oldest)
        if len(taken) == limit or len(oldest) < batch:
            return taken
        # Receivers one after the other from the index (a skip-scan, in SQLite), each with its
        # oldest ``per_receiver`` due: few rows to sort. A busy receiver's or item's rows are
        # left out after: at most one for each send under way (``due`` gives at most one row
        # of an item), so that many more are read.
        return share(
            self.db.execute(
                "WITH RECURSIVE receivers(receiver) AS ("
                "  SELECT min(receiver) FROM deliveries WHERE status = 'pending'"
                "  UNION ALL"
                "  SELECT (SELECT receiver FROM deliveries WHERE status = 'pending'"
                "   AND receiver > receivers.receiver ORDER BY receiver LIMIT 1)"
                "  FROM receivers WHERE receiver IS NOT NULL)"
                " SELECT d.id, d.item_id, d.url, d.attempts, d.receiver FROM receivers"
                " JOIN deliveries d"
                f" ON d.id IN (SELECT id {due} AND receiver = receivers.receiver"
                "  ORDER BY next_attempt_at, id LIMIT ?)"
                " ORDER BY d.next_attempt_at, d.id LIMIT ?",
                [*at, per_receiver, limit + sum(busy.values()) + len(busy_items)],
            ).fetchall()
        )

    _deliveries_clock: str | None = None  # ``now`` of this process's last round

    def pull_forward_deliveries(self, now: str, latest: Sequence[str]) -> int:
        """Make due at ``now`` each pending delivery due later than a clock reading ``now``
        can have scheduled it: ``latest[n]`` is the latest a delivery attempted ``n`` times
        may be due (the last entry for more attempts); one due later was scheduled by a clock
        that read ahead of this one and was stepped back since. Returns how many.

        Only looked at in this process's first call and when ``now`` is earlier than in the
        call before (the clock stepped back): it reads every delivery waiting, where a round
        otherwise reads only the due ones."""
        seen = self._deliveries_clock
        if seen is not None and now >= seen:
            self._deliveries_clock = now
            return 0
        floor = min(latest)
        last = len(latest) - 1
        # one statement over the due index's range past the earliest bound, each row held to
        # its own by its attempts: it read every waiting row into Python and wrote them back
        # 500 ids at a time, each of those statements walking the range again (226 s at a
        # million deliveries waiting on a dead receiver, on the event loop)
        latest_of = (
            "CASE " + " ".join(f"WHEN attempts = {n} THEN ?" for n in range(last)) + " ELSE ? END"
        )
        where = f"status = 'pending' AND next_attempt_at > ? AND next_attempt_at > ({latest_of})"
        ahead = self.db.execute(
            f"SELECT EXISTS (SELECT 1 FROM deliveries WHERE {where})", [floor, *latest]
        ).fetchone()[0]
        pulled = 0
        if ahead:
            with self._immediate():
                pulled = self.db.execute(
                    f"UPDATE deliveries SET next_attempt_at = ? WHERE {where}",
                    [now, floor, *latest],
                ).rowcount
        self._deliveries_clock = now  # looked: not again until the clock steps back again
        return pulled

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        *,
        error: str | None = None,
        next_attempt_at: str | None = None,
    ) -> None:
        """Record how an attempt ended: ``delivered``, ``pending`` (retry at
        ``next_attempt_at``), ``failed`` (gave up) or ``cancelled``."""
        with self._immediate():
            self.db.execute(
                "UPDATE deliveries SET status = ?, last_error = ?,"
                " next_attempt_at = coalesce(?, next_attempt_at) WHERE id = ?",
                [status, error, next_attempt_at, delivery_id],
            )

    def finish_deliveries(
        self,
        outcomes: Iterable[tuple[int, str, str | None]],
        bodies: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        """``finish_delivery`` for each (delivery id, status, error), in one transaction: the
        deliveries a sender's pass ended without sending (refused, cancelled). With them, the
        ``bodies`` (delivery id, the exact bytes) the pass's first attempts are about to send,
        kept for every retry (m048): stored before the send, so a retry never sends other
        bytes under the same key. Nothing to do for none: no write lock taken."""
        rows = [(status, error, delivery_id) for delivery_id, status, error in outcomes]
        kept = [(body, delivery_id) for delivery_id, body in bodies]
        if not rows and not kept:
            return
        with self._immediate():
            self.db.conn.executemany(
                "UPDATE deliveries SET status = ?, last_error = ? WHERE id = ?", rows
            )
            self.db.conn.executemany(
                "UPDATE deliveries SET body = ? WHERE id = ? AND body IS NULL", kept
            )

    def webhook_payload(
        self,
        item_id: str,
        sending: int | None = None,
        out: NotInForce | None = None,
    ) -> dict[str, Any] | None:
        """What a webhook reports about an item now: its label once resolved. After a label
        was taken back (an Undo, ``hitl labels remove``, a retire of the label: the item
        waits in review) it reports ``label`` None and the item's status, but only when the
        producer may have been told the label (a delivery for the item was delivered or
        attempted); an item left to the model (``auto``) or set aside (``skipped``) reports
        ``label`` None and that status whether or not it was told before (its wait for people
        ended: ``_queue_settled``); None when there is nothing to tell. ``sending``: the
        delivery the payload
        is for, claimed (this attempt counted) but not sent yet. ``out``: the labels not in
        force (``bot.labelset.not_in_force``: retired, or never in HITL_LABELS' set), left out
        of ``model_label``; an item decided with a retired one is not decided
        (``NotInForce.undecides``). By default the stored set's."""
        row = self.db.execute(
            "SELECT l.label, l.votes, l.resolved_at, i.predicted_label, i.status, i.confidence,"
            " i.ranked FROM items i LEFT JOIN labels l ON l.item_id = i.id WHERE i.id = ?",
            [item_id],
        ).fetchone()
        if row is None:
            return None
        out = self.labels_not_in_force() if out is None else out
        label, votes, resolved_at, status = row[0], row[1] or 0, row[2], row[4]
        if out.undecides(label):  # waits in review for a label in force
            label, votes, resolved_at, status = None, 0, None, "needs_review"
        # Left to the model or set aside: the producer's wait for people ended (told whether
        # or not a webhook went before). Otherwise a label taken back is told only when the
        # producer may have heard it.
        if label is None and status not in ("auto", "skipped"):
            if not self._maybe_told(item_id, sending):
                return None
        # The model's label under the label set in force, as GET /api/items gives it: a
        # rollback's old name as its successor, a retired label left out (the stored guess of
        # a decided item is never restated).
        model_label = None
        if row[5] is not None:
            guesses = json.loads(row[6]) if row[6] else ([(row[3], row[5])] if row[3] else [])
            model_label, _ = top_in_force(guesses, self.label_aliases(), out)
        return {
            "id": item_id,
            "label": label,
            "votes": votes,
            "resolved_at": resolved_at,
            "model_label": model_label,
            "status": _told_status(status),
        }

    def _maybe_told(self, item_id: str, sending: int | None = None) -> bool:
        """Whether a webhook for the item may have reached its producer: one was delivered,
        or an attempt was made (``sending``'s own attempt, counted when it was claimed, is not
        made yet), or a restore queued one restating it (``restates``, m047: a webhook sent
        after the backup was made may have told it, its row gone with the database that was
        there)."""
        return self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE item_id = ? AND (status = 'delivered'"
            " OR attempts > (CASE WHEN id IS ? THEN 1 ELSE 0 END) OR restates IS NOT NULL))",
            [item_id, sending],
        ).fetchone()[0]

    def _queue_label(self, item_id: str, now: str) -> None:
        """In the transaction that gives an item a label (people's votes, `hitl labels set`, a
        review decision): a delivery telling its producer, if it has a callback_url. None
        when one of the item's deliveries waits unsent (``attempts`` 0): that one tells the
        item as it is when it first goes, so a second would tell the same under another
        X-HITL-Delivery key. A notice waiting so (``auto``, ``skipped``) now tells a person's
        label: it is claimed with people's labels from now on (``notice`` 0), before the
        backlog of notices, in its place in the item's order."""
        waiting = self.db.execute(  # rowcount: every row matched, a label's (notice 0) too
            "UPDATE deliveries SET notice = 0 WHERE item_id = ? AND status = 'pending'"
            " AND attempts = 0",
            [item_id],
        ).rowcount
        if waiting:
            return
        self.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver, key)"
            f" SELECT id, callback_url, ?, ?, {DELIVERY_RECEIVER_SQL.format(url='callback_url')},"
            f" {DELIVERY_KEY_SQL} FROM items"
            " WHERE id = ? AND callback_url IS NOT NULL AND callback_url != ''",
            [now, now, item_id],
        )

    def _queue_taken_back(self, item_id: str, now: str) -> None:
        """In the transaction that takes an item's label back: a delivery telling its producer,
        when a webhook may have told them the label (as ``_maybe_told``; and none is waiting
        to be sent: that one reads the item as it is when it goes)."""
        self.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver, key)"
            f" SELECT id, callback_url, ?, ?, {DELIVERY_RECEIVER_SQL.format(url='callback_url')},"
            f" {DELIVERY_KEY_SQL} FROM items WHERE id = ?"
            " AND coalesce(callback_url, '') != ''"
            f" AND {_MAY_HAVE_TOLD.format(item='items.id')}"
            f" AND NOT {_WAITS_UNSENT.format(item='items.id')}",
            [now, now, item_id],
        )

    def _queue_relabeled(self, label: str, now: str, *, taken_back: bool = False) -> int:
        """In the transaction of a label-set change (``Store.change_label_set``): a delivery
        for each item decided with ``label`` that has a callback_url, so its producer hears the
        label it reports now: a rename's or merge's new name, or the label again once added
        back; ``taken_back`` (a retire), that it has none, and only where a webhook may have
        told the label (as ``_queue_taken_back``). None for an item whose delivery waits unsent:
        that one reads the item as it is when it goes. One INSERT … SELECT over the label's
        items (index ``labels_label``), never a statement per item: the change holds the write
        lock while it runs. Returns how many were queued."""
        told = f" AND {_MAY_HAVE_TOLD.format(item='i.id')}" if taken_back else ""
        return self.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver, key)"
            " SELECT i.id, i.callback_url, ?, ?,"
            f" {DELIVERY_RECEIVER_SQL.format(url='i.callback_url')},"
            f" {DELIVERY_KEY_SQL} FROM labels l JOIN items i ON i.id = l.item_id"
            " WHERE l.label = ? AND coalesce(i.callback_url, '') != ''"
            f"{told}"
            f" AND NOT {_WAITS_UNSENT.format(item='i.id')}",
            [now, now, label],
        ).rowcount

    def _queue_settled(self, keys: Iterable[Any], now: str, *, by: str = "rowid") -> int:
        """In the transaction that ended items' wait for people without a label: set aside
        by people's Skips (``skipped``) or left to the model (``auto``: a score, a threshold
        pass, a label-set pass). ``keys``: the items that moved (their ``rowid``, or ``id``
        with ``by="id"``), read by key; each that is in such a state now and has a
        callback_url gets a delivery, so its producer hears it (README "Webhooks"), unless one
        for it waits unsent (that one reads the item as it is when it goes). One INSERT …
        SELECT, never a statement per item. Returns how many were queued."""
        keys = list(keys)
        if not keys:
            return 0
        column = {"rowid": "rowid", "id": "id"}[by]
        return self.db.execute(  # a notice (m045): claimed after people's labels
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver,"
            f" notice, key) SELECT id, callback_url, ?, ?,"
            f" {DELIVERY_RECEIVER_SQL.format(url='callback_url')}, 1, {DELIVERY_KEY_SQL}"
            f" FROM items WHERE {column} IN (SELECT value FROM json_each(?))"
            " AND +status IN ('auto', 'skipped') AND coalesce(callback_url, '') != ''"
            f" AND NOT {_WAITS_UNSENT.format(item='items.id')}",
            [now, now, json.dumps(keys)],
        ).rowcount

    def _queue_restated(self, waited: list[int], left: list[int], now: str) -> None:
        """In a step of a pass that puts the stored predictions under the label set in force
        (``restate_predictions`` after a change, ``restate_outside`` at a start whose
        HITL_LABELS leaves out labels the model guessed): what the producers of the step's
        moved items hear. ``waited``: items that waited for people (``queued``); ``left``:
        items left to the model (``auto``) whose label moved, their producers told the label
        as it was. Each ``auto`` now is told (``_queue_settled``: a wait ended, or the model's
        label as it is now, as a rename tells a decided item's label). Each of ``left`` that
        waits for people now (its best label in force not sure enough) is told so as a label
        taken back is (``label`` null, ``posted``): only where a webhook may have told it
        ``auto`` (as ``_queue_taken_back``), and none while one of its deliveries waits
        unsent (that one reads the item as it is when it goes: waiting, never told ``auto``,
        it sends nothing). At most two INSERT … SELECTs a step, never a statement per item;
        notices (m045), as a pass may queue many, claimed after people's labels."""
        self._queue_settled([*waited, *left], now)
        if not left:
            return
        self.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver,"
            f" notice, key) SELECT id, callback_url, ?, ?,"
            f" {DELIVERY_RECEIVER_SQL.format(url='callback_url')}, 1, {DELIVERY_KEY_SQL}"
            " FROM items WHERE rowid IN (SELECT value FROM json_each(?))"
            " AND +status = 'queued' AND coalesce(callback_url, '') != ''"
            f" AND {_MAY_HAVE_TOLD.format(item='items.id')}"
            f" AND NOT {_WAITS_UNSENT.format(item='items.id')}",
            [now, now, json.dumps(left)],
        )

    def next_delivery_at(self) -> str | None:
        """When the next pending delivery falls due (None when nothing is pending): the first
        of an item's pending deliveries, as the others wait for it (``claim_due_deliveries``),
        however long before it they were due. The due index in order, a probe of the item's
        index for each row passed over."""
        row = self.db.execute(
            "SELECT next_attempt_at FROM deliveries WHERE status = 'pending'"
            f" AND NOT EXISTS ({_OLDER_PENDING}) ORDER BY next_attempt_at LIMIT 1"
        ).fetchone()
        return None if row is None else row[0]

    def deliveries(self, item_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("item_id = ?", [item_id]) if item_id is not None else (None, [])
        return list(self.db["deliveries"].rows_where(where, args, order_by="id"))

    def metrics_counts(self) -> dict[str, Any]:
        """Counts /metrics reports: posts, deliveries by status, and runs by kind and status
        with the total duration of the finished ones."""
        posts, open_posts = self.db.execute(
            "SELECT count(*), coalesce(sum(closed_at IS NULL), 0) FROM posts"
        ).fetchone()
        deliveries = dict(
            self.db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
        )
        runs = self.db.execute(
            "SELECT kind, status, count(*), count(finished_at),"
            " coalesce(sum(round((julianday(finished_at) - julianday(started_at)) * 86400, 3)), 0)"
            " FROM runs GROUP BY kind, status ORDER BY kind, status"
        ).fetchall()
        return {
            "posts": posts,
            "open_posts": open_posts,
            "deliveries": deliveries,
            "runs": [
                {"kind": r[0], "status": r[1], "count": r[2], "finished": r[3], "seconds": r[4]}
                for r in runs
            ],
        }


# An older delivery still pending of the item of the ``deliveries`` row a statement reads, by
# the item's index (its few rows): until it is delivered or given up, that row waits.
_OLDER_PENDING = (
    "SELECT 1 FROM deliveries AS older INDEXED BY deliveries_item"
    " WHERE older.item_id = deliveries.item_id AND older.id < deliveries.id"
    " AND older.status = 'pending'"
)


def _one_per_item(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` (id, item, ...) but the first of each item: one delivery of an item a claim."""
    seen: set[Any] = set()
    return [row for row in rows if row[1] not in seen and not seen.add(row[1])]


def _receiver(url: str) -> str:
    """Who receives a webhook sent to ``url``, for ``per_receiver``: for an http(s) URL its host
    and port (not the user and password before an "@": two sets of them are one receiver), for
    any other the URL itself. What ``DELIVERY_RECEIVER_SQL`` stores (for a host with
    letters other than ASCII in upper case it folds only the ASCII ones)."""
    if url[:7].lower() == "http://" or url[:8].lower() == "https://":
        return urlsplit(url).netloc.rpartition("@")[2].lower()
    return url


def _told_status(status: str) -> str:
    """The item's status as a webhook tells it (README, Webhooks): ``resolved``, ``auto`` and
    ``skipped`` as they are, and an item waiting for people (``posted``, or back in the queue:
    ``new``, ``queued``, ``gold``; the API's ``needs_review``) as ``posted``, asked again."""
    return status if status in ("resolved", "auto", "skipped") else "posted"
