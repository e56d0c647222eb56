"""The labeling window used while the world moves: questions posted, labels retired, clicks
refused. Through signed requests to the real server and the fake Slack's views."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import decode_value
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, open_window, seed, start_bot
from tests.bot.harness import click_in_window as click
from tests.bot.harness import window_item as shown
from tests.bot.harness import window_labels as labels_shown
from tests.bot.test_window_undo import undo_button


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(i, f"text of {i}") for i in ("i1", "i2", "i3", "i4")])
    settings = make_settings(fake_slack, tmp_path, max_open=1)
    async for running in start_bot(fake_slack, settings):
        assert await running.dispatcher.fill() == 1
        yield running


async def test_a_click_on_a_label_retired_meanwhile_keeps_the_window_on_its_item(bot: Bot):
    """The note says to pick another label for the item clicked: the window shows that item
    again, not the question posted in the channel meanwhile (which comes first in the order
    a window serves items in, open questions before waiting items)."""
    window = await open_window(bot, "U0ANA")
    await click(bot, "U0ANA", window, labels_shown(bot, window)[0])  # decides the open question
    waiting = shown(bot, window)  # an item waiting in the queue, not posted
    assert waiting is not None and bot.store.get_item(waiting)["status"] in ("new", "queued")
    assert await bot.dispatcher.fill() == 1  # the freed place: another item is posted
    await bot.settled()
    [(posted,)] = bot.store.db.execute("SELECT item_id FROM posts WHERE closed_at IS NULL")
    assert posted != waiting  # (else the window would show it either way)
    retired = labels_shown(bot, window)[0]
    assert (await bot.command(f"labels retire {retired}", "U0ADMIN")).status == 200
    await bot.settled()

    await click(bot, "U0ANA", window, retired)
    blocks = json.dumps(bot.fake.views[window]["blocks"])
    assert f"`{retired}` is not in the label set any more; pick another." in blocks
    assert shown(bot, window) == waiting  # the old code: the question posted meanwhile
    assert f"text of {waiting}" in blocks
    assert retired not in labels_shown(bot, window)
    assert "1 answered in this session" in blocks
    assert bot.store.db.execute(
        "SELECT count(*) FROM answers WHERE item_id = ?", [waiting]
    ).fetchone() == (0,)


async def test_a_double_click_in_the_window_is_stored_once_and_warns_nobody(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    """Two clicks on one drawing of the window (a double click): the first is stored and
    moves the window on; the second is kept once and its redraw, on the drawing Slack no
    longer shows, is refused (hash_conflict) as meant: nothing for an operator to act on."""
    window = await open_window(bot, "U0ANA")
    item, label = shown(bot, window), labels_shown(bot, window)[0]
    view = bot.fake.views[window]
    [button] = [
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and f'"l":{json.dumps(label)}' in e.get("value", "")
    ]
    for _ in range(2):
        payload = signing.block_actions_payload(
            "U0ANA", button["action_id"], button["value"], view=view
        )
        payload["actions"][0]["action_ts"] = bot.next_action_ts()
        assert (await bot.action(payload)).status == 200
        await bot.settled()

    assert bot.store.resolution(item)["label"] == label
    assert bot.store.db.execute("SELECT count(*) FROM answers").fetchone() == (1,)
    assert shown(bot, window) not in (None, item)
    assert "1 answered in this session" in json.dumps(bot.fake.views[window]["blocks"])
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == []  # the old code: "after the answer on …: Slack said hash_conflict …"


async def test_a_double_clicks_drawing_counts_the_answer_when_it_is_the_one_slack_keeps(bot: Bot):
    """The first click's redraw did not land (Slack failed it; or, on a busy server, the
    second click's redraw simply got there first): the second click's drawing, the one the
    person then sees, came from the window as drawn before the answer. It showed "0 answered
    in this session" and no Undo for the decision the first click made."""
    window = await open_window(bot, "U0ANA")
    item, label = shown(bot, window), labels_shown(bot, window)[0]
    view = json.loads(json.dumps(bot.fake.views[window]))  # the drawing both clicks come from
    [button] = [
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and f'"l":{json.dumps(label)}' in e.get("value", "")
    ]
    bot.fake.fail("views.update", "internal_error")  # the first click's redraw is lost
    for _ in range(2):
        payload = signing.block_actions_payload(
            "U0ANA", button["action_id"], button["value"], view=view
        )
        payload["actions"][0]["action_ts"] = bot.next_action_ts()
        assert (await bot.action(payload)).status == 200
        await bot.settled()

    assert bot.store.db.execute("SELECT count(*) FROM answers").fetchone() == (1,)
    assert shown(bot, window) not in (None, item)
    drawn = json.dumps(bot.fake.views[window]["blocks"])
    assert "1 answered in this session" in drawn  # the old code: 0
    offer = undo_button(bot, window)  # the decision's Undo, as the first click's drawing has
    assert offer is not None and decode_value(offer["value"])[0] == item
