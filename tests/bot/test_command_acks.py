"""`/hitl` subcommands whose answer grows with the data are acknowledged within Slack's 3 s
however long their read takes, and answered by the command's ``response_url`` when it is done;
through the real endpoint, with signed requests and the fake Slack.

At a million items `/hitl stats` (HITL_VOTES=3, 38,000 items with two or more answers) read its
agreement figures for 9 s before its ack and `/hitl accuracy` its live accuracy for 2.7 s: Bolt
gave up at 3 s, Slack showed the person an error, and the log said the command was one "this app
does not handle". Here the real read is held (a wrapper on the stores ``Store.apart`` opens,
which blocks until the test lets it go, then reads for real), so "slow" is deterministic."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, seed_champion, start_bot
from tests.bot.test_quality import COUNTS, IN_SLACK, answer_all
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL

WORKING = "Working on it… the answer will be here in a moment."
SLACK_WAITS = 3.0  # Slack shows an error for a command not acknowledged within this


class Held:
    """Holds the first call of ``method`` on a store that ``served.apart()`` opens (the worker
    thread's connection) until ``release``; then it runs for real, or raises ``fail``. A
    watchdog lets it go after WATCHDOG s so that a test that never releases it fails instead
    of hanging; passing tests never wait for it."""

    WATCHDOG = 30.0

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, served: Store, method: str, fail: Exception = None
    ) -> None:
        self.entered = threading.Event()
        self._release = threading.Event()
        self.calls = 0
        real_apart = served.apart

        def apart() -> Store:
            store = real_apart()
            real = getattr(store, method)

            def held(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                if self.calls == 1:
                    self.entered.set()
                    assert self._release.wait(self.WATCHDOG), "the held read was never released"
                    if fail is not None:
                        raise fail
                return real(*args, **kwargs)

            setattr(store, method, held)
            return store

        monkeypatch.setattr(served, "apart", apart)

    def release(self) -> None:
        self._release.set()


@pytest.fixture
async def voting_bot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    """HITL_VOTES=2, ten items answered by Ana and Raj (``tests/bot/test_quality.py``: their
    agreement figures computed by hand)."""
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"item {n}") for n in range(10)])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, votes=2)):
        answer_all(running.store)
        yield running


async def command(bot: Bot, text: str, user: str = "U0ADMIN") -> tuple[int, dict, float]:
    """The command's HTTP response (status, body: Bolt sends a text-only ack as plain text)
    and how long it took."""
    started = time.monotonic()
    response = await bot.command(text, user, response_url=bot.fake.response_url(CHANNEL))
    elapsed = time.monotonic() - started
    body = await response.text()
    is_json = response.content_type == "application/json"
    return response.status, json.loads(body) if is_json else {"text": body}, elapsed


async def answered_later(bot: Bot, told: int) -> list[dict]:
    """What the command's listener sent by the response_url after its ack, once it is done."""
    await bot.rt.background.drain(timeout=30)  # the listener, at work after its ack
    return [r["payload"] for r in bot.fake.responses[told:]]


async def test_slow_stats_are_acknowledged_at_once_and_answered_by_the_response_url(
    voting_bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    bot = voting_bot
    held = Held(monkeypatch, bot.store, "iter_votes")
    told = len(bot.fake.responses)
    try:
        status, body, elapsed = await command(bot, "stats")
        assert status == 200  # not Bolt's 404 after 3 s
        assert body["text"] == WORKING
        assert elapsed < SLACK_WAITS
        assert held.entered.is_set() and bot.fake.responses[told:] == []  # still reading
    finally:
        held.release()
    [answer] = await answered_later(bot, told)
    assert answer["response_type"] == "ephemeral"
    for line in IN_SLACK:  # the real figures, as the ack gives them when read in time
        assert line in answer["text"], line
    sections = [b["text"]["text"] for b in answer["blocks"]]
    # the counts' lines first, a block each; then the agreement's sections
    heads = [*COUNTS, "*Agreement between people*"]
    assert all(section.startswith(head) for section, head in zip(sections, heads, strict=False))
    assert sections[5] == (
        "*Cohen's κ by pair:*\n<@U0ANA> & <@U0RAJ>: κ 0.58 (10 items, 80% the same)"
    )


async def test_stats_read_in_time_are_the_ack_itself(voting_bot: Bot):
    bot = voting_bot
    told = len(bot.fake.responses)
    status, body, _ = await command(bot, "stats")
    assert status == 200
    for line in IN_SLACK:
        assert line in body["text"], line
    assert await answered_later(bot, told) == []  # one message: nothing more


@pytest.mark.parametrize(
    ("fail", "said"),
    [
        (
            StoreError("the database file was deleted: put it back and restart hitl serve"),
            "Not now: the database file was deleted: put it back and restart hitl serve",
        ),
        (RuntimeError("boom"), "Something went wrong on our side; it has been logged."),
    ],
)
async def test_a_read_failing_after_the_ack_is_said_by_the_response_url_in_a_line(
    voting_bot: Bot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fail: Exception,
    said: str,
):
    bot = voting_bot
    held = Held(monkeypatch, bot.store, "iter_votes", fail=fail)
    told = len(bot.fake.responses)
    try:
        status, body, _ = await command(bot, "stats")
        assert (status, body.get("text")) == (200, WORKING)
    finally:
        held.release()
    with caplog.at_level(logging.ERROR, logger="bot.slack.commands"):
        answers = await answered_later(bot, told)
    assert [a["text"] for a in answers] == [said]
    assert answers[0]["response_type"] == "ephemeral"
    assert "/hitl stats" in caplog.text  # and the log has it


@pytest.fixture
async def model_bot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    """A champion (v1) whose audit questions people answered: 2 of its 3 guesses right."""
    fake_slack.scopes = ("chat:write", "commands")  # no chart (files:write): the text is all
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"x{n}", f"audit item {n}") for n in range(3)])
    seed_champion(db, ["refund my invoice", "app crashes"] * 3, ["billing", "bug"] * 3)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for running in start_bot(fake_slack, settings):
        for n, (guess, truth) in enumerate([("bug", "bug"), ("bug", "billing"), ("billing",) * 2]):
            running.store.record_post(f"x{n}", CHANNEL, f"9.{n}", "audit", 1, guess, 0.6)
            running.store.record_answer(
                f"x{n}", "U0ANA", truth, source="button", dedupe_key=f"k{n}"
            )
        yield running


