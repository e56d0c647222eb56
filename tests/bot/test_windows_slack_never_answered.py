"""A window's ``views.open`` (or ``views.push``) that Slack did not answer within the client's
timeout, through signed requests to the real server and the fake Slack, which holds the call
(``fail(..., mode="timeout")``) past a 1 s client timeout (long enough that
a call the fake answers never meets it on a busy machine).

`/hitl label`, `/hitl review`, App Home's "Start labeling" and a question's "Guidelines"
caught only Slack's refusals: the person was told nothing, though the window may not have
opened, and the log said "on_command: Slack unreachable (TimeoutError)", though the call had
reached Slack. Now the person is told once where the refusal would be said, truthfully (the
window may be open: "if no window opened, … again"), and the log has one line saying so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from bot.config import Guideline
from bot.sandbox import FakeSlack
from bot.slack import blocks
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

LOST = "views.open may have opened the {} window: no answer within the client's timeout"


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text of {n}") for n in range(3)])
    guides = {"billing": Guideline("Money: charges, refunds.", ())}
    settings = make_settings(fake_slack, tmp_path, max_open=1, guidelines=guides)
    async for running in start_bot(fake_slack, settings, timeout=1.0):
        await running.dispatcher.fill()
        yield running
        running.fake.release_timeouts()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("name", "window"), [("label", "labeling"), ("review", "review")])
async def test_a_command_whose_window_slack_did_not_answer_tells_the_person_once(
    bot: Bot, caplog: pytest.LogCaptureFixture, name: str, window: str
):
    bot.fake.fail("views.open", mode="timeout")
    url = bot.fake.response_url(CHANNEL)
    with caplog.at_level(logging.WARNING, logger="bot"):
        response = await bot.command(name, "U0ADMIN", trigger_id="1.2.3", response_url=url)
        assert response.status == 200
        await bot.settled()
    assert len(bot.fake.calls_to("views.open")) == 1  # a spent trigger is not tried again
    [told] = [r["payload"] for r in bot.fake.responses]
    assert told["text"] == (
        f"Slack did not answer in time when I opened the {window} window: if no window"
        f" opened, run `/hitl {name}` again."
    )
    assert told["response_type"] == "ephemeral"
    [said] = warnings(caplog)
    assert said.startswith(f"/hitl {name} by U0ADMIN: {LOST.format(window)}"), said


async def test_start_labeling_whose_window_slack_did_not_answer_is_said_on_the_home(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    bot.fake.fail("views.open", mode="timeout")
    home = {"id": "VH", "type": "home"}
    click = signing.block_actions_payload("U0ANA", blocks.START_LABELING_ACTION, "s", view=home)
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(click)).status == 200
        await bot.settled()
    note = (
        "Slack did not answer in time when I opened the labeling window: if no window"
        " opened, click *Start labeling* again."
    )
    assert note in str(bot.fake.home["U0ANA"])
    [said] = warnings(caplog)
    assert said.startswith(f"on_start_labeling: {LOST.format('labeling')}"), said


def guidelines_click(bot: Bot, **fields: object) -> dict:
    from tests.bot.test_guidelines import guidelines_payload

    return guidelines_payload(bot.posted()[0], **fields)


async def test_guidelines_slack_did_not_answer_are_said_under_the_question(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    bot.fake.fail("views.open", mode="timeout")
    click = guidelines_click(bot, response_url=bot.fake.response_url(CHANNEL))
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(click)).status == 200
        await bot.settled()
    [told] = [r["payload"] for r in bot.fake.responses]
    assert told["text"] == (
        "Slack did not answer in time when I opened the guidelines window: if no window"
        " opened, click *Guidelines* again."
    )
    assert (told["response_type"], told["replace_original"]) == ("ephemeral", False)
    [said] = warnings(caplog)
    assert said.startswith(f"on_guidelines: {LOST.format('guidelines')}"), said


async def test_guidelines_pushed_over_the_labeling_window_unanswered_are_one_true_line(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    bot.fake.fail("views.push", mode="timeout")
    click = guidelines_click(bot, view={"id": "VM", "type": "modal"})
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(click)).status == 200
        await bot.settled()
    assert bot.fake.responses == []  # a window's click has no response_url
    [said] = warnings(caplog)
    pushed = "views.push may have opened the guidelines window: no answer within the client's"
    assert said.startswith(f"on_guidelines: {pushed}"), said


def test_a_window_slack_was_never_reached_for_is_not_open():
    from bot.slack.modal import not_answered  # here: the older code has none

    key = ConnectionKey("slack.com", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    said, told = not_answered(refused, "labeling", "run `/hitl label`")
    assert said == "could not reach Slack to open the labeling window (ClientConnectorError)"
    assert told == (
        "I could not reach Slack to open the labeling window: run `/hitl label` again,"
        " and tell an admin if it keeps failing."
    )


# -- the click's step after its answer is stored: the window's redraw, a note, the Undo offer --


async def test_a_labeling_window_redraw_slack_did_not_answer_is_one_true_line(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    from tests.bot.test_answers_lost_after_the_work import click_in_window

    url = bot.fake.response_url(CHANNEL)
    await bot.command("label", "U0ANA", trigger_id="1.2.3", response_url=url)
    await bot.settled()
    [view] = bot.fake.views.values()
    shown = json.loads(view["private_metadata"])["item"]
    bot.fake.fail("views.update", mode="timeout")
    with caplog.at_level(logging.WARNING, logger="bot"):
        await click_in_window(bot, "U0ANA", view)
    assert len(bot.fake.calls_to("views.update")) == 1  # not tried again
    assert [a["item_id"] for a in bot.store.db["answers"].rows] == [shown]  # stored once
    [said] = warnings(caplog)
    assert said == (
        f"after the answer on {shown}: the labeling window of U0ANA may not show the next"
        " item: no answer within the client's timeout (TimeoutError)"
    )


async def test_a_note_after_a_click_slack_did_not_answer_is_one_true_line(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    message = bot.posted()[0]
    item_id = bot.store.db["posts"].get(1)["item_id"]
    assert (await bot.action(bot.button_payload(message, "U0ANA", "bug"))).status == 200
    await bot.settled()  # decided: a later click on its buttons is told so
    bot.fake.fail("chat.postEphemeral", mode="timeout")
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(bot.button_payload(message, "U0BOB", "billing"))).status == 200
        await bot.settled()
    [note] = [c for c in bot.fake.calls_to("chat.postEphemeral") if c.params["user"] == "U0BOB"]
    assert note.params["text"].startswith("This one was already decided")  # sent once
    [said] = warnings(caplog)
    assert said == (
        f"after the answer on {item_id}: the note to U0BOB may have been shown: no answer"
        " within the client's timeout (TimeoutError)"
    )


async def test_an_undo_offer_slack_did_not_answer_is_said_maybe_shown(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    message = bot.posted()[0]
    item_id = bot.store.db["posts"].get(1)["item_id"]
    bot.fake.fail("chat.postEphemeral", mode="timeout")
    with caplog.at_level(logging.WARNING, logger="bot"):
        assert (await bot.action(bot.button_payload(message, "U0ANA", "bug"))).status == 200
        await bot.settled()
    assert len(bot.fake.calls_to("chat.postEphemeral")) == 1
    assert bot.store.resolution(item_id)["label"] == "bug"
    [said] = warnings(caplog)
    assert said == (
        f"the Undo offer on {item_id} to U0ANA may have been shown: no answer within the"
        " client's timeout (TimeoutError)"
    )
