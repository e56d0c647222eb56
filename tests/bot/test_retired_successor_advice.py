"""A label renamed or merged into one retired since: `hitl import` and `hitl labels add` name
the fix that works, adding the successor back.

After `hitl labels rename billing money` and `hitl labels retire money`, a row labelled billing
was told "add it with `hitl labels add billing`", which is refused (the name was renamed away:
"choose another name (or use "money")"), and `money` is refused too (not in the set). The same
after a merge into a label retired since. The real CLI, on a real database.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli

ITEMS = [
    {"id": "b1", "text": "I was charged twice", "label": "billing"},
    {"id": "g1", "text": "The app crashes on start", "label": "bug"},
    {"id": "a1", "text": "Please delete my account", "label": "account"},
    {"id": "u1", "text": "How do I export my data?"},
]


def hitl(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def ok(db: Path, *args: str) -> str:
    result = hitl(db, *args)
    assert result.exit_code == 0, result.output
    return result.output


def imported(tmp_path: Path) -> Path:
    db = tmp_path / "hitl.db"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ITEMS))
    ok(db, "import", str(path))
    return db


def rejection(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if f'"{label}"' in line)


def test_import_and_labels_add_advise_adding_back_a_retired_successor(tmp_path: Path):
    db = imported(tmp_path)
    for change in (
        ("rename", "billing", "money"),
        ("retire", "money"),
        ("add", "how_to"),
        ("add", "praise"),
        ("merge", "how_to", "account"),
        ("retire", "account"),
    ):
        ok(db, "labels", *change)
    new = tmp_path / "new.csv"
    new.write_text("id,text,label\nN1,a new refund request,billing\nN2,a new question,how_to\n")
    out = hitl(db, "import", str(new)).output

    renamed = rejection(out, "billing")
    assert "hitl labels add billing" not in renamed
    assert '"money"' in renamed and "was retired" in renamed
    assert "add it back with `hitl labels add money`" in renamed
    merged = rejection(out, "how_to")
    assert "add it back with `hitl labels add account`" in merged

    # the old names stay refused, and the refusal names the way that works
    refused = hitl(db, "labels", "add", "billing")
    assert refused.exit_code != 0
    assert "`add money`" in refused.output and 'or use "money"' not in refused.output
    refused = hitl(db, "labels", "add", "how_to")
    assert refused.exit_code != 0
    assert "`add account`" in refused.output

    # following the advice works: the successors back, the rows written with them import
    ok(db, "labels", "add", "money")
    ok(db, "labels", "add", "account")
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("id,text,label\nN1,a new refund request,money\nN2,a new question,account\n")
    assert "imported 2 (2 with labels)" in ok(db, "import", str(fixed))
    assert [json.loads(line)["id"] for line in ok(db, "export").splitlines()].count("N1") == 1


def test_labels_add_of_a_name_renamed_into_a_label_in_force_still_says_use_it(tmp_path: Path):
    db = imported(tmp_path)
    ok(db, "labels", "rename", "billing", "money")
    refused = hitl(db, "labels", "add", "billing")
    assert refused.exit_code != 0
    assert 'or use "money"' in refused.output
