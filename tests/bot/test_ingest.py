from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import IngestError
from bot.ingest import (
    MAX_TEXT_CHARS,
    Row,
    RowError,
    import_rows,
    item_id_for_text,
    read_items,
    rows_of_file,
)
from bot.store import Store


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


def test_a_csv_separated_by_semicolons_or_tabs_is_read_by_its_header(tmp_path: Path):
    """Excel writes ';' where the comma is the decimal separator; such a file used to fail with
    'no column "text" in the header (text;label); pass --text-column', the wrong fix."""
    path = tmp_path / "excel.csv"
    path.write_bytes(
        '\ufeffid;text;label\r\nT1;"refund; twice";billing\r\nT2;1,5 € off;sales\r\n'.encode()
    )
    assert [(r.id, r.text, r.label) for r in rows_of(path)] == [
        ("T1", "refund; twice", "billing"),
        ("T2", "1,5 € off", "sales"),
    ]
    path.write_text("text\tlabel\nhello\tgreet\n", encoding="utf-8")
    assert [(r.text, r.label) for r in rows_of(path)] == [("hello", "greet")]
    # a comma in the header wins: a semicolon in a name or in the rows is data
    path.write_text("text,note;s\nhi; there,x;y\n", encoding="utf-8")
    [row] = rows_of(path)
    assert (row.text, row.meta) == ("hi; there", {"note;s": "x;y"})
    path.write_text("text\nhi; there\n", encoding="utf-8")  # one column, no separator in it
    assert [r.text for r in rows_of(path)] == ["hi; there"]


def test_jsonl_rows_use_id_and_label_fields_when_present(tmp_path: Path):
    path = tmp_path / "t.jsonl"
    lines = [{"id": 7, "text": "héllo 👋", "label": "greet", "lang": "fr"}, {"text": "no id"}]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    first, second = rows_of(path)
    assert first == Row(line=1, id="7", text="héllo 👋", label="greet", meta={"lang": "fr"})
    assert second.id == item_id_for_text("no id") and second.label is None


