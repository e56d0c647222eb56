"""What training reads for an item an admin decided, with HITL_AGGREGATION=dawid_skene: the
admin's label, also when it is the label the votes gave (`hitl labels set` confirming it), and
through renames and merges of the label set. The tally of ``test_aggregation``: on t1 majority
says bug and Dawid–Skene billing."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.learning.quality import training_rows
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import LABELS, make_settings
from tests.bot.test_aggregation import voted_db


def hitl(db: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--db", str(db), *args], env={"HITL_LABELS": ",".join(LABELS)}, prog_name="hitl"
    )
    assert result.exit_code == 0, result.output
    return result.output


def trained(db: Path, tmp_path: Path) -> dict[str, str]:
    settings = make_settings(FakeSlack(), tmp_path, votes=3, aggregation="dawid_skene")
    with Store.open(db) as store:
        return {item: label for item, _, label, _ in training_rows(store, settings)}


def test_an_admin_setting_the_label_the_votes_gave_pins_it_in_training(tmp_path: Path):
    db = voted_db(tmp_path)
    with Store.open(db) as store:
        assert store.resolution("t1")["label"] == "bug"  # by majority
        before = store.labels_watermark()
    assert trained(db, tmp_path)["t1"] == "billing"  # Dawid–Skene's

    out = hitl(db, "labels", "set", "t1", "bug", "--reason", "checked", "--by", "ana")
    assert out == "t1: bug kept, now decided by a person (training keeps it)\n"
    assert trained(db, tmp_path)["t1"] == "bug"
    with Store.open(db) as store:
        [change] = store.label_history("t1")
        assert {k: change[k] for k in ("old_label", "new_label", "action", "reason")} == {
            "old_label": "bug",
            "new_label": "bug",
            "action": "set",
            "reason": "checked",
        }
        assert "t1" in store.decided_by_people()
        assert store.labels_watermark() != before  # the next retrain sees a change
        assert store.resolution("t1")["label"] == "bug"

    # once a person's decision, setting it again changes nothing and records nothing
    assert hitl(db, "labels", "set", "t1", "bug") == "t1: already bug, nothing changed\n"
    with Store.open(db) as store:
        assert len(store.label_history("t1")) == 1


def test_an_admins_label_stays_pinned_through_a_rename_and_a_merge(tmp_path: Path):
    db = voted_db(tmp_path)
    assert hitl(db, "labels", "set", "t1", "account", "--reason", "an address change") == (
        "t1: bug → account\n"
    )
    assert trained(db, tmp_path)["t1"] == "account"

    hitl(db, "labels", "rename", "account", "payments")
    with Store.open(db) as store:
        assert store.resolution("t1")["label"] == "payments"  # what export shows
        assert store.decided_by_people() == {"t1"}
    rows = trained(db, tmp_path)
    assert rows["t1"] == "payments"
    assert rows["p3"] == "payments"  # the voters' "account", under its new name

    hitl(db, "labels", "merge", "payments", "how_to")
    assert trained(db, tmp_path)["t1"] == "how_to"
    with Store.open(db) as store:
        assert [h["action"] for h in store.label_history("t1")] == ["set", "rename", "merge"]
        assert store.decided_by_people() == {"t1"}
