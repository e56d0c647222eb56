"""Slack sends a slash command's text with ``&``, ``<`` and ``>`` escaped as ``&amp;``, ``&lt;``
and ``&gt;`` (its "Escaping text" rule): `/hitl` reads the text as it was typed, once, and
`/hitl review ID` takes the whole rest of the text as the id (ids may hold spaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_label_set import reply
from tests.bot.test_review import view_text


def as_slack_sends(typed: str) -> str:
    return typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(
        tmp_path / "hitl.db",
        [
            Item("Q&A-1", "refund and a crash"),
            Item("ticket 42", "the app crashes"),
            Item("a&lt;b", "an id that reads like an entity"),
            Item("s1", "seed one", "billing"),
        ],
    )
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


async def test_labels_add_stores_the_label_as_typed(bot: Bot):
    text = await reply(bot, as_slack_sends("labels add R&D"))
    assert "R&D" in bot.store.stored_labels(), bot.store.stored_labels()
    assert "R&amp;amp;D" not in text and "Added `R&amp;D`." in text, text  # mrkdwn-escaped once

    text = await reply(bot, as_slack_sends("labels rename R&D R&D-2"))
    assert text.startswith("Done."), text
    labels = bot.store.stored_labels()
    assert "R&D-2" in labels and "R&D" not in labels, labels


@pytest.mark.parametrize(
    ("typed", "item_id"),
    [
        ("review Q&A-1", "Q&A-1"),
        ("review ticket 42", "ticket 42"),
        ("review   ticket 42  ", "ticket 42"),
        ("review a&lt;b", "a&lt;b"),  # typed as is: Slack sends a&amp;lt;b, undone once
    ],
    ids=["ampersand", "space", "spaces-around", "entity-typed"],
)
async def test_review_opens_the_item_by_its_whole_id(bot: Bot, typed: str, item_id: str):
    text = await reply(bot, as_slack_sends(typed))
    assert not text.startswith("No item with id"), text
    view = (await bot.fake.next_call("views.open")).reply["view"]
    assert bot.store.get_item(item_id)["text"] in view_text(view)


async def test_review_of_an_unknown_id_shows_it_as_typed(bot: Bot):
    text = await reply(bot, as_slack_sends("review R&D 7"))
    assert text.startswith("No item with id `R&amp;D 7`."), text  # mrkdwn-escaped once
    assert bot.fake.calls_to("views.open") == []
