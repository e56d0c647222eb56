"""The store's derived figures never drift from its rows: a stateful property test.

What `/hitl stats`, `/hitl queue`, App Home, the leaderboard, `/metrics` and a retrain's choice
of data read is partly kept beside the rows it is about (``item_counts``, ``label_counts`` and
``answered_by_user`` by triggers and by hand; each item's status, posts, gold row, label,
aliases and webhook outbox by the store's methods). A drift is silent: the figures are simply
wrong. ``StoreCounts`` drives the store through the calls the server and the CLI make (import,
the producer API, scoring, posting, a click, a skip, an Undo, `hitl labels set/remove`, a review
decision, `hitl labels rename/merge/retire/add`, gold marking, `hitl delete`, `hitl people
anonymise`, a TTL take-back, a threshold pass, the label-set pass, a webhook sent) on a few
items, people and labels, and after every step recomputes each figure from the base rows in
plain SQL (``drift``)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bot.errors import StoreError
from bot.store import Store
from bot.store.reviews import ReviewRules
from tests.machines import machine_settings, run_machine

ITEMS = [f"i{n}" for n in range(4)]
ITEM = st.sampled_from(ITEMS)
PICK = st.sampled_from([0, 0, 0, 1, 2, None])  # a label by its place in the set, or Skip
PEOPLE = ["U1", "U2", "U3", "U4"]
NAMES = ["a", "b", "c", "d"]
CHANNEL = "C1"
COUNTED = "source != 'import' AND late = 0"


@dataclass
class Row:
    id: str
    text: str
    label: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


class Clock:
    """A clock that moves on a second at every read (as the real one never stands still), and
    by hours when told (``wait``)."""

    def __init__(self) -> None:
        self.at = datetime(2025, 1, 6, 9, tzinfo=UTC)

    def __call__(self) -> str:
        self.at += timedelta(seconds=1)
        return self.at.isoformat(timespec="milliseconds")

    def ago(self, delta: timedelta) -> str:
        return (self.at - delta).isoformat(timespec="milliseconds")


def _rows(db, sql: str, args=()) -> set[tuple]:
    return set(map(tuple, db.execute(sql, list(args)).fetchall()))


def drift(store: Store, sent: dict[str, str] | None = None) -> list[str]:
    """Each derived figure that differs from the same figure recomputed from the base rows.
    ``sent``: when each item's webhook last went (claimed by a sender), by item id."""
    db = store.db
    found: list[str] = []

    def same(name: str, kept: set[tuple], made: set[tuple]) -> None:
        if kept != made:
            found.append(f"{name}: kept {sorted(kept)} but the rows say {sorted(made)}")

    # items per status (/hitl stats, /hitl queue, App Home, /metrics)
    same(
        "item_counts",
        _rows(db, "SELECT status, n FROM item_counts WHERE n != 0"),
        _rows(db, "SELECT status, count(*) FROM items GROUP BY status"),
    )
    same(
        "count_items",
        {(status, n) for status, n in store.count_items().items() if n},
        _rows(db, "SELECT status, count(*) FROM items GROUP BY status"),
    )
    # resolved items per label (the label set, `hitl labels`, stats)
    same(
        "label_counts",
        _rows(db, "SELECT label, n FROM label_counts WHERE n != 0"),
        _rows(db, "SELECT label, count(*) FROM labels GROUP BY label"),
    )
    # each person's items answered and labeled (the all-time leaderboard, App Home): their
    # latest counted answer per item, an Undo being none and a skip no label
    same(
        "answered_by_user",
        _rows(db, "SELECT user_id, n, labeled FROM answered_by_user WHERE n != 0 OR labeled != 0"),
        _rows(
            db,
            "SELECT user_id, sum(source != 'undo'), sum(source != 'undo' AND label IS NOT NULL)"
            f" FROM answers WHERE id IN (SELECT max(id) FROM answers WHERE {COUNTED}"
            " GROUP BY item_id, user_id) GROUP BY user_id"
            " HAVING sum(source != 'undo') != 0",
        ),
    )
    # an item is resolved exactly when it has a label (what training and export read)
    same(
        "resolved items",
        _rows(db, "SELECT id FROM items WHERE status = 'resolved'"),
        _rows(db, "SELECT item_id FROM labels"),
    )
    # a split's review is closed once the item is decided (the review queue, /hitl stats)
    same(
        "split reviews of decided items",
        _rows(
            db,
            "SELECT r.item_id FROM reviews r JOIN items i ON i.id = r.item_id"
            " WHERE r.decided_at IS NULL AND r.reason = 'split' AND i.status = 'resolved'",
        ),
        set(),
    )
    # a label's vote figures (the producer API, webhooks, export, the mean agreement) are
    # those of the people's latest counted answers, a renamed or merged label's under its name
    # now: its votes, and their share of all the labels given
    same(
        "labels.votes",
        _rows(
            db,
            "SELECT item_id, label, votes, round(agreement, 6) FROM labels"
            " WHERE decided_by IS NOT NULL",
        ),
        _rows(
            db,
            "WITH latest AS (SELECT a.item_id, coalesce(m.new, a.label) AS label FROM answers a"
            " LEFT JOIN label_aliases m ON m.old = a.label WHERE a.id IN (SELECT max(id)"
            f" FROM answers WHERE {COUNTED} GROUP BY item_id, user_id)"
            " AND a.source != 'undo' AND a.label IS NOT NULL)"
            ", counted AS (SELECT l.item_id, l.label, (SELECT count(*) FROM latest"
            " WHERE latest.item_id = l.item_id AND latest.label = l.label) AS votes,"
            " (SELECT count(*) FROM latest WHERE latest.item_id = l.item_id) AS given"
            " FROM labels l WHERE l.decided_by IS NOT NULL)"
            " SELECT item_id, label, votes, round(coalesce(1.0 * votes / nullif(given, 0), 0), 6)"
            " FROM counted",
        ),
    )
    # posts: one open question per item at most, and an open question's item is asked (posted)
    same(
        "open posts per item",
        _rows(db, "SELECT item_id, count(*) FROM posts WHERE closed_at IS NULL GROUP BY item_id"),
        _rows(db, "SELECT item_id, 1 FROM posts WHERE closed_at IS NULL GROUP BY item_id"),
    )
    same(
        "open posts' items",
        _rows(
            db,
            "SELECT p.item_id, i.status FROM posts p JOIN items i ON i.id = p.item_id"
            " WHERE p.closed_at IS NULL",
        ),
        _rows(
            db,
            "SELECT p.item_id, 'posted' FROM posts p WHERE p.closed_at IS NULL",
        ),
    )
    # and an asked item has its question open, unless it waits in review as a split (whose
    # question holds no channel place): else no one is asked about it again (the dispatcher
    # posts waiting items, the labeling window serves open questions and waiting items) and
    # it counts as asked for good
    same(
        "asked items without a question",
        _rows(
            db,
            "SELECT id FROM items WHERE status = 'posted' AND id NOT IN (SELECT item_id"
            " FROM posts WHERE closed_at IS NULL) AND id NOT IN (SELECT item_id FROM reviews"
            " WHERE decided_at IS NULL AND reason = 'split')",
        ),
        set(),
    )
    same(
        "open_post_counts",
        set(store.open_post_counts().items()),
        _rows(db, "SELECT channel, count(*) FROM posts WHERE closed_at IS NULL GROUP BY channel"),
    )
    # gold: an item waiting as a gold question is gold
    same(
        "gold questions",
        _rows(db, "SELECT id FROM items WHERE status = 'gold'"),
        _rows(
            db,
            "SELECT id FROM items WHERE status = 'gold' AND id IN (SELECT item_id FROM gold)",
        ),
    )
    # label aliases after renames and merges: each names a label of the set, no stored label
    # and no gold label is a former name, and no former name is in the set
    same(
        "label_aliases",
        _rows(db, "SELECT old, new FROM label_aliases"),
        _rows(
            db,
            "SELECT old, new FROM label_aliases WHERE new IN (SELECT name FROM label_set)"
            " AND old NOT IN (SELECT name FROM label_set)",
        ),
    )
    same(
        "labels under a former name",
        _rows(
            db,
            "SELECT 'labels', item_id, label FROM labels WHERE label IN (SELECT old FROM"
            " label_aliases) UNION ALL SELECT 'gold', item_id, label FROM gold WHERE label IN"
            " (SELECT old FROM label_aliases)",
        ),
        set(),
    )
    # the label clock: every label write has its own number, none past the clock
    same(
        "label_clock",
        _rows(
            db,
            "SELECT count(DISTINCT seq), coalesce(max(seq), 0) <= (SELECT n FROM label_clock)"
            " FROM labels",
        ),
        _rows(db, "SELECT count(*), 1 FROM labels"),
    )
    # webhooks: at most one unsent delivery per item, and an item with a callback_url whose
    # label changed (or that was set aside: skipped) since its webhook last went has one
    # waiting to tell it (a delivery tells the item as it is when it goes)
    same(
        "unsent deliveries per item",
        _rows(
            db,
            "SELECT item_id FROM deliveries WHERE status = 'pending' AND attempts = 0"
            " GROUP BY item_id HAVING count(*) > 1",
        ),
        set(),
    )
    same(
        "label changes told",
        _rows(
            db,
            "SELECT i.id FROM items i LEFT JOIN labels l ON l.item_id = i.id"
            " WHERE coalesce(i.callback_url, '') != ''"
            " AND (l.item_id IS NOT NULL OR i.status = 'skipped')"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.item_id = i.id"
            " AND d.status = 'pending' AND d.attempts = 0)"
            " AND coalesce((SELECT s.value FROM json_each(?) s WHERE s.key = i.id), '') < max("
            " coalesce(l.resolved_at, ''), CASE i.status WHEN 'skipped' THEN i.updated_at"
            " ELSE '' END, coalesce((SELECT max(h.created_at) FROM label_history h"
            " WHERE h.item_id = i.id), ''))",
            [json.dumps(sent or {})],
        ),
        set(),
    )
    return found


