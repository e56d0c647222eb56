"""A message whose redraw failed keeps its backoff under traffic, its failure is said once and
its recovery once; every Web API method's errors are counted; a channel whose posts failed
says when posting works again. Time is the redrawer's clock (``Redrawer.clock``), moved by
hand: nothing here sleeps."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.api.metrics import SLACK_API_ERRORS
from bot.runtime import make_client
from bot.sandbox import FakeSlack
from bot.slack.redraw import Redrawer
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(4)]


class Clock:
    """The redrawer's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def answered(bot: Bot, n: int, key: str) -> None:
    """Every open question gets an answer: its message is behind the database (a click)."""
    for k, message in enumerate(bot.posted()[:n]):
        item_id = message["metadata"]["event_payload"]["item_id"]
        bot.store.record_answer(
            item_id, f"U{key}{k}", None, source="button", dedupe_key=f"{key}{k}", votes_needed=9
        )


async def two_posted(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=2, votes=9)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        clock = Clock()
        Redrawer.of(bot.rt).clock = clock
        yield bot, Redrawer.of(bot.rt), clock


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_clicks_during_an_outage_wait_for_the_backoff_and_say_it_once(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Slack down while people keep clicking: each click used to start a pass that called
    Slack for every stuck message and logged a line for each (a line every ~3 s all through
    a 90 s outage). The backoff holds now, and the failure is said once, the recovery once."""
    async for bot, redrawer, clock in two_posted(fake_slack, tmp_path):
        fake_slack.fail("chat.update", "internal_error", times=2 + 4 * 2)  # then Slack is back
        with caplog.at_level(logging.INFO, logger="bot"):
            await answered(bot, 2, "a")
            await redrawer.soon()  # the first click: both messages fail
            assert len(fake_slack.calls_to("chat.update")) == 2
            for round_ in range(10):  # traffic: more clicks, no time passes
                await answered(bot, 2, f"b{round_}")
                await redrawer.soon()
                assert redrawer.woken.is_set()  # the background loop keeps the retry
            assert len(fake_slack.calls_to("chat.update")) == 2  # no call before the backoff
            for _ in range(4):  # the backoff ends, again and again: one try each time
                clock.now = redrawer.next_due() or 0.0
                await answered(bot, 2, f"c{clock.now}")
                await redrawer.soon()
            assert len(fake_slack.calls_to("chat.update")) == 2 + 4 * 2
            delays = sorted({w.delay for w in redrawer.backoff.values()})
            assert delays == [redrawer.retry_base * 2**4]  # it grew, traffic or not
            said = lines(caplog, "chat.update failed")
            assert len(said) == 1 and "2 message(s)" in said[0] and "internal_error" in said[0]

            clock.now = redrawer.next_due() or 0.0
            assert await redrawer.pending(due_only=True) == 0
        assert bot.store.posts_to_redraw() == []
        back = lines(caplog, "had failed")
        assert len(back) == 1 and "2 message(s)" in back[0] and "again" in back[0], back
        assert len(lines(caplog, "chat.update failed")) == 1


async def test_a_refused_token_is_not_called_at_the_rate_of_the_clicks(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Token revoked under traffic: Slack got a chat.update per click (108 in 120 s). Now the
    token's backoff holds every message back, whatever wakes the redrawer."""
    async for bot, redrawer, clock in two_posted(fake_slack, tmp_path):
        fake_slack.fail("chat.update", "token_revoked", times=2)
        for round_ in range(20):
            await answered(bot, 2, f"t{round_}")
            await redrawer.soon()
        assert len(fake_slack.calls_to("chat.update")) == 1  # one call: the rest wait
        clock.now = redrawer.next_due() or 0.0
        await redrawer.soon()
        assert len(fake_slack.calls_to("chat.update")) == 2  # when the backoff ends


async def test_a_new_change_keeps_the_backoff_but_a_post_that_goes_through_ends_it(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot, redrawer, _clock in two_posted(fake_slack, tmp_path):
        fake_slack.fail("chat.update", "internal_error", times=2)
        await answered(bot, 2, "a")
        assert await redrawer.pending(due_only=True) == 2
        await answered(bot, 2, "b")
        assert await redrawer.pending(due_only=True) == 2  # backing off: not tried
        assert len(fake_slack.calls_to("chat.update")) == 2
        redrawer.retry_now()  # what the dispatcher does when a post goes through again
        assert redrawer.woken.is_set()
        assert await redrawer.pending(due_only=True) == 0
        assert bot.store.posts_to_redraw() == []


def counted(method: str, error: str) -> float:
    return SLACK_API_ERRORS.labels(method, error)._value.get()


async def test_every_web_api_methods_errors_are_counted_once(fake_slack: FakeSlack, tmp_path: Path):
    """hitl_slack_api_errors_total counted only chat.postMessage, chat.update and
    conversations.history (where the dispatcher and the redrawer counted by hand)."""
    settings = make_settings(fake_slack, tmp_path)
    client = make_client(settings, retries=0)
    cases = [
        ("chat.postEphemeral", {"status": 429}, "ratelimited"),
        ("views.open", {"error": "expired_trigger_id"}, "expired_trigger_id"),
        ("conversations.join", {"mode": "reset"}, None),  # an exception: its name
        ("chat.postMessage", {"status": 500}, "internal_error"),
    ]
    calls = {
        "chat.postEphemeral": lambda: client.chat_postEphemeral(
            channel=CHANNEL, user="U0ANA", text="hi"
        ),
        "views.open": lambda: client.views_open(trigger_id="1.2", view={"type": "modal"}),
        "conversations.join": lambda: client.conversations_join(channel=CHANNEL),
        "chat.postMessage": lambda: client.chat_postMessage(channel=CHANNEL, text="hi"),
    }
    for method, fault, error in cases:
        names = [error] if error else ["ServerDisconnectedError", "ClientOSError"]
        before = {name: counted(method, name) for name in names}
        fake_slack.fail(method, **fault)
        with pytest.raises(Exception):  # noqa: B017, PT011 - an API error or a dropped line
            await calls[method]()
        after = {name: counted(method, name) for name in names}
        assert sum(after.values()) - sum(before.values()) == 1, (method, before, after)
    before = counted("conversations.join", "internal_error")
    client = make_client(settings, retries=1)  # a 5xx the client's retry gets past: no error
    fake_slack.fail("conversations.join", status=500)
    assert (await client.conversations_join(channel=CHANNEL))["ok"]
    assert counted("conversations.join", "internal_error") == before


async def test_a_channel_whose_posts_failed_says_when_posting_works_again(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Slack unreachable, then back: the failures were said, and now that posting resumed."""
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    async for bot in start_bot(fake_slack, settings, retries=0):
        fake_slack.fail("chat.postMessage", status=500)
        with caplog.at_level(logging.INFO, logger="bot"):
            assert await bot.dispatcher.fill() == 0
            bot.dispatcher.channel_state(CHANNEL).next_attempt = 0  # the backoff has passed
            assert await bot.dispatcher.fill() >= 1
        back = lines(caplog, f"posting to {CHANNEL} works again")
        assert len(back) == 1 and "internal_error" in back[0], back
        assert Redrawer.of(bot.rt).woken.is_set()  # waiting redraws are tried now


async def test_a_click_during_a_pass_is_drawn_while_another_message_backs_off(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A message backing off counted as a failure of every pass, so a pass stopped without
    going round for a click made during it: with Slack healthy, that click's message stayed
    stale until the other message's backoff ended (up to 5 minutes)."""
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=3, votes=9)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 3
        await bot.settled()
        await click_during_a_pass(bot, fake_slack)


async def click_during_a_pass(bot: Bot, fake_slack: FakeSlack) -> None:
    redrawer = Redrawer.of(bot.rt)
    redrawer.clock = Clock()  # frozen: the first message's backoff never ends here
    first, second, third = (m["metadata"]["event_payload"]["item_id"] for m in bot.posted())

    def click(item_id: str, key: str) -> None:
        bot.store.record_answer(
            item_id, f"U{key}", None, source="button", dedupe_key=key, votes_needed=9
        )

    fake_slack.fail("chat.update", "internal_error", times=1)
    click(first, "a")
    await redrawer.soon()
    assert set(redrawer.backoff) and redrawer.next_due() is not None  # it backs off
    update = bot.rt.client.chat_update
    clicked: list[str] = []

    async def click_meanwhile(**kwargs):
        if not clicked:  # while the pass draws the second message, the third is clicked
            clicked.append(third)
            click(third, "c")
            await redrawer.soon()  # the pass holds the lock: it asks for one more round
        return await update(**kwargs)

    bot.rt.client.chat_update = click_meanwhile  # type: ignore[method-assign]
    click(second, "b")
    await redrawer.soon()
    assert clicked == [third]
    assert {p["item_id"] for p in bot.store.posts_to_redraw()} == {first}
