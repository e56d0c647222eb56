"""A click's channel redraw and refill do not wait for the person's own note: once the answer is
stored and acked, the question's message is redrawn and the place it freed filled, whatever the
note after it meets (a 429 whose Retry-After the client sleeps out, twice, inside the call). An
"already decided" note is one try under a 429: the message, redrawn meanwhile, says it.

The real server (signed requests), the fake Slack and its 429s; the redrawer on the test's
clock, the dispatcher's loop running so a freed place is filled when it is woken. Nothing
sleeps: each wait is for a call the fake records, bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, Item, has_buttons, posted_on_clock
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(4)]
PEOPLE = ["U0P00", "U0P01"]
BOUND = 10.0  # seconds: only an upper bound (the note's wait would be 2 x 30 s)


async def two_open(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    """Two questions open (HITL_MAX_OPEN 2) of four items, HITL_VOTES 1, the client retrying
    as ``hitl serve``'s does (a 429's Retry-After slept out twice), the dispatcher's loop on."""
    for user in PEOPLE:
        fake.add_user(user, user.lower())
        fake.join_channel(CHANNEL, user)
    async for bot, _redrawer, _clock in posted_on_clock(fake, tmp_path, ITEMS, 2, retries=2):
        dispatcher = asyncio.create_task(bot.dispatcher.run())
        try:
            yield bot
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)


async def redrawn(fake: FakeSlack, ts: str, since: int) -> dict:
    """Wait for a ``chat.update`` of the message ``ts`` after the first ``since`` calls."""
    await fake.wait_for(
        lambda: any(c.params.get("ts") == ts for c in fake.calls_to("chat.update")[since:]),
        BOUND,
        waiting_for=f"the redraw of {ts}",
    )
    return fake.message(CHANNEL, ts)


async def refilled(fake: FakeSlack, since: int) -> None:
    """Wait for a question posted after the first ``since`` ``chat.postMessage`` calls."""
    await fake.wait_for(
        lambda: len(fake.calls_to("chat.postMessage")) > since,
        BOUND,
        waiting_for="the freed place filled",
    )


async def test_a_deciding_click_whose_undo_offer_is_rate_limited_redraws_and_refills_at_once(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The auditor's repro: the Undo offer's chat.postEphemeral rate-limited (Retry-After 30 s,
    slept out by the client twice inside the call). The old code redrew the decided question
    and woke the dispatcher only after that call: ~60 s of live buttons on a decided question
    and a free place unfilled."""
    async for bot in two_open(fake_slack, tmp_path):
        fake = bot.fake
        message = bot.posted()[0]
        updates = len(fake.calls_to("chat.update"))
        posts = len(fake.calls_to("chat.postMessage"))
        fake.fail("chat.postEphemeral", "ratelimited", status=429, retry_after=30, times=3)
        payload = bot.button_payload(message, PEOPLE[0], bot.first_label(message))
        try:
            assert (await bot.action(payload)).status == 200  # stored, acked
            assert not has_buttons(await redrawn(fake, message["ts"], updates))
            await refilled(fake, posts)
            # meanwhile the Undo offer still waits out its Retry-After (it keeps the client's
            # waits: it is the person's only Undo, and good for 10 minutes)
            assert len(fake.calls_to("chat.postEphemeral")) == 1
            assert len([m for m in bot.posted() if has_buttons(m)]) == 2
        finally:
            # the offer's wait cancelled, as a shutdown past its drain does
            with pytest.raises(TimeoutError):
                await bot.rt.background.drain(0)


async def test_a_rate_limited_already_decided_note_is_one_try_and_the_message_is_redrawn(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A click on a decided question's live buttons (a message not yet redrawn): its "already
    decided" note meets a 429. The message is redrawn at once, the note tried once (not slept
    out twice and called three times into the limit: a minute late, it says what the message
    already shows) and said in the log."""
    caplog.set_level(logging.WARNING, logger="bot.slack.app")
    async for bot in two_open(fake_slack, tmp_path):
        fake = bot.fake
        message = bot.posted()[0]  # as drawn before the decision: its buttons live
        label = bot.first_label(message)
        assert (await bot.action(bot.button_payload(message, PEOPLE[0], label))).status == 200
        await bot.settled(BOUND)  # decided, redrawn, its Undo offered
        updates = len(fake.calls_to("chat.update"))
        notes = len(fake.calls_to("chat.postEphemeral"))
        fake.fail("chat.postEphemeral", "ratelimited", status=429, retry_after=30, times=3)
        late = bot.button_payload(message, PEOPLE[1], label)
        try:
            assert (await bot.action(late)).status == 200
            assert not has_buttons(await redrawn(fake, message["ts"], updates))
            await bot.rt.background.drain(BOUND)  # the note did not wait out the Retry-After
        finally:
            if bot.rt.background.tasks:  # (the old code's note, still waiting: cancelled)
                with pytest.raises(TimeoutError):
                    await bot.rt.background.drain(0)
        assert len(fake.calls_to("chat.postEphemeral")) == notes + 1
        said = [r.getMessage() for r in caplog.records if "could not tell" in r.getMessage()]
        assert said == [f"could not tell {PEOPLE[1]}: Slack said ratelimited to chat.postEphemeral"]
