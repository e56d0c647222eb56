from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import IngestError
from bot.ingest import MAX_TEXT_CHARS, Row, RowError, item_id_for_text, read_items


def rows_of(path: Path, **kwargs) -> list[Row | RowError]:
    return list(read_items(path, **kwargs))


def test_csv_rows_keep_other_columns_as_meta(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text(
        "ticket,body,intent,team\nT1,card charged twice,billing,ops\n", encoding="utf-8"
    )
    [row] = rows_of(path, text_column="body", id_column="ticket", label_column="intent")
    assert row == Row(
        line=2, id="T1", text="card charged twice", label="billing", meta={"team": "ops"}
    )


def test_csv_multiline_field_reports_the_line_the_row_starts_on(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text('text,n\n"one\ntwo",1\n"",2\nthree,3\n', encoding="utf-8")
    result = rows_of(path)
    assert [(r.line, type(r).__name__) for r in result] == [(2, "Row"), (4, "RowError"), (5, "Row")]
    assert result[0].text == "one\ntwo"


def test_tsv_and_bom(tmp_path: Path):
    path = tmp_path / "t.tsv"
    path.write_bytes("\ufefftext\tlabel\nhello\tgreet\n".encode())
    [row] = rows_of(path)
    assert (row.text, row.label) == ("hello", "greet")


def test_jsonl_rows_use_id_and_label_fields_when_present(tmp_path: Path):
    path = tmp_path / "t.jsonl"
    lines = [{"id": 7, "text": "héllo 👋", "label": "greet", "lang": "fr"}, {"text": "no id"}]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    first, second = rows_of(path)
    assert first == Row(line=1, id="7", text="héllo 👋", label="greet", meta={"lang": "fr"})
    assert second.id == item_id_for_text("no id") and second.label is None


def test_plain_text_one_item_per_line_and_blank_lines_skipped(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_text("first\n\n  second  \n", encoding="utf-8")
    result = rows_of(path)
    assert [(r.line, r.text) for r in result] == [(1, "first"), (3, "second")]


def test_format_flag_overrides_the_extension(tmp_path: Path):
    path = tmp_path / "data.log"
    path.write_text('{"text": "x"}\n')
    with pytest.raises(IngestError, match="pass --format"):
        read_items(path)
    [row] = rows_of(path, fmt="jsonl")
    assert row.text == "x"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"text": ""}\n', 'column "text" is empty'),
        (b'{"text": "   "}\n', 'column "text" is empty'),
        (b'{"body": "x"}\n', 'column "text" is missing'),
        (b'{"text": 5}\n', 'column "text" is not a string'),
        (b"{not json\n", "bad JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"text": "caf\xe9"}\n', "not valid UTF-8"),
        (b'{"text": "' + b"a" * (MAX_TEXT_CHARS + 1) + b'"}\n', "over the limit of 40,000"),
        (b'{"text": "x", "label": "' + b"L" * 76 + b'"}\n', "label is over 75 characters"),
        (b'{"text": "x", "id": ""}\n', "(the id) is missing or empty"),
    ],
)
def test_each_bad_jsonl_row_is_reported_with_line_and_reason(tmp_path: Path, content, reason):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"text": "good one"}\n' + content + b'{"text": "good two"}\n')
    good1, bad, good2 = rows_of(path)
    assert isinstance(bad, RowError) and bad.line == 2 and reason in bad.reason
    assert bad.message(path).startswith("items.jsonl line 2: ")
    assert bad.message(path).endswith(", row skipped")
    assert (good1.text, good2.text) == ("good one", "good two")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b",x\n", 'column "text" is empty'),
        (b"caf\xe9,x\n", "not valid UTF-8"),
        (b"only-one-field\n", "has 1 fields, the header has 2"),
        (b'"' + b"a" * (MAX_TEXT_CHARS + 1) + b'",x\n', "over the limit"),
    ],
)
def test_each_bad_csv_row_is_reported_with_line_and_reason(tmp_path: Path, content, reason):
    path = tmp_path / "items.csv"
    path.write_bytes(b"text,label\ngood,a\n" + content + b"fine,b\n")
    good, bad, fine = rows_of(path)
    assert isinstance(bad, RowError) and bad.line == 3 and reason in bad.reason
    assert (good.text, fine.text) == ("good", "fine")


def test_missing_named_column_fails_before_any_row(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text("body,label\nhello,a\n")
    rows = read_items(path)
    with pytest.raises(
        IngestError, match=r'no column "text" in the header \(body, label\); pass --text-column'
    ):
        next(rows)
    with pytest.raises(IngestError, match='no column "ticket"'):
        next(read_items(path, text_column="body", id_column="ticket"))


def test_unreadable_file_fails_at_once(tmp_path: Path):
    with pytest.raises(IngestError, match="cannot read the file"):
        read_items(tmp_path / "missing.csv")
    with pytest.raises(IngestError, match="cannot read the file"):
        read_items(tmp_path, fmt="csv")


def test_reading_is_streamed_line_by_line(tmp_path: Path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"item {i}\n" for i in range(10_000)))
    seen: list[int] = []
    rows = read_items(path, progress=seen.append)
    next(rows)
    # After one row only a line or so has been read, not the whole file.
    assert sum(seen) < 100
    assert len(list(rows)) == 9_999


def test_exported_meta_is_merged_back_not_nested(tmp_path: Path):
    path = tmp_path / "export.jsonl"
    record = {
        "id": "1",
        "text": "t",
        "label": "a",
        "votes": 2,
        "agreement": 1.0,
        "annotators": ["U1", "U2"],
        "resolved_at": "2026-01-01",
        "meta": {"team": "x"},
    }
    path.write_text(json.dumps(record) + "\n")
    [row] = rows_of(path)
    assert row.meta == {"team": "x"} and row.label == "a"
