"""`hitl restore BACKUP`, and a backup restored after a crash (an outside operations test).

A crash (kill -9, an OOM kill) leaves ``hitl.db-wal`` beside the database. The README's only
restore (``cp backup.db hitl.db``, server stopped) keeps that log, and SQLite applies its pages
over the copy: a damaged database, or one that starts without a word and fails
``PRAGMA integrity_check``; copying the backup again, as the "damaged … restore it from a
backup" line said, damaged it again. `hitl restore` checks the backup, copies it with SQLite's
backup API and keeps the database that was there with its log beside it; the damaged line names
it and the log. Every test here fails on the old code (no `hitl restore`: "No such command").
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store
from tests.bot.harness import Item
from tests.bot.test_cli_loop import labeled_file

ROOT = Path(__file__).resolve().parents[2]

# A writer that commits items and is then killed with SIGKILL, before any checkpoint: its log,
# hitl.db-wal, stays beside the file, as a crashed server's does.
CRASHING_WRITER = """
import sys, types
from bot.store import Store
store = Store.open(sys.argv[1])
store.db.execute("PRAGMA wal_autocheckpoint = 0")
store.add_items([types.SimpleNamespace(id=f"c{i}", text=f"c text {i} " + "word " * 40, meta={},
                 label="bug") for i in range(300)], "import")
print("written", flush=True)
sys.stdin.read()
"""
# A server's lock (``bot.store.lock``) held by another process, as `hitl serve` holds it.
LOCK_HOLDER = """
import sys
from pathlib import Path
from bot.store.lock import server_lock
with server_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""
# Another hitl process with the database open (an import, a retrain).
OPEN_STORE = """
import sys
from bot.store import Store
store = Store.open(sys.argv[1])
store.stats() if hasattr(store, "stats") else store.db.execute("SELECT count(*) FROM items")
print("open", flush=True)
sys.stdin.read()
"""


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


@contextlib.contextmanager
def child(script: str, db: Path, *, kill: bool = False) -> Iterator[subprocess.Popen]:
    """``script`` run in another process on ``db``, once it printed its first line (no sleeps:
    it says when it is ready); killed with SIGKILL (``kill``) or let go at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(db)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip()
        if kill:
            process.send_signal(signal.SIGKILL)
            process.wait()
        yield process
    finally:
        if process.poll() is None:
            process.communicate("")  # it reads its stdin to the end, then ends
        for pipe in (process.stdin, process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        process.wait()


def items(prefix: str, n: int) -> list[Item]:
    return [
        Item(f"{prefix}{i}", f"{prefix} text {i} " + "word " * 40, "bug" if i % 2 else "billing")
        for i in range(n)
    ]


def backup_of(db: Path, backup: Path) -> None:
    """A backup made as the README says (``sqlite3 hitl.db ".backup b.db"``: the backup API)."""
    source, copy = sqlite3.connect(db), sqlite3.connect(backup)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def crashed_after_a_backup(tmp_path: Path) -> tuple[Path, Path]:
    """A database with 50 items when backed up, then 500 more checkpointed into the file, then
    300 more committed by a writer killed before its checkpoint: 850 items, the last 300 only
    in the hitl.db-wal the crash left. Returns (database, backup)."""
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    with Store.open(db) as store:
        store.add_items(items("a", 50), "import")
    backup_of(db, backup)
    with Store.open(db) as store:  # closed: checkpointed into the file, the log starts afresh
        store.add_items(items("b", 500), "import")
    with child(CRASHING_WRITER, db, kill=True):
        pass
    assert db.with_name("hitl.db-wal").stat().st_size > 0  # the crash's log
    return db, backup


def check(db: Path) -> tuple[str, int, int]:
    """(PRAGMA integrity_check's first line, items, answers) of the database at ``db``."""
    conn = sqlite3.connect(db)
    try:
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:  # damaged past what the check reports in rows
            return str(exc), -1, -1
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM answers)"
        ).fetchone()
    finally:
        conn.close()
    return ok, *counts


def copied_as_cp_leaves_it(db: Path, backup: Path, where: Path) -> Path:
    """``cp backup.db hitl.db`` with the crash's log beside it, in a folder of its own (opening
    it applies the log for good)."""
    where.mkdir()
    shutil.copyfile(backup, where / db.name)
    shutil.copyfile(db.with_name(db.name + "-wal"), where / f"{db.name}-wal")
    return where / db.name


