"""Guidelines through signed requests: a question's "Guidelines" button opens a modal with the
labels' descriptions from hitl.toml, and the item's HITL_SHOW_META fields are drawn under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import Guideline, load_settings
from bot.errors import ConfigError
from bot.sandbox import FakeSlack
from bot.sandbox.webapi import RESPONSE_URL
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_slack_bot import context_text
from tests.fake_slack import CHANNEL

GUIDES = {
    "billing": Guideline("Money: charges, refunds, invoices.", ("I was charged twice",)),
    "bug": Guideline("Something is broken.", ()),
}


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    meta = {"channel": "email", "customer": "ACME <!channel>", "secret": "not shown"}
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash", meta=meta)])
    settings = make_settings(
        fake_slack, tmp_path, max_open=1, guidelines=GUIDES, show_meta=("channel", "customer")
    )
    async for running in start_bot(fake_slack, settings):
        yield running


def guidelines_button(message: dict) -> tuple[dict, dict]:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id", "").endswith(".guidelines"):
                return block, element
    raise AssertionError("no Guidelines button")


def guidelines_payload(message: dict, **fields: object) -> dict:
    """U0ANA's click on the Guidelines button of question ``message`` (``fields``: more)."""
    block, button = guidelines_button(message)
    return signing.block_actions_payload(
        "U0ANA",
        button["action_id"],
        button["value"],
        message_ts=message["ts"],
        block_id=block["block_id"],
        message=message,
        **fields,
    )


async def click_guidelines(bot: Bot, **payload: object) -> None:
    """Post the first question and click its Guidelines button (``payload``: more fields)."""
    await bot.dispatcher.fill()
    clicked = guidelines_payload(bot.posted()[0], **payload)
    assert (await bot.action(clicked)).status == 200


async def test_the_guidelines_button_opens_a_modal_with_the_labels_descriptions(bot: Bot):
    await click_guidelines(bot)
    opened = await bot.fake.next_call("views.open")
    shown = json.dumps(opened.reply["view"]["blocks"])
    assert "Money: charges, refunds, invoices." in shown and "I was charged twice" in shown
    assert "Something is broken." in shown
    assert "*`account`*\\n_no description yet_" in shown  # a label in force without a guideline
    assert bot.store.count_answers() == 0  # opening the guidelines is not an answer


async def test_guidelines_slack_refuses_to_open_are_said_to_the_person_under_the_question(
    bot: Bot,
):
    # Slack refused views.open (the click's trigger expired): the person saw nothing happen
    bot.fake.fail("views.open", "expired_trigger_id")
    await click_guidelines(bot, response_url=bot.fake.response_url(CHANNEL))
    await bot.rt.background.drain()
    [told] = [r["payload"] for r in bot.fake.responses]
    assert told["text"] == (
        "Slack did not let me open the guidelines window (expired_trigger_id):"
        " click *Guidelines* again."
    )
    assert (told["response_type"], told["replace_original"]) == ("ephemeral", False)


async def test_the_chosen_meta_fields_are_drawn_under_the_question_escaped(bot: Bot):
    await bot.dispatcher.fill()
    shown = context_text(bot.posted()[0])
    assert "channel: email · customer: ACME &lt;!channel&gt;" in shown
    assert "not shown" not in shown


def test_guidelines_come_from_labels_tables_in_hitl_toml_and_a_bad_one_is_one_line(
    tmp_path: Path,
):
    good = tmp_path / "hitl.toml"
    good.write_text(
        '[hitl]\nshow_meta = "channel,customer"\n\n'
        '[labels.billing]\ndescription = "Money"\nexamples = ["charged twice", "refund"]\n'
    )
    settings = load_settings({}, good)
    assert settings.guidelines == {"billing": Guideline("Money", ("charged twice", "refund"))}
    assert settings.show_meta == ("channel", "customer")
    bad = tmp_path / "bad.toml"
    bad.write_text('[labels.billing]\ndescription = "Money"\nexample = "refund"\n')
    with pytest.raises(ConfigError) as error:
        load_settings({}, bad)
    assert str(error.value).endswith(
        f"{bad} [labels.billing] has 'example'; use description and examples"
    )


async def test_guidelines_slack_opened_before_its_answer_was_lost_are_not_said_to_have_failed(
    bot: Bot,
):
    # views.open took effect, then Slack answered 500: the retry heard exchanged_trigger_id
    bot.fake.fail("views.open", status=500, after=True)
    await click_guidelines(bot, response_url=bot.fake.response_url(CHANNEL))
    await bot.rt.background.drain()
    assert len(bot.fake.calls_to("views.open")) == 2 and len(bot.fake.views) == 1
    assert bot.fake.responses == []  # not told to click again under an open window


async def test_a_refusal_said_under_the_question_shows_once_when_its_connection_drops(bot: Bot):
    # the note reached Slack and the connection dropped: slack_sdk's retry had sent it again
    bot.fake.fail("views.open", "expired_trigger_id")
    bot.fake.fail(RESPONSE_URL, mode="reset", after=True)
    await click_guidelines(bot, response_url=bot.fake.response_url(CHANNEL))
    await bot.rt.background.drain()
    [told] = [r["payload"] for r in bot.fake.responses]
    assert told["text"].startswith("Slack did not let me open the guidelines window")
    assert (told["response_type"], told["replace_original"]) == ("ephemeral", False)
