"""A callback_url sent for an item the server already has: registered while the item has none
and is not resolved (its webhook then goes out once people resolve it), otherwise kept as it
was, and the answer says which (``callback``, ``callback_note``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.api.webhooks import deliver_due
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, seed
from tests.bot.test_api import post_json, start_api
from tests.bot.test_webhook_final_states import deliver_all, told
from tests.bot.test_webhook_final_states2 import LABELED, SETTINGS, retrained
from tests.bot.test_webhooks import BASE, LOOPBACK, Receiver, at, freeze, serve_receiver

OTHER_URL = "https://example.com/other-hook"
KEPT = "the item already has another callback_url, which is kept"
RESOLVED = "the item is already resolved: GET /api/items/{id} has its label"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for running in serve_receiver(["ok"]):
        yield running


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        freeze(bot)
        yield bot


async def predict(bot: Bot, body: dict) -> dict:
    response = await post_json(bot, "/api/predict", body)
    assert response.status == 200
    return await response.json()


def resolve(bot: Bot, item_id: str, key: str = "k1") -> None:
    result = bot.store.record_answer(item_id, "U1", "billing", source="button", dedupe_key=key)
    assert result.status == "resolved"


async def test_a_callback_url_sent_again_for_a_waiting_item_gets_the_webhook(
    api: Bot, receiver: Receiver
):
    first = await predict(api, {"text": "Refund me", "id": "T-1"})
    assert "callback" not in first  # none sent, nothing to say
    again = await predict(api, {"text": "Refund me", "id": "T-1", "callback_url": receiver.url})
    assert again["callback"] == "registered" and "callback_note" not in again
    assert api.store.get_item("T-1")["callback_url"] == receiver.url

    resolve(api, "T-1")
    done = await deliver_due(api.rt, now=at(0), base=BASE)
    assert len(done.delivered) == 1
    [delivered] = receiver.delivered
    assert json.loads(delivered.body)["id"] == "T-1"
    assert json.loads(delivered.body)["label"] == "billing"


async def test_a_registered_callback_url_is_kept_and_the_producer_told(
    api: Bot, receiver: Receiver
):
    body = {"text": "Refund me", "id": "T-1", "callback_url": receiver.url}
    assert (await predict(api, body))["callback"] == "registered"
    assert (await predict(api, body))["callback"] == "registered"  # the same URL again
    other = await predict(api, {**body, "callback_url": OTHER_URL})
    assert (other["callback"], other["callback_note"]) == ("not_registered", KEPT)
    assert api.store.get_item("T-1")["callback_url"] == receiver.url

    resolve(api, "T-1")
    done = await deliver_due(api.rt, now=at(0), base=BASE)
    assert len(done.delivered) == 1 and len(receiver.delivered) == 1  # to the first URL only


async def test_a_callback_url_for_a_resolved_item_is_not_registered_and_the_producer_told(
    api: Bot, receiver: Receiver
):
    await predict(api, {"text": "Refund me", "id": "T-1"})
    resolve(api, "T-1")
    late = await predict(api, {"text": "Refund me", "id": "T-1", "callback_url": receiver.url})
    assert (late["status"], late["label"]) == ("resolved", "billing")  # the answer is here
    assert (late["callback"], late["callback_note"]) == ("not_registered", RESOLVED)
    assert api.store.get_item("T-1")["callback_url"] is None
    assert api.store.deliveries() == []


async def test_api_items_registers_a_callback_url_for_a_known_item_and_says_so_per_item(
    api: Bot, receiver: Receiver
):
    await predict(api, {"text": "Refund me", "id": "known"})
    await predict(api, {"text": "Crash", "id": "decided"})
    resolve(api, "decided")
    items = [
        {"text": "Refund me", "id": "known", "callback_url": receiver.url},
        {"text": "New one", "id": "new", "callback_url": receiver.url},
        {"text": "Crash", "id": "decided", "callback_url": receiver.url},
        {"text": "New one", "id": "new", "callback_url": OTHER_URL},  # repeated in the request
        {"text": "Plain", "id": "plain"},
        {"text": "Plain", "id": "plain", "callback_url": receiver.url},  # its repeat brings one
    ]
    response = await post_json(api, "/api/items", {"items": items})
    assert response.status == 200
    results = [
        {k: v for k, v in r.items() if k != "index"} for r in (await response.json())["results"]
    ]
    assert results == [
        {"id": "known", "result": "duplicate", "callback": "registered"},
        {"id": "new", "result": "created", "callback": "registered"},
        {"id": "decided", "result": "duplicate", "callback": "not_registered",
         "callback_note": RESOLVED},
        {"id": "new", "result": "duplicate", "callback": "not_registered", "callback_note": KEPT},
        {"id": "plain", "result": "created"},
        {"id": "plain", "result": "duplicate", "callback": "registered"},
    ]  # fmt: skip
    urls = {i: api.store.get_item(i)["callback_url"] for i in ("known", "new", "decided", "plain")}
    assert urls == {"known": receiver.url, "new": receiver.url, "decided": None,
                    "plain": receiver.url}  # fmt: skip

    resolve(api, "known", "k2")
    done = await deliver_due(api.rt, now=at(0), base=BASE)
    assert len(done.delivered) == 1
    assert json.loads(receiver.delivered[0].body)["id"] == "known"


async def test_a_callback_url_registered_after_the_wait_ended_tells_how_it_ended(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """``POST /api/items`` answers no status: a callback_url it registers on an item already
    left to the model (``auto``) or set aside (``skipped``) gets the webhook saying so. It was
    answered ``registered`` and nothing ever came (README "Webhooks": an item's wait for
    people ending without a label is told)."""
    seed(tmp_path / "hitl.db", LABELED)
    async for bot in start_api(fake_slack, tmp_path, **SETTINGS):
        await retrained(bot)  # every score is sure enough (HITL_THRESHOLD=0): auto
        first = [{"id": "A-1", "text": "refund my invoice please"}, {"id": "S-1", "text": "hm"}]
        await post_json(bot, "/api/items", {"items": first})
        bot.store.remove_label("S-1", user_id="U0ADMIN")  # an admin sets it aside
        assert {i: bot.store.get_item(i)["status"] for i in ("A-1", "S-1")} == {
            "A-1": "auto",
            "S-1": "skipped",
        }
        assert await deliver_all(bot) == 0  # no callback_url yet: nothing to tell

        again = [{**item, "callback_url": receiver.url} for item in first]
        response = await post_json(bot, "/api/items", {"items": again})
        assert [r["callback"] for r in (await response.json())["results"]] == ["registered"] * 2
        assert await deliver_all(bot) == 2
        assert sorted((b["id"], b["label"], b["votes"], b["status"]) for b in told(receiver)) == [
            ("A-1", None, 0, "auto"),
            ("S-1", None, 0, "skipped"),
        ]
        assert await deliver_all(bot) == 0  # told once
