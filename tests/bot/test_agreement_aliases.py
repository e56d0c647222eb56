"""The team's agreement is measured under the label set in force (a code review's ML finding
3): "bug" clicked before `hitl labels rename bug defect` and "defect" after are one answer, as
the store counts them when it resolves the item; two labels merged into one are one. Before,
``quality.measure`` mapped the answers for gold accuracy only: the rename halved the raw
agreement and showed "bug 0 %" and "defect 0 %" as two labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.learning import quality
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings

LABELS = ("billing", "bug", "crash")


@pytest.mark.parametrize(
    ("action", "new", "after"),
    [("rename", "defect", "defect"), ("merge", "crash", "crash")],
)
def test_answers_given_across_a_change_of_the_label_set_agree(
    tmp_path: Path, action: str, new: str, after: str
):
    settings = make_settings(FakeSlack(), tmp_path, labels=LABELS, votes=2)
    with Store.open(settings.db) as store:
        items = [Item(f"i{k}", f"text number {k}") for k in range(12)]
        store.add_items(items, "import")
        for k, it in enumerate(items):  # U1 answers every item before the change
            label = "bug" if k % 2 else "billing"
            store.record_answer(
                it.id, "U1", label, source="slack", dedupe_key=f"a{k}", votes_needed=2
            )
        store.change_label_set(action, "bug", new, current=list(LABELS), user_id="UADM")
        for k, it in enumerate(items):  # U2 gives the same answers after it
            label = after if k % 2 else "billing"
            store.record_answer(
                it.id, "U2", label, source="slack", dedupe_key=f"b{k}", votes_needed=2
            )
        assert store.count_items().get("resolved", 0) == 12  # the store: they agree
        report = quality.measure(store, settings).agreement
    assert report is not None
    assert report.overall.observed == 1.0  # was 0.5
    assert [p.observed for p in report.pairs] == [1.0]
    shown = {lb.label: lb.specific for lb in report.per_label if lb.specific is not None}
    assert shown == {"billing": 1.0, after: 1.0}  # was bug 0 %, defect 0 %
    assert all(p.rate == 1.0 for p in report.per_annotator if p.n)
