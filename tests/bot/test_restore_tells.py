"""What `hitl restore` of an older backup tells producers and Slack (outside test "dl",
findings 2, 3 and 5).

Before: a decision a producer's webhook had told after the backup was made and the restore took
back (the item open again) or changed (an Undo after the backup, the restored database decided)
was never told again: the producer went on acting on what the restored database does not say.
A question decided in the backup and reopened (Undo) after it kept its live buttons in Slack for
good, every click answered "already decided" and the message never redrawn. A second restore
in a row said its left-over Slack message was of items deleted with `hitl delete` when nobody
deleted anything.

Now the restore compares the database that was there with the backup, in SQL, and queues the
webhooks that tell the restored state (as a take-back or a relabel does) and marks the messages
drawn after the backup for a redraw; a click on a message of a decided item redraws it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import Settings
from bot.sandbox import FakeSlack
from bot.slack import blocks
from bot.store import Store
from bot.store import restore as restore_module
from tests import signing
from tests.bot.harness import (
    LABELS,
    Bot,
    Item,
    has_buttons,
    item_of,
    make_settings,
    start_bot,
)
from tests.bot.test_api import TOKEN, WEBHOOK_SECRET, post_json
from tests.bot.test_restore_erasure import imported
from tests.bot.test_webhook_final_states import deliver_all
from tests.bot.test_webhooks import LOOPBACK, Receiver, serve_receiver
from tests.fake_slack import CHANNEL

ANA, RAJ = "U0ANA", "U0RAJ"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver(["ok"]):
        yield r


def settings_for(fake: FakeSlack, tmp_path: Path) -> Settings:
    return make_settings(
        fake, tmp_path, api_token=TOKEN, webhook_secret=WEBHOOK_SECRET, max_open=3, **LOOPBACK
    )


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args])


def backup_of(db: Path) -> Path:
    """README's backup (``sqlite3 hitl.db ".backup …"``), made while the server runs."""
    backup = db.with_name("backup.db")
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(backup)) as copy,
    ):
        source.backup(copy)
    return backup


def told(receiver: Receiver) -> list[tuple[str, Any, str]]:
    """What the producer heard, in order: (item, label, status)."""
    bodies = [json.loads(r.body) for r in receiver.delivered]
    return [(body["id"], body["label"], body["status"]) for body in bodies]


async def sent(bot: Bot, item_id: str, text: str, url: str) -> None:
    body = {"text": text, "id": item_id, "callback_url": url}
    assert (await post_json(bot, "/api/predict", body)).status == 200


async def asked(bot: Bot, item_id: str) -> dict:
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = [m for m in bot.posted() if item_of(m) == item_id]
    return message


async def answered(bot: Bot, message: dict, user: str, label: str) -> None:
    assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()


async def undone(bot: Bot, fake: FakeSlack, item_id: str, label: str) -> None:
    payload = signing.block_actions_payload(
        ANA,
        "hitl.undo",
        blocks.encode_value(item_id, label),
        response_url=fake.response_url(CHANNEL),
    )
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()


async def heard(receiver: Receiver, n: int) -> None:
    """Wait (as `hitl serve` sends them, in the background) until ``n`` were delivered."""
    async with asyncio.timeout(30):
        while len(receiver.delivered) < n:
            await receiver.arrived.get()


