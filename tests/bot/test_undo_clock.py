"""Undo and an admin's change when the wall clock steps back between the two (NTP): the change
is stamped before the decision, and still counts as made after it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace as R

import pytest

from bot.store import Store

UNDO_WINDOW = timedelta(minutes=10)  # bot/slack/app.py


class Clock:
    """The store's clock, set by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)

    def __call__(self) -> str:
        return self.now.isoformat(timespec="milliseconds")

    def since(self) -> str:
        """The start of the Undo window, as the Undo listener computes it."""
        return (self.now - UNDO_WINDOW).isoformat(timespec="milliseconds")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Iterator[Store]:
    with Store.memory(clock=clock) as store:
        store.add_items([R(id="T1", text="charged twice", label=None, meta={})], "import")
        store.record_post("T1", "C1", "1.1", "uncertain", None, None, None)
        decided = store.record_answer("T1", "U0ANA", "billing", source="button", dedupe_key="k1")
        assert decided.status == "resolved"  # at 15:00:00
        clock.now -= timedelta(minutes=2)  # the clock steps back
        clock.now += timedelta(seconds=30)  # the admin's change is stamped 14:58:30
        yield store


def test_undo_after_the_clock_stepped_back_keeps_the_label_an_admin_confirmed(
    store: Store, clock: Clock
):
    assert store.set_label("T1", "billing", user_id="U0ADMIN", reason="checked").confirmed
    clock.now += timedelta(seconds=30)
    undone = store.undo_resolution("T1", "U0ANA", clock.since())
    assert (undone.refused, undone.changed_by, undone.kept) == ("changed", "U0ADMIN", True)
    assert store.resolution("T1")["label"] == "billing"  # the admin's decision stands
    assert store.get_item("T1")["status"] == "resolved"


def test_undo_after_the_clock_stepped_back_says_who_changed_the_label(store: Store, clock: Clock):
    store.set_label("T1", "bug", user_id="U0ADMIN", reason="it is a bug")
    clock.now += timedelta(seconds=30)
    undone = store.undo_resolution("T1", "U0ANA", clock.since())
    # Not "late": the window has not passed; someone else changed the label.
    assert (undone.refused, undone.changed_by, undone.kept, undone.label) == (
        "changed",
        "U0ADMIN",
        False,
        "bug",
    )
    assert store.resolution("T1")["label"] == "bug"


def test_a_gold_label_changed_before_the_question_was_asked_does_not_refuse_the_undo(
    clock: Clock,
):
    with Store.memory(clock=clock) as store:
        store.add_gold([R(id="G1", text="gold text", label="billing", meta={})])
        store.set_label("G1", "bug", user_id="U0ADMIN")  # its gold label, before it is asked
        clock.now += timedelta(minutes=1)
        store.record_post("G1", "C1", "1.1", "gold", None, None, None)
        assert store.record_answer("G1", "U0ANA", "bug", source="button", dedupe_key="k").label
        undone = store.undo_resolution("G1", "U0ANA", clock.since())
        assert undone and undone.label == "bug"
        assert store.get_item("G1")["status"] == "posted"
