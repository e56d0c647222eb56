"""A plain `hitl import` whose rows disagree with what is stored, or with each other, from an
outside tester's interop report: a corrected re-import (a label changed in a spreadsheet) was
"N duplicates" and nothing else; a file giving one item two labels kept the first silently; an
export's gold labels were left out without a word."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.ingest import import_rows, rows_of_file
from bot.ingest import load as load_module
from bot.store import Store


def run(db: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], input=stdin, catch_exceptions=False, prog_name="hitl"
    )


def labels_of(db: Path) -> dict[str, str]:
    return {
        record["id"]: record["label"]
        for record in map(json.loads, run(db, "export").stdout.splitlines())
    }


# -- H2: a label that differs from the stored one ---------------------------------------------


def test_a_row_whose_label_differs_from_the_stored_one_is_named_and_counted(tmp_path: Path):
    db = tmp_path / "hitl.db"
    first = tmp_path / "v1.csv"
    first.write_text("id,text,label\nT1,my card never came,refund\n-7,where is my refund,refund\n")
    fixed = tmp_path / "v2.csv"
    fixed.write_text(
        "id,text,label\nT1,my card never came,card_arrival\n-7,where is my refund,-1\n"
        "T3,a new one,refund\n"
    )
    assert run(db, "import", str(first)).exit_code == 0

    result = run(db, "import", str(fixed))

    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        'v2.csv line 2: id "T1" is stored with the label "refund"; this row\'s "card_arrival"'
        " was not applied: hitl labels set T1 card_arrival",
        'v2.csv line 3: id "-7" is stored with the label "refund"; this row\'s "-1" was not'
        " applied: hitl labels set -- -7 -1",  # "--": an id or label like an option
    ]
    assert result.stdout == (
        "v2.csv: read 3 rows, imported 1 (1 with labels), 2 duplicates (2 labels differ from"
        " the stored ones, not applied: `hitl labels set ID LABEL` labels a stored item),"
        " 0 rejected\n"
    )
    assert labels_of(db) == {"T1": "refund", "-7": "refund", "T3": "refund"}  # not changed
    with Store.open(db) as store:
        [record] = [r for r in store.runs("import") if r["detail"]["file"] == str(fixed)]
        assert record["detail"]["labels_differ"] == 2
    # the commands given apply them; the same file then says nothing
    assert run(db, "labels", "set", "T1", "card_arrival").exit_code == 0
    assert run(db, "labels", "set", "--", "-7", "-1").exit_code == 0
    again = run(db, "import", str(fixed))
    assert again.stderr == ""
    assert again.stdout.endswith("3 duplicates, 0 rejected\n")


# -- H2: one file, two labels for one item ------------------------------------------------------


def test_a_file_giving_one_item_two_labels_rejects_the_later_row_naming_both_lines(
    tmp_path: Path,
):
    path = tmp_path / "votes.csv"
    path.write_text(
        "id,text,label\n"
        "T1,my card never came,card_arrival\n"
        "T2,where is my refund,refund\n"
        "T1,my card never came,refund\n"  # contradicts line 2
        "T1,my card never came,card_arrival\n"  # agrees: a plain duplicate
        "T9,another text,refund\n"
        "T9,a third text,bug\n"  # another text under T9
    )
    db = tmp_path / "hitl.db"

    result = run(db, "import", str(path))

    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert lines[0] == (  # the errors in line order
        'votes.csv line 4: id "T1" has the label "card_arrival" on line 2 of this file, and this'
        ' row gives it another, "refund": one item has one label; fix one of the two rows, row'
        " skipped"
    )
    assert lines[1].startswith('votes.csv line 7: id "T9" is stored with another text')
    assert len(lines) == 2
    assert result.stdout == (
        "votes.csv: read 6 rows, imported 3 (3 with labels), 1 duplicate, 2 rejected\n"
    )
    assert labels_of(db) == {"T1": "card_arrival", "T2": "refund", "T9": "refund"}


def test_without_ids_the_same_text_twice_with_two_labels_is_rejected(tmp_path: Path):
    path = tmp_path / "contra.jsonl"
    path.write_text(
        json.dumps({"text": "my card never came", "label": "card_arrival"})
        + "\n"
        + json.dumps({"text": "my card never came", "label": "refund"})
        + "\n"
    )
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.stderr.startswith("contra.jsonl line 2: id ")
    assert 'has the label "card_arrival" on line 1 of this file' in result.stderr
    assert result.stdout.endswith("imported 1 (1 with labels), 0 duplicates, 1 rejected\n")


def test_two_labels_far_apart_are_found_across_batches_and_named_past_the_memory_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The first labels are kept for IN_MEMORY ids (the import's memory stays bounded): a row
    # contradicting one met past that is not refused, but named as a label not applied.
    monkeypatch.setattr(load_module._FirstLabels, "IN_MEMORY", 3)
    path = tmp_path / "big.csv"
    rows = [f"r{n},text {n},{'a' if n % 2 else 'b'}" for n in range(10)]
    rows += ["r1,text 1,b", "r8,text 8,b", "r2,text 2,a", "r5,text 5,b"]
    path.write_text("id,text,label\n" + "\n".join(rows) + "\n")
    errors: list[str] = []
    unapplied: list[str] = []
    with Store.open(tmp_path / "hitl.db") as store:
        summary = import_rows(
            store,
            path,
            rows_of_file(path),
            triggered_by="test",
            on_error=errors.append,
            on_unapplied=unapplied.append,
            batch_size=4,
        )
    assert [m.split(":")[0] for m in errors] == ["big.csv line 12", "big.csv line 14"]
    assert 'has the label "a" on line 3 of this file' in errors[0]
    assert 'has the label "b" on line 4 of this file' in errors[1]
    assert unapplied == [
        'big.csv line 15: id "r5" is stored with the label "a"; this row\'s "b" was not applied:'
        " hitl labels set r5 b"
    ]
    assert (summary.imported, summary.duplicates, summary.rejected) == (10, 2, 2)
    assert summary.labels_differ == 1


# -- M7: a plain import of an export's gold labels ---------------------------------------------


def test_a_plain_import_of_an_export_with_gold_items_says_so(tmp_path: Path):
    record = {
        "id": "G1",
        "text": "card not delivered yet",
        "label": "refund",
        "votes": 1,
        "agreement": 1.0,
        "annotators": ["U0CAL"],
        "resolved_at": "2026-01-01T10:00:00.000+00:00",
        "meta": {},
        "answers": [
            {"user_id": "U0CAL", "label": "refund", "created_at": "2026-01-01T10:00:00.000+00:00"}
        ],
        "label_set": "v0:00000000",
        "gold": "card_arrival",
    }
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "id": "P", "gold": None}))
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.stderr == (
        "export.jsonl: 1 row carries a gold label (column gold), which a plain import leaves"
        """ out: those items train like any other; `jq -c 'select((.gold // "") != "")'"""
        f" {path} | hitl import --gold - --format jsonl --label-column gold` keeps them gold\n"
    )
    # the command keeps them gold, the rows without one left out (not a line each)
    gold_rows = [json.loads(line) for line in path.read_text().splitlines()]
    gold_rows = [r for r in gold_rows if (r.get("gold") or "") != ""]  # as jq selects them
    lines = "".join(json.dumps(r) + "\n" for r in gold_rows)
    again = run(tmp_path / "hitl.db", "import", "--gold", "-", "--format", "jsonl",
                "--label-column", "gold", stdin=lines)  # fmt: skip
    assert again.exit_code == 0 and "0 rejected" in again.stdout, again.output
    # a re-import into the database the export came from: its items are gold already
    quiet = run(tmp_path / "hitl.db", "import", str(path))
    assert "gold label" not in quiet.stderr, quiet.stderr