def test_a_backup_restored_after_a_crash_is_whole_and_what_was_there_is_kept(tmp_path: Path):
    db, backup = crashed_after_a_backup(tmp_path)
    # what the README said to do, shown on a copy: the crash's log goes over the backup
    copied = copied_as_cp_leaves_it(db, backup, tmp_path / "cp")
    assert check(copied)[0] != "ok"

    restored = run(db, "restore", str(backup))

    assert restored.exit_code == 0, restored.output
    assert check(db) == ("ok", 50, 50)  # the backup's
    assert not db.with_name("hitl.db-wal").exists()
    lines = restored.stdout.splitlines()
    assert lines[0].startswith(f"Restored {db} from {backup}: 50 items, 50 answers, the newest at ")
    kept = tmp_path / "hitl.db.before-restore"
    assert lines[1] == (
        f"The database that was there is kept as {kept} with hitl.db.before-restore-wal and"
        " hitl.db.before-restore-shm beside it (its log may hold its last answers):"
        f" `hitl restore {kept}` undoes this."
    )
    assert lines[2] == "Models: none in the backup, none in the models folder."
    assert "Copying backup.db" in restored.stderr  # the progress bar's label
    # kept with its log: SQLite opens them as one, the crash's last 300 items included
    assert check(kept) == ("ok", 850, 850)

    undone = run(db, "restore", str(kept))  # a second restore: the undo

    assert undone.exit_code == 0, undone.output
    assert check(db) == ("ok", 850, 850)
    assert f"kept as {tmp_path / 'hitl.db.before-restore.2'}:" in undone.stdout
    assert check(tmp_path / "hitl.db.before-restore.2") == ("ok", 50, 50)
    assert run(db, "stats").exit_code == 0


def test_a_backup_copied_over_a_crashed_database_with_cp_is_mended_by_hitl_restore(
    tmp_path: Path,
):
    db, backup = crashed_after_a_backup(tmp_path)
    shutil.copyfile(backup, db)  # the README's restore: the stale log stays beside it
    shutil.copyfile(db, tmp_path / "before.db")

    first = run(db, "restore", str(backup))

    assert first.exit_code == 0, first.output
    assert check(db) == ("ok", 50, 50)
    kept = tmp_path / "hitl.db.before-restore"
    assert (tmp_path / "hitl.db.before-restore-wal").stat().st_size > 0  # moved, not deleted
    assert kept.read_bytes() == (tmp_path / "before.db").read_bytes()

    second = run(db, "restore", str(backup))  # and again: the same, whole

    assert second.exit_code == 0, second.output
    assert check(db) == ("ok", 50, 50)
    assert (tmp_path / "hitl.db.before-restore.2").exists()
    assert (tmp_path / "hitl.db.before-restore-wal").exists()  # the first one's, still there


def test_the_damaged_line_names_hitl_restore_and_the_stale_log_beside_the_file(tmp_path: Path):
    db, backup = crashed_after_a_backup(tmp_path)
    copied = copied_as_cp_leaves_it(db, backup, tmp_path / "cp")

    exported = run(copied, "export")  # reads every text: a damaged page is met

    assert exported.exit_code == 1
    assert exported.stderr.splitlines() == [
        f"Error: {copied} is damaged (database disk image is malformed); restore it from a"
        " backup with `hitl restore BACKUP` (hitl.db-wal is beside it: a log left from before"
        " a backup was copied over the file is applied over the copy and may be the cause; a"
        " copy made with cp keeps it, `hitl restore` moves it aside)"
    ]


def test_refused_in_one_line_while_a_server_holds_the_database(tmp_path: Path):
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    with Store.open(db) as store:
        store.add_items(items("a", 5), "import")
    backup_of(db, backup)
    with Store.open(db) as store:
        store.add_items(items("b", 5), "import")
    before = db.read_bytes()

    with child(LOCK_HOLDER, db):
        refused = run(db, "restore", str(backup))

    assert refused.exit_code == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"Error: cannot restore {db} while a hitl server or demo runs on it")
    assert line.endswith("): stop it first, then run `hitl restore` again")
    assert db.read_bytes() == before
    assert not (tmp_path / "hitl.db.before-restore").exists()
    assert run(db, "restore", str(backup)).exit_code == 0  # once it stopped


def test_refused_in_one_line_while_another_process_has_the_database_open(tmp_path: Path):
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    with Store.open(db) as store:
        store.add_items(items("a", 5), "import")
    backup_of(db, backup)

    with child(OPEN_STORE, db):
        refused = run(db, "restore", str(backup))

    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        f"Error: cannot restore {db}: another process has it open (a hitl import, retrain or"
        " stats, or sqlite3?): let it finish or stop it, then run `hitl restore` again"
    ]
    assert not (tmp_path / "hitl.db.before-restore").exists()


