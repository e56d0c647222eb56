"""Labels are ordered by when they were written, whatever the wall clock said (m034's count of
label writes): a clock that ran ahead when a champion was trained, then fixed, stamped every
later label before the champion's newest one. The next retrain said "0 new", its gate refitted
the champion with the new labels (comparing the candidate with itself), corrections were
"nothing new", and a refresh did not count them (outside test of the clocks)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Settings
from bot.learning import retrain
from bot.store import LabelMark, Store
from model import ModelRegistry
from tests.bot.harness import Item
from tests.bot.test_gate_gold import LABELS, SWAP, swapped_batch, tickets

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")


class Clock:
    """The store's clock, set by the test: a day ahead, until it is fixed."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> str:
        self.now += timedelta(milliseconds=5)
        return self.now.isoformat(timespec="milliseconds")


async def first_model(store: Store, settings: Settings, registry: ModelRegistry) -> None:
    """v1, promoted, on the labels stored."""
    v1 = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
    assert v1.status == "promoted"


def give_up(store: Store, plan: retrain.Plan) -> None:
    """End a retrain ``begin`` started and a test only looked at."""
    store.finish_run(plan.run_id, "failed", {})
    store.release_lock(retrain.LOCK, plan.owner)


async def test_labels_given_after_a_clock_that_ran_ahead_is_fixed_are_new_to_the_gate(
    tmp_path: Path,
):
    first, _gold, batch, settings, registry = swapped_batch(tmp_path)
    clock = Clock()
    with Store.open(settings.db, clock=clock) as store:
        store.add_items(first, "import")
        await first_model(store, settings, registry)
        clock.now -= timedelta(days=1)  # NTP fixes the clock
        store.add_items(batch, "import")  # two labels swapped
        champion = retrain.load_champion(registry)
        plan = retrain.begin(store, settings, registry, triggered_by="cli")
        assert isinstance(plan, retrain.Plan)
        assert (plan.n_new, sum(plan.champion_mask)) == (len(batch), len(first))
        v2 = await retrain.retrain(
            store, settings, registry, champion=champion, triggered_by="cli", plan=plan
        )
    # the gate compared the champion as it was (its 60 labels, not refitted with the swapped
    # ones: that refit scored as the candidate did, "0.859→0.859")
    assert v2.n_new == len(batch)
    before, after = v2.reason.split("macro-F1 ")[1].split(" on the same")[0].split("→")
    assert float(before) < float(after) - 0.1, v2.reason


async def test_corrections_after_the_clock_stepped_back_are_something_new(tmp_path: Path):
    first, _gold, _batch, settings, registry = swapped_batch(tmp_path)
    clock = Clock()
    with Store.open(settings.db, clock=clock) as store:
        store.add_items(first, "import")
        await first_model(store, settings, registry)
        clock.now -= timedelta(hours=1)
        for item in first[:10]:
            store.set_label(item.id, SWAP.get(item.label, "praise"), user_id="U0ADMIN")
        champion = retrain.load_champion(registry)
        plan = retrain.begin(store, settings, registry, triggered_by="cli")
        assert isinstance(plan, retrain.Plan), plan.reason  # not "nothing new"
        assert plan.n_new == 10
        refresh = retrain.begin_refresh(store, settings, registry, champion)
        assert refresh.since_champion == 10
        give_up(store, plan)


def test_a_restored_database_counting_from_less_still_finds_labels_by_time(tmp_path: Path):
    """A database restored from an older backup counts label writes again from fewer than a
    model of the newer one read: labels written since are newer by their time."""
    clock = Clock()
    rng = random.Random(1)
    with Store.open(tmp_path / "hitl.db", clock=clock) as store:
        store.add_items(tickets(rng, "a", 3, set()), "import")
        read = LabelMark(seq=store.labels_watermark()["seq"] + 50, at=clock())
        store.add_items(tickets(rng, "b", 1, set()), "import")
        assert store.labels_after(read) == {f"b{label}0" for label in LABELS}
        assert store.labels_after(LabelMark(at=read.at)) == store.labels_after(read)


def test_m034_numbers_the_labels_of_an_older_database_by_their_time(tmp_path: Path):
    db = tmp_path / "hitl.db"
    clock = Clock()
    with Store.open(db, clock=clock) as store:
        store.add_items([Item(f"t{n}", f"ticket number {n}", "bug") for n in range(3)], "import")
        clock.now -= timedelta(hours=2)  # the newest label first, by time
        store.add_items([Item("old", "an older ticket", "billing")], "import")
        # as the database was before m034
        for trigger in ("label_clock_insert", "label_clock_update"):
            store.db.execute(f"DROP TRIGGER {trigger}")
        store.db.execute("DROP TABLE label_clock")
        store.db.execute("DROP INDEX labels_seq")
        store.db.execute("ALTER TABLE labels DROP COLUMN seq")
        store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm034_label_seq'")
    with Store.open(db, clock=clock) as store:
        order = store.db.execute("SELECT item_id FROM labels ORDER BY seq").fetchall()
        assert [row[0] for row in order] == ["old", "t0", "t1", "t2"]
        assert store.labels_watermark()["seq"] == 4
        store.set_label("t0", "billing", user_id="U0ADMIN")  # a write: counted on
        assert store.labels_after(LabelMark(seq=4, at="~")) == {"t0"}
        assert store.labels_watermark()["seq"] == 5


