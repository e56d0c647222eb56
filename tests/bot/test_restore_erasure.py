"""`hitl restore` and `hitl delete`: the Slack messages the database that was there knew showed a
deleted item are left for `hitl serve` to delete in the restored one (a restore needs the server
stopped, so a delete made meanwhile, or still in Slack's backoff, has its messages queued only
there), and `--undelete` brings back only the items the backup holds: the erasure of an item it
never held stays recorded, so the same file imported again brings nothing back."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import StoreError
from bot.store import Store
from bot.store.lock import server_lock

CHANNEL = "C0QUESTIONS"
SECRET = "refund to card 4000056655665556, jane.doe@example.com"


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args])


def backup_of(db: Path) -> Path:
    backup = db.with_name("backup.db")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"VACUUM INTO '{backup}'")
    return backup


def imported(db: Path, name: str, rows: str) -> Path:
    path = db.with_name(name)
    path.write_text("id,text\n" + rows)
    done = run(db, "import", str(path))
    assert done.exit_code == 0, done.output
    return path


def posted(db: Path, item_id: str, ts: str) -> None:
    """The server posts ``item_id`` (as the dispatcher records a question Slack accepted)."""
    with Store.open(db) as store:
        assert store.record_post(item_id, CHANNEL, ts, "uncertain", None, None, None)


def deleted(db: Path, item_id: str, reason: str) -> None:
    done = run(db, "delete", item_id, "--yes", "--reason", reason)
    assert done.exit_code == 0, done.output


def queued(db: Path) -> list[str]:
    """The ts of the messages left for `hitl serve` to delete."""
    with Store.open(db) as store:
        return sorted(str(row["ts"]) for row in store.erased_posts())


def deletions(db: Path) -> dict[str, str]:
    with Store.open(db) as store:
        rows = store.db.execute("SELECT item_id, reason FROM deleted_items").fetchall()
    return dict(rows)


def test_a_restore_keeps_the_messages_hitl_delete_left_to_delete(tmp_path: Path):
    """B-1 arrives after the backup, is posted, and is deleted while the server is stopped: its
    message is queued in the database that is replaced, and the backup never heard of it."""
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "A-1,an old ticket\n")
    backup = backup_of(db)
    imported(db, "b.csv", f'B-1,"{SECRET}"\n')
    posted(db, "B-1", "1700000000.000100")
    deleted(db, "B-1", "erasure request")
    assert queued(db) == ["1700000000.000100"]

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert queued(db) == ["1700000000.000100"]
    assert deletions(db) == {"B-1": "erasure request"}
    assert (
        "Left to delete: 1 Slack message of items deleted (`hitl delete`), as"
        " hitl.db.before-restore records; `hitl serve` deletes them.\n"
    ) in done.stdout


def test_deleted_again_queues_the_message_of_a_post_made_after_the_backup(tmp_path: Path):
    """A-1 is in the backup (with an older question, T1) and is posted again after it (T2);
    then it is deleted. The restored database deletes it again and knows T1 itself; T2 only
    the database that was there knew."""
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", f'A-1,"{SECRET}"\nA-2,another ticket\n')
    posted(db, "A-1", "1700000000.000001")
    backup = backup_of(db)
    with Store.open(db) as store:  # its question was closed, and it was asked again
        store.db.execute("UPDATE posts SET closed_at = posted_at WHERE item_id = 'A-1'")
    posted(db, "A-1", "1700000000.000002")
    posted(db, "A-2", "1700000000.000003")
    deleted(db, "A-1", "erasure request")

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Deleted again: 1 item deleted (`hitl delete`) after the backup was made (A-1)" in (
        done.stdout
    )
    assert queued(db) == ["1700000000.000001", "1700000000.000002"]
    with Store.open(db) as store:
        assert store.get_item("A-1") is None and store.get_item("A-2") is not None
    assert b"4000056655665556" not in db.read_bytes()


def test_a_restore_queues_a_post_the_replaced_database_keeps_of_a_deleted_id(tmp_path: Path):
    """A database that holds an item again after its deletion (a producer's re-send that raced
    the delete) still records the post of a deleted id: that message shows it too."""
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "A-1,an old ticket\n")
    backup = backup_of(db)
    imported(db, "b.csv", f'B-1,"{SECRET}"\n')
    with Store.open(db) as store:
        store.db.execute(
            "INSERT INTO deleted_items (item_id, user_id, reason, created_at)"
            " VALUES ('B-1', 'cli', 'erasure request', '2026-01-01T00:00:00+00:00')"
        )
    posted(db, "B-1", "1700000000.000100")

    assert run(db, "restore", str(backup)).exit_code == 0
    assert queued(db) == ["1700000000.000100"]


def test_undelete_brings_back_only_the_items_the_backup_holds(tmp_path: Path):
    """A-1 (in the backup, posted before it) is deleted by mistake; B-1, which the backup never
    held, was erased on request. --undelete brings A-1 back with its question; B-1 stays
    erased, its id out of imports, and its message still goes."""
    db = tmp_path / "hitl.db"
    imported(db, "old.csv", "A-1,an old ticket that matters\n")
    posted(db, "A-1", "1700000000.000001")
    backup = backup_of(db)
    new = imported(db, "new.csv", f'B-1,"{SECRET}"\n')
    posted(db, "B-1", "1700000000.000002")
    deleted(db, "B-1", "erasure request #4411")
    deleted(db, "A-1", "oops")
    assert queued(db) == ["1700000000.000001", "1700000000.000002"]

    done = run(db, "restore", str(backup), "--undelete")
    assert done.exit_code == 0, done.output
    assert deletions(db) == {"B-1": "erasure request #4411"}
    assert queued(db) == ["1700000000.000002"]  # A-1's question stays: A-1 is back
    assert "Kept 1 item deleted after the backup was made (A-1): --undelete.\n" in done.stdout
    assert (
        "Still deleted: 1 item the backup does not hold (B-1), as hitl.db.before-restore"
        " records: its id stays out of imports and the API.\n"
    ) in done.stdout
    with Store.open(db) as store:
        assert store.get_item("A-1") is not None
        assert [p["ts"] for p in store.db["posts"].rows] == ["1700000000.000001"]

    again = run(db, "import", str(new))
    assert again.exit_code == 0, again.output
    assert "1 row skipped (deleted before with `hitl delete`)" in again.stdout
    with Store.open(db) as store:
        assert store.get_item("B-1") is None


def test_a_post_whose_outcome_was_unknown_is_still_looked_for_after_a_restore(tmp_path: Path):
    """X-1 was being posted after the backup was made (the server stopped during
    chat.postMessage) when it was deleted: the message may be in Slack, and the database that
    was there noted it to be looked for. The restored one looks for it too."""
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", f'X-1,"{SECRET}"\n')
    backup = backup_of(db)
    with Store.open(db) as store:
        assert store.begin_post_attempt("X-1", CHANNEL, "uncertain", None, None, None)
    deleted(db, "X-1", "erasure request")

    assert run(db, "restore", str(backup)).exit_code == 0
    with Store.open(db) as store:
        lost = store.lost_posts()
        assert [(p["item_id"], p["channel"]) for p in lost] == [("X-1", CHANNEL)]
        assert int(lost[0]["id"]) <= 0 and store.erased_posts() == []


def answered(db: Path, item_id: str, user_id: str) -> None:
    with Store.open(db) as store:
        store.record_answer(item_id, user_id, None, source="button", dedupe_key=f"{item_id}:1")


def erased_after_backup(db: Path) -> Path:
    """A-1 (the secret) and A-2 imported, U1's answer on A-2, a backup made; then A-1 deleted
    (an erasure request) and U1 anonymised. Returns the backup."""
    imported(db, "a.csv", f'A-1,"{SECRET}"\nA-2,another ticket\n')
    answered(db, "A-2", "U1")
    backup = backup_of(db)
    deleted(db, "A-1", "erasure request")
    assert run(db, "people", "anonymise", "U1").exit_code == 0
    return backup


def test_erasures_made_after_the_backup_are_redone_in_a_folder_named_with_a_hash(tmp_path: Path):
    """The database that was there is read by a URI: a "#" in its folder's name started the
    URI's fragment, the read failed as "no such table", and A-1's erasure and U1's
    anonymisation were silently undone."""
    db = tmp_path / "site#2" / "hitl.db"
    db.parent.mkdir()
    backup = erased_after_backup(db)

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Deleted again: 1 item deleted (`hitl delete`) after the backup was made (A-1)" in (
        done.stdout
    )
    assert "Anonymised again: 1 person (former-1)" in done.stdout
    with Store.open(db) as store:
        assert store.get_item("A-1") is None
        assert store.db.execute("SELECT user_id FROM answers").fetchall() == [("former-1",)]


def test_no_server_starts_on_the_restored_database_before_its_erasures_are_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The restore let go of the server lock at the file swap, before it deleted A-1 and
    anonymised U1 again: a `hitl serve` started then (systemd restarting it as the restore
    ended its lock) served and posted what the backup holds of them. A server taking the lock
    as those steps run, as `hitl serve` takes it, is refused now."""
    db = tmp_path / "hitl.db"
    backup = erased_after_backup(db)
    refusals: dict[str, str] = {}

    def server_tries(step: str) -> None:
        try:
            with server_lock(db, starting=True):
                refusals[step] = "a server started"
        except StoreError as exc:
            refusals[step] = str(exc)

    def spied(step: str):  # the step itself runs, once a server has tried to start
        real = getattr(Store, step)

        def step_run(store: Store, *args, **kwargs):
            server_tries(step)
            return real(store, *args, **kwargs)

        return step_run

    for step in ("delete_again", "anonymise_again", "scrub"):
        monkeypatch.setattr(Store, step, spied(step))

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    refused = (
        f"{db} is in use: a hitl restore is putting a backup in place there (pid {os.getpid()}"
    )
    assert list(refusals) == ["delete_again", "anonymise_again", "scrub"]
    assert all(said.startswith(refused) for said in refusals.values()), refusals
    assert "Deleted again: 1 item deleted (`hitl delete`) after the backup was made (A-1)" in (
        done.stdout
    )
    with server_lock(db, starting=True):  # the restore is done: a server starts
        pass


