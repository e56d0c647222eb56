"""HITL_DB a symlink to a file not there yet (a volume not mounted yet, a typo in the link):
the new database is made at the link's target as at any path where nothing is: 0600 (it holds
every ticket and who answered what), its -wal and -shm too, built whole. It was made in place
by SQLite with the umask's mode (0644). A link to a folder that does not exist is refused in
one line, and nothing is made."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import Store
from tests.bot.harness import LABELS

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HITL_LABELS": ",".join(LABELS)}


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_new_database_through_a_dangling_symlink_is_0600(tmp_path: Path, umask_022: None):
    data = tmp_path / "data"
    data.mkdir()
    link = tmp_path / "hitl.db"
    link.symlink_to(data / "hitl.db")
    with Store.open(link) as store:
        assert store.made_new
        assert link.is_symlink() and (data / "hitl.db").is_file()
        assert store.count_items()["new"] == 0  # a read: its -wal and -shm are there
        for name in ("hitl.db", "hitl.db-wal", "hitl.db-shm"):
            assert mode(data / name) == 0o600, name
    assert sorted(p.name for p in data.iterdir()) == ["hitl.db"]  # no build left beside it


def test_hitl_import_through_a_dangling_symlink_makes_a_0600_database(
    tmp_path: Path, umask_022: None
):
    data = tmp_path / "data"
    data.mkdir()
    link = tmp_path / "hitl.db"
    link.symlink_to(data / "hitl.db")
    items = tmp_path / "items.csv"
    items.write_text("id,text\nT-1,refund please\nT-2,the app crashes\n")
    ran = subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(link), "import", str(items)],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert "imported 2" in ran.stdout
    assert mode(data / "hitl.db") == 0o600
    with Store.open(link, create=False) as store:
        assert store.count_items()["new"] == 2


def test_a_symlink_into_a_folder_that_does_not_exist_is_refused(tmp_path: Path):
    link = tmp_path / "hitl.db"
    link.symlink_to(tmp_path / "nowhere" / "hitl.db")
    with pytest.raises(StoreError) as refused:
        Store.open(link)
    assert str(refused.value) == (
        f"{link}: folder {tmp_path / 'nowhere'} does not exist; create it or set HITL_DB"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hitl.db"]
