from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store
from tests.bot.harness import Item


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="hitl")


@pytest.fixture
def labeled_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket", "body", "intent", "team"])
        writer.writerow(["T1", "I was charged twice", "billing", "ops"])
        writer.writerow(["T2", "The app crashes, é 👋", "bug", "mobile"])
        writer.writerow(["T3", "How do I export data?", "", "web"])
        writer.writerow(["T4", "", "bug", "web"])
    return path


def import_tickets(path: Path, db: Path):
    """Import the tickets fixture with its own column names."""
    return run(
        "--db",
        str(db),
        "import",
        str(path),
        "--text-column",
        "body",
        "--id-column",
        "ticket",
        "--label-column",
        "intent",
    )


def test_import_prints_a_summary_and_reports_bad_rows(labeled_csv: Path, db_path: Path):
    result = run(
        "--db",
        str(db_path),
        "import",
        str(labeled_csv),
        "--text-column",
        "body",
        "--id-column",
        "ticket",
        "--label-column",
        "intent",
    )
    assert result.exit_code == 0
    assert result.stderr == 'tickets.csv line 5: column "body" is empty, row skipped\n'
    assert result.stdout == (
        "tickets.csv: read 4 rows, imported 3 (2 with labels), 0 duplicates, 1 rejected\n"
    )
    with Store.open(db_path) as store:
        assert store.count_items()["resolved"] == 2 and store.count_items()["new"] == 1
        assert store.get_item("T3")["meta"] == {"team": "web"}
        [run_row] = store.runs("import")
        assert run_row["detail"]["rejected"] == 1


def test_reimporting_the_same_file_adds_nothing(tmp_path: Path, db_path: Path):
    path = tmp_path / "msgs.txt"
    path.write_text("reset my password\nrefund please\nreset my password\n")
    first = run("--db", str(db_path), "import", str(path))
    assert first.stdout.strip() == (
        "msgs.txt: read 3 rows, imported 2 (0 with labels), 1 duplicate, 0 rejected"
    )
    again = run("--db", str(db_path), "import", str(path))
    assert again.stdout.strip() == (
        "msgs.txt: read 3 rows, imported 0 (0 with labels), 3 duplicates, 0 rejected"
    )
    with Store.open(db_path) as store:
        assert store.db["items"].count == 2


def test_labels_for_items_stored_unlabeled_are_said_not_applied(tmp_path: Path, db_path: Path):
    """Items imported unlabeled, then a file of the same ids with labels: they stay duplicates
    (an import never changes a stored item), and the summary says the labels were not applied
    and how to set them, rather than "2 duplicates" alone. A labelled item given its label
    again is a plain duplicate."""
    (tmp_path / "items.csv").write_text("id,text\na,refund please\nb,app crashes\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,text,label\na,refund please,billing\nb,app crashes,bug\n")
    assert run("--db", str(db_path), "import", str(tmp_path / "items.csv")).exit_code == 0
    assert run("--db", str(db_path), "labels", "set", "a", "billing").exit_code == 0

    result = run("--db", str(db_path), "import", str(labels))

    assert result.stdout.strip() == (
        "labels.csv: read 2 rows, imported 0 (0 with labels), 2 duplicates (1 label for items "
        "stored unlabeled not applied: `hitl labels set ID LABEL` labels a stored item), "
        "0 rejected"
    )
    with Store.open(db_path) as store:
        assert store.current_label("b") is None
        [run_row] = [r for r in store.runs("import") if r["detail"]["file"] == str(labels)]
        assert run_row["detail"]["labels_not_applied"] == 1


def test_the_import_summary_counts_in_words(tmp_path: Path, db_path: Path):
    one = tmp_path / "one.txt"
    one.write_text("reset my password\n")
    assert run("--db", str(db_path), "import", str(one)).stdout.strip() == (
        "one.txt: read 1 row, imported 1 (0 with labels), 0 duplicates, 0 rejected"
    )
    # 50 errors are shown, the rest counted
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n" + "".join(f"b{n},\n" for n in range(51)))
    result = run("--db", str(db_path), "import", str(bad))
    assert result.stderr.splitlines()[-2:] == [
        "... and 1 more rejected row",
        "Error: every row of bad.csv was rejected: nothing was imported (see the lines above)",
    ]
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 52
    many = tmp_path / "many.txt"
    many.write_text("".join(f"ticket {n}\n" for n in range(1_200)))
    assert run("--db", str(db_path), "import", str(many)).stdout.strip() == (
        "many.txt: read 1,200 rows, imported 1,200 (0 with labels), 0 duplicates, 0 rejected"
    )


