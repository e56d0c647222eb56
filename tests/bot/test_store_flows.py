"""Routing, the labeling window, questions gone from Slack, erasure and webhook retries: a
second stateful property test of the store.

``StoreFlows`` drives the store through what ``StoreCounts`` (tests/bot/test_store_counts.py)
leaves out, on a few items, people and labels, with every figure ``drift`` recomputes
checked after each step too: questions asked in their label's channel (``[hitl.routes]``,
followed through renames and merges, a retired label's channel left out), restarts under
other routes (``requeue_posts_outside``, at start and each dispatcher round), the labeling
window's own calls (``next_in_channels``, answers with source 'modal'), questions whose
Slack message is gone (``take_back_gone``), answers on decided and set-aside items (late:
counted nowhere), splits sent to review and decided there, deleted items' messages queued
for the redrawer (``erased_posts``, ``forget_erased_post``, a question posted while its item
was deleted), and webhooks that fail, back off, are lost mid-send and give up
(``bot.api.webhooks``' own claim, payload and outcome steps).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bot.api.webhooks import DeliveryRound, _first_bodies, _record, _with_payloads
from bot.errors import StoreError
from bot.labelset import channel_for, routes_in_force
from bot.slack.connect import retired_route_labels
from bot.store import Store
from bot.store.erasure import LOST
from bot.store.reviews import ReviewRules
from tests.bot.test_store_counts import Clock, Row, change_label_set, drift, restate
from tests.machines import machine_settings, run_machine

ITEMS = [f"i{n}" for n in range(5)]
ITEM = st.sampled_from(ITEMS)
PICK = st.sampled_from([0, 0, 1, 2, None])  # a label by its place in the set, or Skip
PEOPLE = ["U1", "U2", "U3"]
NAMES = ["a", "b", "c"]
DEFAULT = "C1"  # HITL_CHANNEL
# [hitl.routes] a restart may start under
ROUTES = [{}, {"a": "C2"}, {"a": "C2", "b": "C3"}, {"b": "C2", "c": "C2"}]
CHANNEL_SETS = [("C1",), ("C2",), ("C3",), ("C1", "C2"), ("C1", "C2", "C3")]
MAX_ATTEMPTS = 2  # a webhook's attempts before it gives up (the sender's max_attempts)
WAITING = ("new", "queued", "auto", "gold")
MAX_OPEN = 2  # HITL_MAX_OPEN


def test_an_undo_leaves_a_question_moved_out_of_a_channel_no_longer_asked_in_closed():
    """Found by ``StoreFlows``: an item asked in a route's channel, moved at a start that no
    longer asks there (``requeue_posts_outside``: its message says where it is asked now),
    decided by a click on that old message and undone, had the moved question reopened: an
    open question, with its buttons drawn again, in a channel nobody is asked in (the
    dispatcher neither fills nor counts it), holding the item there as asked."""
    with Store.memory(clock=Clock()) as store:
        store.add_items([Row("i0", "text of i0")], "import")
        assert store.begin_post_attempt("i0", "C2", "uncertain", None, None, None)
        store.record_post("i0", "C2", "1.0", "uncertain", None, None, None)
        moved = store.requeue_posts_outside([DEFAULT])  # a start without C2's route
        assert [post["item_id"] for post in moved] == ["i0"]
        answer = store.record_answer("i0", "U1", "a", source="button", dedupe_key="k1")
        assert answer.status == "resolved"  # an answer on the old message still counts
        undone = store.undo_resolution("i0", "U1", "2025-01-01T00:00:00.000+00:00")
        assert undone.label == "a" and not undone.reopened
        assert store.open_posts() == []  # not asked in C2 again
        assert store.get_item("i0")["status"] == "new"  # waiting to be asked where it goes now
        assert store.next_in_channels("U1", [DEFAULT], {}, DEFAULT) == "i0"
        assert not drift(store)


def test_an_undo_after_a_start_that_drops_its_channel_leaves_the_question_to_the_next_round():
    """Found by ``StoreFlows``: an item decided in a route's channel, then a start whose
    routes no longer ask there (nothing open to move), then an Undo of the decision on its
    message: the question is reopened in that channel (a split a Skip ends is reopened the
    same way). The store's reopen paths do not know the channels asked in; the dispatcher's
    next round moves it, as each round moves the open questions of channels no longer asked
    in (``requeue_posts_outside``, ``Dispatcher._move_reopened``; through the server:
    tests/bot/test_reopened_in_a_dropped_channel.py): closed, its item waiting to be asked
    where it goes now, its message due for a redraw that says so. Before, it sat there open,
    where the dispatcher neither fills nor counts, until HITL_QUESTION_TTL took it back."""
    with Store.memory(clock=Clock()) as store:
        store.add_items([Row("i0", "text of i0")], "import")
        assert store.begin_post_attempt("i0", "C2", "uncertain", None, None, None)
        post_id = store.record_post("i0", "C2", "1.0", "uncertain", None, None, None)
        store.record_answer("i0", "U1", "a", source="button", dedupe_key="k1")
        assert store.requeue_posts_outside([DEFAULT]) == []  # a start without C2's route
        undone = store.undo_resolution("i0", "U1", "2025-01-01T00:00:00.000+00:00")
        assert undone.label == "a"
        assert [post["channel"] for post in store.open_posts()] == ["C2"]  # reopened there
        drawn = store.post(post_id)["redraw_seq"]
        moved = store.requeue_posts_outside([DEFAULT], redraw=True)  # the next round
        assert [(post["item_id"], post["channel"]) for post in moved] == [("i0", "C2")]
        assert store.open_posts() == []
        post = store.post(post_id)
        assert post["closed_at"] and post["taken_back"] == "moved" and not post["expired_at"]
        assert post["redraw_seq"] == drawn + 1  # drawn again, as moved
        assert store.get_item("i0")["status"] == "new"  # waiting to be asked where it goes now
        assert store.next_in_channels("U1", [DEFAULT], {}, DEFAULT) == "i0"
        assert not drift(store)


class StoreFlows(RuleBasedStateMachine):
    votes = 1
    seen: Counter[str] = Counter()  # what the runs did, for the test to check they did it

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = Store.memory(clock=self.clock)
        self.version = 0
        self.threshold = 0.7
        self.names = list(NAMES)  # the label set in force, as the CLI reads it
        self.used = set(NAMES)
        self.settings = SimpleNamespace(channel=DEFAULT, routes={}, labels=())
        self.rt = SimpleNamespace(store=self.store, settings=self.settings)
        self.ts = 0
        self.reopenable: set[int] = set()
        self.posts_of: dict[str, set[tuple[str, str]]] = {}  # each item's messages
        self.to_erase: set[tuple[str, str]] = set()  # deleted items' messages still in Slack
        self.sent: dict[str, str] = {}  # when each item's webhook last went (or gave up)
        self.ended: dict[str, tuple[str, int]] = {}  # deliveries ended, by key: status, attempts
        self.bodies: dict[str, bytes] = {}  # what each delivery's first attempt sent, by key
        self.settings.routes = dict(ROUTES[2])
        self.asked_in = set(self.question_channels())
        self.store.add_items([Row(i, f"text of {i}") for i in ITEMS[:3]], "import")
        for item in ITEMS[3:]:
            self.arrive_over_api(item)
        for item, label in zip(ITEMS, ["a", "b", "c", "a", "b"], strict=True):
            self.score(item, label, 0.55)

    def teardown(self) -> None:
        self.store.close()

    # -- the channels --
    def routes(self) -> dict[str, str]:
        return routes_in_force(self.settings, self.store)

    def question_channels(self) -> list[str]:
        """As ``Dispatcher.question_channels``: HITL_CHANNEL and the routes' channels, a
        retired label's left out unless another setting names it."""
        retired = retired_route_labels(self.rt)
        found = [DEFAULT] + [c for label, c in self.settings.routes.items() if label not in retired]
        return sorted(set(found))

    # -- what comes in --
    @rule(item=ITEM, pick=PICK, api=st.booleans())
    def arrive(self, item: str, pick: int | None, api: bool) -> None:
        """`hitl import` of a row (with a label of the set or none), or a producer's POST
        /api/items (with a callback_url)."""
        if api:
            self.arrive_over_api(item)
        else:
            self.store.add_items([Row(item, f"text of {item}", self._label(pick))], "import")

    def arrive_over_api(self, item: str) -> None:
        sent = SimpleNamespace(id=item, text=f"text of {item}", meta={}, callback_url="http://h/")
        self.store.add_api_items([sent], tell_settled=True)

    @rule(item=ITEM, first=st.sampled_from(NAMES), confidence=st.sampled_from([0.55, 0.95]))
    def score(self, item: str, first: str, confidence: float) -> None:
        self.version += 1
        other = NAMES[(NAMES.index(first) + 1) % len(NAMES)]
        ranked = [[first, confidence], [other, round(1 - confidence, 2)]]
        self.store.set_predictions(
            [(item, self.version, first, confidence, ranked, 1 - confidence)],
            self.threshold,
            "margin",
        )

    # -- questions --
    def _post(self, item: str, channel: str) -> int:
        self.ts += 1
        ts = f"{self.ts}.0"
        post_id = self.store.record_post(item, channel, ts, "uncertain", None, None, None)
        if post_id:
            self.posts_of.setdefault(item, set()).add((channel, ts))
        else:  # deleted while it was posted: its message is left to delete
            self.to_erase.add((channel, ts))
        return post_id

    @rule()
    def dispatch(self) -> None:
        """A dispatcher round: each waiting item is asked in the channel its predicted label
        goes to, among the channels questions are asked in, while that channel has fewer than
        MAX_OPEN open questions."""
        channels = self.question_channels()
        # first the open questions of channels no longer asked in (reopened there by an Undo
        # or a Skip that ends a split, or left in a retired label's channel) are moved
        moved = self.store.requeue_posts_outside(channels, self.threshold, redraw=True)
        self.seen["moved in a round"] += bool(moved)
        open_counts = self.store.open_post_counts()
        routes = self.routes()
        for (item,) in self.store.db.execute(
            "SELECT id FROM items WHERE status IN ('new', 'queued', 'gold') ORDER BY rowid"
        ).fetchall():
            row = self.store.get_item(item)
            channel = channel_for(routes, self.settings, row["predicted_label"])
            if channel not in channels or open_counts.get(channel, 0) >= MAX_OPEN:
                continue
            if self.store.begin_post_attempt(item, channel, "uncertain", None, None, None):
                assert self._post(item, channel)
                open_counts[channel] = open_counts.get(channel, 0) + 1
                self.seen["routed post" if channel != DEFAULT else "post"] += 1
        outside = [p["item_id"] for p in self.store.open_posts() if p["channel"] not in channels]
        assert not outside, (outside, channels)

    @rule(n=st.integers(0, 7))
    def message_gone(self, n: int) -> None:
        """The redrawer finds a question's message gone (message_not_found)."""
        posts = self.store.open_posts()
        if not posts:
            return
        post = posts[n % len(posts)]
        taken = self.store.take_back_gone([post["id"]], self.threshold)
        assert [p["id"] for p in taken] == [post["id"]]
        item = self.store.get_item(post["item_id"])
        assert item["status"] in WAITING, item["status"]  # waiting to be asked again
        after = self.store.post(post["id"])
        assert after["closed_at"] and after["expired_at"]
        assert after["drawn_seq"] == after["redraw_seq"]  # nothing to redraw
        self.seen["message gone"] += 1

    @rule(hours=st.sampled_from([0.5, 2]))
    def questions_expire(self, hours: float) -> None:
        """HITL_QUESTION_TTL (1 h): the questions left alone that long are taken back."""
        self.clock.at += timedelta(hours=hours)
        self.store.expire_posts(1, 10, self.threshold)

    # -- answers --
    def _label(self, pick: int | None) -> str | None:
        return None if pick is None else self.names[pick % len(self.names)]

    def _answer(self, item: str, user: str, label: str | None, source: str) -> None:
        before = self.store.get_item(item)
        last = self.store.db.execute("SELECT coalesce(max(id), 0) FROM answers").fetchone()[0]
        self.ts += 1
        result = self.store.record_answer(
            item,
            user,
            label,
            source=source,
            dedupe_key=f"{item}:{user}:{label}:{self.ts}",
            votes_needed=self.votes,
            review=ReviewRules(0.0, 0.0),
        )
        if before is not None and before["status"] in ("resolved", "skipped"):
            # too late: kept as history, its sender told so, counted nowhere
            assert result.status in ("closed", "repeated"), result.status
            late = self.store.db.execute("SELECT late FROM answers WHERE id > ?", [last]).fetchall()
            assert all(row[0] == 1 for row in late), late
            self.seen["late answer"] += bool(late)
        if result.status == "recorded" and self.store.reviews_of(item):
            self.seen["split"] += any(
                r["reason"] == "split" and r["decided_at"] is None
                for r in self.store.reviews_of(item)
            )

    @rule(item=ITEM, user=st.sampled_from(PEOPLE), pick=PICK, then_undo=st.booleans())
    def click(self, item: str, user: str, pick: int | None, then_undo: bool) -> None:
        """A click on a channel question's button (an old message's too: answers go by item
        id), or a late one on a decided item; then, maybe, the Undo the channel offers."""
        self._answer(item, user, self._label(pick), "button")
        if then_undo:
            self._undo(item, user)

    @rule(n=st.integers(0, 4), picks=st.lists(PICK, min_size=3, max_size=3))
    def three_people_click(self, n: int, picks: list[int | None]) -> None:
        """Three people answer one of the open questions, one after the other: a decision,
        a split (under HITL_VOTES 3) or skips."""
        posts = self.store.open_posts()
        if not posts:
            return
        item = posts[n % len(posts)]["item_id"]
        for user, pick in zip(PEOPLE, picks, strict=True):
            self._answer(item, user, self._label(pick), "button")

    def _undo(self, item: str, user: str) -> None:
        self.store.undo_resolution(
            item, user, self.clock.ago(timedelta(minutes=5)), votes_needed=self.votes
        )

    @rule(n=st.integers(0, 8))
    def undo(self, n: int) -> None:
        voters = sorted(
            (item, user)
            for item, annotators in self.store.db.execute(
                "SELECT item_id, annotators FROM labels WHERE decided_by IS NOT NULL"
            )
            for user in json.loads(annotators)
        )
        if voters:
            self._undo(*voters[n % len(voters)])

    @rule(
        user=st.sampled_from(PEOPLE),
        channels=st.sampled_from(CHANNEL_SETS),
        pick=PICK,
        then_undo=st.booleans(),
    )
    def labeling_window(
        self, user: str, channels: tuple[str, ...], pick: int | None, then_undo: bool
    ) -> None:
        """/hitl label: the window shows the person the next item of their channels, and
        they answer it there (source 'modal')."""
        routes = self.routes()
        shown = self.store.next_in_channels(user, channels, routes, DEFAULT)
        assert shown == self._next_for(user, channels, routes), (shown, channels, routes)
        if shown is not None:
            status = self.store.get_item(shown)["status"]
            self.seen[
                f"window shows {'a question' if status == 'posted' else 'a waiting item'}"
            ] += 1
            self._answer(shown, user, self._label(pick), "modal")
            if then_undo:
                self._undo(shown, user)

    def _next_for(self, user: str, channels: tuple[str, ...], routes: dict[str, str]) -> Any:
        """What the window should show, from the rows: the oldest open question in
        ``channels`` the person has not answered (their latest answer, if any, an Undo), then
        the waiting items their label's route sends there, queued before not scored."""
        db = self.store.db

        def theirs(item: str) -> bool:
            latest = db.execute(
                "SELECT source FROM answers WHERE item_id = ? AND user_id = ?"
                " ORDER BY id DESC LIMIT 1",
                [item, user],
            ).fetchone()
            return latest is None or latest[0] == "undo"

        for item, channel in db.execute(
            "SELECT p.item_id, p.channel FROM posts p JOIN items i ON i.id = p.item_id"
            " WHERE p.closed_at IS NULL AND i.status = 'posted' ORDER BY p.id"
        ).fetchall():
            if channel in channels and theirs(item):
                return item
        for status in ("queued", "new"):
            for item, label in db.execute(
                "SELECT id, predicted_label FROM items WHERE status = ?"
                " ORDER BY priority DESC, rowid",
                [status],
            ).fetchall():
                if channel_for(routes, self.settings, label) in channels and theirs(item):
                    return item
        return None

    # -- admins and starts --
    @rule(votes=st.sampled_from([1, 3]), routes=st.sampled_from(range(len(ROUTES))))
    def restart(self, votes: int, routes: int) -> None:
        """A start under another HITL_VOTES and other [hitl.routes]: the answers decide what
        they decide under it, and the questions of channels no longer asked in are moved."""
        self.votes = votes
        self.seen["start"] += 1
        self.seen["start with questions open"] += bool(self.store.open_posts())
        self.settings.routes = dict(ROUTES[routes])
        self.store.decide_answered(votes)
        channels = self.question_channels()
        self.seen["moved at start"] += bool(
            self.store.requeue_posts_outside(channels, self.threshold)
        )
        self.asked_in = set(channels)
        # a decided question of a channel no longer asked in, which an Undo (or a Skip that
        # ends a split) reopens there until the next round (``dispatch``) moves it:
        # test_an_undo_after_a_start_that_drops_its_channel_leaves_the_question_to_the_next_round
        self.reopenable |= {
            row[0]
            for row in self.store.db.execute(
                "SELECT id FROM posts WHERE closed_at IS NOT NULL AND taken_back IS NULL"
            )
        }

    @rule(n=st.integers(0, 3), pick=st.integers(0, 2), remove=st.booleans())
    def review_decision(self, n: int, pick: int, remove: bool) -> None:
        """/hitl review: an admin decides an item waiting in review (a split, mostly)."""
        pending = [
            row[0]
            for row in self.store.db.execute(
                "SELECT DISTINCT item_id FROM reviews WHERE decided_at IS NULL ORDER BY item_id"
            )
        ]
        if not pending:
            return
        item = pending[n % len(pending)]
        self.seen["review decision"] += 1
        if remove:
            # a refusal (no such item, no label to take away, nothing to anonymise) is the
            # store's answer, as the CLI and Slack get it: the checks after the step read
            # what stands
            with contextlib.suppress(StoreError):
                self.store.remove_label(item, user_id="UADMIN", action="review")
        else:
            change = self.store.set_label(
                item, self._label(pick), user_id="UADMIN", action="review"
            )
            if change.confirmed:  # no webhook: the label its producer heard of stays
                self.sent[item] = self.clock()

    @rule(action=st.sampled_from(["rename", "merge", "retire", "add"]), i=st.integers(0, 3))
    def change_label_set(self, action: str, i: int) -> None:
        """`hitl labels rename/merge/retire/add` (a route follows its label's renames)."""
        names, used, votes = self.names, self.used, self.votes
        self.names = change_label_set(self.store, names, used, votes, action, i, i + 1, i)
        self.asked_in |= set(self.question_channels())  # added back: asked there again

    @rule()
    def restate_predictions(self) -> None:
        restate(self.store, self.threshold)

    @rule(item=ITEM, pick=st.integers(0, 2))
    def mark_gold(self, item: str, pick: int) -> None:
        self.store.add_gold([Row(item, f"text of {item}", self._label(pick))])

    def _delete(self, item: str) -> None:
        try:
            self.store.delete_items([item], user_id="UADMIN", label_seqs={})
        except StoreError:
            return
        self.to_erase |= self.posts_of.pop(item, set())

    @rule(item=ITEM, while_posted=st.booleans())
    def delete(self, item: str, while_posted: bool) -> None:
        """`hitl delete`; ``while_posted``: between the dispatcher's post attempt and its
        record (the message is left for the redrawer to delete)."""
        if not while_posted:
            self._delete(item)
            return
        if not self.store.begin_post_attempt(item, DEFAULT, "uncertain", None, None, None):
            return
        self._delete(item)
        assert self._post(item, DEFAULT) == 0
        self.seen["posted while deleted"] += 1

    @rule(n=st.integers(1, 3))
    def redrawer_erases(self, n: int) -> None:
        """The redrawer deletes deleted items' messages from Slack, the oldest first."""
        for post in self.store.erased_posts(limit=n):
            self.store.forget_erased_post(int(post["id"]))
            self.seen["message erased"] += 1
            self.to_erase.discard((post["channel"], post["ts"]))

    # -- webhooks --
    @rule(
        outcomes=st.lists(st.sampled_from(["ok", "error", "error", "lost"]), min_size=1, max_size=6)
    )
    def webhooks_go(self, outcomes: list[str]) -> None:
        for n in range(0, len(outcomes), 2):
            self._webhook_round(outcomes[n : n + 2])

    def _webhook_round(self, outcomes: list[str]) -> None:
        """A sender's round, with the sender's own steps: claim what is due, cancel what has
        nothing to tell, keep each first attempt's body, and store how each send ended:
        delivered, failed (retried after a backoff, or given up after MAX_ATTEMPTS), or
        lost (the server died mid-send: claimed again when its lease ends)."""
        now_text = self.clock()
        now = datetime.fromisoformat(now_text)
        lease = (now + timedelta(minutes=2)).isoformat(timespec="milliseconds")
        claimed = self.store.claim_due_deliveries(now_text, lease, 10)
        for delivery in claimed:
            assert delivery["key"] not in self.ended, ("claimed again", delivery)
            older = self.store.db.execute(
                "SELECT id FROM deliveries WHERE item_id = ? AND id < ? AND status = 'pending'",
                [delivery["item_id"], delivery["id"]],
            ).fetchall()
            assert not older, ("claimed before an older one of its item", delivery, older)
            if delivery["body"] is not None:  # a retry sends what its first attempt sent
                assert bytes(delivery["body"]) == self.bodies[delivery["key"]]
        done = DeliveryRound()
        jobs, cancelled = _with_payloads(self.rt, claimed, done)
        self.store.finish_deliveries(cancelled, _first_bodies(jobs))
        self.seen["webhook cancelled"] += len(cancelled)
        for delivery_id, _, _ in cancelled:
            item = next(d["item_id"] for d in claimed if d["id"] == delivery_id)
            self.sent[item] = now_text
        for (delivery, body), outcome in zip(jobs, outcomes * 5, strict=False):
            if delivery.get("first"):  # it tells the item as it is now, in every attempt
                self.bodies[delivery["key"]] = body
                self.sent[delivery["item_id"]] = now_text
            self.seen["webhook retried" if delivery["attempts"] > 1 else "webhook sent"] += 1
            if outcome == "lost":
                continue
            error = None if outcome == "ok" else "HTTP 500"
            _record(self.rt, done, delivery, error, now, 10.0, MAX_ATTEMPTS)
        for delivery in claimed:
            if delivery["id"] in [*done.delivered, *done.failed, *done.cancelled]:
                status, attempts = self.store.db.execute(
                    "SELECT status, attempts FROM deliveries WHERE id = ?", [delivery["id"]]
                ).fetchone()
                self.ended[delivery["key"]] = (status, attempts)
                self.seen[f"webhook {status}"] += 1
        # a lost send is sent again, once its lease ends, under the same attempt count
        self.clock.at += timedelta(minutes=3)

    # -- what must hold after every step --
    @invariant()
    def nothing_drifts(self) -> None:
        self.seen["steps"] += 1
        problems = drift(self.store, self.sent)
        assert not problems, "\n".join(problems)

    @invariant()
    def questions_are_where_they_are_asked(self) -> None:
        """Each open question is in a channel questions are asked in (since the last start:
        a start moves those of channels no longer asked in), or one an Undo or a Skip reopened
        in such a channel since, which the next round moves (``dispatch`` checks it)."""
        outside = [
            (p["item_id"], p["channel"])
            for p in self.store.open_posts()
            if p["channel"] not in self.asked_in and p["id"] not in self.reopenable
        ]
        assert not outside, (outside, sorted(self.asked_in))

    @invariant()
    def a_split_in_review_holds_no_place(self) -> None:
        held = self.store.db.execute(
            "SELECT r.item_id FROM reviews r JOIN posts p ON p.item_id = r.item_id"
            " WHERE r.reason = 'split' AND r.decided_at IS NULL AND p.closed_at IS NULL"
        ).fetchall()
        assert not held, held

    @invariant()
    def tallies_count_no_late_answer(self) -> None:
        """Each item's tally is its people's latest answers given while it was open (a late
        one counted nowhere), a renamed or merged label's under its name now."""
        db = self.store.db
        aliases = self.store.label_aliases()
        for (item,) in db.execute("SELECT id FROM items").fetchall():
            votes: dict[str, list[str]] = {}
            skips: list[str] = []
            for user, label, source in db.execute(
                "SELECT user_id, label, source FROM answers WHERE id IN (SELECT max(id)"
                " FROM answers WHERE item_id = ? AND source != 'import' AND late = 0"
                " GROUP BY user_id)",
                [item],
            ):
                if source == "undo":
                    continue
                if label is None:
                    skips.append(user)
                else:
                    votes.setdefault(aliases.get(label, label), []).append(user)
            tally = self.store.tally(item)
            kept = {label: sorted(users) for label, users in tally.votes.items() if users}
            made = {label: sorted(users) for label, users in votes.items()}
            assert (kept, sorted(tally.skips)) == (made, sorted(skips)), item

    @invariant()
    def deleted_items_messages_are_erased_once(self) -> None:
        kept = self.store.db.execute(
            "SELECT channel, ts FROM erased_posts WHERE substr(ts, 1, ?) != ?", [len(LOST), LOST]
        ).fetchall()
        assert sorted(map(tuple, kept)) == sorted(self.to_erase)
        left = self.store.db.execute(
            "SELECT count(*) FROM posts WHERE item_id NOT IN (SELECT id FROM items)"
        ).fetchone()[0]
        assert left == 0

    @invariant()
    def an_ended_webhook_is_final(self) -> None:
        for key, (status, attempts) in self.ended.items():
            now = self.store.db.execute(
                "SELECT status, attempts FROM deliveries WHERE key = ?", [key]
            ).fetchone()
            if now is None:  # its item deleted
                continue
            assert tuple(now) == (status, attempts), (key, status, attempts, now)
            assert status in ("delivered", "failed", "cancelled")
        over = self.store.db.execute(
            "SELECT id, attempts FROM deliveries WHERE status = 'failed' AND attempts < ?",
            [MAX_ATTEMPTS],
        ).fetchall()
        assert not over, over  # gave up only after its attempts


FLOW_SETTINGS = machine_settings(50, 25)


class StoreFlowsThreeVotes(StoreFlows):
    votes = 3


@pytest.mark.parametrize("machine", [StoreFlows, StoreFlowsThreeVotes], ids=["votes1", "votes3"])
def test_routing_the_window_gone_questions_erasure_and_webhooks_after_any_sequence(
    machine: type[StoreFlows],
):
    run_machine(machine, FLOW_SETTINGS)
