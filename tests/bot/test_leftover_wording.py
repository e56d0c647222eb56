"""Leftovers of the resources reviews, each a line that said something untrue:

- a producer API request refused at the open-files limit (EMFILE: the fsync of the log needs a
  descriptor; or SQLite could not open a file) was told "the server's disk failed to read or
  write the database" (or "cannot open its database file"): the disk was fine;
- a lock file deleted under the server and made again on a full disk: writing who holds it
  raised, which ended the server's watch of its lock (``watch_lock``) with a traceback;
- a click whose fsync failed was logged "not stored, so not acknowledged", though it is
  committed (only not known to be on disk; Slack's retry is stored once).

The OS errors are made at the lowest level the server calls (its fsync of the log, the write
of the holder line), so the rest runs as it does on a machine out of descriptors or disk."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.sandbox import FakeSlack
from bot.store import core as store_core
from bot.store import lock, problems
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_db_file_faults import AUTH, bot, errors  # noqa: F401 - bot: the fixture

RAISE = "its operator must raise it: `ulimit -n`, or LimitNOFILE= in its systemd unit"
RETRY = "a retry is safe (not applied twice), answered 410 once the deletion is on disk"


def failing_fsync(err: int):
    def fsync(path: str) -> float:
        raise OSError(err, os.strerror(err), path)

    return fsync


def cantopen() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("unable to open database file")
    exc.sqlite_errorname = "SQLITE_CANTOPEN"  # type: ignore[attr-defined]
    return exc


# -- the producer API at the open-files limit ------------------------------------------------


async def test_an_api_request_refused_at_the_open_files_limit_names_the_limit(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    added = await bot.http.post(
        "/api/items", json={"items": [{"id": "D1", "text": "refund"}]}, headers=AUTH
    )
    assert added.status in (200, 201), await added.text()

    # the fsync of the log after a DELETE: opening the log needs a descriptor (EMFILE)
    monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.EMFILE))
    response = await bot.http.delete("/api/items/D1", headers=AUTH)
    assert response.status == 503 and response.headers["Retry-After"] == "10"
    assert (await response.json()) == {  # committed: only not known to be on disk
        "error": "deleted, but not known to be on disk: the server is at its limit of open"
        f" files ({RAISE}); retry in 10 s: {RETRY}"
    }
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.api.routes"]
    assert "hitl is at its limit of open files" in line and "check the disk" not in line
    monkeypatch.undo()

    # the system's limit (ENFILE)
    monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.ENFILE))
    again = await bot.http.post(
        "/api/items", json={"items": [{"id": "D2", "text": "refund"}]}, headers=AUTH
    )
    assert again.status in (200, 201)
    response = await bot.http.delete("/api/items/D2", headers=AUTH)
    assert response.status == 503 and response.headers["Retry-After"] == "10"
    assert (await response.json())["error"] == (
        "deleted, but not known to be on disk: the server's system is at its limit of open"
        f" files (its operator must raise it: sysctl fs.file-max); retry in 10 s: {RETRY}"
    )
    monkeypatch.undo()

    # a disk that fails the fsync is still the disk
    monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.EIO))
    await bot.http.post("/api/items", json={"items": [{"id": "D3", "text": "x"}]}, headers=AUTH)
    response = await bot.http.delete("/api/items/D3", headers=AUTH)
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    assert (await response.json())["error"] == (
        "deleted, but not known to be on disk: the server's disk failed to read or write the"
        f" database; retry in 60 s: {RETRY}"
    )
    monkeypatch.undo()

    # SQLite could not open a file, and this process is at its limit
    def refused(*args, **kwargs):
        raise cantopen()

    monkeypatch.setattr(bot.store, "add_api_items", refused)
    monkeypatch.setattr(problems, "_out_of_files", lambda: errno.EMFILE)
    response = await bot.http.post(
        "/api/items", json={"items": [{"id": "D4", "text": "x"}]}, headers=AUTH
    )
    assert response.status == 503 and response.headers["Retry-After"] == "10"
    assert (await response.json())["error"] == (
        f"not stored: the server is at its limit of open files ({RAISE}); retry in 10 s"
    )
    # ... and below the limit it is still a file it cannot open
    monkeypatch.setattr(problems, "_out_of_files", lambda: None)
    response = await bot.http.post(
        "/api/items", json={"items": [{"id": "D5", "text": "x"}]}, headers=AUTH
    )
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    assert (await response.json())["error"] == (
        "not stored: the server cannot open its database file; retry in 60 s"
    )


# -- the lock file made again on a full disk -------------------------------------------------


async def test_a_lock_file_made_again_on_a_full_disk_is_one_warning_and_the_watch_goes_on(
    fake_slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    from bot.appkeys import SERVER_LOCK

    seed(tmp_path / "hitl.db", [Item("a", "x")])
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))

    def full(fd: int, *, starting: bool = False) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async for running in start_bot(fake_slack, settings):
        held = running.http.server.app[SERVER_LOCK]
        path = lock.lock_path(settings.db.resolve())
        monkeypatch.setattr(lock, "_write_holder", full)
        with caplog.at_level(logging.WARNING, logger="bot.store.lock"):
            path.unlink()
            held.check()  # raised OSError before: the end of watch_lock
            held.check()
            held.check()  # tried again, said once while it lasts
        said = [r for r in caplog.records if r.name == "bot.store.lock"]
        assert [(r.levelno, r.exc_info) for r in said] == [(logging.WARNING, None)]
        assert said[0].getMessage() == (
            "the lock file was deleted or replaced while this server ran; it is made again and"
            f" locked, but cannot write {path} (No space left on device), the lock that keeps a"
            f" second server off {settings.db}: the disk holding {path.parent} is full; free"
            " some space there (a second server it refuses cannot be told who holds it); tried"
            " again every few seconds"
        )
        assert path.exists() and path.read_bytes() == b""
        with pytest.raises(StoreError, match=r"in use by another hitl server or demo \(unknown\)"):
            with lock.server_lock(settings.db):  # locked all the same: a second one is refused
                pass

        caplog.clear()
        monkeypatch.undo()  # room again: the next check writes the line
        with caplog.at_level(logging.WARNING, logger="bot.store.lock"):
            held.check()
            held.check()
        said = [r.getMessage() for r in caplog.records if r.name == "bot.store.lock"]
        assert len(said) == 1 and said[0].startswith(f"the lock file {path} was deleted or")
        assert path.read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(StoreError, match=f"demo \\(pid {os.getpid()} on "):
            with lock.server_lock(settings.db):
                pass


# -- a click whose fsync failed ----------------------------------------------------------------


async def test_a_click_whose_fsync_failed_is_logged_as_not_acknowledged_not_as_not_stored(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    assert await bot.dispatcher.fill() >= 1
    [message, *_] = bot.posted()
    payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
    monkeypatch.setattr(store_core, "_fsync", failing_fsync(errno.EMFILE))
    response = await bot.action(payload)
    assert response.status == 503
    [record] = errors(caplog)
    line = record.getMessage()
    assert "not stored" not in line, line
    assert line.startswith(
        "on_label_button: written but not known to be on disk, so not acknowledged (Slack shows the"
        " person it failed; its retry is stored once): "
    ), line
    assert "hitl is at its limit of open files" in line
    monkeypatch.undo()

    # a write the database refused before the ack is still "not stored"
    caplog.clear()
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]

    def refused(*args, **kwargs):
        raise full

    monkeypatch.setattr(bot.store, "record_answer", refused)
    other = bot.button_payload(message, "U0BOB", bot.first_label(message))
    response = await bot.action(other)
    assert response.status == 503
    [record] = errors(caplog)
    assert record.getMessage().startswith(
        "on_label_button: not stored, so not acknowledged (Slack shows the person it failed): "
    )
    assert "the disk is full" in record.getMessage()