def test_rejections_after_the_clock_was_set_right_count_since_the_champion(tmp_path: Path):
    """The report's "rejected N in a row since the champion was made": a promotion stamped by
    a clock a day ahead stayed the newest by time, so the rejections after it was set right
    (and a rollback then) counted none."""
    clock = Clock()
    with Store.open(tmp_path / "hitl.db", clock=clock) as store:
        store.finish_run(store.start_run("retrain", "cli"), "promoted", {})  # a day ahead
        clock.now -= timedelta(days=1)
        for _ in range(2):
            store.finish_run(store.start_run("retrain", "cli"), "rejected", {})
        assert store.rejected_in_a_row()[0] == 2
        store.finish_run(store.start_run("rollback", "cli"), "ok", {})
        store.finish_run(store.start_run("retrain", "cli"), "rejected", {})
        count, since = store.rejected_in_a_row()
        assert count == 1 and since is not None and since < clock()


def as_before_m034(store: Store, registry: ModelRegistry) -> None:
    """The state an upgrade leaves: m034 began counting label writes now (``start``), and the
    last run's watermark and the champion's metadata, written before, have no count."""
    store.db.execute("UPDATE label_clock SET start = n")
    run_id, detail = store.db.execute(
        "SELECT id, detail FROM runs WHERE kind = 'retrain' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    before = json.loads(detail)
    del before["watermark"]["seq"]
    store.db.execute("UPDATE runs SET detail = ? WHERE id = ?", [json.dumps(before), run_id])
    champion = registry.champion()
    path = registry.root / f"v{champion.version}.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    del meta["extra"]["label_seq"]
    path.write_text(json.dumps(meta), encoding="utf-8")


async def test_the_first_retrain_after_the_upgrade_with_nothing_new_is_nothing_new(
    tmp_path: Path,
):
    """A run recorded before m034 has no label count in its watermark: the first retrain after
    the upgrade was never "nothing new" and trained (and was judged) on the same labels."""
    first, _gold, _batch, settings, registry = swapped_batch(tmp_path)
    with Store.open(settings.db) as store:
        store.add_items(first, "import")
        await first_model(store, settings, registry)
        as_before_m034(store, registry)
        again = await retrain.retrain(
            store, settings, registry, champion=retrain.load_champion(registry), triggered_by="x"
        )
        assert again.status == "nothing_new", again.reason


async def test_after_the_upgrade_a_correction_stamped_before_the_newest_label_is_new(
    tmp_path: Path,
):
    """The clock ran a day ahead at yesterday's last retrain; after the upgrade it is set right
    and a label corrected: every retrain said "nothing new" (the run from before the count was
    taken to have seen today's count) until another label was written (outside upgrade test)."""
    first, _gold, _batch, settings, registry = swapped_batch(tmp_path)
    clock = Clock()
    with Store.open(settings.db, clock=clock) as store:
        store.add_items(first, "import")
        await first_model(store, settings, registry)
        as_before_m034(store, registry)
        clock.now -= timedelta(days=1)
        store.set_label(first[0].id, "praise", user_id="U0ADMIN")
        plan = retrain.begin(store, settings, registry, triggered_by="x")
        assert isinstance(plan, retrain.Plan), plan.reason  # not "nothing new"
        assert plan.n_new == 1
        give_up(store, plan)


async def test_labels_given_after_the_upgrade_are_new_to_a_champion_from_before_it(
    tmp_path: Path,
):
    """Yesterday's champion has no count in its metadata: labels imported after the upgrade
    with times before its newest (an export's rows keep theirs) were "0 new", and the gate
    compared the champion with itself (outside upgrade test)."""
    first, _gold, batch, settings, registry = swapped_batch(tmp_path)
    clock = Clock()
    with Store.open(settings.db, clock=clock) as store:
        store.add_items(first, "import")
        await first_model(store, settings, registry)
        as_before_m034(store, registry)
        clock.now -= timedelta(days=1)
        store.add_items(batch[:20], "import")
        plan = retrain.begin(store, settings, registry, triggered_by="x")
        assert isinstance(plan, retrain.Plan)
        assert (plan.n_new, sum(plan.champion_mask)) == (20, len(first))
        champion = retrain.load_champion(registry)
        assert retrain.begin_refresh(store, settings, registry, champion).since_champion == 20
        give_up(store, plan)
