"""Slack did the work and its answer was lost (a 5xx, or the connection dropped after the
request went out), for the calls that open a window and the replies by ``response_url``,
through signed requests to the real server and the fake Slack (``fail(..., after=True)``).

A window opened whose answer was lost was tried again (views.open is retried), Slack said
``exchanged_trigger_id`` to the second try, and the person, whose window was open, was told
Slack had not opened it and to run the command again. A reply by ``response_url`` whose
connection dropped after it was sent was sent again by slack_sdk's own retry: shown twice.
The labeling window redrawn after a click in it (views.update with its hash), its answer
lost: the retry heard ``hash_conflict`` (the hash that redraw changed), a warning said the
redraw failed, and its own redraw once Slack had said who is in a channel was dropped.
The Undo offer, the accuracy chart and a reply by ``response_url`` are not sent twice, and
the log no longer says they failed or that Slack was unreachable: that they may be shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from slack_sdk.http_retry import HttpRequest, RetryState

from bot.sandbox import FakeSlack
from bot.sandbox.webapi import RESPONSE_URL
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

OPENED = "views.open: the window is open (an earlier try of the same call opened it)"


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text of {n}") for n in range(3)])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        await running.dispatcher.fill()
        yield running


async def command(bot: Bot, text: str, user: str = "U0ADMIN") -> None:
    url = bot.fake.response_url(CHANNEL)
    response = await bot.command(text, user, trigger_id="1.2.3", response_url=url)
    assert response.status == 200
    await bot.settled()


@pytest.mark.parametrize("fault", [{"status": 500}, {"mode": "reset"}], ids=["500", "reset"])
@pytest.mark.parametrize("name", ["label", "review"])
async def test_a_window_slack_opened_before_its_answer_was_lost_is_not_said_to_have_failed(
    bot: Bot, caplog: pytest.LogCaptureFixture, name: str, fault: dict
):
    bot.fake.fail("views.open", after=True, **fault)
    with caplog.at_level(logging.INFO, logger="bot"):
        await command(bot, name)
    tries = [call.reply and call.reply.get("error") for call in bot.fake.calls_to("views.open")]
    assert tries == [None, "exchanged_trigger_id"]  # the retry found the trigger spent
    assert len(bot.fake.views) == 1  # one window, open
    assert bot.fake.responses == []  # not told to run the command again
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert said.count(OPENED) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], said


@pytest.mark.parametrize("fault", [{"mode": "reset"}, {"status": 500}], ids=["reset", "500"])
async def test_a_reply_by_response_url_slack_took_before_the_connection_dropped_shows_once(
    bot: Bot, caplog: pytest.LogCaptureFixture, fault: dict
):
    bot.fake.fail("views.open", "expired_trigger_id")  # told by the command's response_url
    bot.fake.fail(RESPONSE_URL, after=True, **fault)
    with caplog.at_level(logging.WARNING, logger="bot"):
        await command(bot, "label", "U0ANA")
    [told] = [r["payload"]["text"] for r in bot.fake.responses]
    assert told.startswith("Slack did not let me open the labeling window (expired_trigger_id)")
    [said] = [r.getMessage() for r in caplog.records if "by response_url" in r.getMessage()]
    lost = "Slack answered HTTP 500" if fault.get("status") else "the connection dropped after"
    assert said.startswith(f"the answer by response_url may have been shown: {lost}"), said


async def test_a_reply_by_response_url_is_tried_again_only_when_nothing_reached_slack():
    from bot.runtime import response_url_retries  # here: the older code has none

    [handler] = response_url_retries()
    request = HttpRequest(method="POST", url="https://hooks.slack.com/x", headers={})

    async def retried(error: Exception) -> bool:
        return await handler.can_retry_async(state=RetryState(), request=request, error=error)

    key = ConnectionKey("hooks.slack.com", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    assert await retried(refused)  # never connected: nothing was sent
    assert not await retried(aiohttp.ServerDisconnectedError())  # sent, maybe shown
    assert not await retried(aiohttp.ClientOSError(104, "Connection reset by peer"))


# -- the labeling window's redraw after a click in it (views.update, sent with the hash) ------

REDRAWN = "views.update: the window is redrawn (an earlier try of the same call redrew it)"


def first_label(view: dict) -> dict:
    return next(
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and '"l":"' in e.get("value", "")
    )


async def click_in_window(bot: Bot, user: str, view: dict) -> None:
    button = first_label(view)
    payload = signing.block_actions_payload(user, button["action_id"], button["value"], view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def test_a_window_slack_redrew_before_its_answer_was_lost_is_not_said_to_have_failed(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    await command(bot, "label", "U0ANA")
    [view] = bot.fake.views.values()
    shown = json.loads(view["private_metadata"])["item"]
    bot.fake.fail("views.update", status=500, after=True)
    with caplog.at_level(logging.INFO, logger="bot"):
        await click_in_window(bot, "U0ANA", view)
    tries = [call.reply and call.reply.get("error") for call in bot.fake.calls_to("views.update")]
    assert tries == [None, "hash_conflict"]  # the retry found the hash the first try changed
    assert [a["item_id"] for a in bot.store.db["answers"].rows] == [shown]  # stored once
    now = json.loads(bot.fake.views[view["id"]]["private_metadata"])["item"]
    assert now not in (None, shown)  # the next item
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert said.count(REDRAWN) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], said


async def test_a_hash_conflict_with_no_try_lost_before_it_is_still_a_refusal(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    await command(bot, "label", "U0ANA")
    [view] = bot.fake.views.values()
    bot.fake.fail("views.update", "hash_conflict")  # the person acted in it meanwhile
    with caplog.at_level(logging.INFO, logger="bot"):
        await click_in_window(bot, "U0ANA", view)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert REDRAWN not in said
    assert "after the answer on" in " ".join(said) and "hash_conflict" in " ".join(said)


# -- the Undo offer after a click that resolved the item (chat.postEphemeral) -----------------


@pytest.mark.parametrize(
    ("fault", "lost"),
    [
        ({"status": 500}, "Slack answered HTTP 500"),
        ({"mode": "reset"}, "the connection dropped after the request was sent"),
    ],
    ids=["500", "reset"],
)
async def test_an_undo_offer_shown_before_its_answer_was_lost_shows_once_and_is_said_maybe_shown(
    bot: Bot, caplog: pytest.LogCaptureFixture, fault: dict, lost: str
):
    # the log said "Slack said internal_error to chat.postEphemeral" (a 500) or
    # "on_label_button: Slack unreachable (ServerDisconnectedError)" (a reset)
    message = bot.posted()[0]
    bot.fake.fail("chat.postEphemeral", after=True, **fault)
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(bot.button_payload(message, "U0ANA", "bug"))).status == 200
        await bot.settled()
    [offer] = bot.fake.calls_to("chat.postEphemeral")  # an ephemeral sent twice shows twice
    assert offer.params["text"].startswith("Saved `bug`. Undo within 10 minutes")
    item_id = bot.store.db["posts"].get(1)["item_id"]
    assert bot.store.resolution(item_id)["label"] == "bug"
    [said] = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert said.startswith(f"the Undo offer on {item_id} to U0ANA may have been shown: {lost}")
