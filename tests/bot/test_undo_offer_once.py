"""An Undo takes back the decision it was offered for, never a later one. Found by
``ServerMachine`` (tests/bot/test_server_machine.py): a person decided an item in the channel,
undid it with the "Saved" note's Undo, decided it again (in the labeling window, or in the
channel), then clicked the first note's Undo again: it undid the new decision, which that Undo
was never offered for (the store's Undo looked for any decision of theirs within 10 minutes),
and the window still counted the answer in its session. Through signed requests to the real
server and the fake Slack."""

from __future__ import annotations

import json
from pathlib import Path

from bot.sandbox import FakeSlack
from bot.slack import blocks
from tests import signing
from tests.bot.harness import Bot, Item, item_of, make_settings, open_window, seed, start_bot
from tests.bot.harness import click_in_window as click
from tests.bot.harness import window_item as shown
from tests.bot.harness import window_labels as labels_shown
from tests.bot.test_redraw_converge import undo_offers
from tests.fake_slack import CHANNEL


async def started(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text of i{n}") for n in range(3)])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        yield bot


async def undo(bot: Bot, user: str, value: str, ts: str) -> str:
    """``user`` clicks a "Saved" note's Undo (its button's ``value``); what the note says."""
    url = bot.fake.response_url(CHANNEL)  # the note's own (ephemeral: not the question's)
    payload = signing.block_actions_payload(
        user, blocks.UNDO_ACTION, value, message_ts=ts, response_url=url
    )
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    return bot.fake.responses[-1]["payload"]["text"]


async def decided_and_undone(bot: Bot) -> tuple[str, dict, str]:
    """Ana decides the posted question with its first label and undoes it with the note's
    Undo: the item, its message, the note's Undo value."""
    [message] = bot.posted()
    item = item_of(message)
    click = bot.button_payload(message, "U0ANA", bot.first_label(message))
    assert (await bot.action(click)).status == 200
    await bot.settled()
    [(_, value)] = undo_offers(bot)
    assert (await undo(bot, "U0ANA", value, message["ts"])).startswith("Undone:")
    assert bot.store.resolution(item) is None
    return item, message, value


async def test_a_used_undo_does_not_take_back_a_decision_made_again_in_the_window(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in started(fake_slack, tmp_path):
        item, message, value = await decided_and_undone(bot)
        window = await open_window(bot, "U0ANA")
        assert shown(bot, window) == item  # theirs to answer again
        again = labels_shown(bot, window)[1]
        await click(bot, "U0ANA", window, again)  # decided again, in the window
        assert "1 answered in this session" in json.dumps(bot.fake.views[window]["blocks"])

        said = await undo(bot, "U0ANA", value, message["ts"])  # the first note's Undo again
        # the old code: "Undone: `bug` is no longer the label." (the window's decision)
        assert said.startswith("Already undone. The item was decided again since"), said
        assert bot.store.resolution(item)["label"] == again
        # the window's own Undo is the one that takes it back
        [offer] = [
            b["accessory"]
            for b in bot.fake.views[window]["blocks"]
            if (b.get("accessory") or {}).get("action_id") == blocks.UNDO_ACTION
        ]
        payload = signing.block_actions_payload(
            "U0ANA", offer["action_id"], offer["value"], view=bot.fake.views[window]
        )
        payload["actions"][0]["action_ts"] = bot.next_action_ts()
        assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert bot.store.resolution(item) is None
        assert "0 answered in this session" in json.dumps(bot.fake.views[window]["blocks"])


async def test_a_used_undo_does_not_take_back_a_decision_made_again_in_the_channel(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in started(fake_slack, tmp_path):
        item, message, value = await decided_and_undone(bot)
        now = bot.fake.message(CHANNEL, message["ts"])  # its buttons again
        labels = [
            blocks.decode_value(e["value"])[1]
            for b in now["blocks"]
            for e in b.get("elements", [])
            if ".label." in e.get("action_id", "")
        ]
        click = bot.button_payload(now, "U0ANA", labels[1])
        assert (await bot.action(click)).status == 200
        await bot.settled()
        assert await undo(bot, "U0ANA", value, message["ts"]) == (
            f"Already undone. The item was decided again since, as `{labels[1]}`; that"
            " decision stands (its own Undo can take it back)."
        )
        assert bot.store.resolution(item)["label"] == labels[1]
        [_, (_, newer)] = undo_offers(bot)  # the new decision's own Undo still undoes it
        assert (await undo(bot, "U0ANA", newer, message["ts"])).startswith("Undone:")
        assert bot.store.resolution(item) is None
