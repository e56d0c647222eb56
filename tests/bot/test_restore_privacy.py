"""`hitl restore --undelete` and `hitl people anonymise`, privacy re-test (priv8): an item kept
by --undelete whose open question's Slack message the server deleted is asked again (not left
`posted`, holding an open-question slot no one can answer); the deletions the backup does not
hold are named even when no item is kept; the retrain lock that names a person is not counted
as a ticket or label."""

from __future__ import annotations

from pathlib import Path

from bot.store import Store
from tests.bot.test_restore_erasure import backup_of, imported, posted, run


def deleted(db: Path, item_id: str) -> None:
    done = run(db, "delete", item_id, "--yes", "--reason", "by mistake")
    assert done.exit_code == 0, done.output


def server_deletes_messages(db: Path) -> None:
    """What `hitl serve` does with the messages `hitl delete` left: deletes them from Slack."""
    with Store.open(db) as store:
        for row in store.erased_posts():
            store.forget_erased_post(int(row["id"]))


def test_undelete_asks_again_an_item_whose_question_was_deleted_from_slack(tmp_path: Path):
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "P-1,question one\nP-2,question two\n")
    posted(db, "P-1", "1700000000.000001")
    posted(db, "P-2", "1700000000.000002")
    backup = backup_of(db)
    deleted(db, "P-1")
    server_deletes_messages(db)

    done = run(db, "restore", "--undelete", str(backup))
    assert done.exit_code == 0, done.output
    assert "Kept 1 item deleted after the backup was made (P-1): --undelete.\n" in done.stdout
    with Store.open(db) as store:
        status = dict(store.db.execute("SELECT id, status FROM items").fetchall())
        open_posts = [p["item_id"] for p in store.open_posts()]
    assert status["P-1"] != "posted", status
    assert status["P-2"] == "posted"  # its question is still in Slack
    assert open_posts == ["P-2"]


def test_undelete_names_the_deletions_the_backup_does_not_hold_when_it_keeps_none(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "A,old ticket\n")
    backup = backup_of(db)
    imported(db, "x.csv", "X,deleted by mistake\n")
    deleted(db, "X")

    done = run(db, "restore", "--undelete", str(backup))
    assert done.exit_code == 0, done.output
    assert "Kept" not in done.stdout
    assert (
        "Still deleted: 1 item the backup does not hold (X), as hitl.db.before-restore"
        " records: its id stays out of imports and the API.\n"
    ) in done.stdout


def test_a_retrain_the_person_started_is_said_to_run_not_counted_as_a_ticket(tmp_path: Path):
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "Q-1,a question\n")
    with Store.open(db) as store:
        store.record_answer(
            "Q-1", "U0ADMIN", None, source="button", dedupe_key="Q-1:U0ADMIN:None:1.1"
        )
        store.db.execute(  # the lock a retrain they started from Slack holds while it runs
            "INSERT INTO locks (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
            [
                "retrain",
                "retrain by <@U0ADMIN> on host:4242:0123abcd",
                "2026-01-01T00:00:00+00:00",
                "2999-01-01T00:00:00+00:00",
            ],
        )
        store.db.conn.commit()

    done = run(db, "people", "anonymise", "U0ADMIN")
    assert done.exit_code == 0, done.output
    assert "locks.owner" not in done.stdout
    assert "tickets and labels" not in done.stdout
    assert (
        "  A retrain or rollback they started is running: its model, run record and report"
        " will still name them; run the command again once it ends.\n"
    ) in done.stdout


def test_a_restore_says_who_it_could_not_anonymise_again(tmp_path: Path):
    """Raj answered R-1 only; after the backup R-1 was erased (his answer with it) and he was
    anonymised: nothing in the database replaced maps former-1 back to him, so the restore
    says the backup may still name that person."""
    db = tmp_path / "hitl.db"
    imported(db, "a.csv", "A-1,an old ticket\nR-1,a customer's ticket\n")
    with Store.open(db) as store:
        store.record_answer("R-1", "U0RAJ", None, source="button", dedupe_key="R-1:U0RAJ:None:1")
    backup = backup_of(db)
    deleted(db, "R-1")
    done = run(db, "people", "anonymise", "U0RAJ")
    assert done.exit_code == 0, done.output
    assert "U0RAJ is now former-1" in done.stdout

    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert (
        "Not anonymised again: 1 person (former-1), anonymised after the backup was made, as"
        " hitl.db.before-restore records, with no answer left there to find them by: the"
        " backup may still name that person; run `hitl people anonymise` for them again.\n"
    ) in done.stdout
