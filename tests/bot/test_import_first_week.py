"""`hitl import` (and `hitl demo --data`) on an operator's first week, from an outside tester's
report: a header "ID,Text,Label" (or JSONL keys so spelled) read as the id, text and label
columns; the same file imported again with its ids after an import without them, told; Excel's
"Text (Tab delimited)" .txt read as TSV; the advice for a label renamed only in case; a row
imported again after a rename counted as a duplicate; the demo's label spellings as the import's.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.demo.data import read_data
from bot.store import Store


def run(db: Path, *args: str):
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], catch_exceptions=False, prog_name="hitl"
    )


def items(db: Path) -> dict[str, tuple[str, str | None]]:
    """Each stored item's id: its text and label."""
    with Store.open(db) as store:
        rows = store.db.execute("SELECT id, text FROM items").fetchall()
        labels = store.labels_of([row[0] for row in rows])
    return {item_id: (text, labels.get(item_id)) for item_id, text in rows}


CAPITALISED = "ID,Text,Label\n1,hello there,greet\n2,bye now,farewell\n3,good morning,greet\n"


# -- Defect 3: the default columns in any case -------------------------------------------------


def test_a_capitalised_header_is_read_as_the_id_text_and_label_columns(tmp_path: Path):
    # it was refused with "pass --text-column"; following that kept Label as meta, ID unused
    path = tmp_path / "c.csv"
    path.write_text(CAPITALISED, encoding="utf-8")
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 3 (3 with labels)" in result.stdout
    assert items(tmp_path / "hitl.db") == {
        "1": ("hello there", "greet"),
        "2": ("bye now", "farewell"),
        "3": ("good morning", "greet"),
    }


def test_jsonl_keys_in_another_case_or_with_spaces_are_the_id_text_and_label(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        "".join(
            json.dumps({"ID": n, "Text": text, " Label ": label}) + "\n"
            for n, text, label in ((1, "hello there", "greet"), (2, "bye now", "farewell"))
        ),
        encoding="utf-8",
    )
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.exit_code == 0, result.output
    assert items(tmp_path / "hitl.db") == {
        "1": ("hello there", "greet"),
        "2": ("bye now", "farewell"),
    }


def test_two_case_variants_are_refused_in_one_line_and_an_exact_name_wins(tmp_path: Path):
    two = tmp_path / "two.csv"
    two.write_text("id,Label,LABEL,text\n1,a,b,hello\n", encoding="utf-8")
    result = run(tmp_path / "two.db", "import", str(two))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert '"Label", "LABEL"' in result.stderr and "pass --label-column" in result.stderr

    exact = tmp_path / "exact.csv"
    exact.write_text("id,label,Label,text\n1,a,b,hello\n", encoding="utf-8")
    result = run(tmp_path / "exact.db", "import", str(exact))
    assert result.exit_code == 0, result.output
    assert items(tmp_path / "exact.db") == {"1": ("hello", "a")}
    assert 'column "Label" looks like the label column but is kept as meta' in result.stderr


def test_a_label_column_left_unused_for_the_one_named_is_told(tmp_path: Path):
    path = tmp_path / "c.csv"
    path.write_text("id,text,label,intent\n1,hello,greet,hi\n", encoding="utf-8")
    result = run(tmp_path / "hitl.db", "import", str(path), "--label-column", "intent")
    assert result.exit_code == 0, result.output
    assert (
        'c.csv: column "label" looks like the label column but is kept as meta'
        ' (--label-column named "intent"); --label-column label reads the labels from it'
    ) in result.stderr


# -- A file imported again with its ids: which copies of a text stored twice may go ------------

TICKETS = (  # texts long enough to be one ticket each
    ("1", "My invoice for March shows a double charge", "billing"),
    ("2", "The app crashes whenever I open the settings page", "bug"),
    ("3", "How do I export my reports to a spreadsheet", "how_to"),
)
ADVICE = re.compile(r'hitl delete [^;]*?--reason "imported again with its ids"')


