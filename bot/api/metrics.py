"""Prometheus metrics for ``GET /metrics``: one registry per app, so tests stay independent.

Counts that live in the database (items by status, answers, posts, webhook deliveries,
retrain runs and their durations) are read from the store at scrape time. API requests and
their latencies are counted by the API middleware. ``SLACK_API_ERRORS`` counts every Slack
Web API call that fails, by method and error: the Web API client (``bot.runtime.make_client``)
tells it of each, after its retries (``SLACK_ERROR_LISTENERS``)::

    hitl_slack_api_errors_total{method="chat.postEphemeral",error="ratelimited"}

It counts for the whole process (a Slack error is not one app's) and every app's registry
shows it.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

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

from bot.runtime import SLACK_ERROR_LISTENERS
from bot.store.memory import sqlite_memory_bytes

if TYPE_CHECKING:
    from bot.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


class StoreCollector:
    """Reads the database's counts at scrape time (on the event loop's thread, as the store
    requires). ``get_store`` returns None before the app has started: nothing is reported."""

    def __init__(self, get_store: Callable[[], Store | None]):
        self.get_store = get_store

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        store = self.get_store()
        if store is None:
            return
        items = GaugeMetricFamily("hitl_items", "Items by status", labels=["status"])
        for status, n in sorted(store.count_items().items()):
            items.add_metric([status], n)
        yield items
        yield CounterMetricFamily(
            "hitl_answers",
            "Answers stored (clicks, selects, skips, imports)",
            value=store.count_answers(),
        )
        counts = store.metrics_counts()
        yield CounterMetricFamily("hitl_posts", "Questions posted to Slack", value=counts["posts"])
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
        under_way: dict[str, int] = {}
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
        yield fsyncs


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
    promotion it climbs by the number of waiting items while the queue is re-scored."""

    def __init__(self, get_scored: Callable[[], int | None]):
        self.get_scored = get_scored

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        scored = self.get_scored()
        if scored is not None:
            yield CounterMetricFamily(
                "hitl_items_scored", "Predictions written since the server started", scored
            )


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
            value=gc.get_freeze_count(),
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
        self.registry.register(SLACK_API_ERRORS)
        self.registry.register(StoreCollector(get_store))
        self.registry.register(ModelCollector(get_roles))
        self.registry.register(ScoringCollector(get_scored))
        self.registry.register(MemoryCollector())
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds

    def render(self) -> bytes:
        """The Prometheus text exposition of everything above."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)  # the app's Metrics, set by bot.api.routes.add_routes