def test_an_input_without_rows_fails_and_leaves_no_new_database(tmp_path: Path):
    """It said "read 0 rows" and exited 0, and a mistyped --db was left as a new empty
    database: a header-only CSV, an empty file, an empty pipe (a failed `curl`) now fail as an
    import whose every row was rejected does, before the database is opened."""
    header, empty = tmp_path / "h.csv", tmp_path / "e.txt"
    header.write_text("text,label\n")
    empty.write_bytes(b"")
    typo = tmp_path / "typo.db"
    for path, why in ((header, "a header only"), (empty, "the file is empty")):
        result = run("--db", str(typo), "import", str(path))
        assert (result.exit_code, result.output) == (
            1,
            f"Error: {path.name}: no rows to import ({why})\n",
        )
        assert not typo.exists()
    piped = CliRunner().invoke(
        cli, ["--db", str(typo), "import", "-", "--format", "csv"], input=b"", prog_name="hitl"
    )
    assert (piped.exit_code, piped.output) == (
        1,
        "Error: stdin: no rows to import (empty, or a header only, or blank lines)\n",
    )
    assert not typo.exists()
    kept = tmp_path / "kept.db"
    assert run("--db", str(kept), "import", str(tmp_path / "e.txt")).exit_code == 1
    (tmp_path / "one.txt").write_text("one item\n")
    assert run("--db", str(kept), "import", str(tmp_path / "one.txt")).exit_code == 0
    before = kept.read_bytes()
    assert run("--db", str(kept), "import", str(header)).exit_code == 1
    assert kept.read_bytes() == before  # an existing database untouched: not even a run


def test_jsonl_import_uses_the_db_from_the_environment(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a", "text": "hello", "label": "greet"}\n{"text": "bye"}\n')
    env_db = tmp_path / "env.db"
    result = run("import", str(path), env={"HITL_DB": str(env_db)})
    assert result.exit_code == 0 and "imported 2 (1 with labels)" in result.stdout
    with Store.open(env_db) as store:
        assert store.label_set() == ["greet"]


def test_missing_column_fails_at_once_and_writes_nothing(labeled_csv: Path, db_path: Path):
    result = run("--db", str(db_path), "import", str(labeled_csv))
    assert result.exit_code == 1
    assert result.stderr == (
        f'Error: {labeled_csv}: no column "text" in the header (ticket, body, intent, team); '
        "pass --text-column with one of these\n"
    )
    assert not db_path.exists()


def test_unreadable_file_is_one_line(tmp_path: Path, db_path: Path):
    result = run("--db", str(db_path), "import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'nope.csv'}: cannot read the file (No such file or directory); "
        "check the path\n"
    )


def test_a_failed_import_keeps_what_was_stored_before(
    labeled_csv: Path, tmp_path: Path, db_path: Path
):
    good = tmp_path / "good.txt"
    good.write_text("one\ntwo\n")
    run("--db", str(db_path), "import", str(good))
    assert run("--db", str(db_path), "import", str(labeled_csv)).exit_code == 1
    with Store.open(db_path) as store:
        assert store.db["items"].count == 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_then_import_round_trips(labeled_csv: Path, tmp_path: Path, fmt: str):
    source_db, copy_db = tmp_path / "a.db", tmp_path / "b.db"
    run(
        "--db",
        str(source_db),
        "import",
        str(labeled_csv),
        "--text-column",
        "body",
        "--id-column",
        "ticket",
        "--label-column",
        "intent",
    )
    exported = tmp_path / f"labels.{fmt}"
    result = run("--db", str(source_db), "export", "--format", fmt, "--output", str(exported))
    assert result.stderr == f"wrote 2 labels to {exported}\n"

    assert run("--db", str(copy_db), "import", str(exported)).exit_code == 0
    with Store.open(source_db) as a, Store.open(copy_db) as b:

        def key(r):
            return (r["id"], r["text"], r["label"], r["meta"])

        assert [key(r) for r in a.iter_export()] == [key(r) for r in b.iter_export()]
        assert b.get_item("T2")["text"] == "The app crashes, é 👋"


def test_import_reads_standard_input_given_a_format(labeled_csv: Path, tmp_path: Path):
    """`hitl export | hitl import - --format jsonl`: "-" is standard input ("-: cannot read the
    file (No such file or directory)" before); rows are reported as lines of "stdin"."""
    source_db, copy_db = tmp_path / "a.db", tmp_path / "b.db"
    import_tickets(labeled_csv, source_db)
    exported = run("--db", str(source_db), "export").stdout
    piped = exported + "not json\n"

    def import_stdin(*options: str):
        return CliRunner().invoke(cli, ["--db", str(copy_db), "import", "-", *options],
                                  input=piped, prog_name="hitl")  # fmt: skip

    result = import_stdin("--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert result.stderr == "stdin line 3: bad JSON (Expecting value at column 1), row skipped\n"
    assert result.stdout.startswith("stdin: read 3 rows, imported 2 (2 with labels),")
    with Store.open(source_db) as a, Store.open(copy_db) as b:
        assert [(r["id"], r["label"]) for r in a.iter_export()] == [
            (r["id"], r["label"]) for r in b.iter_export()
        ]
    result = import_stdin()
    assert result.exit_code == 1
    assert result.output == (
        "Error: reading standard input (-) needs --format (csv, tsv, jsonl, text)\n"
    )


@pytest.mark.parametrize(
    ("fmt", "piped", "error"),
    [
        ("csv", "text,text\na,b\n", 'the header names the column "text" twice'),
        ("csv", "text,label\nhi there,a\n", 'no column "ID" in the header'),
        ("csv", 'text,"a\n', "line 1: the header cannot be read"),
        ("csv", ",column 1\nhi there,a\n", "the header has a column without a name"),
        ("jsonl", '{"body": "hi there"}\n', 'no field "text" in the first 1 rows'),
    ],
)
def test_a_file_error_names_standard_input_as_such(
    tmp_path: Path, fmt: str, piped: str, error: str
):
    """These errors named standard input "/dev/stdin", a path the user never gave; the others
    say "standard input"."""
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "hitl.db"), "import", "-", "--format", fmt, "--id-column", "ID"],
        input=piped,
        prog_name="hitl",
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: standard input")
    assert error in result.output and "/dev/stdin" not in result.output


