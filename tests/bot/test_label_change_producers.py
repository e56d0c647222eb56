"""What producers hear when the label set changes (outside test "lifecycle", defects 1 and 2).

After `hitl labels retire bug` an item decided ``bug`` left training and `hitl export` and
waited in `/hitl review`, while ``GET /api/items/{id}``, ``/api/predict`` and a webhook sent
after the retire still said ``"status": "resolved"`` with the label ``bug`` (the webhook's own
``model_label`` already left ``bug`` out). Now such an item is not decided for producers
either: ``needs_review`` with no human label (the model's label in force from predict), and a
webhook ``"label": null`` as after `hitl labels remove`; added back, it is resolved with the
label again, with a webhook.

`hitl labels merge bug how_to` and `rename` rewrote the decided labels with no webhook (a
`hitl labels set` on the same item sent one at once): a producer kept ``bug`` for good. Every
label-set change now queues, in its transaction and in one statement, a delivery for each item
with a callback_url whose reported label it changes.

The server is the real app on loopback (``start_api``); the changes come from Slack
(``/hitl labels``, signed) or from another connection, as `hitl labels` makes them. Deliveries
are driven by ``deliver_due`` with a frozen clock (``tests.bot.test_webhooks``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.api.webhooks import deliver_due
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import LABELS, Bot
from tests.bot.test_api import AUTH, post_json, start_api
from tests.bot.test_retired_predictions import Keywords
from tests.bot.test_store import R
from tests.bot.test_webhooks import BASE, LOOPBACK, Receiver, at, freeze, serve_receiver

THRESHOLD = 0.9  # "crash" is bug at 0.85: people decide it


def champion() -> Champion:
    return Champion(version=1, classifier=Keywords(), n_train=100)  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for hook in serve_receiver(["ok"]):
        yield hook


@pytest.fixture
async def fails_first() -> AsyncIterator[Receiver]:
    async for hook in serve_receiver(["fail", "ok"]):
        yield hook


async def served(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for api in start_api(
        fake, tmp_path, champion=champion(), threshold=THRESHOLD, **LOOPBACK
    ):
        freeze(api)
        yield api


async def predict(api: Bot, body: dict[str, Any]) -> dict[str, Any]:
    response = await post_json(api, "/api/predict", body)
    assert response.status == 200, await response.text()
    return await response.json()


async def get_item(api: Bot, item_id: str) -> dict[str, Any]:
    response = await api.http.get(f"/api/items/{item_id}", headers=AUTH)
    assert response.status == 200, await response.text()
    return await response.json()


async def decided(api: Bot, item_id: str, label: str, url: str | None = None) -> None:
    """The item sent by a producer (with ``url`` as its callback) and answered ``label``."""
    body = {"id": item_id, "text": f"app crash {item_id}"}
    if url is not None:
        body["callback_url"] = url
    await predict(api, body)
    result = api.store.record_answer(
        item_id, "U1", label, source="button", dedupe_key=f"k-{item_id}"
    )
    assert result.status == "resolved"


async def slack_labels(api: Bot, change: str) -> None:
    """``/hitl labels <change>`` from an admin in Slack."""
    response = await api.command(f"labels {change}", "U0ADMIN")
    assert response.status == 200
    text = await response.text()
    assert "Done. Labels now:" in text, text


def cli_labels(api: Bot, action: str, label: str, new: str | None = None) -> None:
    """A change of the label set made on another connection, as `hitl labels` makes it."""
    with Store.open(api.rt.settings.db) as cli:
        cli.now = api.store.now
        current = cli.stored_labels() or list(LABELS)
        cli.change_label_set(action, label, new, current=current, user_id="cli:ana")


def told(hook: Receiver, start: int = 0) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in hook.received[start:]]


async def test_a_retired_label_is_no_decision_for_producers_until_it_is_added_back(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", receiver.url)
        assert len((await deliver_due(api.rt, now=at(0), base=BASE)).delivered) == 1
        assert told(receiver)[0]["label"] == "bug"

        await slack_labels(api, "retire bug")
        shown = await get_item(api, "T-1")
        # it left export and training and waits in /hitl review: not decided
        assert (shown["status"], shown["human"]) == ("needs_review", None), shown
        assert shown["prediction"]["label"] == "billing"  # the model's label in force
        again = await predict(api, {"id": "T-1", "text": "app crash T-1"})
        assert (again["status"], again["label"], again["model_label"]) == (
            "needs_review",
            "billing",
            "billing",
        ), again
        assert "T-1" not in {row["id"] for row in api.store.iter_export()}
        # the producer told "bug" hears it was taken back, as after `hitl labels remove`
        assert len((await deliver_due(api.rt, now=at(1), base=BASE)).delivered) == 1
        assert told(receiver, 1) == [
            {"id": "T-1", "label": None, "votes": 0, "resolved_at": None,
             "model_label": "billing", "status": "posted"},
        ]  # fmt: skip

        await slack_labels(api, "add bug")
        shown = await get_item(api, "T-1")
        assert (shown["status"], shown["human"]["label"]) == ("resolved", "bug"), shown
        again = await predict(api, {"id": "T-1", "text": "app crash T-1"})
        assert (again["status"], again["label"]) == ("resolved", "bug"), again
        assert "T-1" in {row["id"] for row in api.store.iter_export()}
        # decided with it again: a new label brings a new webhook
        assert len((await deliver_due(api.rt, now=at(2), base=BASE)).delivered) == 1
        [back] = told(receiver, 2)
        assert (back["label"], back["votes"], back["status"]) == ("bug", 1, "resolved"), back
        assert (await deliver_due(api.rt, now=at(86_400), base=BASE)).attempted == 0


async def test_a_retry_sent_after_the_retire_names_no_retired_label(
    fake_slack: FakeSlack, tmp_path: Path, fails_first: Receiver
):
    # The tester's repro: the first delivery fails (HTTP 500), then `hitl labels retire bug`;
    # the retry said {"label": "bug", "status": "resolved"} beside a model_label without bug.
    # A retry sends its first attempt's bytes again (m048: one X-HITL-Delivery key, one
    # body), which may have reached the producer: the take-back the retire queued goes after
    # it, with "label": null, and the producer ends with no retired label as the item's state.
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", fails_first.url)
        assert len((await deliver_due(api.rt, now=at(0), base=BASE)).retrying) == 1
        cli_labels(api, "retire", "bug")
        retry = await deliver_due(api.rt, now=at(3_600), base=BASE)
        assert (len(retry.delivered), retry.retrying) == (1, []), retry
        after = await deliver_due(api.rt, now=at(3_601), base=BASE)
        assert (len(after.delivered), after.retrying) == (1, []), after
        assert (await deliver_due(api.rt, now=at(86_400), base=BASE)).attempted == 0
        first, again, taken_back = fails_first.received
        assert (again.body, again.headers["X-HITL-Delivery"]) == (
            first.body,
            first.headers["X-HITL-Delivery"],
        )
        assert taken_back.headers["X-HITL-Delivery"] != first.headers["X-HITL-Delivery"]
        assert json.loads(taken_back.body) == {
            "id": "T-1", "label": None, "votes": 0, "resolved_at": None,
            "model_label": "billing", "status": "posted",
        }  # fmt: skip


async def test_a_label_retired_before_its_webhook_went_sends_nothing_and_added_back_sends_it(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", receiver.url)
        cli_labels(api, "retire", "bug")
        # nothing to tell: the producer never heard "bug"
        done = await deliver_due(api.rt, now=at(0), base=BASE)
        assert (len(done.cancelled), done.attempted) == (1, 0), done
        assert receiver.received == []
        cli_labels(api, "add", "bug")
        assert len((await deliver_due(api.rt, now=at(1), base=BASE)).delivered) == 1
        assert [(b["label"], b["status"]) for b in told(receiver)] == [("bug", "resolved")]


async def test_a_merge_and_a_rename_tell_each_producer_the_new_label(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", receiver.url)
        await decided(api, "T-3", "billing", receiver.url)
        await decided(api, "T-2", "bug")  # no callback_url: nobody to tell
        assert len((await deliver_due(api.rt, now=at(0), base=BASE)).delivered) == 2
        await decided(api, "T-4", "bug", receiver.url)  # its delivery waits, not sent yet

        await slack_labels(api, "merge bug how_to")
        assert (await get_item(api, "T-1"))["human"]["label"] == "how_to"
        # one delivery each for T-1 and T-4 (the waiting one reads the item when it goes)
        assert len((await deliver_due(api.rt, now=at(1), base=BASE)).delivered) == 2
        assert sorted((b["id"], b["label"], b["status"]) for b in told(receiver, 2)) == [
            ("T-1", "how_to", "resolved"),
            ("T-4", "how_to", "resolved"),
        ]

        await slack_labels(api, "rename how_to question")
        assert len((await deliver_due(api.rt, now=at(2), base=BASE)).delivered) == 2
        assert sorted((b["id"], b["label"]) for b in told(receiver, 4)) == [
            ("T-1", "question"),
            ("T-4", "question"),
        ]
        # `hitl labels rename` from the CLI too; billing's item (T-3) was never told again
        cli_labels(api, "rename", "question", "how_to")
        assert len((await deliver_due(api.rt, now=at(3), base=BASE)).delivered) == 2
        assert {b["id"] for b in told(receiver, 2)} == {"T-1", "T-4"}
        assert (await deliver_due(api.rt, now=at(86_400), base=BASE)).attempted == 0


async def test_a_callback_sent_for_an_item_whose_label_was_retired_is_registered(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    # It waits in review, not decided: the producer's URL is taken, and hears the decision.
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug")
        await slack_labels(api, "retire bug")
        again = await predict(
            api, {"id": "T-1", "text": "app crash T-1", "callback_url": receiver.url}
        )
        assert (again["status"], again["callback"]) == ("needs_review", "registered"), again
        await slack_labels(api, "add bug")
        assert len((await deliver_due(api.rt, now=at(0), base=BASE)).delivered) == 1
        assert [(b["id"], b["label"]) for b in told(receiver)] == [("T-1", "bug")]


def label_change_statements(n: int, action: str) -> tuple[int, int]:
    """(distinct statements the change ran, deliveries it queued) on a store of ``n`` items
    decided ``bug`` with a callback, each told by a webhook already. Distinct: SQLite traces a
    statement again for each row its triggers fire on (the label counts)."""
    with Store.memory() as store:
        store.add_items([R(f"t{i}", f"text {i}", "bug") for i in range(n)], "import")
        store.add_items([R(f"o{i}", f"other {i}", "billing") for i in range(n)], "import")
        store.db.execute("UPDATE items SET callback_url = 'https://producer.example/hook'")
        store.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, status)"
            " SELECT id, callback_url, '2026-01-01', '2026-01-01', 'delivered' FROM items"
        )
        store.db.conn.commit()
        labels = list(LABELS)
        new = "how_to" if action == "merge" else None
        seen: list[str] = []
        store.db.conn.set_trace_callback(seen.append)
        store.change_label_set(action, "bug", new, current=labels, user_id="admin")
        store.db.conn.set_trace_callback(None)
        queued = store.db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'pending'"
        ).fetchone()[0]
        return len(dict.fromkeys(seen)), queued


@pytest.mark.parametrize("action", ["merge", "retire"])
def test_a_label_change_queues_its_deliveries_in_statements_that_do_not_grow_with_the_items(
    action: str,
):
    # One INSERT … SELECT in the change's transaction: at a million items a statement per
    # item would hold the write lock (and the server's event loop) for seconds.
    few, many = label_change_statements(5, action), label_change_statements(300, action)
    assert (few[1], many[1]) == (5, 300)
    assert few[0] == many[0], (few, many)
