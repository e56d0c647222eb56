"""Imports of files written in other Unicode forms and encodings, from an outside tester's report
(intl M2, M3, L4) and a hostile one (L4): one text in NFC and NFD (macOS), or with ``\\r\\n``
and ``\\n``, is one item without an id too; a UTF-16 or UTF-32 file is refused before anything
is written, saying how to convert it; a column name matches a header written in another form;
an id with an invisible character is refused like one with a control character.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import sqlite3
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import IngestError
from bot.ingest import Row, RowError, item_id_for_text, read_items
from bot.store.records import same_text


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="hitl")


def exported(db: Path) -> list[dict]:
    """The labeled items."""
    out = run("--db", str(db), "export").stdout
    return [json.loads(line) for line in out.splitlines()]


def stored_ids(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT id FROM items"))


CAFE = "Ünïcödé: la facture de février est fausse"
NFC = unicodedata.normalize("NFC", CAFE)
NFD = unicodedata.normalize("NFD", CAFE)


# -- M2: one text in two forms is one item ---------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [(NFC, NFD), ("line one\nline two", "line one\r\nline two"), ("one\ntwo", "one\rtwo")],
    ids=["nfd", "crlf", "cr"],
)
def test_the_forms_same_text_takes_as_one_get_one_id(first: str, second: str):
    assert first != second and same_text(first, second)
    assert item_id_for_text(first) == item_id_for_text(second)


def test_a_text_already_in_canonical_form_keeps_the_id_it_had():
    """Ids stored before the hash took the canonical form stay valid for NFC texts without \\r."""
    for text in (NFC, "plain ascii", "two\nlines", "emoji 🎉 and 中文"):
        old = "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        assert item_id_for_text(text) == old
    assert item_id_for_text("café") == "t850f7dc43910ff89"


def test_an_import_of_one_text_in_nfc_and_nfd_without_ids_stores_one_item(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    lines = [{"text": NFC}, {"text": NFD}, {"text": "a\r\nb"}, {"text": "a\nb"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = tmp_path / "hitl.db"
    result = run("--db", str(db), "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "a.jsonl: read 4 rows, imported 2 (0 with labels), 2 duplicates, 0 rejected"
    )
    assert stored_ids(db) == sorted([item_id_for_text(NFC), item_id_for_text("a\nb")])


# -- M3: UTF-16 and UTF-32 files ---------------------------------------------------------------


def csv_text() -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "text", "label"])
    writer.writerow(["1", "工单 第一行", "账单"])
    return out.getvalue()


WIDE = [
    ("tickets.txt", "第一行 工单\r\n第二行 工单\r\n".encode("utf-16"), "UTF-16", "utf-16"),
    ("tickets.csv", csv_text().encode("utf-16"), "UTF-16", "utf-16"),
    ("tickets.jsonl", (json.dumps({"text": "工单"}) + "\n").encode("utf-16"), "UTF-16", "utf-16"),
    ("tickets.csv", csv_text().encode("utf-16-be"), "UTF-16BE", "utf-16be"),  # no BOM
    ("tickets.csv", csv_text().encode("utf-16-le"), "UTF-16LE", "utf-16le"),  # no BOM
    ("tickets.tsv", b"\xfe\xff" + "id\ttext\n1\tx\n".encode("utf-16-be"), "UTF-16", "utf-16"),
    ("tickets.txt", "one\ntwo\n".encode("utf-32"), "UTF-32", "utf-32"),
]


@pytest.mark.parametrize(("name", "data", "shown", "iconv"), WIDE, ids=[w[2] for w in WIDE])
def test_a_utf16_or_utf32_file_is_refused_before_anything_is_written_saying_how_to_convert(
    tmp_path: Path, name: str, data: bytes, shown: str, iconv: str
):
    path = tmp_path / name
    path.write_bytes(data)
    db = tmp_path / "hitl.db"
    result = run("--db", str(db), "import", str(path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: {path} ")
    assert shown in lines[0]
    stem, suffix = name.split(".")
    assert f"iconv -f {iconv} -t utf-8 {name} > {stem}-utf8.{suffix}" in lines[0]
    assert "cp1252" not in lines[0]
    assert not db.exists()  # refused before the store was opened
    with pytest.raises(IngestError, match=shown):
        read_items(path)


def test_a_nul_byte_inside_a_utf8_file_is_still_read_as_a_character(tmp_path: Path):
    path = tmp_path / "nul.csv"  # not a UTF-16 file: its first characters have no NULs between
    path.write_bytes(b"text,id\r\n\x00,1\r\nfoo\x00bar,2\r\n")
    rows = list(read_items(path))
    assert [(row.id, row.text) for row in rows if isinstance(row, Row)] == [("2", "foo\x00bar")]
    assert [row.line for row in rows if isinstance(row, RowError)] == [2]  # only a NUL


def test_a_text_line_of_only_nul_bytes_is_not_an_item(tmp_path: Path):
    path = tmp_path / "late.txt"  # NULs past the first bytes looked at: the row is refused
    path.write_bytes(b"a real ticket\n" * 1000 + b"\x00\n" + b" \x00 \x00\r\n" + b"last one\n")
    rows = list(read_items(path))
    assert [row.text for row in rows if isinstance(row, Row)] == ["a real ticket"] * 1000 + [
        "last one"
    ]
    errors = [row for row in rows if isinstance(row, RowError)]
    assert [error.line for error in errors] == [1001, 1002]
    assert "only NUL characters" in errors[0].reason


# -- L4 (intl): column names in another Unicode form -----------------------------------------


def test_column_options_match_a_header_written_in_another_unicode_form(tmp_path: Path):
    header = unicodedata.normalize("NFD", "Schlüssel,Überschrift,Kategorie\n")
    path = tmp_path / "a.csv"
    path.write_text(header + "k1,Größe,Straße\n")
    db = tmp_path / "hitl.db"
    options = ["--text-column", "Überschrift", "--label-column", "Kategorie"]
    result = run("--db", str(db), "import", str(path), *options, "--id-column", "Schlüssel")
    assert result.exit_code == 0, result.output
    assert [(item["id"], item["text"], item["label"]) for item in exported(db)] == [
        ("k1", "Größe", "Straße")
    ]


def test_jsonl_field_options_match_a_key_written_in_another_unicode_form(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    key = unicodedata.normalize("NFD", "Überschrift")
    path.write_text(json.dumps({key: "Größe", "id": "j1"}, ensure_ascii=False) + "\n")
    rows = list(read_items(path, text_column=unicodedata.normalize("NFC", "Überschrift")))
    assert [(row.id, row.text) for row in rows if isinstance(row, Row)] == [("j1", "Größe")]


# -- L4 (hostile): invisible characters in ids -----------------------------------------------


@pytest.mark.parametrize(
    ("item_id", "said"),
    [
        ("T-1\u200b", "has an invisible character (U+200B ZERO WIDTH SPACE)"),
        ("abc\u202edcba", "has an invisible character (U+202E RIGHT-TO-LEFT OVERRIDE)"),
        ("a\u2028b", "has a line break (U+2028 LINE SEPARATOR)"),
        ("x\ufeff", "has an invisible character (U+FEFF ZERO WIDTH NO-BREAK SPACE)"),
        ("日本語" * 40 + "\u200b", "has an invisible character (U+200B ZERO WIDTH SPACE)"),
    ],
    ids=["zwsp", "rlo", "line-separator", "bom", "long"],
)
def test_an_id_with_an_invisible_character_or_line_separator_is_refused(
    tmp_path: Path, item_id: str, said: str
):
    path = tmp_path / "ids.jsonl"
    path.write_text(
        json.dumps({"id": item_id, "text": "hidden"}) + "\n" + '{"id": "T-1", "text": "fine"}\n'
    )
    db = tmp_path / "hitl.db"
    result = run("--db", str(db), "import", str(path))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f'ids.jsonl line 1: column "id" (the id) {said}, row skipped'
    ]
    assert stored_ids(db) == ["T-1"]


@pytest.mark.parametrize("item_id", ["café", "日本語-7", "👩\u200d💻-1", "नमस्ते\u200c", "ID 42"])
def test_ids_in_any_script_with_joiners_are_still_taken(item_id: str):
    from bot.ingest import id_problem  # (not at the top: this file also runs on older code)

    assert id_problem(item_id) is None


# -- items stored before ids were hashed from the text's one form --------------------------------

LEGACY_TEXT = unicodedata.normalize("NFD", "facture de février\r\npayée deux fois")  # macOS, \r\n


def legacy_id(text: str) -> str:
    """The id the code before gave an item without one: the hash of the text as it came."""
    return "t" + hashlib.sha256(text.encode()).hexdigest()[:16]


def test_a_text_stored_under_its_id_of_before_is_a_duplicate_not_a_second_item(tmp_path: Path):
    # the re-import (or a gold import) of a file imported before the upgrade added each such
    # text again, to be asked again in Slack
    from bot.store import Store
    from tests.bot.harness import Item

    db = tmp_path / "hitl.db"
    old = legacy_id(LEGACY_TEXT)
    assert old != item_id_for_text(LEGACY_TEXT)
    with Store.open(db) as store:
        store.add_items([Item(old, LEGACY_TEXT), Item("x1", "plain ascii")], "import")
        assert not store.has_legacy_text_ids()  # made by this version: no lookup needed
    # as the database of an older version is at its first open by this one: m024 to run
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DROP TABLE legacy_text_ids")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm024_legacy_text_ids'")
    with Store.open(db) as store:  # m024 lists the item stored under its text as it came
        assert store.db.execute("SELECT id FROM legacy_text_ids").fetchall() == [(old,)]
    rows = tmp_path / "again.jsonl"
    # as it came then, and in its one form (composed, \n: another tool's export of it)
    one_form = unicodedata.normalize("NFC", LEGACY_TEXT.replace("\r\n", "\n"))
    lines = [{"text": LEGACY_TEXT}, {"text": one_form}, {"text": "new one"}]
    rows.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run("--db", str(db), "import", str(rows))
    assert result.stdout.strip().endswith("imported 1 (0 with labels), 2 duplicates, 0 rejected")
    assert old in stored_ids(db) and len(stored_ids(db)) == 3
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"text": LEGACY_TEXT, "label": "billing"}) + "\n")
    assert run("--db", str(db), "import", "--gold", str(gold)).exit_code == 0
    with Store.open(db) as store:
        assert store.gold_labels() == {old: "billing"}  # the stored item, marked gold
    assert len(stored_ids(db)) == 3


def test_a_utf16_standard_input_is_told_how_to_convert_the_pipe(tmp_path: Path):
    # it named the temporary copy of standard input, and an iconv of that copy nobody can run
    data = "\ufefftext\nbonjour\n".encode("utf-16-le")
    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "hitl.db"), "import", "-", "--format", "text"], input=data
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: standard input is UTF-16 (its byte-order mark says so), not UTF-8: convert it"
        " on its way in: … | iconv -f utf-16 -t utf-8 | hitl import - …\n"
    )
    assert not (tmp_path / "hitl.db").exists()
