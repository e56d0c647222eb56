"""`hitl import` end to end (click's CliRunner, in process): rows the store cannot keep are
refused one by one, an import that fails midway is recorded as failed, an export of labels an
admin set reads back, and labels outside the label set in force are refused."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.ingest import Row, RowError, import_rows, read_items
from bot.store import Store


def run(db: Path, *args: str):
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], catch_exceptions=False, prog_name="hitl"
    )


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_lone_surrogate_is_refused_on_its_line_and_every_good_row_of_its_batch_stored(
    tmp_path: Path,
):
    """It used to crash the import with a UnicodeEncodeError, lose the 500 good rows of its
    batch and leave the run "running"."""
    path = write_jsonl(tmp_path / "items.jsonl", [{"id": f"i{n}", "text": f"good {n}"}
                                                  for n in range(1500)])  # fmt: skip
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "bad", "text": "broken emoji \\ud83d here"}\n')
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0
    assert result.stderr == (
        'items.jsonl line 1501: column "text" holds a lone surrogate \\ud83d (half of a '
        "character such as an emoji): fix or remove it, row skipped\n"
    )
    assert result.stdout.startswith("items.jsonl: read 1,501 rows, imported 1,500 (0 with")
    with Store.open(db) as store:
        assert store.db["items"].count == 1500
        assert store.last_run("import")["status"] == "ok"


def test_numbers_a_store_cannot_keep_refuse_their_row_and_the_rest_is_imported(tmp_path: Path):
    """A 5,001-digit number used to stop the whole import with a traceback; NaN and Infinity
    became the labels "nan" and "inf", and a NaN meta value was stored as invalid JSON."""
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"id": "a", "text": "fine"}\n'
        '{"id": "b", "text": "x", "n": 1' + "0" * 5000 + "}\n"
        '{"id": "c", "text": "y", "label": NaN}\n'
        '{"id": "d", "text": "z", "score": Infinity}\n'
        '{"id": "e", "text": "also fine", "score": 0.5}\n',
        encoding="utf-8",
    )
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.stderr.splitlines() == [
        'items.jsonl line 2: column "n" holds a whole number of 5,001 digits, over the limit '
        "of 4,300 (write it as a string), row skipped",
        'items.jsonl line 3: column "label" holds NaN, which JSON does not allow (use null or '
        "a number), row skipped",
        'items.jsonl line 4: column "score" holds Infinity, which JSON does not allow (use null '
        "or a number), row skipped",
    ]
    with Store.open(db) as store:
        assert sorted(store.existing_item_ids(list("abcde"))) == ["a", "e"]
        assert store.label_set() == []
        assert store.get_item("e")["meta"] == {"score": 0.5}


def test_an_import_that_fails_midway_is_recorded_failed_and_keeps_its_committed_batches(
    tmp_path: Path,
):
    def rows() -> Iterator[Row | RowError]:
        yield from (Row(n, f"i{n}", f"text {n}") for n in range(1, 6))
        raise OSError("the disk went away")

    with Store.open(tmp_path / "hitl.db") as store:
        with pytest.raises(OSError, match="the disk went away"):
            import_rows(store, tmp_path / "f.jsonl", rows(), triggered_by="test", batch_size=2)
        run_ = store.last_run("import", ["running", "ok", "failed"])
        assert run_["status"] == "failed"
        assert run_["detail"]["error"] == "OSError: the disk went away"
        assert run_["detail"]["imported"] == 4  # two batches of two; the fifth row was pending
        assert sorted(store.existing_item_ids(["i1", "i2", "i3", "i4", "i5"])) == [
            "i1",
            "i2",
            "i3",
            "i4",
        ]


# Labels an admin set (`hitl labels set`) are exported with 0 votes and agreement 0 when no vote
# was for them; `hitl import` used to refuse them, so an export did not read back.


def admin_labeled_db(tmp_path: Path) -> Path:
    db = tmp_path / "a.db"
    path = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "T1", "text": "charged twice", "label": "billing"},
            {"id": "T2", "text": "app crashes"},
            {"id": "T3", "text": "refund please"},
        ],
    )
    assert run(db, "import", str(path)).exit_code == 0
    with Store.open(db) as store:  # someone voted bug on T3, and one more vote was needed
        store.record_answer("T3", "U1", "bug", source="button", dedupe_key="k1", votes_needed=2)
    assert run(db, "labels", "set", "T2", "bug", "--by", "cli:ana").exit_code == 0
    assert run(db, "labels", "set", "T3", "billing", "--by", "cli:ana").exit_code == 0
    assert run(db, "labels", "set", "T1", "bug", "--by", "cli:ana").exit_code == 0
    return db


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_of_labels_an_admin_set_imports_back_the_same(tmp_path: Path, fmt: str):
    db, copy = admin_labeled_db(tmp_path), tmp_path / "copy.db"
    exported, again = tmp_path / f"decided.{fmt}", tmp_path / f"again.{fmt}"
    assert run(db, "export", "--format", fmt, "-o", str(exported)).exit_code == 0
    with Store.open(db) as store:
        votes = {r["id"]: (r["votes"], r["agreement"]) for r in store.iter_export()}
    # nobody voted for the labels the admin set (T1's import answer was billing)
    assert votes == {"T1": (0, 0.0), "T2": (0, 0.0), "T3": (0, 0.0)}

    result = run(copy, "import", str(exported))
    assert (result.stderr, result.stdout) == (
        "",
        f"decided.{fmt}: read 3 rows, imported 3 (3 with labels), 0 duplicates, 0 rejected\n",
    )
    assert run(copy, "export", "--format", fmt, "-o", str(again)).exit_code == 0
    assert again.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_of_labels_an_admin_set_imports_as_gold(tmp_path: Path, fmt: str):
    db, copy = admin_labeled_db(tmp_path), tmp_path / "copy.db"
    exported = tmp_path / f"decided.{fmt}"
    assert run(db, "export", "--format", fmt, "-o", str(exported)).exit_code == 0
    result = run(copy, "import", "--gold", str(exported))
    assert result.stderr == ""
    assert result.stdout.startswith(f"decided.{fmt}: read 3 rows, 3 new gold items")
    marked = run(db, "import", "--gold", str(exported))  # the same database: marked gold
    assert marked.stderr == ""
    assert "3 stored items marked gold" in marked.stdout


def test_exported_votes_that_make_no_sense_are_still_refused(tmp_path: Path):
    db = admin_labeled_db(tmp_path)
    exported = tmp_path / "decided.jsonl"
    assert run(db, "export", "-o", str(exported)).exit_code == 0
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [r["id"] for r in records] == ["T2", "T3", "T1"]  # in the order they were decided
    records[0]["votes"], records[1]["agreement"], records[2]["votes"] = -1, 0.5, 1.5
    write_jsonl(exported, records)
    result = run(tmp_path / "copy.db", "import", str(exported))
    assert result.stderr.splitlines() == [
        'decided.jsonl line 1: column "votes" is not a whole number of 0 or more, row skipped',
        'decided.jsonl line 2: columns "votes" (0) and "agreement" (0.5) disagree: a label '
        "with no votes for it has agreement 0, any other one more than 0, row skipped",
        'decided.jsonl line 3: column "votes" is not a whole number of 0 or more, row skipped',
        "Error: every row of decided.jsonl was rejected: nothing was imported (see the lines "
        "above)",
    ]
    assert result.exit_code == 1


# The label set in force (HITL_LABELS, or the set stored by `hitl labels`): `hitl labels set`
# refuses a label outside it, and so does import, or the next retrain would learn it.

OUT_OF_SET = [
    {"id": "1", "text": "charged twice on my card", "label": "billing"},
    {"id": "2", "text": "app crashes on start", "label": "bug"},
    {"id": "3", "text": "hello how are you", "label": "chitchat"},
    {"id": "4", "text": "random typo label", "label": "biling"},
    {"id": "5", "text": "not labeled yet"},
]


def stored_label_set(db: Path, tmp_path: Path) -> None:
    """billing, bug, question: stored by `hitl labels add`."""
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl",
        [{"id": "s1", "text": "refund", "label": "billing"}, {"id": "s2", "text": "crash",
                                                              "label": "bug"}],
    )  # fmt: skip
    assert run(db, "import", str(seeds)).exit_code == 0
    assert run(db, "labels", "add", "question").exit_code == 0


@pytest.mark.parametrize("gold", [False, True])
def test_a_row_labeled_outside_the_stored_label_set_is_refused_saying_how_to_fix_it(
    tmp_path: Path, gold: bool
):
    db = tmp_path / "hitl.db"
    stored_label_set(db, tmp_path)
    rows = OUT_OF_SET if not gold else OUT_OF_SET[:4]
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    result = run(db, "import", *(["--gold"] if gold else []), str(path))
    assert result.stderr.splitlines() == [
        f'items.jsonl line {n}: label "{label}" is not in the label set (billing, bug, '
        f"question): add it with `hitl labels add {label}`, or fix the row, row skipped"
        for n, label in ((3, "chitchat"), (4, "biling"))
    ]
    with Store.open(db) as store:
        assert sorted(store.label_set()) == ["billing", "bug"]
        stored = store.existing_item_ids([r["id"] for r in OUT_OF_SET])
        assert sorted(stored) == (["1", "2"] if gold else ["1", "2", "5"])

    assert run(db, "labels", "add", "chitchat").exit_code == 0  # the fix the message gives
    again = run(db, "import", *(["--gold"] if gold else []), str(path))
    assert again.stderr.splitlines() == [
        'items.jsonl line 4: label "biling" is not in the label set (billing, bug, question, '
        "chitchat): add it with `hitl labels add biling`, or fix the row, row skipped"
    ]


def test_a_row_with_a_renamed_label_is_told_its_new_name(tmp_path: Path):
    db = tmp_path / "hitl.db"
    stored_label_set(db, tmp_path)
    assert run(db, "labels", "rename", "question", "how_to").exit_code == 0
    path = write_jsonl(
        tmp_path / "old.jsonl", [{"id": "9", "text": "how do I", "label": "question"}]
    )
    assert run(db, "import", str(path)).stderr == (
        'old.jsonl line 1: label "question" is now "how_to" (changed with `hitl labels`): write '
        '"how_to" in the file, or, to have "question" back, rename the label back with `hitl labels'
        " rename how_to question`, row skipped\n"
        "Error: every row of old.jsonl was rejected: nothing was imported (see the lines above)\n"
    )


def test_the_configured_label_set_refuses_rows_outside_it_and_none_leaves_labels_open(
    tmp_path: Path,
):
    """``configured_labels`` is HITL_LABELS, which the CLI passes; without it and without a
    stored set, an import's labels make the set."""
    path = write_jsonl(tmp_path / "items.jsonl", OUT_OF_SET)
    with Store.open(tmp_path / "a.db") as store:
        errors: list[str] = []
        summary = import_rows(
            store,
            path,
            iter_rows(path),
            triggered_by="test",
            on_error=errors.append,
            configured_labels=["billing", "bug"],
        )
        assert (summary.imported, summary.rejected) == (3, 2)
        assert errors[0] == (
            'items.jsonl line 3: label "chitchat" is not in the label set (billing, bug): '
            "add it with `hitl labels add chitchat`, or fix the row, row skipped"
        )
    with Store.open(tmp_path / "b.db") as store:
        summary = import_rows(store, path, iter_rows(path), triggered_by="test")
        assert (summary.imported, summary.rejected) == (5, 0)
        assert store.label_set() == ["biling", "billing", "bug", "chitchat"]


