"""The Undo in the labeling window: an answer there that decides its item is offered the
channel's Undo above the next item, and a click on it undoes as the channel's does, told by
redrawing the window. Through signed requests to the real server and the fake Slack's views."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import UNDO_ACTION
from bot.slack.holds import HOLD
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, one_posted, open_window, seed, start_bot
from tests.bot.harness import click_in_window as click
from tests.bot.harness import window_item as shown
from tests.bot.harness import window_labels as labels_shown
from tests.bot.test_slack_bot import buttons
from tests.bot.test_undo_flows import review_to
from tests.fake_slack import CHANNEL

ITEMS = ("i1", "i2", "i3", "i4")


def started(fake_slack: FakeSlack, tmp_path: Path, **changes):
    return one_posted(fake_slack, tmp_path, ITEMS, **changes)


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    async for running in started(fake_slack, tmp_path):
        yield running


def in_review(bot: Bot, item: str) -> list[str]:
    rows = bot.store.db.execute(
        "SELECT reason FROM reviews WHERE item_id = ? AND decided_at IS NULL", [item]
    )
    return [reason for (reason,) in rows]


def undo_button(bot: Bot, view_id: str) -> dict | None:
    """The Undo the window offers, if any."""
    found = [
        b["accessory"]
        for b in bot.fake.views[view_id]["blocks"]
        if (b.get("accessory") or {}).get("action_id") == UNDO_ACTION
    ]
    assert len(found) <= 1
    return found[0] if found else None


def drawn(bot: Bot, view_id: str) -> str:
    return json.dumps(bot.fake.views[view_id]["blocks"], ensure_ascii=False)


async def click_undo(bot: Bot, user: str, view_id: str, view: dict | None = None) -> None:
    """``user`` clicks the Undo of the window (as drawn then: ``view``, else as it is now)."""
    view = view or bot.fake.views[view_id]
    button = undo_button(bot, view_id) if view is bot.fake.views[view_id] else None
    if button is None:
        [button] = [
            b["accessory"]
            for b in view["blocks"]
            if (b.get("accessory") or {}).get("action_id") == UNDO_ACTION
        ]
    payload = signing.block_actions_payload(user, UNDO_ACTION, button["value"], view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def decide_in_window(bot: Bot, user: str = "U0ANA") -> tuple[str, str, str]:
    """``user`` opens the window and decides its first item (the open question) there: the
    window's id, the item, the label."""
    window = await open_window(bot, user)
    item, label = shown(bot, window), labels_shown(bot, window)[0]
    assert bot.store.post_for_item(item) is not None  # the channel's open question
    await click(bot, user, window, label)
    assert bot.store.resolution(item)["label"] == label
    return window, item, label


async def test_an_answer_deciding_an_item_in_the_window_is_offered_an_undo_that_undoes_it(
    bot: Bot,
):
    window, item, label = await decide_in_window(bot)
    [message] = bot.fake.messages(CHANNEL)
    assert buttons(bot.fake.message(CHANNEL, message["ts"])) == []  # drawn decided
    after = shown(bot, window)
    assert after not in (None, item)
    offer = undo_button(bot, window)
    assert offer is not None  # the old code: no Undo in the window at all
    first = bot.fake.views[window]["blocks"][0]  # above the next item
    assert first["accessory"] == offer
    assert first["text"]["text"] == (
        f"Saved *`{label}`* for the last item you decided."
        " Undo within 10 minutes if you change your mind."
    )
    assert "1 answered in this session" in drawn(bot, window)
    assert bot.fake.calls_to("chat.postEphemeral") == []  # the window has no channel note

    await click_undo(bot, "U0ANA", window)
    assert bot.store.resolution(item) is None  # as the channel's Undo leaves it
    assert bot.store.get_item(item)["status"] == "posted"
    assert bot.store.db.execute("SELECT count(*) FROM labels").fetchone() == (0,)
    assert bot.store.tally(item).votes == {}
    assert label in buttons(bot.fake.message(CHANNEL, message["ts"]))  # the question reopened
    blocks = drawn(bot, window)
    assert bot.fake.views[window]["blocks"][0]["text"]["text"] == (  # the note on top
        f"Undone: `{label}` is no longer the label. The question is open again."
    )
    assert undo_button(bot, window) is None  # offered once
    assert "0 answered in this session" in blocks
    assert shown(bot, window) == item  # theirs to answer again: the window shows it

    other = labels_shown(bot, window)[1]  # the answer they meant
    await click(bot, "U0ANA", window, other)
    assert bot.store.resolution(item)["label"] == other
    assert undo_button(bot, window) is not None and "1 answered in this session" in drawn(
        bot, window
    )


async def test_a_second_click_on_the_window_s_undo_says_already_undone_and_stores_nothing(
    bot: Bot,
):
    """A double click, or Slack sending the click again: one Undo. The second click's redraw
    says "Already undone", on a drawing Slack no longer shows (the first click's redraw moved
    the window on: hash_conflict), so the window keeps the first click's answer."""
    window, item, label = await decide_in_window(bot)
    offered = bot.fake.views[window]
    await click_undo(bot, "U0ANA", window, offered)
    answers = bot.store.db.execute("SELECT count(*) FROM answers").fetchone()
    assert "Undone:" in drawn(bot, window)

    await click_undo(bot, "U0ANA", window, offered)  # on the drawing clicked first
    assert bot.store.db.execute("SELECT count(*) FROM answers").fetchone() == answers
    assert bot.store.resolution(item) is None
    second = bot.fake.calls_to("views.update")[-1]
    assert "Already undone: the question is open again." in json.dumps(second.params)
    assert second.reply.get("error") == "hash_conflict"
    assert "Undone:" in drawn(bot, window) and "0 answered in this session" in drawn(bot, window)

    del offered["hash"]  # its answer lost, Slack sends it again: its redraw is the one shown
    await click_undo(bot, "U0ANA", window, offered)
    assert bot.store.db.execute("SELECT count(*) FROM answers").fetchone() == answers
    assert drawn(bot, window).count("Already undone: the question is open again.") == 1
    assert "0 answered in this session" in drawn(bot, window)  # not counted again