def tickets(path: Path, header: str, rows=TICKETS) -> Path:
    """``rows`` written under ``header``: its columns of id, text and label, in that order."""
    names = header.split(",")
    wanted = {"id": 0, "text": 1, "label": 2}
    lines = [header] + [",".join(row[wanted[name]] for name in names) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def twice_notes(result) -> list[str]:
    return [x for x in result.stderr.splitlines() if "now stored twice" in x]


def follow_the_advice(db: Path, notes: list[str]) -> list[str]:
    """Run each `hitl delete` the notes give (answering yes, as a person at its prompt would);
    the ids each deleted."""
    deleted = []
    for note in notes:
        for command in ADVICE.findall(note):
            words = shlex.split(command)
            result = run(db, *words[1:], "--yes")
            assert result.exit_code == 0, result.output
            deleted += words[2 : words.index("--reason")]
    return deleted


def labeled_texts(db: Path) -> dict[str, list[str | None]]:
    """Each stored text: the labels of its copies (None for a copy without one)."""
    out: dict[str, list[str | None]] = {}
    for text, label in items(db).values():
        out.setdefault(text, []).append(label)
    return out


def sorted_copies(texts: dict[str, list[str | None]]) -> dict[str, list[str | None]]:
    """``labeled_texts`` with each text's labels in one order: labels first, then None."""
    return {
        text: sorted(labels, key=lambda label: (label is None, label or ""))
        for text, labels in texts.items()
    }


def test_the_file_imported_again_with_its_ids_says_which_texts_are_now_stored_twice(
    tmp_path: Path,
):
    # the first import kept the labels as meta (no label column of that name): the copies it
    # stored hold nothing, so the note deletes them and keeps this import's, ids and labels
    db = tmp_path / "hitl.db"
    path = tmp_path / "c.csv"
    path.write_text(
        "ticket,body,intent\n" + "".join(f"{n},{text},{label}\n" for n, text, label in TICKETS)
    )
    assert run(db, "import", str(path), "--text-column", "body").exit_code == 0  # no ids
    hashed = set(items(db))
    result = run(
        db, "import", str(path), "--text-column", "body", "--id-column", "ticket",
        "--label-column", "intent",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "imported 3 (3 with labels)" in result.stdout
    [line] = twice_notes(result)
    assert line.startswith("c.csv: 3 texts were already stored under another id")
    assert "those copies hold no label, answer, Slack question or gold label" in line
    assert set(follow_the_advice(db, [line])) == hashed
    assert items(db) == {n: (text, label) for n, text, label in TICKETS}
    again = run(db, "import", str(path), "--text-column", "body", "--id-column", "ticket")
    assert "already stored under another id" not in again.stderr  # duplicates: nothing new


def test_labeled_copies_stored_first_are_kept_and_following_the_advice_keeps_every_label(
    tmp_path: Path,
):
    # review: the labels came with the import without ids, the import with ids brought none;
    # the advice deleted the labeled copies (the delete's prompt names no label): 0 of 2 left
    db = tmp_path / "hitl.db"
    bare = ("4", "Please add a dark mode to the mobile app", "")
    first = tickets(tmp_path / "first.csv", "text,label", (*TICKETS[:2], bare))  # "" no label
    assert run(db, "import", str(first)).exit_code == 0
    labeled = {i for i, (_, label) in items(db).items() if label is not None}
    assert len(labeled) == 2
    again = tickets(tmp_path / "again.csv", "id,text", (*TICKETS[:2], bare))
    result = run(db, "import", str(again))
    assert result.exit_code == 0, result.output
    notes = twice_notes(result)
    deleted = follow_the_advice(db, notes)
    assert sorted_copies(labeled_texts(db)) == {
        TICKETS[0][1]: ["billing", None],  # every label kept; the copies left to decide on
        TICKETS[1][1]: ["bug", None],
        bare[1]: [None],  # one copy, this import's
    }
    assert len(deleted) == 1 and deleted[0] not in labeled  # the bare copy of the dark mode
    kept = next(x for x in notes if "keep the copies stored before" in x)
    assert kept.startswith("again.csv: 2 texts were already stored under another id")
    assert all(hashed in kept for hashed in labeled)  # named for the person to decide
    assert "(label billing) and 1 (nothing)" in kept and "(label bug) and 2 (nothing)" in kept


def test_copies_with_the_same_imported_label_are_deleted_by_the_advice_and_lose_nothing(
    tmp_path: Path,
):
    # The same labeled file imported without, then with, its ids: both copies held the same
    # imported label, and the note said "no command is given", though deleting the copies
    # stored before loses nothing (the label is the one this import's copies hold).
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path / "first.csv", "text,label"))).exit_code == 0
    hashed = set(items(db))
    result = run(db, "import", str(tickets(tmp_path / "again.csv", "id,text,label")))
    assert result.exit_code == 0, result.output
    [line] = twice_notes(result)
    assert line.startswith("again.csv: 3 texts were already stored under another id")
    assert "those copies hold only the label an import gave them" in line
    assert set(follow_the_advice(db, [line])) == hashed
    assert items(db) == {n: (text, label) for n, text, label in TICKETS}  # one copy, ids, labels


