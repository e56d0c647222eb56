"""Each change of what a producer is told reaches it once, under a key of its own (outside
brief "hooks", defects 1-3).

1. `hitl restore` of a backup made while a label's webhook waited unsent: the webhook went
   after the backup (and told what the item was by then: set aside by `hitl labels remove`),
   and the restore counted the backup's unsent row, matched by its key, as what the producer
   was told. That row then went again under the same X-HITL-Delivery key with the restored
   label: a producer deduping on the key (as README says to) dropped it and stayed "skipped"
   while ``GET /api/items`` said the label.
2. An item left to the model (``auto``), its webhook told the model's label, heard nothing of
   `hitl labels rename`/`merge` of that label, while an item people decided is told the new
   name; nor, sent back to people by `hitl labels retire` of that label (its best label in
   force not sure enough), that it waits again, while a label a retire takes back is told
   (brief "autohooks", defect 2).
3. `hitl labels set` (and a decision by votes) queued a delivery beside one of the item's
   still unsent: both told the final state, under two keys.

Through the real app on loopback (``start_bot``/``start_api``), the real `hitl` CLI and a
receiver on loopback; deliveries driven by ``deliver_due`` on the runtime's clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.api.webhooks import DELIVERY_HEADER
from bot.cli import cli
from bot.sandbox import FakeSlack
from tests.bot.harness import LABELS, start_bot
from tests.bot.test_api import post_json, start_api
from tests.bot.test_label_change_producers import THRESHOLD, champion, get_item
from tests.bot.test_restore_tells import ANA, answered, asked, backup_of, run, sent, settings_for
from tests.bot.test_webhook_final_states import deliver_all
from tests.bot.test_webhook_fixed_bodies import as_the_api_says, last_told, one_body_a_key
from tests.bot.test_webhooks import LOOPBACK, Receiver, serve_receiver

# what `hitl labels` reads beside the database: the set and threshold the server runs with
CLI_ENV = {"HITL_LABELS": ",".join(LABELS), "HITL_THRESHOLD": str(THRESHOLD)}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for hook in serve_receiver(["ok"]):
        yield hook


def each_key_once(hook: Receiver) -> None:
    """Every delivery reached the producer once: no key came twice (each was answered 2xx)."""
    keys = [r.headers[DELIVERY_HEADER] for r in hook.received]
    assert len(keys) == len(set(keys)), [json.loads(r.body) for r in hook.received]


async def told_auto(api: Any, receiver: Receiver) -> None:
    """A-1 sent with a callback_url and left to the model (the champion is sure of it): its
    producer is told ``auto`` with the model's label, billing."""
    body = {"id": "A-1", "text": "refund my invoice", "callback_url": receiver.url}
    response = await post_json(api, "/api/items", {"items": [body]})
    assert response.status == 200, await response.text()
    assert await deliver_all(api) == 1
    first = json.loads(receiver.received[0].body)
    assert (first["status"], first["label"], first["model_label"]) == ("auto", None, "billing")


def hitl(db: Path, *args: str) -> None:
    """`hitl --db DB ARGS…` as an admin runs it beside the server."""
    done = CliRunner().invoke(cli, ["--db", str(db), *args], env=CLI_ENV)
    assert done.exit_code == 0, done.output


# -- 1. a restore of a backup made while a label's webhook waited unsent ------------------------


async def backed_up_then_removed(
    fake_slack: FakeSlack, settings: Any, receiver: Receiver, *, told_first: bool = False
) -> Path:
    """B sent with a callback_url and answered bug; a backup made while that webhook waits
    unsent (returned); then B's label removed by `hitl labels remove`, its webhook gone
    (``told_first``: the label's webhook went before the removal, which sends its own)."""
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "B", "the app crashes on start", receiver.url)
        await answered(bot, await asked(bot, "B"), ANA, "bug")
        backup = backup_of(settings.db)  # B's webhook waits unsent in it
        if told_first:
            assert await deliver_all(bot) == 1
        await asyncio.to_thread(hitl, settings.db, "labels", "remove", "B")
        assert await deliver_all(bot) == 1
    return backup


