"""The dispatcher's other Slack calls under a 429 (Retry-After 30), through the real server and
the fake Slack: the search for a lost post (conversations.history, and the join it may need;
in a question channel and in one no longer asked in) and the redraw of a moved question's old
message (chat.update). Each is one call: the channel, or the redrawer (``update_due``, on its
own clock), waits the Retry-After; nothing is slept out inside the round, nothing calls into
the limit before it has passed, nothing is left undrawn. ``retries=2`` is the server's client
(its own 429 waits); 0 shows the dispatcher's handling alone. No test sleeps:
``asyncio.timeout`` is only an upper bound, time is moved by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.redraw import Redrawer
from tests.bot.harness import ManualClock, has_buttons, item_of, make_settings, seed
from tests.bot.harness import start_bot as serve
from tests.bot.test_dispatch import ITEMS, bot_with
from tests.bot.test_redraw_converge import run_out
from tests.bot.test_slack_side_faults import NEW, lost_post_then_moved
from tests.fake_slack import CHANNEL


@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("limited", ["conversations.history", "conversations.join"])
async def test_a_429_looking_for_a_lost_post_holds_the_channel_for_its_retry_after(
    fake_slack: FakeSlack, tmp_path: Path, limited: str, retries: int
):
    """A post's answer is lost (a 500), then the search for it gets a 429: the client slept
    it out twice inside the round (every other channel waiting), and the dispatcher then
    looked again after its generic backoff (10 ms here, 1 s in a server), into the limit."""
    async for bot in await bot_with(fake_slack, tmp_path, retries=retries):
        bot.fake.fail("chat.postMessage", status=500, times=1)
        assert await bot.dispatcher.fill() == 0
        state = bot.dispatcher.channel_state(CHANNEL)
        assert len(state.unsure) == 1
        if limited == "conversations.join":
            bot.fake.remove_bot(CHANNEL)  # the history says not_in_channel: it joins first
        bot.fake.fail(limited, "ratelimited", status=429, retry_after=30, times=1)
        state.next_attempt = 0.0
        async with asyncio.timeout(5):  # the old round slept the Retry-After in the call
            assert await bot.dispatcher.fill() == 0
        assert len(bot.fake.calls_to(limited)) == 1
        wait = state.next_attempt - asyncio.get_running_loop().time()
        assert 29 < wait <= 30 and state.last_error == "ratelimited"  # not the backoff's
        async with asyncio.timeout(5):  # woken again before it has passed: nothing is called
            assert await bot.dispatcher.fill() == 0
        assert len(bot.fake.calls_to(limited)) == 1 and len(state.unsure) == 1
        # the Retry-After has passed: it is looked for, not found, and posted once
        state.next_attempt = state.history_retry_at = 0.0
        bot.dispatcher.post_settle = 0.0
        assert await bot.dispatcher.fill() == 2
        assert state.unsure == set() and state.last_error is None
        asked = [item_of(m) for m in bot.posted()]
        assert len(asked) == len(set(asked)) == 2 and bot.store.db["posts"].count == 2


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_moved_questions_old_messages_wait_a_429_on_the_redrawers_clock(
    fake_slack: FakeSlack, tmp_path: Path, retries: int
):
    """HITL_CHANNEL changed between runs: the round redrew the two old messages itself, with
    the client's waits (a 429 slept out twice inside the round), the second chat.update
    called at once into the same limit, and the one refused kept its buttons for good
    (nothing drew it again). Now the redrawer draws them: one call meets the 429, the other
    waits its Retry-After on the redrawer's clock, then both say where they are asked."""
    fake_slack.add_channel("C0OLD", "old-labeling")
    seed(tmp_path / "hitl.db", ITEMS[:2])
    old = make_settings(fake_slack, tmp_path, channel="C0OLD", max_open=2)
    async for bot in serve(fake_slack, old):
        assert await bot.dispatcher.fill() == 2
    first, second = fake_slack.messages("C0OLD")
    async for bot in serve(
        fake_slack, make_settings(fake_slack, tmp_path, max_open=2), retries=retries
    ):
        clock = ManualClock()
        redrawer = Redrawer.of(bot.rt)
        redrawer.clock = clock
        bot.fake.fail("chat.update", "ratelimited", status=429, retry_after=30, times=1)
        async with asyncio.timeout(5):  # the old round slept the Retry-After in the call
            assert await bot.dispatcher.fill() == 2
        assert len(bot.fake.calls_to("chat.update")) == 1  # one 429; the other one waits
        assert redrawer.update_due == clock.now + 30
        clock.now += 29.5
        await redrawer.pending(due_only=True)
        assert len(bot.fake.calls_to("chat.update")) == 1  # not before its Retry-After
        await run_out(bot, redrawer, clock)
        for message in (first, second):
            shown = fake_slack.message("C0OLD", message["ts"])
            assert shown["text"].startswith(f"This question is now asked in <#{CHANNEL}>")
            assert not has_buttons(shown)


async def test_a_429_looking_in_a_channel_no_longer_asked_in_waits_its_retry_after(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A post whose answer was lost before a restart that dropped its channel is looked for
    there: a 429 on that look had it looked for again after the backoff (10 ms here, 1 s in
    a server), into the limit. Now after the Retry-After, then found and moved."""
    ts, item = await lost_post_then_moved(fake_slack, tmp_path)
    settings = make_settings(fake_slack, tmp_path, max_open=8, channel=NEW)
    async for bot in serve(fake_slack, settings, retries=0):
        bot.fake.fail("conversations.history", "ratelimited", status=429, retry_after=30)
        assert await bot.dispatcher.fill() == 7  # every item but the one looked for
        state = bot.dispatcher.channel_state(CHANNEL)
        wait = state.history_retry_at - asyncio.get_running_loop().time()
        assert 29 < wait <= 30 and state.failures == 0  # its Retry-After, not the backoff's
        assert await bot.dispatcher.fill() == 0  # woken again before it has passed
        assert len(bot.fake.calls_to("conversations.history")) == 1
        state.history_retry_at = 0.0  # it has passed: found there, and moved
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        assert [item_of(m) for m in fake_slack.messages(NEW)].count(item) == 1
        assert f"<#{NEW}>" in fake_slack.message(CHANNEL, ts)["text"]
