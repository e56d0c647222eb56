"""Import defects found by a code review (reader4), each shown by a test that failed before
its fix: a deleted legacy-id item brought back by a re-import (#4), a CSV multi-line row with
a field too many read again as junk rows (#5), decimal labels changed by a CSV round trip
(#6), a rejected row fixing a label's spelling and errors out of line order (#9), unnamed CSV
columns (#10), a JSONL "meta" object taken for an export (#8), and the byte column of a JSONL
line that is not UTF-8 (#13)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import unicodedata
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.ingest import Row, RowError, import_rows, item_id_for_text, read_items
from bot.store import Store
from tests.bot.harness import Item


def run(db: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=env)


def rows_of(path: Path, **kwargs) -> list[Row | RowError]:
    return list(read_items(path, on_note=lambda line: None, **kwargs))


def shape(rows: list[Row | RowError]) -> list[tuple]:
    return [
        (r.line, r.reason) if isinstance(r, RowError) else (r.line, r.id, r.text, r.label, r.meta)
        for r in rows
    ]


# -- #4: `hitl delete` of an item an older version stored under a legacy id --------------------

TEXT = unicodedata.normalize("NFD", "carte 4111 1111 1111 1111\r\nexp 12/29 — café")


def test_a_deleted_legacy_id_item_stays_deleted_when_its_file_is_imported_again(tmp_path: Path):
    db = tmp_path / "hitl.db"
    old = "t" + hashlib.sha256(TEXT.encode()).hexdigest()[:16]  # the text as it came
    assert old != item_id_for_text(TEXT)
    with Store.open(db) as store:  # as an older version stored it
        store.add_items([Item(old, TEXT)], "import")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # m024 still to run
        conn.execute("DROP TABLE legacy_text_ids")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm024_legacy_text_ids'")
    rows = tmp_path / "tickets.jsonl"
    rows.write_text(json.dumps({"text": TEXT}) + "\n")
    first = run(db, "import", str(rows))
    assert "1 duplicate" in first.output, first.output  # the stored item, found by m024
    gone = run(db, "delete", old, "--yes", "--reason", "erasure")
    assert gone.exit_code == 0, gone.output
    again = run(db, "import", str(rows))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        texts = [t for (t,) in conn.execute("SELECT text FROM items")]
    assert texts == [], f"the deleted text is stored again: {again.output!r}"
    assert "imported 0" in again.output, again.output


# -- #5: a properly quoted multi-line text in a row with a field too many --------------------


def test_a_quoted_multiline_row_with_a_field_too_many_is_one_rejected_row(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text('id,text,label\nT1,"Hello\nworld",billing,\nT2,fine,bug\n', encoding="utf-8")
    assert shape(rows_of(path)) == [
        (2, "has 4 fields, the header has 3 (the row runs over lines 2-3)"),
        (4, "T2", "fine", "bug", {}),
    ]


def test_the_second_line_of_such_a_row_never_gives_a_label(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text('id,text,label\n6,"spans\ntwo",e,extra\n7,"also\nover, two, lines",f,g\n')
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert "read 2 rows" in result.output and "2 rejected" in result.output, result.output
    assert result.exit_code == 1 and not db.exists()  # nothing imported: no junk row, no label


def test_an_unterminated_quote_that_swallowed_rows_is_still_read_again(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text('id,text,label\n1,"open,a\n2,two,b\n3,3",x,c\n4,four,d\n', encoding="utf-8")
    result = shape(rows_of(path))
    assert result[0][0] == 2 and 'a quote in field "text" may be unterminated' in result[0][1]
    assert (3, "2", "two", "b", {}) in result and (5, "4", "four", "d", {}) in result


# -- #6: a label is text: "4.0" stays "4.0" ----------------------------------------------------


def stored_labels(db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT item_id, label FROM labels ORDER BY item_id"))


def test_a_decimal_label_survives_a_csv_export_and_import(tmp_path: Path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id":"a","text":"good","label":"4.0"}\n{"id":"b","text":"bad","label":"1.0"}\n'
    )
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    assert run(first, "import", str(source), "-q").exit_code == 0
    exported = tmp_path / "e.csv"
    assert run(first, "export", "--format", "csv", "-o", str(exported)).exit_code == 0
    assert run(second, "import", str(exported), "-q").exit_code == 0
    assert stored_labels(second) == {"a": "4.0", "b": "1.0"}
    again = run(first, "import", str(exported))  # into the database it came from: all the same
    assert again.exit_code == 0 and "was not applied" not in again.output, again.output


def test_configured_decimal_labels_can_be_imported_from_csv(tmp_path: Path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nfine,1.0\nbad,2.0\n")
    db = tmp_path / "h.db"
    result = run(db, "import", str(path), env={"HITL_LABELS": "1.0,2.0"})
    assert result.exit_code == 0, result.output
    assert sorted(stored_labels(db).values()) == ["1.0", "2.0"]


# -- #9: a rejected row fixes no spelling; errors in line order ---------------------------------


def test_a_row_rejected_for_its_id_does_not_fix_a_labels_spelling(tmp_path: Path):
    db = tmp_path / "a.db"
    first = tmp_path / "first.jsonl"
    first.write_text('{"id":"X","text":"stored text"}\n')
    assert run(db, "import", str(first), "-q").exit_code == 0
    second = tmp_path / "second.jsonl"
    second.write_text(
        '{"id":"X","text":"another text","label":"Bug"}\n'
        '{"id":"Y","text":"crash on start","label":"bug"}\n'
        '{"id":"Z","text":"crash on exit","label":"BUG"}\n'
    )
    result = run(db, "import", str(second))
    assert stored_labels(db) == {"Y": "bug"}, result.output
    errors = [line for line in result.output.splitlines() if "row skipped" in line]
    assert [line.split(":")[0] for line in errors] == ["second.jsonl line 1", "second.jsonl line 3"]
    assert 'differs from the label "bug"' in errors[1]


def test_rejected_rows_are_told_in_line_order(tmp_path: Path):
    db = tmp_path / "a.db"
    first = tmp_path / "first.jsonl"
    first.write_text('{"id":"X","text":"stored text"}\n')
    assert run(db, "import", str(first), "-q").exit_code == 0
    second = tmp_path / "second.jsonl"
    second.write_text(
        '{"id":"X","text":"another text"}\n'  # rejected when its batch is stored
        '{"id":"W","text":""}\n'  # rejected as it is read
        '{"id":"V","text":"fine"}\n'
    )
    result = run(db, "import", str(second))
    lines = [line.split(":")[0] for line in result.output.splitlines() if "row skipped" in line]
    assert lines == ["second.jsonl line 1", "second.jsonl line 2"], result.output


def test_a_case_twin_of_an_earlier_stored_row_of_the_file_is_still_refused(tmp_path: Path):
    db = tmp_path / "a.db"
    path = tmp_path / "f.jsonl"
    path.write_text(
        '{"id":"A","text":"one","label":"Bug"}\n{"id":"B","text":"two","label":"bug"}\n'
        '{"id":"C","text":"three","label":"Bug"}\n'
    )
    result = run(db, "import", str(path))
    assert stored_labels(db) == {"A": "Bug", "C": "Bug"}, result.output
    assert 'line 2: label "bug" differs from the label "Bug"' in result.output


# -- #10: columns without a name ----------------------------------------------------------------


def test_two_unnamed_columns_keep_their_values_under_their_places(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text("text,label,,\nhello,a,,\nworld,b,order 4411,VIP\n")
    assert shape(rows_of(path)) == [
        (2, item_id_for_text("hello"), "hello", "a", {}),
        (3, item_id_for_text("world"), "world", "b", {"column 3": "order 4411", "column 4": "VIP"}),
    ]


def test_an_unnamed_column_in_an_export_like_header_is_named_too(tmp_path: Path):
    path = tmp_path / "in.csv"  # "meta" in the header: read through _make_row
    path.write_text(',text,meta\n0,hello,"{""a"": 1}"\n,world,\n')
    assert shape(rows_of(path)) == [
        (2, item_id_for_text("hello"), "hello", None, {"a": 1, "column 1": "0"}),
        (3, item_id_for_text("world"), "world", None, {"meta": ""}),
    ]


def test_a_header_naming_a_column_as_an_unnamed_one_is_refused(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text("text,,column 2\nhello,x,y\n")
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 1
    assert 'a column without a name (column 2) and one named "column 2"' in result.output


# -- #8: a "meta" object does not make a file a hitl export --------------------------------------


def test_fields_beside_a_meta_object_of_another_tool_are_kept_as_meta(tmp_path: Path):
    path = tmp_path / "posts.jsonl"
    path.write_text(
        '{"id": "r1", "text": "my printer is on fire", "votes": 123, "answers": ["unplug it"],'
        ' "gold": "x", "meta": {"subreddit": "printers"}}\n'
        '{"id": "r2", "text": "how do I reset it", "votes": 7, "meta": {"subreddit": "printers"},'
        ' "label": "how_to"}\n'
    )
    first, second = rows_of(path)
    assert isinstance(first, Row) and first.meta == {
        "subreddit": "printers",
        "votes": 123,
        "answers": ["unplug it"],
        "gold": "x",
    }
    assert first.gold is None and first.provenance is None
    assert isinstance(second, Row), second
    assert (second.label, second.meta) == ("how_to", {"subreddit": "printers", "votes": 7})


def test_a_row_with_every_export_field_is_still_read_as_an_export(tmp_path: Path):
    path = tmp_path / "export.jsonl"
    record = {
        "id": "a", "text": "t", "label": "x", "votes": 1, "agreement": 1.0,
        "annotators": ["U1"], "resolved_at": "2026-01-01T10:00:00.000+00:00",
        "meta": {"k": "v"}, "answers": [], "label_set": "v0:00000000", "gold": "y",
    }  # fmt: skip
    path.write_text(json.dumps(record) + "\n")
    [row] = rows_of(path)
    assert isinstance(row, Row) and row.meta == {"k": "v"} and row.gold == "y"
    assert row.provenance is not None and row.provenance.annotators == ("U1",)
    path.write_text(json.dumps({**record, "votes": None}))  # an export's, emptied: refused
    [bad] = rows_of(path)
    assert isinstance(bad, RowError) and 'column "votes" is missing or empty' in bad.reason


# -- #13: the column of a bad byte in a JSONL line ----------------------------------------------


def test_a_jsonl_lines_bad_byte_is_named_at_its_character_column(tmp_path: Path):
    path = tmp_path / "b.jsonl"
    path.write_bytes('{"text": "日本語のテキスト '.encode() + b'\xe9"}\n')
    [error] = rows_of(path)
    assert isinstance(error, RowError)
    assert "byte 0xE9 at column 20" in error.reason, error.reason
    csv_path = tmp_path / "b.csv"  # the CSV reader names the same column
    csv_path.write_bytes(b"text\n" + '{"text": "日本語のテキスト '.encode() + b'\xe9"}\n')
    [csv_error] = rows_of(csv_path)
    assert isinstance(csv_error, RowError) and "at column 20" in csv_error.reason


def test_errors_come_in_line_order_across_small_batches_and_gold_spellings_too(tmp_path: Path):
    path = tmp_path / "f.jsonl"
    records = [
        {"id": "X", "text": "stored text"},  # line 1: stored first
        {"id": "X", "text": "other", "label": "Bug"},  # 2: rejected for its id, at the flush
        {"id": "A", "text": ""},  # 3: rejected as read
        {"id": "B", "text": "b", "label": "bug"},  # 4: the spelling "bug"
        {"id": "C", "text": "c", "label": "BUG"},  # 5: refused, naming "bug"
        {"id": "D", "text": ""},  # 6
        {"id": "E", "text": "e", "label": "Bug"},  # 7: refused
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    told: list[str] = []
    with Store.open(tmp_path / "hitl.db") as store:
        summary = import_rows(
            store,
            path,
            iter(rows_of(path)),
            triggered_by="test",
            on_error=told.append,
            batch_size=2,
        )
        assert store.labels_of(["B", "C", "E"]) == {"B": "bug"}
    assert [message.split(":")[0] for message in told] == [
        f"f.jsonl line {n}" for n in (2, 3, 5, 6, 7)
    ]
    assert summary.errors == told and summary.rejected == 5

    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        '{"id": "X", "text": "another", "label": "Spam"}\n'  # its id stored: no spelling
        '{"id": "G", "text": "g", "label": "spam"}\n'
        '{"id": "H", "text": "h", "label": "SPAM"}\n'
    )
    told.clear()
    with Store.open(tmp_path / "hitl.db") as store:
        import_rows(
            store, gold, iter(rows_of(gold)), triggered_by="t", on_error=told.append, gold=True
        )
        assert store.gold_labels() == {"G": "spam"}
    assert [m.split(":")[0] for m in told] == ["gold.jsonl line 1", "gold.jsonl line 3"]
