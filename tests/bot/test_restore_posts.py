"""`hitl restore` of a backup made while `hitl serve` ran (README "Backup and restore"): the
questions the server posted after the backup was made are in Slack with working buttons, and
only the database the restore replaces knew them. Before, the restored database had no record
of them: their items were asked a second time while the old messages kept their buttons for
good (never redrawn, taken back or closed, even once the item was decided). Now the restore
carries them over: a message of an item the backup holds is recorded as a question taken back
(the next `hitl serve` redraws it without buttons; its item is asked again when its turn
comes, once), one of an item the backup does not hold is left for the server to delete, and
one of an item `hitl delete` deleted goes the erasure's way."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
from bot.store.migrations import KNOWN_MIGRATIONS, migrations
from bot.store.restore import restore
from tests.bot.harness import Item, has_buttons, item_of, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

ANA, RAJ = "U0ANA", "U0RAJ"


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args])


def backup_of(db: Path) -> Path:
    """README's backup (``sqlite3 hitl.db ".backup …"``: SQLite's backup API), safe while the
    server runs."""
    backup = db.with_name("backup.db")
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(backup)) as copy,
    ):
        source.backup(copy)
    return backup


def posts(db: Path) -> dict[str, dict]:
    """The posts the database records, by ts."""
    with Store.open(db) as store:
        return {str(row["ts"]): row for row in store.db["posts"].rows}


async def test_questions_posted_after_the_backup_are_taken_back_and_their_items_asked_once(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    db = settings.db
    seed(db, [Item(f"i{n}", f"ticket {n}: a refund and an error") for n in range(3)])
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        first, second = bot.posted()
        backup = backup_of(db)  # the nightly backup, the server running
        # work goes on after it: an answer, and a question the backup never hears of
        assert (await bot.action(bot.button_payload(first, ANA, bot.first_label(first)))).ok
        await bot.settled()
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        [after] = [m for m in bot.posted() if m["ts"] not in (first["ts"], second["ts"])]
        assert has_buttons(after)
        # an item that came after the backup, asked too
        bot.store.add_items([Item("n0", "a ticket that came after the backup")], "api")
        assert (await bot.action(bot.button_payload(second, ANA, bot.first_label(second)))).ok
        await bot.settled()
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        [newcomer] = [m for m in bot.posted() if item_of(m) == "n0"]
    asked_again = item_of(after)  # waiting in the backup: its question came after it

    done = run(db, "restore", str(backup))  # README: stop the server, restore, start it
    assert done.exit_code == 0, done.output

    updates_before = len(fake_slack.calls_to("chat.update"))
    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        await bot.settled()  # the start's pass: redraws, deletions
        now = {m["ts"]: m for m in bot.posted()}
        assert not has_buttons(now[after["ts"]])  # taken back: no buttons, says so
        assert "restored from an earlier backup, put back in the queue" in now[after["ts"]]["text"]
        assert any(
            call.params.get("ts") == after["ts"]
            for call in fake_slack.calls_to("chat.update")[updates_before:]
        )
        assert newcomer["ts"] not in now  # deleted (chat.delete)
        assert [call.params.get("ts") for call in fake_slack.calls_to("chat.delete")] == [
            newcomer["ts"]
        ]
        # the first question is open again in the restored database (its answer came after
        # the backup): answered again, its place goes to the item asked after the backup
        await fake_slack.wait_for(lambda: has_buttons(fake_slack.message(CHANNEL, first["ts"])))
        assert (await bot.action(bot.button_payload(first, RAJ, bot.first_label(first)))).ok

        def live(item_id: str) -> list[dict]:
            return [
                m for m in fake_slack.messages(CHANNEL) if item_of(m) == item_id and has_buttons(m)
            ]

        await fake_slack.wait_for(lambda: len(live(asked_again)) == 1, timeout=10)
        await bot.settled()
        [again] = live(asked_again)
        assert again["ts"] != after["ts"]  # asked once: in one message with buttons
        assert all(len(live(item_of(m))) <= 1 for m in bot.posted())

        # a click on the old message (its buttons as a stale screen still shows them) counts
        # as on any question taken back: an answer to its item, which it decides
        response = await bot.action(bot.button_payload(after, ANA, bot.first_label(after)))
        assert response.status == 200
        await bot.settled()
        assert bot.store.get_item(asked_again)["status"] == "resolved"
        for ts in (after["ts"], again["ts"]):
            message = fake_slack.message(CHANNEL, ts)
            assert not has_buttons(message) and "✅" in str(message["blocks"])
    recorded = posts(db)  # the server stopped: every post it made is recorded
    for message in fake_slack.messages(CHANNEL):  # no button the database does not know
        assert not has_buttons(message) or message["ts"] in recorded


def after_backup(tmp_path: Path) -> tuple[Path, Path]:
    """A database whose backup knows i0's question; after it i1, i2 and n0 (an item the
    backup does not hold) are asked, and i2 is deleted (`hitl delete`)."""
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"i{n}", f"ticket {n}") for n in range(3)])
    with Store.open(db) as store:
        assert store.record_post("i0", CHANNEL, "1700000000.000001", "uncertain", None, None, None)
    backup = backup_of(db)
    seed(db, [Item("n0", "after the backup")])
    with Store.open(db) as store:
        for item_id, ts in (("i1", "2"), ("i2", "3"), ("n0", "4")):
            assert store.record_post(
                item_id, CHANNEL, f"1700000000.00000{ts}", "uncertain", None, None, None
            )
    assert run(db, "delete", "i2", "--yes", "--reason", "erasure request").exit_code == 0
    return db, backup


def test_restore_records_the_posts_the_backup_does_not_know(tmp_path: Path):
    """Without a server: the posts of the database that was there are compared by their
    Slack message (channel and ts) with the backup's; the ones of items `hitl delete` deleted
    go the erasure's way, as before."""
    db, backup = after_backup(tmp_path)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    known = posts(db)
    assert sorted(known) == ["1700000000.000001", "1700000000.000002"]
    assert known["1700000000.000001"]["closed_at"] is None  # the backup's, as it was
    taken = known["1700000000.000002"]
    assert (taken["item_id"], taken["taken_back"], int(taken["id"])) == ("i1", "restore", -1)
    assert taken["closed_at"] and taken["expired_at"]
    assert taken["redraw_seq"] > taken["drawn_seq"]  # drawn by the next `hitl serve`
    with Store.open(db) as store:
        assert store.get_item("i1")["status"] != "posted"  # waits to be asked, once
        assert store.get_item("i2") is None  # deleted again
        queued = sorted(str(row["ts"]) for row in store.erased_posts())
    # n0's (the backup does not hold it), and i2's (deleted again, the erasure's path)
    assert queued == ["1700000000.000003", "1700000000.000004"]