def test_numeric_jsonl_labels_are_text_as_written(tmp_path: Path):
    path = tmp_path / "t.jsonl"
    labels = [1, 0, 1.0, 0.0, 2.5, None]  # pandas writes 1.0 for an int column with gaps
    path.write_text("".join(json.dumps({"text": f"t{i}", "label": x}) + "\n"
                            for i, x in enumerate(labels)))  # fmt: skip
    assert [r.label for r in rows_of(path)] == ["1", "0", "1.0", "0.0", "2.5", None]


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
        (b'{"body": "x"}\n', 'no field "text" (this row has: body); pass --text-column'),
        (b'{"text": 5}\n', 'column "text" is not a string'),
        (b"{not json\n", "bad JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"text": "caf\xe9"}\n', "not valid UTF-8"),
        (b'{"text": "' + b"a" * (MAX_TEXT_CHARS + 1) + b'"}\n', "over the limit of 40,000"),
        (b'{"text": "x", "label": "' + b"L" * 76 + b'"}\n', "label is over 75 characters"),
        (b'{"text": "x", "id": ""}\n', "(the id) is missing or empty"),
        (b'{"text": "x", "id": 1.5}\n', "(the id) is 1.5, not a string or whole number"),
        # pandas' to_json of an integer id column with gaps: the message said "not a whole
        # number" of 1.0 and nothing of how to fix it
        pytest.param(
            b'{"text": "x", "id": 1.0}\n',
            'column "id" (the id) is 1.0, not a string or whole number: write it as "1.0" '
            '(pandas writes an integer column with gaps as 1.0; df["id"].astype("Int64") '
            "keeps it whole)",
            id="pandas-float-id",
        ),
        pytest.param(
            b'{"text": "x", "id": 1E3}\n', "(the id) is 1E3, not a string", id="exponent-id"
        ),
        (b'{"text": "x", "id": true}\n', "(the id) is not a string or whole number"),
        (b'{"text": "x", "id": "ticket\\n42"}\n', "(the id) has a control character"),
        (b'{"text": "x", "id": "a\\u0000b"}\n', "(the id) has a control character"),
        # Values JSON parses but the store cannot keep: each used to crash the whole import.
        (b'{"text": "half \\ud83d an emoji"}\n', 'column "text" holds a lone surrogate \\ud83d'),
        (b'{"text": "x", "id": "\\udc00"}\n', 'column "id" holds a lone surrogate \\udc00'),
        (b'{"text": "x", "label": "\\ud800"}\n', 'column "label" holds a lone surrogate'),
        (b'{"text": "x", "who": ["a", "\\uDBFF"]}\n', 'column "who" holds a lone surrogate'),
        (b'{"text": "x", "k\\ud800": 1}\n', 'column "k\\ud800" holds a lone surrogate'),
        pytest.param(
            b'{"text": "x", "n": 1' + b"0" * 5000 + b"}\n",
            'column "n" holds a whole number of 5,001 digits, over the limit of 4,300',
            id="5001-digit-meta",
        ),
        pytest.param(
            b'{"text": "x", "label": -1' + b"0" * 5000 + b"}\n",
            'column "label" holds a whole number of 5,001 digits',
            id="5001-digit-label",
        ),
        (b'{"text": "x", "label": NaN}\n', 'column "label" holds NaN, which JSON does not'),
        (b'{"text": "x", "label": Infinity}\n', 'column "label" holds Infinity'),
        (b'{"text": "x", "score": -Infinity}\n', 'column "score" holds -Infinity'),
        (b'{"text": "x", "meta": {"p": [NaN]}}\n', 'column "meta" holds NaN'),
        (b'{"text": "x", "score": 1e400}\n', 'column "score" holds 1e400, a number too large'),
        # A key given twice: JSON readers keep either value, so which label (or text, or id)
        # the row means is unknown; before, the last one was stored without a word.
        pytest.param(
            b'{"text": "x", "label": "spam", "label": "ham"}\n',
            'column "label" is given twice, as "spam" and then "ham": keep the right one',
            id="label-twice",
        ),
        pytest.param(
            b'{"id": "7", "text": "x", "id": 8}\n',
            'column "id" is given twice, as "7" and then 8',
            id="id-twice",
        ),
        pytest.param(
            b'{"text": "x", "score": 1e400, "label": "a", "label": "b"}\n',
            'column "score" holds 1e400',  # the unfit number is said first, as before
            id="unfit-and-twice",
        ),
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


def test_a_jsonl_key_given_twice_with_one_value_is_read_as_that_value(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"text": "x", "label": "a", "label": "a", "meta": {"k": 1, "k": 2}}\n')
    [row] = rows_of(path)
    assert (row.text, row.label, row.meta) == ("x", "a", {"k": 2})  # meta: as JSON reads it


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


def test_reading_is_streamed_and_its_progress_adds_up_to_the_file_size(tmp_path: Path):
    path = tmp_path / "big.txt"
    path.write_text(
        "".join(f"item {i} {'of a text file read a chunk at a time':.<50}\n" for i in range(20_000))
    )
    seen: list[int] = []
    rows = read_items(path, progress=seen.append)
    next(rows)
    assert 0 < sum(seen) < path.stat().st_size // 10  # a chunk read, not the whole file
    assert len(list(rows)) == 19_999
    assert sum(seen) == path.stat().st_size


def test_csv_is_streamed_and_its_progress_adds_up_to_the_file_size(tmp_path: Path):
    path = tmp_path / "big.csv"
    path.write_text("id,text\n" + "".join(f"{i},item {i}\n" for i in range(50_000)))
    seen: list[int] = []
    rows = read_items(path, progress=seen.append)
    next(rows)
    assert 0 < sum(seen) < path.stat().st_size // 10  # a chunk read, not the whole file
    assert len(list(rows)) == 49_999
    assert sum(seen) == path.stat().st_size


def test_a_bad_byte_far_into_a_big_csv_is_still_reported_on_its_line(tmp_path: Path):
    path = tmp_path / "big.csv"
    rows = [f"{i},item {i}\n".encode() for i in range(20_000)]
    rows[15_000] = b"15000,caf\xe9\n"  # decoded chunks after the first one held clean rows
    path.write_bytes(b"id,text\n" + b"".join(rows))
    result = rows_of(path)
    errors = [r for r in result if isinstance(r, RowError)]
    assert [(e.line, e.reason.split(";")[0]) for e in errors] == [
        (15_002, "not valid UTF-8 (byte 0xE9 at column 10)")
    ]
    assert len(result) == 20_000


_value = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "  ", " x ", "L" * 76, "i" * 201, "é 👋", "a\nb", "a\r\nb", '"q",']),
)
_extra_columns = st.lists(
    st.text("abcxyz_ ", min_size=1, max_size=6).filter(
        # a blank name is a CSV column without one, named by its place (test_ingest_review)
        lambda name: name.strip() not in {"", "text", "id", "label", "meta"}
    ),
    max_size=3,
    unique_by=str.strip,
)