def test_a_restore_over_a_database_too_damaged_to_read_its_erasures_says_so(tmp_path: Path):
    """A restore is what a damaged database calls for. When the pages that record what was
    deleted and who anonymised after the backup cannot be read, the restore cannot redo them:
    it said nothing (read as "nothing deleted"), and the erasure was silently undone."""
    db = tmp_path / "hitl.db"
    backup = erased_after_backup(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:  # each table's first page damaged
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = conn.execute(
            "SELECT rootpage FROM sqlite_master"
            " WHERE name IN ('deleted_items', 'anonymised_people')"
        ).fetchall()
    with db.open("r+b") as file:
        for (root,) in roots:
            file.seek((root - 1) * size)
            file.write(b"\xff" * size)

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert (
        "Warning: no item was deleted again: hitl.db.before-restore cannot be read (database"
        " disk image is malformed), so which items `hitl delete` deleted after the backup was"
        f" made is not known, and those the backup holds are in {db} again: run `hitl delete`"
        " for them again (your erasure requests name them), and delete their Slack messages"
        " by hand.\n"
    ) in done.stderr
    assert (
        "Warning: no one was anonymised again: hitl.db.before-restore cannot be read (database"
        " disk image is malformed), so who `hitl people anonymise` anonymised after the backup"
        f" was made is not known, and the backup names them in {db} again: run `hitl people"
        " anonymise` for them again.\n"
    ) in done.stderr
    assert db.with_name("hitl.db.before-restore").exists()  # kept, for what it still holds


def test_a_restore_where_no_database_was_says_the_erasures_since_are_not_redone(tmp_path: Path):
    """The database lost (a dead disk) and the nightly backup restored in its place: the record of
    what was deleted since went with it, so the deleted item comes back. The restore said
    nothing of it; it now says, in one warning line, that those erasures are not known."""
    db = tmp_path / "hitl.db"
    imported(db, "t.csv", f'T-card,"{SECRET}"\nT-2,hello\n')
    backup = backup_of(db)
    deleted(db, "T-card", "erasure #4411")
    for name in ("hitl.db", "hitl.db-wal", "hitl.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(tmp_path / name, tmp_path / f"lost-{name}")
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert [line for line in done.stderr.splitlines() if line.startswith("Warning")] == [
        f"Warning: no database was at {db}, so the items deleted (`hitl delete`, DELETE"
        " /api/items/{id}) and the people anonymised (`hitl people anonymise`) after the backup"
        " was made are not known, and none is deleted or anonymised again: the restored database"
        " holds them as the backup does; run those erasures again. Nor are the webhooks sent"
        " after it: producers are not told what the restore changed."
    ]
    with Store.open(db) as store:
        assert store.get_item("T-card") is not None  # what the warning is about
