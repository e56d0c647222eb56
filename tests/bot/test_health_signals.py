"""What an operator sees while the database cannot do its job: one line while a fault lasts
(not a traceback a round or a probe), /healthz answering 503 while nothing can be stored, and
/metrics counters that only grow. Found by an outside test of logs, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.api import webhooks
from bot.api.metrics import StoreCollector
from bot.learning.jobs import ChampionWatch
from bot.sandbox import FakeSlack
from bot.store import Store, database_problem, problems
from tests.bot.harness import Bot
from tests.bot.test_api import post_json, start_api


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


@pytest.fixture
def held_lock(api: Bot) -> Iterator[sqlite3.Connection]:
    """Another process's write lock on the bot's database (a `sqlite3` shell in BEGIN
    IMMEDIATE), held until the test releases it (``release``); the bot's connection does not
    wait for it."""
    api.store.db.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(api.rt.settings.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        release(other)
        other.close()


def release(other: sqlite3.Connection) -> None:
    if other.in_transaction:
        other.execute("ROLLBACK")


def corrupt(name: str = "SQLITE_CORRUPT") -> sqlite3.DatabaseError:
    exc = sqlite3.DatabaseError("database disk image is malformed")
    exc.sqlite_errorname = name  # type: ignore[attr-defined]
    return exc


class Rounds(Exception):
    """Ends ``run_deliveries`` after the rounds a test asked for."""


def counted_sleeps(
    monkeypatch: pytest.MonkeyPatch, rounds: int, then: dict[int, Callable[[], None]]
) -> None:
    """``run_deliveries`` runs ``rounds`` rounds, without waiting between them; ``then[n]``
    runs after round ``n``."""
    waits: list[float] = []

    class Clockless:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) in then:
                then[len(waits)]()
            if len(waits) >= rounds:
                raise Rounds

    monkeypatch.setattr(webhooks, "asyncio", Clockless())


async def rounds_of_deliveries(api: Bot) -> None:
    with pytest.raises(Rounds):
        await webhooks.run_deliveries(api.rt, tick=0.01)


def add_due_delivery(api: Bot) -> None:
    """A delivery due for the first item (to a loopback address: refused at once, no
    network)."""
    with api.store.unsynced():
        api.store.db.execute(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at)"
            " SELECT id, 'http://127.0.0.1:9/hook', '2000-01-01T00:00:00.000+00:00', '2000'"
            " FROM items LIMIT 1"
        )


# -- the webhook worker while another process holds the write lock --


async def test_an_idle_webhook_worker_takes_no_write_lock(api: Bot, held_lock):
    """Nothing due: the worker's look is a read, so another process's lock neither fails nor
    holds it (it failed with "database is locked" every round)."""
    assert api.store.claim_due_deliveries("2999-01-01", "2999-01-02", 50, per_receiver=4) == []


async def test_the_webhook_worker_says_a_held_lock_once_while_it_lasts(
    api: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    response = await post_json(api, "/api/items", {"items": [{"id": "W1", "text": "refund"}]})
    assert response.status == 200
    add_due_delivery(api)
    api.store.db.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(api.rt.settings.db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        counted_sleeps(monkeypatch, rounds=8, then={5: lambda: release(other)})
        with caplog.at_level(logging.INFO, logger="bot.api.webhooks"):
            await rounds_of_deliveries(api)
    finally:
        release(other)
        other.close()
    said = [r for r in caplog.records if r.name == "bot.api.webhooks"]
    assert not [r for r in said if r.exc_info], "a traceback"
    errors = [r.getMessage() for r in said if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # five rounds under the lock: said once
    assert "locked by another process" in errors[0] and "said once while it lasts" in errors[0]
    lines = [r.getMessage() for r in said]
    assert any("go on" in line for line in lines), lines  # and once when it ends
    assert api.store.claim_due_deliveries("2999-01-01", "2999-01-02", 50) == []  # it was sent


# -- /healthz while nothing can be stored --


async def healthz(api: Bot) -> tuple[int, dict]:
    response = await api.http.get("/healthz")
    return response.status, await response.json()


async def test_healthz_answers_503_while_the_disk_refuses_every_write(api: Bot):
    status, body = await healthz(api)
    assert (status, body["db"]) == (200, "ok") and "db_problem" not in body
    pages = api.store.db.execute("PRAGMA page_count").fetchone()[0]
    api.store.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    many = [{"id": f"F{i}", "text": "refund charge " * 500} for i in range(50)]
    assert (await post_json(api, "/api/items", {"items": many})).status == 503
    status, body = await healthz(api)
    assert (status, body["ok"], body["db"]) == (503, False, "not storing"), body
    assert "the disk is full" in body["db_problem"]
    api.store.db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    status, body = await healthz(api)  # finds out by itself: no request needs to come
    assert (status, body["db"]) == (200, "ok") and "db_problem" not in body


async def test_healthz_answers_503_while_another_process_holds_the_lock(
    api: Bot, held_lock: sqlite3.Connection
):
    refused = await post_json(api, "/api/predict", {"id": "L1", "text": "refund charge"})
    assert refused.status == 503
    status, body = await healthz(api)
    assert (status, body["db"]) == (503, "not storing"), body
    assert "locked by another process" in body["db_problem"]
    release(held_lock)
    status, body = await healthz(api)
    assert (status, body["db"]) == (200, "ok")


async def test_healthz_names_no_folder_of_the_server_the_log_names_it(
    api: Bot, held_lock: sqlite3.Connection, caplog: pytest.LogCaptureFixture
):
    """Anyone may ask /healthz (no token): its db_problem named the database's absolute path
    (an outside security test). It names the file; the log keeps the whole line."""
    db = Path(api.rt.settings.db)  # absolute (tmp_path)
    with caplog.at_level(logging.ERROR):
        refused = await post_json(api, "/api/predict", {"id": "L1", "text": "refund charge"})
        assert refused.status == 503
        status, body = await healthz(api)
    assert (status, body["db"]) == (503, "not storing"), body
    assert body["db_problem"].startswith(f"{db.name} is locked by another process"), body
    assert str(db.parent) not in json.dumps(body)
    assert any(str(db) in r.getMessage() for r in caplog.records)
    release(held_lock)


async def test_a_write_that_goes_through_clears_the_problem(api: Bot, held_lock):
    assert (await post_json(api, "/api/predict", {"id": "L1", "text": "x"})).status == 503
    assert api.store.write_problem is not None
    release(held_lock)
    assert (await post_json(api, "/api/predict", {"id": "L1", "text": "x"})).status == 200
    assert api.store.write_problem is None


# -- a damaged database --


async def test_healthz_says_a_damaged_database_once_not_a_traceback_per_probe(
    api: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def damaged() -> dict:
        raise corrupt()

    monkeypatch.setattr(api.store, "count_items", damaged)
    for _ in range(5):
        status, body = await healthz(api)
        assert (status, body["db"]) == (503, "unreachable")
        assert (
            "is damaged" in body["db_problem"] and "restore it from a backup" in body["db_problem"]
        )
    said = [r for r in caplog.records if r.name == "bot.server"]
    assert [r.exc_info for r in said] == [None], said
    assert "is damaged" in said[0].getMessage()
    monkeypatch.undo()
    caplog.clear()
    # the damage counts for DAMAGE_REMEMBERED seconds after the last reader met it
    later = problems.clock() + problems.DAMAGE_REMEMBERED + 1
    monkeypatch.setattr(problems, "clock", lambda: later)
    with caplog.at_level(logging.INFO, logger="bot.server"):
        status, _ = await healthz(api)
    assert status == 200
    assert any("well again" in r.getMessage() for r in caplog.records)


async def test_healthz_says_damage_another_reader_met_though_its_own_read_goes_through(
    api: Bot, monkeypatch: pytest.MonkeyPatch
):
    """A damaged file fails only the reads that touch its damaged pages: the workers logged
    "damaged" and /api/predict answered 500 while /healthz's one-page read said 200 "ok"."""
    assert (await healthz(api))[0] == 200
    clock = problems.clock()
    monkeypatch.setattr(problems, "clock", lambda: clock)
    database_problem(api.rt.settings.db, corrupt())  # a worker's read met the damage
    status, body = await healthz(api)
    assert (status, body["db"]) == (503, "unreachable")
    assert "is damaged" in body["db_problem"]
    monkeypatch.setattr(problems, "clock", lambda: clock + problems.DAMAGE_REMEMBERED + 1)
    assert (await healthz(api))[0] == 200  # no reader met it since


