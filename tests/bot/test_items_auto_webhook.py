"""An item sent with ``POST /api/items`` and a callback_url that the model is sure of when its
own request scores it (``auto``) was never told: the request's results say only
``created``/``duplicate`` and ``callback: registered``, no status, and its scoring wrote
``tell_new=False`` as ``/api/predict``'s does (whose answer says ``auto``). README "Webhooks":
when an item sent with a callback_url is resolved, or its wait for people ends without a
label, its producer is told; the one exception is an answer that says ``auto`` itself.

Through the real app on loopback, its receiver a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.learning.scoring import scorer_of
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, seed
from tests.bot.test_api import post_json, start_api
from tests.bot.test_predict_model_change import MARKER, HeldScoring
from tests.bot.test_webhook_final_states import deliver_all, queued_for, told
from tests.bot.test_webhook_final_states2 import LABELED, SETTINGS, retrained, told_auto_once
from tests.bot.test_webhooks import Receiver, serve_receiver

TIMEOUT = 60  # only bounds a test that would otherwise hang


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver(["ok"]):
        yield r


async def sent_items(bot: Bot, items: list[dict[str, Any]]) -> dict[str, Any]:
    response = await post_json(bot, "/api/items", {"items": items})
    answer = await response.json()
    assert response.status == 200, answer
    return answer


async def test_an_item_sent_in_a_batch_and_left_to_the_model_tells_its_producer(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """Every score is at or above HITL_THRESHOLD=0: each item the request scores is left to
    the model. The one with a callback_url is told ``auto`` once; the one without, nothing."""
    seed(tmp_path / "hitl.db", LABELED)
    async for bot in start_api(fake_slack, tmp_path, **SETTINGS):
        await retrained(bot)
        answer = await sent_items(
            bot,
            [
                {"id": "I-1", "text": "refund my invoice please", "callback_url": receiver.url},
                {"id": "I-2", "text": "the app crashes again"},
            ],
        )
        assert [(r["id"], r["result"]) for r in answer["results"]] == [
            ("I-1", "created"),
            ("I-2", "created"),
        ]
        assert answer["results"][0]["callback"] == "registered"
        assert "status" not in answer["results"][0]  # nothing in the answer says auto
        assert {bot.store.get_item(i)["status"] for i in ("I-1", "I-2")} == {"auto"}
        assert (queued_for(bot.store, "I-1"), queued_for(bot.store, "I-2")) == (1, 0)
        assert await deliver_all(bot) == 1
        told_auto_once(receiver, "I-1")
        # Sent again (a duplicate) and walked again: nothing more to tell.
        again = await sent_items(
            bot, [{"id": "I-1", "text": "refund my invoice please", "callback_url": receiver.url}]
        )
        assert again["results"][0]["result"] == "duplicate"
        await scorer_of(bot.rt).catch_up(background=True)
        assert await deliver_all(bot) == 0
        assert len(told(receiver)) == 1


class Recording(HeldScoring):
    """``HeldScoring`` that also records the texts of each model call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    async def predict(
        self, version: int, classifier: Any, texts: Sequence[str], strategy: str
    ) -> list[Any]:
        self.calls.append(list(texts))
        return await super().predict(version, classifier, texts, strategy)


class Joins:
    """``Scorer._batch_for``, counted: each request's items join a batch through it (and are
    added to it as it returns, before the request's next await); ``reached`` is set at the
    ``n``-th."""

    def __init__(self, batch_for: Any, n: int) -> None:
        self.batch_for, self.n, self.count = batch_for, n, 0
        self.reached = asyncio.Event()

    def __call__(self, *args: Any) -> Any:
        self.count += 1
        if self.count == self.n:
            self.reached.set()
        return self.batch_for(*args)


async def test_one_model_call_for_a_predict_and_a_batch_tells_only_the_batchs_item(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """Requests that come while a model call runs are scored together in the next one: an
    ``/api/predict`` (answered ``auto``: no webhook) and a ``POST /api/items`` (told by
    webhook) share that call, and each is told as its own request says."""
    seed(tmp_path / "hitl.db", LABELED)
    async for bot in start_api(fake_slack, tmp_path, **SETTINGS):
        await retrained(bot)
        scorer, held = scorer_of(bot.rt), Recording()
        scorer.worker = held  # type: ignore[assignment]
        joins = Joins(scorer._batch_for, 3)
        scorer._batch_for = joins  # type: ignore[method-assign]
        first = asyncio.create_task(
            post_json(bot, "/api/predict", {"id": "H-0", "text": f"refund {MARKER} card"})
        )
        async with asyncio.timeout(TIMEOUT):
            await held.entered.wait()  # the first call is held: the next batch fills
        predict = asyncio.create_task(
            post_json(
                bot,
                "/api/predict",
                {"id": "P-1", "text": "invoice charged twice", "callback_url": receiver.url},
            )
        )
        items = asyncio.create_task(
            sent_items(
                bot, [{"id": "I-1", "text": "card payment failed", "callback_url": receiver.url}]
            )
        )
        async with asyncio.timeout(TIMEOUT):
            await joins.reached.wait()
        assert [len(b.rows) for b in scorer.batches] == [2]  # both, in the batch that waits
        held.release.set()
        async with asyncio.timeout(TIMEOUT):
            answer = await (await predict).json()
            await items
            await first
        assert held.calls[1:] == [["invoice charged twice", "card payment failed"]]
        assert answer["status"] == "auto" and answer["callback"] == "registered"
        assert {bot.store.get_item(i)["status"] for i in ("P-1", "I-1")} == {"auto"}
        assert (queued_for(bot.store, "P-1"), queued_for(bot.store, "I-1")) == (0, 1)
        assert await deliver_all(bot) == 1
        told_auto_once(receiver, "I-1")
