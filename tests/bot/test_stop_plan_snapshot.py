"""``read_stop_plan`` reads the stop set, the counts, its items' flags (still without a label),
the earlier predictions and the asked answers in one read transaction (``Store.snapshot``, as
a refresh reads its labels since c28229d). They were separate statements: a commit by another
connection between two of them (a label, a stop set drawn again) gave a plan whose flags were
of another moment than its items, or of another stop set (30 items, 5 flags). A draw writes:
it is made between two read transactions, and the plan read again after it. With nothing
drawn, the flags are read once (they were read twice).

The commits are made from a second connection at a chosen statement of the reader's
(``set_trace_callback``, as in test_refresh_snapshot), so the interleaving is the test's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.learning.stopping import StopPlan, read_stop_plan
from bot.store import Store
from tests.bot.harness import Item, seed

STOP_SET_READ = "SELECT s.draw, s.item_id"  # Store.stop_set
FLAGS_READ = "SELECT i.status IN"  # Store.stop_set_unlabeled


def items(tmp_path: Path) -> Path:
    seed(tmp_path / "hitl.db", [Item(f"i{n:02d}", f"text {n}") for n in range(30)])
    return tmp_path / "hitl.db"


def plan_with(db: Path, commit: Callable[[], None], seen: list[str] | None = None) -> StopPlan:
    """``read_stop_plan`` on a connection of its own, with ``commit()`` run (by another
    connection) as the statement after the stop set's first read starts; ``seen`` gets the
    statements it ran."""
    state: list[bool] = []

    def trace(statement: str) -> None:
        if seen is not None:
            seen.append(statement)
        if state == [True]:  # the statement after the stop set's read: the other commit first
            state.append(False)
            commit()
        if not state and STOP_SET_READ in statement:
            state.append(True)

    with Store.open(db) as reader:
        reader.db.conn.set_trace_callback(trace)
        try:
            return read_stop_plan(reader)
        finally:
            reader.db.conn.set_trace_callback(None)


def test_a_label_committed_while_the_plan_is_read_is_not_half_seen(tmp_path: Path):
    db = items(tmp_path)
    with Store.open(db) as store:
        first = read_stop_plan(store)  # draws the set: the 30 items
        assert first.draw == 1 and first.unlabeled == [True] * 30
        ids = first.ids
        assert ids is not None
        seen: list[str] = []

        def label_one() -> None:
            store.set_label(ids[0], "billing", user_id="U1")

        plan = plan_with(db, label_one, seen)
        assert not store.stop_set_unlabeled()[0]  # committed
    # the plan is the view before the label: its flags and its items agree
    assert (plan.draw, plan.ids) == (1, ids)
    assert plan.unlabeled == [True] * 30
    # nothing drawn: the flags were read once
    assert sum(FLAGS_READ in statement for statement in seen) == 1


def test_a_stop_set_drawn_again_while_the_plan_is_read_does_not_mix_with_it(tmp_path: Path):
    db = items(tmp_path)
    with Store.open(db) as store:
        first = read_stop_plan(store)
        ids = first.ids
        assert ids is not None
        plan = plan_with(db, lambda: store.draw_stop_set(ids[:5]))
        # the other connection's draw is in, and no third: the old code read the new set's 5
        # flags against its 30 items, took most of them for labelled, and drew again
        assert store.stop_set()[0] == 2
    # the set as it was at the plan's first read, with its own 30 flags (not the new set's 5)
    assert (plan.draw, plan.ids, len(plan.texts)) == (1, ids, 30)
    assert plan.unlabeled == [True] * 30


def test_a_draw_is_made_outside_the_snapshot_and_the_plan_read_again_after_it(tmp_path: Path):
    """Guard (passes on the old code too): the draw path writes; a snapshot held across it
    would be refused (another connection committed since it began: SQLITE_BUSY_SNAPSHOT).
    The plan is read again after the draw: its flags are the drawn set's, the label committed
    before the draw in them."""
    db = items(tmp_path)
    with Store.open(db) as store:
        plan = plan_with(db, lambda: store.set_label("i00", "billing", user_id="U1"))
        draw, drawn = store.stop_set()
        flags = store.stop_set_unlabeled()
    assert plan.draw == draw == 1
    assert plan.ids == [item_id for item_id, _ in drawn] and len(plan.ids) >= 29
    assert plan.unlabeled == flags
    assert flags == [item_id != "i00" for item_id in plan.ids]
