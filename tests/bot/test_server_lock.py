"""One server per database (bot/store/lock.py): the lock itself. Real servers meeting it are in
test_serve_process.py and test_demo.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store.lock import lock_path, server_lock


def test_a_second_hold_is_refused_naming_the_first_and_free_again_after_it(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with server_lock(db):
        holder = lock_path(db).read_text()
        assert holder.startswith(f"pid {os.getpid()} on ")
        with pytest.raises(StoreError) as refused, server_lock(db):
            pass
        assert str(refused.value).startswith(f"{db} is in use by another hitl server or demo")
        assert holder.strip() in str(refused.value)
    with server_lock(db):  # released at the end of the block
        pass


def test_the_same_database_under_another_path_is_the_same_lock(tmp_path: Path):
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "hitl.db"
    db.touch()
    (tmp_path / "link.db").symlink_to(db)
    (tmp_path / "folder").symlink_to(tmp_path / "data")
    with server_lock(db):
        for other in (tmp_path / "link.db", tmp_path / "folder" / "hitl.db"):
            with pytest.raises(StoreError), server_lock(other):
                pass


def test_a_lock_that_cannot_be_made_is_one_line_saying_where(tmp_path: Path):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file where the database's folder should be")
    with pytest.raises(StoreError) as refused, server_lock(not_a_folder / "hitl.db"):
        pass
    assert str(refused.value).startswith(f"cannot open {not_a_folder / 'hitl.db.server.lock'} (")
    assert str(refused.value).endswith(f"the server needs to write in {not_a_folder}")


def test_a_filesystem_without_locks_runs_without_one_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """Some network filesystems refuse flock (ENOLCK): the server still starts, with a warning,
    rather than failing with a traceback."""
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with server_lock(tmp_path / "hitl.db"):
        pass
    [warning] = caplog.records
    assert warning.levelname == "WARNING"
    assert "nothing stops a second server on this database" in warning.getMessage()
