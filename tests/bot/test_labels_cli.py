"""`hitl labels`: a decided label (an imported one too) can be changed or removed, every change
is kept in history, and the next retrain and export see the current labels."""

from __future__ import annotations

import json
from pathlib import Path

from bot.store import Store
from tests.bot.test_cli_loop import labeled_file, run


def test_a_removed_label_leaves_training_and_export_and_the_next_retrain_sees_it(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").stdout.splitlines()[1] == "Labels: 12 (12 new)"

    removed = run(db, "labels", "remove", "ab0", "--reason", "spam", "--by", "ana")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == "ab0: billing removed; the item is set aside\n"
    with Store.open(db) as store:
        assert "ab0" not in [row[0] for row in store.training_data()]
        assert store.get_item("ab0")["status"] == "skipped"
    again = run(db, "retrain")
    assert again.stdout.startswith("Retrain v2: "), again.stdout  # not "nothing new"
    assert again.stdout.splitlines()[1].startswith("Labels: 11")

    exported = [json.loads(line) for line in run(db, "export").stdout.splitlines()]
    assert "ab0" not in {row["id"] for row in exported}


def test_a_relabel_reaches_export_and_retrain_and_history_keeps_who_when_old_new_why(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0

    changed = run(db, "labels", "set", "ag0", "billing", "--reason", "a refund", "--by", "ana")
    assert changed.stdout == "ag0: bug → billing\n"
    assert run(db, "labels", "set", "ag0", "billing").stdout == (
        "ag0: already billing, nothing changed\n"
    )
    exported = {row["id"]: row for row in map(json.loads, run(db, "export").stdout.splitlines())}
    assert exported["ag0"]["label"] == "billing"
    with Store.open(db) as store:
        assert dict((r[0], r[2]) for r in store.training_data())["ag0"] == "billing"
        [change] = store.label_history("ag0")
        # the answer the import stored keeps what was given
        assert [a["label"] for a in store.iter_answers() if a["item_id"] == "ag0"] == ["bug"]
    assert {k: change[k] for k in ("old_label", "new_label", "action", "user_id", "reason")} == {
        "old_label": "bug",
        "new_label": "billing",
        "action": "set",
        "user_id": "ana",
        "reason": "a refund",
    }
    assert change["created_at"]
    assert run(db, "retrain").stdout.startswith("Retrain v2: ")

    history = run(db, "labels", "history").stdout.splitlines()
    assert len(history) == 1
    assert history[0].endswith("ag0  bug → billing  set by ana (a refund)")


def test_an_unlabeled_item_is_resolved_by_set_and_bad_input_is_one_line(
    tmp_path: Path, monkeypatch
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "labels", "set", "au", "bug").stdout == "au: (no label) → bug\n"
    with Store.open(db) as store:
        assert store.get_item("au")["status"] == "resolved"
        assert store.resolution("au")["label"] == "bug"

    missing = run(db, "labels", "set", "nope", "bug")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "Error: no item with id 'nope'; `hitl export` lists the labeled ones\n",
    )
    assert run(db, "labels", "remove", "ab1").exit_code == 0
    twice = run(db, "labels", "remove", "ab1")
    assert twice.stderr == "Error: item 'ab1' has no label to remove\n"
    monkeypatch.setenv("HITL_LABELS", "billing,bug")
    unknown = run(db, "labels", "set", "ab2", "refund")
    assert unknown.stderr == (
        "Error: 'refund' is not in the label set (billing, bug); use one of these\n"
    )
    assert run(db, "labels", "history", "ab2").stdout == "No label changes for ab2.\n"
    assert run(tmp_path / "none.db", "labels", "history").stderr.startswith(
        "Error: no database at "
    )
