"""X-HITL-Delivery names one delivery for the life of the installation (README "Webhooks":
"the same on every retry of one delivery … dedupe on it").

It was the deliveries row's id, and ids are handed out again: the table has no AUTOINCREMENT, so
deleting an item (``DELETE /api/items/…``, `hitl delete`: its deliveries go with it) that held
the newest id gave that id to the next decision's webhook, for another item; and `hitl restore`
of an older backup numbers from the backup's highest id, so every id used since the backup was
made went out again. A producer deduping on the header, as README says, dropped those
decisions for good (an outside test: B's decision after A's deletion, C's and B's again after
a restore). Now each delivery has a random ``key`` (m046), the header's value: kept on every
retry (and across a restart), never given to another delivery. The rows a database held
before keep their id as text, so a pending one's retries carry the header they had.

Everything runs through the real app on loopback (fake Slack, clicks signed as Slack signs
them), a webhook receiver on loopback, and the real `hitl restore`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.api.webhooks import DELIVERY_HEADER, deliver_due
from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.blocks import decode_value
from bot.store import Store
from bot.store.migrations import KNOWN_MIGRATIONS
from tests.bot.harness import Bot, has_buttons, item_of
from tests.bot.test_api import AUTH, T0, post_json, start_api
from tests.bot.test_webhooks import LOOPBACK, Receiver, serve_receiver

ANA, RAJ = "U0ANA", "U0RAJ"
KEY = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver(["ok"]):
        yield r


async def ask(bot: Bot, item_id: str, url: str) -> None:
    """An item a producer sends with ``url`` as its callback_url (no model: people decide)."""
    response = await post_json(
        bot,
        "/api/predict",
        {"text": f"ticket {item_id}: a refund", "id": item_id, "callback_url": url},
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["callback"] == "registered"


async def posted(bot: Bot) -> dict[str, dict]:
    """Post what is queued; the open questions in the channel by item, as Slack shows them."""
    await bot.dispatcher.fill()
    await bot.settled()
    return {item_of(m): m for m in bot.posted() if has_buttons(m)}


async def click(bot: Bot, message: dict, user: str = ANA, label: str | None = None) -> str:
    """A click on a label's button in ``message`` (as a screen shows it): the label clicked."""
    label = label or bot.first_label(message)
    assert (await bot.action(bot.button_payload(message, user, label))).ok
    await bot.settled()
    return label


async def deliver(bot: Bot, count: int) -> None:
    done = await deliver_due(bot.rt)
    assert len(done.delivered) == count, done


def told(receiver: Receiver) -> list[tuple[str, str | None, str]]:
    """What the receiver took, in order: (item, label, X-HITL-Delivery)."""
    out = []
    for request in receiver.delivered:
        body = json.loads(request.body)
        out.append((body["id"], body["label"], request.headers[DELIVERY_HEADER]))
    return out


def deduped(receiver: Receiver) -> dict[str, str | None]:
    """What a receiver that dedupes on X-HITL-Delivery, as README says to, ends with."""
    seen: set[str] = set()
    labels: dict[str, str | None] = {}
    for item, label, header in told(receiver):
        if header not in seen:
            seen.add(header)
            labels[item] = label
    return labels


def buttons(message: dict) -> list[str]:
    """The labels with a button in ``message``."""
    return [
        decode_value(element["value"])[1]
        for block in message["blocks"]
        for element in block.get("elements", [])
        if element.get("type") == "button" and ".label." in element["action_id"]
    ]


def backup_of(db: Path) -> Path:
    """README's backup (SQLite's backup API), made while the server runs."""
    backup = db.with_name("backup.db")
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(backup)) as copy,
    ):
        source.backup(copy)
    return backup