def test_export_to_stdout_has_every_field(labeled_csv: Path, db_path: Path):
    import_tickets(labeled_csv, db_path)
    lines = run("--db", str(db_path), "export").stdout.splitlines()
    first = json.loads(lines[0])
    assert list(first) == [
        "id",
        "text",
        "label",
        "votes",
        "agreement",
        "annotators",
        "resolved_at",
        "meta",
        "answers",
        "label_set",
        "gold",
    ]
    assert (first["id"], first["label"], first["votes"], first["annotators"]) == (
        "T1",
        "billing",
        1,
        ["import"],
    )


def test_export_answers_lists_every_raw_answer(labeled_csv: Path, db_path: Path):
    import_tickets(labeled_csv, db_path)
    rows = list(
        csv.DictReader(
            run("--db", str(db_path), "export", "--answers", "--format", "csv").stdout.splitlines()
        )
    )
    assert [(r["item_id"], r["label"], r["source"]) for r in rows] == [
        ("T1", "billing", "import"),
        ("T2", "bug", "import"),
    ]


def test_export_answers_marks_the_late_ones_that_counted_nowhere(db_path: Path):
    """A late answer was listed like any other, so figures computed from the export did not
    match `hitl stats` (which leaves it out)."""
    with Store.open(db_path) as store:
        store.add_items([Item("i1", "refund and a crash")], "api")
        store.record_answer("i1", "U0ANA", "bug", source="button", dedupe_key="a")  # decides
        store.record_answer("i1", "U0RAJ", "billing", source="button", dedupe_key="b")  # late
    rows = list(
        csv.DictReader(
            run("--db", str(db_path), "export", "--answers", "--format", "csv").stdout.splitlines()
        )
    )
    assert [(r["user_id"], r["label"], r["late"]) for r in rows] == [
        ("U0ANA", "bug", "False"),
        ("U0RAJ", "billing", "True"),
    ]
    lines = run("--db", str(db_path), "export", "--answers").stdout.splitlines()
    assert [json.loads(line)["late"] for line in lines] == [False, True]


