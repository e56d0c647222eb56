"""The learning loop from the terminal: hitl retrain, models, rollback, accuracy, stats."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from tests.bot.test_learning import BILLING, BUG


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def labeled_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / f"{prefix}.jsonl"
    rows = [{"id": f"{prefix}b{n}", "text": t, "label": "billing"} for n, t in enumerate(BILLING)]
    rows += [{"id": f"{prefix}g{n}", "text": t, "label": "bug"} for n, t in enumerate(BUG)]
    rows += [{"id": f"{prefix}u", "text": "invoice crash"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_retrain_models_rollback_accuracy_and_stats(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "models").stdout == "No models yet: `hitl retrain` trains the first one.\n"
    assert run(db, "accuracy").stdout.startswith("No model yet.")

    first = run(db, "retrain")
    assert first.exit_code == 0
    lines = first.stdout.splitlines()
    assert lines[0].startswith("Retrain v1: promoted ✅ (cli, ")
    assert lines[1] == "Labels: 12 (12 new)"
    assert lines[-1].startswith("Queue: re-scored 1 items; for people ")
    assert "Training on 12 labels" in first.stderr  # the progress bar's label
    again = run(db, "retrain")
    assert again.stdout.strip() == (
        "Retrain (cli): nothing new: no labels since the last run (12 labels); training skipped."
    )

    assert run(db, "import", str(labeled_file(tmp_path, "b"))).exit_code == 0
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    table = run(db, "models").stdout.splitlines()
    assert table[0].split() == ["version", "status", "created", "labels", "accuracy", "macro-F1",
                                "reason"]  # fmt: skip
    assert [row.split()[:2] for row in table[1:]] == [["v1", "retired"], ["v2", "champion"]]

    assert run(db, "rollback", "1").stdout == "v1 is the champion again.\n"
    bad = run(db, "rollback", "v9")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: cannot roll back: model v9 does not exist")
    assert run(db, "rollback", "latest").stderr == (
        "Error: 'latest' is not a version number; e.g. hitl rollback 3\n"
    )

    chart = tmp_path / "chart.png"
    accuracy = run(db, "accuracy", "--chart", str(chart))
    assert accuracy.stdout.startswith("Model v1 — ")
    assert "Cross-validated (" in accuracy.stdout and "Trend:" in accuracy.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    stats = run(db, "stats").stdout.splitlines()
    assert stats[0] == "Answers today: 0"
    assert stats[2].startswith("Items: 2 pending · 0 posted · 24 resolved")


def test_old_model_files_are_deleted_but_listed_and_cannot_be_rolled_back_to(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("HITL_KEEP_MODELS", "1")  # the champion's file and one more
    db = tmp_path / "hitl.db"
    for n, prefix in enumerate("abc", start=1):
        assert run(db, "import", str(labeled_file(tmp_path, prefix))).exit_code == 0
        assert run(db, "retrain", "--force").stdout.startswith(f"Retrain v{n}: promoted")
    files = sorted(p.name for p in (tmp_path / "hitl.db.models").glob("*.skops"))
    assert files == ["v2.skops", "v3.skops"]
    table = run(db, "models").stdout.splitlines()[1:]
    assert [row.split()[:2] for row in table] == [["v1", "retired"], ["v2", "retired"],
                                                  ["v3", "champion"]]  # fmt: skip
    assert table[0].endswith("(file deleted)") and "(file deleted)" not in table[1] + table[2]
    gone = run(db, "rollback", "1")
    assert gone.exit_code == 1
    assert "model v1's file was deleted on " in gone.stderr and len(gone.stderr.splitlines()) == 1
    assert run(db, "rollback", "2").stdout == "v2 is the champion again.\n"