def test_restore_says_how_many_messages_it_carried_over(tmp_path: Path):
    db, backup = after_backup(tmp_path)
    done = restore(db, backup)
    assert (done.taken_back, done.to_delete) == (1, 1)  # i1's; n0's (i2's: the erasure's)
    # with no database there (a new path) nothing is carried, and the restore works as before
    fresh = tmp_path / "new" / "hitl.db"
    fresh.parent.mkdir()
    done = restore(fresh, backup)
    assert (done.kept, done.taken_back, done.to_delete) == (None, 0, 0)
    said = run(fresh.with_name("other.db"), "restore", str(backup))
    assert said.exit_code == 0, said.output
    assert "The database that was there" not in said.output
    assert list(posts(fresh)) == list(posts(fresh.with_name("other.db"))) == ["1700000000.000001"]
    with Store.open(fresh) as store:
        assert store.erased_posts() == []


def test_restore_says_in_one_line_how_many_messages_it_carried_over(tmp_path: Path):
    db, backup = after_backup(tmp_path)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert (
        "Carried over: 2 Slack messages posted after the backup was made, as"
        " hitl.db.before-restore records: 1 taken back (`hitl serve` redraws it without"
        " buttons; the items are asked again in their turn); 1 left to delete (of items the"
        " backup does not hold; `hitl serve` deletes them).\n"
    ) in done.stdout