async def test_the_champion_watch_says_a_damaged_database_once(
    api: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def damaged() -> int | None:
        raise corrupt()

    monkeypatch.setattr(api.store, "champion_version", damaged)
    watch = ChampionWatch(api.rt, every=3600.0)
    task = asyncio.create_task(watch.run())
    try:
        for _ in range(5):
            await watch.check_now()
        said = [r for r in caplog.records if r.name == "bot.learning.jobs"]
        assert [r.exc_info for r in said] == [None], said
        assert "is damaged" in said[0].getMessage()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- /metrics: a counter only grows --


def samples(store: Store) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in StoreCollector(lambda: store).collect():
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_retrain_ending_is_no_counter_reset():
    with Store.memory() as store:
        run = store.start_run("retrain", triggered_by="test")
        running = samples(store)
        assert running[("hitl_runs_running", (("kind", "retrain"),))] == 1
        assert not [key for key in running if key[0] == "hitl_runs_total"]  # none finished yet
        store.finish_run(run, "promoted", {})
        ended = samples(store)
        assert ended[("hitl_runs_running", (("kind", "retrain"),))] == 0
        assert ended[("hitl_runs_total", (("kind", "retrain"), ("status", "promoted")))] == 1
        # every counter series seen before is still there, and none went down
        for key, value in running.items():
            if key[0] == "hitl_runs_total":
                assert ended.get(key, -1) >= value, key


def test_no_folder_of_the_server_is_left_where_a_line_names_the_folder_alone(tmp_path: Path):
    """A re-test: the read-only and cannot-open lines name the database's folder on its own
    ("its folder /srv/x (SQLite keeps …"), which /healthz passed on whole; only a folder
    followed by "/" was taken out."""
    from bot.errors import without_folders
    from bot.store.problems import database_problem
    from tests.bot.test_storage_messages import read_only_refusal

    db = tmp_path / "secret-layout" / "hitl.db"
    db.parent.mkdir()
    line = without_folders(str(database_problem(db, read_only_refusal(db))), db)
    assert str(tmp_path) not in line
    assert line == (
        "hitl.db is read-only: hitl needs write access to the file and its folder secret-layout"
        " (SQLite keeps hitl.db-wal and hitl.db-shm beside it)"
    )
