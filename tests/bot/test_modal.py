"""The labeling modal keeps a channel's items in that channel, through signed requests.

`/hitl label` serves the items of the channel it was run in: its open questions and the
waiting items routed there. App Home's "Start labeling" serves HITL_CHANNEL's and those of
the routed channels the person has answered in. A routed (private) channel's items never reach
someone who only works in another channel.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.holds import HOLD
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, margin_scored, seed, start_bot
from tests.bot.harness import click_in_window as click_in_modal
from tests.bot.harness import window_labels as modal_labels
from tests.fake_slack import CHANNEL

PRIVATE = "C0BILLING"  # where billing questions go: a private channel
MAIN = ["a1", "a2"]  # predicted bug: HITL_CHANNEL
ROUTED = ["b1", "b2"]  # predicted billing: PRIVATE


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    fake_slack.add_channel(PRIVATE, "billing-private", is_private=True)
    seed(tmp_path / "hitl.db", [Item(i, f"text of {i}") for i in MAIN + ROUTED])
    settings = make_settings(fake_slack, tmp_path, max_open=1, routes={"billing": PRIVATE})
    async for running in start_bot(fake_slack, settings):
        ranked = {
            "billing": [["billing", 0.5], ["bug", 0.3]],
            "bug": [["bug", 0.5], ["billing", 0.3]],
        }
        running.store.set_predictions(
            margin_scored(
                [(i, 1, "bug", 0.5, ranked["bug"]) for i in MAIN]
                + [(i, 1, "billing", 0.5, ranked["billing"]) for i in ROUTED]
            ),
            threshold=0.8,
            strategy="margin",
        )
        assert await running.dispatcher.fill() == 2  # one open question in each channel
        yield running


def open_question(bot: Bot, channel: str) -> dict:
    [message] = bot.fake.messages(channel)
    return message


async def walk_modal(bot: Bot, user: str) -> list[str]:
    """Answer every item the just-opened modal serves; return their ids in order."""
    opened = await bot.fake.next_call("views.open")
    view_id = opened.reply["view"]["id"]
    served = []
    while (item := json.loads(bot.fake.views[view_id]["private_metadata"])["item"]) is not None:
        served.append(item)
        view = bot.fake.views[view_id]
        button = next(
            e
            for b in view["blocks"]
            for e in b.get("elements", [])
            if e.get("type") == "button" and '"l":"' in e.get("value", "")
        )  # any label the question shows (with no model they are drawn per item)
        payload = signing.block_actions_payload(
            user, button["action_id"], button["value"], view=view
        )
        payload["actions"][0]["action_ts"] = bot.next_action_ts()
        assert (await bot.action(payload)).status == 200
        await bot.fake.next_call("views.update")
        assert len(served) <= 4, "the modal keeps serving the same items"
    return served


async def test_label_from_one_channel_never_serves_an_item_of_another(bot: Bot):
    response = await bot.command("label", "U0ANA", channel_id=CHANNEL)
    assert response.status == 200
    served = await walk_modal(bot, "U0ANA")
    assert sorted(served) == MAIN  # the open question first, then the one waiting
    assert served[0] == open_question(bot, CHANNEL)["metadata"]["event_payload"]["item_id"]


async def test_label_from_the_routed_channel_serves_its_items(bot: Bot):
    response = await bot.command("label", "U0RAJ", channel_id=PRIVATE)
    assert response.status == 200
    assert sorted(await walk_modal(bot, "U0RAJ")) == ROUTED


async def test_start_labeling_serves_the_main_channel_and_routed_ones_you_answered_in(bot: Bot):
    assert (await bot.action(start_labeling("U0ANA", "1.1.a"))).status == 200
    assert sorted(await walk_modal(bot, "U0ANA")) == MAIN

    # U0RAJ answers a question in the routed channel: its other items are theirs to label too.
    question = open_question(bot, PRIVATE)
    answered = question["metadata"]["event_payload"]["item_id"]
    click = bot.button_payload(question, "U0RAJ", "billing", channel=PRIVATE)
    assert (await bot.action(click)).status == 200
    await bot.settled()
    assert (await bot.action(start_labeling("U0RAJ", "1.1.b"))).status == 200
    assert sorted(await walk_modal(bot, "U0RAJ")) == [i for i in ROUTED if i != answered]


async def test_start_labeling_reads_the_routed_channels_off_the_event_loop(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    """Whether someone answered in a routed channel grows with their answers or the
    channel's posts: App Home's Start labeling reads it in a worker thread, on a connection
    of its own, never on the event loop (it did, per routed channel, per click)."""
    question = open_question(bot, PRIVATE)
    answered = question["metadata"]["event_payload"]["item_id"]
    click = bot.button_payload(question, "U0RAJ", "billing", channel=PRIVATE)
    assert (await bot.action(click)).status == 200
    await bot.settled()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real = Store.has_answered_in

    def watched(self: Store, user_id: str, channel: str) -> bool:
        threads.append(threading.get_ident())
        return real(self, user_id, channel)

    monkeypatch.setattr(Store, "has_answered_in", watched)
    assert (await bot.action(start_labeling("U0RAJ", "1.1.c"))).status == 200
    assert sorted(await walk_modal(bot, "U0RAJ")) == MAIN + [i for i in ROUTED if i != answered]
    assert threads and loop_thread not in threads, threads


async def test_start_labeling_with_the_database_file_lost_still_opens_the_modal(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    """The routed channels are read on a connection of their own, which a lost file refuses
    (``Store.apart``): the server's own connection reads them then, as before, and the modal
    opens; the click raised StoreError, logged with a traceback, and nothing opened."""
    db = Path(bot.rt.settings.db)
    for name in (db.name, f"{db.name}-wal", f"{db.name}-shm"):
        db.with_name(name).unlink()
    assert (await bot.action(start_labeling("U0ANA", "1.1.d"))).status == 200
    opened = await bot.fake.next_call("views.open")
    assert opened.reply["ok"]
    assert not [r for r in caplog.records if r.exc_info], "an exception nothing caught"


def start_labeling(user: str, trigger_id: str) -> dict:
    home = {"id": "VHOME", "type": "home"}
    return signing.block_actions_payload(
        user, "hitl.home.start", "start", view=home, trigger_id=trigger_id
    )


async def test_label_from_a_direct_message_serves_what_start_labeling_serves(bot: Bot):
    response = await bot.command("label", "U0ANA", channel_id="D0ANA")
    assert response.status == 200
    assert sorted(await walk_modal(bot, "U0ANA")) == MAIN


async def open_modal(bot: Bot, user: str, trigger_id: str) -> str:
    """``user`` runs `/hitl label` in HITL_CHANNEL; the id of the modal it opens."""
    assert (
        await bot.command("label", user, channel_id=CHANNEL, trigger_id=trigger_id)
    ).status == 200
    opened = await bot.fake.next_call("views.open")
    return opened.reply["view"]["id"]


def modal_text(bot: Bot, view_id: str) -> str:
    return json.dumps(bot.fake.views[view_id]["blocks"])


async def test_an_answer_in_the_modal_on_an_item_just_decided_says_so_and_is_not_counted(bot: Bot):
    """Raj's window opens once the two minutes Ana's window held the item for her have passed
    (``bot.slack.holds``): it is shown the item too, which Ana decides first."""
    ana = await open_modal(bot, "U0ANA", "1.1.a")
    bot.rt.clock = lambda: datetime.now(UTC) + HOLD + timedelta(seconds=1)
    raj = await open_modal(bot, "U0RAJ", "1.1.r")
    item = json.loads(bot.fake.views[ana]["private_metadata"])["item"]
    assert json.loads(bot.fake.views[raj]["private_metadata"])["item"] == item
    first, second = modal_labels(bot, ana)[:2]
    await click_in_modal(bot, "U0ANA", ana, first)  # decides it (HITL_VOTES=1)

    await click_in_modal(bot, "U0RAJ", raj, second)
    shown = modal_text(bot, raj)
    assert f"This one was already decided (labeled `{first}`); thanks anyway!" in shown
    assert "0 answered in this session" in shown  # history, not an answer counted
    assert bot.store.resolution(item)["label"] == first


async def test_a_click_in_the_modal_on_a_label_retired_meanwhile_redraws_it_with_a_note(bot: Bot):
    ana = await open_modal(bot, "U0ANA", "1.1.a")
    item = json.loads(bot.fake.views[ana]["private_metadata"])["item"]
    retired = modal_labels(bot, ana)[0]
    assert (await bot.command(f"labels retire {retired}", "U0ADMIN")).status == 200
    await bot.settled()

    await click_in_modal(bot, "U0ANA", ana, retired)
    shown = modal_text(bot, ana)
    note = f"`{retired}` is not in the label set any more; pick another."
    assert json.dumps(note)[1:-1] in shown  # the view's blocks as JSON
    assert retired not in modal_labels(bot, ana)
    assert json.loads(bot.fake.views[ana]["private_metadata"])["item"] == item  # still to do
    assert list(bot.store.iter_answers()) == []