@pytest.mark.parametrize(
    "then", ["removed", "told, then removed", "removed, restored twice", "removed, deleted"]
)
async def test_a_webhook_unsent_in_the_backup_that_went_after_it_is_not_counted_as_told(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver, then: str
):
    """B answered bug, its webhook queued; the backup made before it went. After it, B's
    label is removed (the waiting webhook went saying ``skipped``; with ``told, then
    removed`` it went saying bug, then the removal's own webhook said ``skipped``). The
    restored database says bug: the producer ends told bug, each delivery once. So too when
    the backup is restored twice before `hitl serve`, and when B was deleted after it and
    kept by ``--undelete`` (its deliveries gone: whether the key went out is not known)."""
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    backup = await backed_up_then_removed(
        fake_slack, settings, receiver, told_first=then == "told, then removed"
    )
    said = [(b["label"], b["status"]) for b in map(json.loads, (r.body for r in receiver.received))]
    assert said[-1] == (None, "skipped"), said

    if then == "removed, deleted":
        hitl(db, "delete", "B", "--reason", "by mistake", "--yes")
        done = run(db, "restore", "--undelete", str(backup))
    else:
        done = run(db, "restore", str(backup))
        if then == "removed, restored twice":
            assert "Producers told: 1 webhook queued" in done.output
            done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    async for bot in start_bot(fake_slack, settings):
        await deliver_all(bot)
        assert await as_the_api_says(bot, "B") == ("bug", "resolved")
    assert last_told(receiver, "B")[:2] == ("bug", "resolved")  # as the API says
    one_body_a_key(receiver)
    each_key_once(receiver)
    if then == "removed, deleted":
        assert "--undelete; 1 webhook queued to tell their producers" in done.output
    else:
        assert "Producers told: 1 webhook queued" in done.output


@pytest.mark.parametrize("when", ["after it went", "before it went"])
async def test_a_label_the_restore_restates_then_retires_is_told_taken_back_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver, when: str
):
    """As above, B's label removed after the backup; the restore makes the backup's waiting
    webhook restate bug (``restates``), the only webhook of B the restored database holds.
    Then `hitl labels retire bug`. After that webhook went (bug), the retire's take-back
    tells "label": null. Before it went, the retire queues none (one waits unsent), and that
    one tells the item as it is when it goes: "label": null, a restatement counting as a
    webhook that may have told the label (``_maybe_told``). Either way the producer ends as
    the API says, each state once under a key of its own."""
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    backup = await backed_up_then_removed(fake_slack, settings, receiver)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Producers told: 1 webhook queued" in done.output
    if when == "before it went":
        hitl(db, "labels", "retire", "bug", "--reason", "split")
    async for bot in start_bot(fake_slack, settings):
        await deliver_all(bot)
        if when == "after it went":
            await asyncio.to_thread(hitl, db, "labels", "retire", "bug", "--reason", "split")
            assert await deliver_all(bot) == 1
        assert await as_the_api_says(bot, "B") == (None, "posted")
    said = [(b["label"], b["status"]) for b in map(json.loads, (r.body for r in receiver.received))]
    restated = [("bug", "resolved")] if when == "after it went" else []
    assert said == [(None, "skipped"), *restated, (None, "posted")], said
    assert last_told(receiver, "B")[:2] == (None, "posted")
    one_body_a_key(receiver)
    each_key_once(receiver)


# -- 2. an item left to the model, its label renamed, merged or retired -------------------------


