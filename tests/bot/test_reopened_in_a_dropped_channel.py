"""A question reopened in a channel no longer asked in is asked where its item goes now.

An item asked in #billing (a route) and decided there; the server started again without the
route (the start moves the open questions of channels no longer asked in; this one was
closed, decided, so it stayed); then an Undo of the decision, or a Skip that ends a split,
reopened its question in #billing, where the dispatcher neither fills nor counts, so nobody
was asked about it until HITL_QUESTION_TTL took it back. Each dispatcher round now moves the
open questions of channels no longer asked in, as the start does: the item is asked again in
the channel asked in now, and its old message says so, without buttons.

The real server against the fake Slack, background loops off: the test makes the rounds
(``fill``) and waits for the redraws (``settled``); nothing sleeps."""

from __future__ import annotations

import json
from pathlib import Path

from bot.sandbox import FakeSlack
from bot.slack.blocks import UNDO_ACTION
from tests import signing
from tests.bot.harness import Bot, Item, has_buttons, item_of, start_bot
from tests.bot.test_resting_splits_and_retired_routes import guessed, routed_world
from tests.bot.test_routed_channels_waiting import BILLING, open_in
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL

ITEMS = [Item("bill1", "refund my charge"), Item("bug1", "app crashes")]


def asked_in_billing(bot: Bot) -> dict:
    """bill1's message in #billing, as Slack shows it now."""
    [message] = [m for m in bot.fake.messages(BILLING) if item_of(m) == "bill1"]
    return message


def open_reviews(bot: Bot) -> list[dict]:
    """bill1's reviews not decided yet."""
    return [r for r in bot.store.reviews_of("bill1") if r["decided_at"] is None]


async def click(bot: Bot, user: str, label: str | None) -> None:
    """``user`` clicks ``label`` (None: Skip) on bill1's message in #billing."""
    message = asked_in_billing(bot)
    payload = bot.button_payload(message, user, label, channel=BILLING)
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def click_undo(bot: Bot, user: str) -> str:
    """``user`` clicks the Undo of their latest "Saved …" note in #billing; what it says then."""
    note = [
        c.params
        for c in bot.fake.calls_to("chat.postEphemeral")
        if c.params["user"] == user and "Undo" in str(c.params.get("blocks"))
    ][-1]
    assert note["channel"] == BILLING
    drawn = note["blocks"] if isinstance(note["blocks"], list) else json.loads(note["blocks"])
    button = drawn[0]["accessory"]
    assert button["action_id"] == UNDO_ACTION
    payload = signing.block_actions_payload(
        user,
        UNDO_ACTION,
        button["value"],
        channel=BILLING,
        message_ts=asked_in_billing(bot)["ts"],
        response_url=bot.fake.response_url(BILLING),
    )
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    return bot.fake.responses[-1]["payload"]["text"]


async def asked_again_where_it_goes_now(bot: Bot) -> None:
    """A round: bill1 is asked in the default channel, not left open in #billing, and its old
    message there says where it is asked now, without buttons."""
    await bot.dispatcher.fill()
    await bot.settled()
    assert open_in(bot, BILLING) == []
    assert "bill1" in open_in(bot, CHANNEL)
    old = asked_in_billing(bot)
    assert not has_buttons(old), old
    assert old["text"].startswith(f"This question is now asked in <#{CHANNEL}>"), old["text"]