async def test_a_label_told_after_the_backup_and_taken_back_by_the_restore_is_told_null(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "B", "the app crashes on start", receiver.url)
        await sent(bot, "K", "a refund please", receiver.url)
        question = await asked(bot, "B")
        await answered(bot, [m for m in bot.posted() if item_of(m) == "K"][0], ANA, "billing")
        assert await deliver_all(bot) == 1  # K told before the backup: the same in both
        backup = backup_of(db)
        await answered(bot, question, ANA, "bug")  # after the backup
        assert await deliver_all(bot) == 1
    assert told(receiver) == [("K", "billing", "resolved"), ("B", "bug", "resolved")]

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output

    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
        assert told(receiver)[2:] == [("B", None, "posted")]  # README: "label": null
        response = await bot.http.get("/api/items/B", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (await response.json())["status"] == "needs_review"
        # B's question is open again (in its message); once answered, the producer hears
        await answered(bot, question, RAJ, "account")
        assert await deliver_all(bot) == 1
    assert told(receiver)[3:] == [("B", "account", "resolved")]  # K never told again
    assert "Producers told: 1 webhook queued to tell the producer of 1 item" in done.output
    assert '"label": null' in done.output


async def test_a_question_reopened_after_the_backup_is_redrawn_decided_and_its_producer_told(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "A", "refund please", receiver.url)
        question = await asked(bot, "A")
        await answered(bot, question, ANA, "billing")
        assert not has_buttons(fake_slack.message(CHANNEL, question["ts"]))
        assert await deliver_all(bot) == 1
        backup = backup_of(db)  # A decided, its message without buttons
        await undone(bot, fake_slack, "A", "billing")  # reopened after it, in the same message
        assert has_buttons(fake_slack.message(CHANNEL, question["ts"]))
        assert await deliver_all(bot) == 1
    assert told(receiver) == [("A", "billing", "resolved"), ("A", None, "posted")]

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output

    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        await bot.settled()  # the start's redraws
        # decided in the restored database: no live buttons the database does not know
        message = fake_slack.message(CHANNEL, question["ts"])
        assert not has_buttons(message) and "billing" in json.dumps(message["blocks"])
        assert [m for m in bot.posted() if has_buttons(m)] == []
        await heard(receiver, 3)
    assert told(receiver)[2:] == [("A", "billing", "resolved")]
    assert "Producers told: 1 webhook queued" in done.output


async def test_nothing_is_told_or_redrawn_when_nothing_changed_after_the_backup(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "A", "refund please", receiver.url)
        await answered(bot, await asked(bot, "A"), ANA, "billing")
        assert await deliver_all(bot) == 1
        backup = backup_of(db)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Producers told" not in done.output
    with Store.open(db) as store:
        assert [d["status"] for d in store.deliveries("A")] == ["delivered"]
        assert store.posts_to_redraw() == []


async def test_a_click_on_the_live_buttons_of_a_decided_item_redraws_its_message(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A message that still shows buttons although its item is decided (as a restore of an
    older database, or a redraw Slack lost, leaves it): the click is told "already decided",
    and the message is redrawn as the database has it."""
    settings = settings_for(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "A", "refund please", "https://hooks.example.com/hitl")
        question = await asked(bot, "A")
        await answered(bot, question, ANA, "billing")
        assert not has_buttons(fake_slack.message(CHANNEL, question["ts"]))
        fake_slack._messages[CHANNEL][question["ts"]] = copy.deepcopy(question)  # a lost redraw
        updates = len(fake_slack.calls_to("chat.update"))
        assert (await bot.action(bot.button_payload(question, RAJ, "bug"))).status == 200
        await bot.settled()
        assert "already decided (labeled `billing`)" in str(
            fake_slack.calls_to("chat.postEphemeral")[-1].params.get("text")
        )
        assert bot.store.resolution("A")["label"] == "billing"  # the click counted nowhere
        assert [c.params.get("ts") for c in fake_slack.calls_to("chat.update")[updates:]] == [
            question["ts"]
        ]
        assert not has_buttons(fake_slack.message(CHANNEL, question["ts"]))


def test_a_second_restore_in_a_row_names_its_left_over_message_for_what_it_is(tmp_path: Path):
    """A question posted after the backup, of an item the backup does not hold, is left to
    delete by the first restore; the second (before any serve) carries it again, and says so
    without naming `hitl delete`, which nobody ran."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items([Item("i0", "a ticket")], "import")
    backup = backup_of(db)
    with Store.open(db) as store:
        store.add_items([Item("E", "after the backup")], "api")
        assert store.record_post("E", CHANNEL, "1700000000.000009", "uncertain", None, None, None)
    first = run(db, "restore", str(backup))
    assert first.exit_code == 0, first.output
    assert "1 left to delete (of items the backup does not hold" in first.output
    second = run(db, "restore", str(backup))
    assert second.exit_code == 0, second.output
    assert "hitl delete" not in second.output
    assert (
        "Left to delete: 1 Slack message the database that was there still had to delete (of"
        " items the backup never held), as hitl.db.before-restore.2 records; `hitl serve`"
        " deletes them."
    ) in second.output


# Review "rvrs" of the above (findings 1-5 and its notes): what the restore tells is every item
# whose newest webhook that may have reached its producer is not in the backup (matched by its
# key), one delivery row per item, written without a journal; a callback_url registered after
# the backup is kept; --undelete tells; a failure to read what changed is said.


async def got(bot: Bot, item_id: str) -> dict:
    """GET /api/items/ID as the producer reads it: (label, status)."""
    response = await bot.http.get(
        f"/api/items/{item_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    body = await response.json()
    return {"label": (body.get("human") or {}).get("label"), "status": body["status"]}


async def told_after_the_backup(fake: FakeSlack, tmp_path: Path, receiver: Receiver):
    """B asked, the backup made, then B answered bug and its producer told."""
    settings = settings_for(fake, tmp_path)
    async for bot in start_bot(fake, settings):
        await sent(bot, "B", "the app crashes on start", receiver.url)
        question = await asked(bot, "B")
        backup = backup_of(settings.db)
        await answered(bot, question, ANA, "bug")
        assert await deliver_all(bot) == 1
    assert told(receiver) == [("B", "bug", "resolved")]
    return settings, backup


async def test_a_label_retired_after_the_backup_is_told_again_once_the_restore_brings_it_back(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """The retire told the producer "label": null; the restored database has billing in force
    again (its label set is the backup's): the producer hears billing, as GET says."""
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "A", "refund please", receiver.url)
        await answered(bot, await asked(bot, "A"), ANA, "billing")
        assert await deliver_all(bot) == 1
        backup = backup_of(db)
    retired = CliRunner().invoke(
        cli,
        ["--db", str(db), "labels", "retire", "billing", "--reason", "merged"],
        env={"HITL_LABELS": ",".join(LABELS)},
    )
    assert retired.exit_code == 0, retired.output
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
    assert told(receiver) == [("A", "billing", "resolved"), ("A", None, "posted")]

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Producers told: 1 webhook queued" in done.output
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
        assert await got(bot, "A") == {"label": "billing", "status": "resolved"}
    assert told(receiver)[2:] == [("A", "billing", "resolved")]


async def test_undoing_a_restore_before_any_serve_tells_nothing_whatever_the_ids(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """E (not in the backup) and then B were told after the backup; a restore queues B's
    take-back, and undoing it before `hitl serve` sent anything tells nobody anything: the
    producer's last word, B bug, is what the database says again."""
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "B", "the app crashes on start", receiver.url)
        question = await asked(bot, "B")
        backup = backup_of(db)
        await sent(bot, "E", "refund please", receiver.url)
        await answered(bot, await asked(bot, "E"), ANA, "bug")
        assert await deliver_all(bot) == 1
        await answered(bot, question, ANA, "bug")
        assert await deliver_all(bot) == 1
    first = run(db, "restore", str(backup))
    assert first.exit_code == 0, first.output
    assert "Producers told: 1 webhook queued" in first.output
    undo = run(db, "restore", str(db.with_name("hitl.db.before-restore")))
    assert undo.exit_code == 0, undo.output
    assert "Producers told" not in undo.output
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 0
        assert await got(bot, "B") == {"label": "bug", "status": "resolved"}
    assert told(receiver) == [("E", "bug", "resolved"), ("B", "bug", "resolved")]


async def test_a_callback_url_registered_after_the_backup_is_kept_and_told(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """B was sent without a callback_url; after the backup its producer sent it again with
    one (allowed while B is undecided) and heard bug. The restore takes bug back: the producer
    hears it, and hears the next answer too."""
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        without = {"text": "it crashes", "id": "B"}  # no callback_url
        assert (await post_json(bot, "/api/predict", without)).status == 200
        question = await asked(bot, "B")
        backup = backup_of(db)
        await sent(bot, "B", "it crashes", receiver.url)  # registers its callback_url
        await answered(bot, question, ANA, "bug")
        assert await deliver_all(bot) == 1
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
        assert await got(bot, "B") == {"label": None, "status": "needs_review"}
        await answered(bot, question, RAJ, "account")
        assert await deliver_all(bot) == 1
    assert told(receiver) == [
        ("B", "bug", "resolved"),
        ("B", None, "posted"),
        ("B", "account", "resolved"),
    ]


async def test_an_item_deleted_after_the_backup_and_kept_by_undelete_is_told(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    settings, backup = await told_after_the_backup(fake_slack, tmp_path, receiver)
    db = settings.db
    deleted = run(db, "delete", "B", "--reason", "by mistake", "--yes")
    assert deleted.exit_code == 0, deleted.output
    done = run(db, "restore", "--undelete", str(backup))
    assert done.exit_code == 0, done.output
    assert (
        "Kept 1 item deleted after the backup was made (B): --undelete; 1 webhook queued to"
        " tell their producers what the restored database says"
    ) in done.output
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
        assert await got(bot, "B") == {"label": None, "status": "needs_review"}
    assert told(receiver)[1:] == [("B", None, "posted")]


async def test_a_restore_queues_one_delivery_per_item_it_tells(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """The room a restore needs: one new row per item told (not a copy of the delivery the
    database that was there made beside it), and the copy's carry-over leaves no log."""
    settings, backup = await told_after_the_backup(fake_slack, tmp_path, receiver)
    db = settings.db
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert not db.with_name("hitl.db-wal").exists()
    with Store.open(db) as store:
        [restating] = store.deliveries("B")
        assert (restating["status"], restating["attempts"]) == ("pending", 0)
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
    assert told(receiver)[1:] == [("B", None, "posted")]


async def test_what_changed_not_read_is_said_in_one_line_and_the_restore_goes_on(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
):
    settings, backup = await told_after_the_backup(fake_slack, tmp_path, receiver)
    db = settings.db

    def full(*_args: object) -> int:  # the scratch file's disk fills
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(restore_module, "_told_since", full)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert f"Restored {db} from {backup}: 1 item" in done.output
    [line] = [line for line in done.output.splitlines() if "not told" in line]
    assert line == (
        "Warning: producers were not told what the restore changed, and no Slack message drawn"
        " after the backup was made was marked for a redraw: what changed after the backup was"
        " made could not be read from the database that was there (database or disk is full);"
        f" once that is fixed, `hitl restore {db.with_name('hitl.db.before-restore')}` and then"
        f" `hitl restore {backup}` again tell them."
    )
    assert not db.with_name("hitl.db.restoring-changes").exists()


def test_a_damaged_database_that_was_there_is_named_as_the_unread_one_not_the_backup(
    tmp_path: Path,
):
    """The database that was there, its schema damaged: ATTACH of the backup beside it failed
    as "unable to open database: file:…/backup.db?mode=ro&immutable=1", sending the reader to
    the backup, which is whole. SQLite's words about the damaged one are said."""
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "A-1,a ticket\n")
    backup = backup_of(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    with db.open("r+b") as file:  # page 1 after the file's header: the schema's b-tree
        file.seek(100)
        file.write(b"\xff" * (size - 100))
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    [line] = [line for line in done.output.splitlines() if "not told" in line]
    assert (
        "what changed after the backup was made could not be read from the database that was"
        " there (database disk image is malformed);"
    ) in line


async def test_a_disk_without_room_for_the_tells_still_restores_and_says_what_it_did_not_tell(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
):
    settings, backup = await told_after_the_backup(fake_slack, tmp_path, receiver)
    db = settings.db

    def full(*_args: object) -> int:  # the copy's disk fills as the webhooks are queued
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise exc

    monkeypatch.setattr(restore_module, "_tell_producers", full)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert f"Restored {db} from {backup}: 1 item" in done.output
    assert "Producers told" not in done.output
    assert (
        "was marked for a redraw: the disk had no room for them (database or disk is full; a"
        " restore that tells needs about 1 KB free per item told besides the backup's size)"
    ) in done.output
    assert not db.with_name("hitl.db.restoring").exists()
    assert not db.with_name("hitl.db.restoring-changes").exists()
    with Store.open(db) as store:
        assert store.deliveries("B") == []  # the backup's B, nothing half written
        assert store.resolution("B") is None


# Outside review rvlt: a second restore before `hitl serve` kept the first one's restatement;
# a restatement is no attempt made (m047: ``restates``).


async def test_a_second_restore_before_any_serve_still_tells_what_the_first_took_back(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """Outside review rvlt 1: B was told bug after the backup. The restore queued its
    take-back; restoring the same backup again (--undelete, as the first run's output may
    advise) before `hitl serve` dropped it, the delivery that told bug gone with the first
    restore: the producer kept bug for good. It is queued again; undoing that second restore
    brings back the first one's, and no other."""
    settings, backup = await told_after_the_backup(fake_slack, tmp_path, receiver)
    db = settings.db
    first = run(db, "restore", str(backup))
    assert first.exit_code == 0, first.output
    assert "Producers told: 1 webhook queued" in first.output
    again = run(db, "restore", "--undelete", str(backup))
    assert again.exit_code == 0, again.output
    assert "Producers told: 1 webhook queued" in again.output
    with Store.open(db) as store:
        [restating] = store.deliveries("B")
        assert (restating["status"], restating["attempts"]) == ("pending", 0)
    undo = run(db, "restore", str(db.with_name("hitl.db.before-restore.2")))
    assert undo.exit_code == 0, undo.output
    assert "Producers told" not in undo.output  # the first restore's is back, waiting
    with Store.open(db) as store:
        assert [d["status"] for d in store.deliveries("B")] == ["pending"]
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
        assert await got(bot, "B") == {"label": None, "status": "needs_review"}
    assert told(receiver) == [("B", "bug", "resolved"), ("B", None, "posted")]


async def test_an_older_backup_restored_after_a_restore_before_any_serve_still_tells(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    """The same with an older backup restored instead: it holds neither the restatement nor
    the webhook that told bug."""
    settings = settings_for(fake_slack, tmp_path)
    db = settings.db
    async for bot in start_bot(fake_slack, settings):
        await sent(bot, "B", "the app crashes on start", receiver.url)
        older = backup_of(db).rename(db.with_name("older.db"))
        question = await asked(bot, "B")
        backup = backup_of(db)
        await answered(bot, question, ANA, "bug")
        assert await deliver_all(bot) == 1
    assert run(db, "restore", str(backup)).exit_code == 0
    done = run(db, "restore", str(older))
    assert done.exit_code == 0, done.output
    assert "Producers told: 1 webhook queued" in done.output
    async for bot in start_bot(fake_slack, settings):
        assert await deliver_all(bot) == 1
    assert told(receiver) == [("B", "bug", "resolved"), ("B", None, "posted")]


async def test_a_restores_restatement_gets_the_attempts_and_waits_of_any_webhook(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Outside review rvlt 2: the restatement was stored as one attempt made, so that its
    first send could say "label": null: that send was logged "attempt 2", waited 20 s for
    its first retry, and it got 11 sends logged as 12. Its first send is attempt 1 now, its
    retry 10 s later (README "Webhooks"), 12 sends in all, each saying "label": null."""
    from datetime import UTC, datetime

    from bot.api.webhooks import BASE_DELAY, MAX_ATTEMPTS, deliver_due

    async for down in serve_receiver(["ok", "fail"]):  # up for the first webhook only
        settings, backup = await told_after_the_backup(fake_slack, tmp_path, down)
        done = run(settings.db, "restore", str(backup))
        assert done.exit_code == 0, done.output
        caplog.set_level("INFO", logger="bot.api.webhooks")
        async for bot in start_bot(fake_slack, settings):
            now = datetime.now(UTC)
            waits = []
            for _ in range(MAX_ATTEMPTS + 2):
                if not (await deliver_due(bot.rt, now=now)).attempted:
                    break
                [row] = bot.store.deliveries("B")
                if row["status"] != "pending":
                    break
                due = datetime.fromisoformat(row["next_attempt_at"])
                waits.append((due - now).total_seconds())
                now = due
        assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
        bodies = [json.loads(r.body) for r in down.received[1:]]
        assert len(bodies) == MAX_ATTEMPTS
        assert {(b["id"], b["label"], b["status"]) for b in bodies} == {("B", None, "posted")}
        assert waits[0] == pytest.approx(BASE_DELAY, abs=1)
    lines = [r.getMessage() for r in caplog.records if "for item B" in r.getMessage()]
    assert "failed (attempt 1)" in lines[0], lines[0]
    assert f"failed {MAX_ATTEMPTS} times, giving up" in lines[-1], lines[-1]


def test_an_upgrade_keeps_a_restatement_queued_before_it_and_gives_back_its_attempt(
    tmp_path: Path,
):
    """A restatement an earlier slack-hitl queued (attempts 1, its note) is one restating a
    webhook not known after m047: attempts 0, and its payload still says "label": null."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.db.execute(
            "INSERT INTO items (id, text, source, status, created_at, updated_at, callback_url)"
            " VALUES ('B', 'it crashes', 'api', 'posted', ?, ?, 'https://example.com/h')",
            ["2026-12-01T00:00:00+00:00"] * 2,
        )
        store.db.conn.commit()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm047_delivery_restates'")
        conn.execute("ALTER TABLE deliveries DROP COLUMN restates")
        conn.execute(
            "INSERT INTO deliveries (item_id, url, attempts, next_attempt_at, status, last_error,"
            " created_at, key) VALUES ('B', 'https://example.com/h', 1, ?, 'pending', ?, ?, 'k')",
            ["2026-12-01T00:00:00+00:00", restore_module.RESTATED_BY_RESTORE]
            + ["2026-12-01T00:00:00+00:00"],
        )
    with Store.open(db) as store:
        [row] = store.deliveries("B")
        assert (row["attempts"], row["restates"], row["status"]) == (0, "", "pending")
        assert store.webhook_payload("B", sending=row["id"])["label"] is None