def iter_rows(path: Path) -> Iterator[Row | RowError]:
    return read_items(path)


def test_hitl_labels_refuses_rows_outside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HITL_LABELS", "billing,bug")
    path = write_jsonl(tmp_path / "items.jsonl", OUT_OF_SET)
    assert run(tmp_path / "hitl.db", "import", str(path)).stderr.splitlines()[0] == (
        'items.jsonl line 3: label "chitchat" is not in the label set (billing, bug): add it '
        "with `hitl labels add chitchat`, or fix the row, row skipped"
    )


def test_a_csv_export_guards_formula_cells_and_reads_them_back_unchanged(tmp_path: Path):
    # Item texts come from producers: a spreadsheet opening the CSV export ran a cell such as
    # =HYPERLINK(...) as a formula (CSV injection). It is written after a ', which
    # spreadsheets show as text, and `hitl import` takes the ' off again.
    texts = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "plain"]
    rows = [{"id": f"t{n}", "text": t, "label": "bug"} for n, t in enumerate(texts)]
    rows.append({"id": "t9", "text": "another", "label": "=cmd"})
    db, copy = tmp_path / "a.db", tmp_path / "b.db"
    assert run(db, "import", str(write_jsonl(tmp_path / "items.jsonl", rows))).exit_code == 0
    exported = tmp_path / "decided.csv"
    assert run(db, "export", "--format", "csv", "-o", str(exported)).exit_code == 0
    with exported.open(newline="") as handle:
        cells = [row for row in csv.DictReader(handle)]
    assert sorted(r["text"] for r in cells) == sorted(
        ["'" + t for t in texts if t != "plain"] + ["plain", "another"]
    )
    assert [r["label"] for r in cells if r["id"] == "t9"] == ["'=cmd"]
    assert run(copy, "import", str(exported)).exit_code == 0
    with Store.open(copy) as store:
        assert {store.get_item(f"t{n}")["text"] for n in range(5)} == set(texts)
        assert store.resolution("t9")["label"] == "=cmd"


