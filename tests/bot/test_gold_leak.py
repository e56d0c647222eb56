"""A gold item never trains the model, also when its text is stored as another, labelled item:
the tickets imported with their ids, then a reviewer's sheet of checked examples imported as
gold without ids (some lower-cased, re-spaced). The outside ML audit's r6: the model trained on
the tickets, so it guessed the gold answer on every gold question (100 %; 80 % on unseen
items), and accuracy on gold measured who follows the model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.learning.quality import training_rows
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import LABELS, make_settings

TICKETS = [
    ("T-1", "I was charged twice this month", "billing"),
    ("T-2", "The export button crashes the app", "bug"),
    ("T-3", "How do I reset my password?", "how_to"),
    ("T-4", "Please add a dark mode", "feature_request"),
    ("T-5", "Great support, thank you!", "praise"),
    ("T-6", "My invoice shows the wrong VAT", "billing"),
]


def hitl(db: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--db", str(db), *args], env={"HITL_LABELS": ",".join(LABELS)}, prog_name="hitl"
    )
    assert result.exit_code == 0, result.output
    return result.output


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_labelled_item_that_repeats_a_gold_text_does_not_train(tmp_path: Path):
    db = tmp_path / "hitl.db"
    tickets = [{"id": i, "text": t, "label": lb} for i, t, lb in TICKETS]
    hitl(db, "import", str(write_jsonl(tmp_path / "tickets.jsonl", tickets)))
    # the reviewer's sheet, no ids: T-1 as it was, T-2 lower-cased, T-3 re-spaced and without
    # its question mark; its ids are hashes of the texts, so these are new items
    gold = [
        {"text": TICKETS[0][1], "label": "billing"},
        {"text": TICKETS[1][1].lower(), "label": "bug"},
        {"text": "how do I  reset my password", "label": "how_to"},
    ]
    hitl(db, "import", "--gold", str(write_jsonl(tmp_path / "gold.jsonl", gold)))

    settings = make_settings(FakeSlack(), tmp_path)
    with Store.open(db) as store:
        assert len(store.gold_labels()) == 3  # stored as gold items of their own
        trained = {item for item, _, _, _ in training_rows(store, settings)}
    assert trained == {"T-4", "T-5", "T-6"}  # T-1..T-3 would give the gold answers away


def test_gold_repeats_counts_what_it_leaves_out():
    from bot.learning.quality import gold_repeats

    rows = [("a", "Refund, please!", "billing", "t1"), ("b", "app crashes", "bug", "t2")]
    assert gold_repeats(rows, ["REFUND please"]) == ([rows[1]], 1)
    assert gold_repeats(rows, []) == (rows, 0)
    # an emoji-only text is its own key ("👍" and "👎" differ): not every emoji is a repeat
    emoji = [("c", "👍", "praise", "t3"), ("d", "👎", "bug", "t4")]
    assert gold_repeats(emoji, ["👍"]) == ([emoji[1]], 1)
