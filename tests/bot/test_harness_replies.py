"""The harness's replies by response_url reach its fake Slack: a command or a click a test builds
without naming a response_url is answered at ``fake.response_url()`` and recorded in
``fake.responses``, so a test sees what the person is told (before, the default was an address
on hooks.slack.com that nothing here answers, and such a reply was lost in a DNS error); and
the guard in tests/bot/conftest.py knows the product's line for a reply nothing answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.commands import tell
from tests import signing
from tests.bot.conftest import UNREACHED
from tests.bot.harness import Bot, Item, LogLines, make_settings, seed, start_bot
from tests.bot.test_guidelines import GUIDES, click_guidelines
from tests.fake_slack import CHANNEL

NOT_OPENED = "Slack did not let me open the"


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, guidelines=GUIDES)
    async for running in start_bot(fake_slack, settings):
        yield running


async def test_a_command_that_names_no_response_url_is_answered_at_the_fakes(bot: Bot):
    bot.fake.fail("views.open", "expired_trigger_id")  # said by the command's response_url
    assert (await bot.command("label", "U0ANA", trigger_id="1.2.3")).status == 200
    await bot.settled()
    [reply] = bot.fake.responses
    assert (reply["channel"], reply["message_ts"]) == (CHANNEL, "-")
    assert reply["payload"]["text"].startswith(f"{NOT_OPENED} labeling window"), reply


async def test_a_click_built_with_no_response_url_is_answered_under_its_message(bot: Bot):
    bot.fake.fail("views.open", "expired_trigger_id")  # said under the question
    await click_guidelines(bot)  # signing.block_actions_payload, no response_url named
    await bot.rt.background.drain()
    [reply] = bot.fake.responses
    assert (reply["channel"], reply["message_ts"]) == (CHANNEL, bot.posted()[0]["ts"])
    assert reply["payload"]["text"].startswith(f"{NOT_OPENED} guidelines window"), reply
    assert reply["payload"]["replace_original"] is False


async def test_a_reply_sent_to_the_default_of_a_payload_built_alone_is_the_guards_line(
    replies_reach_a_fake: LogLines,
):
    assert signing.RESPONSE_URL.startswith("http://127.0.0.1:")  # refused at once, no DNS
    assert await tell(signing.RESPONSE_URL, "lost") is False
    assert len(replies_reach_a_fake.said(UNREACHED)) == 1  # the guard would fail this test
    replies_reach_a_fake.records.clear()
