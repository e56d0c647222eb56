"""GET /metrics (Prometheus text) and GET /healthz, through real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.api.metrics import SLACK_API_ERRORS
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot
from tests.bot.test_api import AUTH, T0, champion, classifier, post_json, start_api

__all__ = ["champion", "classifier"]  # fixtures shared with test_api.py


async def scrape(bot: Bot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = await bot.http.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def clock(*moments) -> Iterator[str]:
    return iter(m.isoformat(timespec="milliseconds") for m in moments)


async def test_metrics_report_items_answers_posts_api_requests_and_runs(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in start_api(fake_slack, tmp_path):
        for n in range(3):
            await post_json(bot, "/api/predict", {"text": f"item {n}", "id": f"i{n}"})
        await post_json(bot, "/api/predict", {"id": "no text"})
        await bot.http.post("/api/predict", json={"text": "x"})  # no token
        bot.store.record_answer("i0", "U1", "billing", source="button", dedupe_key="k1")
        bot.store.record_post("i1", "C1", "1.1", "uncertain", None, None, None)
        times = clock(T0, T0 + timedelta(seconds=42), T0, T0 + timedelta(seconds=8), T0)
        bot.store.now = times.__next__
        # before any run, each kind's gauge is there at 0, not missing: "0 when none"
        fresh = await scrape(bot)
        for kind in ("import", "retrain", "rollback"):
            assert fresh[("hitl_runs_running", (("kind", kind),))] == 0
        bot.store.finish_run(bot.store.start_run("retrain"), "promoted", {})
        bot.store.finish_run(bot.store.start_run("retrain"), "kept", {})
        bot.store.start_run("retrain")  # still running

        metrics = await scrape(bot)
        assert metrics[("hitl_items", (("status", "new"),))] == 1
        assert metrics[("hitl_items", (("status", "posted"),))] == 1
        assert metrics[("hitl_items", (("status", "resolved"),))] == 1
        assert metrics[("hitl_answers", ())] == 1  # gauges: rows stored now
        assert metrics[("hitl_posts", ())] == 1
        assert metrics[("hitl_posts_open", ())] == 1
        predict = (("method", "POST"), ("route", "/api/predict"))
        assert metrics[("hitl_api_requests_total", (*predict, ("status", "200")))] == 3
        assert metrics[("hitl_api_requests_total", (*predict, ("status", "400")))] == 1
        assert metrics[("hitl_api_requests_total", (*predict, ("status", "401")))] == 1
        assert metrics[("hitl_api_request_duration_seconds_count", predict)] == 5
        assert metrics[("hitl_api_request_duration_seconds_sum", predict)] > 0
        retrain = (("kind", "retrain"),)
        assert metrics[("hitl_runs_total", (*retrain, ("status", "promoted")))] == 1
        # a run under way is a gauge: a counter that fell back when it ended read as a reset
        assert metrics[("hitl_runs_running", retrain)] == 1
        assert ("hitl_runs_total", (*retrain, ("status", "running"))) not in metrics
        assert metrics[("hitl_run_duration_seconds_count", retrain)] == 2
        assert metrics[("hitl_run_duration_seconds_sum", retrain)] == 50.0
        assert metrics[("hitl_webhook_deliveries", (("status", "pending"),))] == 0


async def test_metrics_tell_where_the_memory_goes(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in start_api(fake_slack, tmp_path):
        before = await scrape(bot)
        assert before[("process_resident_memory_bytes", ())] > 0
        assert before[("hitl_python_allocated_blocks", ())] > 0
        rows = [
            {
                "id": f"m{n}",
                "text": f"memory item {n} " * 20,
                "source": "test",
                "created_at": "t",
                "updated_at": "t",
            }
            for n in range(5000)
        ]
        bot.store.db["items"].insert_all(rows)  # pages SQLite now holds in its cache
        after = await scrape(bot)
        assert after[("hitl_sqlite_memory_bytes", ())] > before[("hitl_sqlite_memory_bytes", ())]


async def test_slack_api_errors_counter_shows_in_every_app(fake_slack: FakeSlack, tmp_path: Path):
    key = ("hitl_slack_api_errors_total", (("error", "ratelimited"), ("method", "chat.update")))
    async for bot in start_api(fake_slack, tmp_path):
        before = (await scrape(bot)).get(key, 0.0)
        SLACK_API_ERRORS.labels("chat.update", "ratelimited").inc()
        assert (await scrape(bot))[key] == before + 1


async def test_each_app_counts_its_own_api_requests(fake_slack: FakeSlack, tmp_path: Path):
    key = (
        "hitl_api_requests_total",
        (("method", "GET"), ("route", "/api/openapi.json"), ("status", "200")),
    )
    for _ in range(2):
        async for bot in start_api(fake_slack, tmp_path):
            assert (await bot.http.get("/api/openapi.json", headers=AUTH)).status == 200
            assert (await scrape(bot))[key] == 1


async def test_unknown_api_paths_share_one_metrics_label(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in start_api(fake_slack, tmp_path):
        for path in ("/api/a", "/api/b/c"):
            assert (await bot.http.get(path, headers=AUTH)).status == 404
        metrics = await scrape(bot)
        unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
        assert metrics[("hitl_api_requests_total", unmatched)] == 2
        routes = {dict(labels).get("route") for _, labels in metrics}
        assert not routes & {"/api/a", "/api/b/c"}


async def test_healthz_reports_db_champion_and_scheduler(
    fake_slack: FakeSlack, tmp_path: Path, champion: Champion
):
    async for bot in start_api(fake_slack, tmp_path, champion=champion):
        response = await bot.http.get("/healthz")
        assert response.status == 200
        assert await response.json() == {
            "ok": True,
            "db": "ok",
            "champion": 1,
            "working": None,
            "asks": 1,
            "answers": 1,
            "scheduler": None,
            "scoring": "ok",
        }
        bot.rt.trainer.scheduler_alive = True
        assert (await (await bot.http.get("/healthz")).json())["scheduler"] is True
        bot.rt.trainer.scheduler_alive = False
        response = await bot.http.get("/healthz")
        assert response.status == 503
        body = await response.json()
        assert (body["ok"], body["champion"], body["scheduler"]) == (False, 1, False)


async def test_metrics_show_how_long_the_fsyncs_that_acks_wait_for_took(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in start_api(fake_slack, tmp_path):
        before = await scrape(bot)
        for _ in range(3):
            await bot.store.synced()  # as an answer's ack does, one after another
        after = await scrape(bot)
        count = ("hitl_wal_fsync_seconds_count", ())
        assert after[count] == before[count] + 3
        assert (
            after[("hitl_wal_fsync_seconds_sum", ())] > before[("hitl_wal_fsync_seconds_sum", ())]
        )
        bounds = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf")
        buckets = [after[("hitl_wal_fsync_seconds_bucket", (("le", le),))] for le in bounds]
        assert buckets == sorted(buckets) and buckets[-1] == after[count]
