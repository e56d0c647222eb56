"""Prometheus metrics for ``GET /metrics``: one registry per app, so tests stay independent.

Counts that live in the database (items by status, answers, posts, webhook deliveries,
retrain runs and their durations) are read at scrape time in a worker thread, on a connection
of their own (``Store.apart``): some are scans that grow with the history (1M posts and 1M
answers: ~140 ms), which on the event loop held every Slack ack behind them. Scrapes that
arrive while one is being read wait for it and share its answer (``Metrics.scrape``), so a
flood of them runs one read at a time and renders once per read. API requests and
their latencies are counted by the API middleware. ``SLACK_API_ERRORS`` counts every Slack
Web API call that fails, by method and error: the Web API client (``bot.runtime.make_client``)
tells it of each, after its retries (``SLACK_ERROR_LISTENERS``)::

    hitl_slack_api_errors_total{method="chat.postEphemeral",error="ratelimited"}

It counts for the whole process (a Slack error is not one app's) and every app's registry
shows it.

The answers and posts stored (``hitl_answers``, ``hitl_posts``) are gauges, not counters:
they are the rows there are now, and deleting items (`hitl delete`) takes rows away, which a
counter would show as a reset.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from bot import eventloop
from bot.errors import StoreError
from bot.runtime import SLACK_ERROR_LISTENERS
from bot.store.memory import sqlite_memory_bytes

if TYPE_CHECKING:
    from bot.store import Store

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The kinds of run the store records (``Store.start_run``): each has a hitl_runs_running series.
RUN_KINDS = ("import", "retrain", "rollback")

SLACK_API_ERRORS = Counter(
    "hitl_slack_api_errors",
    "Slack Web API calls that failed, by method and error",
    ["method", "error"],
    registry=None,
)


def count_slack_error(method: str, error: str | None) -> None:
    """Count one failed Slack Web API call (``error``: Slack's code or the exception's name)."""
    SLACK_API_ERRORS.labels(method, error or "unknown").inc()


# Every client ``make_client`` builds counts its calls' failures here, whatever the method.
SLACK_ERROR_LISTENERS.append(count_slack_error)


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


GOLD_HELD_BACK = "gold_held_back"  # ``hitl_items``' status of the gold questions held back


def read_counts(store: Store) -> dict[str, Any]:
    """The database's counts a scrape reports, in the thread ``store`` belongs to: items by
    status, answers, and ``Store.metrics_counts`` (posts, open posts, deliveries, runs).
    Items by status as `hitl stats` shows them (``Store.count_items_shown``, every status, 0
    when none): those decided with a label since retired are ``label_retired``, not
    ``resolved``, and the gold questions held back while their gold label is retired
    (``Store.gold_held_back``: not waiting, not asked until it is added back) are
    ``GOLD_HELD_BACK``, not ``gold``. Both read in one snapshot; the held ones are few (0
    without reading a gold item while no label is retired)."""
    with store.snapshot():
        items = store.count_items_shown()
        held = min(store.gold_held_back(), items["gold"])
    items["gold"] -= held
    items[GOLD_HELD_BACK] = held
    counts = {"items": items, "answers": store.count_answers()}
    return {**counts, **store.metrics_counts()}


def read_counts_apart(store: Store) -> dict[str, Any]:
    """``read_counts`` on a connection of its own (``Store.apart``), for a worker thread."""
    with store.apart() as apart:
        return read_counts(apart)


class StoreCollector:
    """Reports the database's counts and the write-ahead log's fsyncs. ``get_store`` returns
    None before the app has started: nothing is reported.

    The counts are the ones ``Metrics.scrape`` read off the event loop and handed over in
    ``counts`` for the render; ``{}`` when it could not read them (the file is lost): they are
    left out. Without any (``counts`` None: a render outside a scrape, or a store in memory,
    which has no file to open on another connection) they are read here, on the caller's
    thread."""

    def __init__(self, get_store: Callable[[], Store | None]):
        self.get_store = get_store
        self.counts: dict[str, Any] | None = None  # set by Metrics.render for one render

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        store = self.get_store()
        if store is None:
            return
        counts = self.counts if self.counts is not None else read_counts(store)
        if counts:
            yield from self._counted(counts)
        yield self._fsyncs(store)

    def _counted(self, counts: dict[str, Any]) -> Iterator[Metric]:
        items = GaugeMetricFamily(
            "hitl_items",
            "Items by status (label_retired: decided with a label since retired, waiting in"
            " review for a label in force, not resolved; gold_held_back: gold questions held"
            " back while their gold label is retired, not gold)",
            labels=["status"],
        )
        for status, n in sorted(counts["items"].items()):
            items.add_metric([status], n)
        yield items
        # Rows stored now, not events counted: deleting an item (`hitl delete`, an erasure
        # request) takes its answers and posts with it, so these fall. As counters they read as
        # resets (rate() and increase() then counted the whole total again): gauges, named
        # without ``_total``. A counter would need a count kept apart from the rows.
        yield GaugeMetricFamily(
            "hitl_answers",
            "Answer rows stored now (clicks, selects, skips, undos, late answers, imported"
            " labels); falls when items are deleted",
            value=counts["answers"],
        )
        yield GaugeMetricFamily(
            "hitl_posts",
            "Questions posted to Slack stored now (open and closed); falls when items are deleted",
            value=counts["posts"],
        )
        yield GaugeMetricFamily(
            "hitl_posts_open", "Questions in Slack still unanswered", value=counts["open_posts"]
        )
        deliveries = GaugeMetricFamily(
            "hitl_webhook_deliveries", "Webhook deliveries by status", labels=["status"]
        )
        for status in ("pending", "delivered", "failed", "cancelled"):
            deliveries.add_metric([status], counts["deliveries"].get(status, 0))
        yield deliveries
        # A run is counted in hitl_runs_total once it has ended, by its outcome: a counter
        # only grows. One under way is in the gauge hitl_runs_running (0 once none is), so a
        # run moving from running to promoted is not seen as a counter reset.
        runs = CounterMetricFamily(
            "hitl_runs",
            "Finished runs (retrain, ...) by kind and outcome",
            labels=["kind", "status"],
        )
        running = GaugeMetricFamily(
            "hitl_runs_running", "Runs (retrain, ...) under way, by kind", labels=["kind"]
        )
        durations = SummaryMetricFamily(
            "hitl_run_duration_seconds", "Durations of finished runs", labels=["kind"]
        )
        by_kind: dict[str, tuple[int, float]] = {}
        # Every kind a run is recorded under shows, 0 before its first run too: an alert or a
        # dashboard on `hitl_runs_running{kind="retrain"}` has a series from the first scrape.
        under_way: dict[str, int] = dict.fromkeys(RUN_KINDS, 0)
        for run in counts["runs"]:
            under_way.setdefault(run["kind"], 0)
            if run["status"] == "running":
                under_way[run["kind"]] += run["count"]
            else:
                runs.add_metric([run["kind"], run["status"]], run["count"])
            n, seconds = by_kind.get(run["kind"], (0, 0.0))
            by_kind[run["kind"]] = (n + run["finished"], seconds + run["seconds"])
        for kind, n_running in sorted(under_way.items()):
            running.add_metric([kind], n_running)
        for kind, (n, seconds) in sorted(by_kind.items()):
            durations.add_metric([kind], count_value=n, sum_value=seconds)
        yield runs
        yield running
        yield durations

    @staticmethod
    def _fsyncs(store: Store) -> Metric:
        sync = store.wal_sync
        fsyncs = HistogramMetricFamily(
            "hitl_wal_fsync_seconds",
            "fsyncs of the write-ahead log that acks waited for (in a worker thread)",
        )
        fsyncs.add_metric(
            [],
            [(str(b), n) for b, n in zip(sync.BUCKETS, sync.within, strict=True)]
            + [("+Inf", sync.timed)],
            sum_value=sync.seconds,
        )
        return fsyncs


class ModelCollector:
    """Which model does what, at scrape time: ``hitl_model_version{role}`` for the roles
    ``champion`` (the gated one), ``working`` (a refresh since, negative: minus the labels it
    read), ``asks`` (scores the queue) and ``answers`` (the producer API); a role with no model
    is left out. ``get_roles`` returns None before the app has started."""

    def __init__(self, get_roles: Callable[[], dict[str, int | None] | None]):
        self.get_roles = get_roles

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        roles = self.get_roles()
        if roles is None:
            return
        family = GaugeMetricFamily(
            "hitl_model_version",
            "Model version per role: champion, working (a refresh, negative), asks, answers",
            labels=["role"],
        )
        for role, version in roles.items():
            if version is not None:
                family.add_metric([role], version)
        yield family


class ScoringCollector:
    """``hitl_items_scored_total``: predictions the server has written since it started (the
    queue's walks after a new model, and the producer API's items). After a refresh or a
    promotion it climbs by the number of waiting items while the queue is re-scored.
    ``hitl_scoring_out_of_memory``: 1 while scoring cannot run for lack of memory (no
    question is posted meanwhile; the log and ``/healthz`` say why), else 0."""

    def __init__(
        self,
        get_scored: Callable[[], int | None],
        get_problem: Callable[[], str | None] = lambda: None,
    ):
        self.get_scored = get_scored
        self.get_problem = get_problem

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        scored = self.get_scored()
        if scored is not None:
            yield CounterMetricFamily(
                "hitl_items_scored", "Predictions written since the server started", scored
            )
            yield GaugeMetricFamily(
                "hitl_scoring_out_of_memory",
                "1 while scoring cannot run for lack of memory (no question is posted), else 0",
                value=int(self.get_problem() is not None),
            )


def freeze() -> None:
    """Move what start-up made out of the garbage collector's sight (``gc.freeze``), and count
    it once for ``hitl_python_gc_frozen_objects``: ``gc.get_freeze_count()`` walks every frozen
    object (17-19 ms of the event loop per scrape with ~160,000 of them), and the count does not
    change after start."""
    global _FROZEN
    gc.collect()
    gc.freeze()
    _FROZEN = gc.get_freeze_count()


_FROZEN = 0  # objects frozen at start (``freeze``); 0 before, or in a server that froze none


class MemoryCollector:
    """Where the server's memory goes: SQLite's own allocations (its page cache, bounded by
    ``PRAGMA cache_size``) and Python's allocated blocks. A leak shows as blocks that keep
    growing; a filling page cache as SQLite bytes that level off."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "hitl_python_gc_frozen_objects",
            "Objects moved out of the garbage collector's sight at start (gc.freeze)",
            value=_FROZEN,
        )
        yield GaugeMetricFamily(
            "hitl_python_allocated_blocks",
            "Memory blocks the Python allocator holds (sys.getallocatedblocks)",
            value=sys.getallocatedblocks(),
        )
        used = sqlite_memory_bytes()
        if used is not None:
            yield GaugeMetricFamily(
                "hitl_sqlite_memory_bytes",
                "Memory SQLite holds in this process (page cache included)",
                value=used,
            )


