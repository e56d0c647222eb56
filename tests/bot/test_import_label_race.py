"""`hitl import` while another process changes the label set (`hitl labels rename`, `merge`,
`retire`): each batch is written under the set in force when it is written, not the one the
import read when it started. The change runs between two batches (the file's rows are read
lazily, so it runs before the first row of the second batch is read), from a connection of
its own: deterministic, no threads, no timing."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import bot.cli
from bot.cli import cli
from bot.ingest import import_rows, rows_of_file
from bot.store import Store

BATCH = 2
NBSP = "card\u00a0payment"  # looks the same as "card payment": taken as it


def run(db: Path, *args: str):
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], catch_exceptions=False, prog_name="hitl"
    )


CHANGES = {
    "rename": ("labels", "rename", "card payment", "cardpay"),
    "merge": ("labels", "merge", "card payment", "billing"),
    "retire": ("labels", "retire", "card payment"),
}


def setup(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "hitl.db"
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"id": "s0", "text": "a seed about billing", "label": "billing"}))
    assert run(db, "import", str(seed)).exit_code == 0
    assert run(db, "labels", "add", "card payment").exit_code == 0
    assert run(db, "labels", "add", "refund").exit_code == 0  # a retire leaves two
    rows = [
        ("r0", "billing"),
        ("r1", "card payment"),  # batch 1: stored before the change, which rewrites it
        ("r2", "card payment"),  # batch 2 and after: written after the change
        ("r3", NBSP),
        ("r4", "billing"),
        ("r5", "card payment"),
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "text": f"row {i} about a card payment refund", "label": label})
            + "\n"
            for i, label in rows
        ),
        encoding="utf-8",
    )
    return db, path


def with_change_after_first_batch(monkeypatch: pytest.MonkeyPatch, db: Path, change: tuple):
    """`hitl import` (the real command, in process) with batches of ``BATCH`` rows, whose
    rows' reader runs ``change`` (the real `hitl labels` command: a store of its own) once the
    first batch is committed, before the next row is read."""
    done: list[object] = []

    def rows_with_change(*args, **kwargs) -> Iterator:
        def rows():
            for n, row in enumerate(rows_of_file(*args, **kwargs)):
                if n == BATCH and not done:  # the first batch is committed (on its last row)
                    with Store.open(db) as other:
                        assert other.count_items()["resolved"] >= BATCH  # it is stored
                    result = run(db, *change)
                    assert result.exit_code == 0, result.output
                    done.append(result)
                yield row

        return rows()

    monkeypatch.setattr(bot.cli, "rows_of_file", rows_with_change)
    monkeypatch.setattr(bot.cli, "import_rows", functools.partial(import_rows, batch_size=BATCH))
    return done


def decided(db: Path) -> dict[str, str]:
    with Store.open(db) as store:
        return dict(store.db.execute("SELECT item_id, label FROM labels").fetchall())


def in_force(db: Path) -> tuple[list[str], set[str]]:
    with Store.open(db) as store:
        return store.stored_labels() or [], store.retired_labels()


@pytest.mark.parametrize("kind", ["rename", "merge", "retire"])
def test_rows_written_after_a_label_change_are_checked_against_the_set_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
):
    db, path = setup(tmp_path)
    done = with_change_after_first_batch(monkeypatch, db, CHANGES[kind])
    result = run(db, "import", str(path))
    assert done, "the label change ran during the import"
    assert result.exit_code == 0, result.output
    labels = decided(db)
    active, retired = in_force(db)
    # no decided item carries a label that is not in force (the name renamed or merged away)
    assert {label for label in labels.values() if label not in active} <= retired
    assert "card payment" not in active
    new = {"rename": "cardpay", "merge": "billing", "retire": "card payment"}[kind]
    # the row of the first batch: rewritten by the change, as every row stored before it
    assert labels["r1"] == new
    # the rows written after it are refused, as a row of an import started after the change
    assert not {"r2", "r3", "r5"} & set(labels)
    assert labels["r4"] == "billing"
    told = result.stderr
    if kind == "rename":
        assert (
            'rows.jsonl line 3: label "card payment" is now "cardpay" (changed with `hitl'
            ' labels`): write "cardpay" in the file, or, to have "card payment" back, rename'
            " the label back with `hitl labels rename cardpay 'card payment'`, row skipped"
        ) in told
    elif kind == "merge":
        assert (
            'rows.jsonl line 3: label "card payment" is now "billing" (changed with `hitl'
            ' labels`): write "billing" in the file, row skipped'
        ) in told
    else:
        assert 'rows.jsonl line 3: label "card payment" is not in the label set' in told
    assert "rows.jsonl line 4: label " in told and "line 6: label " in told
    # the same rows imported again now are refused the same way (outside a race)
    again = run(db, "import", str(path))
    for line in (3, 4, 6):
        assert f"rows.jsonl line {line}: label " in again.stderr
    if kind == "retire":  # the retired label's items wait in review, every one
        with Store.open(db) as store:
            waiting = {
                row[0]
                for row in store.db.execute("SELECT item_id FROM reviews WHERE decided_at IS NULL")
            }
        assert {i for i, label in labels.items() if label == "card payment"} <= waiting


def test_a_batch_with_no_change_to_the_set_reads_only_its_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Without a change, the set is read once, at the start, however many batches."""
    db, path = setup(tmp_path)
    reads: list[int] = []
    real = Store.label_aliases

    def counted(self):
        reads.append(1)
        return real(self)

    monkeypatch.setattr(Store, "label_aliases", counted)
    with Store.open(db) as store:
        summary = import_rows(store, path, rows_of_file(path), triggered_by="test", batch_size=1)
    assert (summary.imported, summary.rejected) == (6, 0)
    assert len(reads) == 1


def test_a_change_between_a_batchs_check_and_its_write_is_looked_at_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The rename lands after the second batch's labels were checked and before its write
    takes the write lock: the write sees the set's mark moved, writes nothing, and the batch
    is checked again (no transaction spans both: ``store_rows``)."""
    db, path = setup(tmp_path)
    real = Store.add_items
    ran: list[object] = []

    def rename_first(self, rows, source, **kwargs):
        rows = list(rows)
        if any(row.id == "r2" for row in rows) and not ran:  # the second batch
            result = run(db, *CHANGES["rename"])
            assert result.exit_code == 0, result.output
            ran.append(result)
        return real(self, rows, source, **kwargs)

    monkeypatch.setattr(Store, "add_items", rename_first)
    monkeypatch.setattr(bot.cli, "import_rows", functools.partial(import_rows, batch_size=BATCH))
    result = run(db, "import", str(path))
    assert ran and result.exit_code == 0, result.output
    labels = decided(db)
    assert labels["r1"] == "cardpay"  # stored before: rewritten by the rename
    assert not {"r2", "r3", "r5"} & set(labels)  # checked again: refused, as after a rename
    assert labels["r4"] == "billing"
    assert 'rows.jsonl line 3: label "card payment" is now "cardpay"' in result.stderr