def test_an_undo_of_a_decision_made_in_the_labeling_window_puts_the_item_back_in_the_queue():
    """Found by ``StoreCounts``: an item answered in the labeling window before it was ever
    posted, decided by that answer, then undone, was left 'posted' with no question anywhere:
    the dispatcher posts only waiting items and the window serves only open questions and
    waiting items, so nobody was asked about it again, and it counted as asked for good."""
    with Store.memory(clock=Clock()) as store:
        store.add_items([Row("i0", "text of i0")], "import")
        assert store.next_in_channels("U1", [CHANNEL], {}, CHANNEL) == "i0"
        answer = store.record_answer("i0", "U1", "a", source="modal", dedupe_key="k1")
        assert answer.status == "resolved"
        undone = store.undo_resolution("i0", "U1", "2025-01-01T00:00:00.000+00:00")
        assert undone.label == "a" and not undone.reopened and not undone.posted  # no question
        assert store.get_item("i0")["status"] == "new"  # waiting again, as before the answer
        assert {status: n for status, n in store.count_items().items() if n} == {"new": 1}
        assert store.next_in_channels("U1", [CHANNEL], {}, CHANNEL) == "i0"  # theirs again
        assert store.next_in_channels("U2", [CHANNEL], {}, CHANNEL) == "i0"
        assert not drift(store)