# -- two imports of one file at once ----------------------------------------------------------


def test_the_same_file_imported_twice_at_once_stores_it_once_and_counts_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A cron job and a person run `hitl import tickets.csv` at the same time. The import
    read which of its ids were stored before its write's transaction, and the other one
    stored them in between: "Error: …: database error (UNIQUE constraint failed: items.id).
    No row was stored: run the import again once that is fixed", with nothing to fix. The
    other import (the real ``import_rows``, a store of its own, in a thread) runs as soon as
    this one has read which ids are stored: inside this one's write, it waits for it."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "tickets.csv"
    path.write_text("id,text,label\nt1,refund please,billing\nt2,app crashes,\n")
    assert run(db, "config").exit_code == 0  # the database, made by a command before
    looked_up = Store.existing_item_ids
    others: list[threading.Thread] = []
    summaries = []

    def other_import() -> None:
        with Store.open(db) as store:
            rows = rows_of_file(path)
            summaries.append(import_rows(store, path, rows, triggered_by="cli:raj"))

    def existing_item_ids(store: Store, ids):
        found = looked_up(store, ids)
        if sorted(ids) == ["t1", "t2"] and not others:
            others.append(threading.Thread(target=other_import))
            others[0].start()
            if not store.db.conn.in_transaction:  # read before the write: the other one
                others[0].join()  # stores the rows before this one's write begins
        return found

    monkeypatch.setattr(Store, "existing_item_ids", existing_item_ids)
    result = run(db, "import", str(path))
    others[0].join()
    assert result.exit_code == 0, result.output
    assert result.output == (
        "tickets.csv: read 2 rows, imported 2 (1 with labels), 0 duplicates, 0 rejected\n"
    )
    assert [(s.imported, s.duplicates) for s in summaries] == [(0, 2)]  # the other one's
    with Store.open(db) as store:
        assert store.count_items() == {**store.count_items(), "new": 1, "resolved": 1}
        assert store.count_answers() == 1
