"""A refresh reads the resolved count, the labels and those given since the champion in one
read transaction. They were separate statements: an answer stored between the count and the
labels (a click while the refresh's worker thread read) made the labels since the champion one
more than the count allowed, so the trainer's count of labels the champion was fitted at came
out one low and the next refresh came a label early (seen as a flaky test_fit_oom)."""

from __future__ import annotations

import random
from pathlib import Path

from bot.learning import retrain
from bot.store import Store
from tests.bot.harness import Item
from tests.bot.test_gate_gold import swapped_batch, tickets
from tests.bot.test_label_clock import first_model


async def test_an_answer_stored_while_a_refresh_reads_is_not_half_seen(tmp_path: Path):
    first, _gold, batch, settings, registry = swapped_batch(tmp_path)
    late = tickets(random.Random(9), "late", 1, {i.text for i in first + batch})
    with Store.open(settings.db) as store:
        store.add_items(first, "import")
        await first_model(store, settings, registry)
        store.add_items(batch[:5], "import")
        champion = retrain.load_champion(registry)

        def plan_with_an_answer_after_the_count() -> retrain.RefreshPlan:
            """begin_refresh on a connection of its own, with one more labelled item
            committed by the other connection just after the resolved count was read."""
            counted = []

            def trace(statement: str) -> None:
                if counted == [True]:  # the statement after the count: one more label first
                    counted.append(False)
                    store.add_items([Item(late[0].id, late[0].text, late[0].label)], "import")
                if not counted and "FROM item_counts" in statement:
                    counted.append(True)

            with Store.open(settings.db) as reader:
                reader.db.conn.set_trace_callback(trace)
                try:
                    return retrain.begin_refresh(reader, settings, registry, champion)
                finally:
                    reader.db.conn.set_trace_callback(None)

        plan = plan_with_an_answer_after_the_count()
        # the late label was committed while the refresh read: it is in none of its figures
        assert store.count_items()["resolved"] == len(first) + 6
    assert plan.resolved == len(first) + 5
    assert plan.n_read == len(first) + 5
    assert plan.since_champion == 5
    assert plan.resolved - plan.since_champion == len(first)  # what the champion was fitted at
