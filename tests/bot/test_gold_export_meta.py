"""README's recipe for reading gold back, `hitl import --gold EXPORT --label-column gold`, keeps
the item's meta as it was (reader4 #7): the export's "label" column (the team's decided label)
became meta of the new gold item, shown beside the gold question with HITL_SHOW_META=label."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

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
