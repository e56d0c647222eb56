"""Figures that must add up after label-set changes, gold imports and deletes (outside tester
t_figures, defects 4-7): the weakest classes after a merge, the retrain report's new labels
after a merge, the gold questions waiting, and the /metrics counters after a delete."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from bot.api.metrics import Metrics
from bot.config import Settings
from bot.learning import reports, retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings, margin_scored
from tests.bot.test_gate_gold import LABELS, tickets

NOW = datetime(2024, 1, 2, tzinfo=UTC)


def _champion(per_class: dict[str, dict[str, float]]) -> SimpleNamespace:
    return SimpleNamespace(
        version=3,
        status="champion",
        n_train=300,
        created_at="2024-01-01T00:00:00+00:00",
        label_set=list(per_class),
        metrics={"accuracy": 0.5, "macro_f1": 0.5, "n_splits": 5, "per_class": per_class},
    )


def _weakest_line(store: Store, per_class: dict[str, dict[str, float]]) -> str:
    champion = _champion(per_class)
    registry = SimpleNamespace(champion=lambda: champion, versions=lambda: [champion])
    text = reports.accuracy_text(reports.accuracy_report(store, registry, NOW))
    return next(line for line in text.splitlines() if line.startswith("*Weakest classes:*"))


def test_weakest_classes_say_how_many_more_are_as_weak_as_the_third(tmp_path: Path):
    """A large label set's rare classes often all score F1 0.00: naming three of them (the
    first in alphabetical order) said nothing of the others, as weak. Without a tie, three."""
    per_class = {f"rare{n:02d}": {"f1": 0.0, "support": 1} for n in range(10)}
    per_class |= {f"common{n:02d}": {"f1": 0.8 + n / 1000, "support": 40} for n in range(67)}
    with Store.open(tmp_path / "hitl.db") as store:
        line = _weakest_line(store, per_class)
        alike = _weakest_line(store, {**per_class, "rare09": {"f1": 0.004, "support": 1}})
        apart = _weakest_line(
            store,
            {**per_class, **{f"rare{n:02d}": {"f1": 0.01, "support": 1} for n in range(3, 10)}},
        )
    named = "`rare00` (F1 0.00, n=1), `rare01` (F1 0.00, n=1), `rare02` (F1 0.00, n=1)"
    assert line == f"*Weakest classes:* {named}, and 7 more at F1 0.00"
    assert alike == f"*Weakest classes:* {named}, and 7 more at F1 0.00"  # 0.004 reads 0.00
    assert apart == f"*Weakest classes:* {named}"


PER_CLASS = {
    "abbreviation": {"f1": 0.21, "support": 14},
    "description": {"f1": 0.8, "support": 60},
    "location": {"f1": 0.46, "support": 37},
    "entity": {"f1": 0.47, "support": 75},
}


def test_weakest_classes_say_a_class_was_merged_away_since_the_model(tmp_path: Path):
    current = list(PER_CLASS)
    with Store.open(tmp_path / "hitl.db") as store:
        store.change_label_set(
            "merge", "abbreviation", "description", current=current, user_id="U0ADMIN"
        )
        line = _weakest_line(store, PER_CLASS)
    assert line == (
        "*Weakest classes:* `abbreviation` (F1 0.21, n=14; merged into `description` since v3 was"
        " trained), `location` (F1 0.46, n=37), `entity` (F1 0.47, n=75)"
    )


def test_weakest_classes_show_a_renamed_class_under_its_name_of_now(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        labels = store.change_label_set(
            "rename", "abbreviation", "acronym", current=list(PER_CLASS), user_id="U0ADMIN"
        )
        store.change_label_set("retire", "entity", current=labels, user_id="U0ADMIN")
        line = _weakest_line(store, PER_CLASS)
    assert line == (
        "*Weakest classes:* `acronym` (F1 0.21, n=14; named `abbreviation` when v3 was trained),"
        " `location` (F1 0.46, n=37), `entity` (F1 0.47, n=75; retired since v3 was trained)"
    )


async def test_the_retrain_report_counts_the_labels_a_merge_rewrote_as_new(tmp_path: Path):
    rng = random.Random(5)
    first = tickets(rng, "a", 15, set())
    settings = make_settings(FakeSlack(), tmp_path, labels=LABELS)
    registry = retrain.registry_for(settings)
    with Store.open(settings.db) as store:
        store.add_items(first, "import")
        v1 = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        assert v1.status == "promoted"
        store.change_label_set("merge", "praise", "how_to", current=list(LABELS), user_id="U0")
        champion = retrain.load_champion(registry)
        v2 = await retrain.retrain(store, settings, registry, champion=champion, triggered_by="cli")
        refresh = retrain.begin_refresh(store, settings, registry, champion)
    assert v2.status in ("promoted", "rejected"), v2.reason
    assert (v2.n_labels, v2.n_new) == (60, 15), reports.retrain_text(v2)
    assert "*Labels:* 60 (15 new since v1 was trained)" in reports.retrain_text(v2)
    # the label clock is as it was: a refresh (HITL_REFRESH_EVERY counts resolved items, less
    # those after the champion's read) sees no label as given since the champion
    assert refresh.since_champion == 0


def _gold_setup(tmp_path: Path) -> tuple[Settings, list[str]]:
    """An item decided by the model (auto), two in the queue and one not scored yet, all
    marked gold by `hitl import --gold`, and one new gold item."""
    settings = make_settings(FakeSlack(), tmp_path, labels=LABELS)
    with Store.open(settings.db) as store:
        store.add_items(
            [Item(f"p{n}", f"pool ticket {n}") for n in range(6)]
            + [Item(f"s{n}", f"seed ticket {n}", LABELS[n % 2]) for n in range(4)],
            "import",
        )
        scored = [
            ("p0", 1, "billing", 0.99, [("billing", 0.99), ("bug", 0.01)]),
            ("p1", 1, "billing", 0.6, [("billing", 0.6), ("bug", 0.4)]),
            ("p2", 1, "bug", 0.55, [("bug", 0.55), ("billing", 0.45)]),
            ("p3", 1, "bug", 0.5, [("bug", 0.5), ("billing", 0.5)]),
        ]
        store.set_predictions(margin_scored(scored), threshold=0.9, strategy="margin")
        assert store.count_items()["auto"] == 1
        result = store.add_gold(
            [Item("p0", "pool ticket 0", "billing"), Item("p1", "pool ticket 1", "bug")]
            + [Item("p2", "pool ticket 2", "bug"), Item("p4", "pool ticket 4", "bug")]
            + [Item("g-new", "a new gold ticket", "billing")]
        )
        assert (result.added, result.marked) == (1, 4)
    return settings, ["p0", "p1", "p2", "p4", "g-new"]


def test_every_gold_question_waiting_is_counted_and_drawn_as_one(tmp_path: Path):
    settings, gold = _gold_setup(tmp_path)
    with Store.open(settings.db) as store:
        counts = store.count_items()
        drawn = [row["id"] for row in store.next_gold(10)]
        line = reports.stats_text(store, settings, NOW).splitlines()[2]
        waiting = store.waiting_count()
    # the dispatcher mixes in every one of them but p0, which the model decided: it keeps its
    # decision (the producer API says auto), and its gold label scores models all the same
    assert sorted(drawn) == sorted(g for g in gold if g != "p0")
    assert counts["gold"] == 4 and counts["auto"] == 1
    # p3 (queued) and p5 (new) wait besides the four gold questions
    assert line.startswith("*Items:* 6 waiting (4 of them gold questions) · 0 posted"), line
    assert "1 decided by the model" in line, line
    assert waiting == 6  # App Home's "Queue: N waiting" is the same count


def test_importing_the_gold_again_mends_items_marked_before(tmp_path: Path):
    settings, _ = _gold_setup(tmp_path)
    with Store.open(settings.db) as store:  # as an older version left them: marked, queued
        store.db.execute("UPDATE items SET status = 'queued' WHERE id IN ('p1', 'p2')")
        result = store.add_gold([Item("p1", "pool ticket 1", "bug")])
        assert result.unchanged == 1
        assert store.db.execute("SELECT status FROM items WHERE id = 'p1'").fetchone()[0] == "gold"


def _samples(metrics: Metrics) -> dict[str, tuple[str, float]]:
    """Each unlabelled sample of the store's families: name -> (family type, value)."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if not sample.labels:
                found[sample.name] = (family.type, sample.value)
    return found


def test_metrics_counters_never_fall_when_items_are_deleted(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item(f"i{n}", f"ticket {n}") for n in range(3)], "import")
        for n in range(3):
            store.record_post(f"i{n}", "C1", f"1.{n}", "uncertain", None, None, None)
            store.record_answer(f"i{n}", "U1", "billing", source="button", dedupe_key=f"k{n}")
        metrics = Metrics(lambda: store)
        before = _samples(metrics)
        store.delete_items(["i0", "i1"], user_id="dpo")
        after = _samples(metrics)
    fell = [
        name
        for name, (kind, value) in before.items()
        if kind == "counter" and after.get(name, (kind, 0))[1] < value
    ]
    assert not fell, f"counters that went down after a delete: {fell}"
    # the rows stored now, as gauges
    assert before["hitl_answers"] == ("gauge", 3) and after["hitl_answers"] == ("gauge", 1)
    assert before["hitl_posts"] == ("gauge", 3) and after["hitl_posts"] == ("gauge", 1)
