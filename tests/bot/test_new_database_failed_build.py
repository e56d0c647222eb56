"""A new database that cannot be built (the file-size limit, a full disk) is refused in one
line, and nothing is left at its path: it was made in place after the build failed, where the
same error struck after the file was there, and a 4 KB empty database stayed (later commands
took it for the team's database: `hitl stats` said zeros, `hitl serve` no "created a new,
empty database"). The file-size limit read as "the disk failed to read or write it". A name
so long the build's own name does not fit is built under a short one, and a refused command
leaves nothing there either."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from bot.store import Store
from tests.bot.harness import LABELS
from tests.bot.test_own_server_lock import held_by_another

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HITL_LABELS": ",".join(LABELS)}


def hitl_import(db: Path, tmp_path: Path, *, size_limit: int | None = None):
    """`hitl import` in a process of its own; with ``size_limit``, under that file-size limit
    (`ulimit -f`, SIGXFSZ ignored as a shell's ulimit leaves a write: EFBIG)."""
    items = tmp_path / "items.csv"
    items.write_text("id,text\nT-1,refund please\nT-2,the app crashes\n")
    code = "import resource, signal, sys\n"
    if size_limit is not None:
        code += (
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size_limit}, {size_limit}))\n"
        )
    code += (
        "from bot.cli import cli\n"
        f"cli(['--db', {str(db)!r}, 'import', {str(items)!r}], prog_name='hitl')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_new_database_over_the_file_size_limit_is_refused_and_leaves_nothing(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "hitl.db"
    ran = hitl_import(db, tmp_path, size_limit=64 * 1024)
    assert ran.returncode != 0
    assert "Traceback" not in ran.stderr
    said = ran.stderr.strip().splitlines()
    assert len(said) == 1, ran.stderr
    assert "file-size limit (`ulimit -f`" in said[0]
    assert "disk I/O error" not in said[0]
    assert list(folder.iterdir()) == []  # no 4 KB database, no build left beside it
    again = hitl_import(db, tmp_path)  # with the limit raised
    assert again.returncode == 0, again.stderr
    with Store.open(db, create=False) as store:
        assert store.count_items()["new"] == 2


def test_a_name_too_long_for_the_builds_name_is_built_whole_and_refused_cleanly(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / ("h" * 236 + ".db")  # fits, and so does its .server.lock; .NAME.new-… not
    line = f"pid 1 on {socket.gethostname()}, since 2026-12-06T06:00:00+00:00\n"
    with held_by_another(db, line):  # a server that serves, its database deleted
        refused = hitl_import(db, tmp_path)
        assert refused.returncode != 0
        assert "is empty (a new database), but a hitl server or demo runs on it" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert sorted(p.name for p in folder.iterdir()) == [db.name + ".server.lock"]
    ran = hitl_import(db, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in folder.iterdir()) == [db.name, db.name + ".server.lock"]
    assert os.stat(db).st_mode & 0o777 == 0o600