def test_reading_a_csv_with_bad_bytes_leaves_the_codecs_of_the_process_alone(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"text\ncaf\xc3\xa9 ok\ncaf\xe9 bad\n")
    assert [(r.line, type(r).__name__) for r in rows_of(path)] == [(2, "Row"), (3, "RowError")]
    with pytest.raises(LookupError):  # no error handler of ours registered for every file
        codecs.lookup_error("hitl-surrogateescape")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    with_id=st.booleans(),
    with_label=st.booleans(),
    extra=_extra_columns,
    rows=st.lists(st.lists(_value, min_size=6, max_size=6), min_size=1, max_size=8),
)
def test_a_csv_row_reads_as_the_same_record_in_jsonl(
    tmp_path: Path, with_id: bool, with_label: bool, extra: list[str], rows: list[list[str]]
):
    """CSV rows are made by column position (the import's fast path), JSONL records by
    name: the same records must give the same rows and the same errors."""
    header = ["text", *(["id"] if with_id else []), *(["label"] if with_label else []), *extra]
    header = [name.strip() for name in header]
    records = [dict(zip(header, values, strict=False)) for values in rows]
    csv_path, jsonl_path = tmp_path / "same.csv", tmp_path / "same.jsonl"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([record[name] for name in header] for record in records)
    blank_csv_line = [""]  # a one-column row with nothing in it: skipped like a blank line
    jsonl_path.write_text(
        "".join(
            json.dumps(record, ensure_ascii=False) + "\n"
            for record in records
            if list(record.values()) != blank_csv_line
        ),
        encoding="utf-8",
    )

    def shown(result: Row | RowError) -> tuple:
        if isinstance(result, RowError):
            return ("error", result.reason)
        return (result.id, result.text, result.label, result.meta)

    from_csv = [shown(r) for r in read_items(csv_path)]
    from_jsonl = [shown(r) for r in read_items(jsonl_path)]
    assert from_csv == from_jsonl


def test_exported_meta_is_merged_back_not_nested(tmp_path: Path):
    path = tmp_path / "export.jsonl"
    record = {
        "id": "1",
        "text": "t",
        "label": "a",
        "votes": 2,
        "agreement": 1.0,
        "annotators": ["U1", "U2"],
        "resolved_at": "2026-01-01T10:00:00.000+00:00",
        "meta": {"team": "x"},
    }
    path.write_text(json.dumps(record) + "\n")
    [row] = rows_of(path)
    assert row.meta == {"team": "x"} and row.label == "a"


# An unterminated quote (issue 16.8): the row is reported and reading goes on at its next line.

SIX_ROWS = (
    "id,text,label\n"
    "1,good one,a\n"
    '2,"unterminated quote here,b\n'
    "3,row three,a\n"
    "4,row four,b\n"
    "5,row five,a\n"
    "6,row six,b\n"
)


