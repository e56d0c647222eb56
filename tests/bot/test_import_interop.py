"""`hitl import` of the files other tools write, from an outside tester's interop report:
Prodigy's answers (only an accepted row gives a label), hitl's own answers export (refused),
list labels (doccano, pandas, Label Studio), pandas' "1.0" labels in a CSV, a JSONL field
named that no row has, whole-number labels (maybe class ids), Excel's "Unicode Text" advice,
a .json file (JSON lines, or an array refused with a jq command), a gzip file, a semicolon CSV
whose header has a comma, a header naming a column twice, a leading ' kept outside hitl's
own CSV exports, and a .txt with old Mac OS line ends (a lone CR).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.ingest import item_id_for_text
from bot.store import Store


def run(db: Path, *args: str, stdin: bytes | None = None):
    return CliRunner().invoke(
        cli, ["--db", str(db), *args], input=stdin, catch_exceptions=False, prog_name="hitl"
    )


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def labels(db: Path) -> dict[str, str | None]:
    """The text and label of each labeled item (as `hitl export` gives them)."""
    out = run(db, "export").stdout
    return {r["text"]: r["label"] for r in map(json.loads, out.splitlines())}


def prodigy(text: str, answer: str, **fields) -> dict:
    return {"text": text, **fields, "_input_hash": 1, "_task_hash": 2, "answer": answer}


# -- H1: Prodigy's answer ------------------------------------------------------------------


def test_a_prodigy_export_takes_labels_from_accepted_rows_only(tmp_path: Path):
    # A "reject" says the label is wrong; it was stored as the item's label (and a teach
    # session's reject-then-accept of one text kept the rejected one, the accept a duplicate)
    path = write_jsonl(
        tmp_path / "prodigy.jsonl",
        [
            prodigy("my card never came", "reject", label="refund"),
            prodigy("my card never came", "accept", label="card_arrival"),
            prodigy("where is my refund", "accept", label="refund"),
            prodigy("is this a scam", "ignore", label="refund"),
            prodigy("which app", "reject", label="card_arrival"),
        ],
    )
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 2 (2 with labels)" in result.stdout
    notes = [line for line in result.stderr.splitlines() if "Prodigy" in line]
    assert len(notes) == 1
    assert "3 rows not accepted (1 ignore, 2 reject) skipped" in notes[0]
    assert labels(db) == {"my card never came": "card_arrival", "where is my refund": "refund"}


def test_a_prodigy_choice_export_and_gold_take_the_accepted_choice(tmp_path: Path):
    options = [{"id": "refund", "text": "refund"}, {"id": "card_arrival", "text": "card"}]
    path = write_jsonl(
        tmp_path / "choice.jsonl",
        [
            prodigy("my card never came", "accept", options=options, accept=["card_arrival"]),
            prodigy("where is my refund", "reject", options=options, accept=["card_arrival"]),
            prodigy("hello", "accept", options=options, accept=[]),
        ],
    )
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0, result.output
    assert "read 2 rows, imported 2 (1 with labels)" in result.stdout
    assert labels(db) == {"my card never came": "card_arrival"}
    gold = write_jsonl(
        tmp_path / "gold.jsonl",
        [
            prodigy("a gold text", "reject", label="refund"),
            prodigy("a gold text", "accept", label="card_arrival"),
        ],
    )
    result = run(tmp_path / "gold.db", "import", "--gold", str(gold))
    assert result.exit_code == 0, result.output
    assert "1 new gold item" in result.stdout, result.stdout  # not "a gold row twice"
    with Store.open(tmp_path / "gold.db") as store:
        assert set(store.gold_labels().values()) == {"card_arrival"}


# -- H3: an answers export -----------------------------------------------------------------

ANSWER = {
    "item_id": "T1",
    "text": "my card never came",
    "user_id": "U1",
    "label": "refund",
    "source": "button",
    "created_at": "2026-01-01T10:00:00.000+00:00",
    "late": False,
}


def test_an_answers_export_is_refused_before_anything_is_written(tmp_path: Path):
    # Each answer became a second copy of its item, labeled with that one raw answer
    db = tmp_path / "hitl.db"
    jsonl = write_jsonl(tmp_path / "answers.jsonl", [ANSWER])
    csv_file = tmp_path / "answers.csv"
    csv_file.write_text(",".join(ANSWER) + "\n" + ",".join(str(v) for v in ANSWER.values()) + "\n")
    for path in (jsonl, csv_file):
        result = run(db, "import", str(path))
        assert result.exit_code == 1
        assert "is an answers export (`hitl export --answers`" in result.output
        assert "`hitl export > labels.jsonl` (without --answers)" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not db.exists()


# -- M1, L2: list labels -------------------------------------------------------------------


def test_list_labels_one_is_taken_none_is_unlabeled_more_are_refused(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "doccano.jsonl",
        [
            {"id": 1, "text": "my card never came", "label": ["card_arrival"]},
            {"id": 2, "text": "where is my refund", "label": []},
            {"id": 3, "text": "refund and card", "label": ["refund", "card_arrival"]},
        ],
    )
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        'doccano.jsonl line 3: column "label" has 2 labels ("refund", "card_arrival"):'
        " multi-label rows are not supported: one label per row (keep one, or write a row for"
        " each), row skipped"
    ]
    assert "imported 2 (1 with labels)" in result.stdout
    assert labels(db) == {"my card never came": "card_arrival"}


def test_a_csv_label_written_as_a_list_or_object_is_refused_not_a_label_name(tmp_path: Path):
    # pandas writes a list column as ['a', 'b'], Label Studio's CSV {"choices": [...]}: each
    # became a label (a Slack button) named "['card_arrival']"
    path = tmp_path / "ml.csv"
    path.write_text(
        "id,text,label\n"
        "1,my card never came,\"['card_arrival']\"\n"
        "2,refund and card,\"['refund', 'card_arrival']\"\n"
        '3,where is my refund,"{""choices"": [""refund""]}"\n'
        "4,a draft,[draft]\n"
    )
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0, result.output
    errors = result.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == ["ml.csv line 2", "ml.csv line 3", "ml.csv line 4"]
    assert all("multi-label rows are not supported: one label per row" in e for e in errors)
    assert "(write the label itself: card_arrival)" in errors[0]
    assert labels(db) == {"a draft": "[draft]"}  # not a list: a name


# -- M3: "1.0" in a CSV --------------------------------------------------------------------


def test_a_csv_decimal_label_is_the_label_as_written_as_in_jsonl(tmp_path: Path):
    path = tmp_path / "gaps.csv"
    path.write_text("text,label\none,1.0\ntwo,-2.00\nthree,1\nfour,1.5\n")
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(path)).exit_code == 0
    assert labels(db) == {"one": "1.0", "two": "-2.00", "three": "1", "four": "1.5"}


# -- M5: a JSONL field named that no row has -----------------------------------------------


def test_a_jsonl_label_or_id_field_no_row_has_stops_the_import(tmp_path: Path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": f"t{n}", "intent": "a"} for n in range(3)])
    db = tmp_path / "hitl.db"
    for option, name in (("--label-column", "intnet"), ("--id-column", "uid")):
        result = run(db, "import", str(path), option, name)
        assert result.exit_code == 1
        assert (
            f'no field "{name}" in the first 3 rows (they have: text, intent); pass {option}'
            " with one of these"
        ) in result.output
        assert not db.exists()


# -- M2: labels that are all whole numbers -------------------------------------------------


def test_labels_that_are_all_whole_numbers_get_one_note(tmp_path: Path):
    path = write_jsonl(tmp_path / "hf.jsonl", [{"text": f"t{n}", "label": n % 3} for n in range(9)])
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "hf.jsonl: every label is a whole number (0, 1, 2): if they are class ids (a Hugging"
        " Face ClassLabel), name them once imported: hitl labels rename 0 NAME for each"
    ]
    named = write_jsonl(tmp_path / "named.jsonl", [{"text": "x", "label": "0"}, {"text": "y"}])
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": "x", "label": 1}, {"text": "z"}])
    assert "whole number" in run(tmp_path / "b.db", "import", str(named)).stderr
    other.write_text('{"text": "x", "label": 1}\n{"text": "z", "label": "billing"}\n')
    assert run(tmp_path / "c.db", "import", str(other)).stderr == ""


# -- M4: Excel's "Unicode Text" ------------------------------------------------------------


def test_the_advice_for_a_utf16_txt_with_tabs_names_a_tsv(tmp_path: Path):
    # following the advice gave a .txt, read as one item a line: header and ids in the texts
    path = tmp_path / "export.txt"
    path.write_bytes(b"\xff\xfe" + "id\ttext\tlabel\r\nu1\tmy card\tcard\r\n".encode("utf-16-le"))
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.exit_code == 1
    assert "iconv -f utf-16 -t utf-8 export.txt > export-utf8.tsv" in result.output
    plain = tmp_path / "notes.txt"
    plain.write_bytes(b"\xff\xfe" + "one note\r\nanother\r\n".encode("utf-16-le"))
    assert "> notes-utf8.txt" in run(tmp_path / "hitl.db", "import", str(plain)).output


# -- L1: .json and gzip --------------------------------------------------------------------


def test_a_json_file_of_lines_is_read_and_an_array_is_refused_with_a_jq_command(tmp_path: Path):
    db = tmp_path / "hitl.db"
    lines = write_jsonl(tmp_path / "hf.json", [{"text": "one", "label": "a"}])  # HF's to_json
    result = run(db, "import", str(lines))
    assert result.exit_code == 0, result.output
    assert "imported 1 (1 with labels)" in result.stdout
    array = tmp_path / "tasks.json"
    array.write_text(json.dumps([{"text": "t", "label": "a"}] * 3, indent=2))
    result = run(db, "import", str(array))
    assert result.exit_code == 1
    assert result.output.strip().endswith(
        "tasks.json is a JSON array, not JSON lines (one object a line):"
        " jq -c '.[]' tasks.json > tasks.jsonl, and import that"
    )
    studio = tmp_path / "studio.jsonl"
    studio.write_text(json.dumps([{"id": 1, "data": {"text": "t"}, "annotations": []}]))
    result = run(db, "import", str(studio))
    assert "a Label Studio JSON export" in result.output
    assert "jq -c '.[] | {id, text: .data.text, label: .annotations[0]" in result.output
    assert "studio.jsonl > studio-lines.jsonl" in result.output  # never over the file read


def test_a_gzip_file_is_read_as_what_it_holds(tmp_path: Path):
    # read as text, each line was refused with the advice to convert it from cp1252
    path = tmp_path / "items.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("".join(json.dumps({"text": f"m{n}", "label": "a"}) + "\n" for n in range(5)))
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0, result.output
    assert "read 5 rows, imported 5 (5 with labels)" in result.stdout
    piped = run(db, "import", "-", "--format", "jsonl", stdin=path.read_bytes())
    assert "read 5 rows, imported 0 (0 with labels), 5 duplicates" in piped.stdout
    broken = tmp_path / "cut.csv.gz"
    broken.write_bytes(gzip.compress(b"text\n" + b"a line\n" * 1000)[:60])
    result = run(db, "import", str(broken))
    assert result.exit_code == 1
    assert "cut.csv.gz: the gzip data is damaged" in result.output
    assert "cp1252" not in result.output


def test_gzip_data_damaged_past_the_first_rows_says_what_was_stored(tmp_path: Path):
    """A database error or a lack of memory mid-file said how many rows were stored and that
    the import can run again; damaged gzip data past the first batches said neither."""
    lines = b"".join(f"message number {n}\n".encode() for n in range(3000))
    broken = tmp_path / "cut.csv.gz"
    broken.write_bytes(gzip.compress(b"text\n" + lines)[:-100])
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(broken))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {broken}: the gzip data is damaged (Compressed file ended before the"
        " end-of-stream marker was reached): check it with gzip -t, or import the file it was"
        " made from. 2,000 rows, through line 2,001 of cut.csv.gz, are stored: once that is"
        " fixed, run the same import again; it skips them as duplicates and imports the rest"
    )
    with Store.open(db) as store:
        assert store.count_items()["new"] == 2000


# -- L6, L7: a CSV's header ----------------------------------------------------------------


def test_a_semicolon_header_with_a_comma_in_a_name_is_read_with_semicolons(tmp_path: Path):
    path = tmp_path / "eu.csv"
    path.write_text('id;text;label;"Betrag; EUR";Betrag, EUR\n1;my card;card;0,50;1\n')
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 0, result.output
    assert labels(db) == {"my card": "card"}


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path):
    # the last "label" silently won, the other was dropped (not even kept in meta)
    path = tmp_path / "dup.csv"
    path.write_text("text,label,label,,\nfoo,model_guess,person_label,,\n")
    db = tmp_path / "hitl.db"
    result = run(db, "import", str(path))
    assert result.exit_code == 1
    assert 'the header names the column "label" twice (columns 2 and 3)' in result.output
    assert not db.exists()
    path.write_text("text,label,,\nfoo,a,,\n")  # Excel's trailing separators: empty names
    assert run(db, "import", str(path)).exit_code == 0


# -- L3: the formula guard -----------------------------------------------------------------


def test_a_leading_quote_is_kept_in_a_csv_that_hitl_did_not_export(tmp_path: Path):
    path = tmp_path / "sheet.csv"
    path.write_text("text\n'-5 EUR' fee was charged twice\n")
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(path)).exit_code == 0
    with Store.open(db) as store:
        item = store.get_item(item_id_for_text("'-5 EUR' fee was charged twice"))
    assert item is not None and item["text"] == "'-5 EUR' fee was charged twice"


def test_a_comma_csv_whose_header_name_has_semicolons_is_read_with_commas(tmp_path: Path):
    """The separator is the header's most frequent of , ; tab among those that split the first
    rows as the header: "text,notes;a;b" has more semicolons, but its rows have two fields
    (a32af8d read it with semicolons and refused it: no column "text")."""
    path = tmp_path / "notes.csv"
    path.write_text("text,notes;a;b\nmy card never came,x\nrefund please,y\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "h.db"), "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "read 2 rows, imported 2" in result.output
    with Store.open(tmp_path / "h.db") as store:
        metas = [json.loads(r[0]) for r in store.db.execute("SELECT meta FROM items")]
    assert metas == [{"notes;a;b": "x"}, {"notes;a;b": "y"}]


def test_the_command_given_for_the_skipped_prodigy_rows_imports_their_texts(tmp_path: Path):
    """The note's jq command, done here as jq does it (keep the rows not accepted, delete the
    fields it names), gives rows hitl imports without a label: it kept "answer" and
    "_input_hash", so the rows were Prodigy rows again and skipped ("read 0 rows")."""
    rows = [
        prodigy("my card never came", "reject", label="refund"),
        prodigy("is this a scam", "ignore", label="refund"),
        prodigy("where is my refund", "accept", label="refund"),
    ]
    result = run(tmp_path / "hitl.db", "import", str(write_jsonl(tmp_path / "p.jsonl", rows)))
    [note] = [line for line in result.stderr.splitlines() if "Prodigy" in line]
    deleted = re.search(r"del\(([^)]*)\)", note)[1].split(", ")
    assert 'select(.answer != "accept")' in note
    kept = [
        {k: v for k, v in row.items() if f".{k}" not in deleted}
        for row in rows
        if row["answer"] != "accept"
    ]
    again = run(tmp_path / "other.db", "import", "-", "--format", "jsonl",
                stdin="".join(json.dumps(r) + "\n" for r in kept).encode())  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "read 2 rows, imported 2 (0 with labels)" in again.stdout


# -- a .txt with old Mac OS line ends ----------------------------------------------------------


def stored_texts(db: Path) -> list[str]:
    with Store.open(db) as store:
        return sorted(r[0] for r in store.db.execute("SELECT text FROM items"))


def test_a_text_file_ends_a_line_at_cr_lf_and_crlf_as_python_reads_it(tmp_path: Path):
    """A .txt whose lines end in a lone CR (old Mac OS, some exports) was one item of every
    line ("read 1 row"), while README says one item a line and a CSV with the same ends is
    read line by line; the line numbers count its lines, and standard input reads it alike."""
    path = tmp_path / "cr.txt"
    path.write_bytes(b"row one\rrow two\r\rcrlf three\r\nlf four\nbad \xff five\r")
    result = run(tmp_path / "hitl.db", "import", str(path))
    assert result.stderr.startswith("cr.txt line 6: not valid UTF-8 (byte 0xFF at column 5)")
    assert result.stdout == (
        "cr.txt: read 5 rows, imported 4 (0 with labels), 0 duplicates, 1 rejected\n"
    )
    assert stored_texts(tmp_path / "hitl.db") == ["crlf three", "lf four", "row one", "row two"]
    piped = run(tmp_path / "piped.db", "import", "-", "--format", "text", stdin=b"a\rb\r\nc")
    assert "read 3 rows, imported 3" in piped.stdout
    assert stored_texts(tmp_path / "piped.db") == ["a", "b", "c"]
    tabbed = tmp_path / "tabbed.txt"  # Excel's "Text (Tab delimited)" from an old Mac
    tabbed.write_bytes(b"text\tlabel\rmy card never came\trefund\r")
    result = run(tmp_path / "tabbed.db", "import", str(tabbed))
    assert "read as tab-separated" in result.stderr
    assert labels(tmp_path / "tabbed.db") == {"my card never came": "refund"}


def test_a_crlf_split_between_two_reads_ends_one_line_not_two():
    """The "\\r" of a "\\r\\n" may end one read and its "\\n" begin the next (a pipe, a
    buffer's edge): it is one line end, and a read of that lone "\\n" is no end of the file."""
    from bot.ingest.readers import _LineEnds

    class Pieces:  # a pipe that gives these bytes, one piece a read
        def __init__(self, pieces: list[bytes]) -> None:
            self.pieces = pieces

        def read1(self, size: int = -1) -> bytes:
            return self.pieces.pop(0) if self.pieces else b""

    read: list[int] = []
    ends = _LineEnds(Pieces([b"one\r", b"\n", b"two\r", b"\nthree\rfour\r\n"]), read.append)
    assert ends.readall().split(b"\n") == [b"one", b"two", b"three", b"four", b""]
    assert sum(read) == 22  # the file's bytes, as a progress bar counts them
