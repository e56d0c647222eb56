"""`hitl find` lists an item decided with a label retired since as the other surfaces count it:
waiting in /hitl review for a label in force, its label shown as retired.

After `hitl labels retire billing`, `hitl find b1` printed ``b1  resolved (billing)  …`` and
``--jsonl`` gave nothing to tell it apart, while `hitl stats` counted the item waiting in
/hitl review, the producer API said ``needs_review`` and `hitl export` left it out. The real
CLI, on a real database.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli

ITEMS = [
    {"id": "b1", "text": "I was charged twice", "label": "billing"},
    {"id": "g1", "text": "The app crashes, charged twice", "label": "bug"},
    {"id": "a1", "text": "Please delete my account", "label": "account"},
    {"id": "u1", "text": "charged twice again?"},
]


def hitl(db: Path, *args: str):
    result = CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")
    assert result.exit_code == 0, result.output
    return result


def imported(tmp_path: Path) -> Path:
    db = tmp_path / "hitl.db"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ITEMS))
    hitl(db, "import", str(path))
    return db


def jsonl(db: Path) -> dict[str, dict]:
    out = hitl(db, "find", "charged", "--jsonl", "--quiet").stdout
    return {row["id"]: row for row in map(json.loads, out.splitlines())}


def test_hitl_find_shows_a_retired_labels_item_waiting_in_review(tmp_path: Path):
    db = imported(tmp_path)
    assert hitl(db, "find", "charged", "--quiet").stdout.splitlines() == [
        "b1  resolved (billing)  I was charged twice",
        "g1  resolved (bug)  The app crashes, charged twice",
        "u1  new  charged twice again?",
    ]
    assert {i: r["label_retired"] for i, r in jsonl(db).items()} == dict.fromkeys(
        ("b1", "g1", "u1"), False
    )

    hitl(db, "labels", "retire", "billing")
    assert "1 waiting in /hitl review for a label in force" in hitl(db, "stats", "--quiet").stdout
    assert hitl(db, "find", "charged", "--quiet").stdout.splitlines() == [
        "b1  waiting in review (billing was retired)  I was charged twice",
        "g1  resolved (bug)  The app crashes, charged twice",
        "u1  new  charged twice again?",
    ]
    rows = jsonl(db)
    # the stored status and label stay (as the API's queue_status); the flag says the rest
    assert (rows["b1"]["status"], rows["b1"]["label"], rows["b1"]["label_retired"]) == (
        "resolved",
        "billing",
        True,
    )
    assert (rows["g1"]["label_retired"], rows["u1"]["label_retired"]) == (False, False)

    # added back: decided billing again
    hitl(db, "labels", "add", "billing")
    assert (
        hitl(db, "find", "b1", "--quiet").stdout == "b1  resolved (billing)  I was charged twice\n"
    )
    assert jsonl(db)["b1"]["label_retired"] is False