def test_a_second_click_on_the_undo_of_a_gold_question_decided_in_the_window_is_already_undone():
    """A gold question decided in the labeling window before it was ever posted goes back to
    the waiting gold questions when undone (status 'gold'). A second click on the same Undo
    (a double click) was told "Too late to undo", not "Already undone", and the window's
    drawing for it kept the undone answer in the session's count (shown when its redraw is
    the one Slack keeps)."""
    with Store.memory(clock=Clock()) as store:
        store.add_gold([Row("g0", "text of g0", "a")])
        assert store.record_answer("g0", "U1", "a", source="modal", dedupe_key="k1").status == (
            "resolved"
        )
        since = "2025-01-01T00:00:00.000+00:00"
        undone = store.undo_resolution("g0", "U1", since)
        assert undone.label == "a" and not undone.reopened
        assert store.get_item("g0")["status"] == "gold"  # waiting to be asked again
        again = store.undo_resolution("g0", "U1", since)  # the same Undo clicked again
        assert (again.refused, again.reopened) == ("undone", False)  # old code: "not_yours"
        assert not drift(store)


class StoreCounts(RuleBasedStateMachine):
    votes = 1

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = Store.memory(clock=self.clock)
        self.clicks = 0
        self.sent: dict[str, str] = {}  # when each item's webhook last went
        self.version = 0
        self.threshold = 0.7
        self.names = list(NAMES[:3])  # the label set in force, as the CLI reads it
        self.used = set(NAMES)  # the names ever given, as the ones a rename or add may take
        self.store.add_items([Row(i, f"text of {i}") for i in ITEMS[:2]], "import")
        self.producer_sends(ITEMS[2])  # an item with a callback_url: its webhooks

    def teardown(self) -> None:
        self.store.close()

    # -- what comes in --
    @rule(item=ITEM, pick=PICK)
    def import_item(self, item: str, pick: int | None) -> None:
        """`hitl import` of one row, with a label of the set in force or none (the reader maps
        or refuses any other label before the store sees it: ``bot.ingest.load``)."""
        self.store.add_items([Row(item, f"text of {item}", self._label(pick))], "import")

    @rule(item=ITEM)
    def producer_sends(self, item: str) -> None:
        sent = SimpleNamespace(id=item, text=f"text of {item}", meta={}, callback_url="http://h/")
        self.store.add_api_items([sent], tell_settled=True)

    @rule(
        item=ITEM,
        first=st.sampled_from(NAMES),
        second=st.sampled_from(NAMES),
        confidence=st.sampled_from([0.55, 0.75, 0.95]),
    )
    def score(self, item: str, first: str, second: str, confidence: float) -> None:
        """A retrain's (or the scorer's) re-scoring of an item."""
        self.version += 1
        ranked = [[first, confidence], [second, round(1 - confidence, 2)]]
        self.store.set_predictions(
            [(item, self.version, first, confidence, ranked, 1 - confidence)],
            self.threshold,
            "margin",
        )

    # -- questions and answers --
    @rule(item=ITEM)
    def post_question(self, item: str) -> None:
        row = self.store.get_item(item)
        if row is None:
            return
        if self.store.begin_post_attempt(item, CHANNEL, "uncertain", None, None, None):
            self.clicks += 1
            self.store.record_post(item, CHANNEL, f"{self.clicks}.0", "uncertain", None, None, None)

    def _label(self, pick: int | None) -> str | None:
        """A label of the set in force by its place (None: Skip), as its button sends it."""
        return None if pick is None else self.names[pick % len(self.names)]

    def _click(self, item: str, user: str, label: str | None) -> None:
        self.clicks += 1
        self.store.record_answer(
            item,
            user,
            label,
            source="button",
            dedupe_key=f"{item}:{user}:{label}:{self.clicks}",
            votes_needed=self.votes,
            review=ReviewRules(0.0, 0.0),
        )

    @rule(item=ITEM, user=st.sampled_from(PEOPLE[:3]), pick=PICK, then_undo=st.booleans())
    def click(self, item: str, user: str, pick: int | None, then_undo: bool) -> None:
        """A label's button, or Skip (None); ``then_undo``: the Undo the channel then offers
        (refused unless the click decided the item)."""
        self._click(item, user, self._label(pick))
        if then_undo:
            since = self.clock.ago(timedelta(minutes=5))
            self.store.undo_resolution(item, user, since, votes_needed=self.votes)

    @rule(item=ITEM, picks=st.lists(PICK, min_size=3, max_size=3), then_undo=st.booleans())
    def three_people_click(self, item: str, picks: list[int | None], then_undo: bool) -> None:
        """Three people answer one question in a row: a decision, a split or skips; then,
        with ``then_undo``, the first of them clicks Undo."""
        for user, pick in zip(PEOPLE[:3], picks, strict=True):
            self._click(item, user, self._label(pick))
        if then_undo:
            since = self.clock.ago(timedelta(minutes=5))
            self.store.undo_resolution(item, PEOPLE[0], since, votes_needed=self.votes)

    @rule(n=st.integers(0, 8))
    def undo(self, n: int) -> None:
        """Undo by one of a decided item's voters (or by someone else: refused)."""
        voters = sorted(
            (item, user)
            for item, annotators in self.store.db.execute(
                "SELECT item_id, annotators FROM labels WHERE decided_by IS NOT NULL"
            )
            for user in json.loads(annotators)
        ) + [("i0", "U3")]
        item, user = voters[n % len(voters)]
        since = self.clock.ago(timedelta(minutes=5))
        self.store.undo_resolution(item, user, since, votes_needed=self.votes)

    @rule(votes=st.sampled_from([1, 3]))
    def restart_with_votes(self, votes: int) -> None:
        """A restart under another HITL_VOTES (or the same): the start decides the items their
        answers decide under it."""
        self.votes = votes
        self.store.decide_answered(votes)

    # -- admins --
    @rule(item=ITEM, pick=st.integers(0, 3), action=st.sampled_from(["set", "review"]))
    def set_label(self, item: str, pick: int, action: str) -> None:
        """`hitl labels set`, or a review's decision for a label of the set in force."""
        if self.store.get_item(item) is not None:
            self.store.set_label(item, self._label(pick), user_id="UADMIN", action=action)

    @rule(item=ITEM, action=st.sampled_from(["remove", "review"]))
    def remove_label(self, item: str, action: str) -> None:
        # a refusal (no such item, no label to take away, nothing to anonymise) is the
        # store's answer, as the CLI and Slack get it: the checks after the step read
        # what stands
        with contextlib.suppress(StoreError):
            self.store.remove_label(item, user_id="UADMIN", action=action)

    @rule(
        action=st.sampled_from(["rename", "merge", "retire", "add"]),
        i=st.integers(0, 3),
        j=st.integers(0, 3),
    )
    def change_label_set(self, action: str, i: int, j: int) -> None:
        """`hitl labels rename/merge/retire/add`: a label of the set by its place; a rename's
        new name and an added label a name never used, or a retired label back."""
        names, used, votes = self.names, self.used, self.votes
        self.names = change_label_set(self.store, names, used, votes, action, i, j, j)

    @rule()
    def restate_predictions(self) -> None:
        """The scorer's pass after a label-set change."""
        restate(self.store, self.threshold)

    @rule(item=ITEM, pick=st.integers(0, 3))
    def mark_gold(self, item: str, pick: int) -> None:
        """`hitl import --gold` of one row, with a label of the set in force."""
        self.store.add_gold([Row(item, f"text of {item}", self._label(pick))])

    @rule(item=ITEM)
    def delete(self, item: str) -> None:
        # a refusal (no such item, no label to take away, nothing to anonymise) is the
        # store's answer, as the CLI and Slack get it: the checks after the step read
        # what stands
        with contextlib.suppress(StoreError):
            self.store.delete_items([item], user_id="UADMIN", label_seqs={})

    @rule(user=st.sampled_from(PEOPLE), merge=st.booleans())
    def anonymise(self, user: str, merge: bool) -> None:
        """`hitl people anonymise`: a pseudonym of its own (``former-N``), or (``--as P1
        --merge``) a second id of one person joining the pseudonym given before."""
        given = self.store.db.execute(
            "SELECT 1 FROM anonymised_people WHERE pseudonym = 'P1'"
        ).fetchone()
        # a refusal (no such item, no label to take away, nothing to anonymise) is the
        # store's answer, as the CLI and Slack get it: the checks after the step read
        # what stands
        with contextlib.suppress(StoreError):
            if merge:
                self.store.anonymise_people(
                    [user], done_by="UADMIN", pseudonym="P1", merge=given is not None
                )
            else:
                self.store.anonymise_people([user], done_by="UADMIN")

    # -- the clock and the background passes --
    @rule()
    def questions_expire(self) -> None:
        """HITL_QUESTION_TTL (1 h): a question left alone that long is taken back."""
        self.clock.at += timedelta(hours=2)
        self.store.expire_posts(1, 10, self.threshold)

    @rule(threshold=st.sampled_from([0.6, 0.7, 0.9]))
    def threshold_changed(self, threshold: float) -> None:
        """A start with another HITL_THRESHOLD: the threshold pass."""
        self.threshold = threshold
        self.store.begin_rethreshold(threshold)
        at: int | None = 0
        while at is not None:
            _, at = self.store.rethreshold_step(at, 2, threshold)
        self.store.end_rethreshold(threshold)

    @rule()
    def webhooks_sent(self) -> None:
        now = self.clock()
        lease = self.clock.ago(-timedelta(hours=1))
        for delivery in self.store.claim_due_deliveries(now, lease, 10):
            self.sent[delivery["item_id"]] = now
            self.store.finish_delivery(delivery["id"], "delivered")

    @invariant()
    def nothing_drifts(self) -> None:
        problems = drift(self.store, self.sent)
        assert not problems, "\n".join(problems)


