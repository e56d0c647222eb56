"""A click counts only for the item of the question it came from (outside security test, F5):
a click on the question of one item whose button value was edited to name another item (one
never asked, a gold item, one asked in another channel) decided that other item. The value's
item is now checked against what the click's message says (its block id ``q:ITEM``, its
metadata) or the labeling modal's (``private_metadata``); a click that does not match is
ignored with a log line and nothing stored. Genuine clicks, from messages with or without
metadata and from the modal, still count. Through signed requests to the real server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import encode_value
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

ITEMS = [f"i{n}" for n in range(5)]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(i, f"text of {i}") for i in ITEMS])
    settings = make_settings(fake_slack, tmp_path, max_open=1)
    async for running in start_bot(fake_slack, settings):
        await running.dispatcher.fill()
        yield running


def status(bot: Bot, item_id: str) -> str:
    return bot.store.db.execute("SELECT status FROM items WHERE id = ?", [item_id]).fetchone()[0]


def asked_and_other(bot: Bot) -> tuple[dict, str, str]:
    [message] = bot.posted()
    asked = message["metadata"]["event_payload"]["item_id"]
    return message, asked, next(i for i in ITEMS if i != asked)


async def test_a_label_click_whose_value_names_another_item_is_ignored(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    message, asked, other = asked_and_other(bot)
    payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
    label = json.loads(payload["actions"][0]["value"])["l"]
    payload["actions"][0]["value"] = encode_value(other, label)  # the edited value
    with caplog.at_level(logging.WARNING):
        assert (await bot.action(payload)).status == 200
        await bot.settled()
    assert (status(bot, other), status(bot, asked)) == ("new", "posted")
    assert bot.store.count_answers() == 0
    assert f"its value names item {other!r}, its message is about {asked!r}" in caplog.text


async def test_a_skip_whose_value_names_another_item_is_ignored(bot: Bot):
    message, asked, other = asked_and_other(bot)
    payload = bot.button_payload(message, "U0ANA", None)
    payload["actions"][0]["value"] = encode_value(other)
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    assert bot.store.count_answers() == 0 and status(bot, other) == "new"


async def test_the_metadata_alone_tells_the_item_when_the_block_id_does_not(bot: Bot):
    message, asked, other = asked_and_other(bot)
    payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
    action = payload["actions"][0]
    action["block_id"] = "question"  # no q:ITEM block id to go by
    action["value"] = encode_value(other, json.loads(action["value"])["l"])
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    assert bot.store.count_answers() == 0 and status(bot, other) == "new"


async def test_a_genuine_click_counts_with_or_without_metadata(bot: Bot):
    message, asked, _ = asked_and_other(bot)
    # a message as Slack may send it back: no metadata in the payload, only its block id
    bare = {key: value for key, value in message.items() if key != "metadata"}
    payload = bot.button_payload(bare, "U0ANA", bot.first_label(message))
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    assert bot.store.count_answers() == 1 and status(bot, asked) == "resolved"


async def test_a_genuine_click_with_metadata_counts(bot: Bot):
    message, asked, _ = asked_and_other(bot)
    payload = bot.button_payload(message, "U0ANA", None)  # Skip
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    assert bot.store.count_answers() == 1


async def open_modal(bot: Bot) -> dict:
    response = await bot.command("label", "U0ANA", channel_id=CHANNEL, trigger_id="1.1.a")
    assert response.status == 200
    opened = await bot.fake.next_call("views.open")
    return bot.fake.views[opened.reply["view"]["id"]]


def modal_click(bot: Bot, view: dict, item_id: str | None = None) -> dict:
    button = next(
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and ".label." in e.get("action_id", "")
    )
    value = button["value"]
    if item_id is not None:
        value = encode_value(item_id, json.loads(value)["l"])
    payload = signing.block_actions_payload("U0ANA", button["action_id"], value, view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    return payload


async def test_in_the_labeling_modal_a_value_naming_another_item_is_ignored(bot: Bot):
    view = await open_modal(bot)
    shown = json.loads(view["private_metadata"])["item"]
    other = next(i for i in ITEMS if i != shown)
    assert (await bot.action(modal_click(bot, view, other))).status == 200
    await bot.settled()
    assert bot.store.count_answers() == 0 and status(bot, other) == "new"
    assert (await bot.action(modal_click(bot, view))).status == 200  # the genuine click
    await bot.settled()
    assert bot.store.count_answers() == 1
