"""`hitl labels`: a decided label (an imported one too) can be changed or removed, every change
is kept in history, and the next retrain and export see the current labels."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.learning.jobs import catch_up
from bot.learning.retrain import Outcome
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings, start_bot
from tests.bot.test_cli_loop import labeled_file, run

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


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
        'Error: no item with id "nope"; `hitl export` lists the labeled ones\n',
    )
    assert run(db, "labels", "remove", "ab1").exit_code == 0
    twice = run(db, "labels", "remove", "ab1")
    assert twice.stderr == 'Error: item "ab1" has no label to remove\n'
    monkeypatch.setenv("HITL_LABELS", "billing,bug")
    unknown = run(db, "labels", "set", "ab2", "refund")
    assert unknown.stderr == (
        'Error: "refund" is not in the label set (billing, bug); use one of these\n'
    )
    assert run(db, "labels", "history", "ab2").stdout == "No label changes for ab2.\n"
    assert run(tmp_path / "none.db", "labels", "history").stderr.startswith(
        "Error: no database at "
    )


def wrong_import_files(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """Generated tickets in three labels: 150 right ones; then 120 with a wrong label (another
    label drawn at random) and 30 more right ones; then 30 more right ones; the ids of the
    wrong ones."""
    rng = random.Random(1)
    words = {
        "billing": "charge refund invoice card payment price paid money receipt plan",
        "bug": "crash error broken blank freeze fails bug slow glitch stuck",
        "account": "password login email username profile delete signup reset locked otp",
    }
    labels = list(words)
    filler = [f"w{n}" for n in range(40)]

    def rows(prefix: str, n: int, wrong: bool = False) -> list[dict]:
        out = []
        for k in range(n):
            label = labels[k % 3]
            text = " ".join(rng.sample(words[label].split(), 1) + rng.sample(filler, 4))
            given = labels[(k % 3 + 1 + rng.randrange(2)) % 3] if wrong else label
            out.append({"id": f"{prefix}{k}", "text": text, "label": given})
        return out

    good, bad, extra = (tmp_path / f"{name}.jsonl" for name in ("good", "later", "extra"))
    good.write_text("".join(json.dumps(r) + "\n" for r in rows("g", 150)))
    wrong = rows("w", 120, wrong=True)
    bad.write_text("".join(json.dumps(r) + "\n" for r in wrong + rows("m", 30)))
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows("x", 30)))
    return good, bad, extra, [r["id"] for r in wrong]


async def test_after_an_admin_removes_120_wrong_imported_labels_the_next_retrain_passes_the_gate(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Issue 20's case: wrong imported labels made every later retrain fail the gate, the
    server's catch-up run included. `hitl labels remove` takes them all away at once; the next
    retrain (here the catch-up run of the running server) is promoted."""
    db = tmp_path / "hitl.db"
    good, later, extra, wrong = wrong_import_files(tmp_path)
    assert run(db, "import", str(good)).exit_code == 0
    # the CLI runs its own event loop: from this test's, in a thread
    first = await asyncio.to_thread(run, db, "retrain")
    assert first.stdout.startswith("Retrain v1: promoted ✅"), first.output
    settings = make_settings(fake_slack, tmp_path, labels=())  # the imported label set

    async def missed_run() -> Outcome | None:  # the last retrain was long ago: one is missed
        [last] = bot.store.runs("retrain", limit=1)
        bot.store.db["runs"].update(last["id"], {"started_at": "2026-11-20T03:00:00.000+00:00"})
        return await catch_up(bot.rt, datetime(2026, 11, 24, 12, 0, tzinfo=UTC))

    async for bot in start_bot(fake_slack, settings):
        assert run(db, "import", str(later)).exit_code == 0
        caught_up = await missed_run()
        assert caught_up.triggered_by == "schedule (missed while down)"
        assert caught_up.status == "rejected" and "worse than the champion" in caught_up.reason
        assert run(db, "import", str(extra)).exit_code == 0  # right labels do not outweigh them
        rejected = (await asyncio.to_thread(run, db, "retrain")).stdout
        assert rejected.startswith("Retrain v3: rejected ❌"), rejected

        removed = run(db, "labels", "remove", *wrong, "--reason", "a bad import", "--by", "ana")
        assert removed.exit_code == 0, removed.output
        assert len(removed.stdout.splitlines()) == 120
        assert removed.stdout.splitlines()[0].endswith("removed; the item is set aside")
        assert not set(wrong) & {row[0] for row in bot.store.training_data()}
        assert len(bot.store.label_history()) == 120  # each removal kept, with who and why

        caught_up = await missed_run()
        assert caught_up.status == "promoted", caught_up.reason
        assert caught_up.n_labels == 210  # the right ones only
        assert bot.rt.champion.version == caught_up.version