def test_another_programs_file_and_a_damaged_backup_are_refused_naming_them(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items(items("a", 200), "import")
    before = db.read_bytes()
    other = tmp_path / "shop.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    damaged = tmp_path / "damaged.db"
    backup_of(db, damaged)
    with open(damaged, "r+b") as f:  # pages 2 to 5 overwritten: a disk's bad sectors
        f.seek(4096)
        f.write(b"\xa5" * 4 * 4096)

    empty = tmp_path / "empty.db"  # a backup job that failed on a full disk
    empty.write_bytes(b"")

    said = {path: run(db, "restore", str(path)) for path in (other, text, damaged, empty)}

    assert said[other].stderr.splitlines()[-1] == (
        f"Error: cannot restore from {other}: it is not a slack-hitl database (it has table"
        " customers, and no slack-hitl migrations)"
    )
    assert said[text].stderr.splitlines()[-1] == (
        f"Error: cannot restore from {text}: it is not a slack-hitl database (not an SQLite file)"
    )
    assert said[empty].stderr.splitlines()[-1] == (
        f"Error: cannot restore from {empty}: it is empty (0 bytes), not a backup; check the job"
        " that made it, and pick another backup"
    )
    last = said[damaged].stderr.splitlines()[-1]
    assert last.startswith(f"Error: cannot restore from {damaged}: it is ")
    assert "pick another backup" in last
    assert all(result.exit_code == 1 for result in said.values())
    assert db.read_bytes() == before
    assert not (tmp_path / "hitl.db.before-restore").exists()


def test_a_backup_read_with_another_files_log_beside_it_names_the_log_to_move_aside(
    tmp_path: Path,
):
    """A whole backup with a -wal beside it that another file left (copied over an older
    backup that had one): read together they are damaged, and the line said only "pick another
    backup", though this one, alone, restores."""
    db, backup = tmp_path / "hitl.db", tmp_path / "b.db"
    with Store.open(db) as store:
        store.add_items(items("a", 20), "import")
    backup_of(db, backup)
    other = tmp_path / "other.db"
    with Store.open(other) as store:  # another layout: its tables' pages are elsewhere
        store.add_items(items("o", 200), "import")
    writer = sqlite3.connect(other)
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # its writes stay in its log
    writer.execute("CREATE TABLE notes (x)")  # its schema page, in the log
    writer.commit()
    shutil.copy(tmp_path / "other.db-wal", tmp_path / "b.db-wal")
    writer.close()

    said = run(db, "restore", str(backup))
    assert said.exit_code == 1, said.output
    checking, last = said.stderr.splitlines()  # one line (quick_check's rows hold newlines)
    assert checking == f"Checking {backup} (PRAGMA quick_check)…"
    assert last.startswith(f"Error: cannot restore from {backup}: it is damaged (read with b.db")
    assert last.endswith(
        "; pick another backup, or move b.db-wal aside if it is not this backup's (another"
        " file's log left beside it) and run `hitl restore` again"
    )
    (tmp_path / "b.db-wal").rename(tmp_path / "stale-wal")
    assert run(db, "restore", str(backup)).exit_code == 0


def test_a_backup_read_with_its_log_leaves_its_folder_as_it_was_found(tmp_path: Path):
    """A backup copied with its -wal (a server ran): reading it with its log made a -shm beside
    it that stayed there, after the check that refused it as after the restore."""
    db, source = tmp_path / "hitl.db", tmp_path / "source.db"
    with Store.open(db) as store:
        store.add_items(items("a", 5), "import")
    with Store.open(source) as store:
        store.add_items(items("s", 5), "import")
    writer = sqlite3.connect(source)
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # its last writes stay in its log
    writer.execute("DELETE FROM items WHERE id = 's0'")
    writer.commit()
    shelf = tmp_path / "backups"
    shelf.mkdir()
    for side in ("", "-wal"):  # copied as a server ran: the file and its log
        shutil.copyfile(f"{source}{side}", shelf / f"b.db{side}")
    writer.close()
    assert sorted(path.name for path in shelf.iterdir()) == ["b.db", "b.db-wal"]

    restored = run(db, "restore", str(shelf / "b.db"))

    assert restored.exit_code == 0, restored.output
    assert "4 items" in restored.output  # read with its log
    assert sorted(path.name for path in shelf.iterdir()) == ["b.db", "b.db-wal"]
    (shelf / "b.db").write_bytes((shelf / "b.db").read_bytes()[:4096])  # cut short: refused
    refused = run(db, "restore", str(shelf / "b.db"))
    assert refused.exit_code == 1, refused.output
    assert sorted(path.name for path in shelf.iterdir()) == ["b.db", "b.db-wal"]


def test_restored_beside_a_newer_models_folder_it_names_the_versions_the_backup_lacks(
    tmp_path: Path,
):
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0  # v1
    backup_of(db, backup)
    assert run(db, "import", str(labeled_file(tmp_path, "b"))).exit_code == 0
    assert run(db, "retrain", "--force").exit_code == 0  # v2, after the backup

    restored = run(db, "restore", str(backup))

    assert restored.exit_code == 0, restored.output
    models = tmp_path / "hitl.db.models"
    assert (
        f"Models: the backup records v1 (champion v1); {models} holds v1, v2 (champion v2)."
        in restored.stdout.splitlines()
    )
    assert (
        f"Warning: {models} holds v2, which the backup does not record (trained after it,"
        " perhaps on answers the restore took out); it stays in the folder, and its champion"
        " v2 is the model served: `hitl models` lists it; `hitl rollback 1` makes the"
        " backup's champion v1 the champion again"
    ) in restored.stderr.splitlines()
    assert (models / "v2.json").exists()  # left where it was


# Another hitl process that opens the database, says so, and stores an item (as an import does)
# once told to (a line on its stdin).
OPEN_THEN_WRITE = """
import sys, types
from bot.store import Store
store = Store.open(sys.argv[1])
store.db.execute("SELECT count(*) FROM items").fetchone()
print("open", flush=True)
sys.stdin.readline()
store.add_items([types.SimpleNamespace(id="NEW", text="imported during the restore",
                 meta={}, label="bug")], "import")
print("stored", flush=True)
store.close()
"""


def has_new(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM items WHERE id = 'NEW'").fetchone()[0] == 1
    finally:
        conn.close()


def test_an_import_that_opens_the_database_after_the_check_is_not_lost_in_the_file_moved_aside(
    tmp_path: Path, monkeypatch
):
    """reader4 #3: the restore looked once whether another process had the database open, then
    copied for seconds; an import that opened it just after that look wrote into the file that
    was then moved aside, and both said they were done. Now the restore holds the write lock
    from its look to its swap and looks again (before the copy and after it): here it sees the
    import, is refused in one line, and the import's write goes into the database. (An import
    that opens the database during the copy waits for the lock: /tmp/reader4/race/race.py.)"""
    import bot.store.restore as restore_module

    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    with Store.open(db) as store:
        store.add_items(items("a", 5), "import")
    backup_of(db, backup)
    process = subprocess.Popen(
        [sys.executable, "-c", OPEN_THEN_WRITE, str(db)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "open"
        # it opened the database in the moment after the restore's first look
        monkeypatch.setattr(restore_module, "in_use", lambda _db: False)
        refused = run(db, "restore", str(backup))
        out, _ = process.communicate("go\n")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert refused.exit_code == 1, refused.output
    assert refused.stderr.splitlines()[-1] == (
        f"Error: cannot restore {db}: another process has it open (a hitl import, retrain or"
        " stats, or sqlite3?): let it finish or stop it, then run `hitl restore` again"
    )
    assert out.strip() == "stored" and process.returncode == 0
    assert has_new(db)  # in the database, not in a file moved aside
    assert not (tmp_path / "hitl.db.before-restore").exists()
    assert not (tmp_path / "hitl.db.restoring").exists()


def test_a_refused_restore_leaves_no_lock_file_behind(tmp_path: Path):
    """reader4 #12: `hitl --db typo.db restore junk.db` left typo.db.server.lock behind."""
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")

    refused = run(tmp_path / "typo.db", "restore", str(junk))

    assert refused.exit_code == 1
    assert "it is not a slack-hitl database" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]


def test_a_restore_refused_while_another_process_has_it_open_leaves_no_lock_file(tmp_path: Path):
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    with Store.open(db) as store:
        store.add_items(items("a", 5), "import")
    backup_of(db, backup)

    with child(OPEN_STORE, db):
        assert run(db, "restore", str(backup)).exit_code == 1
    assert not (tmp_path / "hitl.db.server.lock").exists()
    assert run(db, "restore", str(backup)).exit_code == 0
