"""Answer bookkeeping in the store: dedupe, change of mind, majority votes, skip, undo."""

from __future__ import annotations

import pytest

from bot.store import Store
from tests.bot.test_store import R


@pytest.fixture
def posted(memory_store: Store) -> Store:
    memory_store.add_items([R("i1", "card charged twice"), R("i2", "app crashes")], "import")
    memory_store.record_post("i1", "C1", "1.0001", "uncertain", 1, "billing", 0.6)
    return memory_store


def answer(store: Store, user: str, label: str | None, key: str, votes: int = 1):
    return store.record_answer(
        "i1", user, label, source="button", dedupe_key=key, votes_needed=votes
    )


def test_first_answer_resolves_with_one_vote_needed(posted: Store):
    result = answer(posted, "U1", "billing", "k1")
    assert result.status == "resolved" and result.label == "billing"
    assert posted.resolution("i1")["annotators"] == ["U1"]
    assert posted.get_item("i1")["status"] == "resolved"
    assert posted.open_post_counts() == {}
    assert posted.posts_to_redraw()[0]["item_id"] == "i1"


def test_retried_request_is_stored_once(posted: Store):
    answer(posted, "U1", "billing", "same-key", votes=3)
    again = answer(posted, "U1", "billing", "same-key", votes=3)
    assert again.status == "duplicate"
    assert posted.count_answers() == 1


def test_double_click_is_stored_once(posted: Store):
    answer(posted, "U1", "billing", "click-1", votes=3)
    second = answer(posted, "U1", "billing", "click-2", votes=3)
    assert second.status == "unchanged"
    assert posted.count_answers() == 1


def test_a_second_click_on_a_decided_item_is_history_and_counts_once(posted: Store):
    assert answer(posted, "U1", "billing", "click-1").status == "resolved"
    assert answer(posted, "U1", "billing", "click-2").status == "repeated"  # a double click
    assert answer(posted, "U1", "billing", "click-3").status == "repeated"  # and a third
    assert answer(posted, "U2", "bug", "late").status == "closed"  # someone else, too late
    # the decider's double clicks are stored once (they were a row each: `hitl export
    # --answers` listed three answers of U1's one); the late answer is kept as history
    assert posted.count_answers() == 2
    # U2 was told his answer was not counted: it is not (test_late_answers.py)
    assert posted.answers_by_user() == [("U1", 1)]
    assert posted.answers_by_user(since="") == [("U1", 1)]


def test_change_of_mind_latest_answer_counts(posted: Store):
    answer(posted, "U1", "billing", "a", votes=3)
    answer(posted, "U1", "bug", "b", votes=3)
    answer(posted, "U1", "billing", "c", votes=3)
    assert posted.count_answers() == 3
    assert posted.tally("i1").votes == {"billing": ["U1"]}
    assert posted.answers_by_user() == [("U1", 1)]  # one person, one item: one answer


def test_three_votes_resolve_at_a_majority(posted: Store):
    assert answer(posted, "U1", "billing", "1", votes=3).status == "recorded"
    assert answer(posted, "U2", "bug", "2", votes=3).status == "recorded"
    result = answer(posted, "U3", "billing", "3", votes=3)
    assert result.status == "resolved" and result.label == "billing"
    label = posted.resolution("i1")
    assert (label["votes"], round(label["agreement"], 3)) == (2, 0.667)
    assert label["annotators"] == ["U1", "U3"]
    late = answer(posted, "U4", "bug", "4", votes=3)
    assert late.status == "closed" and posted.resolution("i1")["label"] == "billing"


def skip(store: Store, user: str, key: str, needed: int = 2):
    return store.record_answer(
        "i1", user, None, source="button", dedupe_key=key, skips_to_discard=needed
    )


def test_a_skip_passes_the_item_on_and_enough_different_skippers_set_it_aside(posted: Store):
    assert skip(posted, "U1", "s1").status == "recorded"  # "not me": the item stays open
    assert posted.get_item("i1")["status"] == "posted" and posted.open_post_counts() == {"C1": 1}
    assert skip(posted, "U1", "s2").status == "unchanged"  # the same person twice counts once
    assert posted.tally("i1").skips == ["U1"]
    result = skip(posted, "U2", "s3")
    assert result.status == "skipped" and result.tally.skips == ["U1", "U2"]
    assert posted.get_item("i1")["status"] == "skipped" and posted.open_post_counts() == {}
    assert posted.resolution("i1") is None


def test_after_a_skip_someone_else_decides_the_item(posted: Store):
    assert skip(posted, "U1", "s1").status == "recorded"
    assert answer(posted, "U2", "billing", "a1").status == "resolved"
    assert posted.resolution("i1")["annotators"] == ["U2"]


def test_a_vote_keeps_a_skipped_item_open_for_more_votes(posted: Store):
    assert answer(posted, "U1", "billing", "a1", votes=3).status == "recorded"
    for n, user in enumerate(("U2", "U3", "U4")):
        result = posted.record_answer(
            "i1", user, None, source="button", dedupe_key=f"s{n}", votes_needed=3
        )
        assert result.status == "recorded"
    assert answer(posted, "U5", "billing", "a2", votes=3).status == "resolved"


def test_one_skip_sets_aside_when_the_setting_says_one(posted: Store):
    assert skip(posted, "U1", "s1", needed=1).status == "skipped"