def test_removing_several_labels_is_all_or_nothing_with_the_bad_id_named(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    refused = run(db, "labels", "remove", "ab0", "nope", "ab1")
    assert (refused.exit_code, refused.stderr) == (
        1,
        'Error: no item with id "nope"; `hitl export` lists the labeled ones\n',
    )
    with Store.open(db) as store:
        assert store.label_history() == [] and store.resolution("ab0") is not None
    both = run(db, "labels", "remove", "ab0", "ab1")
    assert both.stdout == (
        "ab0: billing removed; the item is set aside\nab1: billing removed; the item is set aside\n"
    )


def test_a_gold_items_label_is_changed_or_removed_as_training_reads_it(tmp_path: Path):
    """A gold item never trains (the model must not learn gold answers): `hitl labels set`
    replaces its gold label, and `hitl labels remove` sets it aside (it is gold no more)."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        '{"id": "ab0", "text": "refund my invoice", "label": "bug"}\n'  # a slip in the gold file
        '{"id": "G-1", "text": "my card was charged twice", "label": "billing"}\n'
    )
    assert run(db, "import", "--gold", str(gold)).exit_code == 0
    assert run(db, "labels", "set", "ab0", "billing").stdout == "ab0: bug → billing\n"
    removed = run(db, "labels", "remove", "G-1", "--reason", "not a real ticket")
    assert removed.stdout == "G-1: billing removed; the item is set aside\n"
    with Store.open(db) as store:
        trained = {r[0]: r[2] for r in store.training_data()}
        assert "ab0" not in trained and "G-1" not in trained and "ab1" in trained
        assert store.gold_labels() == {"ab0": "billing"}
        assert [(h["item_id"], h["old_label"], h["new_label"]) for h in store.label_history()] == [
            ("ab0", "bug", "billing"),
            ("G-1", "billing", None),
        ]


def test_a_relabel_reports_the_votes_people_gave_the_new_label_not_the_old_ones(tmp_path: Path):
    # Ana and Raj chose billing; an admin sets bug. The producer API and the webhook report
    # the label's votes: nobody voted bug, so 0 votes and agreement 0 (it said 2 and 1.0).
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items([Item("t1", "refund me")], "api")
        for user in ("U0ANA", "U0RAJ"):
            store.record_answer(
                "t1", user, "billing", source="button", dedupe_key=user, votes_needed=2
            )
        assert store.resolution("t1")["votes"] == 2
    assert run(db, "labels", "set", "t1", "bug").stdout == "t1: billing → bug\n"
    with Store.open(db) as store:
        resolution = store.resolution("t1")
        assert (resolution["label"], resolution["votes"], resolution["agreement"]) == (
            "bug",
            0,
            0.0,
        )
        assert store.webhook_payload("t1")["votes"] == 0
    assert run(db, "labels", "set", "t1", "billing").stdout == "t1: bug → billing\n"
    with Store.open(db) as store:  # back to the people's label: their votes again
        assert (store.resolution("t1")["votes"], store.resolution("t1")["agreement"]) == (2, 1.0)
    exported = [json.loads(line) for line in run(db, "export").stdout.splitlines()]
    copy = tmp_path / "copy.db"
    (tmp_path / "out.jsonl").write_text("\n".join(json.dumps(r) for r in exported) + "\n")
    assert run(copy, "import", str(tmp_path / "out.jsonl")).exit_code == 0  # reads back


def test_an_id_given_twice_to_labels_remove_is_removed_once(tmp_path: Path):
    """reader4 #11: `hitl labels remove $(jq -r .id bad.jsonl)` on a file that repeats a row
    failed ("item 'ab0' has no label to remove") and removed nothing; `labels set` and
    `delete` drop repeats first, and so does remove."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0

    removed = run(db, "labels", "remove", "ab0", "ag0", "ab0", "--reason", "a bad import")

    assert removed.exit_code == 0, removed.output
    assert removed.stdout.splitlines() == [
        "ab0: billing removed; the item is set aside",
        "ag0: bug removed; the item is set aside",
    ]
    with Store.open(db) as store:
        assert {"ab0", "ag0"}.isdisjoint(row[0] for row in store.training_data())