def shape(result: list[Row | RowError]) -> list[tuple[int, str]]:
    return [(r.line, r.reason if isinstance(r, RowError) else r.text) for r in result]


def test_an_unterminated_quote_skips_its_row_and_the_rows_after_it_are_read(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text(SIX_ROWS, encoding="utf-8")
    result = rows_of(path)
    assert shape(result) == [
        (2, "good one"),
        (3, 'unterminated quote in field "text"'),
        (4, "row three"),
        (5, "row four"),
        (6, "row five"),
        (7, "row six"),
    ]
    assert result[1].message(path) == (
        'items.csv line 3: unterminated quote in field "text", row skipped'
    )


def test_a_quote_opened_in_the_last_row_is_reported_on_its_line(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text('id,text,label\n1,one,a\n2,two,b\n3,"three,a\n', encoding="utf-8")
    assert shape(rows_of(path)) == [
        (2, "one"),
        (3, "two"),
        (4, 'unterminated quote in field "text"'),
    ]


def test_an_unterminated_quote_closed_by_a_later_rows_quote_loses_no_row(tmp_path: Path):
    path = tmp_path / "items.tsv"
    path.write_text(
        'text\tlabel\n"open here\ta\nplain\tb\n"quoted, fine"\tc\nlast\td\n', encoding="utf-8"
    )
    assert shape(rows_of(path)) == [
        (2, 'unterminated quote in field "text"'),
        (3, "plain"),
        (4, "quoted, fine"),
        (5, "last"),
    ]


def test_a_multiline_row_with_the_wrong_field_count_is_read_again_from_its_next_line(
    tmp_path: Path,
):
    path = tmp_path / "items.csv"
    path.write_text('id,text\n1,"open\n2,two\n3,3",x\n4,four\n', encoding="utf-8")
    result = shape(rows_of(path))
    assert result[0][0] == 2 and 'a quote in field "text" may be unterminated' in result[0][1]
    assert (3, "two") in result and (5, "four") in result


def test_a_quote_in_the_header_that_is_never_closed_stops_at_line_1(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text('id,"text\n1,one\n', encoding="utf-8")
    with pytest.raises(IngestError, match=r"line 1: the header cannot be read"):
        next(read_items(path))


def test_an_unterminated_quote_early_in_a_big_csv_is_reported_without_reading_it_all(
    tmp_path: Path,
):
    path = tmp_path / "big.csv"
    lines = [f"{i},item number {i} with some words to make it longer\n" for i in range(40_000)]
    lines[0] = '0,"never closed\n'
    path.write_text("id,text\n" + "".join(lines), encoding="utf-8")
    seen: list[int] = []
    rows = read_items(path, progress=seen.append)
    first = next(rows)
    assert isinstance(first, RowError) and first.line == 2
    assert "unterminated quote" in first.reason
    assert sum(seen) < path.stat().st_size // 2  # it gave up long before the end of the file
    rest = list(rows)
    assert len(rest) == 39_999 and not any(isinstance(r, RowError) for r in rest)
    assert (rest[0].line, rest[-1].line) == (3, 40_001)


# An export's provenance (issue 16.7): who decided each label, when, and how they agreed.

EXPORTED = {
    "id": "1",
    "text": "t",
    "label": "a",
    "votes": 2,
    "agreement": 2 / 3,
    "annotators": ["U1", "U3"],
    "resolved_at": "2026-01-01T10:00:00.000+00:00",
    "meta": {"team": "x"},
    "answers": [
        {"user_id": "U1", "label": "a", "created_at": "2026-01-01T09:00:00.000+00:00"},
        {"user_id": "U2", "label": "b", "created_at": "2026-01-01T09:30:00.000+00:00"},
        {"user_id": "U3", "label": "a", "created_at": "2026-01-01T10:00:00.000+00:00"},
    ],
}


def test_an_exported_row_gives_back_how_its_label_was_decided_in_jsonl_and_csv(tmp_path: Path):
    jsonl, csv_path = tmp_path / "export.jsonl", tmp_path / "export.csv"
    jsonl.write_text(json.dumps(EXPORTED) + "\n")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORTED)
        writer.writerow(
            [json.dumps(v) if isinstance(v, list | dict) else v for v in EXPORTED.values()]
        )
    [from_jsonl], [from_csv] = rows_of(jsonl), rows_of(csv_path)
    for row in (from_jsonl, from_csv):
        assert (row.label, row.meta) == ("a", {"team": "x"})
        came = row.provenance
        assert (came.votes, came.agreement, came.annotators) == (2, 2 / 3, ("U1", "U3"))
        assert came.resolved_at == "2026-01-01T10:00:00.000+00:00"
        assert [(v.user_id, v.label) for v in came.answers] == [
            ("U1", "a"),
            ("U2", "b"),
            ("U3", "a"),
        ]
    assert from_jsonl.provenance == from_csv.provenance


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"votes": "two"}, 'column "votes" is not a whole number'),
        ({"votes": -1}, 'column "votes" is not a whole number of 0 or more'),
        ({"votes": 1.5}, 'column "votes" is not a whole number of 0 or more'),
        ({"votes": "1" + "0" * 5000}, 'column "votes" is not a whole number'),
        ({"votes": 0}, 'columns "votes" (0) and "agreement" (0.666667) disagree'),
        ({"agreement": 0}, 'columns "votes" (2) and "agreement" (0) disagree'),
        ({"agreement": 1.5}, 'column "agreement" is not a number from 0 to 1'),
        ({"agreement": -0.5}, 'column "agreement" is not a number from 0 to 1'),
        ({"annotators": "U1"}, 'column "annotators" is not a list of different user ids'),
        ({"annotators": ["U1", "U1"]}, 'column "annotators" is not a list of different'),
        ({"resolved_at": "yesterday"}, 'column "resolved_at" is not an ISO 8601 time'),
        ({"resolved_at": ""}, 'column "resolved_at" is missing or empty'),
        (
            {"resolved_at": "2026-01-01"},
            'column "resolved_at" is a date without a time (2026-01-01): write a time with its '
            "UTC offset, as `hitl export` does (2026-01-01T00:00:00.000+00:00 for midnight UTC)",
        ),
        (
            {"resolved_at": "2026-01-01T10:00:00"},
            'column "resolved_at" has no UTC offset (2026-01-01T10:00:00): add it, as `hitl '
            "export` does (2026-01-01T10:00:00.000+00:00 if it is UTC)",
        ),
        (
            {"answers": [{**EXPORTED["answers"][0], "created_at": "2026-01-01 09:00"}]},
            'a "created_at" in column "answers" has no UTC offset (2026-01-01 09:00)',
        ),
        (
            {"answers": [{**EXPORTED["answers"][0], "created_at": "soon"}]},
            'a "created_at" in column "answers" is not an ISO 8601 time',
        ),
        ({"answers": [{"user_id": "U1"}]}, 'column "answers" is not a list of'),
        ({"answers": [EXPORTED["answers"][0]] * 2}, "with one answer a person"),
    ],
)
def test_a_bad_exported_provenance_is_a_row_error_naming_the_column(
    tmp_path: Path, changes: dict, reason: str
):
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({**EXPORTED, **changes}) + "\n" + json.dumps(EXPORTED) + "\n")
    bad, good = rows_of(path)
    assert isinstance(bad, RowError) and bad.line == 1 and reason in bad.reason
    assert good.provenance is not None


