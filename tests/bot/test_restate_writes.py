"""The pass that puts the stored predictions under the label set in force after a change
(``Store.restate_predictions``) writes an item's status only when it moves: a status is in four
of the items' indexes, and writing it for each moved item (a rename moves none) rewrote those
entries too: 51,000 items a rename of a twentieth of a million, most of the pass's minute.
Seen by a temporary trigger that SQLite fires for each row whose status is written."""

from __future__ import annotations

from collections.abc import Callable

from bot.labelset import restate_all
from bot.store import Store
from tests.bot.harness import Item

THRESHOLD = 0.8
GUESSES = {
    "i0": [["bill", 0.9], ["bug", 0.06], ["other", 0.04]],  # auto
    "i1": [["bill", 0.85], ["bug", 0.1], ["other", 0.05]],  # auto
    "i2": [["bill", 0.5], ["bug", 0.4], ["other", 0.1]],  # queued
    "i3": [["bug", 0.9], ["bill", 0.06], ["other", 0.04]],  # auto, bug: no change moves it
}


def scored(store: Store) -> None:
    store.add_items([Item(item, f"text {item}") for item in GUESSES], "import")
    store.set_predictions(
        [(item, 1, g[0][0], g[0][1], g, 1 - g[0][1]) for item, g in GUESSES.items()],
        THRESHOLD,
        "least_confidence",
    )


def statuses_written(store: Store, call: Callable[[], object]) -> list[str]:
    """The items whose status ``call`` writes (moved or not), in order."""
    store.db.execute("CREATE TEMP TABLE written (item_id TEXT)")
    store.db.execute(
        "CREATE TEMP TRIGGER status_written AFTER UPDATE OF status ON main.items"
        " BEGIN INSERT INTO written VALUES (new.id); END"
    )
    try:
        call()
        return [row[0] for row in store.db.execute("SELECT item_id FROM written ORDER BY 1")]
    finally:
        store.db.execute("DROP TRIGGER temp.status_written")
        store.db.execute("DROP TABLE temp.written")


def predictions(store: Store) -> dict[str, tuple[str, float, str]]:
    rows = store.db.execute("SELECT id, predicted_label, confidence, status FROM items")
    return {item: (label, confidence, status) for item, label, confidence, status in rows}


def test_a_renames_pass_gives_the_new_name_and_writes_no_status(memory_store: Store):
    store = memory_store
    scored(store)
    store.change_label_set(
        "rename", "bill", "billing", current=["bill", "bug", "other"], user_id="U0ADMIN"
    )
    assert statuses_written(store, lambda: restate_all(store, THRESHOLD)) == []  # old: i0-i2
    assert predictions(store) == {
        "i0": ("billing", 0.9, "auto"),
        "i1": ("billing", 0.85, "auto"),
        "i2": ("billing", 0.5, "queued"),
        "i3": ("bug", 0.9, "auto"),
    }


def test_a_retires_pass_writes_only_the_statuses_that_move(memory_store: Store):
    """bill retired: i0 and i1, left to the model with it, wait for people (bug at 0.06 and
    0.1); i2 waited already (bug at 0.4): its label moves, its status stays."""
    store = memory_store
    scored(store)
    store.change_label_set("retire", "bill", current=["bill", "bug", "other"], user_id="U0ADMIN")
    written = statuses_written(store, lambda: restate_all(store, THRESHOLD))
    assert written == ["i0", "i1"]  # old: i0, i1, i2
    assert predictions(store) == {
        "i0": ("bug", 0.06, "queued"),
        "i1": ("bug", 0.1, "queued"),
        "i2": ("bug", 0.4, "queued"),
        "i3": ("bug", 0.9, "auto"),
    }
    assert store.count_items()["queued"] == 3  # the per-status counts follow (a trigger)
    assert restate_all(store, THRESHOLD) == 0  # a second pass finds nothing to move
