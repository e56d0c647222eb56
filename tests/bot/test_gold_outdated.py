"""Gold labels set before a change in how the team labels (an outside test's "drift" defect 2):
refund tickets were billing when the gold questions were written, the team now labels them
account. Every candidate that learned the new labels was rejected on the gold questions, and
the report blamed the team's recent labels, the right ones. Now a rejection on gold names the
gold questions the candidate answered otherwise (gold label, its answer, the team's answers
there), how many in all, that the gold labels may be out of date and how to update them, and
on how many gold questions the team's own answers differ from gold; `hitl labels set` takes
several ids, all set in one transaction or, with an unknown id, none."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from bot.store import Store
from tests.bot.harness import Item
from tests.bot.test_cli_loop import run

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


BASE = ("billing", "bug", "how_to", "praise")
FILLER = [f"word{i}" for i in range(40)]
OUTDATED = [f"grefund{n}" for n in range(10)]  # the gold refund tickets, gold label billing


def tickets(rng: random.Random, prefix: str, kind: str, n: int, label: str, seen: set[str]):
    """``n`` tickets of ``kind`` (two of its twelve cue words among filler words) labeled
    ``label``; no text repeats another (``seen``)."""
    cues = [f"{kind}{j}" for j in range(12)]
    items: list[Item] = []
    while len(items) < n:
        words = rng.sample(cues, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            items.append(Item(f"{prefix}{kind}{len(items)}", text, label))
    return items


def batch(rng: random.Random, prefix: str, per_label: int, refunds: int, seen: set[str]):
    """``per_label`` tickets of each base label and ``refunds`` refund tickets, labeled
    account (the new policy)."""
    items = [t for lb in BASE for t in tickets(rng, prefix, lb, per_label, lb, seen)]
    return items + tickets(rng, prefix, "refund", refunds, "account", seen)


def policy_change(tmp_path: Path) -> tuple[Path, list[str]]:
    """v1 on refund tickets labeled billing, 50 gold questions (10 refund tickets, gold
    billing; three answered account by the team), then two weeks of labels with refund
    tickets labeled account: the database and the two retrains' reports (`hitl retrain`)."""
    rng = random.Random(11)
    seen: set[str] = set()
    db = tmp_path / "hitl.db"
    first = [t for lb in BASE for t in tickets(rng, "a", lb, 15, lb, seen)]
    first += tickets(rng, "a", "refund", 15, "billing", seen)
    gold = [t for lb in BASE for t in tickets(rng, "g", lb, 10, lb, seen)]
    gold += tickets(rng, "g", "refund", 10, "billing", seen)
    with Store.open(db) as store:
        store.add_items(first, "import")
        store.add_gold(gold)
        for n, (item, user) in enumerate(
            [("grefund0", "U0ANA"), ("grefund0", "U0RAJ"), ("grefund1", "U0ANA")]
        ):
            store.record_answer(
                item, user, "account", source="button", dedupe_key=f"k{n}", votes_needed=3
            )
    assert run(db, "retrain").stdout.startswith("Retrain v1: promoted")
    outputs = []
    for week in ("b", "c"):
        with Store.open(db) as store:
            store.add_items(batch(rng, week, 30, 60, seen), "import")
        outputs.append(run(db, "retrain").stdout)
    return db, outputs


def test_a_rejection_on_outdated_gold_names_the_gold_questions_and_how_to_update_them(
    tmp_path: Path,
):
    db, (first, second) = policy_change(tmp_path)
    for report in (first, second):
        assert re.match(r"Retrain v[23]: rejected", report), report
        assert re.search(r"Why: rejected: worse on the 50 gold questions", report), report
        # the gold questions the candidate got wrong: the refund ones, with both labels
        found = [lb for lb in report.splitlines() if lb.startswith("Gold questions the")]
        assert len(found) == 1, report
        line = found[0]
        assert line.startswith("Gold questions the candidate got wrong: 10 in all: "), line
        named = re.findall(r"(grefund\d) \(gold billing, the candidate says account", line)
        assert len(named) == 5 and set(named) <= set(OUTDATED), line
        assert line.endswith(" and 5 more"), line
        # the team's answers where there are some
        assert (
            "grefund0 (gold billing, the candidate says account,"
            " 2 of the team's 2 answers say account)" in line
        ), line
        assert (
            "grefund1 (gold billing, the candidate says account,"
            " 1 of the team's 1 answer says account)" in line
        ), line
        assert (
            "Gold labels: if the team's labeling changed, the gold labels may be out of date:"
            " `hitl labels set ID LABEL` updates one, `hitl labels set ID ID … LABEL` several"
            " at once." in report
        )
        assert (
            "The team and gold disagree: on 2 gold questions most of the team's answers differ"
            " from the gold label; each counts as a miss in that person's accuracy on gold"
            " (`hitl stats`)." in report
        )
    # the streak no longer puts it on the team's recent labels alone
    assert "Rejected again and again: this one on the gold questions: either labels" in second
    assert "the gold labels above are out of date" in second
    assert "usually labels given since v1 was trained disagree" not in second

    # the fix the report gives, in one command: the next candidate is promoted
    result = run(db, "labels", "set", *OUTDATED, "account", "--reason", "refunds are account")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"{i}: billing → account" for i in OUTDATED]
    with Store.open(db) as store:
        gold = store.gold_labels()
    assert {i: gold[i] for i in OUTDATED} == dict.fromkeys(OUTDATED, "account")
    after = run(db, "retrain").stdout
    assert after.startswith("Retrain v4: promoted"), after
    assert "Gold questions the candidate" not in after


def test_labels_set_with_an_unknown_id_is_one_line_and_changes_nothing(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_gold([Item("G1", "refund me", "billing"), Item("G2", "money back", "billing")])
        store.add_items([Item("T1", "app is blank", "bug")], "import")
    result = run(db, "labels", "set", "G1", "nope", "G2", "T1", "account")
    assert result.exit_code == 1
    assert result.output == (
        'Error: no item with id "nope"; nothing changed (`hitl export` lists the labeled ones)\n'
    )
    with Store.open(db) as store:
        assert store.gold_labels() == {"G1": "billing", "G2": "billing"}
        assert store.current_label("T1") == "bug"
        assert store.label_history() == []
    # all of them, gold or not, in one command
    result = run(db, "labels", "set", "G1", "G2", "T1", "G1", "account", "--by", "ana")
    assert result.exit_code == 0, result.output
    assert result.output == "G1: billing → account\nG2: billing → account\nT1: bug → account\n"
    with Store.open(db) as store:
        assert store.gold_labels() == {"G1": "account", "G2": "account"}
        assert store.current_label("T1") == "account"
        assert [(h["item_id"], h["user_id"]) for h in store.label_history()] == [
            ("G1", "ana"),
            ("G2", "ana"),
            ("T1", "ana"),
        ]


def test_labels_set_with_one_id_is_as_before(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_items([Item("T1", "app is blank", "bug")], "import")
    assert run(db, "labels", "set", "T1", "billing").output == "T1: bug → billing\n"
    missing = run(db, "labels", "set", "T9", "billing")
    assert missing.exit_code == 1
    assert missing.output == 'Error: no item with id "T9"; `hitl export` lists the labeled ones\n'
