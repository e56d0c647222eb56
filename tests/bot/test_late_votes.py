"""A click on a decided or set-aside item is history (``answers.late``; its sender is told it
did not count): it is no vote anywhere, also once an admin decides the item (`hitl labels set`,
a `/hitl review` decision), in the review modal's list of votes, in the item's message and when
the item is made a gold question afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_review import decision, view_text
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL


def set_aside_with_a_late_click(store: Store, item_id: str) -> int:
    """UA and UB skip ``item_id`` (set aside), then UC clicks `bug` too late; the id of the last
    answer that counted (UB's skip)."""
    for user in ("UA", "UB"):
        result = store.record_answer(item_id, user, None, source="button", dedupe_key=f"k{user}")
    assert result.status == "skipped"
    counted = store.db.execute("SELECT max(id) FROM answers").fetchone()[0]
    late = store.record_answer(item_id, "UC", "bug", source="button", dedupe_key="kC")
    assert late.status == "closed"  # UC is told it was not counted
    return counted


def test_an_admins_label_on_a_set_aside_item_has_no_late_voter(memory_store: Store):
    store = memory_store
    store.add_items([Item("i1", "the app crashes when I pay")], "api")
    counted = set_aside_with_a_late_click(store, "i1")
    store.set_label("i1", "bug", user_id="U0ADMIN", reason="review")
    res = store.resolution("i1")
    assert (res["label"], res["votes"], res["agreement"]) == ("bug", 0, 0.0), res
    assert res["annotators"] == ["U0ADMIN"], res
    assert res["decided_by"] == counted, res  # not the late click
    exported = next(r for r in store.iter_export() if r["id"] == "i1")
    assert exported["answers"] == [], exported


def test_an_admins_label_on_a_decided_item_has_no_late_voter(memory_store: Store):
    store = memory_store
    store.add_items([Item("i2", "refund my card")], "api")
    assert store.record_answer("i2", "UA", "billing", source="button", dedupe_key="a").status == (
        "resolved"
    )
    assert store.record_answer("i2", "UB", "bug", source="button", dedupe_key="b").status == (
        "closed"
    )
    store.set_label("i2", "bug", user_id="U0ADMIN")
    res = store.resolution("i2")
    assert (res["label"], res["votes"], res["agreement"]) == ("bug", 0, 0.0), res
    assert "UB" not in res["annotators"], res


def test_the_tally_leaves_late_answers_out(memory_store: Store):
    """Each person's latest *counted* answer: a late click neither adds a voter nor replaces
    the vote its sender gave while the item was open."""
    store = memory_store
    store.add_items([Item("i3", "refund my card")], "api")
    store.record_answer("i3", "UA", "billing", source="button", dedupe_key="a", votes_needed=2)
    store.record_answer("i3", "UB", "billing", source="button", dedupe_key="b", votes_needed=2)
    assert store.get_item("i3")["status"] == "resolved"
    for user in ("UA", "UC"):  # UA changes their mind too late, UC answers too late
        assert (
            store.record_answer(
                "i3", user, "bug", source="button", dedupe_key=f"late{user}", votes_needed=2
            ).status
            == "closed"
        )
    tally = store.tally("i3")
    assert (tally.votes, tally.skips) == ({"billing": ["UA", "UB"]}, []), tally


def test_a_late_click_is_no_gold_miss_when_the_item_is_made_gold(memory_store: Store):
    """Marking an answered item gold scores its answers: a late one was never an answer."""
    store = memory_store
    store.add_items([Item("i4", "refund my card")], "api")
    store.record_answer("i4", "UA", "billing", source="button", dedupe_key="a")
    assert store.record_answer("i4", "UB", "bug", source="button", dedupe_key="b").status == (
        "closed"
    )
    store.add_gold([Item("i4", "refund my card", "billing")])
    assert [r for r in store.reviews_of("i4") if r["reason"] == "gold_miss"] == []


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("s1", "seed one", "billing")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


async def click(bot: Bot, message: dict, user: str, label: str | None) -> None:
    assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()


async def test_the_review_modal_lists_no_late_click_as_a_vote(bot: Bot):
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    first, other = buttons(message)[:2]
    await click(bot, message, "U0ANA", first)  # decides it (HITL_VOTES=1)
    assert bot.store.resolution("a")["label"] == first
    await click(bot, message, "U0LATE", other)  # told it was already decided

    response = await bot.command("review a", "U0ADMIN")
    assert response.status == 200
    view = (await bot.fake.next_call("views.open")).reply["view"]
    shown = view_text(view)
    assert "<@U0ANA>" in shown
    assert "U0LATE" not in shown, shown


async def test_a_review_decision_on_a_set_aside_item_has_no_late_voter(bot: Bot):
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    for user in ("U0ANA", "U0RAJ"):  # two skips set it aside
        await click(bot, message, user, None)
    assert bot.store.get_item("a")["status"] == "skipped"
    await click(bot, message, "U0LATE", "bug")  # told it was not counted

    response = await bot.command("review a", "U0ADMIN")
    assert response.status == 200
    view = (await bot.fake.next_call("views.open")).reply["view"]
    assert "U0LATE" not in view_text(view)
    assert (await bot.action(decision(view, "label:bug"))).status == 200
    await bot.settled()
    res = bot.store.resolution("a")
    assert (res["label"], res["votes"], res["annotators"]) == ("bug", 0, ["U0ADMIN"]), res
    redrawn = bot.fake.message(CHANNEL, message["ts"])
    assert "U0LATE" not in json.dumps(redrawn["blocks"]), redrawn
