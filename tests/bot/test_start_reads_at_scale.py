"""What a start and `/hitl queue` read, by index, whatever the number of items: at a million
items a read that walks the waiting items from the status index holds the event loop (or the
start, before the server listens) for seconds. The plans are SQLite's for these queries on
any database: the checks hold on a small one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.store import ReviewRules, Store
from tests.bot.harness import Item, make_settings, margin_scored, seed, start_bot
from tests.bot.test_command_acks import (
    SLACK_WAITS,
    WORKING,
    Held,
    answered_later,
    command,
)
from tests.bot.test_store import R
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

OLD = "2000-01-01T00:00:00.000+00:00"


def taken_back_with_answers(store: Store) -> None:
    """60 items scored; 4 asked, two answered once under HITL_VOTES=3, all taken back."""
    store.add_items([R(f"i{n}", f"ticket {n}") for n in range(60)], "import")
    rows = [(f"i{n}", 1, "billing", 0.5, [["billing", 0.5], ["bug", 0.5]]) for n in range(60)]
    store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
    for n in range(4):
        store.record_post(f"i{n}", "C1", f"1.{n}", "uncertain", 1, "billing", 0.5)
    for n in range(2):
        store.record_answer(f"i{n}", "U0ANA", "billing", source="button", dedupe_key=f"k{n}",
                            votes_needed=3)  # fmt: skip
    with store.db.conn:
        store.db.execute("UPDATE posts SET posted_at = ?", [OLD])
        store.db.execute("UPDATE answers SET created_at = ?", [OLD])
    assert len(store.expire_posts(12, 10, threshold=0.8)) == 4


def test_deciding_the_answered_at_start_reads_the_taken_back_posts_not_the_waiting_items():
    with Store.memory() as store:
        taken_back_with_answers(store)
        plans = query_plans(store, lambda: store.decide_answered(3, 2, ReviewRules()))
        taken = [(sql, plan) for sql, plan in plans if "posts_taken_back" in sql]
        assert taken, plans
        for sql, plan in taken:
            assert "posts_taken_back" in plan[0], (sql, plan)  # the taken-back posts drive
            assert not any("items_status_priority" in line for line in plan), (sql, plan)
        # and it decides what it did: a lowered HITL_VOTES=1 decides the two answered
        assert sorted(store.decide_answered(1, 2, ReviewRules())) == ["i0", "i1"]
        assert {store.get_item(f"i{n}")["status"] for n in range(2)} == {"resolved"}


async def test_a_slow_queue_read_is_acknowledged_at_once_and_answered_by_the_response_url(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`/hitl queue` counts the questions taken back in the last 7 days, each one's answers
    read (100 ms to 1.4 s at tens of thousands of take-backs, on the event loop before): it
    reads in a worker thread, and a read held past the ack's wait is answered later."""
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"item {n}") for n in range(3)])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await bot.dispatcher.fill()
        held = Held(monkeypatch, bot.store, "expired_counts")
        told = len(bot.fake.responses)
        try:
            status, body, elapsed = await command(bot, "queue")
            assert status == 200 and body["text"] == WORKING
            assert elapsed < SLACK_WAITS
            assert held.entered.is_set() and bot.fake.responses[told:] == []  # still reading
        finally:
            held.release()
        [answer] = await answered_later(bot, told)
        assert answer["text"].startswith("*Waiting:*"), answer["text"]
        assert f"<#{CHANNEL}>: 3 of" in answer["text"], answer["text"]
