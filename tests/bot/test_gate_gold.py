"""The promotion gate also asks the gold questions, data the new batch did not define (the
outside ML audit's finding 3, its r2 made small): the champion learned right labels, a new batch
comes from a team that read two labels' guidelines the wrong way round. The folds hold out the
new labels themselves, so the candidate, which learned the swap, scored right there and was
promoted as "+0.20 macro-F1" while it fell from 70 % to 56 % on the database's gold questions.
Now a candidate worse on them than the champion beyond chance is not promoted, and the report
says why; a good batch is still promoted. Also here: the retrain report names the labels
cross-validation could not hold out (finding 6)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.learning import reports, retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


LABELS = ("billing", "bug", "how_to", "praise")
SWAP = {"billing": "bug", "bug": "billing"}  # the two guidelines read the wrong way round
FILLER = [f"word{i}" for i in range(40)]


def tickets(rng: random.Random, prefix: str, per_label: int, seen: set[str]) -> list[Item]:
    """``per_label`` tickets of each label: two of its twelve cue words among filler words;
    no text repeats another (``seen``)."""
    items = []
    for label in LABELS:
        cues = [f"{label}{j}" for j in range(12)]
        made = 0
        while made < per_label:
            words = rng.sample(cues, 2) + rng.sample(FILLER, 3)
            rng.shuffle(words)
            text = " ".join(words)
            if text in seen:
                continue
            seen.add(text)
            items.append(Item(f"{prefix}{label}{made}", text, label))
            made += 1
    return items


async def retrain_with_gold(tmp_path: Path, *, swapped: bool) -> tuple[retrain.Outcome, str]:
    """A champion on 60 right labels and 40 gold questions, then a batch of 160 labels
    (``swapped``: billing and bug the wrong way round) and the second retrain's outcome and
    report."""
    rng = random.Random(5)
    seen: set[str] = set()
    first = tickets(rng, "a", 15, seen)
    gold = tickets(rng, "g", 10, seen)
    batch = tickets(rng, "b", 40, seen)
    if swapped:
        batch = [Item(i.id, i.text, SWAP.get(i.label, i.label)) for i in batch]
    settings = make_settings(FakeSlack(), tmp_path, labels=LABELS)
    registry = retrain.registry_for(settings)
    with Store.open(settings.db) as store:
        store.add_items(first, "import")
        store.add_gold(gold)
        v1 = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        assert v1.status == "promoted"
        store.add_items(batch, "import")
        champion = retrain.load_champion(registry)
        v2 = await retrain.retrain(store, settings, registry, champion=champion, triggered_by="cli")
    return v2, reports.retrain_text(v2)


async def test_a_batch_with_two_labels_swapped_is_not_promoted_over_the_gold_questions(
    tmp_path: Path,
):
    outcome, report = await retrain_with_gold(tmp_path, swapped=True)
    # the old gate: "promoted: macro-F1 0.5…→0.8… on the same 5 folds"
    assert outcome.status == "rejected", outcome.reason
    assert re.search(r"worse on the 40 gold questions: \d+ % vs 100 %", outcome.reason)
    assert "*Retrain v2: rejected ❌*" in report
    assert f"*Why:* {outcome.reason}" in report
    assert "v1 stays champion" in report


async def test_a_good_batch_is_still_promoted_and_its_gold_figures_shown(tmp_path: Path):
    outcome, report = await retrain_with_gold(tmp_path, swapped=False)
    assert outcome.status == "promoted", outcome.reason
    assert re.search(r"on the 40 gold questions: \d+ % vs \d+ %", outcome.reason)
    assert "*Retrain v2: promoted ✅*" in report


async def test_the_report_names_the_labels_too_rare_to_hold_out(tmp_path: Path):
    rng = random.Random(6)
    items = tickets(rng, "a", 20, set())
    items += [
        Item("n1", "refund of a gift card", "refund"),
        Item("n2", "gift card refund", "refund"),
    ]
    settings = make_settings(FakeSlack(), tmp_path, labels=(*LABELS, "refund"))
    with Store.open(settings.db) as store:
        store.add_items(items, "import")
        outcome = await retrain.retrain(
            store, settings, retrain.registry_for(settings), champion=None, triggered_by="cli"
        )
    assert outcome.status == "promoted"
    assert outcome.metrics["n_splits"] == 5  # was 2: the two set the folds for every label
    report = reports.retrain_text(outcome)
    assert "*Not evaluated* (too few examples to hold out): `refund` (2)" in report


async def test_items_made_gold_after_the_champion_trained_on_them_do_not_hold_a_good_batch_back(
    tmp_path: Path,
):
    """The README's workflow: decided items made gold later (`hitl export`, then `hitl import
    --gold`). The champion trained on them and answers them from memory; held against them,
    every later candidate was "worse on the gold questions" (an outside re-test: 77 % vs 100 %
    after 390 more right labels, 85 % vs 100 % after 990). Only gold the champion never trained
    on is asked: these wait for the next champion."""
    rng = random.Random(7)
    seen: set[str] = set()
    first = tickets(rng, "a", 15, seen)
    # hard items: filler words only, their labels learnable by memory alone
    hard = []
    for n in range(24):
        text = " ".join(rng.sample(FILLER, 5))
        if text not in seen:
            seen.add(text)
            hard.append(Item(f"h{n}", text, LABELS[n % len(LABELS)]))
    batch = tickets(rng, "b", 40, seen)
    settings = make_settings(FakeSlack(), tmp_path, labels=LABELS)
    registry = retrain.registry_for(settings)
    with Store.open(settings.db) as store:
        store.add_items(first + hard, "import")
        v1 = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        assert v1.status == "promoted"
        store.add_gold(hard)  # decided items, made gold after v1 trained on them
        store.add_items(batch, "import")
        champion = retrain.load_champion(registry)
        v2 = await retrain.retrain(store, settings, registry, champion=champion, triggered_by="cli")
    assert v2.status == "promoted", v2.reason  # 2a68f93: "worse on the 24 gold questions"
    assert "gold questions" not in v2.reason


def swapped_batch(tmp_path: Path) -> tuple[list[Item], list[Item], list[Item], Settings, Any]:
    """15 first labels, 10 gold questions and a batch of 40 with two labels swapped (``SWAP``),
    seeded, and the settings and models registry of a database in ``tmp_path``."""
    rng = random.Random(5)
    seen: set[str] = set()
    first = tickets(rng, "a", 15, seen)
    gold = tickets(rng, "g", 10, seen)
    batch = [Item(i.id, i.text, SWAP.get(i.label, i.label)) for i in tickets(rng, "b", 40, seen)]
    settings = make_settings(FakeSlack(), tmp_path, labels=LABELS)
    return first, gold, batch, settings, retrain.registry_for(settings)


async def test_new_gold_made_after_the_champion_counts_at_once(tmp_path: Path):
    """Gold imported as new items after the first model (the usual order: a model, then a
    gold set, then more labels) trained no model: the next retrain asks it, and a batch with
    two labels swapped is not promoted (80191a3 left out all gold made after the champion)."""
    first, gold, batch, settings, registry = swapped_batch(tmp_path)
    with Store.open(settings.db) as store:
        store.add_items(first, "import")
        v1 = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        assert v1.status == "promoted"
        store.add_gold(gold)  # new items, gold from the start: v1 never saw them
        store.add_items(batch, "import")
        champion = retrain.load_champion(registry)
        v2 = await retrain.retrain(store, settings, registry, champion=champion, triggered_by="cli")
    assert v2.status == "rejected", v2.reason
    assert re.search(r"worse on the 40 gold questions", v2.reason)