def test_a_csv_export_reads_back_exactly_a_text_that_starts_with_a_quote(tmp_path: Path):
    # "'=1" was written "'=1" and read back as "=1": the guard's ' and the text's own were one.
    # A plain number (-3) is no formula: written as it is.
    texts = ["=1", "'=1", "''=1", "'plain", "-3", "'", "''+x"]
    rows = [{"id": f"t{n}", "text": t, "label": "bug"} for n, t in enumerate(texts)]
    db, copy = tmp_path / "a.db", tmp_path / "b.db"
    assert run(db, "import", str(write_jsonl(tmp_path / "items.jsonl", rows))).exit_code == 0
    exported = tmp_path / "decided.csv"
    assert run(db, "export", "--format", "csv", "-o", str(exported)).exit_code == 0
    with exported.open(newline="") as handle:
        written = {r["id"]: r["text"] for r in csv.DictReader(handle)}
    assert [written[f"t{n}"] for n in range(len(texts))] == [
        "'=1", "''=1", "'''=1", "'plain", "-3", "'", "'''+x"
    ]  # fmt: skip
    result = run(copy, "import", str(exported))
    assert result.exit_code == 0, result.output
    with Store.open(copy) as store:
        assert [store.get_item(f"t{n}")["text"] for n in range(len(texts))] == texts


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_a_line_of_40_mb_is_refused_without_being_held_in_memory(tmp_path: Path, fmt: str):
    # A file with no line breaks (a binary file, minified JSON) was read a whole line at a
    # time: a 150 MB line took 0.5-1 GB. Now a line is read at most 4 MB far.
    import tracemalloc

    long = "x" * 40_000_000
    path = tmp_path / f"items.{fmt}"
    if fmt == "jsonl":
        lines = [json.dumps({"text": t}) for t in ("first", long, "last")]
    else:
        lines = (["text"] if fmt == "csv" else []) + ["first", long, "last"]
    path.write_text("\n".join(lines) + "\n")
    del long, lines
    tracemalloc.start()
    try:
        rows = list(read_items(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 25_000_000, f"{peak:,} bytes"  # 4 MB of the line, a few times; not all 40 MB
    assert [r.text for r in rows if isinstance(r, Row)] == ["first", "last"]
    [refused] = [r for r in rows if isinstance(r, RowError)]
    assert refused.line == (3 if fmt == "csv" else 2)
    limit = "1,000,000 characters" if fmt == "csv" else "4,000,000 bytes"
    assert f"the line is over {limit}" in refused.reason


@pytest.mark.parametrize(
    "row",
    [
        'kept,"{long}"',  # a meta value: its cut first million characters were stored
        '"{long}",x',  # a closed quote: "unterminated quote in field text"
        "{long},x",  # "has 1 fields, the header has 2"
    ],
)
def test_a_csv_line_over_a_million_characters_is_refused_as_too_long(tmp_path: Path, row: str):
    # A CSV line is read at most 1,000,000 characters far; the row of a longer one was read
    # from its cut first part: a long meta value was stored cut short, without a word, and a
    # long text was refused for a quote or a field it has.
    path = tmp_path / "items.csv"
    path.write_text("text,notes\n" + row.format(long="n" * 1_200_000) + "\nlast,y\n")
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "items.csv line 2: the line is over 1,000,000 characters (a text has at most 40,000"
        " characters); its rest was not read, row skipped"
    )
    assert "imported 1 (0 with labels), 0 duplicates, 1 rejected" in result.output


# Times read from an export (resolved_at, each answer's created_at) were stored as written:
# the store compares its times as text, so a time in the future, or one in another offset,
# hid the labels decided after it (`hitl retrain` said "nothing new" after `hitl labels set`).


def exported(item_id: str, text: str, label: str, resolved_at: str, answered_at: str) -> dict:
    return {
        "id": item_id,
        "text": text,
        "label": label,
        "votes": 1,
        "agreement": 1.0,
        "annotators": ["U1"],
        "resolved_at": resolved_at,
        "meta": {},
        "answers": [{"user_id": "U1", "label": label, "created_at": answered_at}],
    }


def test_a_time_in_the_future_is_refused_on_its_row(tmp_path: Path):
    past = "2026-01-01T10:00:00.000+00:00"
    path = write_jsonl(
        tmp_path / "decided.jsonl",
        [
            exported("1", "refund please", "billing", "2099-01-01T00:00:00+00:00", past),
            exported("2", "app crashes", "bug", past, "2099-01-01"),
            exported("3", "charged twice", "billing", past, "2099-01-01T00:00:00Z"),
            exported("4", "error 500", "bug", past, past),
        ],
    )
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    skew = "over 5 minutes past this machine's clock): fix the time, or the clock of the machine"
    assert result.stderr.splitlines() == [
        'decided.jsonl line 1: column "resolved_at" is in the future (2099-01-01T00:00:00.000'
        f"+00:00, {skew} that wrote it, row skipped",
        'decided.jsonl line 2: a "created_at" in column "answers" is a date without a time '
        "(2099-01-01): write a time with its UTC offset, as `hitl export` does (2099-01-01T00:"
        "00:00.000+00:00 for midnight UTC), row skipped",
        'decided.jsonl line 3: a "created_at" in column "answers" is in the future (2099-01-01'
        f"T00:00:00.000+00:00, {skew} that wrote it, row skipped",
    ]
    assert result.stdout == (
        "decided.jsonl: read 4 rows, imported 1 (1 with labels), 0 duplicates, 3 rejected\n"
    )
    with Store.open(db) as store:
        assert store.labels_watermark()["newest"] == past


def test_a_time_up_to_five_minutes_past_the_stores_clock_is_taken(tmp_path: Path):
    """Another machine's clock may run a little ahead; ``now`` is the store's clock."""
    path = write_jsonl(
        tmp_path / "decided.jsonl",
        [
            exported("1", "a", "x", "2026-06-01T12:05:00+00:00", "2026-06-01T14:04:00+02:00"),
            exported("2", "b", "x", "2026-06-01T12:05:00.001Z", "2026-06-01T12:00:00Z"),
            exported("3", "c", "x", "2026-06-01T12:00:00Z", "2026-06-01T14:05:01+02:00"),
        ],
    )
    errors: list[str] = []
    with Store.open(tmp_path / "hitl.db", clock=lambda: "2026-06-01T12:00:00.000+00:00") as store:
        summary = import_rows(
            store, path, iter_rows(path), triggered_by="test", on_error=errors.append
        )
    assert (summary.imported, summary.rejected) == (1, 2)
    assert [e.split(" (")[0] for e in errors] == [
        'decided.jsonl line 2: column "resolved_at" is in the future',
        'decided.jsonl line 3: a "created_at" in column "answers" is in the future',
    ]
    assert "(2026-06-01T12:05:01.000+00:00, over 5 minutes past" in errors[1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_times_in_another_offset_or_with_z_are_stored_as_utc_in_the_stores_form(
    tmp_path: Path, fmt: str
):
    records = [
        exported("1", "refund", "billing", "2026-01-01T12:00:00+02:00", "2026-01-01T09:30:00Z"),
        exported("2", "crash", "bug", "2026-01-01T10:00:00.123456Z", "2025-12-31T23:30:00-01:00"),
    ]
    path = tmp_path / f"decided.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, records)
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            for record in records:
                writer.writerow({k: json.dumps(v) if k in ("annotators", "meta", "answers")
                                 else v for k, v in record.items()})  # fmt: skip
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert (result.stderr, result.exit_code) == ("", 0)
    with Store.open(db) as store:
        times = {
            r["id"]: (r["resolved_at"], [a["created_at"] for a in r["answers"]])
            for r in store.iter_export()
        }
    assert times == {
        "1": ("2026-01-01T10:00:00.000+00:00", ["2026-01-01T09:30:00.000+00:00"]),
        "2": ("2026-01-01T10:00:00.123+00:00", ["2026-01-01T00:30:00.000+00:00"]),
    }


def test_a_label_set_after_importing_labels_from_another_offset_is_seen_by_retrain(
    tmp_path: Path,
):
    """Labels decided an hour ago, written in +14:00, sorted as text after the time of any
    label set now: `hitl retrain` then said "nothing new" and skipped it."""
    from tests.bot.test_learning import BILLING, BUG

    kiribati = timezone(timedelta(hours=14))
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(kiribati).isoformat()
    records = [
        exported(f"b{n}", text, "billing", an_hour_ago, an_hour_ago)
        for n, text in enumerate(BILLING)
    ]
    records += [
        exported(f"g{n}", text, "bug", an_hour_ago, an_hour_ago) for n, text in enumerate(BUG)
    ]
    db = tmp_path / "hitl.db"
    path = write_jsonl(tmp_path / "decided.jsonl", records)
    assert run(db, "import", str(path)).stderr == ""
    assert run(db, "retrain").stdout.startswith("Retrain v1: promoted")
    assert run(db, "labels", "set", "b0", "bug", "--by", "cli:ana").exit_code == 0
    again = run(db, "retrain").stdout
    assert "nothing new" not in again
    assert again.startswith("Retrain v2: "), again
    assert again.splitlines()[1] == "Labels: 12 (1 new since v1 was trained)"  # b0's new label