def test_questions_posted_after_the_backup_unread_in_a_damaged_database_are_said_not_carried(
    tmp_path: Path,
):
    """The database that was there, its posts' pages damaged (a restore is what a damaged
    database calls for): the questions posted after the backup could not be read and none was
    carried over, without a word, while they kept working buttons in Slack."""
    db, backup = after_backup(tmp_path)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'posts'")
    with db.open("r+b") as file:
        file.seek((root - 1) * size)
        file.write(b"\xff" * size)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert (
        "Warning: hitl.db.before-restore cannot be read (database disk image is malformed), so"
        " the Slack messages posted after the backup was made are not known and none was"
        " carried over: a question posted since stays in Slack with its buttons, unknown to the"
        " restored database; delete such messages there by hand.\n"
    ) in done.stderr
    assert list(posts(db)) == ["1700000000.000001"]  # the backup's, as it was


# -- backups made by an older slack-hitl (review2b, findings 5-7) ---------------------------
#
# A backup made before m030 has no ``erased_posts`` (the restore failed: "no such table"),
# one made before m040 no ``posts.taken_back`` (the carried questions were upgraded to
# 'expired': "Unanswered for 0 hours", counted as ignored), one made before m026 no
# ``expired_at``. The restore upgrades the backup's copy before it records them.

SHIPPED = {m.name: m.fn for m in migrations._migrations}
# In the order they shipped (by number: m043, a repair placed before m010, came after m042)
SHIPPED_ORDER = sorted(KNOWN_MIGRATIONS, key=lambda name: int(name[1:4]))
AT = "2026-11-24T09:00:00.000+00:00"


def old_database(db: Path, cut: str, items: int = 3, posted: dict[str, str] | None = None):
    """A database as the slack-hitl that shipped just before migration ``cut`` left it: the
    migrations before it, as each runs now, then ``items`` waiting items i0, i1, … and the
    questions ``posted`` (item id -> ts), written with the columns every version had."""
    old = Database(db)
    migrations.ensure_migrations_table(old)
    for name in SHIPPED_ORDER[: SHIPPED_ORDER.index(cut)]:
        SHIPPED[name](old)
        old[migrations.migrations_table].insert(
            {"migration_set": migrations.name, "name": name, "applied_at": "2026-11-24 10:00"}
        )
    for n in range(items):
        old.execute(
            "INSERT INTO items (id, text, source, status, created_at, updated_at)"
            " VALUES (?, ?, 'import', ?, ?, ?)",
            [f"i{n}", f"ticket {n}: a refund and an error", "new", AT, AT],
        )
    for item_id, ts in (posted or {}).items():
        old.execute("UPDATE items SET status = 'posted' WHERE id = ?", [item_id])
        old.execute(
            "INSERT INTO posts (item_id, channel, ts, reason, posted_at)"
            " VALUES (?, ?, ?, 'uncertain', ?)",
            [item_id, CHANNEL, ts, AT],
        )
    old.conn.commit()
    old.close()