def test_undo_reopens_within_the_window_for_the_resolver_only(posted: Store):
    answer(posted, "U1", "billing", "k1")
    resolved_at = posted.resolution("i1")["resolved_at"]
    assert not posted.undo_resolution("i1", "U2", since=resolved_at)
    assert not posted.undo_resolution("i1", "U1", since="9999")  # window passed
    assert posted.undo_resolution("i1", "U1", since=resolved_at)
    assert posted.resolution("i1") is None
    assert posted.get_item("i1")["status"] == "posted"
    assert posted.open_post_counts() == {"C1": 1}
    assert posted.tally("i1").votes == {}
    # The same person may now answer again.
    assert answer(posted, "U1", "bug", "k2").status == "resolved"


def test_unknown_item_stores_nothing(posted: Store):
    result = posted.record_answer("nope", "U1", "x", source="button", dedupe_key="z")
    assert result.status == "unknown_item" and posted.count_answers() == 0


def test_redraw_bookkeeping_tracks_what_was_drawn(posted: Store):
    answer(posted, "U1", "billing", "1", votes=3)
    [post] = posted.posts_to_redraw()
    answer(posted, "U2", "billing", "2", votes=3)
    posted.mark_drawn(post["id"], post["redraw_seq"])  # drew the older state
    assert [p["id"] for p in posted.posts_to_redraw()] == [post["id"]]
    latest = posted.posts_to_redraw()[0]
    posted.mark_drawn(latest["id"], latest["redraw_seq"])
    assert posted.posts_to_redraw() == []


def _vm_steps(store: Store, call) -> int:  # noqa: ANN001
    """SQLite virtual-machine instructions ``call`` runs on the store's connection: a count of
    the work done, the same on every machine."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # 0: go on

    store.db.conn.set_progress_handler(count, 1)
    try:
        call()
    finally:
        store.db.conn.set_progress_handler(None, 1)
    return steps


def test_a_late_click_on_a_decided_item_costs_the_same_however_many_clicked_before(
    posted: Store,
):
    """In a busy channel many people click a question after it was decided: each of those
    clicks is kept as history on the event loop, and must not read every answer the item got."""
    answer(posted, "U1", "billing", "k1")  # decides i1
    costs = {}
    for n in (10, 1_000):
        while posted.count_answers() < n:
            k = posted.count_answers()
            assert answer(posted, f"L{k}", "bug", f"late{k}").status == "closed"
        costs[n] = _vm_steps(posted, lambda n=n: answer(posted, f"X{n}", "bug", f"x{n}"))
    assert costs[1_000] <= costs[10] * 1.1, costs


def test_recording_and_deciding_an_answer_never_reads_the_schema(posted: Store):
    """An answer is written on the event loop while its click waits for the ack: its
    statements are the answer's own, with no query of the schema among them."""
    statements: list[str] = []
    posted.db.conn.set_trace_callback(statements.append)
    try:
        assert answer(posted, "U1", "billing", "k1", votes=2).status == "recorded"
        assert answer(posted, "U2", "billing", "k2", votes=2).status == "resolved"
    finally:
        posted.db.conn.set_trace_callback(None)
    # (SQLite reports the statement that fired a trigger once more per statement the trigger
    # runs, e.g. answered_by_user's count: distinct statements are the answer's own)
    assert len({s for s in statements if "INSERT" in s and '"answers"' in s}) == 2
    assert any("INSERT OR REPLACE" in s and "labels" in s for s in statements)
    assert [s for s in statements if "sqlite_master" in s.lower()] == []
    assert posted.resolution("i1")["annotators"] == ["U1", "U2"]


def test_a_reopened_item_counts_the_answers_given_while_it_was_open_only(posted: Store):
    # HITL_VOTES=3: U1 and U3 decide billing over U2's bug; U2 changes his mind too late and U4
    # answers too late; U3 undoes. U2's counted answer is bug again, U4 has none.
    assert answer(posted, "U1", "billing", "a1", votes=3).status == "recorded"
    assert answer(posted, "U2", "bug", "a2", votes=3).status == "recorded"
    assert answer(posted, "U3", "billing", "a3", votes=3).status == "resolved"
    assert answer(posted, "U2", "account", "late2", votes=3).status == "closed"
    assert answer(posted, "U4", "account", "late4", votes=3).status == "closed"
    undone = posted.undo_resolution("i1", "U3", since="")
    assert undone and undone.label == "billing"
    assert posted.tally("i1").votes == {"billing": ["U1"], "bug": ["U2"]}
    # U4 gives the same answer again: it now counts (not taken for a double click).
    assert answer(posted, "U4", "account", "again4", votes=3).status == "recorded"
    assert answer(posted, "U5", "bug", "a5", votes=3).status == "resolved"
    assert posted.resolution("i1")["annotators"] == ["U2", "U5"]


def test_two_labels_over_half_of_the_votes_are_a_tie_not_a_decision():
    from bot.store.records import Tally

    assert Tally({"bug": ["U1"], "billing": ["U2"]}, []).majority(1) is None
    assert Tally({"bug": ["U1"], "billing": ["U2", "U3"]}, []).majority(1) == "billing"
    assert Tally({"bug": ["U1", "U2"]}, []).majority(3) == "bug"