async def test_a_window_s_undo_after_ten_minutes_is_refused_as_in_the_channel(bot: Bot):
    window, item, label = await decide_in_window(bot)
    bot.rt.clock = lambda: datetime.now(UTC) + timedelta(minutes=10, seconds=1)
    await click_undo(bot, "U0ANA", window)
    assert "Too late to undo (10 minutes have passed, or someone else decided it)." in drawn(
        bot, window
    )
    assert bot.store.resolution(item)["label"] == label
    assert bot.store.get_item(item)["status"] == "resolved"
    assert undo_button(bot, window) is None
    assert "1 answered in this session" in drawn(bot, window)  # the answer stands
    assert shown(bot, window) not in (None, item)


async def test_a_window_s_undo_after_an_admin_changed_the_label_is_refused_naming_them(bot: Bot):
    window, item, label = await decide_in_window(bot)
    other = next(x for x in labels_shown(bot, window) if x != label)
    await review_to(bot, item, other)
    await click_undo(bot, "U0ANA", window)
    assert (
        f"Not undone: <@U0ADMIN> has since changed the label to `{other}`;"
        " ask them if it should change again." in drawn(bot, window)
    )
    assert bot.store.resolution(item)["label"] == other  # the admin's decision stands
    assert undo_button(bot, window) is None


async def test_the_window_offers_an_undo_only_to_the_answer_that_decides(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in started(fake_slack, tmp_path, votes=2):
        window = await open_window(bot, "U0ANA")
        item, label = shown(bot, window), labels_shown(bot, window)[0]
        await click(bot, "U0ANA", window, label)  # 1 of 2 answers: not decided
        assert bot.store.resolution(item) is None
        assert undo_button(bot, window) is None
        assert "1 answered in this session" in drawn(bot, window)

        other = await open_window(bot, "U0RAJ")
        assert shown(bot, other) == item
        await click(bot, "U0RAJ", other, label)  # decides it
        assert bot.store.resolution(item)["label"] == label
        assert undo_button(bot, other) is not None
        # the offer rides along the answers that follow, not deciding, until it is used
        await click(bot, "U0RAJ", other, labels_shown(bot, other)[0])
        assert undo_button(bot, other) is not None
        assert "2 answered in this session" in drawn(bot, other)
        await click_undo(bot, "U0RAJ", other)
        assert "Undone:" in drawn(bot, other) and "1 answered in this session" in drawn(bot, other)
        assert bot.store.resolution(item) is None
        assert bot.store.tally(item).votes == {label: ["U0ANA"]}


async def test_a_window_s_undo_of_the_vote_that_broke_a_split_puts_it_back_in_review(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in started(fake_slack, tmp_path, votes=3):
        window = await open_window(bot, "U0ANA")
        item = shown(bot, window)
        three = labels_shown(bot, window)[:3]
        last = await open_window(bot, "U0LEE")  # before the split (a split is not served)
        # Lee's window holds the item two minutes (``bot.slack.holds``): past them, a fourth
        # window (Mei's) is shown it while it needs one more answer than Lee's holds
        bot.rt.clock = lambda: datetime.now(UTC) + HOLD + timedelta(seconds=1)
        for user, label in zip(("U0ANA", "U0RAJ", "U0MEI"), three, strict=True):
            view = window if user == "U0ANA" else await open_window(bot, user)
            assert shown(bot, view) == item
            await click(bot, user, view, label)
        assert in_review(bot, item) == ["split"]
        assert shown(bot, last) == item  # a split's question still takes votes
        await click(bot, "U0LEE", last, three[0])  # breaks the split: decided
        assert bot.store.resolution(item)["label"] == three[0]
        assert in_review(bot, item) == ["low_agreement"]  # 2 of 4: no longer a split

        await click_undo(bot, "U0LEE", last)
        assert "Undone:" in drawn(bot, last)
        assert bot.store.resolution(item) is None
        assert in_review(bot, item) == ["split"]


async def test_an_undo_of_an_item_decided_in_the_window_before_it_was_posted_says_it_waits(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Nothing posted yet: the window serves a waiting item, which Ana decides and undoes. It
    had no question, and the Undo puts it back among the waiting items (810889b); the note
    said "The question is open again." """
    seed(tmp_path / "hitl.db", [Item(i, f"text of {i}") for i in ITEMS])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        window = await open_window(bot, "U0ANA")
        item = shown(bot, window)
        assert item is not None and bot.store.post_for_item(item) is None  # never posted
        await click(bot, "U0ANA", window, labels_shown(bot, window)[0])
        await click_undo(bot, "U0ANA", window)
        assert bot.store.get_item(item)["status"] in ("new", "queued")
        assert "is no longer the label. The item waits in the queue to be asked again." in (
            drawn(bot, window)
        )
        assert "open again" not in drawn(bot, window)
