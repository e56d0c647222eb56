"""Every change of what a producer was told still reaches it now that a retry sends its first
attempt's body again (m048; README "Webhooks": "what changed since is told by the item's next
webhook, after it").

Before m048 a retry read the item again as it went, so a change made while an item's webhook
waited out its backoff rode on that retry. Now the retry replays the bytes its first attempt
sent (they may have reached the producer), so each change must queue its own delivery after
it; a delivery not attempted yet still tells the item as it is when it first goes, and needs
none. Each case here: a label webhook fails once (HTTP 500), a change of the item's told state
is made, then every delivery goes, in order, until nothing is left: the retry carries its
first body under its first key, and the last body the producer took (deduping on
X-HITL-Delivery, as README says to) is the item as the API reports it. Each path already
queued its own delivery behind an attempted one (the outbox's inserts skip an item only while
one of its deliveries waits with no attempt made, ``attempts = 0``): these hold that, and
fail if a change leaves its telling to a pending retry (``d.status = 'pending'`` alone).

The server is the real app on loopback; label-set changes and `hitl labels set`/`remove` come
from another connection, as the CLI makes them (``cli_labels``), a relabel in /hitl review from
a signed view submission, a restore from `hitl restore`. Deliveries are driven by
``deliver_due`` with a frozen clock (the restore's case: rounds at set times past the real one).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.api.webhooks import DELIVERY_HEADER, deliver_due
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, start_bot
from tests.bot.test_label_change_producers import cli_labels, decided, get_item, served
from tests.bot.test_restore_tells import ANA, answered, asked, backup_of, run, sent, settings_for
from tests.bot.test_undo_flows import review_to
from tests.bot.test_webhooks import BASE, Receiver, at, serve_receiver

Change = Callable[[Bot], Awaitable[None]]


def on_another_connection(api: Bot, act: Callable[[Store], Any]) -> None:
    """A change made as the CLI makes it: its own connection, the server's frozen clock."""
    with Store.open(api.rt.settings.db) as cli:
        cli.now = api.store.now
        act(cli)


async def labels_set(api: Bot) -> None:  # `hitl labels set T-1 billing`
    on_another_connection(api, lambda s: s.set_label("T-1", "billing", user_id="cli:ana"))


async def labels_remove(api: Bot) -> None:  # `hitl labels remove T-1`
    on_another_connection(api, lambda s: s.remove_label("T-1", user_id="cli:ana"))


async def review_relabel(api: Bot) -> None:  # /hitl review T-1, decided "billing"
    await review_to(api, "T-1", "billing")


async def rename(api: Bot) -> None:
    cli_labels(api, "rename", "bug", "defect")


async def merge(api: Bot) -> None:
    cli_labels(api, "merge", "bug", "how_to")


async def retire(api: Bot) -> None:
    cli_labels(api, "retire", "bug")


async def retire_and_add_back(api: Bot) -> None:
    # the retire's take-back waits unsent: it tells the item as it is when it goes
    cli_labels(api, "retire", "bug")
    cli_labels(api, "add", "bug")


async def set_then_remove(api: Bot) -> None:
    # the second change finds the first's delivery unsent: no third one
    await labels_set(api)
    await labels_remove(api)


CHANGES: dict[str, tuple[Change, tuple[str | None, str]]] = {
    "labels set": (labels_set, ("billing", "resolved")),
    "labels remove": (labels_remove, (None, "skipped")),
    "review relabel": (review_relabel, ("billing", "resolved")),
    "rename": (rename, ("defect", "resolved")),
    "merge": (merge, ("how_to", "resolved")),
    "retire": (retire, (None, "posted")),
    "retire, add back": (retire_and_add_back, ("bug", "resolved")),
    "set, then remove": (set_then_remove, (None, "skipped")),
}


@pytest.fixture
async def fails_first() -> AsyncIterator[Receiver]:
    async for hook in serve_receiver(["fail", "ok"]):
        yield hook


async def drain(api: Bot, start: float) -> int:
    """Rounds from ``start`` on, one second apart, until nothing goes: each must be delivered
    (none retried, none given up). How many rounds sent something."""
    rounds = 0
    for n in range(20):
        done = await deliver_due(api.rt, now=at(start + n), base=BASE)
        assert not done.retrying and not done.failed, done
        if not done.attempted and not done.cancelled:
            return rounds
        rounds += 1
    raise AssertionError("deliveries kept coming")


def one_body_a_key(hook: Receiver) -> None:
    bodies: dict[str, set[bytes]] = {}
    for r in hook.received:
        bodies.setdefault(r.headers[DELIVERY_HEADER], set()).add(r.body)
    assert all(len(b) == 1 for b in bodies.values()), bodies


