"""`hitl export --format csv` as other tools read it, from an outside tester's interop report:
a text with a lone carriage return split its row in every CSV reader; the formula guard put a '
before plain numbers (labels -1/0/1 came out as "'-1" for pandas); Excel showed every
non-ASCII text garbled (no byte-order mark, now `--bom`). `hitl import` reads each back."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store


def run(db: Path, *args: str):
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], catch_exceptions=False, prog_name="hitl"
    )


def imported(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(path)).exit_code == 0
    return db


def exported(db: Path, *args: str) -> bytes:
    result = run(db, "export", "--format", "csv", *args)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


# -- M8: a lone \r ------------------------------------------------------------------------------


@pytest.mark.parametrize("answers", [False, True], ids=["labels", "answers"])
def test_a_text_with_a_lone_carriage_return_is_quoted_and_stays_one_row(
    tmp_path: Path, answers: bool
):
    texts = {"k1": "first part\rsecond part", "k2": "two\nlines", "k3": "plain"}
    db = imported(tmp_path, [{"id": i, "text": t, "label": "a"} for i, t in texts.items()])
    raw = exported(db, *(["--answers"] if answers else []))
    assert b'"first part\rsecond part"' in raw
    assert b"\r\n" not in raw  # the lines end in \n, as they did
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    key = "item_id" if answers else "id"
    assert {r[key]: r["text"] for r in rows} == texts
    if not answers:  # and `hitl import` reads the export back, every item
        copy = tmp_path / "copy.db"
        path = tmp_path / "export.csv"
        path.write_bytes(raw)
        result = run(copy, "import", str(path))
        assert result.stdout.endswith("imported 3 (3 with labels), 0 duplicates, 0 rejected\n")
        with Store.open(copy) as store:
            assert {i: store.get_item(i)["text"] for i in texts} == texts


# -- M6: plain numbers are no formulas --------------------------------------------------------


def test_plain_numbers_are_written_as_they_are_and_formulas_still_guarded(tmp_path: Path):
    rows = [
        {"id": "-3", "text": "-1", "label": "-1"},
        {"id": "+44", "text": "+44", "label": "0"},
        {"id": "n3", "text": "-3.5", "label": "+1"},
        {"id": "n4", "text": "1e5", "label": "1"},
        {"id": "f1", "text": "-5 EUR fee charged twice", "label": "1"},
        {"id": "f2", "text": "=1+1", "label": "1"},
        {"id": "f3", "text": "@here help", "label": "1"},
        {"id": "f4", "text": "+44 7700 900123", "label": "1"},
        {"id": "f5", "text": "'-3", "label": "1"},  # a quote, then a number: one more '
        {"id": "f6", "text": "-1+2", "label": "1"},
        {"id": "@x", "text": "an id like a mention", "label": "1"},
    ]
    db = imported(tmp_path, rows)
    raw = exported(db)
    written = {r["text"]: r for r in csv.DictReader(io.StringIO(raw.decode(), newline=""))}
    assert {t: (written[t]["id"], written[t]["label"]) for t in ["-1", "+44", "-3.5"]} == {
        "-1": ("-3", "-1"),
        "+44": ("+44", "0"),
        "-3.5": ("n3", "+1"),
    }
    assert sorted(written) == sorted(
        [
            "-1",
            "+44",
            "-3.5",
            "1e5",
            "'-5 EUR fee charged twice",
            "'=1+1",
            "'@here help",
            "'+44 7700 900123",
            "''-3",
            "'-1+2",
            "an id like a mention",
        ]
    )
    assert written["an id like a mention"]["id"] == "'@x"
    # `hitl import` reads every cell back as it was
    path = tmp_path / "export.csv"
    path.write_bytes(raw)
    copy = tmp_path / "copy.db"
    assert run(copy, "import", str(path)).exit_code == 0
    assert run(copy, "export").stdout == run(db, "export").stdout


# -- L5: --bom --------------------------------------------------------------------------------


def test_bom_starts_the_csv_with_a_byte_order_mark_for_excel_and_reads_back(tmp_path: Path):
    db = imported(tmp_path, [{"id": "1", "text": "Zoë in Zürich: 日本語", "label": "a"}])
    assert not exported(db).startswith(b"\xef\xbb\xbf")  # off by default
    raw = exported(db, "--bom")
    assert raw.startswith(b"\xef\xbb\xbfid,text,label,")
    assert exported(db, "--answers", "--bom").startswith(b"\xef\xbb\xbfitem_id,text,")
    out = tmp_path / "excel.csv"
    assert run(db, "export", "--format", "csv", "--bom", "-o", str(out)).exit_code == 0
    assert out.read_bytes() == raw
    copy = tmp_path / "copy.db"
    assert run(copy, "import", str(out)).exit_code == 0
    assert run(copy, "export").stdout == run(db, "export").stdout


def test_bom_is_for_csv_only_and_said_in_help(tmp_path: Path):
    db = imported(tmp_path, [{"id": "1", "text": "x", "label": "a"}])
    result = run(db, "export", "--bom")
    assert result.exit_code == 2
    assert "--bom is for --format csv (Excel)" in result.stderr
    help_text = " ".join(run(db, "export", "--help").stdout.split())
    assert "--bom With --format csv: start the file with a UTF-8 byte-" in help_text
    assert "so Excel opens it as UTF-8" in help_text and "Off by default" in help_text
