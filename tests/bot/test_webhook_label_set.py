"""Webhooks for the last ways an item's wait for people ended without its producer hearing it
(the gaps cf9c344, 6fa6671 and 1f0032c left):

1. The pass that takes labels never in HITL_LABELS out of the stored predictions
   (``Store.restate_outside``, at a start after HITL_LABELS narrowed the set) gives an item the
   best label in force with its own probability; a queued item whose label in force is at or
   above HITL_THRESHOLD is left to the model (``auto``), and its producer heard nothing.
2. `hitl labels remove` of an open item with no label (a split vote) sets it aside
   (``skipped``); its producer, never told a label, heard nothing either, though README
   "Webhooks" says a label taken back that sets the item aside is told as ``skipped``.
3. The same pass moved the label of an item already left to the model (``auto``), told the
   label it left out: its producer heard nothing of the new ``model_label`` (nor, when its
   best label in force is not sure enough, that it waits for people again), unlike after
   `hitl labels rename`, `merge` or `retire` (brief "autohooks", defect 1).

One webhook a transition, none for an item without a callback_url, none when the pass runs
again; queued in a statement or two a step, not one an item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, item_of, margin_scored, seed
from tests.bot.test_api import start_api
from tests.bot.test_cli_loop import run
from tests.bot.test_webhook_final_states import count_inserts, deliver_all, sent, told
from tests.bot.test_webhooks import LOOPBACK, Receiver, serve_receiver

IN_FORCE = ("billing", "bug")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver(["ok"]):
        yield r


def scored_by_a_five_label_model(store: Store, ids: list[str]) -> None:
    """What a model of five labels, trained before HITL_LABELS named two, stored for ``ids``
    under the HITL_THRESHOLD of that time (0.9): how_to first, billing's own probability 0.45;
    below 0.9, so each waits for people (queued)."""
    rows = [
        (item, 1, "how_to", 0.5, [["how_to", 0.5], ["billing", 0.45], ["bug", 0.05]])
        for item in ids
    ]
    store.set_predictions(margin_scored(rows), threshold=0.9, strategy="margin")


async def test_an_item_the_outside_label_pass_leaves_to_the_model_tells_its_producer_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    db = tmp_path / "hitl.db"
    # a decided item of a label HITL_LABELS never had (imported before it named two)
    seed(db, [Item("H-1", "how do I find the guide", "how_to")])
    settings: dict[str, Any] = {"labels": IN_FORCE, "audit_rate": 0.0, **LOOPBACK}
    async for bot in start_api(fake_slack, tmp_path, threshold=0.9, **settings):
        for item, url in (("O-1", receiver.url), ("O-2", None), ("O-3", receiver.url)):
            answer = await sent(bot, item, url)
            assert answer["status"] == "needs_review"  # no model yet
        scored_by_a_five_label_model(bot.store, ["O-1", "O-2", "O-3"])
        for item in ("O-1", "O-2", "O-3"):
            stored = bot.store.get_item(item)
            assert (stored["predicted_label"], stored["status"]) == ("how_to", "queued")
        assert bot.store.deliveries() == []

    # The next start runs with HITL_THRESHOLD=0.4: its pass over the stored predictions
    # leaves how_to out; billing's own 0.45 is at or above 0.4, so the model decides.
    async for bot in start_api(fake_slack, tmp_path, threshold=0.4, **settings):
        # Two more, stored before the pass under 0.4, both left to the model (how_to) and not
        # told so (scored here without ``tell_new``): K-1 stays the model's under billing
        # (0.45), its model's label moved: told it, as after a rename. K-2 goes to people
        # (billing 0.2): never told ``auto``, it has nothing to take back.
        for item in ("K-1", "K-2"):
            await sent(bot, item, receiver.url)
        rows = [
            ("K-1", 1, "how_to", 0.5, [["how_to", 0.5], ["billing", 0.45], ["bug", 0.05]]),
            ("K-2", 1, "how_to", 0.7, [["how_to", 0.7], ["billing", 0.2], ["bug", 0.1]]),
        ]
        bot.store.set_predictions(margin_scored(rows), threshold=0.4, strategy="margin")
        assert {bot.store.get_item(k)["status"] for k in ("K-1", "K-2")} == {"auto"}
        inserts = count_inserts(bot.store)
        await bot.rt.scorer.catch_up(background=True)  # the server's run at start
        bot.store.db.conn.set_trace_callback(None)
        for item in ("O-1", "O-2", "O-3"):
            stored = bot.store.get_item(item)
            assert (stored["predicted_label"], stored["status"]) == ("billing", "auto"), stored
            assert {g[0] for g in stored["ranked"]} <= set(IN_FORCE)
        assert bot.store.get_item("K-1")["status"] == "auto"
        assert bot.store.get_item("K-2")["status"] == "queued"
        assert sorted(d["item_id"] for d in bot.store.deliveries()) == ["K-1", "O-1", "O-3"]
        # the step's statements: those auto now, those sent back to people; not one an item
        assert len(inserts) <= 2
        assert await deliver_all(bot) == 3
        bodies = sorted(told(receiver), key=lambda body: body["id"])
        assert bodies == [
            {
                "id": item,
                "label": None,
                "votes": 0,
                "resolved_at": None,
                "model_label": "billing",
                "status": "auto",
            }
            for item in ("K-1", "O-1", "O-3")
        ]

    # Another start runs the pass again: nothing moves, nothing more is told.
    async for bot in start_api(fake_slack, tmp_path, threshold=0.4, **settings):
        await bot.rt.scorer.catch_up(background=True)
        assert len(bot.store.deliveries()) == 3
        assert await deliver_all(bot) == 0
        assert len(receiver.received) == 3


async def test_labels_remove_of_a_split_item_tells_its_producer_skipped(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    db = tmp_path / "hitl.db"
    settings: dict[str, Any] = {"labels": IN_FORCE, "votes": 2, "max_open": 2, **LOOPBACK}
    async for bot in start_api(fake_slack, tmp_path, **settings):
        await sent(bot, "P-1", receiver.url)
        await sent(bot, "P-2", None)
        for _ in range(2):
            await bot.dispatcher.fill()
        asked = {item_of(m): m for m in bot.posted()}
        assert set(asked) == {"P-1", "P-2"}
        for item in ("P-1", "P-2"):
            for user, label in (("U0ANA", "billing"), ("U0RAJ", "bug")):
                response = await bot.action(bot.button_payload(asked[item], user, label))
                assert response.status == 200
            assert bot.store.resolution(item) is None  # a split: no label, in review
            assert [r["reason"] for r in bot.store.reviews_of(item)] == ["split"]
        await bot.settled()
        assert bot.store.deliveries() == []  # no label: nothing told yet
        removed = await asyncio.to_thread(run, db, "labels", "remove", "P-1", "P-2")
        assert removed.exit_code == 0, removed.output
        assert "P-1: (no label) removed; the item is set aside" in removed.stdout
        for item in ("P-1", "P-2"):
            assert bot.store.get_item(item)["status"] == "skipped"
        assert [d["item_id"] for d in bot.store.deliveries()] == ["P-1"]
        assert await deliver_all(bot) == 1
        assert told(receiver) == [
            {
                "id": "P-1",
                "label": None,
                "votes": 0,
                "resolved_at": None,
                "model_label": None,
                "status": "skipped",
            }
        ]
        assert await deliver_all(bot) == 0


async def test_an_auto_item_whose_model_label_a_narrower_set_at_start_moves_is_told_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """An item left to the model and told so with a label the next start's HITL_LABELS leaves
    out: the start's pass puts its prediction under the set (the best label in force), and its
    producer hears the label as it is now, once, as after `hitl labels rename` or `merge`:
    A-1 stays the model's under billing (told ``auto``, ``model_label`` billing); A-2's best
    label in force is not sure enough, so it waits for people again (told ``posted``,
    ``label`` null, as a label taken back)."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("H-1", "how do I find the guide", "how_to")])  # a label HITL_LABELS drops
    five = ("how_to", "billing", "bug")
    async for bot in start_api(fake_slack, tmp_path, threshold=0.4, labels=five, **LOOPBACK):
        for item in ("A-1", "A-2"):
            await sent(bot, item, receiver.url)
        rows = [
            ("A-1", 1, "how_to", 0.5, [["how_to", 0.5], ["billing", 0.45], ["bug", 0.05]]),
            ("A-2", 1, "how_to", 0.7, [["how_to", 0.7], ["billing", 0.2], ["bug", 0.1]]),
        ]
        # scored as the server's scorer scores an item its request did not: told auto
        bot.store.set_predictions(margin_scored(rows), 0.4, "margin", tell_new=True)
        assert await deliver_all(bot) == 2
        assert {(b["id"], b["status"], b["model_label"]) for b in told(receiver)} == {
            ("A-1", "auto", "how_to"),
            ("A-2", "auto", "how_to"),
        }

    settings: dict[str, Any] = {"labels": IN_FORCE, "audit_rate": 0.0, **LOOPBACK}
    for _ in range(2):  # the next start puts the predictions under billing and bug; one after
        async for bot in start_api(fake_slack, tmp_path, threshold=0.4, **settings):
            await bot.rt.scorer.catch_up(background=True)  # the server's run at start
            assert bot.store.get_item("A-1")["status"] == "auto"
            assert bot.store.get_item("A-2")["status"] == "queued"
            await deliver_all(bot)
    news = sorted(told(receiver)[2:], key=lambda body: body["id"])
    assert news == [
        {
            "id": "A-1",
            "label": None,
            "votes": 0,
            "resolved_at": None,
            "model_label": "billing",
            "status": "auto",
        },
        {
            "id": "A-2",
            "label": None,
            "votes": 0,
            "resolved_at": None,
            "model_label": "billing",
            "status": "posted",
        },
    ]
