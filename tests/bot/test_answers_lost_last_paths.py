"""The last Slack calls whose answer was lost after they reached Slack (no answer within the
client's timeout, a 5xx, a connection dropped after the request went out), through signed
requests to the real server and the fake Slack (``fail(..., mode="timeout")`` held past a
1 s client timeout, ``fail(..., after=True)``).

A note to the clicker (``_tell``: a click from a team that does not count, a button that is
not the bot's, a label no longer in the set) was logged "on_label_button: Slack unreachable
(TimeoutError)", or "could not tell U…" on a 500, though it may have been shown. An Undo's
reply went through Bolt's own ``respond()``: its client waited 30 s, not the project's 10,
logged "on_undo: Slack unreachable (TimeoutError)", and sent the reply again after a
connection dropped once it was sent (shown twice). App Home's ``views.publish`` unanswered
was "on_home_opened: Slack unreachable (TimeoutError)". Each is now one true line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.sandbox.webapi import RESPONSE_URL
from bot.slack import blocks, commands
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_undo_flows import click_undo, decide
from tests.fake_slack import CHANNEL

TIMEOUT = "no answer within the client's timeout (TimeoutError)"
FAULTS = [
    ({"mode": "timeout"}, TIMEOUT),
    ({"status": 500, "after": True}, "Slack answered HTTP 500"),
    ({"mode": "reset", "after": True}, "the connection dropped after the request was sent"),
]
FAULT_IDS = ["timeout", "500", "reset"]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text of {n}") for n in range(3)])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path), timeout=1.0):
        yield running
        running.fake.release_timeouts()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("fault", "lost"), FAULTS, ids=FAULT_IDS)
@pytest.mark.parametrize("value", ["not mine", "retired"])
async def test_a_note_to_the_clicker_whose_answer_was_lost_is_said_maybe_shown(
    bot: Bot, caplog: pytest.LogCaptureFixture, fault: dict, lost: str, value: str
):
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
    item_id, _ = blocks.decode_value(payload["actions"][0]["value"])
    forged = "not json" if value == "not mine" else blocks.encode_value(item_id, "gone-label")
    payload["actions"][0]["value"] = forged
    bot.fake.fail("chat.postEphemeral", **fault)
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(payload)).status == 200
        await bot.settled()
    [note] = bot.fake.calls_to("chat.postEphemeral")  # an ephemeral sent twice shows twice
    assert note.params["user"] == "U0ANA"
    [said] = warnings(caplog)
    assert said.startswith(f"the note to U0ANA may have been shown: {lost}"), said
    assert list(bot.store.iter_answers()) == []


async def test_a_note_in_the_labeling_window_whose_redraw_was_lost_is_one_true_line(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    from tests.bot.test_answers_lost_after_the_work import first_label

    url = bot.fake.response_url(CHANNEL)
    await bot.command("label", "U0ANA", trigger_id="1.2.3", response_url=url)
    await bot.settled()
    [view] = bot.fake.views.values()
    button = first_label(view)
    item_id, _ = blocks.decode_value(button["value"])
    gone = blocks.encode_value(item_id, "gone-label")
    payload = signing.block_actions_payload("U0ANA", button["action_id"], gone, view=view)
    bot.fake.fail("views.update", mode="timeout")
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(payload)).status == 200
        await bot.settled()
    assert len(bot.fake.calls_to("views.update")) == 1
    assert warnings(caplog) == [f"the labeling window of U0ANA may not show the note: {TIMEOUT}"]


async def click_undo_of(bot: Bot, user: str, message: dict) -> None:
    """``user`` clicks the Undo of their latest "Saved …" note (``click_undo``, whose reply
    a held one does not have)."""
    note = [c.params for c in bot.fake.calls_to("chat.postEphemeral") if c.params["user"] == user]
    drawn = note[-1]["blocks"]
    drawn = drawn if isinstance(drawn, list) else json.loads(drawn)
    button = drawn[0]["accessory"]
    url = bot.fake.response_url(CHANNEL)
    payload = signing.block_actions_payload(
        user, blocks.UNDO_ACTION, button["value"], message_ts=message["ts"], response_url=url
    )
    assert (await bot.action(payload)).status == 200
    await bot.settled()


@pytest.mark.parametrize(("fault", "lost"), FAULTS, ids=FAULT_IDS)
async def test_an_undo_reply_whose_answer_was_lost_is_sent_once_and_said_maybe_shown(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fault, lost
):
    # Bolt's respond(): 30 s of its own for a timeout, "on_undo: Slack unreachable
    # (TimeoutError)"; sent again after a reset (shown twice), nothing said of a 500
    monkeypatch.setattr(commands, "RESPONSE_URL_TIMEOUT", 1.0, raising=False)
    item_id, message, _ = await decide(bot)
    bot.fake.fail(RESPONSE_URL, **fault)
    with caplog.at_level(logging.WARNING, logger="bot"):
        await click_undo_of(bot, "U0ANA", message)
    assert bot.store.resolution(item_id) is None  # the undo stands
    replies = [r["payload"] for r in bot.fake.responses]  # a held one is not recorded
    if fault.get("after"):
        [reply] = replies  # sent twice, it shows twice
        assert reply == {"text": reply["text"], "replace_original": True}  # as respond() sent
        assert reply["text"].startswith("Undone: ")
    [said] = warnings(caplog)
    assert said.startswith(f"the answer by response_url may have been shown: {lost}"), said


async def test_an_undo_reply_is_sent_by_the_projects_response_url_client(bot: Bot):
    item_id, message, _ = await decide(bot)
    text = await click_undo(bot, "U0ANA", message)
    assert text.startswith("Undone: ")
    [reply] = [r["payload"] for r in bot.fake.responses]
    assert reply == {"text": text, "replace_original": True}
    assert bot.store.resolution(item_id) is None


async def test_an_app_home_slack_did_not_answer_is_one_true_line(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    bot.fake.fail("views.publish", mode="timeout")
    with caplog.at_level(logging.WARNING, logger="bot"):
        envelope = signing.app_home_opened_event("U0ANA")
        assert (await bot.event(envelope)).status == 200
        await bot.settled()
    assert len(bot.fake.calls_to("views.publish")) == 1
    assert warnings(caplog) == [
        f"App Home of U0ANA may not have been published: {TIMEOUT}; it is published again"
        " the next time they open it"
    ]


async def test_an_app_home_whose_answer_was_lost_is_published_again_at_once(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    bot.fake.fail("views.publish", status=500, after=True)  # idempotent: the same Home again
    with caplog.at_level(logging.WARNING, logger="bot"):
        envelope = signing.app_home_opened_event("U0ANA")
        assert (await bot.event(envelope)).status == 200
        await bot.settled()
    assert len(bot.fake.calls_to("views.publish")) == 2
    first, again = bot.fake.calls_to("views.publish")
    assert first.params["view"] == again.params["view"]
    assert warnings(caplog) == []
