"""After a rename or merge, both gates read the champion's answers under the label set of now:
the champion answers with the names it was trained under, and scored raw against the gold
questions (or the held-out audits of a refresh) it lost every one of a renamed label, so a
worse candidate passed (outside code review: a batch with two labels swapped, rejected on
gold, was promoted once two other labels were renamed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.learning import retrain
from bot.store import Store
from model import TextClassifier
from tests.bot.harness import Item
from tests.bot.test_gate_gold import LABELS, swapped_batch

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


async def test_a_batch_rejected_on_gold_is_still_rejected_after_an_unrelated_rename(
    tmp_path: Path,
):
    first, gold, batch, settings, registry = swapped_batch(tmp_path)
    with Store.open(settings.db) as store:
        store.add_items(first, "import")
        store.add_gold(gold)
        v1 = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        assert v1.status == "promoted"
        labels = store.change_label_set(
            "rename", "praise", "kudos", current=list(LABELS), user_id="U0ADMIN"
        )
        store.change_label_set("rename", "how_to", "howto", current=labels, user_id="U0ADMIN")
        names = {"praise": "kudos", "how_to": "howto"}
        store.add_items([Item(i.id, i.text, names.get(i.label, i.label)) for i in batch], "import")
        champion = retrain.load_champion(registry)
        v2 = await retrain.retrain(store, settings, registry, champion=champion, triggered_by="cli")
    assert v2.status == "rejected", v2.reason
    assert "worse on the" in v2.reason and "gold questions" in v2.reason


def test_the_refresh_gate_reads_the_champions_answers_under_the_names_of_now(tmp_path: Path):
    texts = [
        f"{w} ticket number {i}"
        for w in ("refund money", "crash error", "how do i")
        for i in range(12)
    ]
    champion = TextClassifier("word_lr").fit(
        texts, ["billing"] * 12 + ["bug"] * 12 + ["how_to"] * 12
    )
    held = [f"{w} case {i}" for w in ("refund money", "crash error", "how do i") for i in range(5)]
    assert champion.predict(held) == ["billing"] * 5 + ["bug"] * 5 + ["how_to"] * 5
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:  # `hitl labels rename bug defect`: the aliases a plan reads
        store.change_label_set(
            "rename", "bug", "defect", current=["billing", "bug", "how_to"], user_id="U0ADMIN"
        )
        aliases = store.label_aliases()
    plan = retrain.RefreshPlan(
        version=-36,
        texts=texts,
        labels=["billing"] * 18 + ["defect"] * 6 + ["how_to"] * 12,  # "crash" half wrong
        held_texts=held,
        held_labels=["billing"] * 5 + ["defect"] * 5 + ["how_to"] * 5,
        label_set=["billing", "defect", "how_to"],
        pipeline="word_lr",
        base=1,
        aliases=aliases,
    )
    out = retrain.compute_refresh(plan, champion)
    assert out.champion_correct == 15, out.gate_text()  # bug is defect now