def test_config_masks_secrets_and_names_sources(tmp_path: Path):
    result = run("config", env={"SLACK_BOT_TOKEN": "xoxb-111-222-secretvalue", "HITL_VOTES": "3"})
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "xoxb-****alue" in lines["SLACK_BOT_TOKEN"] and "secretvalue" not in result.stdout
    assert lines["HITL_VOTES"].split() == ["HITL_VOTES", "3", "(env)"]
    assert lines["HITL_THRESHOLD"].split() == ["HITL_THRESHOLD", "0.8", "(default)"]


def test_bad_setting_is_an_error_naming_the_variable():
    result = run("config", env={"HITL_THRESHOLD": "abc"})
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: HITL_THRESHOLD="abc" is not a number; use a value between 0 and 1\n'
    )


def test_an_unknown_strategy_is_one_line_naming_the_choices():
    result = run("config", env={"HITL_STRATEGY": "smallest_margin"})
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: HITL_STRATEGY="smallest_margin" is not a known strategy; use one of entropy,'
        " least_confidence, margin\n"
    )
    shown = run("config", env={"HITL_STRATEGY": "entropy"}).stdout.splitlines()
    assert ["HITL_STRATEGY", "entropy", "(env)"] in [line.split()[:3] for line in shown]


def test_help_explains_each_command():
    for command in ("import", "export", "config"):
        result = run(command, "--help")
        assert result.exit_code == 0 and result.stdout.startswith(f"Usage: hitl {command} ")
        assert "Examples" in result.stdout or "settings" in result.stdout


# Export and import keep provenance (issue 16.7), and a CSV quote left open costs one row (16.8).


def _ticking_clock():
    times = iter(f"2026-03-0{day}T0{hour}:00:00.000+00:00" for day in (1, 2) for hour in range(10))
    return lambda: next(times)


def _labeled_by_people(db: Path) -> None:
    """Four items decided by votes (two and three voters, a dissent, a skip), one seed label."""
    from bot.ingest import Row

    with Store.open(db, clock=_ticking_clock()) as store:
        rows = [Row(n, f"I{n}", f"message {n}", None, {"team": "ops"}) for n in range(1, 5)]
        store.add_items([*rows, Row(5, "I5", "seeded", "praise", {})], source="import")
        answers = [  # one item a line: (item, user, label, votes needed)
            ("I1", "U1", "billing", 2), ("I1", "U2", "billing", 2),
            ("I2", "U1", "bug", 3), ("I2", "U2", "billing", 3), ("I2", "U3", "bug", 3),
            ("I3", "U3", None, 2), ("I3", "U1", "account", 2), ("I3", "U2", "account", 2),
            ("I4", "U2", "bug", 1),
        ]  # fmt: skip
        for n, (item, user, label, needed) in enumerate(answers):
            store.record_answer(
                item, user, label, source="button", dedupe_key=f"k{n}", votes_needed=needed
            )
        store.record_answer("I4", "U3", "praise", source="button", dedupe_key="late")  # history


def _labels_rows(db: Path) -> list[tuple]:
    with Store.open(db) as store:
        return store.db.execute(
            "SELECT item_id, label, votes, agreement, annotators, resolved_at FROM labels"
            " ORDER BY item_id"
        ).fetchall()