async def test_slow_accuracy_is_acknowledged_at_once_and_answered_by_the_response_url(
    model_bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    bot = model_bot
    held = Held(monkeypatch, bot.store, "live_accuracy")
    told = len(bot.fake.responses)
    try:
        status, body, elapsed = await command(bot, "accuracy", "U0ANA")
        assert status == 200
        assert body["text"] == WORKING
        assert elapsed < SLACK_WAITS
        assert held.entered.is_set() and bot.fake.responses[told:] == []
    finally:
        held.release()
    [answer] = await answered_later(bot, told)
    assert answer["response_type"] == "ephemeral"
    text = answer["text"]
    assert text.startswith("*Model v1*"), text
    assert "*Live accuracy on audit posts* (random picks, unbiased): 66.7%" in text, text
    assert "n=3)" in text and "*Asking and answering now:* v1" in text


async def test_slow_leaderboard_is_acknowledged_at_once_and_answered_by_the_response_url(
    voting_bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    bot = voting_bot
    held = Held(monkeypatch, bot.store, "labels_by_user")
    told = len(bot.fake.responses)
    try:
        status, body, _ = await command(bot, "leaderboard", "U0ANA")
        assert (status, body.get("text")) == (200, WORKING)
    finally:
        held.release()
    [answer] = await answered_later(bot, told)
    assert answer["text"].startswith("*This week* (labels)\n🥇 ")
    assert "<@U0ANA> — 10 labels" in answer["text"]


async def test_an_ack_too_late_for_slack_is_logged_as_what_it_was(
    voting_bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    # Bolt gives up on a listener's ack at 3 s and answers 404, and the app logged that as "a
    # Slack command (/hitl) that this app does not handle": the late ack now says which
    # command it was and how late (Slack's wait made 0 s here, so that any ack is late)
    from bot.slack import commands

    bot = voting_bot
    monkeypatch.setattr(commands, "SLACK_WAITS", -1.0)
    with caplog.at_level(logging.WARNING, logger="bot.slack.commands"):
        status, body, _ = await command(bot, "help", "U0ANA")
    assert status == 200 and body["text"].startswith("*slack-hitl* asks you")
    assert "/hitl help was acknowledged after 0.0 s, past Slack's -1 s" in caplog.text
    assert "Slack had shown the person an error" in caplog.text


async def test_a_slow_merge_is_acknowledged_at_once_and_clicks_go_on_while_it_writes(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # `/hitl labels merge` relabels every item of the label (1.8 s for 67,000 items) and ran on
    # the event loop before its ack: at a million items Slack showed an error, and every click
    # in that time waited. The change is written in a worker thread now; here it is held.
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"item {n}") for n in range(4)])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await bot.dispatcher.fill()
        first, second = bot.posted()[:2]
        old, into = buttons(first)[:2]
        held = Held(monkeypatch, bot.store, "change_label_set")
        told = len(bot.fake.responses)
        try:
            status, body, elapsed = await command(bot, f"labels merge {old} {into}")
            assert (status, body["text"]) == (200, WORKING)
            assert elapsed < SLACK_WAITS
            assert held.entered.is_set() and bot.store.label_set_changes() == []
            # the loop is free while the merge waits: a click is acked and stored
            click = await bot.action(bot.button_payload(second, "U0ANA", into))
            assert click.status == 200
            assert bot.store.resolution(item_of(bot, second))["label"] == into
        finally:
            held.release()
        [answer] = await answered_later(bot, told)
        assert answer["text"].startswith("Done. Labels now: ") and f"`{old}`" not in answer["text"]
        assert answer["text"].endswith(f"Merged into `{into}`. Open questions are redrawn.")
        assert [c["action"] for c in bot.store.label_set_changes()] == ["merge"]
        await bot.settled()
        assert old not in buttons(bot.fake.message(CHANNEL, first["ts"]))


async def test_a_label_change_refused_is_said_in_the_ack(voting_bot: Bot):
    status, body, _ = await command(voting_bot, "labels rename nosuch other")
    assert status == 200
    assert body["text"].startswith('Cannot rename: "nosuch" is not in the label set'), body
    assert voting_bot.store.label_set_changes() == []


def item_of(bot: Bot, message: dict) -> str:
    """The item a question message asks about."""
    [post] = [p for p in bot.store.db["posts"].rows_where("ts = ?", [message["ts"]])]
    return post["item_id"]