class Metrics:
    """One app's registry: API requests and latencies, the store's counts, which model
    asks and answers, Slack errors."""

    def __init__(
        self,
        get_store: Callable[[], Store | None],
        get_roles: Callable[[], dict[str, int | None] | None] = lambda: None,
        get_scored: Callable[[], int | None] = lambda: None,
        get_scoring_problem: Callable[[], str | None] = lambda: None,
    ):
        self.registry = CollectorRegistry()
        self.api_requests = Counter(
            "hitl_api_requests",
            "Producer API requests by route, method and HTTP status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "hitl_api_request_duration_seconds",
            "Producer API latency by route and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.get_store = get_store
        self.store_collector = StoreCollector(get_store)
        self.registry.register(SLACK_API_ERRORS)
        self.registry.register(self.store_collector)
        self.registry.register(ModelCollector(get_roles))
        self.registry.register(ScoringCollector(get_scored, get_scoring_problem))
        self.registry.register(MemoryCollector())
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds
        self._scraping: asyncio.Task[bytes] | None = None  # the scrape under way (``scrape``)
        self._lost: str | None = None  # why the counts were last left out, said once

    def render(self, counts: dict[str, Any] | None = None) -> bytes:
        """The Prometheus text exposition of everything above, with the database's ``counts``
        (``read_counts``; ``{}``: left out). Without them they are read here, on the caller's
        thread: ``scrape`` is what the server calls."""
        self.store_collector.counts = counts
        try:
            return generate_latest(self.registry)
        finally:
            self.store_collector.counts = None

    async def scrape(self) -> bytes:
        """``render`` with the database's counts read in a worker thread, on a connection of
        its own: the event loop does a render of a size that does not grow with the data. A
        scrape that arrives while another is reading waits for that one and gets its text: a
        flood of scrapes makes one read at a time, not one per request."""
        task = self._scraping
        if task is None:
            task = eventloop.background(self._scrape(), name="metrics scrape")
            self._scraping = task
            task.add_done_callback(self._scraped)
        return await asyncio.shield(task)  # a waiter that goes away leaves it to the others

    def _scraped(self, task: asyncio.Task[bytes]) -> None:
        if self._scraping is task:
            self._scraping = None
        if not task.cancelled():
            task.exception()  # its waiters were told; none left is no "never retrieved"

    async def _scrape(self) -> bytes:
        store = self.get_store()
        counts: dict[str, Any] | None = None
        if store is not None and store.path is not None:
            try:
                counts = await asyncio.to_thread(read_counts_apart, store)
            except StoreError as exc:  # the file is lost (deleted, replaced): /healthz says so
                if str(exc) != self._lost:
                    logger.warning("/metrics leaves out the database's counts: %s", exc)
                self._lost, counts = str(exc), {}
        return self.render(counts)


METRICS = web.AppKey("metrics", Metrics)  # the app's Metrics, set by bot.api.routes.add_routes
