"""A question Slack refuses as too big as a whole (``msg_blocks_too_long``, an undocumented cap
on a message's blocks: docs/slack-platform.md, pitfall 9): the "Other…" select of a large label
set, its options inline, is most of the message. The question is asked again at once with the
type-ahead "Other…" (the options served by the bot), and so are the set's later questions and
redraws; before, the item was refused three times and set aside, and so was every item after
it: nothing was ever asked."""

from __future__ import annotations

import json
from pathlib import Path

from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import (
    SECRET,
    Bot,
    Item,
    block_suggestion_payload,
    make_settings,
    seed,
    start_bot,
)
from tests.fake_slack import CHANNEL

# 77 labels of 28-40 characters, as banking77's intents: the question with every one of them
# inline in "Other…" is ~12,000 characters of blocks; with the type-ahead, ~1,500
KINDS = ("card_payment", "transfer_not_received_yet", "exchange_rate_question")
LABELS77 = tuple(f"{KINDS[n % 3]}_kind_{n:02d}" for n in range(77))
CAP = 8_000  # the fake's cap, below the inline form and far above the type-ahead one
ITEMS = [Item(f"i{n}", f"ticket number {n} about my card") for n in range(4)]


def selects(message: dict) -> list[str]:
    return [
        element["type"]
        for block in message["blocks"]
        for element in block.get("elements", [])
        if element.get("type", "").endswith("_select")
    ]


async def pick_in_the_type_ahead(bot: Bot, message: dict, label: str) -> None:
    """Type part of ``label`` in the message's "Other…" and pick it, as Slack sends both."""
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    select = next(e for e in actions["elements"] if e["type"] == "external_select")
    typed = block_suggestion_payload("U0ANA", select["action_id"], actions["block_id"], "kind 76")
    options = (await (await bot.post(*signing.signed_action(typed, SECRET))).json())["options"]
    assert [o["value"] for o in options] == [label]
    assert (await bot.action(bot.select_payload(message, "U0ANA", label))).status == 200


async def test_a_question_too_long_for_slack_is_asked_with_the_type_ahead_other(
    fake_slack: FakeSlack, tmp_path: Path
):
    fake_slack.blocks_cap = CAP
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=2, labels=LABELS77)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 2
        # the first question refused once, asked again at once; the second small at once
        refused = [c for c in fake_slack.calls_to("chat.postMessage") if not c.reply["ok"]]
        assert [c.reply["error"] for c in refused] == ["msg_blocks_too_long"]
        assert len(fake_slack.calls_to("chat.postMessage")) == 3
        assert [selects(m) for m in bot.posted()] == [["external_select"]] * 2
        assert bot.store.db["items"].count_where("status = 'skipped'") == 0

        message = bot.posted()[0]
        item_id = next(b for b in message["blocks"] if b["type"] == "actions")["block_id"][2:]
        await pick_in_the_type_ahead(bot, message, LABELS77[76])
        assert bot.store.resolution(item_id)["label"] == LABELS77[76]
        await bot.settled()
        drawn = fake_slack.message(CHANNEL, message["ts"])
        assert LABELS77[76] in json.dumps(drawn) and "✅" in json.dumps(drawn, ensure_ascii=False)
        updates = fake_slack.calls_to("chat.update")
        assert updates and all(c.reply["ok"] for c in updates)  # drawn small at once


async def test_a_redraw_too_long_for_slack_is_drawn_with_the_type_ahead_other(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", ITEMS[:1])
    settings = make_settings(fake_slack, tmp_path, max_open=1, labels=LABELS77, votes=2)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 1  # no cap yet: "Other…" lists the labels
        [message] = bot.posted()
        assert selects(message) == ["static_select"]
        fake_slack.blocks_cap = CAP  # as Slack may answer a message another time
        pick = bot.select_payload(message, "U0ANA", LABELS77[40])
        assert (await bot.action(pick)).status == 200  # one vote of two: it stays open
        await bot.settled()
        updates = fake_slack.calls_to("chat.update")
        assert [c.reply.get("error") for c in updates] == ["msg_blocks_too_long", None]
        drawn = fake_slack.message(CHANNEL, message["ts"])
        assert selects(drawn) == ["external_select"] and drawn["blocks"] != message["blocks"]
        assert dict(bot.store.tally("i0").votes) == {LABELS77[40]: ["U0ANA"]}
        await pick_in_the_type_ahead(bot, drawn, LABELS77[76])  # and it is answered so
        await bot.settled()
        assert bot.store.resolution("i0") is None  # still one vote of two
        assert dict(bot.store.tally("i0").votes) == {LABELS77[76]: ["U0ANA"]}  # changed


async def test_a_small_label_set_keeps_its_other_inline_under_the_cap(
    fake_slack: FakeSlack, tmp_path: Path
):
    fake_slack.blocks_cap = CAP
    seed(tmp_path / "hitl.db", ITEMS[:1])
    labels = LABELS77[:12]
    settings = make_settings(fake_slack, tmp_path, max_open=1, labels=labels)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 1
        assert [selects(m) for m in bot.posted()] == [["static_select"]]
        assert all(c.reply["ok"] for c in fake_slack.calls_to("chat.postMessage"))