@pytest.mark.parametrize("cut", SHIPPED_ORDER[1:])
def test_a_backup_made_by_any_older_slack_hitl_records_the_posts_made_after_it(
    tmp_path: Path, cut: str
):
    """`hitl restore` through the CLI, of a backup made just before each migration shipped:
    the question posted after it is recorded taken back by the restore (not as an ignored
    one), the message of an item the backup does not hold is left to delete, and the next
    question gets an id above every one there (never 0, ``record_post``'s "deleted")."""
    db = tmp_path / "hitl.db"
    old_database(db, cut, posted={"i0": "1700000000.000001"})  # the backup knows i0's
    backup = backup_of(db)
    with Store.open(db) as store:  # the new version upgrades the database and goes on
        store.add_items([Item("n0", "a ticket that came after the backup")], "api")
        for item_id, ts in (("i1", "2"), ("n0", "3")):
            assert store.record_post(
                item_id, CHANNEL, f"1700000000.00000{ts}", "uncertain", None, None, None
            )
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Carried over: 2 Slack messages posted after the backup was made" in done.stdout
    known = posts(db)
    assert sorted(known) == ["1700000000.000001", "1700000000.000002"]
    theirs, taken = known["1700000000.000001"], known["1700000000.000002"]
    assert theirs["closed_at"] is None and theirs["taken_back"] is None  # as it was
    assert (taken["item_id"], taken["taken_back"]) == ("i1", "restore")
    assert taken["closed_at"] and taken["expired_at"]
    assert taken["redraw_seq"] > taken["drawn_seq"]  # drawn by the next `hitl serve`
    assert 0 != taken["id"] < theirs["id"]
    with Store.open(db) as store:
        assert [str(row["ts"]) for row in store.erased_posts()] == ["1700000000.000003"]
        assert store.resting(24) == set()  # not a question people ignored
        assert store.expired_counts(days=7) == {}
        assert store.get_item("i1")["status"] != "posted"  # waits to be asked, once
        after = store.record_post("i2", CHANNEL, "1700000000.000004", "uncertain", None, None, None)
    assert after > max(theirs["id"], taken["id"])
    # upgraded by the restore, to record them under the schema they need: said so
    assert "The backup was made by an older slack-hitl: it was upgraded (" in done.stdout


@pytest.mark.parametrize(
    "cut", ["m026_posts_expired", "m030_deleted_items", "m040_posts_taken_back"]
)
async def test_undoing_an_upgrade_with_the_older_versions_backup_takes_back_its_questions(
    fake_slack: FakeSlack, tmp_path: Path, cut: str, caplog: pytest.LogCaptureFixture
):
    """README's textbook restore: the nightly backup, made by the older version (before
    ``expired_at``, ``erased_posts``, ``taken_back``), put back after the new one served. It
    is restored; at the next start the questions posted since say the database was restored
    (not "Unanswered for …"), the message of an item the backup does not hold is deleted,
    their items are asked again once and not rested as ignored questions."""
    caplog.set_level(logging.INFO)
    settings = make_settings(fake_slack, tmp_path, max_open=4)
    db = settings.db
    old_database(db, cut)  # the backup holds no question: the carried ones from 1 up
    backup = backup_of(db)
    async for bot in start_bot(fake_slack, settings):  # the new version upgrades and serves
        bot.store.add_items([Item("n0", "a ticket that came after the backup")], "api")
        assert await bot.dispatcher.fill() == 4
        await bot.settled()
        asked = {item_of(m): m["ts"] for m in bot.posted()}
    assert sorted(asked) == ["i0", "i1", "i2", "n0"]
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "3 taken back" in done.stdout and "1 left to delete" in done.stdout

    deletes_before = len(fake_slack.calls_to("chat.delete"))
    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        await bot.settled()  # the start's pass: redraws, deletions

        def live(item_id: str) -> list[dict]:
            return [
                m for m in fake_slack.messages(CHANNEL) if item_of(m) == item_id and has_buttons(m)
            ]

        await fake_slack.wait_for(lambda: all(len(live(f"i{n}")) == 1 for n in range(3)))
        await bot.settled()
        for item_id in ("i0", "i1", "i2"):
            old = fake_slack.message(CHANNEL, asked[item_id])
            assert not has_buttons(old)
            assert "restored from an earlier backup, put back in the queue" in old["text"]
            assert live(item_id)[0]["ts"] != asked[item_id]  # asked again, once
        assert [
            call.params.get("ts") for call in fake_slack.calls_to("chat.delete")[deletes_before:]
        ] == [asked["n0"]]
        assert bot.store.resting(24) == set()
        assert bot.store.expired_counts(days=7) == {}
        ids = [row[0] for row in bot.store.db.execute("SELECT id FROM posts ORDER BY id")]
    assert ids == [1, 2, 3, 4, 5, 6]  # the carried ones first; none is 0
    assert not [r for r in caplog.records if "deleted while it was posted" in r.getMessage()]


