"""GET /metrics reads the database's counts off the event loop, one read for a crowd of scrapes.

Some of the counts are scans that grow with the history (1M posts and 1M answers: ~140 ms);
read on the event loop, a flood of unauthenticated scrapes held Slack's acks past their 3 s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.api.metrics import METRICS, Metrics
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.test_api import start_api
from tests.bot.test_api_metrics import scrape


class Gate:
    """Records the thread of every ``Store.metrics_counts`` (only /metrics calls it); a call
    off the event loop's thread waits, once ``hold``, until ``open`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: bool = False):
        self.threads: list[threading.Thread] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        if not hold:
            self.open.set()
        loop_thread = threading.current_thread()
        counts = Store.metrics_counts

        def recorded(store: Store) -> dict[str, Any]:
            self.threads.append(threading.current_thread())
            self.entered.set()
            if threading.current_thread() is not loop_thread:  # never block the loop itself
                self.open.wait()
            return counts(store)

        monkeypatch.setattr(Store, "metrics_counts", recorded)


async def test_a_scrape_reads_the_database_off_the_event_loop(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    async for bot in start_api(fake_slack, tmp_path):
        bot.store.start_run("retrain")
        loop_thread = threading.current_thread()
        gate = Gate(monkeypatch, hold=True)
        scraping = asyncio.create_task(bot.http.get("/metrics"))
        assert await asyncio.to_thread(gate.entered.wait, 60)  # bounds a failing test only
        assert loop_thread not in gate.threads, f"read on the event loop's thread {gate.threads}"
        # the read is under way, held in its thread: the loop still answers other requests
        assert (await bot.http.get("/healthz")).status in (200, 503)
        assert not scraping.done()
        gate.open.set()
        response = await scraping
        assert response.status == 200
        assert 'hitl_runs_running{kind="retrain"} 1.0' in await response.text()  # as stored


def open_at(metrics: Metrics, crowd: int, gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    """Open ``gate`` once ``crowd`` scrapes have come: all of them while the first one reads."""
    called = 0
    shared = getattr(type(metrics), "scrape", None)
    if shared is None:  # a server that reads on the event loop: the gate never holds it
        return

    async def counted() -> bytes:
        nonlocal called
        called += 1
        if called == crowd:
            gate.open.set()
        return await shared(metrics)

    monkeypatch.setattr(metrics, "scrape", counted, raising=False)


async def test_scrapes_that_come_while_one_reads_share_its_read(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    async for bot in start_api(fake_slack, tmp_path):
        gate = Gate(monkeypatch, hold=True)
        crowd = 8
        open_at(bot.http.server.app[METRICS], crowd, gate, monkeypatch)
        responses = await asyncio.gather(*(bot.http.get("/metrics") for _ in range(crowd)))
        assert [r.status for r in responses] == [200] * crowd
        assert len(gate.threads) == 1, f"{len(gate.threads)} reads for {crowd} scrapes"
        assert len({await r.text() for r in responses}) == 1  # one render, sent to each
        # once done, the next scrape reads afresh
        bot.store.start_run("retrain")
        assert (await scrape(bot))[("hitl_runs_running", (("kind", "retrain"),))] == 1
        assert len(gate.threads) == 2


async def test_a_lost_database_file_leaves_its_counts_out_of_the_scrape(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    async for bot in start_api(fake_slack, tmp_path):
        assert ("hitl_items", (("status", "new"),)) in await scrape(bot)
        bot.store.path.rename(tmp_path / "moved.db")  # a cleanup script moved it away
        with caplog.at_level(logging.WARNING, logger="bot.api.metrics"):
            first, second = await scrape(bot), await scrape(bot)
        for samples in (first, second):  # the server's own figures are still there
            assert not [key for key in samples if key[0] == "hitl_items"]
            assert samples[("process_resident_memory_bytes", ())] > 0
        said = [r.getMessage() for r in caplog.records if r.name == "bot.api.metrics"]
        assert len(said) == 1 and "leaves out the database's counts" in said[0], said
