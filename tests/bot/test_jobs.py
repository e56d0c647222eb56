"""The learning jobs inside `hitl serve` keep the event loop free: what grows with the labels
is read in a worker thread on a connection of its own (traced here by SQLite itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.learning.jobs import Trainer, run_retrain
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, labeled_items, retrain_told


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), max_open=2)
    async for running in start_bot(fake_slack, settings):
        yield running


def reads_of_the_labels(statements: list[str]) -> list[str]:
    """The statements of ``retrain.begin`` that read every label: the training data and the
    watermark (both grow with the labels)."""
    return [
        sql
        for sql in statements
        if ("FROM labels l" in sql and "JOIN items" in sql) or "max(resolved_at) FROM labels" in sql
    ]


async def test_a_retrain_reads_its_labels_off_the_event_loops_connection(bot: Bot):
    on_the_loop: list[str] = []
    bot.store.db.conn.set_trace_callback(on_the_loop.append)
    try:
        assert (await retrain_told(bot))[1] == []  # /hitl retrain: it began
        first = await Trainer.of(bot.rt).task
        second = await run_retrain(bot.rt, "cli", force=True)  # the nightly job's way in
    finally:
        bot.store.db.conn.set_trace_callback(None)
    assert (first.status, first.n_labels, second.status) == ("promoted", 12, "promoted")
    assert [r["status"] for r in bot.store.runs("retrain")] == ["promoted", "promoted"]
    assert on_the_loop  # the trace works: the outcome was recorded on the loop's connection
    assert reads_of_the_labels(on_the_loop) == []
