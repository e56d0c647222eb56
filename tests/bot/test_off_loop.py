"""What grows with the data runs off the event loop, and `/hitl retrain` is acknowledged within
Slack's 3 s however many labels it reads: `/hitl retrain`, `/hitl stats`, App Home and
`POST /api/items`, through the real endpoints. The loop's connection is traced by SQLite itself;
the schema checks of the API's items are noted by the thread they run on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.api import routes
from bot.learning.jobs import Trainer, run_retrain
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_api import post_json, start_api
from tests.bot.test_learning import UNLABELED, labeled_items, retrain_told
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), max_open=2)
    async for running in start_bot(fake_slack, settings):
        yield running


def counts_of_a_period(statements: list[str]) -> list[str]:
    """The statements that count the answers of a day or a week (``answers_by_user``,
    ``answers_since``, ``answers_of`` since a time: they grow with the period's answers) and
    one person's gold answers (``gold_votes_of``: it looks among every counted answer)."""
    return [
        sql
        for sql in statements
        if ("FROM answers" in sql and "created_at >=" in sql) or "JOIN gold g ON" in sql
    ]


# -- /hitl retrain --------------------------------------------------------------------------


async def test_retrain_is_acknowledged_before_its_labels_are_read(bot: Bot):
    # At 16,000 labels the read took 82 s before the ack: Slack showed the admin an error after
    # 3 s. Here another connection holds the database's write lock, so the retrain cannot
    # even take its lock until the test lets it: the answer must come without it.
    told = len(bot.fake.responses)
    others = set(bot.rt.background.tasks)
    writer = sqlite3.connect(bot.rt.settings.db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        response = await bot.command(
            "retrain", "U0ADMIN", response_url=bot.fake.response_url(CHANNEL)
        )
        assert response.status == 200
        assert await response.text() == (
            f"Retraining: checking for new labels; I'll post the result in <#{CHANNEL}> when it"
            " is done."
        )
        assert bot.store.runs("retrain") == []  # not begun: the labels are not read yet
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    async with asyncio.timeout(30):
        await asyncio.gather(*(bot.rt.background.tasks - others))
    assert bot.fake.responses[told:] == []  # it began: its report goes to the channel
    outcome = await Trainer.of(bot.rt).task
    assert (outcome.status, outcome.n_labels) == ("promoted", 12)


async def test_retrain_tells_nothing_new_by_the_response_url_and_force_still_trains(bot: Bot):
    await run_retrain(bot.rt, "cli")
    ack, told = await retrain_told(bot)
    assert ack.startswith("Retraining: checking for new labels;")
    assert told == [
        "*Retrain (<@U0ADMIN>):* nothing new: no labels since the last run (12 labels);"
        " training skipped. `/hitl retrain --force` trains and promotes one anyway."
    ]
    assert bot.fake.responses[-1]["payload"]["response_type"] == "ephemeral"
    ack, told = await retrain_told(bot, "retrain --force")
    assert ack == (
        "Retraining (forced: it trains even with nothing new and is promoted even if not"
        " better): checking for new labels;"
        f" I'll post the result in <#{CHANNEL}> when it is done."
    )
    assert told == []
    forced = await Trainer.of(bot.rt).task
    assert (forced.status, forced.version) == ("promoted", 2)  # trained though nothing is new


# -- /hitl stats and App Home -----------------------------------------------------------------


async def answer_two(bot: Bot) -> None:
    assert await bot.dispatcher.fill() == 2
    first, second = bot.posted()
    await bot.action(bot.button_payload(first, "U0ANA", "bug"))
    await bot.action(bot.button_payload(second, "U0RAJ", "billing"))
    await bot.settled()


async def test_stats_counts_the_periods_answers_off_the_event_loops_connection(bot: Bot):
    await answer_two(bot)
    on_the_loop: list[str] = []
    bot.store.db.conn.set_trace_callback(on_the_loop.append)
    try:
        response = await bot.command("stats", "U0ADMIN")
        assert response.status == 200
        text = json.loads(await response.text())["text"]
        bot.store.db.execute("SELECT 1").fetchone()  # the trace works on this connection
    finally:
        bot.store.db.conn.set_trace_callback(None)
    assert "*Answers today:* 2 (2 labels): <@U0ANA> 1 label, <@U0RAJ> 1 label" in text
    assert "*Answers this week:* 2 (2 labels): <@U0ANA> 1 label, <@U0RAJ> 1 label" in text
    assert on_the_loop
    assert counts_of_a_period(on_the_loop) == []


async def test_app_home_is_read_off_the_event_loops_connection(bot: Bot):
    await answer_two(bot)
    on_the_loop: list[str] = []
    bot.store.db.conn.set_trace_callback(on_the_loop.append)
    try:
        assert (await bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
        await bot.rt.background.drain()
        bot.store.db.execute("SELECT 1").fetchone()  # the trace works on this connection
    finally:
        bot.store.db.conn.set_trace_callback(None)
    home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
    assert "This week you labeled *1 item*; *1 item* of all time" in home
    assert "<@U0ANA> — 1 label" in home and "<@U0RAJ> — 1 label" in home
    assert on_the_loop
    assert counts_of_a_period(on_the_loop) == []


# -- POST /api/items --------------------------------------------------------------------------


async def test_items_are_checked_off_the_event_loop(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # jsonschema's check of 1,000 items took 0.1-0.3 s of event loop per request.
    threads: list[int] = []
    iter_errors = routes.Validator.iter_errors

    def noting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        threads.append(threading.get_ident())
        return iter_errors(self, *args, **kwargs)

    monkeypatch.setattr(routes.Validator, "iter_errors", noting)
    batch = [{"text": f"item number {n}", "id": f"n{n}"} for n in range(50)]
    async for api in start_api(fake_slack, tmp_path):
        response = await post_json(api, "/api/items", {"items": [*batch, {"text": ""}]})
        assert response.status == 200
        body = await response.json()
    assert (body["created"], body["rejected"]) == (50, 1)
    assert body["results"][50] == {
        "index": 50,
        "id": None,
        "result": "rejected",
        "error": "items[50].text is empty",
        "field": "items[50].text",
    }
    assert len(threads) > 51  # the body's shape, then each item (jsonschema descends too)
    assert threading.get_ident() not in threads