def test_an_export_with_its_label_cleared_imports_the_item_without_a_label(tmp_path: Path):
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({**EXPORTED, "label": ""}) + "\n")
    [row] = rows_of(path)
    assert (row.label, row.provenance, row.meta) == (None, None, {"team": "x"})


def test_import_rows_commits_in_batches_and_records_the_run(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text("id,text,label\n1,one,a\n2,two,\n3,,b\n4,four,a\n1,one,a\n")
    rejected: list[str] = []
    with Store.open(tmp_path / "hitl.db") as store:
        rows = rows_of_file(path)
        summary = import_rows(
            store, path, rows, triggered_by="cli:items.csv", on_error=rejected.append, batch_size=2
        )
        run = store.last_run("import")
        assert sorted(store.existing_item_ids(["1", "2", "3", "4"])) == ["1", "2", "4"]
    assert rejected == ['items.csv line 4: column "text" is empty, row skipped']
    assert summary.counts() == {
        "read": 5,
        "imported": 3,
        "labeled": 2,
        "duplicates": 1,
        "rejected": 1,
    }
    assert run["status"] == "ok" and run["triggered_by"] == "cli:items.csv"
    assert run["detail"] == {**summary.counts(), "file": str(path), "errors": rejected}


def test_a_label_an_admin_set_without_votes_reads_back_with_0_votes_and_agreement_0(
    tmp_path: Path,
):
    """`hitl labels set` on an item nobody voted for exports votes 0, agreement 0.0
    (``Store.set_label``): `hitl import` used to refuse it, breaking export → import."""
    path = tmp_path / "export.jsonl"
    set_by_admin = {**EXPORTED, "votes": 0, "agreement": 0.0, "annotators": ["cli:ana"]}
    path.write_text(json.dumps({**set_by_admin, "answers": []}) + "\n")
    [row] = rows_of(path)
    assert isinstance(row, Row), row
    assert (row.provenance.votes, row.provenance.agreement) == (0, 0.0)
    assert row.provenance.annotators == ("cli:ana",)


def _export_csv(path: Path, **changes: str) -> Path:
    """``EXPORTED`` as `hitl export --format csv` writes it (lists and objects as JSON text),
    with ``changes`` written over its cells as they are."""
    cells = {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in EXPORTED.items()}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(cells)
        writer.writerow({**cells, **changes}.values())
        writer.writerow({**cells, "id": "2"}.values())
    return path


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"meta": '{"team": NaN}'}, 'column "meta" holds NaN'),
        ({"meta": '{"team": "\\ud83d"}'}, 'column "meta" holds a lone surrogate \\ud83d'),
        ({"meta": '{"n": 1' + "0" * 5000 + "}"}, 'column "meta" holds a whole number of 5,001'),
        ({"annotators": '["U1", "\\udfff"]'}, 'column "annotators" holds a lone surrogate'),
        ({"answers": '[{"user_id": "U\\ud800"}]'}, 'column "answers" holds a lone surrogate'),
        ({"annotators": "[1" + "0" * 5000 + "]"}, 'column "annotators" holds a whole number'),
        ({"votes": "1" + "0" * 5000}, 'column "votes" is not a whole number'),
    ],
)
def test_json_in_a_csv_exports_cells_that_cannot_be_stored_is_a_row_error(
    tmp_path: Path, changes: dict, reason: str
):
    bad, good = rows_of(_export_csv(tmp_path / "export.csv", **changes))
    assert isinstance(bad, RowError) and bad.line == 2 and reason in bad.reason, bad
    assert good.id == "2" and good.provenance is not None


def test_a_whole_surrogate_pair_is_its_character_and_floats_still_read(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"text": "smile \\ud83d\\ude00", "label": 2.5, "score": -1.5e3}\n')
    [row] = rows_of(path)
    assert (row.text, row.label, row.meta) == ("smile 😀", "2.5", {"score": -1500.0})


def test_a_tsv_quote_error_shows_the_tab_as_backslash_t_and_says_what_to_do(tmp_path: Path):
    path = tmp_path / "q.tsv"
    path.write_text('id\ttext\n1\t"Hello" she said\n2\tplain\n', encoding="utf-8")
    bad, good = rows_of(path)
    assert isinstance(bad, RowError) and "\t" not in bad.reason
    assert bad.reason.startswith("malformed CSV ('\\t' expected after '\"')")
    assert 'with "" for each " inside' in bad.reason
    assert good.text == "plain"