def _counted_answers(db: Path) -> list[tuple]:
    """Each person's vote that decided an item: (item, user, label, when)."""
    with Store.open(db) as store:
        rows = []
        for item_id, decided_by in store.db.execute(
            "SELECT item_id, decided_by FROM labels WHERE decided_by IS NOT NULL ORDER BY item_id"
        ):
            tally = store.tally(item_id, through=decided_by)
            for label, users in tally.votes.items():
                for user in users:
                    [when] = store.db.execute(
                        "SELECT max(created_at) FROM answers WHERE item_id = ? AND user_id = ?"
                        " AND id <= ?",
                        [item_id, user, decided_by],
                    ).fetchone()
                    rows.append((item_id, user, label, when))
        return sorted(rows)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_then_import_keeps_who_labeled_what_when_and_how_they_agreed(
    tmp_path: Path, fmt: str
):
    source_db, copy_db = tmp_path / "a.db", tmp_path / "b.db"
    _labeled_by_people(source_db)
    exported = tmp_path / f"labels.{fmt}"
    exported_run = run("--db", str(source_db), "export", "--format", fmt, "-o", str(exported))
    assert exported_run.exit_code == 0

    result = run("--db", str(copy_db), "import", str(exported))
    assert result.stdout == (
        f"labels.{fmt}: read 5 rows, imported 5 (5 with labels), 0 duplicates, 0 rejected\n"
    )
    original = _labels_rows(source_db)
    assert [row[2:4] for row in original] == [(2, 1.0), (2, 2 / 3), (2, 1.0), (1, 1.0), (1, 1.0)]
    assert _labels_rows(copy_db) == original
    with Store.open(copy_db) as store:
        imported = [
            (a["item_id"], a["user_id"], a["label"], a["created_at"]) for a in store.iter_answers()
        ]
        assert {a["source"] for a in store.iter_answers()} == {"import"}
        assert store.get_item("I1")["meta"] == {"team": "ops"}
    votes = _counted_answers(source_db)
    assert ("I2", "U2", "billing") in [vote[:3] for vote in votes]  # the dissent counts too
    assert all(vote in imported for vote in votes)
    again = run("--db", str(copy_db), "import", str(exported))
    assert "imported 0 (0 with labels), 5 duplicates" in again.stdout
    # A second round trip gives the same file.
    second = tmp_path / f"again.{fmt}"
    run("--db", str(copy_db), "export", "--format", fmt, "-o", str(second))
    assert second.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")


def test_import_reports_an_unterminated_quote_and_imports_every_row_after_it(
    tmp_path: Path, db_path: Path
):
    path = tmp_path / "items.csv"
    path.write_text(
        'id,text,label\n1,good one,a\n2,"unterminated quote here,b\n3,row three,a\n'
        '4,row four,b\n5,row five,a\n6,"row six,b\n',
        encoding="utf-8",
    )
    result = run("--db", str(db_path), "import", str(path))
    assert result.exit_code == 0
    assert result.stderr == (
        'items.csv line 3: unterminated quote in field "text", row skipped\n'
        'items.csv line 7: unterminated quote in field "text", row skipped\n'
    )
    assert result.stdout == (
        "items.csv: read 6 rows, imported 4 (4 with labels), 0 duplicates, 2 rejected\n"
    )
    with Store.open(db_path) as store:
        assert sorted(store.existing_item_ids(["1", "2", "3", "4", "5", "6"])) == [
            "1",
            "3",
            "4",
            "5",
        ]


def test_an_export_after_labels_set_names_the_voters_of_the_label_in_force(
    tmp_path: Path, db_path: Path
):
    """`hitl labels set` over people's votes: ``annotators`` are the new label's voters (or who
    set it, when nobody voted it: `hitl import` needs someone), as ``votes`` counts them. They
    stayed the old label's voters: billing, votes 0, annotators ANA and RAJ (who voted bug)."""
    with Store.open(db_path) as store:
        store.add_items([Item("i1", "refund and a crash")], "api")
        for user, label in (("U0ANA", "bug"), ("U0CAL", "billing"), ("U0RAJ", "bug")):
            store.record_answer("i1", user, label, source="button", dedupe_key=user, votes_needed=3)
        assert store.resolution("i1")["annotators"] == ["U0ANA", "U0RAJ"]
    assert (
        run("--db", str(db_path), "labels", "set", "i1", "billing", "--by", "cli:ana").exit_code
        == 0
    )
    [row] = [json.loads(line) for line in run("--db", str(db_path), "export").stdout.splitlines()]
    assert (row["label"], row["votes"], row["annotators"]) == ("billing", 1, ["U0CAL"])
    assert (
        run("--db", str(db_path), "labels", "set", "i1", "account", "--by", "cli:ana").exit_code
        == 0
    )
    [row] = [json.loads(line) for line in run("--db", str(db_path), "export").stdout.splitlines()]
    assert (row["label"], row["votes"], row["annotators"]) == ("account", 0, ["cli:ana"])
    # ... and it reads back: `hitl import` of the export into a new database takes the row.
    exported = tmp_path / "export.jsonl"
    exported.write_text(run("--db", str(db_path), "export").stdout)
    again = run("--db", str(tmp_path / "again.db"), "import", str(exported))
    assert again.exit_code == 0 and "1 with labels" in again.stdout, again.stdout
