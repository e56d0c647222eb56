"""README's recipe for reading gold back, `hitl import --gold EXPORT --label-column gold`, keeps
the item's meta as it was (reader4 #7): the export's "label" column (the team's decided label)
became meta of the new gold item, shown beside the gold question with HITL_SHOW_META=label."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def test_gold_read_back_from_an_export_keeps_its_meta_without_the_teams_label(tmp_path: Path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first = tmp_path / "in.jsonl"
    first.write_text(
        '{"id":"G1","text":"refund please","label":"bug","meta":{"channel":"email"}}\n'
    )
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id":"G1","text":"refund please","label":"billing"}\n')
    assert run(a, "import", str(first), "-q").exit_code == 0
    assert run(a, "import", "--gold", str(gold), "-q").exit_code == 0
    export = tmp_path / "export.jsonl"
    assert run(a, "export", "-o", str(export)).exit_code == 0
    [row] = [json.loads(line) for line in export.read_text().splitlines()]
    assert (row["label"], row["gold"]) == ("bug", "billing")

    back = run(b, "import", "--gold", str(export), "--label-column", "gold", "-q")

    assert back.exit_code == 0, back.output
    conn = sqlite3.connect(b)
    try:
        [(meta,)] = conn.execute("SELECT meta FROM items WHERE id = 'G1'").fetchall()
    finally:
        conn.close()
    assert json.loads(meta) == {"channel": "email"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_gold_read_back_from_an_export_says_nothing_of_the_label_kept_as_meta(
    tmp_path: Path, fmt: str
):
    """The recipe printed no error, but each run said `field "label" looks like the label
    field but is kept as meta (--label-column named "gold"); --label-column label reads the
    labels from it`: the team's label is not kept as meta (the test above), and the advice
    would have made every decided label gold."""
    a = tmp_path / "a.db"
    items = tmp_path / "in.jsonl"
    items.write_text(
        '{"id":"G1","text":"refund please","label":"bug"}\n'
        '{"id":"T2","text":"it crashes","label":"bug"}\n'
    )
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id":"G1","text":"refund please","label":"billing"}\n')
    assert run(a, "import", str(items), "-q").exit_code == 0
    assert run(a, "import", "--gold", str(gold), "-q").exit_code == 0
    export = tmp_path / f"export.{fmt}"
    assert run(a, "export", "--format", fmt, "-o", str(export)).exit_code == 0

    back = run(tmp_path / "b.db", "import", "--gold", str(export), "--label-column", "gold")

    assert back.exit_code == 0, back.output
    assert "kept as meta" not in back.output
    assert back.stdout.endswith(
        ", 1 new gold item, 0 stored items marked gold, 0 already gold, 1 rejected\n"
    )
