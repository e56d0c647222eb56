"""A producer that gave a callback_url hears when its item's wait for people ends without a
label: set aside by people's Skips (status ``skipped``) or left to the model (status ``auto``:
the threshold pass at start, a new score). It was told "needs_review" and "callback":
"registered", and no webhook ever came (outside test, finding 4). One webhook a transition,
none for an item without a callback_url, queued in statements that do not grow with the items.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.api.webhooks import deliver_due
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, item_of, margin_scored, seed_champion
from tests.bot.test_api import post_json, start_api
from tests.bot.test_webhooks import LOOPBACK, Receiver, serve_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver(["ok"]):
        yield r


def told(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received]


async def sent(bot: Bot, item_id: str, url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": f"a refund and an error {item_id}", "id": item_id}
    if url is not None:
        body["callback_url"] = url
    response = await post_json(bot, "/api/predict", body)
    assert response.status == 200
    return await response.json()


async def deliver_all(bot: Bot) -> int:
    """Send what is due, a round at a time, until nothing is: how many were delivered."""
    delivered = 0
    for _ in range(100):
        done = await deliver_due(bot.rt)
        assert not done.retrying and not done.failed, done
        delivered += len(done.delivered)
        if not done.attempted and not done.cancelled:
            return delivered
    raise AssertionError("deliveries kept coming")


def queued_for(store: Store, item_id: str) -> int:
    return len(store.deliveries(item_id))


async def test_an_item_set_aside_by_skips_tells_its_producer(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, max_open=2, skips_to_discard=2, **LOOPBACK):
        answer = await sent(bot, "S-1", receiver.url)
        assert (answer["status"], answer["callback"]) == ("needs_review", "registered")
        await sent(bot, "S-2", None)  # no callback_url: nothing to tell
        for _ in range(2):  # one question a fill while there is no model
            await bot.dispatcher.fill()
        asked = {item_of(m): m for m in bot.posted()}
        assert set(asked) == {"S-1", "S-2"}
        for item in ("S-1", "S-2"):
            for user in ("U0ANA", "U0RAJ"):
                response = await bot.action(bot.button_payload(asked[item], user, None))
                assert response.status == 200
            assert bot.store.get_item(item)["status"] == "skipped"
        # a third skip comes late: history, no second webhook
        assert (await bot.action(bot.button_payload(asked["S-1"], "U0MEI", None))).status == 200
        assert (queued_for(bot.store, "S-1"), queued_for(bot.store, "S-2")) == (1, 0)
        assert await deliver_all(bot) == 1
        assert told(receiver) == [
            {
                "id": "S-1",
                "label": None,
                "votes": 0,
                "resolved_at": None,
                "model_label": None,
                "status": "skipped",
            }
        ]
        assert await deliver_all(bot) == 0


TRAINING = (
    ["an invoice to pay", "a refund", "the app crashes", "an error"],
    ["billing", "billing", "bug", "bug"],
)


def count_inserts(store: Store) -> list[str]:
    """The INSERTs into deliveries the store's connection runs from now on."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(
        lambda sql: seen.append(sql) if sql.lstrip().startswith("INSERT INTO deliveries") else None
    )
    return seen


async def test_items_left_to_the_model_by_the_threshold_pass_at_start_tell_their_producers(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    seed_champion(tmp_path / "hitl.db", *TRAINING)
    settings: dict[str, Any] = {"labels": ("billing", "bug"), "audit_rate": 0.0, **LOOPBACK}
    async for bot in start_api(fake_slack, tmp_path, threshold=0.999, **settings):
        for n in range(30):
            answer = await sent(bot, f"A-{n}", receiver.url if n % 3 else None)
            assert answer["status"] == "needs_review"  # scored, below the threshold: queued
        assert bot.store.deliveries() == []
    async for bot in start_api(fake_slack, tmp_path, threshold=0.0, **settings):
        inserts = count_inserts(bot.store)
        await bot.rt.scorer.catch_up(background=True)  # the server's run at start: the pass
        bot.store.db.conn.set_trace_callback(None)
        assert {bot.store.get_item(f"A-{n}")["status"] for n in range(30)} == {"auto"}
        with_callback = sorted(f"A-{n}" for n in range(30) if n % 3)
        assert sorted(d["item_id"] for d in bot.store.deliveries()) == with_callback
        assert len(inserts) == 1  # one statement for the pass's step, not one an item
        await bot.rt.scorer.catch_up(background=True)  # again: no transition, nothing queued
        assert len(bot.store.deliveries()) == len(with_callback)
        assert await deliver_all(bot) == len(with_callback)
        bodies = {body["id"]: body for body in told(receiver)}
        assert sorted(bodies) == with_callback
        for body in bodies.values():
            assert (body["label"], body["votes"], body["resolved_at"], body["status"]) == (
                None,
                0,
                None,
                "auto",
            )
            assert body["model_label"] in ("billing", "bug")  # the model's label, told


def score(store: Store, confidence: float, version: int) -> None:
    """R-1 and R-2 scored by model ``version``, sure of billing at ``confidence``."""
    rows = [
        (item, version, "billing", confidence, [["billing", confidence], ["bug", 0.01]])
        for item in ("R-1", "R-2")
    ]
    store.set_predictions(margin_scored(rows), threshold=0.9, strategy="margin")


async def test_an_item_a_new_score_leaves_to_the_model_tells_its_producer_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        for item in ("R-1", "R-2"):
            await sent(bot, item, receiver.url)
        store = bot.store
        score(store, 0.5, 1)  # waits for people
        assert {store.get_item(i)["status"] for i in ("R-1", "R-2")} == {"queued"}
        assert store.deliveries() == []
        inserts = count_inserts(store)
        score(store, 0.95, 2)  # a new model is sure: left to it
        store.db.conn.set_trace_callback(None)
        assert {store.get_item(i)["status"] for i in ("R-1", "R-2")} == {"auto"}
        assert len(inserts) == 1
        score(store, 0.97, 3)  # still the model's: no new transition
        assert sorted(d["item_id"] for d in store.deliveries()) == ["R-1", "R-2"]
        assert await deliver_all(bot) == 2
        assert {(b["id"], b["status"], b["model_label"]) for b in told(receiver)} == {
            ("R-1", "auto", "billing"),
            ("R-2", "auto", "billing"),
        }


async def test_an_item_its_own_request_scored_auto_is_answered_not_called_back(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    # The producer reads "auto" in the answer: no webhook repeats it (one an item would
    # double the webhooks of every confident item).
    seed_champion(tmp_path / "hitl.db", *TRAINING)
    async for bot in start_api(
        fake_slack, tmp_path, labels=("billing", "bug"), threshold=0.0, **LOOPBACK
    ):
        assert (await sent(bot, "N-1", receiver.url))["status"] == "auto"
        assert bot.store.deliveries() == []
