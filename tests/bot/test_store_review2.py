"""Store defects found in review (reader5), second part: a split between two labels then
merged, a ``retired`` review after an Undo and a new decision, and the status a taken-back
label's webhook tells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import Store
from tests.bot.test_store import R

HOOK = "https://producer.example/hook"
LABELS = ["billing", "refund", "bug"]


class Clock:
    """A store clock that moves a second a read (``t`` may be moved on by hand)."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> str:
        self.t += timedelta(seconds=1)
        return self.t.isoformat(timespec="milliseconds")


def vote(store: Store, user: str, label: str | None, key: str, votes_needed: int = 2):
    return store.record_answer(
        "t1", user, label, source="button", dedupe_key=key, votes_needed=votes_needed
    )


def split_refund_billing(store: Store) -> None:
    store.add_items([R("t1", "I want my money back")], "import")
    store.db.execute("UPDATE items SET callback_url = ? WHERE id = 't1'", [HOOK])
    store.db.conn.commit()
    store.record_post("t1", "C1", "1.0", "uncertain", None, None, None)
    vote(store, "U1", "refund", "k1")
    assert vote(store, "U2", "billing", "k2").status == "recorded"
    assert store.next_review()["reasons"][0][0] == "split"


def test_a_merge_decides_a_split_its_votes_now_agree_on():
    """HITL_VOTES=2: refund 1, billing 1 is a split, in review. Merging refund into billing
    gives billing both votes: the merge decides the item as the votes would (its split
    review closed by the votes, its webhook queued), in its own transaction."""
    with Store.memory(clock=Clock()) as store:
        split_refund_billing(store)
        store.change_label_set(
            "merge", "refund", "billing", current=LABELS, user_id="admin", votes_needed=2
        )
        assert (store.get_item("t1")["status"], store.current_label("t1")) == (
            "resolved",
            "billing",
        )
        assert store.resolution("t1")["annotators"] == ["U1", "U2"]
        (split,) = store.reviews_of("t1")
        assert (split["decided_by"], split["decision"]) == ("votes", "billing")
        assert store.next_review() is None
        assert [d["status"] for d in store.deliveries("t1")] == ["pending"]


def test_a_merge_without_votes_needed_decides_only_a_majority_of_everyone_who_answered():
    """Without HITL_VOTES (a caller that does not pass it) the merge decides a split only when
    the merged label has a majority of everyone who answered it: refund 1, billing 1, bug 1
    merged refund → billing is billing 2 of 3, decided; a split the merge does not touch
    (bug 1, other 1) stays in review."""
    with Store.memory(clock=Clock()) as store:
        store.add_items([R("t1", "money back"), R("t2", "crash")], "import")
        for n, item in enumerate(("t1", "t2")):
            store.record_post(item, "C1", f"{n}.0", "uncertain", None, None, None)
        vote(store, "U1", "refund", "a1", 3)
        vote(store, "U2", "billing", "a2", 3)
        vote(store, "U3", "bug", "a3", 3)
        store.record_answer("t2", "U1", "bug", source="button", dedupe_key="b1", votes_needed=2)
        store.record_answer("t2", "U2", "other", source="button", dedupe_key="b2", votes_needed=2)
        store.change_label_set(
            "merge", "refund", "billing", current=[*LABELS, "other"], user_id="a"
        )
        assert store.current_label("t1") == "billing"
        assert store.current_label("t2") is None
        assert store.next_review()["item_id"] == "t2"


def test_a_merge_that_leaves_a_tie_keeps_the_split():
    """refund 1, billing 1, bug 2 with HITL_VOTES=4 merged refund → billing is billing 2,
    bug 2: still no majority, the split stays."""
    with Store.memory(clock=Clock()) as store:
        store.add_items([R("t1", "money back")], "import")
        store.record_post("t1", "C1", "1.0", "uncertain", None, None, None)
        for n, label in enumerate(["refund", "billing", "bug", "bug"]):
            vote(store, f"U{n}", label, f"k{n}", 4)
        assert store.next_review()["reasons"][0][0] == "split"
        store.change_label_set(
            "merge", "refund", "billing", current=LABELS, user_id="admin", votes_needed=4
        )
        assert store.current_label("t1") is None
        assert store.next_review()["reasons"][0][0] == "split"


def test_a_new_decision_by_votes_closes_the_retired_review():
    """An item decided bug goes to review when bug is retired. A voter undoes it: its retired
    review goes with the decision (an open question has no label to review), and people decide
    it billing, a label in force: nothing of it waits in review."""
    with Store.memory(clock=Clock()) as store:
        store.add_items([R("t1", "the app crashes when I pay")], "import")
        store.record_post("t1", "C1", "1.0", "uncertain", None, None, None)
        vote(store, "U1", "bug", "k1")
        assert vote(store, "U2", "bug", "k2").status == "resolved"
        store.change_label_set("retire", "bug", current=LABELS, user_id="admin")
        assert store.next_review()["reasons"][0][0] == "retired"
        assert store.undo_resolution("t1", "U1", "2000-01-01")
        assert store.next_review() is None, store.next_review()
        vote(store, "U1", "billing", "k3")
        vote(store, "U2", "billing", "k4")
        assert store.current_label("t1") == "billing"
        assert store.next_review() is None, store.next_review()
        retired = [r for r in store.reviews_of("t1") if r["reason"] == "retired"]
        assert [(r["decided_by"], r["decision"]) for r in retired] == [("U1", "undone")]


def test_a_taken_back_webhook_says_posted_for_an_item_back_in_the_queue():
    """README (Webhooks): a label taken back is told with status posted (asked again) or
    skipped. A label decided by a click on a question taken back as expired, then undone,
    leaves the item queued (or new): the webhook says posted."""
    clock = Clock()
    with Store.memory(clock=clock) as store:
        store.db.execute(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at,"
            " callback_url) VALUES ('T-1', 'refund', '{}', 'api', 'new', ?, ?, ?)",
            [clock(), clock(), HOOK],
        )
        store.record_post("T-1", "C1", "1.0", "uncertain", None, None, None)
        clock.t += timedelta(hours=80)
        store.expire_posts(72, 10)
        result = store.record_answer("T-1", "U1", "billing", source="button", dedupe_key="k1")
        assert result.status == "resolved"
        (first,) = store.deliveries("T-1")
        store.finish_delivery(first["id"], "delivered")
        undo = store.undo_resolution("T-1", "U1", "2000-01-01")
        assert undo and not undo.reopened
        assert store.get_item("T-1")["status"] in ("new", "queued")
        payload = store.webhook_payload("T-1")
        assert (payload["label"], payload["status"]) == (None, "posted"), payload
