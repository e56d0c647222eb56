"""The two ways an item's wait for people ended without a webhook after cf9c344:

- an item a producer sent while there was no model (it was told "needs_review", its callback
  "registered") is scored later by a walk (a retrain's re-scoring of the queue, in the server
  or in `hitl retrain`'s own process), and the model is sure of it: it became ``auto`` and its
  producer was never told, as ``set_predictions`` told only items that had been ``queued``;
- an item Slack refuses to show, set aside by the dispatcher (``Store.set_aside``, status
  ``skipped``), told nothing either.

Each is told once, with a webhook, and only to a producer that gave a callback_url. A
request's own scoring still tells nothing: its answer says "auto".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.learning.jobs import Trainer, follow_champion
from bot.learning.scoring import scorer_of
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.slack.dispatch import MAX_ITEM_FAILURES
from tests.bot.harness import Bot, Item, seed
from tests.bot.test_api import post_json, start_api
from tests.bot.test_predict_model_change import MARKER, HeldScoring
from tests.bot.test_webhook_final_states import deliver_all, queued_for, sent, told
from tests.bot.test_webhooks import LOOPBACK, Receiver, serve_receiver

BILLING = ("refund my invoice", "charged twice on my card", "card payment failed")
BUG = ("app crashes on start", "error 500 when saving", "page shows an error")
LABELED = [Item(f"b{n}", text, "billing") for n, text in enumerate(BILLING)] + [
    Item(f"g{n}", text, "bug") for n, text in enumerate(BUG)
]
# Every score is at or above HITL_THRESHOLD=0: an item the model scores is left to it.
SETTINGS: dict[str, Any] = {"labels": ("billing", "bug"), "threshold": 0.0, **LOOPBACK}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver(["ok"]):
        yield r


async def sent_without_a_model(bot: Bot, receiver: Receiver) -> None:
    """P-1 with a callback_url, P-2 without, both sent while the server has no model."""
    assert bot.rt.model is None
    answer = await sent(bot, "P-1", receiver.url)
    assert (answer["status"], answer["model_version"], answer["callback"]) == (
        "needs_review",
        None,
        "registered",
    )
    assert (await sent(bot, "P-2", None))["status"] == "needs_review"
    assert {bot.store.get_item(i)["status"] for i in ("P-1", "P-2")} == {"new"}
    assert bot.store.deliveries() == []


def told_auto_once(receiver: Receiver, item_id: str) -> None:
    [body] = told(receiver)
    assert (body["id"], body["label"], body["votes"], body["resolved_at"], body["status"]) == (
        item_id,
        None,
        0,
        None,
        "auto",
    )
    assert body["model_label"] in ("billing", "bug")  # the model's label, told


async def retrained(bot: Bot) -> None:
    """An admin's /hitl retrain: the first model, then the server's walk over the queue."""
    assert (await bot.command("retrain", "U0ADMIN")).status == 200
    await bot.rt.background.drain(60)  # the command's work after its ack: the retrain begun
    task = Trainer.of(bot.rt).task
    assert task is not None
    outcome = await task
    assert outcome.promoted and bot.rt.model is not None


async def test_an_item_sent_without_a_model_and_left_to_the_first_one_tells_its_producer(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    seed(tmp_path / "hitl.db", LABELED)
    async for bot in start_api(fake_slack, tmp_path, **SETTINGS):
        await sent_without_a_model(bot, receiver)
        await retrained(bot)
        assert {bot.store.get_item(i)["status"] for i in ("P-1", "P-2")} == {"auto"}
        assert (queued_for(bot.store, "P-1"), queued_for(bot.store, "P-2")) == (1, 0)
        await bot.rt.scorer.catch_up(background=True)  # a walk again: nothing new to tell
        # An item a request scores itself is answered "auto": no webhook repeats it.
        assert (await sent(bot, "P-3", receiver.url))["status"] == "auto"
        assert [d["item_id"] for d in bot.store.deliveries()] == ["P-1"]
        assert await deliver_all(bot) == 1
        told_auto_once(receiver, "P-1")
        assert await deliver_all(bot) == 0


async def test_an_item_the_cli_retrain_leaves_to_the_model_tells_its_producer(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """`hitl retrain` from the terminal scores the waiting items in its own process; its
    deliveries are the server's to send. The champion watch then loads the model, which
    has nothing more to score, and tells nothing more."""
    db = tmp_path / "hitl.db"
    seed(db, LABELED)
    async for bot in start_api(fake_slack, tmp_path, **SETTINGS):
        await sent_without_a_model(bot, receiver)
        env = {"HITL_LABELS": "billing,bug", "HITL_THRESHOLD": "0"}
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["--db", str(db), "retrain"], env=env, prog_name="hitl"
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("Retrain v1: promoted"), result.stdout
        assert {bot.store.get_item(i)["status"] for i in ("P-1", "P-2")} == {"auto"}
        assert await follow_champion(bot.rt)  # the champion watch's check
        assert bot.rt.model is not None and bot.rt.model.version == 1
        assert [d["item_id"] for d in bot.store.deliveries()] == ["P-1"]
        assert await deliver_all(bot) == 1
        told_auto_once(receiver, "P-1")


async def test_a_request_whose_item_a_walk_scores_meanwhile_is_answered_and_told_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """The race README "Webhooks" names: a request's item scored by a model a refresh
    replaces meanwhile; the new model's walk reaches the item (never scored: ``new``) before
    the request scores it again, and the request takes the walk's prediction (or waits for
    it: an item is scored once). The walk's write tells the producer (one webhook, ``auto``)
    and the answer says ``auto`` too: told twice, once each way, never two webhooks."""
    seed(tmp_path / "hitl.db", LABELED)
    async for bot in start_api(fake_slack, tmp_path, **SETTINGS):
        await retrained(bot)
        scorer, held = scorer_of(bot.rt), HeldScoring()
        scorer.worker = scorer.walk_worker = held  # type: ignore[assignment]
        body = {"id": "R-1", "text": f"refund {MARKER} card", "callback_url": receiver.url}
        request = asyncio.create_task(post_json(bot, "/api/predict", body))
        async with asyncio.timeout(60):
            await held.entered.wait()  # v1 has scored it; its predictions are held
        assert bot.store.get_item("R-1")["status"] == "new"
        # a refresh is adopted, and its walk scores what the new model has not
        bot.rt.working = Champion(version=-100, classifier=bot.rt.model.classifier)
        assert await scorer.catch_up(background=True) == 1
        assert bot.store.get_item("R-1")["status"] == "auto"
        held.release.set()
        async with asyncio.timeout(60):
            response = await request
        answer = await response.json()
        assert (answer["status"], answer["model_version"]) == ("auto", -100), answer
        assert held.versions == [1, -100]  # the request's call, then the walk's: not a third
        assert [d["item_id"] for d in bot.store.deliveries()] == ["R-1"]
        assert await deliver_all(bot) == 1
        told_auto_once(receiver, "R-1")


async def refused_for_good(bot: Bot, item_id: str) -> None:
    """Slack refuses the item's message (invalid_blocks) until the dispatcher sets it aside."""
    bot.fake.fail("chat.postMessage", "invalid_blocks", times=MAX_ITEM_FAILURES)
    for _ in range(MAX_ITEM_FAILURES):
        assert await bot.dispatcher.fill() == 0
    assert bot.store.get_item(item_id)["status"] == "skipped"


async def test_an_item_slack_will_not_show_tells_its_producer_it_was_set_aside(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, max_open=1, **LOOPBACK):
        answer = await sent(bot, "B-1", receiver.url)
        assert (answer["status"], answer["callback"]) == ("needs_review", "registered")
        await refused_for_good(bot, "B-1")
        await sent(bot, "B-2", None)  # no callback_url: nothing to tell
        await refused_for_good(bot, "B-2")
        assert (queued_for(bot.store, "B-1"), queued_for(bot.store, "B-2")) == (1, 0)
        assert await deliver_all(bot) == 1
        assert told(receiver) == [
            {
                "id": "B-1",
                "label": None,
                "votes": 0,
                "resolved_at": None,
                "model_label": None,
                "status": "skipped",
            }
        ]
        # Set aside again (already skipped): no change, no second webhook.
        bot.store.set_aside("B-1", "Slack refused its message: invalid_blocks")
        assert queued_for(bot.store, "B-1") == 1
        assert await deliver_all(bot) == 0
