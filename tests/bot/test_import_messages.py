"""What `hitl import` (and the commands around it) says a first user needs to act on, from
an outside tester's report: an id stored (or read earlier) with another text is rejected, not
counted a duplicate; a label not applied names its row; a JSONL file whose text field has
another name stops with the fields it has; a file not in UTF-8 is told how to convert it; the
column of a JSON line cut short; the spelling to write for a case twin; a workbook or a
folder; `--db` after the command; and a refused `hitl serve` that leaves no database behind.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import server
from bot.cli import cli
from bot.config import Settings
from bot.errors import ConfigError
from bot.ingest import import_rows, rows_of_file
from bot.ingest.load import ERRORS_RECORDED
from bot.store import Store


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="hitl")


def exported_texts(db: Path) -> list[str]:
    out = run("--db", str(db), "export").stdout
    return sorted(json.loads(line)["text"] for line in out.splitlines())


# -- F1: an id stored with another text --------------------------------------------------------

CONFLICT = (
    "is stored with another text (an id names one item, and an import never changes a stored"
    " one): give this row its own id (or pass --id-column with a column of unique values), or"
    " leave it out, row skipped"
)


def test_a_repeated_id_with_another_text_is_rejected_not_counted_a_duplicate(tmp_path: Path):
    # "1 duplicate" told the user the row was stored; its text and label were stored nowhere
    path = tmp_path / "dupid.csv"
    path.write_text(
        "id,text,label\n7,first text,bug\n7,second text,billing\n8,other,bug\n7,first text,bug\n"
    )
    db = tmp_path / "hitl.db"
    result = run("--db", str(db), "import", str(path))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [f'dupid.csv line 3: id "7" {CONFLICT}']
    # the row repeating line 2 exactly is still a duplicate
    assert result.stdout.strip() == (
        "dupid.csv: read 4 rows, imported 2 (2 with labels), 1 duplicate, 1 rejected"
    )
    assert exported_texts(db) == ["first text", "other"]


def test_an_id_stored_before_or_in_an_earlier_batch_with_another_text_is_rejected(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("id,text\n1,stored before\n4,four\n")
    path = tmp_path / "items.csv"
    path.write_text("id,text\n1,stored before in another form\n2,two\n3,three\n2,deux\n4,four\n")
    rejected: list[str] = []
    with Store.open(db) as store:
        import_rows(store, earlier, rows_of_file(earlier), triggered_by="test")
        summary = import_rows(
            store,
            path,
            rows_of_file(path),
            triggered_by="test",
            on_error=rejected.append,
            batch_size=2,
        )
        assert store.get_item("1")["text"] == "stored before"  # never changed by an import
    assert rejected == [
        f'items.csv line 2: id "1" {CONFLICT}',
        f'items.csv line 5: id "2" {CONFLICT}',
    ]
    assert (summary.imported, summary.duplicates, summary.rejected) == (2, 1, 2)


def test_a_gold_row_whose_id_is_stored_with_another_text_is_rejected_not_made_gold(
    tmp_path: Path,
):
    # it marked the stored item gold with this row's label: people's right answers to that
    # item then counted as gold misses and went to review
    db = tmp_path / "hitl.db"
    items = tmp_path / "items.csv"
    items.write_text("id,text\n7,first text\n")
    assert run("--db", str(db), "import", str(items)).exit_code == 0
    gold = tmp_path / "gold.csv"
    gold.write_text("id,text,label\n7,second text,billing\n8,other,bug\n")
    result = run("--db", str(db), "import", "--gold", str(gold))
    assert result.stderr.splitlines() == [f'gold.csv line 2: id "7" {CONFLICT}']
    with Store.open(db) as store:
        assert not store.is_gold("7") and store.is_gold("8")


def test_a_gold_file_giving_one_item_two_labels_keeps_the_first_and_names_both_lines(
    tmp_path: Path,
):
    # the later row silently won: a contradiction inside one file nobody was told of
    db = tmp_path / "hitl.db"
    gold = tmp_path / "gold.csv"
    gold.write_text(
        "id,text,label\n"
        "7,refund my card,billing\n"
        "8,app crashes,bug\n"
        "7,refund my card,bug\n"  # the same id, another label
        "8,app crashes,bug\n"  # the same id, the same label: a duplicate
    )
    result = run("--db", str(db), "import", "--gold", str(gold))
    assert result.stderr.splitlines() == [
        'gold.csv line 4: id "7" has the gold label "billing" on line 2 of this file, and this'
        " row gives it another: one item has one gold answer; fix one of the two rows, row"
        " skipped"  # its id is the file's: no "(without an id column, the id is the text's …)"
    ]
    with Store.open(db) as store:
        assert store.gold_labels() == {"7": "billing", "8": "bug"}
    # the same text twice without ids: one item, so the same contradiction
    texts = tmp_path / "texts.csv"
    texts.write_text("text,label\nwhere is my invoice,billing\nwhere is my invoice,account\n")
    result = run("--db", str(tmp_path / "other.db"), "import", "--gold", str(texts))
    assert "texts.csv line 3: id " in result.stderr and "on line 2 of this file" in result.stderr
    assert "(without an id column, the id is the text's: the same text twice)" in result.stderr
    # a later gold import changes a gold answer on purpose, as before
    again = tmp_path / "again.csv"
    again.write_text("id,text,label\n7,refund my card,bug\n")
    assert run("--db", str(db), "import", "--gold", str(again)).stderr == ""
    with Store.open(db) as store:
        assert store.gold_labels()["7"] == "bug"


def test_the_same_rows_from_a_csv_and_a_jsonl_are_duplicates_not_conflicts(tmp_path: Path):
    # a CSV keeps a quoted cell's \r\n where JSONL has \n, and macOS writes "café" decomposed:
    # the same tickets were rejected as "stored with another text"
    db = tmp_path / "hitl.db"
    csv_file = tmp_path / "t.csv"
    csv_file.write_bytes('id,text\r\n1,"two\r\nlines"\r\n2,cafe\u0301 au lait\r\n'.encode())
    assert run("--db", str(db), "import", str(csv_file)).exit_code == 0
    jsonl = tmp_path / "t.jsonl"
    rows = [{"id": "1", "text": "two\nlines"}, {"id": "2", "text": "caf\u00e9 au lait"}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("--db", str(db), "import", str(jsonl))
    assert result.stderr == ""
    assert result.stdout.strip().endswith("0 rejected") and "2 duplicates" in result.stdout


def test_the_runs_record_keeps_the_first_rejections_not_every_one(tmp_path: Path):
    # every message was kept until the import ended: 140 MB at 200,000 rejected rows
    path = tmp_path / "empty.csv"
    path.write_text("id,text\n" + "".join(f"{n},\n" for n in range(ERRORS_RECORDED + 50)))
    said: list[str] = []
    with Store.open(tmp_path / "hitl.db") as store:
        summary = import_rows(
            store, path, rows_of_file(path), triggered_by="test", on_error=said.append
        )
    assert summary.rejected == len(said) == ERRORS_RECORDED + 50
    assert summary.errors == said[:ERRORS_RECORDED]


def test_a_csv_of_blank_lines_is_refused_as_empty_and_a_header_after_them_is_found(tmp_path: Path):
    # it said 'no column "text" in the header ()': there was no column to pick
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n\n")
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(blank))
    assert (result.exit_code, result.output) == (
        1,
        "Error: blank.csv: no rows to import (only blank lines)\n",
    )
    late = tmp_path / "late.csv"
    late.write_text("\n\nid,text\n1,hello\n")
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(late))
    assert "imported 1 " in result.stdout and result.stderr == "", result.output


# -- F2: which labels were not applied ---------------------------------------------------------


def test_each_label_not_applied_is_named_with_the_command_that_applies_it(tmp_path: Path):
    path = tmp_path / "dup2.csv"
    path.write_text("id,text,label\n9,first,\n9,first,bug\n10,ten,\n")
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(path))
    assert result.stderr.splitlines() == [
        'dup2.csv line 3: id "9" is stored without a label; its label "bug" was not applied: '
        "hitl labels set 9 bug"
    ]
    assert "1 duplicate (1 label for items stored unlabeled not applied" in result.stdout


# -- F3: a JSONL file without the text field ---------------------------------------------------


def test_a_jsonl_file_whose_rows_lack_the_text_field_stops_before_any_write(tmp_path: Path):
    path = tmp_path / "body.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "body": f"t{i}", "label": "a"}) + "\n" for i in range(50))
    )
    db = tmp_path / "hitl.db"
    result = run("--db", str(db), "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f'Error: {path}: no field "text" in the first 20 rows (they have: id, body, label); '
        "pass --text-column with one of these\n"
    )
    assert not db.exists()
    fixed = run("--db", str(db), "import", str(path), "--text-column", "body")
    assert fixed.stdout.startswith("body.jsonl: read 50 rows, imported 50")


def test_a_jsonl_row_without_the_text_field_names_its_fields(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1, "text": "x"}\n{"id": 2, "body": "y"}\n')
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(path))
    assert result.exit_code == 0
    assert result.stderr == (
        'mixed.jsonl line 2: no field "text" (this row has: id, body); pass --text-column with '
        "one of these, row skipped\n"
    )


def test_an_import_that_rejects_every_row_exits_non_zero(tmp_path: Path):
    path = tmp_path / "empty.csv"
    path.write_text("id,text\n1,\n2,\n")
    result = run("--db", str(tmp_path / "hitl.db"), "import", "-q", str(path))
    assert result.exit_code == 1
    assert (
        result.stdout
        == "empty.csv: read 2 rows, imported 0 (0 with labels), 0 duplicates, 2 rejected\n"
    )
    assert result.stderr == (
        "Error: every row of empty.csv was rejected: nothing was imported (run it without "
        "--quiet to see why)\n"
    )
    # the database this import made holds nothing: no file is left at the (maybe mistyped) path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv"]
    # one that was there stays, with what it held
    kept = tmp_path / "kept.db"
    good = tmp_path / "good.csv"
    good.write_text("id,text\n9,a real text\n")
    assert run("--db", str(kept), "import", str(good)).exit_code == 0
    assert run("--db", str(kept), "import", "-q", str(path)).exit_code == 1
    assert kept.exists()
    with Store.open(kept) as store:
        assert store.get_item("9") is not None


# -- F4: a file that is not UTF-8 --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "txt"])
def test_rows_not_in_utf8_say_where_and_the_fix_once(tmp_path: Path, fmt: str):
    lines = [b"caf\xe9 one", b"plain", b"na\xefve"]
    if fmt == "jsonl":
        body = b"".join(b'{"text": "' + line + b'"}\n' for line in lines)
        column = (14, 13)
    elif fmt == "csv":
        body = b"text\n" + b"".join(line + b"\n" for line in lines)
        column = (4, 3)
    else:
        body = b"".join(line + b"\n" for line in lines)
        column = (4, 3)
    path = tmp_path / f"latin1.{fmt}"
    path.write_bytes(body)
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(path))
    first, second = (2, 4) if fmt == "csv" else (1, 3)
    assert result.stderr.splitlines() == [
        f"latin1.{fmt} line {first}: not valid UTF-8 (byte 0xE9 at column {column[0]}); save "
        f'the file as UTF-8 (Excel: "CSV UTF-8"; or iconv -f cp1252 -t utf-8 latin1.{fmt} > '
        f"latin1-utf8.{fmt}), row skipped",
        f"latin1.{fmt} line {second}: not valid UTF-8 (byte 0xEF at column {column[1]}), "
        "row skipped",
    ]


# -- F9, F10: the column of a cut JSON line; the spelling to write --------------------------


def test_a_json_line_cut_short_is_reported_at_its_end(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id":"b","text":"x"\n')
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(path))
    assert result.stderr == (
        "bad.jsonl line 2: bad JSON (Expecting ',' delimiter at column 21; the line ends "
        "before the JSON is closed), row skipped\n"
    )


def test_a_json_message_ending_in_at_is_not_said_at_at(tmp_path: Path):
    """Python's "Invalid control character at" and "Unterminated string starting at" read
    "… at at column N" once the column was added."""
    path = tmp_path / "ctl.jsonl"
    path.write_text(
        '{"id": "a", "text": "ok"}\n{"id": "b", "text": "a\tb"}\n{"id": "c", "text": "cut'
    )
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(path))
    assert result.stderr.splitlines() == [
        "ctl.jsonl line 2: bad JSON (Invalid control character at column 23), row skipped",
        "ctl.jsonl line 3: bad JSON (Unterminated string starting at column 21; the line ends"
        " before the JSON is closed), row skipped",
    ]


def test_a_case_twin_is_told_the_spelling_to_write(tmp_path: Path):
    path = tmp_path / "tw.csv"
    path.write_text("id,text,label\n1,a,billing\n2,b,Billing\n")
    result = run("--db", str(tmp_path / "hitl.db"), "import", str(path))
    assert result.stderr == (
        'tw.csv line 3: label "Billing" differs from the label "billing" only in case: write '
        '"billing" in the file, row skipped\n'
    )


# -- F18: a workbook, a folder -----------------------------------------------------------------


def test_a_workbook_and_a_folder_are_told_what_to_give(tmp_path: Path):
    book = tmp_path / "t.xlsx"
    book.write_bytes(b"PK\x03\x04")
    folder = tmp_path / "dd"
    folder.mkdir()
    db = str(tmp_path / "hitl.db")
    assert run("--db", db, "import", str(book)).stderr == (
        f'Error: {book} is a spreadsheet workbook, not a text file; save it as "CSV UTF-8" '
        "(Excel: File > Save As) and import that\n"
    )
    assert run("--db", db, "import", str(folder)).stderr == (
        f"Error: {folder} is a folder; give a file\n"
    )


# -- F17: --db after the command ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["stats", "--db", "h.db"], "--db goes before the command: hitl --db h.db stats"),
        (
            ["labels", "show", "--db=h.db"],
            "--db goes before the command: hitl --db=h.db labels show",
        ),
        (["stats", "-v"], "-v goes before the command: hitl -v stats"),
        # told the failing command again; told to give both files (the first one wins); told
        # to make the command the database's path
        (["--db", "a.db", "stats", "-vv"], "-v goes before the command: hitl -vv --db a.db stats"),
        (
            ["--db", "a.db", "stats", "--db", "b.db"],
            "--db goes before the command: hitl --db b.db stats",
        ),
        (["retrain", "--db"], "--db FILE goes before the command: hitl --db FILE retrain"),
        (["stats", "--db", "x.db", "-v"], "--db goes before the command: hitl -v --db x.db stats"),
    ],
)
def test_a_group_option_after_the_command_is_told_where_it_goes(args: list[str], hint: str):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: {hint}"


# -- F19: a refused serve leaves no database at a mistyped path -------------------------------


def serve_settings(db: Path, port: int) -> Settings:
    return Settings(
        slack_bot_token="xoxb-not-used",
        slack_signing_secret="secret",
        db=db,
        channel="C0123ABCD",
        labels=(),
        port=port,
    )


def refused_serve(db: Path, port: int) -> None:
    # Its port held by another socket: the label set's refusal is said whatever holds it
    # (it was "port … is in use" where anything held the port).
    with pytest.raises(ConfigError, match="no label set"):
        asyncio.run(server.serve(serve_settings(db, port), announce=lambda line: None))


def test_serve_refused_for_no_label_set_makes_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
):
    monkeypatch.setattr(faulthandler, "enable", lambda **_: None)  # pytest's own stays
    refused_serve(tmp_path / "typo.db", taken_port)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_serve_refused_for_no_label_set_keeps_a_database_that_existed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
):
    monkeypatch.setattr(faulthandler, "enable", lambda **_: None)
    db = tmp_path / "hitl.db"
    Store.open(db).close()
    refused_serve(db, taken_port)
    assert db.exists()