def test_both_copies_labeled_otherwise_gives_no_delete_command(tmp_path: Path):
    # another label in this file, or a person's answer on the copy stored before: deleting
    # either copy loses a label or an answer, so no command
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path / "first.csv", "text,label"))).exit_code == 0
    by_text = {text: i for i, (text, _) in items(db).items()}
    with Store.open(db) as store:  # a person confirmed the bug report's label
        store.record_answer(
            by_text[TICKETS[1][1]], "U0ANA", "bug", source="cli", dedupe_key="ana-bug"
        )
    relabeled = (TICKETS[0][:2] + ("how_to",), TICKETS[1], TICKETS[2])
    result = run(db, "import", str(tickets(tmp_path / "again.csv", "id,text,label", relabeled)))
    assert result.exit_code == 0, result.output
    notes = twice_notes(result)
    assert [x for x in notes if "only the label an import gave" in x][0].startswith(
        "again.csv: 1 text was already stored under another id"
    )  # the how-to ticket, labelled alike twice
    [both] = [x for x in notes if "no command is given" in x]
    assert both.startswith("again.csv: 2 texts were already stored under another id")
    assert "hitl delete " not in both
    assert f"{by_text[TICKETS[0][1]]} (label billing) and 1 (label how_to)" in both
    assert f"{by_text[TICKETS[1][1]]} (label bug, 2 answers) and 2 (label bug)" in both


def test_a_short_text_shared_with_an_earlier_import_is_counted_with_no_advice(tmp_path: Path):
    # "thanks" imported without ids, then a ticket "thanks" of another file: maybe another
    # message that reads the same; the note counts it and names no copy to delete
    db = tmp_path / "hitl.db"
    first = tmp_path / "first.csv"
    first.write_text(f"text\nthanks\n{TICKETS[0][1]}\n", encoding="utf-8")
    assert run(db, "import", str(first)).exit_code == 0
    [thanks] = [i for i, (text, _) in items(db).items() if text == "thanks"]
    again = tmp_path / "again.csv"
    again.write_text(f"id,text,label\nT-9,thanks,praise\n1,{TICKETS[0][1]},billing\n")
    result = run(db, "import", str(again))
    assert result.exit_code == 0, result.output
    notes = twice_notes(result)
    deleted = follow_the_advice(db, notes)
    assert thanks not in deleted and len(deleted) == 1  # the long text's bare copy only
    assert sorted_copies(labeled_texts(db)) == {
        "thanks": ["praise", None],
        TICKETS[0][1]: ["billing"],
    }
    short = next(x for x in notes if "short text" in x)
    assert short.startswith('again.csv: 1 short text (under 20 characters, as "thanks") was')
    assert "nothing is advised for it" in short


def test_a_copy_a_producer_sent_without_an_id_is_not_an_imports(tmp_path: Path):
    # the API names an item sent without an id by its hash too: not the file imported before
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path / "first.csv", "text,label"))).exit_code == 0
    with Store.open(db) as store:
        store.db.execute("UPDATE items SET source = 'api'")
    result = run(db, "import", str(tickets(tmp_path / "again.csv", "id,text")))
    assert result.exit_code == 0, result.output
    assert twice_notes(result) == []


# -- Defect 4: Excel's "Text (Tab delimited)" .txt ---------------------------------------------