async def test_the_first_question_after_restoring_a_backup_with_no_post_is_not_said_deleted(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A backup made before the first question (right after the import): the questions the
    server posted after it are carried over, and the next one the server posts gets an id
    above them, never 0, which ``record_post`` answers for an item deleted while it was
    posted (the dispatcher then said so, falsely, and skipped that post's label-set check)."""
    caplog.set_level(logging.INFO)
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    db = settings.db
    seed(db, [Item(f"i{n}", f"ticket {n}: a refund and an error") for n in range(4)])
    backup = backup_of(db)  # no post in it
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        first = {m["ts"] for m in bot.posted()}
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        await bot.settled()  # the start's pass: the carried questions redrawn

        def asked() -> list[dict]:
            return [m for m in fake_slack.messages(CHANNEL) if has_buttons(m)]

        await fake_slack.wait_for(lambda: len(asked()) == 2)
        await bot.settled()
        rows = bot.store.db.execute(
            "SELECT id, ts, closed_at IS NULL FROM posts ORDER BY id"
        ).fetchall()
        assert not {m["ts"] for m in asked()} & first
    assert [row[0] for row in rows] == [1, 2, 3, 4]
    assert {row[1] for row in rows[:2]} == first and not any(row[2] for row in rows[:2])
    assert all(row[2] for row in rows[2:])  # the new questions: open, recorded as posted
    assert not [r for r in caplog.records if "deleted while it was posted" in r.getMessage()]


# -- a backup of another database (review3b, finding 3) -------------------------------------
#
# Restored by mistake (the wrong file), a backup of another database took every question of
# the database it replaced as posted after it: those of items it happened to hold were taken
# back, the others left to delete, and the next `hitl serve` deleted them from Slack, which
# undoing the restore does not bring back. The carry-over is for an earlier copy of the
# database (the same first migration, or a Slack message in common): another one's questions
# are left in Slack as they are, and the restore says so.


async def test_a_backup_of_another_database_carries_no_question_over_and_says_so(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = make_settings(fake_slack, tmp_path, max_open=3)
    db = settings.db
    seed(db, [Item(f"i{n}", f"ticket {n}: a refund and an error") for n in range(3)])
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 3
        await bot.settled()
        asked = {m["ts"]: m for m in bot.posted()}
    other = tmp_path / "other" / "hitl.db"  # made apart; one item id the same by chance
    other.parent.mkdir()
    seed(other, [Item("i0", "another database's ticket"), Item("x0", "another ticket")])
    backup = backup_of(other)
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Carried over" not in done.output
    assert (
        "Warning: the backup is not an earlier copy of the database that was there (made apart:"
        " no Slack message in common): 3 Slack messages hitl.db.before-restore records were not"
        " carried over and are left in Slack as they are; delete them there by hand if you"
        f" want, or run `hitl restore {db}.before-restore` if the backup was the wrong file.\n"
    ) in done.stderr
    assert posts(db) == {}
    with Store.open(db) as store:
        assert store.erased_posts() == []
    deletes, updates = (
        len(fake_slack.calls_to("chat.delete")),
        len(fake_slack.calls_to("chat.update")),
    )
    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        await bot.settled()  # the start's pass: deletions, redraws
        assert len(fake_slack.calls_to("chat.delete")) == deletes
        updated = {call.params.get("ts") for call in fake_slack.calls_to("chat.update")[updates:]}
        assert not updated & set(asked)
    for ts in asked:  # as they were
        assert has_buttons(fake_slack.message(CHANNEL, ts))


def test_an_earlier_copy_sharing_a_question_carries_over_whatever_its_first_migration_says(
    tmp_path: Path,
):
    """The Slack message in common is enough: a copy whose record of the first migration
    differs (rewritten by a tool) is still an earlier copy of the database. (A guard: it
    passed before too.)"""
    db, backup = after_backup(tmp_path)
    with contextlib.closing(sqlite3.connect(backup)) as conn, conn:
        conn.execute(f"UPDATE {migrations.migrations_table} SET applied_at = 'another time'")
    done = restore(db, backup)
    assert (done.taken_back, done.to_delete) == (1, 1)