class StoreCountsThreeVotes(StoreCounts):
    votes = 3


MACHINE_SETTINGS = machine_settings(60, 25)


@pytest.mark.parametrize("machine", [StoreCounts, StoreCountsThreeVotes], ids=["votes1", "votes3"])
def test_derived_figures_match_the_rows_after_any_sequence(machine: type[StoreCounts]):
    run_machine(machine, MACHINE_SETTINGS)


def change_label_set(
    store: Store,
    names: list[str],
    used: set[str],
    votes: int,
    action: str,
    i: int,
    into: int,
    back: int,
) -> list[str]:
    """`hitl labels rename/merge/retire/add` on the set ``names``: the label at ``i``; a
    rename's new name a name never used (``used``); an added label the retired one or a fresh
    name (by ``back``); a merge into the label at ``into``. The set after it (as before when
    the store refuses)."""
    label = names[i % len(names)]
    fresh = f"n{len(used)}"
    new = {"rename": fresh, "merge": names[into % len(names)]}.get(action)
    if action == "add":
        label = ([*sorted(store.retired_labels())] + [fresh])[back % 2 - 1]
    used.add(fresh)
    try:
        return list(
            store.change_label_set(
                action, label, new, current=names, user_id="UADMIN", votes_needed=votes
            )
        )
    except StoreError:
        return names


def restate(store: Store, threshold: float | None) -> None:
    """The scorer's pass after a label-set change, two items a step, then marked done."""
    count = store.label_set_change_count()
    at: int | None = 0
    while at is not None:
        _, at = store.restate_predictions(at, 2, threshold)
    store.mark_restated(count)