def test_a_tab_delimited_txt_with_a_text_column_is_read_as_tsv(tmp_path: Path):
    for encoding in ("utf-8", "cp1252"):
        path = tmp_path / f"export-{encoding}.txt"
        path.write_bytes(
            "id\ttext\tlabel\r\n1\thello there\tgreet\r\n2\tbye now\tfarewell\r\n".encode(encoding)
        )
        db = tmp_path / f"{encoding}.db"
        result = run(db, "import", str(path))
        assert result.exit_code == 0, result.output
        assert "imported 2 (2 with labels)" in result.stdout
        assert f"{path.name}: read as tab-separated" in result.stderr
        assert items(db) == {"1": ("hello there", "greet"), "2": ("bye now", "farewell")}


def test_a_cp1252_tab_delimited_txt_is_read_as_tsv_its_bad_rows_refused_as_a_tsvs(tmp_path: Path):
    path = tmp_path / "export.txt"
    path.write_bytes("Text\tLabel\r\ncafé au lait\tdrink\r\ntea\tdrink\r\n".encode("cp1252"))
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "export.txt line 2: not valid UTF-8" in result.stderr
    assert [v for v in items(tmp_path / "hitl.db").values()] == [("tea", "drink")]


def test_a_plain_text_file_with_tabs_stays_one_item_a_line(tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a line\twith a tab\nanother\tline\there\nthird line\n", encoding="utf-8")
    result = run(tmp_path / "notes.db", "import", str(notes))
    assert "imported 3 (0 with labels)" in result.stdout
    assert "tab-separated" not in result.stderr
    tabbed = tmp_path / "export.txt"
    tabbed.write_text("id\ttext\tlabel\n1\thello\tgreet\n", encoding="utf-8")
    result = run(tmp_path / "text.db", "import", str(tabbed), "--format", "text")
    assert "imported 2 (0 with labels)" in result.stdout  # as asked: one item a line


# -- Defect 7: a label renamed only in case ---------------------------------------------------


def test_after_a_case_only_rename_the_import_advice_works(tmp_path: Path):
    db = tmp_path / "hitl.db"
    first = tmp_path / "a.csv"
    first.write_text("id,text,label\n1,Reset my password,Account\n2,Charged twice,billing\n")
    later = tmp_path / "b.csv"
    later.write_text("id,text,label\n3,Cannot log in,Account\n")
    assert run(db, "import", str(first)).exit_code == 0
    assert run(db, "labels", "rename", "Account", "account").exit_code == 0
    result = run(db, "import", str(later))
    assert "hitl labels add" not in result.stderr  # refused by hitl itself: a case twin
    advice = result.stderr.split("`")[-2]
    assert advice == "hitl labels rename account Account"
    followed = run(db, *shlex.split(advice)[1:])
    assert followed.exit_code == 0, followed.output
    assert run(db, "import", str(later)).exit_code == 0


def test_the_file_imported_again_after_a_rename_counts_its_rows_as_duplicates(tmp_path: Path):
    db = tmp_path / "hitl.db"
    first = tmp_path / "a.csv"
    first.write_text("id,text,label\n1,Reset my password,Account\n2,Charged twice,billing\n")
    assert run(db, "import", str(first)).exit_code == 0
    assert run(db, "labels", "rename", "Account", "account").exit_code == 0
    result = run(db, "import", str(first))
    assert "read 2 rows, imported 0 (0 with labels), 2 duplicates, 0 rejected" in result.stdout
    other = tmp_path / "c.csv"  # a stored item labeled otherwise: still refused, told why
    other.write_text("id,text,label\n2,Charged twice,Account\n")
    result = run(db, "import", str(other))
    assert "1 rejected" in result.stderr + result.stdout
    assert 'c.csv line 2: label "Account" is now "account"' in result.stderr


# -- Defect 5: `hitl demo --data` keeps one spelling a label, as the import ------------------


def test_the_demo_data_refuses_a_case_twin_label_with_the_imports_line(tmp_path: Path):
    path = tmp_path / "t.csv"
    rows = ["id,text,label", "1,Reset my password please,Account"]
    rows += [f"{n},Cannot log in to account number {n},account" for n in range(2, 5)]
    rows += [f"{n},Charged twice on invoice {n},billing" for n in range(5, 9)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    reported: list[str] = []
    data = read_data(path, report=reported.append)
    assert sorted(data.labels) == ["Account", "billing"]
    imported = run(tmp_path / "hitl.db", "import", str(path))
    refused = [line for line in imported.stderr.splitlines() if "line " in line]
    assert len(refused) == 3
    assert reported[:3] == refused
