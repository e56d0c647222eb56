"""`hitl stats` with HITL_VOTES=3, where an item closes as soon as two answers agree: the
agreement shown is measured on each item's first two answers and says so, and comes out near
the agreement of the same people answering every item, not Fleiss' κ 1.00 (the items that
closed on two answers, all agreeing, were the most common number of answers)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store
from model.agreement import Tally, overall_agreement
from tests.bot.harness import LABELS, Item, seed

PEOPLE = {"U0ANA": 0.95, "U0RAJ": 0.82, "U0MEI": 0.64}  # how often each is right
N_ITEMS = 300


def test_stats_with_three_votes_show_agreement_on_the_first_two_answers(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"i{n}", f"item {n}") for n in range(N_ITEMS)])
    rng = np.random.default_rng(7)
    everyone = []
    with Store.open(db) as store:
        for n in range(N_ITEMS):
            truth = LABELS[rng.integers(len(LABELS))]
            others = [lb for lb in LABELS if lb != truth]
            # all three click, in a random order (as the tester's Slack clicks): an answer
            # after two agreed finds the item closed and does not count
            for user in rng.permutation(list(PEOPLE)).tolist():
                label = truth if rng.random() < PEOPLE[user] else others[rng.integers(5)]
                everyone.append((f"i{n}", user, label))
                store.record_answer(f"i{n}", user, label, source="button",
                                    dedupe_key=f"{n}{user}", votes_needed=3)  # fmt: skip
    full = overall_agreement(Tally.from_votes(everyone)).fleiss
    assert full is not None and 0.4 < full < 0.7

    result = CliRunner().invoke(
        cli, ["--db", str(db), "stats"], env={"HITL_VOTES": "3"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    head = next(x for x in result.output.splitlines() if x.startswith("Agreement between"))
    assert "Fleiss' κ 1.00" not in head, head
    assert head.startswith(
        f"Agreement between people ({N_ITEMS} items with two or more answers, 3 people) "
        "on each item's first two answers: Krippendorff's α "
    ), head
    fleiss = float(re.search(r"Fleiss' κ (\d\.\d\d)", head).group(1))
    assert abs(fleiss - full) < 0.1, (head, full)
    assert "Cohen's κ by pair on each item's first two answers:" in result.output.splitlines()