@pytest.mark.parametrize(
    ("change", "now"),
    [(("rename", "billing", "payments"), "payments"), (("merge", "billing", "account"), "account")],
)
async def test_an_auto_item_told_the_models_label_is_told_its_rename_or_merge_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver, change: tuple[str, ...], now: str
):
    async for api in start_api(
        fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD, **LOOPBACK
    ):
        await told_auto(api, receiver)

        await asyncio.to_thread(hitl, api.rt.settings.db, "labels", *change)
        shown = await get_item(api, "A-1")
        assert (shown["status"], shown["prediction"]["label"]) == ("auto", now), shown
        assert await deliver_all(api) == 1
        told = [json.loads(r.body) for r in receiver.received[1:]]
        assert [(b["status"], b["label"], b["model_label"]) for b in told] == [("auto", None, now)]
        # told once: the server's own pass over the predictions adds nothing
        await api.rt.scorer.catch_up(background=True)
        assert await deliver_all(api) == 0
    each_key_once(receiver)


async def test_an_auto_item_a_retire_sends_back_to_people_is_told_it_waits_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """`hitl labels retire` of the label an item's model guessed, its best label in force not
    sure enough: the item waits for people again, and its producer, told ``auto`` with that
    label, is told so, as a label taken back (``posted``, ``label`` null). One whose ``auto``
    webhook had not gone yet hears nothing: it goes no more (as a label taken back before its
    webhook went)."""
    async for api in start_api(
        fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD, **LOOPBACK
    ):
        await told_auto(api, receiver)
        body = {"id": "A-2", "text": "refund me", "callback_url": receiver.url}
        response = await post_json(api, "/api/items", {"items": [body]})  # told by and by
        assert response.status == 200, await response.text()

        await asyncio.to_thread(hitl, api.rt.settings.db, "labels", "retire", "billing")
        for item in ("A-1", "A-2"):  # account at 0.06: below HITL_THRESHOLD, to people
            shown = await get_item(api, item)
            assert (shown["status"], shown["prediction"]["label"]) == ("needs_review", "account")
        assert await deliver_all(api) == 1
        told = [json.loads(r.body) for r in receiver.received[1:]]
        assert told == [
            {
                "id": "A-1",
                "label": None,
                "votes": 0,
                "resolved_at": None,
                "model_label": "account",
                "status": "posted",
            }
        ]
        # told once: the server's own pass over the predictions adds nothing
        await api.rt.scorer.catch_up(background=True)
        assert await deliver_all(api) == 0
    each_key_once(receiver)


# -- 3. a change while the item's webhook waits unsent --------------------------------------------


async def test_labels_set_while_a_webhook_waits_unsent_tells_the_new_label_once(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "B", "the app crashes on start", receiver.url)
        await answered(bot, await asked(bot, "B"), ANA, "bug")  # its webhook waits unsent
        await asyncio.to_thread(hitl, db, "labels", "set", "B", "billing")
        assert await deliver_all(bot) == 1
        assert await as_the_api_says(bot, "B") == ("billing", "resolved")
    assert [
        (b["label"], b["status"]) for b in map(json.loads, (r.body for r in receiver.received))
    ] == [("billing", "resolved")]


async def test_a_person_labels_an_auto_item_whose_notice_waits_and_it_goes_as_a_label(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """The notice that A was left to the model waits unsent; `hitl labels set` gives it a
    label. One delivery tells it, claimed with people's labels (README: those go before the
    notices)."""
    async for api in start_api(
        fake_slack, tmp_path, champion=champion(), threshold=THRESHOLD, **LOOPBACK
    ):
        body = {"id": "A-1", "text": "refund my invoice", "callback_url": receiver.url}
        assert (await post_json(api, "/api/items", {"items": [body]})).status == 200
        [notice] = api.store.deliveries("A-1")
        assert (notice["notice"], notice["attempts"]) == (1, 0)
        await asyncio.to_thread(hitl, api.rt.settings.db, "labels", "set", "A-1", "bug")
        [row] = api.store.deliveries("A-1")
        assert (row["id"], row["notice"]) == (notice["id"], 0)
        assert await deliver_all(api) == 1
    told: list[dict[str, Any]] = [json.loads(r.body) for r in receiver.received]
    assert [(b["label"], b["status"]) for b in told] == [("bug", "resolved")]
