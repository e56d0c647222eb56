"""A signal (Ctrl-C, SIGTERM, SIGHUP) that comes just after a command's change is committed: the
one line says it is committed, with what the command says after it (a delete's counts and the
models that may keep the items' words), never "nothing was deleted" or a bare "Stopped by";
one that comes just before the commit says nothing was changed. And `hitl find` stopped by a
signal says "Stopped by", with 128 + the signal, not "database error" and 1 (an outside test
of the shell: a signal during COMMIT, a C call, has its Python handler run as COMMIT returns).

Each case runs `hitl` in a child process (``cli.main``, whose handlers take SIGTERM and SIGHUP)
and sends the real signal to it from inside, at one chosen point: as the store's ``COMMIT``
returns (a connection whose ``execute`` sends it, ``signal.raise_signal``, once the COMMIT of
a write transaction is done), just before that ``COMMIT`` is sent, or as a function the
command calls returns."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store import Store
from tests.bot.test_cli_interrupts import (
    NAMES,
    ROOT,
    count_items,
    ctrl_c_as_in_a_terminal,
    env,
    run,
    write_rows,
)

SCRIPT = """
import importlib, signal, sqlite3, sys

SIG, WHEN, TARGET, NTH = {sig}, {when!r}, {target!r}, {nth}
armed = [False]


class SignalAtCommit(sqlite3.Connection):
    writing = False  # in a write transaction (the store's: BEGIN IMMEDIATE), not a read's

    def execute(self, sql, *args):
        if sql == "BEGIN IMMEDIATE":
            self.writing = True
        at_commit = armed[0] and sql == "COMMIT" and self.writing
        if at_commit and WHEN == "before commit":
            armed[0] = False
            signal.raise_signal(SIG)  # in the transaction: the COMMIT is not sent
        cursor = super().execute(sql, *args)
        if at_commit and WHEN == "after commit":
            armed[0] = False
            signal.raise_signal(SIG)  # the COMMIT is done: as one that came during it
        if sql in ("COMMIT", "ROLLBACK"):
            self.writing = False
        return cursor


connect = sqlite3.connect
sqlite3.connect = lambda *args, **kwargs: connect(*args, factory=SignalAtCommit, **kwargs)

module, _, name = TARGET.partition(":")
owner = importlib.import_module(module)
*path, attr = name.split(".")
for step in path:
    owner = getattr(owner, step)
real, calls = getattr(owner, attr), []


def entering(frame, event, arg):
    if event == "call":  # a Python function is entered, before its first line
        sys.setprofile(None)
        signal.raise_signal(SIG)


def arming(*args, **kwargs):
    calls.append(1)
    if len(calls) == NTH and WHEN in ("after commit", "before commit"):
        armed[0] = True  # the next COMMIT: this call's
    result = real(*args, **kwargs)
    if len(calls) == NTH and WHEN == "returned":
        signal.raise_signal(SIG)  # as it returns, before its caller has the result
    if len(calls) == NTH and WHEN == "next entered":
        sys.setprofile(entering)  # as the next Python function called is entered
    return result


setattr(owner, attr, arming)
from bot import cli