async def test_an_undo_after_a_start_without_its_route_asks_the_question_where_it_goes_now(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = routed_world(fake_slack, tmp_path, ITEMS, max_open=2, audit_rate=0.0)
    async for bot in start_bot(fake_slack, settings, retries=0):
        guessed(bot, {"bill1": "billing", "bug1": "bug"})
        await bot.dispatcher.fill()
        await bot.settled()
        assert open_in(bot, BILLING) == ["bill1"]
        await click(bot, "U0ANA", "billing")  # decides it (HITL_VOTES=1)
        assert bot.store.resolution("bill1")["label"] == "billing"
    async for bot in start_bot(fake_slack, settings.with_changes(routes={}), retries=0):
        await bot.dispatcher.fill()  # the start: nothing open in #billing to move
        await bot.settled()
        reply = await click_undo(bot, "U0ANA")
        assert reply.startswith("Undone: `billing` is no longer the label."), reply
        assert bot.store.resolution("bill1") is None
        await asked_again_where_it_goes_now(bot)


async def test_a_skip_that_ends_a_split_after_a_start_without_its_route_asks_it_where_it_goes(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = routed_world(fake_slack, tmp_path, ITEMS, max_open=2, audit_rate=0.0, votes=2)
    async for bot in start_bot(fake_slack, settings, retries=0):
        guessed(bot, {"bill1": "billing", "bug1": "bug"})
        await bot.dispatcher.fill()
        await bot.settled()
        assert open_in(bot, BILLING) == ["bill1"]
        first, second = buttons(asked_in_billing(bot))[:2]
        await click(bot, "U0ANA", first)
        await click(bot, "U0RAJ", second)  # a split: it goes to review, holding no place
        assert open_in(bot, BILLING) == []
        assert [r["reason"] for r in open_reviews(bot)] == ["split"]
    async for bot in start_bot(fake_slack, settings.with_changes(routes={}), retries=0):
        await bot.dispatcher.fill()  # the start: nothing open in #billing to move
        await bot.settled()
        await click(bot, "U0RAJ", None)  # Raj takes his vote back: no split, asked again
        assert open_reviews(bot) == []
        await asked_again_where_it_goes_now(bot)
        assert bot.store.tally("bill1").votes == {first: ["U0ANA"]}  # Ana's vote still counts


async def test_each_rounds_look_for_questions_to_move_reads_the_open_posts_index_alone(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The look each round makes (``requeue_posts_outside``) costs what the open questions
    cost, whatever the number of posts ever made (test_queue_scans counts its work as they
    grow), and writes nothing when nothing is to move."""
    settings = routed_world(fake_slack, tmp_path, ITEMS, max_open=2, audit_rate=0.0)
    async for bot in start_bot(fake_slack, settings.with_changes(routes={}), retries=0):
        guessed(bot, {"bill1": "billing", "bug1": "bug"})
        await bot.dispatcher.fill()
        seen: list[str] = []
        bot.store.db.conn.set_trace_callback(seen.append)
        try:
            await bot.dispatcher.fill()
        finally:
            bot.store.db.conn.set_trace_callback(None)
        [look] = [sql for sql in dict.fromkeys(seen) if "channel NOT IN" in sql]
        plan = [row[3] for row in bot.store.db.execute("EXPLAIN QUERY PLAN " + look)]
        assert [step for step in plan if step.startswith("SCAN")] == [
            "SCAN posts USING INDEX posts_open_age"
        ], plan
        assert not [sql for sql in seen if sql.lstrip().upper().startswith("UPDATE POSTS")]


async def test_a_question_open_in_a_route_retired_while_serving_is_moved_at_the_next_round(
    fake_slack: FakeSlack, tmp_path: Path
):
    """`/hitl labels retire billing` while bill1 is asked in #billing: the round after it no
    longer asks there (``question_channels``), and moves bill1 where it goes now, as a start
    would, rather than leave it open there until the next start."""
    settings = routed_world(fake_slack, tmp_path, ITEMS, max_open=2, audit_rate=0.0, question_ttl=0)
    async for bot in start_bot(fake_slack, settings, retries=0):
        guessed(bot, {"bill1": "billing", "bug1": "bug"})
        await bot.dispatcher.fill()
        await bot.settled()
        assert open_in(bot, BILLING) == ["bill1"]
        reply = await (await bot.command("labels retire billing", user="U0ADMIN")).text()
        assert "unused while retired" in reply, reply
        await bot.settled()
        await asked_again_where_it_goes_now(bot)
