"""A producer's DELETE whose fsync fails: the deletion is committed, only not known to be on
disk. It was answered 503 "not stored … retry", and the retry then got 410 (deleted): the
producer was told nothing was done, then that it was. Now the 503 says it was deleted, that a
retry is safe and answered 410 once the deletion is on disk; the retry fsyncs again before its
410 (and is the same 503 while the disk still fails). The fsync is made to fail at the lowest
level the server calls (``bot.store.core._fsync``), as in test_leftover_wording."""

from __future__ import annotations

import errno
import json
import logging
from importlib import resources
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.store import core as store_core
from tests.bot.harness import Bot
from tests.bot.test_db_file_faults import AUTH, bot  # noqa: F401 - bot: the fixture
from tests.bot.test_delete import SECRET_TEXT
from tests.bot.test_label_set import redrawer_running
from tests.bot.test_leftover_wording import failing_fsync
from tests.fake_slack import CHANNEL

DISK = "the server's disk failed to read or write the database"


def api_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.api.routes"]


async def add(running: Bot, item_id: str) -> None:
    response = await running.http.post(
        "/api/items", json={"items": [{"id": item_id, "text": "refund"}]}, headers=AUTH
    )
    assert response.status == 200, await response.text()


async def test_a_delete_whose_fsync_failed_says_it_was_deleted_and_its_retry_is_a_410(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    await add(bot, "F1")
    real = store_core._fsync
    monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.EIO))
    response = await bot.http.delete("/api/items/F1", headers=AUTH)
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    assert (await response.json()) == {
        "error": f"deleted, but not known to be on disk: {DISK}; retry in 60 s: a retry is safe"
        " (not applied twice), answered 410 once the deletion is on disk"
    }
    assert bot.store.get_item("F1") is None  # it was applied
    [line] = api_lines(caplog)
    assert line.levelno == logging.ERROR and line.exc_info is None
    said = line.getMessage()
    assert said.startswith("DELETE /api/items/F1: written but not known to be on disk")
    assert "not stored" not in said and "fsync failed" in said

    # the retry while the disk still fails: the same 503 (not a 410 that says it is done)
    again = await bot.http.delete("/api/items/F1", headers=AUTH)
    assert again.status == 503 and again.headers["Retry-After"] == "60"
    assert (await again.json())["error"].startswith("deleted, but not known to be on disk")

    # the disk works again: the retry fsyncs, then says it is deleted
    synced: list[str] = []

    def counting(path: str) -> float:
        synced.append(path)
        return real(path)

    monkeypatch.setattr(store_core, "_fsync", counting)
    retried = await bot.http.delete("/api/items/F1", headers=AUTH)
    assert retried.status == 410
    assert (await retried.json())["error"].startswith('item "F1" was deleted at ')
    assert len(synced) == 1 and synced[0].endswith("-wal")


async def test_a_delete_whose_fsync_failed_deletes_its_slack_question_at_once(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The deletion is committed when its fsync fails: the redrawer (which deletes the item's
    question, its text, from Slack) and the dispatcher (a free place) are woken then. They
    were woken only after the fsync: the question stayed in the channel, also after the
    retry's 410 (which wakes nothing), until something else woke the redrawer."""
    from tests.bot.test_api import AUTH as API_AUTH
    from tests.bot.test_api import start_api

    async for api in start_api(fake_slack, tmp_path, max_open=2):
        sent = await api.http.post(
            "/api/items", json={"items": [{"id": "E1", "text": SECRET_TEXT}]}, headers=API_AUTH
        )
        assert sent.status == 200, await sent.text()
        assert await api.dispatcher.fill() == 1
        assert "4111" in json.dumps(api.fake.messages(CHANNEL))
        api.dispatcher.woken.clear()
        # as `hitl serve` runs it, but no look of its own in this test: only a wake draws
        async with redrawer_running(api, 3600):
            real = store_core._fsync
            monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.EIO))
            first = await api.http.delete("/api/items/E1", headers=API_AUTH)
            assert first.status == 503, await first.text()
            assert api.dispatcher.woken.is_set()  # its place is free
            await api.settled()  # fails (times out) unless the question is deleted
            assert api.fake.messages(CHANNEL) == []
            monkeypatch.setattr(store_core, "_fsync", real)
            retried = await api.http.delete("/api/items/E1", headers=API_AUTH)
            assert retried.status == 410  # done, and nothing of it is left in Slack
        assert len(api.fake.calls_to("chat.delete")) == 1


async def test_a_delete_whose_fsync_failed_at_the_open_files_limit_names_the_limit(
    bot: Bot,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
):
    await add(bot, "F2")
    monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.EMFILE))
    response = await bot.http.delete("/api/items/F2", headers=AUTH)
    assert response.status == 503 and response.headers["Retry-After"] == "10"
    error = (await response.json())["error"]
    assert error.startswith(
        "deleted, but not known to be on disk: the server is at its limit of open files"
    )
    assert error.endswith("retry in 10 s: a retry is safe (not applied twice), answered 410"
                          " once the deletion is on disk")  # fmt: skip


async def test_a_write_refused_before_its_commit_is_still_not_stored(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """Guard: a refusal before anything was committed keeps its 'not stored' (passes on the
    old code too)."""
    import sqlite3

    def full(*args, **kwargs):
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(bot.store, "add_api_items", full)
    response = await bot.http.post(
        "/api/items", json={"items": [{"id": "F3", "text": "x"}]}, headers=AUTH
    )
    assert response.status == 503
    assert (await response.json())[
        "error"
    ] == "not stored: the server's disk is full; retry in 60 s"
    [line] = api_lines(caplog)
    assert ": not stored, answered 503: " in line.getMessage()


def test_the_document_says_what_a_delete_whose_fsync_failed_means():
    document = json.loads((resources.files("bot.api") / "openapi.json").read_bytes())
    said = document["paths"]["/api/items/{id}"]["delete"]["responses"]["503"]["description"]
    assert "deleted, but not known to be on disk" in said
    assert "a retry is safe" in said and "410" in said
