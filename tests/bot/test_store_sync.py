"""Group commit: answers are committed without an fsync on the event loop, and the callers
that wait for the disk at the same moment share one fsync of the log, in a worker thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot import eventloop
from bot.store import Store
from tests.bot.harness import Item, seed


async def test_callers_waiting_for_the_disk_at_once_share_one_fsync(tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text {n}") for n in range(20)])
    with Store.open(tmp_path / "hitl.db") as store:
        for n in range(20):
            with store.synced_later():
                store.record_answer(
                    f"i{n}", "U0ANA", "billing", source="button", dedupe_key=f"k{n}"
                )
        acks = [  # in the fast lane, as the Slack edge's acks are
            asyncio.create_task(store.synced(), context=eventloop.urgent_context())
            for _ in range(20)
        ]
        await asyncio.gather(*acks)
        assert store.wal_sync.n_syncs == 1  # twenty commits, one fsync
        await store.synced()  # a later caller gets a fsync of its own
        assert store.wal_sync.n_syncs == 2
        assert store.count_answers() == 20


async def test_a_store_in_memory_has_no_log_to_sync():
    with Store.memory() as store:
        await store.synced()
        assert store.wal_sync.n_syncs == 1  # nothing to flush: done at once
