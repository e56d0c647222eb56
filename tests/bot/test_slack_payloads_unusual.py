"""Unusual but valid things Slack sends or answers, through signed requests: a window Slack
refuses to open, a double click on Undo, and the ``app_rate_limited`` envelope."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState

from bot.runtime import make_client
from bot.sandbox import FakeSlack
from bot.slack.blocks import START_LABELING_ACTION, UNDO_ACTION
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice"), Item("b", "app crashes")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


async def command_told(bot: Bot, text: str, user: str) -> list[str]:
    """Run `/hitl text`; what the person was told after the ack, by the response_url."""
    response_url = bot.fake.response_url("D0ANA")
    response = await bot.command(text, user, response_url=response_url)
    assert response.status == 200
    assert await response.text() == ""  # acked at once, the window comes after
    await bot.rt.background.drain()
    return [r["payload"]["text"] for r in bot.fake.responses if r["payload"].get("text")]


@pytest.mark.parametrize(
    ("error", "told"),
    [
        (
            "expired_trigger_id",
            "Slack did not let me open the labeling window (expired_trigger_id):"
            " run `/hitl label` again.",
        ),
        (
            "channel_not_found",
            "Slack did not let me open the labeling window (channel_not_found):"
            " run `/hitl label` again, and tell an admin if it keeps failing.",
        ),
        (
            "invalid_auth",
            "Slack did not let me open the labeling window (invalid_auth):"
            " the bot's token is refused; ask an admin to reinstall the app.",
        ),
    ],
    ids=["expired_trigger_id", "channel_not_found", "invalid_auth"],
)
async def test_label_whose_window_slack_refuses_says_why_by_the_response_url(
    bot: Bot, caplog: pytest.LogCaptureFixture, error: str, told: str
):
    bot.fake.fail("views.open", error)
    assert await command_told(bot, "label", "U0ANA") == [told]
    assert bot.fake.responses[-1]["payload"]["response_type"] == "ephemeral"
    assert f"/hitl label by U0ANA: Slack said {error} to views.open" in caplog.text


async def test_a_rate_limited_window_is_not_retried_past_its_trigger_and_says_so(bot: Bot):
    bot.fake.fail("views.open", status=429, retry_after=5)  # the trigger lives 3 s
    assert await command_told(bot, "label", "U0ANA") == [
        "Slack did not let me open the labeling window (ratelimited):"
        " Slack is busy; run `/hitl label` again in a few seconds."
    ]
    assert len(bot.fake.calls_to("views.open")) == 1


async def test_review_whose_window_slack_refuses_says_why(bot: Bot):
    bot.fake.fail("views.open", "expired_trigger_id")
    assert await command_told(bot, "review", "U0ADMIN") == [
        "Slack did not let me open the review window (expired_trigger_id):"
        " run `/hitl review` again."
    ]


async def test_start_labeling_whose_window_slack_refuses_says_why_on_the_home(bot: Bot):
    await bot.event(signing.app_home_opened_event("U0ANA"))
    await bot.rt.background.drain()
    home = bot.fake.home["U0ANA"]
    bot.fake.fail("views.open", "expired_trigger_id")
    payload = signing.block_actions_payload("U0ANA", START_LABELING_ACTION, "start", view=home)
    assert (await bot.action(payload)).status == 200
    await bot.rt.background.drain()
    note = bot.fake.home["U0ANA"]["blocks"][0]["text"]["text"]
    assert note == (
        "Slack did not let me open the labeling window (expired_trigger_id):"
        " click *Start labeling* again."
    )
    assert len(bot.fake.calls_to("views.publish")) == 2


@pytest.mark.parametrize(
    ("method", "retry_after", "retried"),
    [
        ("views.open", "1", True),  # 1-2 s: within the trigger's 3 s
        ("views.open", "2", False),
        ("views.open", "5", False),
        ("views.push", "5", False),
        ("chat.update", "5", True),  # no trigger: waited out
    ],
)
async def test_a_429_is_retried_for_a_trigger_only_within_the_triggers_life(
    fake_slack: FakeSlack, tmp_path: Path, method: str, retry_after: str, retried: bool
):
    client = make_client(make_settings(fake_slack, tmp_path))
    [rate_limits] = [h for h in client.retry_handlers if "RateLimit" in type(h).__name__]
    request = HttpRequest(method="POST", url=f"{fake_slack.base_url}{method}", headers={})
    response = HttpResponse(status_code=429, headers={"Retry-After": retry_after})
    state = RetryState()
    assert await rate_limits.can_retry_async(state=state, request=request, response=response) is (
        retried
    )


async def decide_with_undo(bot: Bot) -> tuple[str, dict, dict]:
    """Ana decides the open question (HITL_VOTES=1); its item, and her "Saved" note's Undo."""
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    await bot.action(bot.button_payload(message, "U0ANA", buttons(message)[0]))
    await bot.settled()
    item_id = bot.store.db["posts"].get(1)["item_id"]
    note = bot.fake.calls_to("chat.postEphemeral")[-1].params
    drawn = note["blocks"] if isinstance(note["blocks"], list) else json.loads(note["blocks"])
    return item_id, message, drawn[0]["accessory"]


async def test_a_double_click_on_undo_says_undone_and_never_too_late(bot: Bot):
    item_id, message, undo = await decide_with_undo(bot)
    assert undo["action_id"] == UNDO_ACTION

    def click(n: int) -> dict:
        payload = signing.block_actions_payload(
            "U0ANA",
            UNDO_ACTION,
            undo["value"],
            message_ts=message["ts"],
            response_url=bot.fake.response_url(CHANNEL),
        )
        payload["container"]["is_ephemeral"] = True  # the note is ephemeral: no message
        payload.pop("message", None)
        payload["actions"][0]["action_ts"] = f"1700000200.00000{n}"
        return payload

    acks = await asyncio.gather(bot.action(click(1)), bot.action(click(2)))
    assert [a.status for a in acks] == [200, 200]
    await bot.settled()
    assert bot.store.resolution(item_id) is None  # undone, once
    told = sorted(r["payload"]["text"] for r in bot.fake.responses)
    assert told[0] == "Already undone: the question is open again."
    assert told[1].startswith("Undone: ") and len(told) == 2

    await bot.action(click(3))  # a third click, after both: the same
    await bot.settled()
    assert bot.fake.responses[-1]["payload"]["text"] == (
        "Already undone: the question is open again."
    )


async def test_app_rate_limited_is_answered_200_and_said_in_one_warning(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    envelope = {
        "token": signing.VERIFICATION_TOKEN,
        "type": "app_rate_limited",
        "team_id": "T0HITL",
        "minute_rate_limited": 1518467820,
        "api_app_id": "A0HITL",
    }
    caplog.set_level(logging.WARNING)
    response = await bot.event(envelope)
    assert response.status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "Slack is rate-limiting this app's events for team T0HITL since 2018-02-12 20:37 UTC:"
        " events past 30,000 an hour are dropped until the hour is over"
    ]