def hitl(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


# -- (a) a delete --


async def test_the_delivery_after_a_deleted_items_newest_one_has_a_header_not_used_before(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        await ask(bot, "A", receiver.url)
        await ask(bot, "B", receiver.url)
        questions = await posted(bot)
        a_label = await click(bot, questions["A"])
        await deliver(bot, 1)
        # A's deliveries (the newest row among them) go with it
        deleted = await bot.http.delete("/api/items/A", headers=AUTH)
        assert deleted.status == 200, await deleted.text()
        assert bot.store.deliveries("A") == []
        b_label = await click(bot, questions["B"])
        await deliver(bot, 1)
        [b_row] = bot.store.deliveries("B")
    (a, _, a_header), (b, _, b_header) = told(receiver)
    assert (a, b) == ("A", "B")
    assert a_header != b_header, "two deliveries share one X-HITL-Delivery"
    assert b_header == b_row["key"] and KEY.fullmatch(a_header) and KEY.fullmatch(b_header)
    assert deduped(receiver) == {"A": a_label, "B": b_label}


# -- (b) a restore --


async def test_no_header_is_used_again_after_hitl_restore_of_an_older_backup(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    db = tmp_path / "hitl.db"
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        for item in "ABC":
            await ask(bot, item, receiver.url)
        questions = await posted(bot)  # their messages as people's screens show them
        await click(bot, questions["A"])
        await deliver(bot, 1)
        backup = backup_of(db)  # the nightly backup, the server running
        b_first = await click(bot, questions["B"])  # after it: the backup never hears of it
        await deliver(bot, 1)
        before = {header for _, _, header in told(receiver)}
    assert len(before) == 2

    done = hitl(db, "restore", str(backup))  # README: stop the server, restore, start it
    assert done.exit_code == 0, done.output

    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        assert bot.store.get_item("B")["status"] != "resolved"  # open again in the backup
        # B answered again (another label), and C: clicks on the messages as screens show them
        b_again = next(label for label in buttons(questions["B"]) if label != b_first)
        await click(bot, questions["B"], RAJ, b_again)
        c_label = await click(bot, questions["C"], RAJ)
        await deliver(bot, 2)
        rows = bot.store.deliveries()
    headers = [header for _, _, header in told(receiver)]
    assert len(headers) == 4 and len(set(headers)) == 4, told(receiver)
    assert not before & set(headers[2:]), "a header went out again after the restore"
    assert set(headers[2:]) <= {row["key"] for row in rows}
    # a receiver deduping on the header ends with what the restored database decided
    assert deduped(receiver) == {"A": told(receiver)[0][1], "B": b_again, "C": c_label}


# -- (c) retries --


async def test_every_retry_of_a_delivery_carries_its_header_across_a_restart(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for flaky in serve_receiver(["fail", "fail", "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            await ask(bot, "A", flaky.url)
            await click(bot, (await posted(bot))["A"])
            assert len((await deliver_due(bot.rt, now=T0 + timedelta(days=1))).retrying) == 1
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):  # the next serve
            for day in (2, 3):
                await deliver_due(bot.rt, now=T0 + timedelta(days=day))
            [row] = bot.store.deliveries("A")
        assert (row["status"], row["attempts"]) == ("delivered", 3)
        assert [r.headers[DELIVERY_HEADER] for r in flaky.received] == [row["key"]] * 3
        assert KEY.fullmatch(row["key"])


def test_a_row_written_without_a_key_gets_one_at_its_first_claim_and_keeps_it(store: Store):
    with store._immediate():
        store.db.execute(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES ('x', 't', '{}', 'api', 'resolved', 't', 't')"
        )
        store.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at)"
            " VALUES ('x', 'https://hooks.example/cb', '2026-01-01', 't')"
        )
    [first] = store.claim_due_deliveries("2026-01-02", "2026-01-03", 8)
    assert KEY.fullmatch(first["key"])
    store.finish_delivery(first["id"], "pending", error="HTTP 500", next_attempt_at="2026-01-04")
    [again] = store.claim_due_deliveries("2026-01-05", "2026-01-06", 8)
    assert (again["id"], again["key"]) == (first["id"], first["key"])


async def test_deliveries_queued_in_one_statement_each_get_their_own_key(
    fake_slack: FakeSlack, tmp_path: Path, receiver: Receiver
):
    async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
        for item in "ABC":
            await ask(bot, item, receiver.url)
        questions = await posted(bot)
        label = bot.first_label(questions["A"])
        for item in "ABC":
            await click(bot, questions[item], label=label)
        await deliver(bot, 3)
        # `hitl labels rename`: one INSERT … SELECT queues a delivery for each item
        labels = list(bot.rt.settings.labels)
        bot.store.change_label_set("rename", label, "renamed", current=labels, user_id="admin")
        await deliver(bot, 3)
        keys = [row["key"] for row in bot.store.deliveries()]
    assert len(keys) == 6 and len(set(keys)) == 6 and all(KEY.fullmatch(k) for k in keys)
    assert len({header for _, _, header in told(receiver)}) == 6


# -- the upgrade (m046) --


def as_m045_left_it(db: Path) -> None:
    """The database as a slack-hitl before m046 left it: no key, no index on it."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP INDEX deliveries_key")
        conn.execute("ALTER TABLE deliveries DROP COLUMN key")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm046_delivery_keys'")
        conn.execute("ALTER TABLE deliveries DROP COLUMN restates")  # m047, after m046
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm047_delivery_restates'")
        conn.execute("ALTER TABLE deliveries DROP COLUMN body")  # m048
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm048_delivery_bodies'")
        conn.commit()


async def test_an_upgraded_database_keeps_each_pending_deliverys_header_and_keys_new_ones(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    async for flaky in serve_receiver(["fail", "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            for item in "AB":
                await ask(bot, item, flaky.url)
            questions = await posted(bot)
            await click(bot, questions["A"])
        as_m045_left_it(db)
        # what the old version did: its first attempt went out as "X-HITL-Delivery: <id>"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            [(a_id,)] = conn.execute("SELECT id FROM deliveries").fetchall()
            conn.execute("UPDATE deliveries SET attempts = 1, last_error = 'HTTP 500'")
            conn.commit()
        flaky.script[:] = ["ok"]

        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):  # upgraded as it opens
            assert "m046_delivery_keys" in bot.store.schema_version()
            assert "deliveries_key" in {i.name for i in bot.store.db["deliveries"].indexes}
            [a_row] = bot.store.deliveries("A")
            assert a_row["key"] == str(a_id)
            await click(bot, (await posted(bot))["B"])
            await deliver(bot, 2)
            [b_row] = bot.store.deliveries("B")
        headers = {json.loads(r.body)["id"]: r.headers[DELIVERY_HEADER] for r in flaky.delivered}
        assert headers == {"A": str(a_id), "B": b_row["key"]}
        assert KEY.fullmatch(b_row["key"])


def test_a_backup_from_before_m046_restores_and_upgrades(tmp_path: Path):
    old = tmp_path / "old.db"
    with Store.open(old) as store:
        with store._immediate():
            store.db.execute(
                "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
                " VALUES ('x', 't', '{}', 'api', 'resolved', 't', 't')"
            )
            for attempts in (1, 0):  # one went out as "X-HITL-Delivery: 1"; one never tried
                store.db.execute(
                    "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, attempts)"
                    " VALUES ('x', 'https://hooks.example/cb', '2026-01-01', 't', ?)",
                    [attempts],
                )
    as_m045_left_it(old)
    db = tmp_path / "hitl.db"
    with Store.open(db):
        pass
    done = hitl(db, "restore", str(old))
    assert done.exit_code == 0, done.output
    with Store.open(db) as store:
        assert set(store.schema_version()) == set(KNOWN_MIGRATIONS)  # every one applied
        [(first, tried), (second, never)] = [(d["id"], d["key"]) for d in store.deliveries()]
    # the one that went out keeps its header; the one never tried gets a key of its own (its
    # id, 2, may have gone out already as the header of a delivery since deleted)
    assert (first, tried) == (1, "1")
    assert second == 2 and KEY.fullmatch(never)
