"""A /metrics scrape reads the count of objects frozen at start, kept when they were frozen:
``gc.get_freeze_count()`` walks every frozen object (17-19 ms of the event loop per scrape with
~160,000 of them, an outside test at a million items), and the count does not change after."""

from __future__ import annotations

import gc

import pytest

from bot.api import metrics


def test_a_scrape_does_not_walk_the_frozen_objects(monkeypatch: pytest.MonkeyPatch):
    kept = [[n] for n in range(2_000)]  # tracked containers, frozen with the rest
    try:
        metrics.freeze()
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)

        def walked() -> int:
            raise AssertionError("a scrape walked the frozen objects (gc.get_freeze_count)")

        monkeypatch.setattr(gc, "get_freeze_count", walked)
        [gauge] = [
            m
            for m in metrics.MemoryCollector().collect()
            if m.name == "hitl_python_gc_frozen_objects"
        ]
        assert gauge.samples[0].value == frozen
    finally:
        gc.unfreeze()  # the rest of this worker's tests as before