def last_told(hook: Receiver, item_id: str) -> tuple[Any, ...]:
    """The item's state as a producer deduping on X-HITL-Delivery ends with: the body of the
    last new key it took (label, status, votes, model_label)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in hook.delivered:
        seen.setdefault(r.headers[DELIVERY_HEADER], json.loads(r.body))
    last = [body for body in seen.values() if body["id"] == item_id][-1]
    return last["label"], last["status"], last["votes"], last["model_label"]


async def as_the_api_says(api: Bot, item_id: str) -> tuple[str | None, str]:
    shown = await get_item(api, item_id)
    label = (shown.get("human") or {}).get("label")
    status = {"resolved": "resolved", "skipped": "skipped"}.get(shown["status"], "posted")
    return label, status


@pytest.mark.parametrize("name", list(CHANGES))
async def test_a_change_made_while_a_label_webhook_backs_off_is_told_after_its_retry(
    fake_slack: FakeSlack, tmp_path: Path, fails_first: Receiver, name: str
):
    change, (label, status) = CHANGES[name]
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", fails_first.url)
        assert len((await deliver_due(api.rt, now=at(0), base=BASE)).retrying) == 1
        await change(api)
        await drain(api, 3_600)
        first, retry, *after = fails_first.received
        # the retry is the first attempt again, byte for byte, under its key
        assert (retry.headers[DELIVERY_HEADER], retry.body) == (
            first.headers[DELIVERY_HEADER],
            first.body,
        )
        assert json.loads(first.body)["label"] == "bug"
        # the change went after it, once, under a new key
        assert len(after) == 1, [json.loads(r.body) for r in after]
        one_body_a_key(fails_first)
        told = last_told(fails_first, "T-1")
        assert told[:2] == (label, status) == await as_the_api_says(api, "T-1"), told
        assert label is not None or told[2] == 0, told
        assert told[3] != "bug" or name != "retire", told  # a retired label is never named


@pytest.fixture
async def ok_fail_ok() -> AsyncIterator[Receiver]:
    async for hook in serve_receiver(["ok", "fail", "ok"]):
        yield hook


async def test_a_retired_label_added_back_while_its_take_back_backs_off_is_told_after_it(
    fake_slack: FakeSlack, tmp_path: Path, ok_fail_ok: Receiver
):
    """The label told, retired (its take-back's first attempt fails: "label": null fixed for
    its retries), added back: the take-back's retry says null again, then the label goes."""
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", ok_fail_ok.url)
        assert len((await deliver_due(api.rt, now=at(0), base=BASE)).delivered) == 1
        cli_labels(api, "retire", "bug")
        assert len((await deliver_due(api.rt, now=at(1), base=BASE)).retrying) == 1
        cli_labels(api, "add", "bug")
        await drain(api, 3_600)
        said = [
            (json.loads(r.body)["label"], r.headers[DELIVERY_HEADER]) for r in ok_fail_ok.received
        ]
        assert [label for label, _ in said] == ["bug", None, None, "bug"], said
        assert said[1][1] == said[2][1] != said[3][1]
        one_body_a_key(ok_fail_ok)
        assert last_told(ok_fail_ok, "T-1")[:3] == ("bug", "resolved", 1)
        assert await as_the_api_says(api, "T-1") == ("bug", "resolved")


async def test_a_change_before_the_first_attempt_queues_nothing_more_and_a_take_back_sends_nothing(
    fake_slack: FakeSlack, tmp_path: Path, fails_first: Receiver
):
    """A delivery not attempted yet has no body: it tells the item as it is when it first
    goes, so a rename before then queues nothing (one delivery, the new name); a label taken
    back before its webhook went sends nothing (the delivery is cancelled)."""
    async for api in served(fake_slack, tmp_path):
        await decided(api, "T-1", "bug", fails_first.url)
        cli_labels(api, "rename", "bug", "defect")
        await decided(api, "T-2", "billing", fails_first.url)
        cli_labels(api, "retire", "billing")
        assert [len(api.store.deliveries(i)) for i in ("T-1", "T-2")] == [1, 1]
        done = await deliver_due(api.rt, now=at(0), base=BASE)
        assert (done.attempted, len(done.cancelled)) == (1, 1), done
        await drain(api, 3_600)
        assert [json.loads(r.body)["id"] for r in fails_first.received] == ["T-1", "T-1"]
        assert last_told(fails_first, "T-1")[:2] == ("defect", "resolved")
        assert [d["status"] for d in api.store.deliveries("T-2")] == ["cancelled"]


async def test_a_backup_made_while_a_label_webhook_backed_off_is_restored_and_told_after_it(
    fake_slack: FakeSlack, tmp_path: Path, fails_first: Receiver
):
    """The backup holds the label's delivery attempted once (its body kept: "bug"); after it
    the retry went and `hitl labels set B billing` was told. The restored delivery's retry
    sends "bug" again under the key the producer already took (it dedupes it away), so the
    restore's own restatement, after it under a new key, is what tells the restored label."""
    settings = settings_for(fake_slack, tmp_path)

    async def rounds(bot: Bot, start: timedelta) -> None:
        for n in range(20):
            done = await deliver_due(bot.rt, now=now + start + timedelta(seconds=n))
            assert not done.retrying and not done.failed, done
            if not done.attempted and not done.cancelled:
                return
        raise AssertionError("deliveries kept coming")

    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "B", "the app crashes on start", fails_first.url)
        await answered(bot, await asked(bot, "B"), ANA, "bug")
        now = datetime.now(UTC)  # the label's webhook is due
        assert len((await deliver_due(bot.rt, now=now)).retrying) == 1
        backup = backup_of(settings.db)
        await rounds(bot, timedelta(hours=1))
        relabel = run(settings.db, "labels", "set", "B", "billing")
        assert relabel.exit_code == 0, relabel.output
        await rounds(bot, timedelta(hours=2))
    assert [json.loads(r.body)["label"] for r in fails_first.received] == ["bug", "bug", "billing"]

    done = run(settings.db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    async for bot in start_bot(fake_slack, settings):
        await rounds(bot, timedelta(hours=3))
        first, _, _, again, restated = fails_first.received
        assert (again.headers[DELIVERY_HEADER], again.body) == (
            first.headers[DELIVERY_HEADER],
            first.body,
        )
        assert json.loads(restated.body)["label"] == "bug"
        one_body_a_key(fails_first)
        assert last_told(fails_first, "B")[:2] == ("bug", "resolved")
        assert await as_the_api_says(bot, "B") == ("bug", "resolved")