sys.argv = ["hitl", "--db", {db!r}, *{args!r}]
cli.main()
"""


def signalled(
    db: Path, args: list[str], sig: int, when: str, target: str, nth: int = 1
) -> tuple[int, str, str]:
    """`hitl --db DB ARGS` with ``sig`` sent ``when`` ("after commit", "before commit": of the
    first write transaction's COMMIT after the ``nth`` call of ``target``; "returned": as that
    call returns; "next entered": as the next Python function called after it returns is
    entered); its exit status, stdout and the last line of its stderr."""
    script = SCRIPT.format(sig=int(sig), when=when, target=target, nth=nth, db=str(db), args=args)
    with ctrl_c_as_in_a_terminal():
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            env=env(),
            cwd=ROOT,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    return done.returncode, done.stdout.decode(), lines[-1] if lines else ""


def labeled_db(tmp_path: Path, n: int = 6) -> Path:
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", n))).exit_code == 0
    return db


def one(db: Path, sql: str, *params: object) -> object:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchone()[0]


# --- hitl delete ------------------------------------------------------------------------------


def db_with_a_model(tmp_path: Path) -> Path:
    """Six labeled items, and a model (v1) made after their labels: a delete names it."""
    db = labeled_db(tmp_path)
    with Store.open(db) as store:
        store.db["models"].insert(
            {
                "version": 1,
                "status": "champion",
                "created_at": "2099-01-01T00:00:00+00:00",
                "n_train": 6,
                "label_set": "[]",
                "path": "v1.skops",
                "sha256": "0" * 64,
            }
        )
    return db


DELETED = (
    "; the delete is committed. Deleted 3 items: 3 answers, 3 labels. Models: v1 was trained"
    " while one of them had a label, and may keep some of its words in the vocabulary:"
    " `HITL_KEEP_MODELS=0 hitl retrain --force` trains a model without it, makes it the"
    " champion and deletes every other model file (no rollback to them after). Backups and"
    " exports made before keep these items: delete them there too."
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=NAMES.get)
def test_a_delete_signalled_as_its_commit_returns_says_what_it_deleted(tmp_path: Path, sig: int):
    """It said "nothing was deleted (the items go together or not at all)" after deleting
    them, and never showed the count or the models that may keep their words."""
    db = db_with_a_model(tmp_path)
    args = ["delete", "T0", "T1", "T2", "--yes", "--reason", "erasure"]
    code, out, last = signalled(db, args, sig, "after commit", "bot.store:Store.delete_items")
    assert code == 128 + sig, last
    assert last == f"Stopped by {NAMES[sig]}{DELETED}"
    assert count_items(db) == 3
    assert one(db, "SELECT count(*) FROM deleted_items") == 3


def test_a_delete_signalled_as_it_returns_says_what_it_deleted(tmp_path: Path):
    """The interrupt comes after the store's method returned, before the command has what it
    deleted: the store kept it."""
    db = db_with_a_model(tmp_path)
    args = ["delete", "T0", "T1", "T2", "--yes"]
    code, _, last = signalled(db, args, signal.SIGTERM, "returned", "bot.store:Store.delete_items")
    assert (code, last) == (143, f"Stopped by SIGTERM{DELETED}")
    assert count_items(db) == 3


def test_a_delete_signalled_before_its_commit_deleted_nothing_and_says_so(tmp_path: Path):
    db = db_with_a_model(tmp_path)
    args = ["delete", "T0", "T1", "T2", "--yes"]
    code, out, last = signalled(
        db, args, signal.SIGTERM, "before commit", "bot.store:Store.delete_items"
    )
    assert (code, out) == (143, "")
    assert last == "Stopped by SIGTERM; nothing was deleted (the items go together or not at all)"
    assert count_items(db) == 6
    assert one(db, "SELECT count(*) FROM deleted_items") == 0


# --- hitl labels set, hitl labels rename --------------------------------------------------------


def labels_of(db: Path, *ids: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [
            conn.execute("SELECT label FROM labels WHERE item_id = ?", [i]).fetchone()[0]
            for i in ids
        ]


SET = (
    '; the change is committed: 2 items now labeled "shipping" (`hitl labels history` lists'
    " what changed)"
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=NAMES.get)
def test_labels_set_signalled_as_its_commit_returns_says_it_is_committed(tmp_path: Path, sig: int):
    """It said "nothing was changed (the items are set together or not at all)" although the
    labels were set."""
    db = labeled_db(tmp_path)
    args = ["labels", "set", "T0", "T1", "shipping"]
    code, _, last = signalled(db, args, sig, "after commit", "bot.store:Store.set_label")
    assert (code, last) == (128 + sig, f"Stopped by {NAMES[sig]}{SET}")
    assert labels_of(db, "T0", "T1") == ["shipping", "shipping"]


def test_labels_set_signalled_while_it_writes_its_lines_says_it_is_committed(tmp_path: Path):
    """A reader that takes the lines slowly (`| less`): the signal came while they were
    written, after the commit, and the line was a bare "Stopped by SIGTERM"."""
    db = labeled_db(tmp_path)
    args = ["labels", "set", "T0", "T1", "shipping"]
    code, out, last = signalled(db, args, signal.SIGTERM, "returned", "click:echo")
    assert (code, last) == (143, f"Stopped by SIGTERM{SET}")
    assert out == "T0: billing → shipping\n"
    assert labels_of(db, "T0", "T1") == ["shipping", "shipping"]


def test_labels_set_signalled_before_its_commit_says_nothing_was_changed(tmp_path: Path):
    db = labeled_db(tmp_path)
    args = ["labels", "set", "T0", "T1", "shipping"]
    code, _, last = signalled(
        db, args, signal.SIGTERM, "before commit", "bot.store:Store.set_label"
    )
    assert (code, last) == (
        143,
        "Stopped by SIGTERM; nothing was changed (the items are set together or not at all)",
    )
    assert labels_of(db, "T0", "T1") == ["billing", "bug"]


@pytest.mark.parametrize("when", ["after commit", "returned"])
def test_labels_rename_signalled_after_its_commit_says_it_is_committed(tmp_path: Path, when: str):
    """It printed a bare "Stopped by SIGTERM" although `hitl labels show` listed the new name."""
    db = labeled_db(tmp_path)
    code, _, last = signalled(
        db,
        ["labels", "rename", "bug", "defect"],
        signal.SIGTERM,
        when,
        "bot.store:Store.change_label_set",
    )
    assert (code, last) == (
        143,
        'Stopped by SIGTERM: the rename "bug" → "defect" is committed (3 labels in the set now;'
        " `hitl labels show` lists them); not every stored prediction is under the new set yet:"
        " `hitl serve`, or the next label change, puts them there",
    )
    assert labels_of(db, "T1") == ["defect"]


def test_labels_rename_signalled_before_its_commit_says_nothing_was_changed(tmp_path: Path):
    db = labeled_db(tmp_path)
    code, _, last = signalled(
        db,
        ["labels", "rename", "bug", "defect"],
        signal.SIGHUP,
        "before commit",
        "bot.store:Store.change_label_set",
    )
    assert (code, last) == (129, "Stopped by SIGHUP; nothing was changed (the rename was not made)")
    assert labels_of(db, "T1") == ["bug"]


# --- hitl import ------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["after commit", "returned"])
def test_an_import_signalled_as_a_batch_commits_counts_that_batch(tmp_path: Path, when: str):
    """The line said one batch of 1,000 fewer than were stored: the one whose commit the signal
    came in (the same import run again found that many more duplicates)."""
    db, rows = tmp_path / "hitl.db", write_rows(tmp_path / "rows.jsonl", 2500)
    code, _, last = signalled(
        db, ["import", str(rows)], signal.SIGTERM, when, "bot.store:Store.add_items", nth=2
    )
    assert code == 143, last
    assert last == (
        "Stopped by SIGTERM: 2,000 rows imported before it (committed, 2,000 with labels); run"
        " the same import again for the rest: rows already stored are skipped"
    )
    assert count_items(db) == 2000


# --- hitl people anonymise --------------------------------------------------------------------


def test_anonymise_signalled_as_its_commit_returns_says_it_is_committed(tmp_path: Path):
    """`hitl people anonymise` has the same "nothing was changed" for any interrupt."""
    db = tmp_path / "hitl.db"
    rows = write_rows(tmp_path / "r.jsonl", 2, labeled=False)
    assert run("--db", str(db), "import", str(rows)).exit_code == 0
    with Store.open(db) as store:  # an answer as a button click stores it
        store.record_answer(
            "T0", "U0LEAVER", "bug", source="button", dedupe_key="T0:1", votes_needed=2
        )
    code, _, last = signalled(
        db,
        ["people", "anonymise", "U0LEAVER", "--as", "former-ana"],
        signal.SIGTERM,
        "after commit",
        "bot.store:Store.anonymise_people",
    )
    assert (code, last) == (
        143,
        "Stopped by SIGTERM; the anonymisation is committed: U0LEAVER is now former-ana; backups"
        " and exports made before keep the ids: anonymise or delete them there",
    )
    assert one(db, "SELECT count(*) FROM answers WHERE user_id = 'U0LEAVER'") == 0
    assert one(db, "SELECT count(*) FROM answers WHERE user_id = 'former-ana'") == 1


# --- hitl find --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "when"),
    [
        pytest.param(sig, when, id=f"{NAMES[sig]}-{when}")
        for when in ("returned", "next entered")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    ],
)
def test_find_signalled_inside_its_search_says_stopped_with_the_signals_status(
    tmp_path: Path, sig: int, when: str
):
    """The signal's interrupt is raised in the Python function SQLite calls for each value:
    inside it ("returned": as ``_folded`` returns in ``hitl_holds``), or as the function SQLite
    calls next is entered ("next entered": where a signal that came while SQLite ran has its
    handler run). sqlite3 made it "user-defined function raised exception", told as
    "Error: <db>: database error (…)" with exit 1."""
    db = tmp_path / "hitl.db"
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"t{n}", "text": f"ticket {n} from jane.doe@example.com"}) + "\n"
            for n in range(5)
        )
    )
    assert run("--db", str(db), "import", str(rows)).exit_code == 0
    # the first call folds the text looked for; the second, a value, inside the statement
    code, out, last = signalled(
        db, ["find", "jane.doe@example.com"], sig, when, "bot.store.erasure:_folded", nth=2
    )
    assert (code, last) == (128 + sig, f"Stopped by {NAMES[sig]}")
    assert out == ""
