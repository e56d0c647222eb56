"""App Home under a rate limit: a 429 on views.publish holds every publish until its
Retry-After (on the publisher's clock, which the tests move), then each person's latest Home
is published once; nothing is slept out inside a listener, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.commands import HomePublisher
from tests import signing
from tests.bot.harness import Bot, Item, LogLines, ManualClock, make_settings, seed, start_bot

# 20 people: the fake's three, and 17 more
PEOPLE = ["U0ANA", "U0RAJ", "U0ADMIN", *(f"U0P{n:02d}" for n in range(17))]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    for user in PEOPLE[3:]:
        fake_slack.add_user(user, user.lower())
    seed(tmp_path / "hitl.db", [Item("i1", "refund please"), Item("i2", "love the app")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


def on_clock(bot: Bot) -> tuple[HomePublisher, ManualClock]:
    homes, clock = HomePublisher.of(bot.rt), ManualClock()
    homes.clock = clock
    return homes, clock


async def open_homes(bot: Bot, people: list[str]) -> None:
    """``people`` open App Home at once; returns when every listener is done (after its ack)."""
    envelopes = [signing.app_home_opened_event(user) for user in people]
    replies = await asyncio.gather(*(bot.event(envelope) for envelope in envelopes))
    assert [reply.status for reply in replies] == [200] * len(people)
    await bot.rt.background.drain(5)


async def held_over(homes: HomePublisher, clock: ManualClock, seconds: float) -> None:
    """Move the publisher's clock on by ``seconds`` and let it publish what is due."""
    clock.now += seconds
    homes.wake()
    assert homes.task is not None
    async with asyncio.timeout(5):  # an upper bound: it returns when the Homes are sent
        await asyncio.shield(homes.task)


def published_to(bot: Bot) -> list[str]:
    return [call.params["user_id"] for call in bot.fake.calls_to("views.publish")]


async def test_homes_opened_during_a_429_are_published_once_each_after_its_retry_after(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    homes, clock = on_clock(bot)
    bot.fake.fail("views.publish", "ratelimited", status=429, retry_after=30, times=1)
    with caplog.at_level(logging.WARNING, logger="bot"):
        await open_homes(bot, PEOPLE[:1])  # Ana's meets the 429
        await open_homes(bot, PEOPLE[1:])  # the 19 others, within its Retry-After
        await open_homes(bot, ["U0RAJ", "U0RAJ"])  # Raj again, twice: still one publish
        # Ana answers a question meanwhile: her Home, when it is published, counts it
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        click = bot.button_payload(message, "U0ANA", bot.first_label(message))
        assert (await bot.action(click)).status == 200
        await bot.settled()
        assert published_to(bot) == ["U0ANA"]  # the 429: one call in the Retry-After, no storm
        assert bot.fake.home == {}
        assert set(homes.waiting) == set(PEOPLE)

        clock.now += 29  # not over yet: still held
        homes.wake()
        assert homes.is_held() and published_to(bot) == ["U0ANA"]

        await held_over(homes, clock, 1)
    after = published_to(bot)[1:]
    assert sorted(after) == sorted(PEOPLE)  # each once, none lost
    assert set(bot.fake.home) == set(PEOPLE)
    ana = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
    assert "This week you labeled *1 item*;" in ana  # the state at send time, not at the open
    assert homes.waiting == {}
    said = [r.getMessage() for r in caplog.records if r.name == "bot.slack.commands"]
    assert said == [
        "Slack rate-limited views.publish: App Homes are published in 30 s, once each, the latest",
        "views.publish goes on: the App Homes held were sent",
    ]


async def test_a_429_again_after_the_wait_holds_the_rest_again(
    bot: Bot, replies_reach_a_fake: LogLines
):
    log = replies_reach_a_fake  # the log of bot.slack.commands, where the publisher speaks
    homes, clock = on_clock(bot)
    bot.fake.fail("views.publish", "ratelimited", status=429, retry_after=30, times=2)
    await open_homes(bot, PEOPLE[:1])
    await open_homes(bot, PEOPLE[1:5])
    assert published_to(bot) == ["U0ANA"]
    clock.now += 30
    homes.wake()
    await log.wait("Slack rate-limited views.publish", count=2)  # the first after it: 429
    assert len(published_to(bot)) == 2
    clock.now += 29  # within the new Retry-After: still held
    homes.wake()
    assert homes.is_held() and len(published_to(bot)) == 2
    await held_over(homes, clock, 1)
    assert sorted(published_to(bot)[2:]) == sorted(PEOPLE[:5])
    assert set(bot.fake.home) == set(PEOPLE[:5])


async def test_a_home_opened_with_no_limit_is_published_at_once_without_a_task(bot: Bot):
    homes, _ = on_clock(bot)
    await open_homes(bot, ["U0ANA"])
    assert published_to(bot) == ["U0ANA"] and homes.task is None


async def test_a_stop_while_homes_are_held_says_how_many_and_does_not_wait_for_them(
    fake_slack: FakeSlack, tmp_path: Path, replies_reach_a_fake: LogLines
):
    runs = start_bot(fake_slack, make_settings(fake_slack, tmp_path))
    async with contextlib.aclosing(runs):
        bot = await anext(runs)
        homes, _ = on_clock(bot)
        bot.fake.fail("views.publish", "ratelimited", status=429, retry_after=30, times=3)
        await open_homes(bot, PEOPLE[:3])
        waiting = homes.task
    assert waiting is not None and waiting.cancelled()  # not waited for until the drain's end
    assert replies_reach_a_fake.said("not published at shutdown") == [
        "3 App Homes not published at shutdown (Slack rate-limited views.publish); each is"
        " published again the next time its person opens it"
    ]
