"""What a process killed (`kill -9`, the OOM killer) while it builds a new database leaves
beside it (``_make_whole``): its build name (``.hitl.db.new-PID-HEX``, a whole schema or an
empty file, with its -journal) stayed for good; the next build removes those of a process that
is gone. Killed right after the link, the database keeps that name as a second one (a hard
link): it was taken for a build under way as long as it was there, and never warned of. It is
warned of once its process is gone; a build under way (its process alive) is not, through a
symlink to the database either (the build name was looked for beside the symlink)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store import Store
from bot.store.lock import check_names
from tests.bot.harness import LABELS
from tests.bot.test_new_database_race import line_of

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HITL_LABELS": ",".join(LABELS)}
WAIT = 60


def killed_at(db: Path, patch: str) -> None:
    """A process opening a new database at ``db`` (``Store.open``), paused where ``patch``
    prints "here", then killed (SIGKILL). Every wait is bounded by the child's end."""
    code = (
        "import os, sys, time\n"
        "import bot.store.core as core\n"
        f"{patch}"
        "from bot.store import Store\n"
        f"Store.open({str(db)!r})\n"
        "print('opened', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        said = line_of(child)  # "here", or what it said as it ended: at most 60 s
        if said != "here\n":
            child.kill()
            err = child.communicate(timeout=WAIT)[1].decode()[-2000:]
            pytest.fail(f"not paused: {said!r} {err}")
    finally:
        child.kill()
        child.communicate(timeout=WAIT)


IN_THE_BUILD = (
    "made = core.create_new\n"
    "def paused(db, at):\n"
    "    made(db, at)\n"
    "    print('here', flush=True)\n"
    "    sys.stdin.readline()\n"
    "core.create_new = paused\n"
)
AFTER_THE_LINK = (
    "link = os.link\n"
    "def paused(src, dst, **kw):\n"
    "    link(src, dst, **kw)\n"
    "    print('here', flush=True)\n"
    "    sys.stdin.readline()\n"
    "os.link = paused\n"
)


def test_the_next_build_removes_what_a_killed_build_left(tmp_path: Path):
    db = tmp_path / "hitl.db"
    killed_at(db, IN_THE_BUILD)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left and all(name.startswith(".hitl.db.new-") for name in left), left
    with Store.open(db) as store:
        assert store.made_new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hitl.db"]


def test_a_second_name_a_killed_build_left_is_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "hitl.db"
    killed_at(db, AFTER_THE_LINK)
    assert os.stat(db).st_nlink == 2
    with caplog.at_level(logging.WARNING):
        check_names(db)
    assert [r for r in caplog.records if "has 2 names (hard links" in r.getMessage()]


def test_a_build_under_way_is_no_second_name_through_a_symlink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    data = tmp_path / "data"
    data.mkdir()
    Store.open(data / "hitl.db").close()
    link = tmp_path / "hitl.db"
    link.symlink_to(data / "hitl.db")
    # the moment between a build's link and the removal of its name (this process's: alive)
    os.link(data / "hitl.db", data / f".hitl.db.new-{os.getpid()}-0a1b2c3d")
    with caplog.at_level(logging.WARNING):
        check_names(link)
        check_names(data / "hitl.db")
    assert not [r for r in caplog.records if "names (hard links" in r.getMessage()]
